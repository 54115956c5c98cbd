"""A budget's spend over its current period and recent hours, and its period-end forecast.

`BudgetSpend` holds what a budget has spent in its current period, per local day (from the
`cost_daily` roll-ups), and in the last 25 hours per minute (from the `ledger` rows). The
budget tracker keeps one per budget up to date; `forecast_at` builds one from a state file,
so `cost report` shows the forecast the daemon exports.

Forecast: projected = spent + rate x (period end - now), with rate = the lower of
spend / length over a long window and over a short window. The long window is the last 6 h
of a day period, and for week and month periods the whole local days since 3 d (week) or
7 d (month) ago; the short window is the last 1 h, 6 h or 24 h. Both start no earlier than
the period and than the first data (`history_since`). Taking the lower rate makes a burst
that has stopped (the short window is quiet) or a quiet start (the long window) project low,
while a steady or a rising burn projects at the rate it has kept. Until 10 % of the period has
passed and the window holds an hour of data, nothing is projected: the forecast is the spend
so far.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from monitor.config import BudgetConfig
from monitor.cost import ledger_rows
from monitor.cost.money import EXACT, ZERO
from monitor.cost.periods import Period, days_of, first_instant, local_day, period_at

HOUR_S = 3600.0
DAY_S = 86_400.0
LONG_WINDOW_S = {"day": 6 * HOUR_S, "week": 3 * DAY_S, "month": 7 * DAY_S}
SHORT_WINDOW_S = {"day": HOUR_S, "week": 6 * HOUR_S, "month": DAY_S}
FORECAST_GUARD_FRACTION = 0.1  # of the period, before anything is projected
FORECAST_MIN_DATA_S = HOUR_S
MINUTES_KEPT_S = 25 * HOUR_S + 60
HISTORY_KEY = "budget_history_since"  # in cost_meta: when the budgets first ran


class MinuteSpend:
    """Spend per minute, for windows within the last 25 hours. Bucket k holds the spend of
    (60(k-1), 60k], so a window (after, until] on whole minutes is exact."""

    def __init__(self) -> None:
        self.buckets: dict[int, Decimal] = {}

    def add(self, t: float, amount: Decimal) -> None:
        minute = _ceil_minute(t)
        self.buckets[minute] = EXACT.add(self.buckets.get(minute, ZERO), amount)

    def total(self, after: float, until: float) -> Decimal:
        """The spend of (after, until], to the minute."""
        lo, hi = _ceil_minute(after), _ceil_minute(until)
        total = ZERO
        for minute, amount in self.buckets.items():
            if lo < minute <= hi:
                total = EXACT.add(total, amount)
        return total

    def prune(self, before: float) -> None:
        cut = _ceil_minute(before)
        for minute in [m for m in self.buckets if m < cut]:
            del self.buckets[minute]


def _ceil_minute(t: float) -> int:
    return -int(-t // 60)


@dataclass
class BudgetSpend:
    """One budget's spend in its current period, and per minute over the last 25 hours."""

    config: BudgetConfig
    period: Period
    days: dict[str, Decimal] = field(default_factory=dict)
    minutes: MinuteSpend = field(default_factory=MinuteSpend)
    spent: Decimal = ZERO

    def matches(self, source: str, model: str, user: str) -> bool:
        match = self.config.match
        return ((match.source is None or match.source == source)
                and (match.model is None or match.model == model)
                and (match.user is None or match.user == user))

    def add(self, t: float, amount: Decimal, zone: ZoneInfo) -> None:
        """A committed entry that matches: the recent minutes, and the period if it is in it
        (an entry of an earlier period, a late line, is left to that period's roll-up)."""
        self.minutes.add(t, amount)
        if t in self.period:
            day = local_day(t, zone)
            self.days[day] = EXACT.add(self.days.get(day, ZERO), amount)
            self.spent = EXACT.add(self.spent, amount)


@dataclass(frozen=True)
class Projection:
    """A forecast and the rate it was made with."""

    forecast: Decimal
    projected: bool  # False while the guards hold: forecast is the spend so far
    rate_per_hour: Decimal


