"""Rule groups (monitor/alerting/groups.py) over a real series store and engine.

A group evaluates its rules one after another at one timestamp, appending each rule's output
before the next runs (so a recording rule feeds the rules after it, as in Prometheus); writes
a stale marker for every series a rule produced last time and not this time; and counts and
reports a failing rule without stopping the others. `RuleMetrics` keeps the failure counter,
the duration gauge and `alerts{alertname,state}`.
"""

from __future__ import annotations

from collections.abc import Sequence

from monitor.alerting.groups import RuleGroup, RuleMetrics, describe_failure
from monitor.alerting.rules import (
    AlertingRule,
    AlertState,
    RecordingRule,
    Rule,
    TemplateContext,
)
from monitor.metrics.store import MetricStore
from monitor.promql.engine import Engine, QueryError
from monitor.promql.parse import parse_expr
from monitor.promql.values import Labels, Sample, labels_from
from monitor.tsdb.store import SeriesStore

MIN = 60_000
TEMPLATES = TemplateContext({}, "")


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


def record(name: str, expr: str, **rule_labels: str) -> RecordingRule:
    return RecordingRule(name, parse_expr(expr), expr, rule_labels)


def alert(name: str, expr: str, *, for_ms: int = 0) -> AlertingRule:
    return AlertingRule(name, parse_expr(expr), expr, for_ms=for_ms, keep_firing_for_ms=0,
                        labels={}, annotations={}, templates=TEMPLATES)


class Failures:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, group: RuleGroup, rule: Rule, exc: Exception) -> None:
        self.seen.append((group.name, rule.name, str(exc)))


class Harness:
    def __init__(self, rules: Sequence[Rule], *, limit: int = 0) -> None:
        self.store = SeriesStore(retention_ms=10**12)
        self.engine = Engine(self.store)
        self.group = RuleGroup("g", "/rules/g.yml", MIN, limit, rules)
        self.failures = Failures()

    def put(self, t: int, name: str, value: float, **pairs: str) -> None:
        self.store.append(labels_from({"__name__": name, **pairs}), t, value)

    def evaluate(self, t: int) -> None:
        self.group.evaluate(t, self.engine.instant, self.store, self.failures)

    def query(self, expr: str, t: int) -> dict[Labels, float]:
        value = self.engine.instant(expr, t)
        assert isinstance(value, list)
        return {s.labels: s.v for s in value if isinstance(s, Sample)}


def test_a_recording_rule_feeds_the_next_rule_at_the_same_timestamp() -> None:
    h = Harness([record("job:x:sum", "sum by (job) (x)"),
                 alert("Big", "job:x:sum > 5")])
    h.put(0, "x", 3.0, job="a", i="1")
    h.put(0, "x", 4.0, job="a", i="2")
    h.evaluate(0)
    # The alert saw the recorded 7 at t=0, not nothing (or an older value).
    (big,) = h.group.rules[1].active.values()  # type: ignore[union-attr]
    assert (big.labels, big.value, big.state) == (
        labels(alertname="Big", job="a"), 7.0, AlertState.FIRING)
    assert h.store.series[labels(__name__="job:x:sum", job="a")].latest(0, 0) == (0, 7.0)


def test_a_rule_does_not_see_what_a_later_rule_records_in_the_same_evaluation() -> None:
    h = Harness([alert("Big", "job:x:sum > 5"), record("job:x:sum", "sum by (job) (x)")])
    h.put(0, "x", 7.0, job="a")
    h.evaluate(0)
    assert h.group.rules[0].active == {}  # type: ignore[union-attr]
    h.put(MIN, "x", 7.0, job="a")
    h.evaluate(MIN)  # now the previous evaluation's record is within the lookback
    assert len(h.group.rules[0].active) == 1  # type: ignore[union-attr]


def test_outputs_are_written_at_the_evaluation_time() -> None:
    h = Harness([record("r", "x"), alert("A", "x > 0")])
    h.put(0, "x", 1.0)
    h.evaluate(30_000)
    assert {labels: stored.latest(30_000, 0) for labels, stored in h.store.series.items()
            if labels != (("__name__", "x"),)} == {
        labels(__name__="r"): (30_000, 1.0),
        labels(__name__="ALERTS", alertname="A", alertstate="firing"): (30_000, 1.0),
        labels(__name__="ALERTS_FOR_STATE", alertname="A"): (30_000, 30.0),
    }


