"""The data model of SLOs (Sloth's model.PromSLO and its parts) and their burn-rate windows.

`SloFile` > `SloGroup` (one spec document: a service) > `Slo`, with its SLI (`SliEvents` or
`SliRaw`) and its `AlertingSpec`. `Slo.error_ratio_query(window)` is the SLI's PromQL for a
window as Sloth's SLI recording rule writes it, and `Slo.alert_rule(kind)` the page, ticket or
budget alert with its labels and annotations merged as Sloth merges them
(`internal/storage/io/sloth.go`, `internal/plugin/slo/core/alert_rules_v1/plugin.go`).

The burn-rate windows are those of Sloth's built-in catalogue
(`internal/alert/windows/google-{30d,28d}.yaml`, Google's SRE workbook): for a 30-day period
page at 14.4x over 1h and 5m or 6x over 6h and 30m, ticket at 3x over 1d and 2h or 1x over 3d
and 6h; Sloth derives each factor from the share of the period's budget it spends
(`internal/alert/window.go`), so 28 days gives 13.44x, 5.6x, 2.8x and 0.93x.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

VERSION = "prometheus/v1"
DEFAULT_TIME_WINDOW_S = 30 * 86400
BUDGET_ALERT_SUFFIX = "BudgetHalfSpent"
BUDGET_ALERT_THRESHOLD = 0.5  # of the period's error budget remaining
WINDOW_VAR_RE = re.compile(r"\{\{ *\.window *\}\}")  # Sloth's TplSLIQueryWindowVarRegex
LABEL_ID, LABEL_SLO, LABEL_SERVICE = "sloth_id", "sloth_slo", "sloth_service"
LABEL_SEVERITY = "sloth_severity"

AlertKind = Literal["page", "ticket", "budget"]


# --- burn-rate windows -----------------------------------------------------------------------


@dataclass(frozen=True)
class BurnRateWindow:
    """One pair of a multiwindow alert: both windows' error ratios above `factor` x budget.

    `budget_percent` is the share of the period's error budget that burning at `factor` for
    `long_s` spends; Sloth derives the factor from it (`internal/alert/window.go`).
    """

    short_s: int
    long_s: int
    budget_percent: float
    factor: float


@dataclass(frozen=True)
class AlertWindows:
    """The four pairs of the SRE workbook's multiwindow, multi-burn-rate alerts."""

    period_s: int
    page_quick: BurnRateWindow
    page_slow: BurnRateWindow
    ticket_quick: BurnRateWindow
    ticket_slow: BurnRateWindow

    def windows_s(self) -> tuple[int, ...]:
        """Every short and long window once, shortest first (the SLI recording windows)."""
        pairs = (self.page_quick, self.page_slow, self.ticket_quick, self.ticket_slow)
        return tuple(sorted({s for pair in pairs for s in (pair.short_s, pair.long_s)}))


_HOUR = 3600
# (budget percent, short, long) of page quick, page slow, ticket quick, ticket slow: Google's
# recommended parameters, as Sloth's built-in catalogue has them for both of its periods.
_GOOGLE = ((2.0, 300, _HOUR), (5.0, 1800, 6 * _HOUR), (10.0, 2 * _HOUR, 24 * _HOUR),
           (10.0, 6 * _HOUR, 72 * _HOUR))
SUPPORTED_PERIODS_S = (28 * 86400, 30 * 86400)


def _burn_window(period_s: int, budget_percent: float, short_s: int,
                 long_s: int) -> BurnRateWindow:
    # Sloth's getBurnRateFactor, in its order of float operations, so the factors print alike.
    hours_to_consume = budget_percent * (period_s / _HOUR) / 100
    return BurnRateWindow(short_s, long_s, budget_percent, hours_to_consume / (long_s / _HOUR))


def alert_windows(period_s: int) -> AlertWindows:
    """The windows for an SLO period; ValueError for a period outside Sloth's catalogue."""
    if period_s not in SUPPORTED_PERIODS_S:
        raise ValueError(f"no burn-rate windows for a period of {prom_duration(period_s)}")
    page_quick, page_slow, ticket_quick, ticket_slow = (
        _burn_window(period_s, *params) for params in _GOOGLE)
    return AlertWindows(period_s, page_quick, page_slow, ticket_quick, ticket_slow)


def prom_duration(seconds: float) -> str:
    """A duration as Prometheus's model.Duration prints it: `30d`, `4w` (28d), `1h30m`.

    Years and weeks are used only when they divide the duration exactly."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    text = ""
    for unit, size, exact in (("y", 365 * 86_400_000, True), ("w", 7 * 86_400_000, True),
                              ("d", 86_400_000, False), ("h", 3_600_000, False),
                              ("m", 60_000, False), ("s", 1000, False), ("ms", 1, False)):
        if exact and millis % size:
            continue
        count, millis = divmod(millis, size)
        if count:
            text += f"{count}{unit}"
    return text


def render_window(template: str, window: str) -> str:
    """A query template with every `{{.window}}` replaced by `window` (e.g. "5m")."""
    return WINDOW_VAR_RE.sub(window, template)


# --- the data model --------------------------------------------------------------------------


@dataclass(frozen=True)
class SliEvents:
    """Bad events over all events: `error_query` / `total_query`, both with `{{.window}}`."""

    error_query: str
    total_query: str

    def error_ratio_query(self, window: str) -> str:
        """The error ratio over `window`, exactly as Sloth's SLI recording rule writes it."""
        return f"({render_window(self.error_query, window)})\n/\n" \
               f"({render_window(self.total_query, window)})\n"