def project(state: BudgetSpend, now: float, history_since: float, zone: ZoneInfo) -> Projection:
    """The forecast of the module docstring for `state` at `now`."""
    period, kind = state.period, state.config.period
    observed_from = max(period.start, history_since)
    if now - period.start < FORECAST_GUARD_FRACTION * period.length \
            or now - observed_from < FORECAST_MIN_DATA_S or now >= period.end:
        return Projection(state.spent, False, ZERO)
    long_start = max(observed_from, now - LONG_WINDOW_S[kind])
    if kind != "day":
        long_start = max(observed_from, first_instant(
            datetime.fromtimestamp(now - LONG_WINDOW_S[kind], zone).date(), zone))
    short_start = max(observed_from, now - SHORT_WINDOW_S[kind])
    rates = [_spend_since(state, start, now, zone) / Decimal(repr(now - start))
             for start in (long_start, short_start)]
    rate = min(rates)
    remaining = Decimal(repr(period.end - now))
    return Projection(EXACT.add(state.spent, rate * remaining), True, rate * 3600)


_LEDGER_SQL = ("SELECT t, amount_units, amount_places FROM ledger WHERE id BETWEEN ? AND ? "
               "AND amount_units IS NOT NULL AND t >= ? AND currency = ?")
_DAILY_SQL = "SELECT day, amount FROM cost_daily WHERE day >= ? AND day <= ? AND currency = ?"


def read_history_since(connection: sqlite3.Connection, now: float) -> float:
    """Since when spend is known: the first ledger row, or the budgets' first start."""
    row = connection.execute("SELECT value FROM cost_meta WHERE key = ?",
                             (HISTORY_KEY,)).fetchone()
    first_row = ledger_rows.oldest_time(connection)
    return min(now, float(row[0]) if row is not None else now,
               first_row if first_row is not None else now)


def read_spend(connection: sqlite3.Connection, spend: BudgetSpend, *, currency: str,
               zone: ZoneInfo, now: float, minutes: bool = True) -> None:
    """Fill `spend` for its budget's period at `now` from the roll-ups and, with `minutes`,
    its last 25 hours from the ledger rows."""
    budget = spend.config
    pairs = [(name, value) for name in ("model", "user", "source")
             if (value := getattr(budget.match, name)) is not None]
    where, params = "".join(f" AND {name} = ?" for name, _ in pairs), [v for _, v in pairs]
    spend.period = period_at(budget.period, now, zone)
    if minutes:
        spend.minutes = MinuteSpend()
        since = now - MINUTES_KEPT_S
        ids = ledger_rows.id_range(connection, since)
        for t, units, places in () if ids is None else connection.execute(
                _LEDGER_SQL + where, (*ids, since, currency, *params)):
            amount = ledger_rows.amount_of(units, places)
            if amount is not None:  # never None: the query asks for amounts
                spend.minutes.add(t, amount)
    days = days_of(spend.period, zone)
    spend.days = {}
    for day, amount in connection.execute(_DAILY_SQL + where,
                                          (days[0], days[-1], currency, *params)):
        spend.days[day] = EXACT.add(spend.days.get(day, ZERO), Decimal(amount))
    spend.spent = _sum(spend.days.values())


def forecast_at(connection: sqlite3.Connection, budget: BudgetConfig, *, currency: str,
                zone: ZoneInfo, now: float) -> Decimal:
    """The forecast the daemon exports for `budget`, computed from the state file (for
    `cost report`)."""
    spend = BudgetSpend(budget, period_at(budget.period, now, zone))
    read_spend(connection, spend, currency=currency, zone=zone, now=now)
    return project(spend, now, read_history_since(connection, now), zone).forecast


def _spend_since(state: BudgetSpend, start: float, now: float, zone: ZoneInfo) -> Decimal:
    if start >= now - (MINUTES_KEPT_S - 120):
        return state.minutes.total(start, now)
    first = local_day(start, zone)
    total = ZERO
    for day, amount in state.days.items():
        if day >= first:
            total = EXACT.add(total, amount)
    return total


def _sum(amounts: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for amount in amounts:
        total = EXACT.add(total, amount)
    return total