def test_a_series_a_rule_stopped_producing_gets_a_stale_marker() -> None:
    h = Harness([record("r", "x")])
    h.put(0, "x", 1.0, i="a")
    h.put(0, "x", 2.0, i="b")
    h.evaluate(0)
    h.put(MIN, "x", 1.0, i="a")
    h.store.series[labels(__name__="x", i="b")].append_stale(MIN)  # x{i="b"} disappears
    h.evaluate(MIN)
    gone = h.store.series[labels(__name__="r", i="b")]
    assert gone.is_stale_now()
    assert gone.last_t == MIN
    # Without the marker the lookback would still show r{i="b"} for five minutes.
    assert h.query("r", MIN) == {labels(__name__="r", i="a"): 1.0}
    assert h.query('r{i="b"}', 3 * MIN) == {}
    h.put(2 * MIN, "x", 1.0, i="a")
    h.evaluate(2 * MIN)
    assert not h.store.series[labels(__name__="r", i="a")].is_stale_now()
    assert h.store.series[labels(__name__="r", i="b")].last_t == MIN  # marked once


def test_alerts_series_of_a_resolved_alert_go_stale_and_pending_becomes_firing() -> None:
    h = Harness([alert("A", "x > 0", for_ms=MIN)])
    for t, value in ((0, 1.0), (MIN, 1.0), (2 * MIN, 0.0)):
        h.put(t, "x", value)
        h.evaluate(t)
        if t == 0:
            assert h.query("ALERTS", t) == {
                labels(__name__="ALERTS", alertname="A", alertstate="pending"): 1.0}
        if t == MIN:
            # The pending series is now stale: only the firing one is seen.
            assert h.query("ALERTS", t) == {
                labels(__name__="ALERTS", alertname="A", alertstate="firing"): 1.0}
    assert h.query("ALERTS", 2 * MIN) == {}
    assert h.query("ALERTS_FOR_STATE", 2 * MIN) == {}


def test_a_failing_rule_is_reported_and_the_others_still_run() -> None:
    h = Harness([record("before", "x"),
                 record("dup", "x", i="same"),  # two series collapse into one
                 alert("After", "x > 0")])
    h.put(0, "x", 1.0, i="a")
    h.put(0, "x", 2.0, i="b")
    h.evaluate(0)
    assert h.failures.seen == [(
        "g", "dup",
        "vector contains metrics with the same labelset after applying rule labels")]
    assert [health.health for health in h.group.health] == ["ok", "err", "ok"]
    assert h.group.health[1].last_error.startswith("vector contains metrics")
    assert set(h.query("before", 0)) == {labels(__name__="before", i="a"),
                                         labels(__name__="before", i="b")}
    assert len(h.group.rules[2].active) == 2  # type: ignore[union-attr]
    assert h.group.last_evaluation == 0.0
    assert all(health.last_evaluation == 0.0 for health in h.group.health)
    # It recovers as soon as its result is valid again.
    h.put(MIN, "x", 1.0, i="a")
    h.store.series[labels(__name__="x", i="b")].append_stale(MIN)
    h.evaluate(MIN)
    assert [health.health for health in h.group.health] == ["ok", "ok", "ok"]
    assert h.group.health[1].last_error == ""
    assert h.group.last_evaluation == 60.0


def test_a_failed_evaluation_keeps_the_previous_series_unmarked() -> None:
    # Prometheus leaves seriesInPreviousEval alone when a rule fails: no stale markers.
    h = Harness([record("r", "x")], limit=2)
    h.put(0, "x", 1.0, i="a")
    h.evaluate(0)
    for i in ("b", "c"):
        h.put(MIN, "x", 1.0, i=i)
    h.evaluate(MIN)  # a, b, c: over the limit of 2
    assert h.failures.seen == [("g", "r", "exceeded limit of 2 with 3 series")]
    assert not h.store.series[labels(__name__="r", i="a")].is_stale_now()


def test_an_engine_error_is_a_rule_failure() -> None:
    h = Harness([record("r", 'label_replace(x, "a", "$1", "b", "(")'), record("ok", "x")])
    h.put(0, "x", 1.0)
    h.evaluate(0)
    assert h.failures.seen == [
        ("g", "r", "invalid regular expression in label_replace(): (")]
    assert h.query("ok", 0) == {labels(__name__="ok"): 1.0}


