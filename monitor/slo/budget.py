"""Error-budget maths of one SLO over its minute buckets (SPEC §8, issue 7): SLI error ratios,
burn rates, the budget remaining, the time until it is exhausted, and the multiwindow
multi-burn-rate alerts. Pure: no I/O, no clock; the caller says which minute it is.

Definitions (Sloth `prometheus/v1` rules, SRE workbook ch. 5 "Alerting on SLOs"):

- error budget B = (100 - objective%) / 100, computed in that order as Sloth does
  (`100 - slo.Objective`, then `/ 100`: 99.9 gives 0.0009999999999999432, the number in
  Sloth's generated alert expressions).
- SLI error ratio over a window w: errors_w / total_w over the minutes of w with data (see
  monitor/slo/minutes.py); None when total_w == 0 (PromQL's 0/0 is NaN, which never alerts).
  Over the time window T this is the true event ratio, what Sloth records with
  `disableOptimized: true`; Sloth's default records the T ratio as the mean of the 5m ratios
  (`sum_over_time(ratio_rate5m[30d]) / count_over_time(...)`), which weighs quiet and busy
  minutes alike.
- burn rate over w: ratio_w / B (Sloth's `slo:current_burn_rate:ratio` is the 5m one,
  `slo:period_burn_rate:ratio` the one over T). Burn 1 spends exactly the budget in T.
- budget remaining: 1 - burn_T (`slo:period_error_budget_remaining:ratio`). Not clamped, as in
  Sloth: -0.5 means 150 % of the budget is spent (a clamped 0 would hide how far over it is).
  None while T has no traffic.
- time until the budget is exhausted at the current burn: remaining x T / burn_1h. At burn b,
  errors arrive at b x B x (events per unit time), and the budget left is remaining x B x
  total_T events; with the traffic rate taken as total_T / T this is remaining x T / b. It
  ignores old minutes leaving the rolling window (which gives budget back), so it is the
  pessimistic reading. 0 when remaining <= 0; None (never) when burn_1h is 0 or None (no
  traffic in the last hour) or remaining is None. The 1h window, not Sloth's 5m
  current burn: one failed request in a quiet 5 minutes would swing the forecast from
  "never" to "hours"; 1h is the shortest window the workbook finds significant (2 % of a
  30-day budget, the page-quick long window) and it follows a new burn within the hour.
  Example: 99.9 % over 30 d, 10,000,000 requests and 4,000 errors in the window (ratio
  0.0004, burn_T 0.4, remaining 0.6), the last hour at 1.44 % errors (burn_1h 14.4):
  0.6 x 43,200 min / 14.4 = 1,800 min = 30 h.
- objective 100 % (Sloth allows it): B = 0, and the numbers are PromQL's x / 0: burn +Inf
  with any error and NaN without, remaining -Inf or NaN; any error pages (ratio > 14.4 x 0).

Alerts, evaluated once a minute, with no `for` (Sloth's generated burn-rate rules have
none: internal/plugin/slo/core/alert_rules_v1/plugin.go sets only alert, expr, labels and
annotations), so each one fires at the first evaluation where its condition holds and resolves
at the first where it does not:

- page: (ratio_5m > 14.4 B and ratio_1h > 14.4 B) or (ratio_30m > 6 B and ratio_6h > 6 B)
- ticket: (ratio_2h > 3 B and ratio_1d > 3 B) or (ratio_6h > 1 B and ratio_3d > 1 B)
  Compared as ratio > factor x B, exactly Sloth's `max(ratio > (14.4 * B))` form, so a
  boundary case resolves as it does in Prometheus.
- half_spent: remaining <= 0.5, i.e. at least half the budget of the rolling window is
  spent, the form of Sloth's contrib ErrorBudgetExhausted rule
  (`slo:period_error_budget_remaining:ratio <= threshold`) at threshold 0.5, without its
  `for`. It fires when the consumption crosses 50 % and resolves when old errors leave the
  window (or good traffic dilutes them); crossing again fires again.

Factors. Sloth derives each factor from the share of the period's budget a pair may burn in
its long window (internal/alert/window.go `getBurnRateFactor`): factor = percent x period_h /
100 / long_h, with the workbook's percentages 2 % (1h), 5 % (6h), 10 % (1d), 10 % (3d). For
30 d this gives 14.4, 6, 3 and 1; for 28 d, 13.44, 5.6, 2.8 and 0.933. Sloth ships windows for
those two periods only (internal/alert/windows/google-28d.yaml, google-30d.yaml) and refuses
any other period unless given an AlertWindows file, since the same percentages over 7 d would
ticket at a burn of 0.23. `AlertWindows.for_period` does the same; `AlertWindows(...)` takes
custom pairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from monitor.slo.minutes import MinuteBuckets, WindowTotals

MINUTES_PER_DAY: Final = 1440
DEFAULT_TIME_WINDOW: Final = 30 * MINUTES_PER_DAY  # minutes
CURRENT_BURN_WINDOW: Final = 60  # minutes: the burn rate that forecasts exhaustion
HALF_SPENT_REMAINING: Final = 0.5

Severity = Literal["page", "ticket"]
AlertKind = Literal["page", "ticket", "half_spent"]
ALERT_KINDS: Final[tuple[AlertKind, ...]] = ("page", "ticket", "half_spent")


@dataclass(frozen=True, kw_only=True, slots=True)
class BurnRatePair:
    """One window pair: alert when both windows burn faster than the factor (Sloth's `Window`:
    the share of the period's budget the long window may consume)."""

    name: str
    severity: Severity
    error_budget_percent: float
    long_minutes: int
    short_minutes: int


WORKBOOK_PAIRS: Final = (
    BurnRatePair(name="page-quick", severity="page", error_budget_percent=2.0,
                 long_minutes=60, short_minutes=5),
    BurnRatePair(name="page-slow", severity="page", error_budget_percent=5.0,
                 long_minutes=6 * 60, short_minutes=30),
    BurnRatePair(name="ticket-quick", severity="ticket", error_budget_percent=10.0,
                 long_minutes=MINUTES_PER_DAY, short_minutes=2 * 60),
    BurnRatePair(name="ticket-slow", severity="ticket", error_budget_percent=10.0,
                 long_minutes=3 * MINUTES_PER_DAY, short_minutes=6 * 60),
)
SLOTH_PERIODS: Final = (28 * MINUTES_PER_DAY, 30 * MINUTES_PER_DAY)


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertWindows:
    """The SLO period and its burn-rate window pairs (Sloth's `Windows`)."""

    period_minutes: int
    pairs: tuple[BurnRatePair, ...] = WORKBOOK_PAIRS

    def __post_init__(self) -> None:
        if self.period_minutes < 1:
            raise ValueError(f"period_minutes: must be positive, got {self.period_minutes}")
        for pair in self.pairs:
            if not 0 < pair.short_minutes < pair.long_minutes:
                raise ValueError(f"pairs: {pair.name}: short window must be positive and "
                                 f"shorter than the long one")
            if not pair.error_budget_percent > 0:
                raise ValueError(f"pairs: {pair.name}: error_budget_percent must be positive")

    @classmethod
    def for_period(cls, period_minutes: int = DEFAULT_TIME_WINDOW) -> AlertWindows:
        """The workbook pairs for a period Sloth ships windows for (28 d, 30 d)."""
        if period_minutes not in SLOTH_PERIODS:
            raise ValueError(
                f"time window {window_label(period_minutes)} has no burn-rate alert windows: "
                "as in Sloth, only 28d and 30d are built in")
        return cls(period_minutes=period_minutes)

    def factor(self, pair: BurnRatePair) -> float:
        """The burn rate at which `pair` alerts (Sloth's getBurnRateFactor, same float order)."""
        hours_required = pair.error_budget_percent * (self.period_minutes / 60) / 100
        return hours_required / (pair.long_minutes / 60)

    @property
    def windows(self) -> tuple[int, ...]:
        """Every window length in minutes, the period included, ascending."""
        lengths = {self.period_minutes, CURRENT_BURN_WINDOW}
        for pair in self.pairs:
            lengths.update((pair.short_minutes, pair.long_minutes))
        return tuple(sorted(lengths))


def window_label(minutes: int) -> str:
    """A window as Prometheus's model.Duration.String writes it, the `window` label value and
    Sloth's rule-name suffix: `5m`, `1h`, `1d`, `30d`; `4w` for 28 d (weeks and years only
    when they divide it)."""
    out = []
    for index, (unit, name) in enumerate(((525_600, "y"), (10_080, "w"), (1440, "d"),
                                          (60, "h"), (1, "m"))):
        if index < 2 and minutes % unit:
            continue
        count, minutes = divmod(minutes, unit)
        if count:
            out.append(f"{count}{name}")
    return "".join(out) or "0s"


def error_budget(objective_percent: float) -> float:
    """B = (100 - objective%) / 100; raises ValueError unless 0 < objective% <= 100 (Sloth's
    pkg/common/validation/slo.go: "objective must >0 and <=100")."""
    if not 0.0 < objective_percent <= 100.0:
        raise ValueError(f"objective: must be above 0 and at most 100 percent, "
                         f"got {objective_percent}")
    return (100.0 - objective_percent) / 100.0


def error_ratio(errors: float, total: float) -> float | None:
    return errors / total if total > 0 else None


def burn_rate(ratio: float | None, budget: float) -> float | None:
    """ratio / budget; with a zero budget (objective 100 %) PromQL's x / 0: +Inf, or NaN for
    a ratio of 0."""
    if ratio is None:
        return None
    if budget == 0.0:
        return math.inf if ratio > 0 else math.nan
    return ratio / budget


def budget_remaining(period_burn: float | None) -> float | None:
    return None if period_burn is None else 1.0 - period_burn


def exhaustion_minutes(remaining: float | None, current_burn: float | None,
                       period_minutes: int) -> float | None:
    """Minutes until the budget is spent at `current_burn` (module docstring); None: never."""
    if remaining is None or math.isnan(remaining):
        return None
    if remaining <= 0:
        return 0.0
    if current_burn is None or not current_burn > 0:
        return None
    return remaining * period_minutes / current_burn


@dataclass(frozen=True, slots=True)
class WindowReading:
    """One window ending at the evaluated minute."""

    label: str
    minutes: int
    errors: float
    total: float
    minutes_with_data: int
    error_ratio: float | None
    burn_rate: float | None


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    kind: AlertKind
    since: int  # the minute it fired
    pairs: tuple[str, ...]  # the burn-rate pairs holding at the last evaluation


@dataclass(frozen=True, slots=True)
class SloState:
    """An SLO at one minute: what the SLO metrics of SPEC §6 and the alerts are made of."""

    minute: int
    objective_ratio: float
    error_budget: float
    windows: Mapping[str, WindowReading]  # by label, shortest first, the period included
    period: WindowReading
    remaining_ratio: float | None
    exhaustion_minutes: float | None
    alerts: Mapping[AlertKind, ActiveAlert]
    fired: tuple[AlertKind, ...] = ()
    resolved: tuple[AlertKind, ...] = ()


@dataclass
class BurnRateAlerts:
    """The page, ticket and half-spent alert states of one SLO (module docstring)."""

    windows: AlertWindows
    error_budget: float
    enabled: frozenset[AlertKind] = frozenset(ALERT_KINDS)
    _active: dict[AlertKind, ActiveAlert] = field(default_factory=dict, init=False)

    @property
    def active(self) -> Mapping[AlertKind, ActiveAlert]:
        return dict(self._active)

    def holding(self, readings: Mapping[int, WindowReading],
                remaining: float | None) -> dict[AlertKind, tuple[str, ...]]:
        """The enabled alerts whose condition holds, each with the pairs that hold."""
        pairs: dict[AlertKind, list[str]] = {}
        for pair in self.windows.pairs:
            threshold = self.windows.factor(pair) * self.error_budget
            short = readings[pair.short_minutes].error_ratio
            long = readings[pair.long_minutes].error_ratio
            if short is not None and long is not None and short > threshold \
                    and long > threshold:
                pairs.setdefault(pair.severity, []).append(pair.name)
        if remaining is not None and remaining <= HALF_SPENT_REMAINING:
            pairs["half_spent"] = []
        return {kind: tuple(names) for kind, names in pairs.items() if kind in self.enabled}

    def update(self, minute: int, holding: Mapping[AlertKind, tuple[str, ...]]
               ) -> tuple[tuple[AlertKind, ...], tuple[AlertKind, ...]]:
        """Move to `holding`; returns the alerts that fired and those that resolved."""
        fired = tuple(kind for kind in ALERT_KINDS if kind in holding
                      and kind not in self._active)
        resolved = tuple(kind for kind in ALERT_KINDS if kind in self._active
                         and kind not in holding)
        for kind in resolved:
            del self._active[kind]
        for kind, names in holding.items():
            previous = self._active.get(kind)
            self._active[kind] = ActiveAlert(kind, minute if previous is None
                                             else previous.since, names)
        return fired, resolved

    def restore(self, kind: AlertKind, since: int) -> None:
        """An alert that was active before a restart, so it does not fire a second time."""
        self._active[kind] = ActiveAlert(kind, since, ())


class SloBudget:
    """One SLO's minute buckets, budget maths and alert states. `add` counts, `evaluate`
    reads: both take minute numbers (epoch seconds / 60, see monitor/slo/minutes.py)."""

    def __init__(self, *, objective_percent: float, windows: AlertWindows | None = None,
                 alerts: Iterable[AlertKind] = ALERT_KINDS) -> None:
        self.windows = windows if windows is not None else AlertWindows.for_period()
        self.objective_ratio = objective_percent / 100.0
        self.error_budget = error_budget(objective_percent)
        self.buckets = MinuteBuckets(self.windows.windows)
        self._labels = {w: window_label(w) for w in self.buckets.windows}
        self.alerts = BurnRateAlerts(self.windows, self.error_budget, frozenset(alerts))

    def add(self, minute: int, errors: float, total: float) -> bool:
        """Counts for `minute` (late ones too); False if older than the buckets keep."""
        return self.buckets.add(minute, errors, total)

    def evaluate(self, now_minute: int) -> SloState:
        """The state at `now_minute` (not before the latest minute added or evaluated)."""
        self.buckets.advance(now_minute)
        readings = {w: self._reading(self.buckets.totals(w)) for w in self.buckets.windows}
        period = readings[self.windows.period_minutes]
        remaining = budget_remaining(period.burn_rate)
        exhaustion = exhaustion_minutes(remaining, readings[CURRENT_BURN_WINDOW].burn_rate,
                                        self.windows.period_minutes)
        fired, resolved = self.alerts.update(now_minute,
                                             self.alerts.holding(readings, remaining))
        return SloState(
            minute=now_minute, objective_ratio=self.objective_ratio,
            error_budget=self.error_budget,
            windows={reading.label: reading for reading in readings.values()}, period=period,
            remaining_ratio=remaining, exhaustion_minutes=exhaustion,
            alerts=self.alerts.active, fired=fired, resolved=resolved)

    def _reading(self, totals: WindowTotals) -> WindowReading:
        ratio = error_ratio(totals.errors, totals.total)
        return WindowReading(self._labels[totals.minutes], totals.minutes, totals.errors,
                             totals.total, totals.minutes_with_data, ratio,
                             burn_rate(ratio, self.error_budget))
