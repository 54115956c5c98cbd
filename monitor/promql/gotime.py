"""The calendar of the date functions, computed as Go's `time` package computes it.

Prometheus turns a sample value into `time.Unix(int64(v), 0).UTC()`. Python's datetime stops
at year 9999 and cannot reproduce what Go does with NaN, ±Inf or values past 2**63 (amd64
converts them all to the minimum int64, and Go's unsigned "absolute" time then wraps), so the
arithmetic of Go 1.19's time.go is replayed on plain integers.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

_M64 = (1 << 64) - 1
_SECONDS_PER_DAY = 86400
_ABSOLUTE_ZERO_YEAR = -292277022399
_UNIX_TO_INTERNAL = (1969 * 365 + 1969 // 4 - 1969 // 100 + 1969 // 400) * _SECONDS_PER_DAY
_ABSOLUTE_TO_INTERNAL = int((_ABSOLUTE_ZERO_YEAR - 1) * Fraction("365.2425") * _SECONDS_PER_DAY)
_UNIX_TO_ABSOLUTE = _UNIX_TO_INTERNAL - _ABSOLUTE_TO_INTERNAL
_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)
_DAYS_PER_400_YEARS = 365 * 400 + 97
_DAYS_PER_100_YEARS = 365 * 100 + 24
_DAYS_PER_4_YEARS = 365 * 4 + 1
_MIN_INT64 = -(1 << 63)


class GoDate(NamedTuple):
    year: int
    month: int  # 1..12
    day: int  # 1..31
    year_day: int  # 1..366
    weekday: int  # 0 = Sunday
    hour: int
    minute: int


def go_int64(value: float) -> int:
    """int64(v) on amd64: truncation, and the minimum int64 for NaN, ±Inf or out of range."""
    if math.isnan(value) or not -(2.0 ** 63) <= value < 2.0 ** 63:
        return _MIN_INT64
    return int(value)


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in(month: int, year: int) -> int:
    if month == 2 and is_leap(year):
        return 29
    return _DAYS_BEFORE[month] - _DAYS_BEFORE[month - 1]


def unix_date(seconds: int) -> GoDate:
    """time.Unix(seconds, 0).UTC(): Date, YearDay, Weekday, Hour and Minute."""
    absolute = (seconds + _UNIX_TO_ABSOLUTE) & _M64
    days = absolute // _SECONDS_PER_DAY
    n = days // _DAYS_PER_400_YEARS
    y = 400 * n
    days -= _DAYS_PER_400_YEARS * n
    n = days // _DAYS_PER_100_YEARS
    n -= n >> 2
    y += 100 * n
    days -= _DAYS_PER_100_YEARS * n
    n = days // _DAYS_PER_4_YEARS
    y += 4 * n
    days -= _DAYS_PER_4_YEARS * n
    n = days // 365
    n -= n >> 2
    y += n
    days -= 365 * n
    year = y + _ABSOLUTE_ZERO_YEAR
    year_day = days
    day = year_day
    month = 0
    if is_leap(year) and day == 31 + 29 - 1:
        month, day = 2, 29
    else:
        if is_leap(year) and day > 31 + 29 - 1:
            day -= 1
        month = day // 31
        end = _DAYS_BEFORE[month + 1]
        if day >= end:
            month += 1
            begin = end
        else:
            begin = _DAYS_BEFORE[month]
        month += 1
        day = day - begin + 1
    weekday = ((absolute + _SECONDS_PER_DAY) & _M64) % (7 * _SECONDS_PER_DAY) // _SECONDS_PER_DAY
    return GoDate(year, month, day, year_day + 1, weekday,
                  absolute % _SECONDS_PER_DAY // 3600, absolute % 3600 // 60)
