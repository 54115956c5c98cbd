"""The rule manager (monitor/alerting/manager.py): loading, reloads, persistence, scheduling.

- `load_groups` / `build_group`: rule files as the daemon loads them, and the hostile ones it
  must refuse with file:line (malformed YAML, unknown fields, invalid PromQL); a 10k-rule file.
- `replace` (reload): alerts carry over to the rule with the same name and labels in the same
  group; a removed rule's alerts vanish.
- `evaluate` / `_persist`: metrics, listeners, the state saved when it changes (and at least
  every 10 s), a failing save logged and survived.
- `run`: each group evaluated at the multiples of its interval and ticks missed by an overrun
  skipped and counted. Scheduling runs on a FakeClock that the evaluation itself moves
  forward (see `Stepper`), so the real sleeps are ~1 ms and nothing waits without a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from monitor.alerting.groups import RuleGroup, rule_identity
from monitor.alerting.manager import RuleManager, build_group, load_groups
from monitor.alerting.rulefmt import RuleGroupSpec, RuleNode, parse_rule_file
from monitor.alerting.rules import AlertingRule, AlertState, TemplateContext
from monitor.alerting.state import AlertStateStore, rule_key
from monitor.cli import main as cli_main
from monitor.clock import FakeClock
from monitor.errors import ConfigError
from monitor.metrics.store import MetricStore
from monitor.promql.engine import Engine
from monitor.promql.values import Labels, Value, labels_from
from monitor.storage import StateStore
from monitor.tsdb.store import SeriesStore

S = 1000
MIN = 60 * S
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a multiple of every interval used here
TEMPLATES = TemplateContext({}, "")
WAIT_S = 5.0


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


def groups_of(text: str, *, file: str = "/rules/r.yml",
              default_interval_ms: int = MIN) -> list[RuleGroup]:
    return [build_group(spec, default_interval_ms, TEMPLATES)
            for spec in parse_rule_file(text, file=file)]


class Rig:
    """A RuleManager over a real series store and engine, on a FakeClock."""

    def __init__(self, *, state: AlertStateStore | None = None,
                 clock: FakeClock | None = None, engine: Engine | None = None) -> None:
        self.clock = clock or FakeClock(T0 / 1000)
        self.series = SeriesStore(retention_ms=10**12)
        self.metrics = MetricStore()
        self.engine = engine or Engine(self.series)
        self.manager = RuleManager(engine=self.engine, series=self.series,
                                   metrics=self.metrics, clock=self.clock, state=state)

    def put(self, t: int, name: str, value: float, **pairs: str) -> None:
        self.series.append(labels_from({"__name__": name, **pairs}), t, value)

    def evaluate_all(self, t: int) -> None:
        for group in self.manager.groups:
            self.manager.evaluate(group, t)

    def rule(self, name: str, group: int = 0) -> AlertingRule:
        (found,) = [r for r in self.manager.groups[group].alerting_rules() if r.name == name]
        return found

    def query(self, expr: str, t: int) -> set[Labels]:
        value = self.engine.instant(expr, t)
        assert isinstance(value, list)
        return {s.labels for s in value}  # type: ignore[union-attr]

    def counter(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        family = self.metrics.family(name)
        if family is None:
            return {}
        return {key: s.value for key, s in family.series.items()}  # type: ignore[union-attr]


# --- loading -----------------------------------------------------------------------------------


def test_load_groups_reads_every_matching_file_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(
        "groups:\n- name: second\n  interval: 30s\n  limit: 5\n  rules:\n"
        "  - alert: A\n    expr: up == 0\n    for: 2m\n    keep_firing_for: 90s\n")
    (tmp_path / "a.yml").write_text(
        "groups:\n- name: first\n  rules:\n  - record: r\n    expr: sum(up)\n"
        "    labels: {env: prod}\n")
    (tmp_path / "ignored.txt").write_text("not yaml: [")
    groups = load_groups([str(tmp_path / "*.yml")], default_interval_ms=15 * S,
                         templates=TEMPLATES)
    assert [(g.name, g.file, g.interval_ms, g.limit) for g in groups] == [
        ("first", str(tmp_path / "a.yml"), 15 * S, 0),
        ("second", str(tmp_path / "b.yml"), 30 * S, 5),
    ]
    (record,) = groups[0].rules
    assert (record.name, record.expr_text, record.labels) == ("r", "sum(up)", {"env": "prod"})
    (alert,) = groups[1].alerting_rules()
    assert (alert.for_ms, alert.keep_firing_for_ms) == (2 * MIN, 90 * S)
    assert load_groups([str(tmp_path / "none-*.yml")], default_interval_ms=S,
                       templates=TEMPLATES) == []


@pytest.mark.parametrize(("text", "line", "message"), [
    ("groups:\n- name: g\n  rules: [\n", 4, "invalid YAML"),
    ("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    severity: page\n", 6,
     "unknown field 'severity' in a rule"),
    ("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(up\n", 5, "unclosed left"),
    ("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: limitk(1, up)\n", 5, "limitk"),
    ("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n"
     "    annotations: {s: '{{ .Labels'}\n", 6, "annotation"),
], ids=["malformed-yaml", "unknown-field", "invalid-promql", "unsupported-promql",
        "bad-template"])
def test_a_bad_rule_file_is_a_config_error_naming_file_and_line(
        tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_groups([str(path)], default_interval_ms=S, templates=TEMPLATES)
    assert f"{path}:{line}" in str(raised.value)
    assert message in str(raised.value)


def test_a_regex_with_re2_syntax_loads_as_prometheus_loads_it(tmp_path: Path) -> None:
    """`\\p{L}` is RE2 (Go) syntax Python's `re` lacks; matchers use RE2, as Prometheus."""
    path = tmp_path / "re2.yml"
    path.write_text('groups:\n- name: g\n  rules:\n  - alert: A\n'
                    '    expr: up{job=~"\\\\p{L}+"}\n')
    groups = load_groups([str(path)], default_interval_ms=S, templates=TEMPLATES)
    assert [rule.name for rule in groups[0].rules] == ["A"]


