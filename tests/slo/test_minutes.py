"""Minute buckets (monitor/slo/minutes.py): rolling sums against plain loops over a dict of
minutes, through ring wrap-around, long jumps, late updates, gaps and fractional counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.slo.minutes import RESUM_EVERY, MinuteBuckets, WindowTotals

WINDOWS = (1, 3, 7, 30, 200)


def reference(data: dict[int, tuple[float, float]], now: int, window: int) -> WindowTotals:
    errors = total = 0.0
    seen = 0
    for minute in range(now - window + 1, now + 1):
        if minute in data:
            errors += data[minute][0]
            total += data[minute][1]
            seen += 1
    return WindowTotals(window, errors, total, seen)


# An operation: ("add", minute offset from now, errors, total) or ("advance", step).
_ADD = st.tuples(st.just("add"), st.integers(-260, 3), st.integers(0, 50), st.integers(0, 80))
_ADVANCE = st.tuples(st.just("advance"), st.integers(0, 300), st.just(0), st.just(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_ADD, _ADD, _ADVANCE), max_size=60))
def test_sums_match_plain_loops(operations: list[tuple[str, int, int, int]]) -> None:
    buckets = MinuteBuckets(WINDOWS, capacity=250)
    data: dict[int, tuple[float, float]] = {}
    now = 10_000
    buckets.advance(now)
    for op, offset, errors, total in operations:
        if op == "advance":
            now += offset
            buckets.advance(now)
        else:
            minute = now + offset
            kept = buckets.add(minute, errors, total)
            now = max(now, minute)
            assert kept == (minute > now - 250)
            if kept:
                old = data.get(minute, (0.0, 0.0))
                data[minute] = (old[0] + errors, old[1] + total)
        assert buckets.now == now
        for window in WINDOWS:
            assert buckets.totals(window) == reference(data, now, window)
    kept_items = {m: v for m, v in data.items() if m > now - 250}
    assert {m: (e, t) for m, e, t in buckets.items()} == kept_items


def test_load_equals_adding_row_by_row() -> None:
    added = MinuteBuckets(WINDOWS, capacity=250)
    for minute in range(1000, 1400, 3):
        added.add(minute, minute % 5, 10 + minute % 11)
    added.add(1390, 0.5, 0.5)  # a fractional count
    added.advance(1410)
    loaded = MinuteBuckets(WINDOWS, capacity=250)
    loaded.add(5000, 1, 1)  # replaced by the load
    rows = [(1100, 9.0, 9.0), *added.items()]  # 1100 is too old for the buffer: skipped
    assert loaded.load(rows, 1410) == len(rows) - 1
    assert loaded.now == 1410 and list(loaded.items()) == list(added.items())
    for window in WINDOWS:
        assert loaded.totals(window) == added.totals(window)
    with pytest.raises(ValueError, match="not negative"):
        loaded.load([(1400, -1, 0)], 1410)


def test_a_gap_has_no_data_and_a_quiet_minute_has() -> None:
    buckets = MinuteBuckets((5, 60))
    buckets.add(100, 1, 10)
    buckets.add(101, 0, 0)  # observed, no traffic
    buckets.advance(130)  # 102..130: the daemon was down
    buckets.add(131, 2, 10)
    assert buckets.totals(60) == WindowTotals(60, 3.0, 20.0, 3)
    assert buckets.totals(5) == WindowTotals(5, 2.0, 10.0, 1)
    assert buckets.get(101) == (0.0, 0.0) and buckets.get(102) is None


def test_late_update_reaches_only_the_windows_that_hold_the_minute() -> None:
    buckets = MinuteBuckets((5, 60), capacity=100)
    for minute in range(0, 50):
        buckets.add(minute, 0, 10)
    assert buckets.add(40, 3, 0)  # a late line for minute 40, 9 minutes ago
    assert buckets.totals(5) == WindowTotals(5, 0.0, 50.0, 5)
    assert buckets.totals(60) == WindowTotals(60, 3.0, 500.0, 50)
    buckets.advance(149)
    assert not buckets.add(49, 1, 1)  # older than the buffer keeps
    assert buckets.totals(60) == WindowTotals(60, 0.0, 0.0, 0)


def test_long_jump_forgets_everything_and_wraps_cleanly() -> None:
    buckets = MinuteBuckets((5, 100))
    for minute in range(0, 100):
        buckets.add(minute, 1, 2)
    buckets.advance(10_000)  # more than the capacity ahead
    assert buckets.totals(100) == WindowTotals(100, 0.0, 0.0, 0)
    assert list(buckets.items()) == []
    buckets.add(10_001, 1, 1)
    assert buckets.totals(100) == WindowTotals(100, 1.0, 1.0, 1)


def test_fractional_counts_do_not_drift() -> None:
    buckets = MinuteBuckets((5, 60))
    last = 3 * RESUM_EVERY
    for minute in range(last):
        buckets.add(minute, 0.1 if minute % 7 else 0.0, 0.3)
    # Moving to minute 3 x RESUM_EVERY re-sums every window: the exact sum of the doubles,
    # rounded once (running sums alone read 17.70000000000002 here).
    buckets.advance(last)
    assert buckets.totals(60).total == math.fsum([0.3] * 59) == 17.7
    assert buckets.totals(60).errors == math.fsum(0.1 for m in range(last - 59, last) if m % 7)
    # A window whose minutes are all clean reads exactly 0 (running sums leave ~3e-17: a
    # burn above 0 and a finite exhaustion time).
    for minute in range(last + 1, last + 61):
        buckets.add(minute, 0.0, 0.3)
    assert buckets.totals(5).errors == buckets.totals(60).errors == 0.0
    buckets.advance(last + 200)
    assert buckets.totals(60) == WindowTotals(60, 0.0, 0.0, 0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="windows"):
        MinuteBuckets(())
    with pytest.raises(ValueError, match="capacity"):
        MinuteBuckets((5, 60), capacity=30)
    buckets = MinuteBuckets((5,))
    for errors, total in ((-1.0, 1.0), (1.0, math.nan), (math.inf, 1.0)):
        with pytest.raises(ValueError, match="not negative"):
            buckets.add(1, errors, total)
    buckets.advance(10)
    with pytest.raises(ValueError, match="before the current minute"):
        buckets.advance(9)
    with pytest.raises(KeyError, match="7-minute"):
        buckets.totals(7)


def test_memory_is_sixteen_bytes_and_a_flag_per_minute() -> None:
    buckets = MinuteBuckets((5, 43_200))
    assert buckets.nbytes() == 17 * 43_200
