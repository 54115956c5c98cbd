"""Declarations of the request and self-monitoring families (SPEC §6).

Bucket layouts suit LLM traffic: latencies from tens of milliseconds to ten minutes, with
bounds at 10 s (the bundled latency SLO) and 15 s (the common HighLatency runbook rule).
Changing a layout drops the persisted series of that family at the next start, so treat
these as part of the public contract.
"""

from __future__ import annotations

from monitor.metrics.store import FamilySpec, Kind

DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0,
                    30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
TOKENS_PER_SECOND_BUCKETS = (1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0,
                             300.0, 500.0, 750.0, 1000.0, 2000.0)
INPUT_TOKEN_BUCKETS = (16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
                       16384.0, 32768.0, 65536.0, 131072.0)

REQUEST_LABELS = ("source", "service", "model")

REQUESTS = FamilySpec(
    name="requests", kind=Kind.COUNTER, labels=(*REQUEST_LABELS, "status"),
    help="Requests read from the logs, by outcome (status is success or error).",
)
REQUEST_ERRORS = FamilySpec(
    name="request_errors", kind=Kind.COUNTER, labels=(*REQUEST_LABELS, "class"),
    help="Failed requests by error class (timeout, rate_limit, auth, connection, oom, server, "
         "client, other).",
)
REQUEST_DURATION = FamilySpec(
    name="request_duration_seconds", kind=Kind.HISTOGRAM, labels=REQUEST_LABELS,
    buckets=DURATION_BUCKETS, help="End-to-end request latency.",
)
TIME_TO_FIRST_TOKEN = FamilySpec(
    name="time_to_first_token_seconds", kind=Kind.HISTOGRAM, labels=REQUEST_LABELS,
    buckets=TTFT_BUCKETS, help="Time from request to the first generated token.",
)
OUTPUT_TOKENS_PER_SECOND = FamilySpec(
    name="output_tokens_per_second", kind=Kind.HISTOGRAM, labels=REQUEST_LABELS,
    buckets=TOKENS_PER_SECOND_BUCKETS, help="Generation speed of each request.",
)
REQUEST_INPUT_TOKENS = FamilySpec(
    name="request_input_tokens", kind=Kind.HISTOGRAM, labels=REQUEST_LABELS,
    buckets=INPUT_TOKEN_BUCKETS, help="Input (prompt) length of each request, in tokens.",
)
INPUT_TOKENS = FamilySpec(
    name="input_tokens", kind=Kind.COUNTER, labels=(*REQUEST_LABELS, "cache"),
    help="Input tokens, by prompt-cache outcome (hit, miss, or unknown when not reported).",
)
OUTPUT_TOKENS = FamilySpec(
    name="output_tokens", kind=Kind.COUNTER, labels=REQUEST_LABELS,
    help="Output tokens, reasoning tokens included.",
)
REASONING_TOKENS = FamilySpec(
    name="reasoning_tokens", kind=Kind.COUNTER, labels=REQUEST_LABELS,
    help="Reasoning tokens (a part of the output tokens).",
)

REQUEST_FAMILIES = (REQUESTS, REQUEST_ERRORS, REQUEST_DURATION, TIME_TO_FIRST_TOKEN,
                    OUTPUT_TOKENS_PER_SECOND, REQUEST_INPUT_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS,
                    REASONING_TOKENS)