def test_a_regex_re2_refuses_is_a_rule_file_error(tmp_path: Path) -> None:
    path = tmp_path / "lookahead.yml"
    path.write_text('groups:\n- name: g\n  rules:\n  - alert: A\n'
                    '    expr: up{job=~"(?=x)"}\n')
    with pytest.raises(ConfigError, match=r"lookahead\.yml:5: .*regex"):
        load_groups([str(path)], default_interval_ms=S, templates=TEMPLATES)


def ten_thousand_rules() -> str:
    """Half alerting, half recording rules; one alert in ten has a templated annotation."""
    lines = ["groups:\n- name: big\n  rules:\n"]
    for i in range(10_000):
        if i % 2 == 0:
            lines.append(f"  - record: job:x{i}:rate5m\n"
                         f"    expr: sum by (job) (rate(x_total{{i=\"{i}\"}}[5m]))\n")
            continue
        lines.append(f"  - alert: Alert{i}\n    expr: x{{i=\"{i}\"}} > {i}\n    for: 5m\n")
        if i % 10 == 1:
            lines.append("    annotations: {summary: '{{ $labels.i }} is {{ $value }}'}\n")
    return "".join(lines)


def test_a_group_of_ten_thousand_rules_evaluates_in_one_pass() -> None:
    nodes = tuple(
        RuleNode("record", f"job:x{i}", f'sum(rate(x_total{{i="{i}"}}[5m]))') if i % 2 == 0
        else RuleNode("alert", f"Alert{i}", f'x{{i="{i}"}} > 0', for_=300.0)
        for i in range(10_000))
    group = build_group(RuleGroupSpec("big", None, 0, nodes, "/big.yml", 1), MIN, TEMPLATES)
    rig = Rig()
    rig.manager.replace([group])
    for i in range(1, 10_000, 100):
        rig.put(T0, "x", 1.0, i=str(i))
    rig.manager.evaluate(group, T0)
    assert all(h.health == "ok" for h in group.health)
    assert rig.counter("inferwatch_alerts") == {
        (("alertname", f"Alert{i}"), ("state", "pending")): 1.0 for i in range(1, 10_000, 100)}