@dataclass(frozen=True)
class SliRaw:
    """An error ratio (0..1) computed by the query itself."""

    error_ratio_template: str

    def error_ratio_query(self, window: str) -> str:
        """The error ratio over `window`, exactly as Sloth's SLI recording rule writes it."""
        return f"({render_window(self.error_ratio_template, window)})"


@dataclass(frozen=True)
class AlertSpec:
    """`page_alert`, `ticket_alert` or (our extension) `budget_alert`."""

    disable: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertingSpec:
    """The `alerting` block: the alerts' name, common labels and annotations, each alert."""

    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    page_alert: AlertSpec = field(default_factory=AlertSpec)
    ticket_alert: AlertSpec = field(default_factory=AlertSpec)
    budget_alert: AlertSpec | None = None  # None: not written (on when `name` is set)

    def budget_alert_enabled(self) -> bool:
        if self.budget_alert is None:
            return bool(self.name)
        return not self.budget_alert.disable


@dataclass(frozen=True)
class AlertRule:
    """One alert an SLO raises, labels and annotations merged as Sloth merges them."""

    kind: AlertKind
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


_SERVICE_SLO = f"{{{{$labels.{LABEL_SERVICE}}}}} {{{{$labels.{LABEL_SLO}}}}}"
_BURN_SUMMARY = f"{_SERVICE_SLO} SLO error budget burn rate is over expected."
# Sloth's alert_rules plugin adds title and summary; the spec's annotations override them.
_DEFAULT_ANNOTATIONS: dict[AlertKind, dict[str, str]] = {
    "page": {"title": f"(page) {_SERVICE_SLO} SLO error budget burn rate is too fast.",
             "summary": _BURN_SUMMARY},
    "ticket": {"title": f"(ticket) {_SERVICE_SLO} SLO error budget burn rate is too fast.",
               "summary": _BURN_SUMMARY},
    "budget": {"title": f"(info) {_SERVICE_SLO} SLO has spent half of its error budget.",
               "summary": f"{_SERVICE_SLO} SLO has less than half of its error budget left "
                          "for the period."},
}


@dataclass(frozen=True)
class Slo:
    """One SLO, as Sloth's model.PromSLO: `labels` are the spec's merged with the SLO's own."""

    id: str
    name: str
    service: str
    description: str
    objective: float  # percent, 0 < objective <= 100
    labels: Mapping[str, str]
    sli: SliEvents | SliRaw
    alerting: AlertingSpec
    time_window_s: int = DEFAULT_TIME_WINDOW_S
    file: str = ""
    line: int = 0

    @property
    def objective_ratio(self) -> float:
        return self.objective / 100

    @property
    def error_budget_ratio(self) -> float:
        """The allowed error ratio, computed as Sloth's alerts compute it: (100 - objective)
        / 100 (0.0009999999999999432 for 99.9)."""
        return (100 - self.objective) / 100

    @property
    def alert_windows(self) -> AlertWindows:
        return alert_windows(self.time_window_s)

    def id_labels(self) -> dict[str, str]:
        """The labels that identify this SLO's series and alerts."""
        return {LABEL_ID: self.id, LABEL_SLO: self.name, LABEL_SERVICE: self.service}

    def error_ratio_query(self, window: str) -> str:
        """The SLI's error ratio over `window` (a Prometheus duration such as "5m")."""
        return self.sli.error_ratio_query(window)

    def alert_rule(self, kind: AlertKind) -> AlertRule | None:
        """The page, ticket or budget alert with its merged labels and annotations; None when
        disabled."""
        alerting = self.alerting
        if kind == "budget":
            if not alerting.budget_alert_enabled():
                return None
            alert = alerting.budget_alert or AlertSpec()
            name, severity = alerting.name + BUDGET_ALERT_SUFFIX, "info"
        else:
            alert = alerting.page_alert if kind == "page" else alerting.ticket_alert
            if alert.disable:
                return None
            name, severity = alerting.name, kind
        labels = {LABEL_SEVERITY: severity, **alerting.labels, **alert.labels}
        annotations = {**_DEFAULT_ANNOTATIONS[kind], **alerting.annotations, **alert.annotations}
        return AlertRule(kind, name, labels, annotations)


@dataclass(frozen=True)
class SloGroup:
    """One spec document: a service and its SLOs."""

    service: str
    labels: Mapping[str, str]
    slos: tuple[Slo, ...]
    line: int = 0


@dataclass(frozen=True)
class SloFile:
    """A spec file: one group per YAML document."""

    file: str
    groups: tuple[SloGroup, ...]

    @property
    def slos(self) -> tuple[Slo, ...]:
        return tuple(slo for group in self.groups for slo in group.slos)
