"""Alert state in the state file (monitor/alerting/state.py), with a real StateStore.

Unit level: what `AlertStateStore.save` writes and `restore` puts back, and the arithmetic of
Prometheus's `RestoreForState` for pending alerts (outage tolerance 1 h, `for` grace period
10 min). End to end: a RuleManager evaluates, the "process" stops (state file closed), and a
new RuleManager on the same file carries on: firing alerts stay firing without a new
`fired_at`, and a pending alert restarted in the middle of its `for` fires when Prometheus
would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.alerting.groups import rule_identity
from monitor.alerting.manager import RuleManager, build_group
from monitor.alerting.rulefmt import parse_rule_file
from monitor.alerting.rules import Alert, AlertingRule, AlertState, TemplateContext
from monitor.alerting.state import (
    FOR_GRACE_PERIOD_MS,
    OUTAGE_TOLERANCE_MS,
    AlertStateStore,
    rule_key,
    snapshot,
)
from monitor.clock import FakeClock
from monitor.metrics.store import MetricStore
from monitor.promql.engine import Engine
from monitor.promql.parse import parse_expr
from monitor.promql.values import Labels, labels_from
from monitor.storage import StateStore
from monitor.tsdb.store import SeriesStore

S = 1000
MIN = 60 * S
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a multiple of every interval used here
GROUP = "/rules/r.yml;g"


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


def rule(for_ms: int = 0, name: str = "A", **rule_labels: str) -> AlertingRule:
    return AlertingRule(name, parse_expr("x > 0"), "x > 0", for_ms=for_ms,
                        keep_firing_for_ms=0, labels=rule_labels, annotations={},
                        templates=TemplateContext({}, ""))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(tmp_path / "state")
    yield store
    store.close()


def pending(active_at: int, **pairs: str) -> Alert:
    return Alert(labels(alertname="A", **pairs), (), AlertState.PENDING, active_at, 1.0)


def save_and_restore(state: StateStore, alert: Alert, *, for_ms: int, down_at: int,
                     now: int) -> AlertingRule:
    """Save one alert as of `down_at`, then restore it into a fresh rule at `now`."""
    alerts = AlertStateStore(state)
    before = rule(for_ms)
    before.active[alert.labels] = alert
    key = rule_key(GROUP, rule_identity(before))
    alerts.save(GROUP, down_at, [(key, before)])
    after = rule(for_ms)
    alerts.restore(key, after, down_at=alerts.last_eval(GROUP), now=now)
    return after


# --- save and restore ----------------------------------------------------------------------


def test_save_then_restore_gives_back_every_field(state: StateStore) -> None:
    alerts = AlertStateStore(state)
    before = rule(5 * MIN, severity="page")
    firing = Alert(labels(alertname="A", instance="a"), (("summary", "s"), ("empty", "")),
                   AlertState.FIRING, T0, 0.25, fired_at=T0 + 5 * MIN,
                   keep_firing_since=T0 + 7 * MIN)
    resolved = Alert(labels(alertname="A", instance="b"), (), AlertState.INACTIVE, T0, 2.0,
                     fired_at=T0 + 5 * MIN, resolved_at=T0 + 6 * MIN)
    before.active = {firing.labels: firing, resolved.labels: resolved}
    key = rule_key(GROUP, rule_identity(before))
    alerts.save(GROUP, T0 + 8 * MIN, [(key, before)])
    assert alerts.last_eval(GROUP) == T0 + 8 * MIN
    assert alerts.last_eval("/other.yml;g") is None

    after = rule(5 * MIN, severity="page")
    assert alerts.restore(key, after, down_at=T0 + 8 * MIN, now=T0 + 9 * MIN) == 2
    assert after.active == before.active
    assert snapshot(after) == snapshot(before)


def test_saving_a_rule_replaces_what_was_saved_for_it(state: StateStore) -> None:
    alerts = AlertStateStore(state)
    before = rule()
    before.active = {labels(alertname="A", i="1"): Alert(
        labels(alertname="A", i="1"), (), AlertState.FIRING, T0, 1.0, fired_at=T0)}
    key = rule_key(GROUP, rule_identity(before))
    alerts.save(GROUP, T0, [(key, before)])
    before.active = {}
    alerts.save(GROUP, T0 + MIN, [(key, before)])
    assert alerts.restore(key, rule(), down_at=T0 + MIN, now=T0 + MIN) == 0
    assert alerts.last_eval(GROUP) == T0 + MIN


def test_rule_key_is_stable_for_name_and_static_labels_only() -> None:
    a = AlertingRule("A", parse_expr("x > 1"), "x > 1", for_ms=0, keep_firing_for_ms=0,
                     labels={"b": "2", "a": "1"}, annotations={"x": "y"},
                     templates=TemplateContext({}, ""))
    b = AlertingRule("A", parse_expr("x > 2"), "x > 2", for_ms=MIN, keep_firing_for_ms=0,
                     labels={"a": "1", "b": "2"}, annotations={},
                     templates=TemplateContext({}, ""))
    key = rule_key(GROUP, rule_identity(a))
    assert key == rule_key(GROUP, rule_identity(b))  # expr, for, annotations may change
    assert key != rule_key(GROUP, rule_identity(rule(a="1", b="3")))
    assert key != rule_key("/rules/r.yml;other", rule_identity(b))
    assert key != rule_key(GROUP, rule_identity(a, occurrence=1))
    assert rule_key(GROUP, rule_identity(rule(name="A"))) != rule_key(
        GROUP, rule_identity(rule(name="B")))


# --- the RestoreForState arithmetic ------------------------------------------------------------


def test_a_firing_alert_stays_firing_whatever_the_downtime(state: StateStore) -> None:
    firing = Alert(labels(alertname="A"), (), AlertState.FIRING, T0, 1.0, fired_at=T0 + MIN)
    after = save_and_restore(state, firing, for_ms=MIN, down_at=T0 + 2 * MIN,
                             now=T0 + 2 * MIN + 3 * OUTAGE_TOLERANCE_MS)
    (alert,) = after.active.values()
    assert (alert.state, alert.active_at, alert.fired_at) == (
        AlertState.FIRING, T0, T0 + MIN)


def test_a_resolved_alert_is_kept(state: StateStore) -> None:
    resolved = Alert(labels(alertname="A"), (), AlertState.INACTIVE, T0, 1.0,
                     fired_at=T0 + MIN, resolved_at=T0 + 2 * MIN)
    after = save_and_restore(state, resolved, for_ms=MIN, down_at=T0 + 3 * MIN,
                             now=T0 + 5 * MIN)
    (alert,) = after.active.values()
    assert (alert.state, alert.resolved_at) == (AlertState.INACTIVE, T0 + 2 * MIN)


def test_a_pending_alert_with_a_short_for_carries_on_where_it_stopped(
        state: StateStore) -> None:
    # for 5 min, pending 2 min when it went down, down 40 min: 3 min still to go, not 0.
    after = save_and_restore(state, pending(T0), for_ms=5 * MIN, down_at=T0 + 2 * MIN,
                             now=T0 + 42 * MIN)
    (alert,) = after.active.values()
    assert (alert.state, alert.active_at) == (AlertState.PENDING, T0 + 40 * MIN)
    assert alert.active_at + 5 * MIN - (T0 + 42 * MIN) == 3 * MIN


def test_a_pending_alert_with_a_long_for_is_shifted_by_the_downtime(state: StateStore) -> None:
    # for 30 min, pending 5 min when it went down, down 7 min: 25 min remain >= grace.
    after = save_and_restore(state, pending(T0), for_ms=30 * MIN, down_at=T0 + 5 * MIN,
                             now=T0 + 12 * MIN)
    (alert,) = after.active.values()
    assert (alert.state, alert.active_at) == (AlertState.PENDING, T0 + 7 * MIN)


def test_a_pending_alert_with_less_than_the_grace_period_left_gets_the_grace_period(
        state: StateStore) -> None:
    # for 15 min, pending 10 min when it went down: 5 min remain < 10 min grace. It may fire
    # 10 min after the restart at the earliest: active_at = now + grace - for.
    now = T0 + 12 * MIN
    after = save_and_restore(state, pending(T0), for_ms=15 * MIN, down_at=T0 + 10 * MIN,
                             now=now)
    (alert,) = after.active.values()
    assert alert.active_at == now + FOR_GRACE_PERIOD_MS - 15 * MIN
    assert alert.active_at + 15 * MIN == now + FOR_GRACE_PERIOD_MS


def test_a_pending_alert_whose_for_ran_out_while_down_is_unchanged(state: StateStore) -> None:
    after = save_and_restore(state, pending(T0), for_ms=10 * MIN, down_at=T0 + 10 * MIN,
                             now=T0 + 11 * MIN)
    (alert,) = after.active.values()
    assert (alert.state, alert.active_at) == (AlertState.PENDING, T0)  # fires next evaluation


@pytest.mark.parametrize("for_ms", [MIN, 30 * MIN])
def test_pending_alerts_are_forgotten_after_more_than_an_hour_down(
        state: StateStore, for_ms: int) -> None:
    down_at = T0 + MIN
    forgotten = save_and_restore(state, pending(T0), for_ms=for_ms, down_at=down_at,
                                 now=down_at + OUTAGE_TOLERANCE_MS + 1)
    assert forgotten.active == {}
    kept = save_and_restore(state, pending(T0), for_ms=for_ms, down_at=down_at,
                            now=down_at + OUTAGE_TOLERANCE_MS)
    assert len(kept.active) == 1


def test_a_pending_alert_of_a_group_never_saved_is_forgotten(state: StateStore) -> None:
    alerts = AlertStateStore(state)
    before = rule(MIN)
    before.active = {labels(alertname="A"): pending(T0)}
    key = rule_key(GROUP, rule_identity(before))
    alerts.save(GROUP, T0, [(key, before)])
    after = rule(MIN)
    assert alerts.restore(key, after, down_at=None, now=T0 + MIN) == 0


# --- end to end: a RuleManager restarted on the same state file ---------------------------------

RULES = """
groups:
- name: g
  interval: 1m
  rules:
  - alert: Slow
    expr: x > 0
    for: 15m
  - alert: Fast
    expr: y > 0
    for: 1m