@pytest.mark.slow
def test_check_rules_accepts_a_ten_thousand_rule_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # rulefmt loads it (YAML, PromQL and template checks): about 5 s here, against promtool's
    # 0.7 s; no timing is asserted.
    big_rule_file = tmp_path / "big.yml"
    big_rule_file.write_text(ten_thousand_rules())
    assert cli_main(["check", "rules", str(big_rule_file)]) == 0
    assert capsys.readouterr().out == f"{big_rule_file}: OK (1 group(s), 10000 rule(s))\n"


# --- reload: replace() ------------------------------------------------------------------------

BEFORE = """
groups:
- name: g
  rules:
  - alert: Kept
    expr: x > 0
    for: 1m
    labels: {severity: page}
  - alert: Relabelled
    expr: x > 0
    labels: {severity: page}
  - alert: Removed
    expr: x > 0
  - record: r
    expr: x
"""

AFTER = """
groups:
- name: g
  rules:
  - alert: Kept
    expr: x > 0.5
    for: 5m
    labels: {severity: page}
    annotations: {summary: new}
  - alert: Relabelled
    expr: x > 0
    labels: {severity: ticket}
  - alert: Added
    expr: x > 0
"""


def test_reload_carries_alerts_to_the_rule_with_the_same_name_and_labels() -> None:
    rig = Rig()
    rig.manager.replace(groups_of(BEFORE))
    for t in (T0, T0 + MIN):
        rig.put(t, "x", 1.0)
        rig.evaluate_all(t)
    kept = rig.rule("Kept").active[labels(alertname="Kept", severity="page")]
    assert (kept.state, kept.active_at, kept.fired_at) == (AlertState.FIRING, T0, T0 + MIN)

    rig.manager.replace(groups_of(AFTER))
    assert rig.rule("Kept").active == {kept.labels: kept}  # the same alert, carried over
    assert rig.rule("Relabelled").active == {}  # other labels: another rule
    assert rig.rule("Added").active == {}
    assert not any(r.name == "Removed" for g in rig.manager.groups for r in g.rules)
    rig.put(T0 + 2 * MIN, "x", 1.0)
    rig.evaluate_all(T0 + 2 * MIN)
    # Still firing under the new rule (whose `for` is now 5m): no second firing.
    assert (kept.state, kept.active_at, kept.fired_at) == (AlertState.FIRING, T0, T0 + MIN)
    assert dict(kept.annotations) == {"summary": "new"}
    relabelled = rig.rule("Relabelled").active[labels(alertname="Relabelled",
                                                      severity="ticket")]
    assert relabelled.active_at == T0 + 2 * MIN


def test_reload_does_not_carry_alerts_into_another_group() -> None:
    rig = Rig()
    rig.manager.replace(groups_of("groups:\n- name: g1\n  rules:\n"
                                  "  - alert: A\n    expr: x > 0\n"))
    rig.put(T0, "x", 1.0)
    rig.evaluate_all(T0)
    rig.manager.replace(groups_of("groups:\n- name: g2\n  rules:\n"
                                  "  - alert: A\n    expr: x > 0\n"))
    assert rig.rule("A").active == {}


DUPLICATE_NAMES = """
groups:
- name: g
  rules:
  - alert: Down
    expr: up{job="a"} == 0
    for: 1m
  - alert: Down
    expr: up{job="b"} == 0
    for: 1m
"""


def test_reload_keeps_two_rules_with_the_same_name_apart() -> None:
    rig = Rig()
    rig.manager.replace(groups_of(DUPLICATE_NAMES))
    for minute in range(2):
        for job in ("a", "b"):
            rig.put(T0 + minute * MIN, "up", 0.0, job=job)
        rig.evaluate_all(T0 + minute * MIN)
    rig.manager.replace(groups_of(DUPLICATE_NAMES))
    for minute in range(2, 5):
        for job in ("a", "b"):
            rig.put(T0 + minute * MIN, "up", 0.0, job=job)
        rig.evaluate_all(T0 + minute * MIN)
    first, second = rig.manager.groups[0].alerting_rules()
    assert first.active is not second.active
    assert [(dict(a.labels)["job"], a.state) for a in first.active.values()] == [
        ("a", AlertState.FIRING)]
    assert [(dict(a.labels)["job"], a.state) for a in second.active.values()] == [
        ("b", AlertState.FIRING)]


