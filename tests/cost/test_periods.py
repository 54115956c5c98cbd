"""Budget periods (monitor/cost/periods.py): local day, ISO week and month bounds across time
zones and DST changes, their labels, and the days they cover."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from monitor.cost.periods import Period, days_of, first_instant, local_day, period_at

UTC_ZONE = ZoneInfo("UTC")
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600.0


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_shanghai_days_start_at_16_utc() -> None:
    t = utc(2026, 1, 10, 17, 0)  # 01:00 on the 11th in Shanghai
    here = period_at("day", t, SHANGHAI)
    there = period_at("day", t, UTC_ZONE)
    assert here == Period("day", utc(2026, 1, 10, 16), utc(2026, 1, 11, 16), "2026-01-11")
    assert there == Period("day", utc(2026, 1, 10), utc(2026, 1, 11), "2026-01-10")
    before = period_at("day", utc(2026, 1, 10, 15, 59, 59), SHANGHAI)
    assert before.label == "2026-01-10" and before.end == here.start
    assert local_day(t, SHANGHAI) == "2026-01-11" and local_day(t, UTC_ZONE) == "2026-01-10"


def test_a_period_holds_its_start_and_not_its_end() -> None:
    period = period_at("day", utc(2026, 1, 10, 12), UTC_ZONE)
    assert period.start in period and period.end - 0.001 in period and period.end not in period
    assert period_at("day", period.start, UTC_ZONE) == period
    assert period_at("day", period.end, UTC_ZONE).label == "2026-01-11"


def test_new_york_days_across_both_dst_changes_in_2026() -> None:
    spring = period_at("day", utc(2026, 3, 8, 12), NEW_YORK)
    assert spring.label == "2026-03-08"
    assert spring.start == utc(2026, 3, 8, 5)  # 00:00 EST
    assert spring.end == utc(2026, 3, 9, 4)  # 00:00 EDT
    assert spring.length == 23 * HOUR
    autumn = period_at("day", utc(2026, 11, 1, 12), NEW_YORK)
    assert autumn.start == utc(2026, 11, 1, 4) and autumn.end == utc(2026, 11, 2, 5)
    assert autumn.length == 25 * HOUR
    ordinary = period_at("day", utc(2026, 7, 1, 12), NEW_YORK)
    assert ordinary.length == 24 * HOUR
    # The repeated hour (01:00-02:00 twice) is in the same day, both times.
    assert period_at("day", utc(2026, 11, 1, 5, 30), NEW_YORK) == autumn
    assert period_at("day", utc(2026, 11, 1, 6, 30), NEW_YORK) == autumn


def test_new_york_weeks_across_both_dst_changes() -> None:
    spring = period_at("week", utc(2026, 3, 8, 12), NEW_YORK)  # a Sunday
    assert spring.label == "2026-W10"
    assert spring.start == utc(2026, 3, 2, 5)  # Monday 00:00 EST
    assert spring.end == utc(2026, 3, 9, 4)  # Monday 00:00 EDT
    assert spring.length == 7 * 24 * HOUR - HOUR
    autumn = period_at("week", utc(2026, 10, 28), NEW_YORK)
    assert autumn.label == "2026-W44"
    assert autumn.start == utc(2026, 10, 26, 4) and autumn.end == utc(2026, 11, 2, 5)
    assert autumn.length == 7 * 24 * HOUR + HOUR
    assert days_of(autumn, NEW_YORK) == [
        (date(2026, 10, 26) + timedelta(days=i)).isoformat() for i in range(7)]


@pytest.mark.parametrize(("year", "month", "days"), [
    (2026, 1, 31), (2026, 2, 28), (2028, 2, 29), (2026, 4, 30), (2026, 12, 31)])
def test_month_lengths(year: int, month: int, days: int) -> None:
    period = period_at("month", utc(year, month, 15, 12), UTC_ZONE)
    assert period.label == f"{year}-{month:02d}"
    assert period.start == utc(year, month, 1)
    assert period.length == days * 24 * HOUR
    covered = days_of(period, UTC_ZONE)
    assert len(covered) == days
    assert covered[0] == f"{year}-{month:02d}-01"
    assert covered[-1] == f"{year}-{month:02d}-{days:02d}"


def test_new_york_march_is_an_hour_short_and_december_rolls_into_january() -> None:
    march = period_at("month", utc(2026, 3, 20), NEW_YORK)
    assert march.length == 31 * 24 * HOUR - HOUR
    december = period_at("month", utc(2026, 12, 31, 12), SHANGHAI)
    assert december.label == "2026-12"
    assert december.end == utc(2026, 12, 31, 16)  # 2027-01-01 00:00 in Shanghai
    assert period_at("month", december.end, SHANGHAI).label == "2027-01"


@pytest.mark.parametrize(("day", "label"), [
    (date(2026, 1, 10), "2026-W02"),   # a Saturday; its Monday is 2026-01-05
    (date(2026, 1, 4), "2026-W01"),    # a Sunday
    (date(2025, 12, 29), "2026-W01"),  # ISO week 1 of 2026 starts in 2025
    (date(2027, 1, 1), "2026-W53"),    # 2026 has 53 ISO weeks
])
def test_week_labels_are_iso_weeks_of_their_monday(day: date, label: str) -> None:
    t = datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp()
    period = period_at("week", t, UTC_ZONE)
    assert period.label == label
    monday = datetime.fromtimestamp(period.start, UTC).date()
    assert monday.weekday() == 0 and monday <= day < monday + timedelta(days=7)


def test_labels() -> None:
    t = utc(2026, 1, 10, 12)
    assert period_at("day", t, UTC_ZONE).label == "2026-01-10"
    assert period_at("week", t, UTC_ZONE).label == "2026-W02"
    assert period_at("month", t, UTC_ZONE).label == "2026-01"


def test_a_day_whose_midnight_does_not_exist_starts_at_the_change() -> None:
    # Cuba springs forward at 00:00 to 01:00 (second Sunday of March).
    havana = ZoneInfo("America/Havana")
    period = period_at("day", utc(2026, 3, 8, 12), havana)
    assert period.label == "2026-03-08"
    assert period.start == utc(2026, 3, 8, 5)  # 00:00 CST = the change = 01:00 CDT
    assert datetime.fromtimestamp(period.start, havana).hour == 1
    assert datetime.fromtimestamp(period.start - 1, havana).date() == date(2026, 3, 7)
    assert period.length == 23 * HOUR
    assert period_at("day", period.start - 1, havana).end == period.start


def test_a_skipped_date_belongs_to_no_period() -> None:
    # Samoa skipped 2011-12-30 when it crossed the date line.
    apia = ZoneInfo("Pacific/Apia")
    before = period_at("day", utc(2011, 12, 30, 9), apia)  # 23:00 on the 29th
    assert before.label == "2011-12-29"
    assert before.end == utc(2011, 12, 30, 10)
    after = period_at("day", before.end, apia)
    assert after.label == "2011-12-31" and after.start == before.end
    week = period_at("week", utc(2011, 12, 30, 9), apia)
    assert "2011-12-30" in days_of(week, apia)  # harmless: no roll-up carries that date


class GapAroundMidnight(tzinfo):
    """A made-up zone that springs forward from 23:30 to 00:30 on 2026-03-08 (no zone in the
    tz database does; the bisection in first_instant covers it anyway)."""

    change = datetime(2026, 3, 7, 23, 30)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        assert dt is not None
        return timedelta(hours=1) if dt.replace(tzinfo=None) >= datetime(2026, 3, 8, 0, 30) \
            else timedelta(0)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "GAP"

    def fromutc(self, dt: datetime) -> datetime:
        naive = dt.replace(tzinfo=None)
        offset = timedelta(hours=1) if naive >= self.change else timedelta(0)
        return (naive + offset).replace(tzinfo=self)


def test_first_instant_when_the_gap_straddles_midnight() -> None:
    zone = GapAroundMidnight()
    start = first_instant(date(2026, 3, 8), zone)  # type: ignore[arg-type]
    assert start == utc(2026, 3, 7, 23, 30)
    assert datetime.fromtimestamp(start, zone).date() == date(2026, 3, 8)
    assert datetime.fromtimestamp(start - 1, zone).date() == date(2026, 3, 7)