LOG_LINES = FamilySpec(
    name="log_lines", kind=Kind.COUNTER, labels=("source", "result"),
    help="Log lines read, by result: parsed, malformed, oversized or filtered.",
)
LOG_LAG_BYTES = FamilySpec(
    name="log_lag_bytes", kind=Kind.GAUGE, labels=("source",),
    help="Bytes written to a source's files and not yet read.",
)
LOG_FILES = FamilySpec(
    name="log_files", kind=Kind.GAUGE, labels=("source",),
    help="Files of a source currently open (rotated files still being read included).",
)
LOG_READ_ERRORS = FamilySpec(
    name="log_read_errors", kind=Kind.COUNTER, labels=("source",),
    help="I/O errors reading a source's files or directories (each skips that file once).",
)
CHECKPOINT_FAILURES = FamilySpec(
    name="checkpoint_failures", kind=Kind.COUNTER,
    help="Checkpoints (offsets and counters) that could not be written to the state file.",
)
RULE_EVALUATION_FAILURES = FamilySpec(
    name="rule_evaluation_failures", kind=Kind.COUNTER, labels=("group",),
    help="Rule evaluations that failed (the rule is skipped for that evaluation).",
)
RULE_GROUP_LAST_DURATION = FamilySpec(
    name="rule_group_last_duration_seconds", kind=Kind.GAUGE, labels=("group",),
    help="How long the last evaluation of a rule group took.",
)
RULE_GROUP_MISSED = FamilySpec(
    name="rule_group_iterations_missed", kind=Kind.COUNTER, labels=("group",),
    help="Rule group evaluations skipped because the previous one ran past its interval.",
)
ALERTS = FamilySpec(
    name="alerts", kind=Kind.GAUGE, labels=("alertname", "state"),
    help="Active alerts by name and state (pending or firing).",
)
TSDB_SERIES = FamilySpec(
    name="tsdb_series", kind=Kind.GAUGE,
    help="Series in the in-memory series store (what rules and queries see).",
)
BUILD_INFO = FamilySpec(
    name="build_info", kind=Kind.GAUGE, labels=("version",),
    help="Always 1; the version label says which inferwatch is running.",
)
NOTIFICATIONS = FamilySpec(
    name="notifications", kind=Kind.COUNTER, labels=("receiver", "integration"),
    help="Notifications delivered (acknowledged by the receiving end).",
)
NOTIFICATIONS_FAILED = FamilySpec(
    name="notifications_failed", kind=Kind.COUNTER, labels=("receiver", "integration", "reason"),
    help="Notification attempts that failed, by reason (retried unless the reason is "
         "permanent).",
)
NOTIFICATION_QUEUE_LENGTH = FamilySpec(
    name="notification_queue_length", kind=Kind.GAUGE, labels=(),
    help="Notifications in the durable outbox, waiting to be delivered.",
)

COST = FamilySpec(
    name="cost", kind=Kind.COUNTER, labels=("source", "model", "currency"),
    help="Spend computed from the price table for the requests of priced sources (the ledger "
         "holds the exact amounts).",
)
COST_CACHE_SAVINGS = FamilySpec(
    name="cost_cache_savings", kind=Kind.COUNTER, labels=("source", "model", "currency"),
    help="What prompt-cache hits saved: the hit input tokens at the cache-miss price minus at "
         "the cache-hit price.",
)
COST_UNPRICED_REQUESTS = FamilySpec(
    name="cost_unpriced_requests", kind=Kind.COUNTER, labels=("model",),
    help="Requests of priced sources with no price for their model and time (or no exchange "
         "rate for the price's currency).",
)
BUDGET_SPENT = FamilySpec(
    name="budget_spent", kind=Kind.GAUGE, labels=("budget", "currency"),
    help="Spend counted against the budget in its current period.",
)
BUDGET_LIMIT = FamilySpec(
    name="budget_limit", kind=Kind.GAUGE, labels=("budget", "currency"),
    help="The budget's limit per period.",
)
BUDGET_SPENT_RATIO = FamilySpec(
    name="budget_spent_ratio", kind=Kind.GAUGE, labels=("budget",),
    help="Spend in the current period over the budget's limit.",
)
BUDGET_FORECAST = FamilySpec(
    name="budget_forecast", kind=Kind.GAUGE, labels=("budget", "currency"),
    help="Projected spend at the end of the current period at the recent burn rate.",
)
SELF_HOSTED_COST_PER_MILLION_TOKENS = FamilySpec(
    name="self_hosted_cost_per_million_tokens", kind=Kind.GAUGE, labels=("source", "currency"),
    help="What a million output tokens of a self-hosted source cost over the last hour, from "
         "its gpu_hourly_cost.",
)

