"""One evaluation of a rule (monitor/alerting/rules.py), driven with a scripted query function.

`AlertingRule.eval` is Prometheus 2.42's `AlertingRule.Eval`: these tests walk its state
machine (pending → firing at exactly `for`, resolve, the 15-minute retention of resolved
alerts, `keep_firing_for`), the alert's labels and annotations (templates, `__name__`,
`alertname`), the errors (duplicate label sets, `limit`) and the `ALERTS` /
`ALERTS_FOR_STATE` output. The query function is a `Script` that returns the vector chosen for
each evaluation time, so no engine or store is involved. Several of these timelines are run
through promtool in test_ruletests.py.

Times are milliseconds, as in the series store.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from monitor.alerting.rules import (
    RESOLVED_RETENTION_MS,
    Alert,
    AlertingRule,
    AlertState,
    RecordingRule,
    RuleError,
    TemplateContext,
    result_vector,
    template_query,
)
from monitor.promql import ast
from monitor.promql.parse import parse_expr
from monitor.promql.values import (
    Labels,
    Sample,
    Scalar,
    Series,
    String,
    Value,
    Vector,
    labels_from,
)

S = 1000
MIN = 60 * S
EXPR = parse_expr("up == 0")


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


def sample(value: float = 1.0, t: int = 0, **pairs: str) -> Sample:
    return Sample(labels_from({"__name__": "up", **pairs}), t, value)


class Script:
    """A rule's query function: the vector chosen for each evaluation time (empty when none),
    recording every call."""

    def __init__(self, results: Mapping[int, Value] | None = None) -> None:
        self.results: dict[int, Value] = dict(results or {})
        self.calls: list[tuple[ast.Expr, int]] = []

    def __call__(self, expr: ast.Expr, t: int) -> Value:
        self.calls.append((expr, t))
        return self.results.get(t, [])


def always(vector: Vector) -> Script:
    class Always(Script):
        def __call__(self, expr: ast.Expr, t: int) -> Value:
            self.calls.append((expr, t))
            return vector
    return Always()


def alerting_rule(*, for_ms: int = 0, keep_firing_for_ms: int = 0,
                  rule_labels: Mapping[str, str] | None = None,
                  annotations: Mapping[str, str] | None = None,
                  name: str = "InstanceDown") -> AlertingRule:
    return AlertingRule(name, EXPR, "up == 0", for_ms=for_ms,
                        keep_firing_for_ms=keep_firing_for_ms, labels=rule_labels or {},
                        annotations=annotations or {},
                        templates=TemplateContext({"cluster": "c1"}, "http://iw:9464"))


def alert_key(**pairs: str) -> Labels:
    return labels_from({"alertname": "InstanceDown", **pairs})


def only_alert(rule: AlertingRule) -> Alert:
    (alert,) = rule.active.values()
    return alert


def alerts_series(out: Vector) -> dict[Labels, float]:
    return {s.labels: s.v for s in out}


# --- pending, firing, resolved ----------------------------------------------------------------


def test_a_new_alert_is_pending_and_fires_exactly_when_for_has_elapsed() -> None:
    rule = alerting_rule(for_ms=5 * MIN)
    query = always([sample(instance="a")])
    rule.eval(10 * S, query, 0)
    alert = only_alert(rule)
    assert (alert.state, alert.active_at, alert.fired_at) == (AlertState.PENDING, 10 * S, None)
    rule.eval(10 * S + 5 * MIN - 1, query, 0)  # one millisecond short of `for`
    assert alert.state is AlertState.PENDING
    rule.eval(10 * S + 5 * MIN, query, 0)  # t - active_at == for: fires (>=, as Prometheus)
    assert (alert.state, alert.active_at, alert.fired_at) == (
        AlertState.FIRING, 10 * S, 10 * S + 5 * MIN)
    rule.eval(10 * S + 6 * MIN, query, 0)
    assert (alert.state, alert.active_at, alert.fired_at) == (
        AlertState.FIRING, 10 * S, 10 * S + 5 * MIN)
    assert rule.state() is AlertState.FIRING


def test_for_zero_fires_on_the_first_evaluation() -> None:
    rule = alerting_rule()
    out = rule.eval(7 * S, always([sample(instance="a")]), 0)
    alert = only_alert(rule)
    assert (alert.state, alert.active_at, alert.fired_at) == (AlertState.FIRING, 7 * S, 7 * S)
    assert alerts_series(out)[labels(__name__="ALERTS", alertname="InstanceDown",
                                     alertstate="firing", instance="a")] == 1.0


def test_a_firing_alert_resolves_when_it_leaves_the_result() -> None:
    rule = alerting_rule(for_ms=MIN)
    script = Script({0: [sample(instance="a")], MIN: [sample(instance="a")], 2 * MIN: []})
    rule.eval(0, script, 0)
    rule.eval(MIN, script, 0)
    assert only_alert(rule).state is AlertState.FIRING
    out = rule.eval(2 * MIN, script, 0)
    alert = only_alert(rule)  # kept, so that its resolution can be notified
    assert (alert.state, alert.resolved_at, alert.fired_at) == (
        AlertState.INACTIVE, 2 * MIN, MIN)
    assert out == []  # no ALERTS / ALERTS_FOR_STATE for a resolved alert
    assert rule.state() is AlertState.INACTIVE


def test_a_resolved_alert_is_kept_15_minutes_then_deleted() -> None:
    rule = alerting_rule()
    rule.eval(0, Script({0: [sample(instance="a")]}), 0)
    empty = Script()
    rule.eval(MIN, empty, 0)
    assert only_alert(rule).resolved_at == MIN
    rule.eval(MIN + RESOLVED_RETENTION_MS, empty, 0)  # exactly 15 min: still kept
    assert only_alert(rule).state is AlertState.INACTIVE
    assert only_alert(rule).resolved_at == MIN  # resolved once; the time does not move
    rule.eval(MIN + RESOLVED_RETENTION_MS + 1, empty, 0)
    assert rule.active == {}


def test_a_resolved_alert_that_comes_back_starts_pending_afresh() -> None:
    rule = alerting_rule(for_ms=2 * MIN)
    script = Script({t: [sample(instance="a")] for t in (0, MIN, 2 * MIN, 4 * MIN, 5 * MIN)})
    for t in range(0, 6 * MIN + 1, MIN):
        rule.eval(t, script, 0)
        if t == 2 * MIN:
            assert only_alert(rule).state is AlertState.FIRING
        if t == 3 * MIN:
            assert only_alert(rule).state is AlertState.INACTIVE
        if t == 4 * MIN:
            alert = only_alert(rule)
            assert (alert.state, alert.active_at, alert.resolved_at, alert.fired_at) == (
                AlertState.PENDING, 4 * MIN, None, None)
    # 6 min: gone again before its new `for` ran out; a pending alert is simply dropped.
    assert rule.active == {}


def test_a_pending_alert_that_disappears_is_dropped_not_resolved() -> None:
    rule = alerting_rule(for_ms=5 * MIN)
    rule.eval(0, Script({0: [sample(instance="a")]}), 0)
    out = rule.eval(MIN, Script(), 0)
    assert rule.active == {}
    assert out == []
    # It comes back: a new pending alert whose `for` starts now, not at 0.
    rule.eval(2 * MIN, Script({2 * MIN: [sample(instance="a")]}), 0)
    assert only_alert(rule).active_at == 2 * MIN
    rule.eval(6 * MIN, Script({6 * MIN: [sample(instance="a")]}), 0)
    assert only_alert(rule).state is AlertState.PENDING


def test_alerts_of_one_rule_move_independently() -> None:
    rule = alerting_rule(for_ms=MIN)
    rule.eval(0, Script({0: [sample(instance="a")]}), 0)
    rule.eval(MIN, Script({MIN: [sample(instance="a"), sample(instance="b")]}), 0)
    assert rule.active[alert_key(instance="a")].state is AlertState.FIRING
    assert rule.active[alert_key(instance="b")].state is AlertState.PENDING
    assert rule.state() is AlertState.FIRING
    rule.eval(2 * MIN, Script({2 * MIN: [sample(instance="b")]}), 0)
    assert rule.active[alert_key(instance="a")].state is AlertState.INACTIVE
    assert rule.active[alert_key(instance="b")].state is AlertState.FIRING


# --- keep_firing_for --------------------------------------------------------------------------


def test_keep_firing_for_keeps_firing_while_absent_then_resolves() -> None:
    rule = alerting_rule(keep_firing_for_ms=3 * MIN)
    present = {0: [sample(instance="a")]}
    script = Script(present)
    rule.eval(0, script, 0)
    out = rule.eval(MIN, script, 0)  # gone from the result: keeps firing from now
    alert = only_alert(rule)
    assert (alert.state, alert.keep_firing_since, alert.resolved_at) == (
        AlertState.FIRING, MIN, None)
    assert alerts_series(out)[labels(__name__="ALERTS", alertname="InstanceDown",
                                     alertstate="firing", instance="a")] == 1.0
    rule.eval(MIN + 3 * MIN - 1, script, 0)  # still inside keep_firing_for
    assert alert.state is AlertState.FIRING
    assert alert.keep_firing_since == MIN
    out = rule.eval(MIN + 3 * MIN, script, 0)  # since + keep_firing_for: resolved
    assert (alert.state, alert.resolved_at) == (AlertState.INACTIVE, 4 * MIN)
    assert out == []


def test_keep_firing_since_is_reset_when_the_alert_comes_back() -> None:
    rule = alerting_rule(keep_firing_for_ms=3 * MIN)
    script = Script({0: [sample(instance="a")], 3 * MIN: [sample(instance="a")]})
    rule.eval(0, script, 0)
    rule.eval(MIN, script, 0)
    rule.eval(2 * MIN, script, 0)
    assert only_alert(rule).keep_firing_since == MIN
    rule.eval(3 * MIN, script, 0)  # back in the result
    assert only_alert(rule).keep_firing_since is None
    rule.eval(4 * MIN, script, 0)  # gone again: a new keep-firing period starts
    assert only_alert(rule).keep_firing_since == 4 * MIN
    for t in (5 * MIN, 6 * MIN):  # would have resolved at 4 min without the reset
        rule.eval(t, script, 0)
        assert only_alert(rule).state is AlertState.FIRING
    rule.eval(7 * MIN, script, 0)
    assert only_alert(rule).state is AlertState.INACTIVE
    assert only_alert(rule).resolved_at == 7 * MIN


def test_keep_firing_for_does_not_apply_to_pending_alerts() -> None:
    rule = alerting_rule(for_ms=5 * MIN, keep_firing_for_ms=10 * MIN)
    rule.eval(0, Script({0: [sample(instance="a")]}), 0)
    rule.eval(MIN, Script(), 0)
    assert rule.active == {}


def test_an_alert_kept_firing_counts_towards_the_limit() -> None:
    rule = alerting_rule(keep_firing_for_ms=10 * MIN)
    rule.eval(0, Script({0: [sample(instance="a")]}), 1)
    with pytest.raises(RuleError, match="exceeded limit of 1 with 2 alerts"):
        rule.eval(MIN, Script({MIN: [sample(instance="b")]}), 1)


# --- what an alert carries: value, labels, annotations ----------------------------------------


def test_value_and_annotations_follow_the_latest_sample_while_active() -> None:
    rule = alerting_rule(for_ms=MIN, annotations={"summary": "value {{ $value }}"})
    rule.eval(0, Script({0: [sample(1.5, instance="a")]}), 0)
    alert = only_alert(rule)
    assert (alert.value, dict(alert.annotations)) == (1.5, {"summary": "value 1.5"})
    rule.eval(MIN, Script({MIN: [sample(2.5, instance="a")]}), 0)
    assert only_alert(rule) is alert  # the same alert: active_at and state kept
    assert (alert.value, dict(alert.annotations), alert.active_at, alert.state) == (
        2.5, {"summary": "value 2.5"}, 0, AlertState.FIRING)


def test_labels_rule_labels_override_sample_labels_name_dropped_alertname_set() -> None:
    rule = alerting_rule(rule_labels={"severity": "page",
                                      "team": "{{ $labels.job }}-oncall",
                                      "origin": "{{ $labels.__name__ }}",
                                      "empty": "{{ if false }}x{{ end }}"})
    got = [sample(instance="a", job="api", severity="low", alertname="spoofed")]
    rule.eval(0, always(got), 0)
    assert only_alert(rule).labels == labels(
        alertname="InstanceDown", instance="a", job="api", severity="page",
        team="api-oncall", origin="up")  # a template that expands to "" drops the label


def test_annotation_templates_see_labels_value_and_external_labels() -> None:
    rule = alerting_rule(annotations={
        "summary": "{{ $labels.instance }} of {{ .Labels.job }} is down",
        "value": "{{ $value | humanizePercentage }}",
        "where": "{{ $externalLabels.cluster }} {{ $externalURL }}",
        "empty": "",
        "broken": "{{ $value | nosuchfunction }}",
    })
    rule.eval(0, always([sample(0.256, instance="a", job="api")]), 0)
    notes = dict(only_alert(rule).annotations)
    assert notes["summary"] == "a of api is down"
    assert notes["value"] == "25.6%"
    assert notes["where"] == "c1 http://iw:9464"
    assert notes["empty"] == ""  # annotations keep empty values, unlike labels
    # A template that fails to parse or run becomes Prometheus's error text, not an exception.
    assert notes["broken"].startswith("<error expanding template: ")
    assert "nosuchfunction" in notes["broken"]


def test_a_scalar_result_is_one_alert_with_only_the_alertname() -> None:
    rule = alerting_rule(rule_labels={"severity": "page"})
    rule.eval(0, always(Scalar(0, 3.0)), 0)  # type: ignore[arg-type]
    alert = only_alert(rule)
    assert (alert.labels, alert.value) == (alert_key(severity="page"), 3.0)


@pytest.mark.parametrize("result", [String(0, "x"), [Series(labels(a="1"), [0], [1.0])]],
                         ids=["string", "matrix"])
def test_a_string_or_matrix_result_is_an_error(result: Value) -> None:
    rule = alerting_rule()
    with pytest.raises(RuleError, match=r"^rule result is not a vector or scalar$"):
        rule.eval(0, always(result), 0)  # type: ignore[arg-type]


# --- errors: duplicate label sets, limit ------------------------------------------------------


def test_duplicate_label_sets_after_applying_labels_are_an_error_and_keep_the_state() -> None:
    rule = alerting_rule(rule_labels={"instance": "all"})
    rule.eval(0, always([sample(job="a")]), 0)
    before = dict(rule.active)
    with pytest.raises(RuleError) as raised:
        rule.eval(MIN, always([sample(job="a", instance="x"), sample(job="a", instance="y")]), 0)
    assert str(raised.value) == ("vector contains metrics with the same labelset after "
                                 "applying alert labels")
    assert rule.active == before  # as Prometheus: the error is raised before any change


def test_series_differing_only_in_name_collide_once_the_name_is_dropped() -> None:
    rule = alerting_rule()
    result = [Sample(labels(__name__="a", job="x"), 0, 1.0),
              Sample(labels(__name__="b", job="x"), 0, 1.0)]
    with pytest.raises(RuleError, match="same labelset after applying alert labels"):
        rule.eval(0, always(result), 0)


def test_limit_exceeded_is_an_error_and_clears_the_active_alerts() -> None:
    rule = alerting_rule(for_ms=MIN)
    two = [sample(instance="a"), sample(instance="b")]
    assert len(rule.eval(0, always(two), 2)) == 4  # at the limit: fine
    with pytest.raises(RuleError) as raised:
        rule.eval(MIN, always([*two, sample(instance="c")]), 2)
    assert str(raised.value) == "exceeded limit of 2 with 3 alerts"
    assert rule.active == {}
    # Next time within the limit: the alerts start over, pending.
    rule.eval(2 * MIN, always(two), 2)
    assert {a.active_at for a in rule.active.values()} == {2 * MIN}
    assert rule.state() is AlertState.PENDING


def test_a_limit_of_zero_or_less_is_no_limit() -> None:
    rule = alerting_rule()
    many = [sample(instance=str(i)) for i in range(50)]
    assert len(rule.eval(0, always(many), 0)) == 100
    assert len(rule.eval(MIN, always(many), -1)) == 100


def test_resolved_alerts_do_not_count_towards_the_limit() -> None:
    rule = alerting_rule()
    rule.eval(0, always([sample(instance="a")]), 1)
    rule.eval(MIN, always([sample(instance="b")]), 1)  # a resolves (kept), b fires
    assert rule.active[alert_key(instance="a")].state is AlertState.INACTIVE
    assert rule.active[alert_key(instance="b")].state is AlertState.FIRING


# --- ALERTS and ALERTS_FOR_STATE --------------------------------------------------------------


def test_alerts_and_alerts_for_state_samples() -> None:
    rule = alerting_rule(for_ms=MIN, rule_labels={"severity": "page"})
    script = always([sample(instance="a")])
    out = rule.eval(90_500, script, 0)  # active_at is not a whole second
    common = {"alertname": "InstanceDown", "instance": "a", "severity": "page"}
    assert {s.labels: (s.t, s.v) for s in out} == {
        labels(__name__="ALERTS", alertstate="pending", **common): (90_500, 1.0),
        # ALERTS_FOR_STATE's value: active_at in whole seconds (Go's Time.Unix()).
        labels(__name__="ALERTS_FOR_STATE", **common): (90_500, 90.0),
    }
    out = rule.eval(90_500 + MIN, script, 0)
    assert {s.labels: (s.t, s.v) for s in out} == {
        labels(__name__="ALERTS", alertstate="firing", **common): (150_500, 1.0),
        labels(__name__="ALERTS_FOR_STATE", **common): (150_500, 90.0),
    }


def test_alerts_series_keep_the_raw_text_of_a_label_template_that_expands_to_nothing() -> None:
    rule = alerting_rule(rule_labels={"sev": "{{ if false }}x{{ end }}"})
    out = rule.eval(0, always([sample(instance="a")]), 0)
    assert labels(__name__="ALERTS", alertname="InstanceDown", alertstate="firing",
                  instance="a", sev="{{ if false }}x{{ end }}") in alerts_series(out)


def test_the_rule_queries_its_own_expression_at_the_evaluation_time() -> None:
    rule = alerting_rule()
    script = Script()
    rule.eval(123_000, script, 0)
    assert script.calls == [(EXPR, 123_000)]


# --- recording rules --------------------------------------------------------------------------


def recording_rule(rule_labels: Mapping[str, str] | None = None) -> RecordingRule:
    return RecordingRule("job:up:sum", EXPR, "up == 0", rule_labels or {})


def test_a_recording_rule_renames_and_labels_its_result() -> None:
    rule = recording_rule({"env": "prod", "job": "overridden", "drop": ""})
    out = rule.eval(5 * S, always([sample(2.0, t=1, job="a", drop="x", instance="i")]), 0)
    assert out == [Sample(labels(__name__="job:up:sum", env="prod", job="overridden",
                                 instance="i"), 5 * S, 2.0)]


def test_a_recording_rule_of_a_scalar_gives_one_sample_with_only_the_name() -> None:
    out = recording_rule({"env": "prod"}).eval(0, always(Scalar(0, 4.0)), 0)  # type: ignore[arg-type]
    assert out == [Sample(labels(__name__="job:up:sum", env="prod"), 0, 4.0)]


def test_a_recording_rule_of_nothing_records_nothing() -> None:
    assert recording_rule().eval(0, Script(), 0) == []


@pytest.mark.parametrize("result", [String(0, "x"), [Series(labels(a="1"), [0], [1.0])]],
                         ids=["string", "matrix"])
def test_a_recording_rule_of_a_string_or_matrix_is_an_error(result: Value) -> None:
    with pytest.raises(RuleError, match=r"^rule result is not a vector or scalar$"):
        recording_rule().eval(0, always(result), 0)  # type: ignore[arg-type]


def test_a_recording_rule_producing_duplicates_is_an_error() -> None:
    rule = recording_rule({"instance": "all"})
    with pytest.raises(RuleError) as raised:
        rule.eval(0, always([sample(instance="a"), sample(instance="b")]), 0)
    assert str(raised.value) == ("vector contains metrics with the same labelset after "
                                 "applying rule labels")


def test_a_recording_rule_over_its_limit_is_an_error() -> None:
    three = [sample(instance=str(i)) for i in range(3)]
    assert len(recording_rule().eval(0, always(three), 3)) == 3
    with pytest.raises(RuleError) as raised:
        recording_rule().eval(0, always(three), 2)
    assert str(raised.value) == "exceeded limit of 2 with 3 series"


def test_result_vector_and_template_query_turn_a_scalar_into_one_sample() -> None:
    assert result_vector(Scalar(5, 1.0)) == [Sample((), 5, 1.0)]
    vector = [sample(instance="a")]
    assert result_vector(vector) is vector
    seen: list[tuple[str, int]] = []

    def instant(expr: str, t: int) -> Value:
        seen.append((expr, t))
        return Scalar(t, 2.0)

    assert list(template_query(instant)("1 + 1", 12.5)) == [Sample((), 12_500, 2.0)]
    assert seen == [("1 + 1", 12_500)]
