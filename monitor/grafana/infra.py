"""The *GPU & host*, *SLOs* and *inferwatch itself* dashboards.

Host, process, probe and GPU panels read the sampled families; SLO panels the slo_*
gauges the daemon computes from its per-minute counts; the self-monitoring panels the
daemon's own counters (ingest, rules, notifications, store). Thresholds come from the bundled
rules (`monitor.grafana.thresholds`) and the SLO code's burn-rate factors.
"""

from __future__ import annotations

from monitor.grafana.model import (
    GREEN,
    ORANGE,
    RED,
    YELLOW,
    Dashboard,
    Panel,
    Row,
    Target,
    steps_above,
)
from monitor.grafana.promql import agg_rate, sel
from monitor.grafana.thresholds import HALF_BUDGET_REMAINING, slo_burn_factors, threshold

INSTANCE_METRIC = "inferwatch_build_info"
UP_DOWN = (("0", "down", RED), ("1", "up", GREEN))
MALFORMED = 'result="malformed"'
PARSED_OR_MALFORMED = 'result=~"parsed|malformed"'


def gpu_host() -> Dashboard:
    host = Row("Host", (
        Panel("CPU busy", "timeseries",
              (Target(sel("host_cpu_utilization_ratio"), "CPU {{instance}}"),),
              unit="percentunit", min=0, max=1, width=8,
              thresholds=steps_above(GREEN, (threshold("HostCpuHigh"), RED))),
        Panel("Memory used", "timeseries",
              (Target(f"1 - {sel('host_memory_available_bytes')}\n/ "
                      f"{sel('host_memory_total_bytes')}", "memory {{instance}}"),),
              unit="percentunit", min=0, max=1, width=8,
              thresholds=steps_above(GREEN, (threshold("HostMemoryHigh"), RED))),
        Panel("Filesystem used", "timeseries",
              (Target(f"1 - {sel('host_filesystem_avail_bytes')}\n/ "
                      f"{sel('host_filesystem_size_bytes')}", "{{mountpoint}} {{instance}}"),),
              unit="percentunit", min=0, max=1, width=8,
              thresholds=steps_above(GREEN, (threshold("HostDiskFull"), RED))),
        Panel("Load (1 min)", "timeseries", (Target(sel("host_load1"), "load1 {{instance}}"),),
              unit="short", width=8),
        Panel("Network", "timeseries", (
            Target(agg_rate("host_network_receive_bytes_total", keep=("instance", "device")),
                   "{{device}} in {{instance}}"),
            Target(agg_rate("host_network_transmit_bytes_total", keep=("instance", "device")),
                   "{{device}} out {{instance}}"),
        ), unit="Bps", width=16),
    ))
    model_server = Row("Model server process and health probe", (
        Panel("Process up", "state-timeline",
              (Target(sel("process_up"), "{{process}} {{instance}}"),), unit="short",
              mappings=UP_DOWN, width=12, height=5,
              thresholds=steps_above(RED, (1.0, GREEN)),
              description="ModelProcessDown pages when no matching process runs for 1m."),
        Panel("Health probe", "state-timeline",
              (Target(sel("probe_success"), "{{probe}} {{instance}}"),), unit="short",
              mappings=UP_DOWN, width=12, height=5,
              thresholds=steps_above(RED, (1.0, GREEN)),
              description="HealthProbeFailing pages after 2m of failures."),
        Panel("Process resident memory", "timeseries",
              (Target(sel("process_resident_memory_bytes"), "{{process}} {{instance}}"),),
              unit="bytes"),
        Panel("Health probe duration", "timeseries",
              (Target(sel("probe_duration_seconds"), "{{probe}} {{instance}}"),), unit="s",
              thresholds=steps_above(GREEN, (threshold("HealthProbeSlow"), ORANGE))),
    ))
    gpu_labels = "GPU {{gpu}} {{instance}}"
    gpu = Row("GPU", (
        Panel("GPU memory used", "timeseries",
              (Target(f"{sel('gpu_memory_used_bytes')}\n/ {sel('gpu_memory_total_bytes')}",
                      gpu_labels),), unit="percentunit", min=0, max=1, width=8,
              thresholds=steps_above(GREEN, (threshold("GpuMemoryHigh"), RED))),
        Panel("GPU utilization", "timeseries",
              (Target(sel("gpu_utilization_ratio"), gpu_labels),), unit="percentunit", min=0,
              max=1, width=8),
        Panel("GPU temperature", "timeseries",
              (Target(sel("gpu_temperature_celsius"), gpu_labels),), unit="celsius", width=8,
              thresholds=steps_above(GREEN, (threshold("GpuTemperatureHigh"), RED))),
        Panel("GPU power", "timeseries", (Target(sel("gpu_power_watts"), gpu_labels),),
              unit="watt", width=8),
        Panel("GPU memory by process", "timeseries",
              (Target(sel("gpu_process_memory_bytes"), "{{process}} ({{pid}}) " + gpu_labels),),
              unit="bytes", stack=True, width=8),
        Panel("XID errors", "timeseries",
              (Target(agg_rate("gpu_xid_errors_total", keep=("instance", "gpu", "xid"),
                               fn="increase"), "XID {{xid}} " + gpu_labels),),
              unit="short", width=8,
              description="GpuXidErrors reports any XID error in 10 minutes."),
        Panel("GPU up", "state-timeline", (Target(sel("gpu_up"), gpu_labels),),
              unit="short", mappings=(("0", "lost", RED), ("1", "up", GREEN)), width=12,
              height=5, thresholds=steps_above(RED, (1.0, GREEN)),
              description="GpuLost pages when NVML loses the GPU for 1m."),
        Panel("GPUs", "table",
              (Target(sel("gpu_info"), instant=True, format="table"),), width=12, height=5),
    ))
    return Dashboard(
        uid="inferwatch-gpu-host", title="inferwatch / GPU & host",
        description="Host CPU, memory, disks and network, the model-server process and its "
                    "health probe, and the GPUs (NVML).",
        rows=(host, model_server, gpu), instance_metric=INSTANCE_METRIC)


