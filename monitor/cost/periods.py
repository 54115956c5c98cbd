"""Budget periods: the calendar day, ISO week or month containing an instant, in a time zone.

A period is the half-open interval of epoch seconds [start, end). It starts at the first
instant of its first local date: local midnight on an ordinary day, Monday 00:00 for a week,
the 1st 00:00 for a month. Bounds are computed from the zone's rules, never by adding 86 400 s,
so a day across a DST change lasts 23 or 25 hours.

Where a zone's DST change skips local midnight (America/Havana, America/Santiago and
historically Asia/Beirut spring forward from 00:00 to 01:00) the date starts at the first
instant that carries it — the moment of the change, local 01:00. A date a zone skipped
entirely (Pacific/Apia, 2011-12-30) is part of no period; the period before it ends where the
next existing date begins. Where a zone sets its clocks back across midnight (00:30 back to
23:30), the repeated half hour after the first midnight belongs to the new day, although its
wall clock shows the old date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["day", "week", "month"]

# No zone has shifted its clock by more than a day; a boundary search never looks further.
_SEARCH_S = 2 * 86_400


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) in epoch seconds; `label` names it: "2026-01-10", "2026-W02", "2026-01"."""

    kind: PeriodKind
    start: float
    end: float
    label: str

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end

    @property
    def length(self) -> float:
        return self.end - self.start


def period_at(kind: PeriodKind, t: float, zone: ZoneInfo) -> Period:
    """The period of `kind` in `zone` that contains the instant `t`."""
    first = _first_date(kind, datetime.fromtimestamp(t, zone).date())
    period = _period_from(kind, first, zone)
    # Only a clock set back across midnight puts t outside the period of its wall date.
    while t >= period.end:
        period = _period_from(kind, _next_date(kind, first), zone)
        first = _next_date(kind, first)
    return period


def days_of(period: Period, zone: ZoneInfo) -> list[str]:
    """The local dates (ISO, "2026-01-10") that the period covers, in order."""
    first = datetime.fromtimestamp(period.start, zone).date()
    last = datetime.fromtimestamp(period.end - 1, zone).date()
    days = []
    while first <= last:
        days.append(first.isoformat())
        first += timedelta(days=1)
    return days


def local_day(t: float, zone: ZoneInfo) -> str:
    """The local date of `t` as the ledger's daily roll-ups name it ("2026-01-10")."""
    return datetime.fromtimestamp(t, zone).date().isoformat()


def first_instant(day: date, zone: ZoneInfo) -> float:
    """The first instant whose local date is `day` or later (local midnight, DST-safe)."""
    guess = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    if _reached(guess, day, zone) and not _reached(guess - 1, day, zone):
        return guess
    # Midnight does not exist that day, and the zone's rule for the gap put the guess off the
    # boundary: find the change of date by bisection over whole seconds.
    lo, hi = int(guess) - _SEARCH_S, int(guess) + _SEARCH_S  # not reached at lo, reached at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _reached(mid, day, zone):
            hi = mid
        else:
            lo = mid
    return float(hi)


def _reached(t: float, day: date, zone: ZoneInfo) -> bool:
    return datetime.fromtimestamp(t, zone).date() >= day


def _first_date(kind: PeriodKind, day: date) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_date(kind: PeriodKind, first: date) -> date:
    if kind == "day":
        return first + timedelta(days=1)
    if kind == "week":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _label(kind: PeriodKind, first: date) -> str:
    if kind == "day":
        return first.isoformat()
    if kind == "week":
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{first.year}-{first.month:02d}"


def _period_from(kind: PeriodKind, first: date, zone: ZoneInfo) -> Period:
    return Period(kind, first_instant(first, zone), first_instant(_next_date(kind, first), zone),
                  _label(kind, first))


class LocalDays:
    """The calendar day (in one time zone) of an epoch time, cached by day boundaries."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.start = self.end = 0.0  # the cached day: [start, end) is `day`
        self.day = ""

    def __call__(self, t: float) -> str:
        return self.bounds(t)[2]

    def bounds(self, t: float) -> tuple[float, float, str]:
        """(start, end, ISO date) of the local day holding `t`."""
        if not self.start <= t < self.end:
            local = datetime.fromtimestamp(t, self.zone)
            midnight = datetime(local.year, local.month, local.day, tzinfo=self.zone)
            following = midnight.date() + timedelta(days=1)
            self.start = midnight.timestamp()
            self.end = datetime(following.year, following.month, following.day,
                                tzinfo=self.zone).timestamp()
            self.day = midnight.date().isoformat()
        return self.start, self.end, self.day
