"""What the status page (`GET /`, `GET /rules`) shows: one immutable snapshot of the daemon.

The page handler reads a `StatusSnapshot` through the `StatusSource` protocol and only
renders it, so it is tested with a hand-built snapshot; the daemon's implementation
(monitor/status_snapshot.py) gathers the snapshot from the live objects. Every field is plain
data: numbers may be NaN or infinite and texts may hold anything a log line or a label
carried; the template formats and escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

LabelPairs = tuple[tuple[str, str], ...]
AlertOrigin = Literal["rule", "budget", "slo", "other"]


@dataclass(frozen=True, kw_only=True)
class AlertRow:
    """A pending or firing alert."""

    name: str
    state: Literal["firing", "pending"]
    labels: LabelPairs  # without alertname
    active_since: float | None  # epoch seconds
    value: float | None  # the rule expression's value; None where there is none
    summary: str = ""  # the summary (else description) annotation
    origin: AlertOrigin = "rule"
    link: str = ""  # where its rule, budget or SLO is shown; "" when unknown
    silenced_by: tuple[str, ...] = ()
    inhibited: bool = False


@dataclass(frozen=True, kw_only=True)
class RuleRow:
    name: str
    kind: Literal["alerting", "recording"]
    expr: str
    anchor: str  # the element id on the rules page
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: LabelPairs = ()
    annotations: LabelPairs = ()
    state: str = ""  # alerting rules: inactive, pending or firing
    active: int = 0  # alerting rules: alerts pending or firing
    health: str = "unknown"  # ok, err or unknown, as Prometheus
    last_error: str = ""
    last_evaluation: float = 0.0  # epoch seconds; 0: never


@dataclass(frozen=True, kw_only=True)
class RuleGroupRow:
    name: str
    file: str
    interval_s: float
    rules: tuple[RuleRow, ...]
    last_evaluation: float = 0.0
    last_duration_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SilenceRow:
    id: str
    state: str  # active or pending (expired ones are not shown)
    matchers: tuple[str, ...]  # each as `name="value"`, `name=~"re"` ...
    starts_at: float
    ends_at: float
    comment: str
    created_by: str


@dataclass(frozen=True, kw_only=True)
class BudgetRow:
    name: str
    anchor: str
    period: str  # day, week or month
    period_label: str  # "2026-01-10", "2026-W02", "2026-01"
    period_end: float  # epoch seconds
    currency: str
    spent: float
    limit: float
    forecast: float
    thresholds: tuple[float, ...] = ()  # fractions of the limit
    spent_text: str = ""  # exact amounts as the ledger keeps them
    limit_text: str = ""
    forecast_text: str = ""
    firing: tuple[str, ...] = ()  # names of its active alerts


@dataclass(frozen=True, kw_only=True)
class SloRow:
    id: str
    anchor: str
    service: str
    name: str
    objective_ratio: float
    time_window_s: int
    remaining_ratio: float | None  # None: no data yet
    burn_rates: tuple[tuple[str, float], ...] = ()  # (window, burn rate), shortest first
    exhaustion_s: float | None = None  # None: not being exhausted
    firing: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SourceRow:
    name: str
    schema: str
    ready: bool
    lag_bytes: float | None
    files: float | None
    parsed: float = 0.0
    malformed: float = 0.0
    oversized: float = 0.0
    filtered: float = 0.0
    read_errors: float = 0.0


@dataclass(frozen=True, kw_only=True)
class GpuRow:
    gpu: str  # index
    uuid: str
    name: str
    up: bool | None  # None: gpu_up not reported
    utilization_ratio: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    temperature_celsius: float | None
    power_watts: float | None = None
    driver_version: str = ""


@dataclass(frozen=True, kw_only=True)
class DaemonRow:
    version: str
    state: str
    started_at: float
    uptime_s: float
    ready: bool
    catching_up: tuple[str, ...] = ()
    listen_url: str = ""
    ledger_writer: str = ""  # the cost ledger writer process and its backlog; "" when none


@dataclass(frozen=True, kw_only=True)
class StatusSnapshot:
    taken_at: float  # epoch seconds
    timezone: str  # IANA name the page shows times in
    daemon: DaemonRow
    alerts: tuple[AlertRow, ...] = ()  # firing first, then pending
    alerts_left_out: int = 0  # pending or firing alerts beyond the ones in `alerts`
    rule_groups: tuple[RuleGroupRow, ...] = ()
    silences: tuple[SilenceRow, ...] = ()
    budgets: tuple[BudgetRow, ...] = ()
    slos: tuple[SloRow, ...] = ()
    sources: tuple[SourceRow, ...] = ()
    gpus: tuple[GpuRow, ...] = ()
    notes: tuple[str, ...] = field(default=())  # sections that could not be read, and why


class StatusSource(Protocol):
    """What the status page needs from the daemon."""

    def snapshot(self) -> StatusSnapshot: ...