def test_too_many_samples_fails_the_rule_not_the_group() -> None:
    h = Harness([record("big", "sum_over_time(x[1h])"), record("small", "x")])
    h.engine = Engine(h.store, max_samples=10)
    for t in range(0, 20 * MIN, MIN):
        h.put(t, "x", 1.0)
    h.evaluate(20 * MIN)
    assert h.failures.seen == [("g", "big", "query processing would load too many samples "
                                            "into memory in query execution")]
    assert h.query("small", 20 * MIN) == {labels(__name__="small"): 1.0}


def test_describe_failure_names_group_file_kind_and_rule() -> None:
    group = RuleGroup("api", "/etc/rules/api.yml", MIN, 0, [])
    assert describe_failure(group, record("r", "x"), QueryError("boom")) == (
        "group 'api' (/etc/rules/api.yml), recording rule 'r': boom")
    assert describe_failure(group, alert("A", "x"), QueryError("boom")) == (
        "group 'api' (/etc/rules/api.yml), alerting rule 'A': boom")


def test_group_key_and_alerting_rules() -> None:
    rules: list[Rule] = [record("r", "x"), alert("A", "x"), alert("B", "x")]
    group = RuleGroup("api", "/f.yml", MIN, 0, rules)
    assert group.key == "/f.yml;api"
    assert [r.name for r in group.alerting_rules()] == ["A", "B"]
    assert [h.health for h in group.health] == ["unknown"] * 3


# --- RuleMetrics --------------------------------------------------------------------------


def family_values(store: MetricStore, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    family = store.family(name)
    assert family is not None
    return {key: series.value for key, series in family.series.items()}  # type: ignore[union-attr]


def test_rule_metrics_count_failures_durations_and_alerts_by_state() -> None:
    store = MetricStore()
    metrics = RuleMetrics(store)
    h = Harness([alert("A", "x > 0", for_ms=MIN), alert("B", "y > 0"), record("bad", "x",
                                                                                i="same")])
    h.put(0, "x", 1.0, i="1")
    h.put(0, "x", 1.0, i="2")
    h.put(0, "y", 1.0)

    def failed(group: RuleGroup, rule: Rule, exc: Exception) -> None:
        metrics.failed(group)

    h.group.evaluate(0, h.engine.instant, h.store, failed)
    metrics.evaluated(h.group)
    metrics.alert_counts([h.group])
    assert family_values(store, "inferwatch_rule_evaluation_failures") == {
        (("group", "g"),): 1.0}
    assert (("group", "g"),) in family_values(store, "inferwatch_rule_group_last_duration_seconds")
    assert family_values(store, "inferwatch_alerts") == {
        (("alertname", "A"), ("state", "pending")): 2.0,
        (("alertname", "B"), ("state", "firing")): 1.0,
    }
    # B resolves and A fires: B's series goes away rather than sitting at 0.
    h.put(MIN, "x", 1.0, i="1")
    h.put(MIN, "x", 1.0, i="2")
    h.put(MIN, "y", 0.0)
    h.group.evaluate(MIN, h.engine.instant, h.store, failed)
    metrics.alert_counts([h.group])
    assert family_values(store, "inferwatch_alerts") == {
        (("alertname", "A"), ("state", "firing")): 2.0}
    assert family_values(store, "inferwatch_rule_evaluation_failures") == {
        (("group", "g"),): 2.0}


def test_an_unexpected_exception_in_one_rule_does_not_skip_the_rest_of_the_group() -> None:
    h = Harness([record("first", "x"), record("broken", "x * 2"), record("last", "x + 0")])
    h.put(0, "x", 1.0)

    def query(expr: object, t: int) -> object:
        if h.group.rules[1].expr is expr:
            raise ZeroDivisionError("float division by zero")
        return h.engine.instant(expr, t)  # type: ignore[arg-type]

    h.group.evaluate(0, query, h.store, h.failures)
    assert h.failures.seen == [("g", "broken", "float division by zero")]
    assert h.group.health[1].health == "err"
    assert [h.group.health[i].health for i in (0, 2)] == ["ok", "ok"]
    assert labels(__name__="last") in h.store.series