# -- host, processes, probes, GPUs (sampled, not counted from logs) -----------------------------

HOST_CPU_UTILIZATION = FamilySpec(
    name="host_cpu_utilization_ratio", kind=Kind.GAUGE,
    help="Share of all CPUs busy since the previous sample (0 to 1).",
)
HOST_LOAD1 = FamilySpec(name="host_load1", kind=Kind.GAUGE, help="1-minute load average.")
HOST_MEMORY_TOTAL = FamilySpec(
    name="host_memory_total_bytes", kind=Kind.GAUGE, help="Physical memory.",
)
HOST_MEMORY_AVAILABLE = FamilySpec(
    name="host_memory_available_bytes", kind=Kind.GAUGE,
    help="Memory available to new work without swapping (the kernel's MemAvailable).",
)
HOST_FILESYSTEM_SIZE = FamilySpec(
    name="host_filesystem_size_bytes", kind=Kind.GAUGE, labels=("mountpoint",),
    help="Size of a mounted filesystem.",
)
HOST_FILESYSTEM_AVAIL = FamilySpec(
    name="host_filesystem_avail_bytes", kind=Kind.GAUGE, labels=("mountpoint",),
    help="Space available to unprivileged users on a mounted filesystem.",
)
HOST_NETWORK_RECEIVE = FamilySpec(
    name="host_network_receive_bytes", kind=Kind.COUNTER, labels=("device",), persistent=False,
    help="Bytes received by a network device (the kernel's counter).",
)
HOST_NETWORK_TRANSMIT = FamilySpec(
    name="host_network_transmit_bytes", kind=Kind.COUNTER, labels=("device",),
    persistent=False, help="Bytes sent by a network device (the kernel's counter).",
)
PROCESS_UP = FamilySpec(
    name="process_up", kind=Kind.GAUGE, labels=("process",),
    help="1 while a process matching the configured command-line regex runs, else 0.",
)
PROCESS_RESIDENT_MEMORY = FamilySpec(
    name="process_resident_memory_bytes", kind=Kind.GAUGE, labels=("process",),
    help="Resident memory of the watched process(es) (summed over matches).",
)
PROCESS_CPU = FamilySpec(
    name="process_cpu_seconds", kind=Kind.COUNTER, labels=("process",), persistent=False,
    help="CPU time of the watched process(es), user and system (the kernel's counter).",
)
PROCESS_OPEN_FDS = FamilySpec(
    name="process_open_fds", kind=Kind.GAUGE, labels=("process",),
    help="Open file descriptors of the watched process(es).",
)
PROCESS_RESTARTS = FamilySpec(
    name="process_restarts", kind=Kind.COUNTER, labels=("process",),
    help="Times a watched process came back with a new PID.",
)
SELF_CPU = FamilySpec(
    name="self_cpu_seconds", kind=Kind.COUNTER, persistent=False,
    help="CPU time of this inferwatch process, user and system.",
)
SELF_RESIDENT_MEMORY = FamilySpec(
    name="self_resident_memory_bytes", kind=Kind.GAUGE,
    help="Resident memory of this inferwatch process.",
)
SELF_OPEN_FDS = FamilySpec(
    name="self_open_fds", kind=Kind.GAUGE, help="Open file descriptors of this process.",
)
PROBE_SUCCESS = FamilySpec(
    name="probe_success", kind=Kind.GAUGE, labels=("probe",),
    help="1 if the last probe of the health endpoint succeeded, else 0.",
)
PROBE_DURATION = FamilySpec(
    name="probe_duration_seconds", kind=Kind.GAUGE, labels=("probe",),
    help="How long the last probe took (up to its timeout).",
)
PROBE_STATUS_CODE = FamilySpec(
    name="probe_http_status_code", kind=Kind.GAUGE, labels=("probe",),
    help="HTTP status of the last probe's answer; 0 when none came.",
)
GPU_LABELS = ("gpu", "uuid")
GPU_INFO = FamilySpec(
    name="gpu_info", kind=Kind.GAUGE, labels=(*GPU_LABELS, "name", "driver_version"),
    help="Always 1 for each GPU NVML reports; its labels describe it.",
)
GPU_UP = FamilySpec(
    name="gpu_up", kind=Kind.GAUGE, labels=GPU_LABELS,
    help="1 while the GPU answers NVML, 0 when it is lost or NVML failed.",
)
GPU_MEMORY_USED = FamilySpec(
    name="gpu_memory_used_bytes", kind=Kind.GAUGE, labels=GPU_LABELS,
    help="GPU memory in use.",
)
GPU_MEMORY_TOTAL = FamilySpec(
    name="gpu_memory_total_bytes", kind=Kind.GAUGE, labels=GPU_LABELS,
    help="GPU memory in all.",
)
GPU_UTILIZATION = FamilySpec(
    name="gpu_utilization_ratio", kind=Kind.GAUGE, labels=GPU_LABELS,
    help="Share of the last sample period the GPU was busy (0 to 1).",
)
GPU_TEMPERATURE = FamilySpec(
    name="gpu_temperature_celsius", kind=Kind.GAUGE, labels=GPU_LABELS,
    help="GPU core temperature.",
)
GPU_POWER = FamilySpec(
    name="gpu_power_watts", kind=Kind.GAUGE, labels=GPU_LABELS, help="GPU power draw.",
)
GPU_ENERGY = FamilySpec(
    name="gpu_energy_joules", kind=Kind.COUNTER, labels=GPU_LABELS, persistent=False,
    help="Energy the GPU consumed since the driver loaded (NVML's counter).",
)
GPU_XID_ERRORS = FamilySpec(
    name="gpu_xid_errors", kind=Kind.COUNTER, labels=(*GPU_LABELS, "xid"),
    help="XID errors the driver reported for the GPU, by XID code.",
)
GPU_PROCESS_MEMORY = FamilySpec(
    name="gpu_process_memory_bytes", kind=Kind.GAUGE, labels=(*GPU_LABELS, "pid", "process"),
    help="GPU memory used by a process.",
)
SAMPLER_FAILURES = FamilySpec(
    name="sampler_failures", kind=Kind.COUNTER, labels=("sampler",),
    help="Samples that failed (the sampler is retried at its next interval).",
)
SLO_OBJECTIVE = FamilySpec(
    name="slo_objective_ratio", kind=Kind.GAUGE, labels=("slo",),
    help="The SLO's objective as a ratio (99.9 % is 0.999); `slo` is its ID.",
)
SLO_BUDGET_REMAINING = FamilySpec(
    name="slo_error_budget_remaining_ratio", kind=Kind.GAUGE, labels=("slo",),
    help="Share of the SLO's error budget left over its time window (below 0 when overspent).",
)
SLO_BURN_RATE = FamilySpec(
    name="slo_burn_rate", kind=Kind.GAUGE, labels=("slo", "window"),
    help="Error ratio over the window divided by the error budget (1 spends it exactly).",
)
SLO_SLI_ERROR_RATIO = FamilySpec(
    name="slo_sli_error_ratio", kind=Kind.GAUGE, labels=("slo", "window"),
    help="Bad events over all events of the SLO's SLI over the window.",
)
SLO_EXHAUSTION = FamilySpec(
    name="slo_error_budget_exhaustion_seconds", kind=Kind.GAUGE, labels=("slo",),
    help="Time until the error budget is spent at the last hour's burn rate; absent: never.",
)