"""


class Process:
    """One run of the rule manager: its own series store, engine and open state file."""

    def __init__(self, state_dir: Path, clock: FakeClock) -> None:
        self.clock = clock
        self.state = StateStore(state_dir)
        self.series = SeriesStore(retention_ms=10**12)
        self.manager = RuleManager(engine=Engine(self.series), series=self.series,
                                   metrics=MetricStore(), clock=clock,
                                   state=AlertStateStore(self.state))
        specs = parse_rule_file(RULES, file="/rules/r.yml")
        self.manager.replace([build_group(spec, MIN, TemplateContext({}, ""))
                              for spec in specs], restore=True)

    def tick(self, t: int, **values: float) -> None:
        """Inputs at `t`, the clock at `t`, one evaluation."""
        for name, value in values.items():
            self.series.append(((("__name__", name),)), t, value)
        self.clock.advance(t / 1000 - self.clock.time())
        self.manager.evaluate(self.manager.groups[0], t)

    def alert(self, name: str) -> Alert | None:
        for group in self.manager.groups:
            for rule in group.alerting_rules():
                if rule.name == name:
                    return next(iter(rule.active.values()), None)
        raise AssertionError(name)

    def stop(self) -> None:
        self.state.close()


def test_a_restart_in_the_middle_of_for_fires_when_prometheus_would(tmp_path: Path) -> None:
    # Pending at t0 with for 15m; evaluated until t0+3m; down 2 minutes; restarted at t0+5m.
    # 12 min of `for` remained (>= grace), so active_at moves by the 2 min downtime and the
    # alert fires at t0 + 15m + 2m, as Prometheus's RestoreForState has it.
    clock = FakeClock(T0 / 1000)
    first = Process(tmp_path / "state", clock)
    for minute in range(4):
        first.tick(T0 + minute * MIN, x=1.0)
    assert first.alert("Slow").state is AlertState.PENDING  # type: ignore[union-attr]
    first.stop()

    clock.advance(2 * 60)  # t0+5m
    second = Process(tmp_path / "state", clock)
    slow = second.alert("Slow")
    assert slow is not None
    assert (slow.state, slow.active_at) == (AlertState.PENDING, T0 + 2 * MIN)
    for minute in range(5, 17):
        second.tick(T0 + minute * MIN, x=1.0)
        assert slow.state is AlertState.PENDING, minute
    second.tick(T0 + 17 * MIN, x=1.0)
    assert (slow.state, slow.fired_at) == (AlertState.FIRING, T0 + 17 * MIN)
    second.stop()


def test_a_firing_alert_stays_firing_across_a_restart_without_firing_again(
        tmp_path: Path) -> None:
    clock = FakeClock(T0 / 1000)
    first = Process(tmp_path / "state", clock)
    for minute in range(3):
        first.tick(T0 + minute * MIN, y=1.0)
    fired = first.alert("Fast")
    assert fired is not None
    assert (fired.state, fired.active_at, fired.fired_at) == (
        AlertState.FIRING, T0, T0 + MIN)
    first.stop()

    clock.advance(10 * 60)
    second = Process(tmp_path / "state", clock)
    restored = second.alert("Fast")
    assert restored is not None
    assert (restored.state, restored.active_at, restored.fired_at) == (
        AlertState.FIRING, T0, T0 + MIN)
    second.tick(T0 + 13 * MIN, y=1.0)
    assert (restored.state, restored.active_at, restored.fired_at) == (
        AlertState.FIRING, T0, T0 + MIN)
    # And it resolves normally afterwards, which is saved too.
    second.tick(T0 + 14 * MIN, y=0.0)
    assert restored.state is AlertState.INACTIVE
    second.stop()
    third = Process(tmp_path / "state", clock)
    again = third.alert("Fast")
    assert again is not None
    assert (again.state, again.resolved_at) == (AlertState.INACTIVE, T0 + 14 * MIN)
    third.stop()


def test_a_pending_alert_is_forgotten_after_a_long_outage(tmp_path: Path) -> None:
    clock = FakeClock(T0 / 1000)
    first = Process(tmp_path / "state", clock)
    first.tick(T0, x=1.0)
    first.stop()
    clock.advance(2 * 3600)
    second = Process(tmp_path / "state", clock)
    assert second.alert("Slow") is None
    second.tick(T0 + 121 * MIN, x=1.0)
    slow = second.alert("Slow")
    assert slow is not None
    assert slow.active_at == T0 + 121 * MIN  # its `for` starts again
    second.stop()


def test_the_state_is_saved_after_each_evaluation_that_changes_it(tmp_path: Path) -> None:
    clock = FakeClock(T0 / 1000)
    first = Process(tmp_path / "state", clock)
    first.tick(T0, y=1.0)
    alerts = AlertStateStore(first.state)
    assert alerts.last_eval(GROUP) == T0
    (fast,) = [r for r in first.manager.groups[0].alerting_rules() if r.name == "Fast"]
    key = rule_key(GROUP, rule_identity(fast))
    copy = rule(MIN, name="Fast")
    assert alerts.restore(key, copy, down_at=T0, now=T0) == 1
    assert next(iter(copy.active.values())).state is AlertState.PENDING
    first.tick(T0 + MIN, y=1.0)
    copy = rule(MIN, name="Fast")
    alerts.restore(key, copy, down_at=T0 + MIN, now=T0 + MIN)
    assert next(iter(copy.active.values())).state is AlertState.FIRING
    first.stop()


DUPLICATE_NAMES = """
groups:
- name: g
  interval: 1m
  rules:
  - alert: Down
    expr: up{job="a"} == 0
  - alert: Down
    expr: up{job="b"} == 0
"""


def test_two_rules_with_the_same_name_keep_their_own_state_across_a_restart(
        tmp_path: Path) -> None:
    state_dir = tmp_path / "state"

    def start() -> tuple[StateStore, RuleManager, SeriesStore]:
        state = StateStore(state_dir)
        series = SeriesStore(retention_ms=10**12)
        manager = RuleManager(engine=Engine(series), series=series, metrics=MetricStore(),
                              clock=clock, state=AlertStateStore(state))
        specs = parse_rule_file(DUPLICATE_NAMES, file="/rules/r.yml")
        manager.replace([build_group(s, MIN, TemplateContext({}, "")) for s in specs],
                        restore=True)
        return state, manager, series

    clock = FakeClock(T0 / 1000)
    state, manager, series = start()
    for job in ("a", "b"):
        series.append(labels(__name__="up", job=job), T0, 0.0)
    manager.evaluate(manager.groups[0], T0)
    state.close()
    state, manager, _ = start()
    first, second = manager.groups[0].alerting_rules()
    state.close()
    assert [dict(a.labels)["job"] for a in first.active.values()] == ["a"]
    assert [dict(a.labels)["job"] for a in second.active.values()] == ["b"]