def slos() -> Dashboard:
    colours = (RED, ORANGE, YELLOW, YELLOW)
    factors = sorted(slo_burn_factors().values(), reverse=True)
    burn_steps = steps_above(GREEN, *sorted(zip(factors, colours, strict=True)))
    remaining_steps = steps_above(RED, (0.0, ORANGE), (HALF_BUDGET_REMAINING, GREEN))
    row = Row("Error budgets", (
        Panel("Objective", "stat", (Target(sel("slo_objective_ratio"), "{{slo}}"),),
              unit="percentunit", decimals=2, width=6, height=6,
              thresholds=steps_above(GREEN)),
        Panel("Error budget remaining", "bargauge",
              (Target(sel("slo_error_budget_remaining_ratio"), "{{slo}}", instant=True),),
              unit="percentunit", min=0, max=1, width=10, height=6,
              thresholds=remaining_steps,
              description="Share of the time window's error budget left; the budget alert "
                          f"fires at {HALF_BUDGET_REMAINING:g}."),
        Panel("Time to budget exhaustion", "stat",
              (Target(sel("slo_error_budget_exhaustion_seconds"), "{{slo}}"),), unit="s",
              width=8, height=6, thresholds=steps_above(RED, (86400.0, ORANGE),
                                                        (7 * 86400.0, GREEN)),
              description="At the last hour's burn rate; no value: the budget is not "
                          "being spent."),
        Panel("Burn rate by window", "timeseries",
              (Target(sel("slo_burn_rate"), "{{slo}} {{window}}"),), unit="suffix: x",
              thresholds=burn_steps,
              description="Error ratio over the error budget; the lines are the multiwindow "
                          "alerts' factors (page at " + ", ".join(f"{f:g}" for f in factors[:2])
                          + "; ticket at " + ", ".join(f"{f:g}" for f in factors[2:]) + ")."),
        Panel("SLI error ratio by window", "timeseries",
              (Target(sel("slo_sli_error_ratio"), "{{slo}} {{window}}"),),
              unit="percentunit"),
        Panel("Error budget remaining over time", "timeseries",
              (Target(sel("slo_error_budget_remaining_ratio"), "{{slo}}"),),
              unit="percentunit", thresholds=remaining_steps,
              width=24),
    ))
    return Dashboard(
        uid="inferwatch-slos", title="inferwatch / SLOs",
        description="The SLOs of slo_files: objectives, error budget left, burn rates over "
                    "the multiwindow alerts' windows and the time until the budget is spent.",
        rows=(row,), instance_metric=INSTANCE_METRIC)