def test_reload_marks_the_series_of_a_removed_rule_stale() -> None:
    rig = Rig()
    rig.manager.replace(groups_of(BEFORE))
    rig.put(T0, "x", 1.0)
    rig.evaluate_all(T0)
    assert labels(__name__="ALERTS", alertname="Removed", alertstate="firing") in rig.query(
        "ALERTS", T0)
    rig.manager.replace(groups_of(AFTER))
    rig.put(T0 + MIN, "x", 1.0)
    rig.evaluate_all(T0 + MIN)
    assert rig.query('ALERTS{alertname="Removed"}', T0 + MIN) == set()
    assert rig.query("r", T0 + MIN) == set()


def test_reload_keeps_tracking_the_series_a_kept_rule_produced() -> None:
    text = "groups:\n- name: g\n  rules:\n  - record: r\n    expr: x\n"
    rig = Rig()
    rig.manager.replace(groups_of(text))
    rig.put(T0, "x", 1.0, i="a")
    rig.evaluate_all(T0)
    rig.manager.replace(groups_of(text))
    rig.series.series[labels(__name__="x", i="a")].append_stale(T0 + 1)
    rig.evaluate_all(T0 + MIN)
    assert rig.query("r", T0 + MIN) == set()


# --- evaluate: metrics, listeners, persistence ---------------------------------------------------


