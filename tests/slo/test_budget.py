"""Error-budget maths and burn-rate alerts (monitor/slo/budget.py) against a reference computed
here from a plain list of per-minute counts, minute by minute, for days of minutes.

The reference sums windows with prefix sums over the list and applies the workbook's
thresholds literally (14.4 over 5m/1h, 6 over 30m/6h, 3 over 2h/1d, 1 over 6h/3d), with the
error budget Sloth's generated rules use for 99.9 %. Counts are whole numbers, so sums and
ratios are compared exactly. The fire/resolve minutes of each scenario are also derived by
hand in its comments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pytest

from monitor.slo.budget import (
    ALERT_KINDS,
    AlertKind,
    AlertWindows,
    SloBudget,
    SloState,
    error_budget,
    exhaustion_minutes,
    window_label,
)

B = 0.0009999999999999432  # Sloth's examples/_gen/getting-started.yml for objective 99.9
BASE = 29_500_000  # minute numbers near 2026 (epoch seconds / 60)
DAY = 1440
PERIOD = 30 * DAY
WINDOWS = {"5m": 5, "30m": 30, "1h": 60, "2h": 120, "6h": 360, "1d": DAY, "3d": 3 * DAY,
           "30d": PERIOD}
PAIRS = (("page-quick", "page", 14.4, 5, 60), ("page-slow", "page", 6.0, 30, 360),
         ("ticket-quick", "ticket", 3.0, 120, DAY), ("ticket-slow", "ticket", 1.0, 360, 3 * DAY))

Counts = list[tuple[int, int] | None]  # per minute from BASE; None: no data


def steady(minutes: int, errors: int, total: int) -> Counts:
    return [(errors, total)] * minutes


class Reference:
    """Window sums of a list of per-minute counts, and the alerts the workbook says."""

    def __init__(self, counts: Counts) -> None:
        self.errors, self.totals, self.seen = [0], [0], [0]
        for count in counts:
            errors, total = count if count is not None else (0, 0)
            self.errors.append(self.errors[-1] + errors)
            self.totals.append(self.totals[-1] + total)
            self.seen.append(self.seen[-1] + (count is not None))

    def sums(self, now: int, window: int) -> tuple[int, int, int]:
        lo = max(now - window + 1, 0)
        return (self.errors[now + 1] - self.errors[lo], self.totals[now + 1] - self.totals[lo],
                self.seen[now + 1] - self.seen[lo])

    def ratio(self, now: int, window: int) -> float | None:
        errors, total, _ = self.sums(now, window)
        return errors / total if total else None

    def remaining(self, now: int) -> float | None:
        ratio = self.ratio(now, PERIOD)
        return None if ratio is None else 1 - ratio / B

    def holding(self, now: int) -> dict[str, tuple[str, ...]]:
        held: dict[str, list[str]] = {}
        for name, severity, factor, short, long in PAIRS:
            short_ratio, long_ratio = self.ratio(now, short), self.ratio(now, long)
            if short_ratio is not None and long_ratio is not None \
                    and short_ratio > factor * B and long_ratio > factor * B:
                held.setdefault(severity, []).append(name)
        remaining = self.remaining(now)
        if remaining is not None and remaining <= 0.5:
            held["half_spent"] = []
        return {kind: tuple(names) for kind, names in held.items()}

    def transitions(self, minutes: int) -> list[tuple[int, str, str]]:
        out, active = [], set[str]()
        for now in range(minutes):
            held = set(self.holding(now))
            out += [(now, kind, "fired") for kind in sorted(held - active)]
            out += [(now, kind, "resolved") for kind in sorted(active - held)]
            active = held
        return sorted(out)


def run(counts: Counts, *, alerts: Iterable[AlertKind] = ALERT_KINDS) -> list[SloState]:
    budget = SloBudget(objective_percent=99.9, alerts=alerts)
    states = []
    for offset, count in enumerate(counts):
        if count is not None:
            budget.add(BASE + offset, *count)
        states.append(budget.evaluate(BASE + offset))
    return states


def transitions(states: Sequence[SloState], kinds: Iterable[str] = ALERT_KINDS
                ) -> list[tuple[int, str, str]]:
    wanted = set(kinds)
    out = [(s.minute - BASE, kind, "fired") for s in states for kind in s.fired]
    out += [(s.minute - BASE, kind, "resolved") for s in states for kind in s.resolved]
    return sorted(t for t in out if t[1] in wanted)


def assert_matches(states: Sequence[SloState], reference: Reference, *, every: int = 1,
                   first: int = 0) -> None:
    """states[i] is the state at minute first + i."""
    for index in range(0, len(states), every):
        state, now = states[index], first + index
        assert list(state.windows) == list(WINDOWS)
        for label, window in WINDOWS.items():
            reading = state.windows[label]
            errors, total, seen = reference.sums(now, window)
            ratio = reference.ratio(now, window)
            assert (reading.errors, reading.total, reading.minutes_with_data) \
                == (errors, total, seen), (now, label)
            assert reading.error_ratio == ratio, (now, label)
            assert reading.burn_rate == (None if ratio is None else ratio / B), (now, label)
        remaining = reference.remaining(now)
        assert state.remaining_ratio == remaining, now
        burn_1h = reference.ratio(now, 60)
        if remaining is None:
            expected = None
        elif remaining <= 0:
            expected = 0.0
        elif not burn_1h:
            expected = None
        else:
            expected = remaining * PERIOD / (burn_1h / B)
        assert state.exhaustion_minutes == expected, now
        assert {kind: alert.pairs for kind, alert in state.alerts.items()} \
            == reference.holding(now), now


def test_factors_and_labels_mirror_sloth() -> None:
    thirty = AlertWindows.for_period()
    assert [thirty.factor(p) for p in thirty.pairs] == [14.4, 6.0, 3.0, 1.0]
    assert thirty.windows == (5, 30, 60, 120, 360, DAY, 3 * DAY, PERIOD)
    four_weeks = AlertWindows.for_period(28 * DAY)
    assert [four_weeks.factor(p) for p in four_weeks.pairs] \
        == pytest.approx([13.44, 5.6, 2.8, 0.9333333], rel=1e-6)
    with pytest.raises(ValueError, match="only 28d and 30d"):
        AlertWindows.for_period(7 * DAY)
    labels = [window_label(m) for m in (5, 30, 60, 120, 360, DAY, 3 * DAY, PERIOD, 28 * DAY)]
    assert labels == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d", "4w"]
    assert window_label(90) == "1h30m" and window_label(7 * DAY) == "1w"


def test_error_budget_is_sloths_float() -> None:
    assert error_budget(99.9) == B
    assert error_budget(95) == 0.05
    for bad in (0.0, -1.0, 100.0001):
        with pytest.raises(ValueError, match="objective"):
            error_budget(bad)


def test_objective_100_follows_promql_division_by_zero() -> None:
    budget = SloBudget(objective_percent=100)
    budget.add(BASE, 0, 1000)
    clean = budget.evaluate(BASE)
    assert clean.error_budget == 0.0
    assert math.isnan(clean.windows["5m"].burn_rate or 0.0)
    assert clean.remaining_ratio is not None and math.isnan(clean.remaining_ratio)
    assert clean.exhaustion_minutes is None and clean.alerts == {}
    budget.add(BASE + 1, 1, 1000)
    failing = budget.evaluate(BASE + 1)
    assert failing.windows["1h"].burn_rate == math.inf
    assert failing.remaining_ratio == -math.inf and failing.exhaustion_minutes == 0.0
    assert set(failing.alerts) == {"page", "ticket", "half_spent"}


def test_constant_error_rates_burn_at_their_multiple() -> None:
    states = run(steady(2 * DAY, 1, 1000))  # 0.1 % on 99.9 %: burn 1 everywhere
    last = states[-1]
    for reading in last.windows.values():
        assert reading.burn_rate == pytest.approx(1.0, rel=1e-12)
    assert last.remaining_ratio == pytest.approx(0.0, abs=1e-12)
    assert last.exhaustion_minutes == 0.0  # 1 - 1.0000000000000568 is below 0

    states = run(steady(2 * DAY, 1, 2000))  # 0.05 %: burn 0.5, half the budget left
    last = states[-1]
    assert last.windows["1h"].burn_rate == pytest.approx(0.5, rel=1e-12)
    assert last.remaining_ratio == pytest.approx(0.5, rel=1e-12)
    # 0.5 of the budget left at half the sustainable speed: one whole period.
    assert last.exhaustion_minutes == pytest.approx(PERIOD, rel=1e-12)
    assert_matches(states, Reference(steady(2 * DAY, 1, 2000)), every=7)


def test_burst_and_recovery_match_the_reference_minute_by_minute() -> None:
    start = 2 * DAY
    counts = steady(start, 1, 5000) + steady(10, 5000, 5000) + steady(DAY + 720, 1, 5000)
    states = run(counts)
    reference = Reference(counts)
    assert_matches(states, reference)
    assert transitions(states) == reference.transitions(len(counts))
    # Page: the first burst minute puts 20 % in 5m and 1.7 % in 1h (> 1.44 %); the slow pair
    # holds while the 30m window still holds a burst minute, so it resolves 30 minutes after
    # the last one (start + 9 + 30).
    assert transitions(states, ["page"]) == [(start, "page", "fired"),
                                            (start + 39, "page", "resolved")]
    ticket = transitions(states, ["ticket"])
    assert ticket[0][1:] == ("ticket", "fired") and ticket[-1][2] == "resolved"


def test_a_step_to_burn_14_4_pages_when_the_hour_is_full() -> None:
    start, burning = DAY, 90
    counts = steady(start, 0, 10_000) + steady(burning, 144, 10_000) + steady(600, 0, 10_000)
    states = run(counts)
    # 1.44 % in every minute: the 1h ratio is 1.44 % x k / 60 after k minutes and passes
    # 14.4 x B (0.014399999999999183) at k = 60; the 5m one is full after 5 minutes.
    # Resolved at the first clean minute: the 5m ratio falls to 1.44 % x 4/5. The slow pair
    # never holds (6h needs 150 minutes at this rate).
    assert transitions(states, ["page"]) == [(start + 59, "page", "fired"),
                                            (start + burning, "page", "resolved")]
    assert states[start + 59].alerts["page"].pairs == ("page-quick",)
    # Half spent: errors 144 k over (1441 + k - 1) x 10,000 requests reach 0.05 % at k = 52.
    assert transitions(states, ["half_spent"]) == [(start + 51, "half_spent", "fired")]
    assert transitions(states, ["ticket"]) == []
    assert transitions(states) == Reference(counts).transitions(len(counts))


def test_six_times_burn_pages_through_the_slow_pair() -> None:
    start = DAY
    counts = steady(start, 0, 1000) + steady(400, 6, 1000) + steady(60, 0, 1000)
    states = run(counts, alerts=["page"])
    # 6h ratio 0.6 % x k / 360 passes 6 x B at k = 360; the 1h pair never (0.6 % < 1.44 %).
    # At the first clean minute the 30m ratio is 0.6 % x 29/30: resolved.
    assert transitions(states) == [(start + 359, "page", "fired"),
                                   (start + 400, "page", "resolved")]
    assert states[start + 359].alerts["page"].pairs == ("page-slow",)


def test_three_times_burn_tickets_after_a_day_and_the_slow_pair_holds_it() -> None:
    start = 3 * DAY
    counts = steady(start, 0, 1000) + steady(DAY, 3, 1000) + steady(DAY, 0, 1000)
    states = run(counts, alerts=["ticket"])
    # 0.3 % a minute: the 1d ratio reaches 3 x B when the day is full (k = 1440), and then
    # the 3d ratio is 4320 / 4,320,000 = 0.1 % > B too. After the burn the 2h pair drops at
    # once, but 6h keeps 0.3 % x (359 - j) / 360 > B until j = 240, and 3d stays at 0.1 %.
    assert transitions(states) == [(start + DAY - 1, "ticket", "fired"),
                                   (start + DAY + 240, "ticket", "resolved")]
    assert states[start + DAY - 1].alerts["ticket"].pairs == ("ticket-quick", "ticket-slow")
    assert states[start + DAY + 239].alerts["ticket"].pairs == ("ticket-slow",)
    assert transitions(states) == [t for t in Reference(counts).transitions(len(counts))
                                   if t[1] == "ticket"]


def test_budget_rate_burn_tickets_after_three_days() -> None:
    start = 3 * DAY
    counts = steady(start, 0, 1000) + steady(3 * DAY, 1, 1000) + steady(60, 0, 1000)
    states = run(counts, alerts=["ticket"])
    # 0.1 % (burn 1): the 3d ratio reaches 0.1 % > B only once the 3 days are full.
    assert transitions(states) == [(start + 3 * DAY - 1, "ticket", "fired"),
                                   (start + 3 * DAY, "ticket", "resolved")]
    assert states[start + 3 * DAY - 1].alerts["ticket"].pairs == ("ticket-slow",)
    assert transitions(states) == [t for t in Reference(counts).transitions(len(counts))
                                   if t[1] == "ticket"]


def test_thirty_days_of_minutes_half_spent_resolves_when_the_burst_leaves() -> None:
    counts = steady(30, 1000, 1000) + steady(PERIOD + 20, 0, 1000)
    states = run(counts)
    reference = Reference(counts)
    assert_matches(states, reference, every=13)
    assert transitions(states) == reference.transitions(len(counts))
    # 30,000 errors in a full window of 43,200,000 requests: 0.069 % > 0.05 %. At minute
    # PERIOD + j the window still holds 29 - j burst minutes; 21,000 / 43.2 M < 0.05 % x
    # (B / 0.001) first at j = 8.
    assert transitions(states, ["half_spent"]) == [(0, "half_spent", "fired"),
                                                  (PERIOD + 8, "half_spent", "resolved")]
    assert states[PERIOD + 7].alerts["half_spent"].since == BASE
    assert states[-1].remaining_ratio == 1.0


def test_a_gap_is_neither_good_nor_bad() -> None:
    before, gap, after = steady(DAY, 2, 1000), 60, steady(600, 5, 1000)
    with_gap = run(before + [None] * gap + after)
    quiet = run(before + steady(gap, 0, 0) + after)  # observed, no traffic
    good = run(before + steady(gap, 0, 1000) + after)
    for a, b in zip(with_gap, quiet, strict=True):
        for label in WINDOWS:
            ra, rb = a.windows[label], b.windows[label]
            assert (ra.errors, ra.total, ra.error_ratio) == (rb.errors, rb.total, rb.error_ratio)
        assert a.remaining_ratio == b.remaining_ratio
        assert a.fired == b.fired and a.resolved == b.resolved
    assert_matches(with_gap, Reference(before + [None] * gap + after))
    last = len(with_gap) - 1
    # Over the day (the gap is in it) only the minutes with data count...
    day = with_gap[last].windows["1d"]
    assert day.minutes_with_data == DAY - gap
    assert day.error_ratio == (2 * (DAY - gap - 600) + 5 * 600) / ((DAY - gap) * 1000)
    # ...whereas good minutes in its place dilute the ratio.
    assert good[last].windows["1d"].error_ratio < day.error_ratio
    # Inside the gap the short windows have no data: no ratio, no burn, no alert from them.
    middle = with_gap[DAY + 30].windows["5m"]
    assert (middle.minutes_with_data, middle.error_ratio, middle.burn_rate) == (0, None, None)


def test_late_updates_are_counted() -> None:
    counts = steady(3 * 60, 0, 1000)
    budget = SloBudget(objective_percent=99.9)
    for offset, count in enumerate(counts):
        assert count is not None
        budget.add(BASE + offset, *count)
    now = BASE + len(counts) - 1
    before = budget.evaluate(now)
    assert before.windows["1h"].errors == 0
    assert budget.add(now - 3, 40, 40)  # lines for 3 minutes ago, read late
    assert budget.add(now - 90, 7, 7)  # and for an hour and a half ago
    late = list(counts)
    late[-4] = (40, 1040)
    late[-91] = (7, 1007)
    state = budget.evaluate(now)
    assert_matches([state], Reference(late), first=len(late) - 1)
    assert state.windows["5m"].errors == 40 and state.windows["2h"].errors == 47
    assert not budget.add(now - PERIOD, 1, 1)  # out of the 30 days: dropped
    with pytest.raises(ValueError, match="before the current minute"):
        budget.evaluate(now - 1)


def test_restored_and_disabled_alerts() -> None:
    counts = steady(DAY, 0, 1000) + steady(120, 1000, 1000)
    budget = SloBudget(objective_percent=99.9, alerts=["page", "ticket"])
    budget.alerts.restore("page", BASE - 5)  # active before a restart
    fired: list[str] = []
    for offset, count in enumerate(counts):
        assert count is not None
        budget.add(BASE + offset, *count)
        state = budget.evaluate(BASE + offset)
        fired += state.fired
        if offset == 0:
            assert state.resolved == ("page",)  # the restored alert no longer holds
    assert fired == ["page", "ticket"]
    assert "half_spent" not in state.alerts
    assert state.alerts["page"].since == BASE + DAY


def test_exhaustion_example_of_the_docstring() -> None:
    budget = SloBudget(objective_percent=99.9)
    now = BASE + 10 * DAY
    budget.add(now - 5 * DAY, 4000 - 864, 10_000_000 - 60_000)
    budget.add(now - 30, 864, 60_000)  # 1.44 % errors in the last hour
    state = budget.evaluate(now)
    assert state.windows["1h"].burn_rate == pytest.approx(14.4, rel=1e-12)
    assert state.remaining_ratio == pytest.approx(0.6, rel=1e-12)
    assert state.exhaustion_minutes == pytest.approx(30 * 60, rel=1e-12)


def test_thresholds_compare_as_prometheus_does() -> None:
    # Objective 99 %: B = 0.01 and the ticket-slow threshold 1 x 0.01 are exact, and so is a
    # ratio of 1/100 over any window: equal is not above, so no ticket. 1/200 leaves exactly
    # half the budget: `remaining <= 0.5` holds.
    for per_minute, kinds in ((100, ["half_spent"]), (200, ["half_spent"])):
        budget = SloBudget(objective_percent=99, alerts=["ticket", "half_spent"])
        for offset in range(3 * DAY):
            budget.add(BASE + offset, 1, per_minute)
        state = budget.evaluate(BASE + 3 * DAY - 1)
        assert state.windows["3d"].burn_rate == 100 / per_minute
        assert list(state.alerts) == kinds
    assert state.remaining_ratio == 0.5


def test_exhaustion_edge_cases() -> None:
    assert exhaustion_minutes(None, 2.0, PERIOD) is None
    assert exhaustion_minutes(-0.2, None, PERIOD) == 0.0
    assert exhaustion_minutes(0.4, None, PERIOD) is None
    assert exhaustion_minutes(0.4, 0.0, PERIOD) is None
    assert exhaustion_minutes(0.5, 2.0, PERIOD) == PERIOD / 4


def test_no_data_yet_reads_as_none() -> None:
    state = SloBudget(objective_percent=99.9).evaluate(BASE)
    assert state.remaining_ratio is None and state.exhaustion_minutes is None
    assert state.period.label == "30d" and state.period.error_ratio is None
    assert state.alerts == {}
    assert state.objective_ratio == 0.9990000000000001  # Sloth: vector(0.9990000000000001)