def inferwatch_itself() -> Dashboard:
    lines_rate = agg_rate("log_lines_total", PARSED_OR_MALFORMED, keep=("source",))
    ingest = Row("Ingest", (
        Panel("Ingest lag", "timeseries",
              (Target(sel("log_lag_bytes"), "{{source}} {{instance}}"),), unit="bytes",
              thresholds=steps_above(GREEN, (threshold("IngestLagging"), RED))),
        Panel("Log lines/s by result", "timeseries",
              (Target(agg_rate("log_lines_total", keep=("source", "result")),
                      "{{source}} {{result}}"),), unit="short"),
        Panel("Malformed lines", "timeseries",
              (Target(f"(\n  {agg_rate('log_lines_total', MALFORMED, keep=('source',))}\n"
                      f"or\n  {lines_rate} * 0\n)\n/\n{lines_rate}", "{{source}}"),),
              unit="percentunit",
              thresholds=steps_above(GREEN, (threshold("MalformedLines"), ORANGE))),
        Panel("Files open", "timeseries",
              (Target(sel("log_files"), "{{source}} {{instance}}"),), unit="short",
              thresholds=steps_above(RED, (1.0, GREEN)),
              description="LogSourceNoFiles reports a source with no file for 15m."),
    ))
    rules = Row("Rules and alerts", (
        Panel("Rule evaluation failures", "timeseries",
              (Target(agg_rate("rule_evaluation_failures_total", keep=("group",),
                               fn="increase"), "{{group}}"),), unit="short",
              thresholds=steps_above(GREEN, (0.5, ORANGE))),
        Panel("Rule group evaluation time", "timeseries",
              (Target(sel("rule_group_last_duration_seconds"), "{{group}} {{instance}}"),),
              unit="s"),
        Panel("Alerts", "timeseries",
              (Target(f"sum by (alertname, state) ({sel('alerts')})",
                      "{{alertname}} {{state}}"),), unit="short", width=24),
    ))
    notifications = Row("Notifications", (
        Panel("Notifications delivered", "timeseries",
              (Target(agg_rate("notifications_total", keep=("receiver", "integration"),
                               fn="increase"), "{{receiver}} {{integration}}"),),
              unit="short", width=8),
        Panel("Notification failures", "timeseries",
              (Target(agg_rate("notifications_failed_total",
                               keep=("receiver", "integration", "reason"), fn="increase"),
                      "{{receiver}} {{integration}} {{reason}}"),), unit="short", width=8,
              thresholds=steps_above(GREEN, (0.5, ORANGE))),
        Panel("Notification queue", "timeseries",
              (Target(sel("notification_queue_length"), "queue {{instance}}"),),
              unit="short", width=8,
              thresholds=steps_above(GREEN, (threshold("NotificationQueueBacklog"), RED))),
    ))
    process = Row("The daemon", (
        Panel("Series in the store", "timeseries",
              (Target(sel("tsdb_series"), "series {{instance}}"),), unit="short", width=8),
        Panel("CPU", "timeseries",
              (Target(agg_rate("self_cpu_seconds_total", keep=("instance",)),
                      "cpu {{instance}}"),), unit="percentunit", width=8),
        Panel("Resident memory", "timeseries",
              (Target(sel("self_resident_memory_bytes"), "rss {{instance}}"),), unit="bytes",
              width=8),
        Panel("Version", "table",
              (Target(sel("build_info"), instant=True, format="table"),), width=24, height=5),
    ))
    return Dashboard(
        uid="inferwatch-self", title="inferwatch / inferwatch itself",
        description="The daemon's own health: ingest lag and bad lines, rule evaluation, "
                    "notification delivery and queue, its series store and resources.",
        rows=(ingest, rules, notifications, process), instance_metric=INSTANCE_METRIC)