def test_evaluate_counts_failures_logs_them_and_calls_listeners(
        caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    rig.manager.replace(groups_of(
        "groups:\n- name: g\n  rules:\n"
        "  - record: bad\n    expr: label_replace(x, \"a\", \"$1\", \"b\", \"(\")\n"
        "  - alert: A\n    expr: x > 0\n    for: 1m\n"))
    seen: list[tuple[str, int]] = []
    rig.manager.listeners.append(lambda group, t: seen.append((group.name, t)))
    rig.put(T0, "x", 1.0)
    caplog.set_level(logging.WARNING, logger="monitor.alerting.manager")
    rig.evaluate_all(T0)
    assert seen == [("g", T0)]
    assert rig.counter("inferwatch_rule_evaluation_failures") == {(("group", "g"),): 1.0}
    assert rig.counter("inferwatch_alerts") == {
        (("alertname", "A"), ("state", "pending")): 1.0}
    assert [r.getMessage() for r in caplog.records] == [
        "rule evaluation failed: group 'g' (/rules/r.yml), recording rule 'bad': "
        "invalid regular expression in label_replace(): ("]
    rig.evaluate_all(T0 + MIN)
    assert rig.counter("inferwatch_rule_evaluation_failures") == {(("group", "g"),): 2.0}


def test_state_is_saved_on_change_and_at_least_every_ten_seconds(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    alerts = AlertStateStore(state)
    rig = Rig(state=alerts)
    rig.manager.replace(groups_of("groups:\n- name: g\n  rules:\n"
                                  "  - alert: A\n    expr: x > 0\n",
                                  default_interval_ms=S))
    group = rig.manager.groups[0]
    rig.put(T0, "x", 1.0)
    rig.manager.evaluate(group, T0)  # new alert: saved
    assert alerts.last_eval(group.key) == T0
    for t in range(T0 + S, T0 + 10 * S, S):  # nothing changes for 9 s: no writes
        rig.manager.evaluate(group, t)
        assert alerts.last_eval(group.key) == T0
    rig.manager.evaluate(group, T0 + 10 * S)  # 10 s since the last save
    assert alerts.last_eval(group.key) == T0 + 10 * S
    rig.series.series[labels(__name__="x")].append_stale(T0 + 11 * S)
    rig.manager.evaluate(group, T0 + 11 * S)  # resolved: a change, saved at once
    assert alerts.last_eval(group.key) == T0 + 11 * S
    state.close()


class FullDisk(AlertStateStore):
    def __init__(self, state: StateStore) -> None:
        super().__init__(state)
        self.failing = True

    def save(self, group_key: str, t: int, rules: Iterable[tuple[str, AlertingRule]]) -> None:
        if self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        super().save(group_key, t, rules)


def test_a_failing_save_is_logged_and_retried_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = StateStore(tmp_path)
    disk = FullDisk(state)
    rig = Rig(state=disk)
    rig.manager.replace(groups_of("groups:\n- name: g\n  rules:\n"
                                  "  - alert: A\n    expr: x > 0\n"))
    group = rig.manager.groups[0]
    rig.put(T0, "x", 1.0)
    caplog.set_level(logging.ERROR, logger="monitor.alerting.manager")
    rig.manager.evaluate(group, T0)
    assert rig.rule("A").state() is AlertState.FIRING  # evaluation went on
    assert "cannot save alert state of group g: database or disk is full" in caplog.text
    disk.failing = False
    rig.manager.evaluate(group, T0 + MIN)  # the change not saved yet is saved now
    copy = AlertingRule("A", rig.rule("A").expr, "x > 0", for_ms=0, keep_firing_for_ms=0,
                        labels={}, annotations={}, templates=TEMPLATES)
    key = rule_key(group.key, rule_identity(copy))
    assert disk.restore(key, copy, down_at=T0 + MIN, now=T0 + MIN) == 1
    state.close()


# --- scheduling: run() --------------------------------------------------------------------------


class Stepper:
    """Moves a FakeClock from inside each evaluation (a manager listener), so that `run()`
    never sleeps more than a millisecond of real time: after the evaluation of tick E the
    clock reads E + `took` - 1 ms; the loop then sleeps until its next tick."""

    def __init__(self, rig: Rig, stop: asyncio.Event, *, evaluations: int,
                 took: Callable[[int], int] = lambda index: 0) -> None:
        self.rig = rig
        self.stop = stop
        self.evaluations = evaluations
        self.took = took
        self.seen: list[tuple[str, int]] = []
        rig.manager.listeners.append(self)

    def __call__(self, group: RuleGroup, t: int) -> None:
        took = self.took(len(self.seen)) or group.interval_ms
        self.seen.append((group.name, t))
        now_ms = round(self.rig.clock.time() * 1000)
        self.rig.clock.advance((t + took - 1 - now_ms) / 1000)
        if len(self.seen) >= self.evaluations:
            self.stop.set()


async def run_until_stopped(rig: Rig, stop: asyncio.Event) -> None:
    await asyncio.wait_for(rig.manager.run(stop), WAIT_S)


async def test_groups_are_evaluated_at_the_multiples_of_their_interval() -> None:
    rig = Rig(clock=FakeClock((T0 - 1) / 1000))  # 1 ms before a tick
    rig.manager.replace(groups_of("groups:\n- name: g\n  interval: 15s\n  rules:\n"
                                  "  - record: r\n    expr: vector(1)\n"))
    stop = asyncio.Event()
    stepper = Stepper(rig, stop, evaluations=4)
    await run_until_stopped(rig, stop)
    assert stepper.seen == [("g", T0 + i * 15 * S) for i in range(4)]
    # Each evaluation wrote its output at its own tick.
    stored = rig.series.series[labels(__name__="r")]
    assert stored.window(0, 2**62)[0] == [T0 + i * 15 * S for i in range(4)]
    assert rig.counter("inferwatch_rule_group_iterations_missed") == {}


async def test_an_overrunning_evaluation_skips_and_counts_the_ticks_it_missed() -> None:
    rig = Rig(clock=FakeClock((T0 - 1) / 1000))
    rig.manager.replace(groups_of("groups:\n- name: g\n  interval: 1s\n  rules:\n"
                                  "  - record: r\n    expr: vector(1)\n"))
    stop = asyncio.Event()
    # The second evaluation (at T0 + 1 s) takes 4 s: ticks at +2, +3 and +4 s are missed.
    stepper = Stepper(rig, stop, evaluations=4, took=lambda i: 4 * S if i == 1 else 0)
    await run_until_stopped(rig, stop)
    assert [t - T0 for _, t in stepper.seen] == [0, S, 5 * S, 6 * S]
    assert rig.counter("inferwatch_rule_group_iterations_missed") == {(("group", "g"),): 3.0}


async def test_replace_while_running_restarts_the_loops_with_the_new_groups() -> None:
    rig = Rig(clock=FakeClock((T0 - 1) / 1000))
    rig.manager.replace(groups_of("groups:\n- name: old\n  interval: 1s\n  rules:\n"
                                  "  - record: r\n    expr: vector(1)\n"))
    stop = asyncio.Event()
    new_groups = groups_of("groups:\n- name: new\n  interval: 1s\n  rules:\n"
                           "  - record: r\n    expr: vector(2)\n")

    def took(index: int) -> int:
        if index == 1:
            rig.manager.replace(new_groups)  # a reload from inside the running loop
        return 0

    stepper = Stepper(rig, stop, evaluations=4, took=took)
    await run_until_stopped(rig, stop)
    names = [name for name, _ in stepper.seen]
    assert names[:2] == ["old", "old"]
    assert set(names[2:]) == {"new"}
    assert rig.manager._tasks == {}  # run() cleaned up after itself


class ExplodingEngine(Engine):
    """An engine with a bug that surfaces once as an unexpected exception."""

    def __init__(self, store: SeriesStore) -> None:
        super().__init__(store)
        self.calls = 0

    def instant(self, expr: object, t_ms: int) -> Value:  # type: ignore[override]
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("unexpected bug")
        return super().instant(expr, t_ms)  # type: ignore[arg-type]


async def test_an_unexpected_exception_does_not_stop_the_group_loop() -> None:
    series = SeriesStore(retention_ms=10**12)
    rig = Rig(clock=FakeClock((T0 - 1) / 1000), engine=ExplodingEngine(series))
    rig.manager.replace(groups_of("groups:\n- name: g\n  interval: 1s\n  rules:\n"
                                  "  - record: r\n    expr: vector(1)\n"))
    stop = asyncio.Event()
    stepper = Stepper(rig, stop, evaluations=3)
    task = asyncio.create_task(rig.manager.run(stop))

    async def three() -> None:
        while len(stepper.seen) < 3:
            # The clock only moves inside evaluations: nudge it to the next tick if stuck.
            await asyncio.sleep(0.01)
            rig.clock.advance(1.0)

    try:
        await asyncio.wait_for(three(), 1.0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, WAIT_S)
    assert len(stepper.seen) >= 3


def test_the_last_evaluation_is_saved_at_shutdown(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    alerts = AlertStateStore(state)
    rig = Rig(state=alerts)
    rig.manager.replace(groups_of(ONE_ALERT, default_interval_ms=S))
    group = rig.manager.groups[0]
    rig.put(T0, "x", 1.0)
    for t in range(T0, T0 + 5 * S, S):
        rig.manager.evaluate(group, t)
    assert alerts.last_eval(group.key) == T0  # nothing changed since: not written yet
    rig.manager.flush()
    assert alerts.last_eval(group.key) == T0 + 4 * S
    state.close()


def test_a_start_without_a_group_keeps_its_alert_state_for_a_week(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    alerts = AlertStateStore(state)
    rig = Rig(state=alerts)
    rig.manager.replace(groups_of(ONE_ALERT))
    group = rig.manager.groups[0]
    rig.put(T0, "x", 1.0)
    rig.manager.evaluate(group, T0)
    # Restarted with the rule file missing (or empty): the firing alert's state stays...
    Rig(state=alerts, clock=FakeClock(T0 / 1000 + 60)).manager.replace([], restore=True)
    # ...so when the file is back, the alert is restored firing instead of firing anew.
    back = Rig(state=alerts, clock=FakeClock(T0 / 1000 + 120))
    back.manager.replace(groups_of(ONE_ALERT), restore=True)
    (alert,) = back.rule("A").active.values()
    assert alert.state is AlertState.FIRING and alert.fired_at == T0
    # A week later without the group, it is dropped.
    week = 7 * 24 * 3600
    Rig(state=alerts, clock=FakeClock(T0 / 1000 + week + 1)).manager.replace(
        [], restore=True)
    gone = Rig(state=alerts, clock=FakeClock(T0 / 1000 + week + 2))
    gone.manager.replace(groups_of(ONE_ALERT), restore=True)
    assert gone.rule("A").active == {}
    state.close()


ONE_ALERT = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 0\n"
