"""Running rule unit tests in `promtool test rules` format: `inferwatch test rules`.

Per test group, as promtool 2.42 does it: the input series are loaded at multiples of the
group's `interval` from time 0; every rule group is evaluated at every multiple of the file's
`evaluation_interval` up to the largest eval time, in `group_eval_order`; at each alert test's
time the *firing* alerts of the named rules are compared with the expected ones (labels and
annotations, as multisets); then each PromQL test's expression is evaluated over everything
stored. Where promtool compares floats exactly, this runner uses SPEC §3's rule: equal within a
relative tolerance of 1e-9, NaN equal to NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitor.alerting.groups import RuleGroup
from monitor.alerting.manager import build_group, check_expr
from monitor.alerting.rulefmt import RuleGroupSpec, load_rule_file
from monitor.alerting.rules import (
    AlertingRule,
    AlertState,
    Rule,
    TemplateContext,
    template_query,
)
from monitor.alerting.series_notation import STALE
from monitor.alerting.templates import check_template
from monitor.alerting.testfile import (
    AlertRuleTest,
    PromqlExprTest,
    TestFile,
    UnitTestGroup,
    load_test_file,
)
from monitor.errors import ConfigError
from monitor.promql import ast
from monitor.promql.engine import Engine, QueryError
from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.promql.values import Labels, Sample, Scalar, Value, format_labels, labels_from
from monitor.tsdb.store import SeriesStore
from monitor.units import format_duration

RELATIVE_TOLERANCE = 1e-9


@dataclass
class FileResult:
    file: str
    failures: list[str] = field(default_factory=list)
    groups: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures


def floats_equal(a: float, b: float) -> bool:
    """Equal within a relative 1e-9; NaN equals NaN; an infinity equals only itself."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))


def run_file(path: str | Path) -> FileResult:
    result = FileResult(str(path))
    try:
        test_file = load_test_file(path)
        specs = _load_rules(test_file)
    except ConfigError as exc:
        result.failures.append(str(exc))
        return result
    for group in test_file.tests:
        result.groups += 1
        result.failures.extend(_run_group(test_file, group, specs))
    return result


def _load_rules(test_file: TestFile) -> list[RuleGroupSpec]:
    matched, _unmatched = test_file.matched_rule_files()
    specs: list[RuleGroupSpec] = []
    for path in matched:
        specs.extend(load_rule_file(path, expr_checker=check_expr,
                                    template_checker=check_template))
    return specs


def _ordered(groups: list[RuleGroup], order: Sequence[str]) -> list[RuleGroup]:
    position = {name: index for index, name in enumerate(order)}
    return sorted(groups, key=lambda g: position.get(g.name, 0))


def _store_for(group: UnitTestGroup) -> SeriesStore:
    store = SeriesStore(retention_ms=2**62)
    interval_ms = round(group.interval * 1000)
    for series in group.input_series:
        labels = labels_from(series.labels)
        stored = store.get_or_create(labels)
        for index, value in enumerate(series.values):
            t = index * interval_ms
            if value is STALE:
                stored.append_stale(t)
            elif isinstance(value, float):
                stored.append(t, value)
    return store


def _run_group(test_file: TestFile, group: UnitTestGroup,
               specs: list[RuleGroupSpec]) -> list[str]:
    eval_ms = round(test_file.evaluation_interval * 1000)
    store = _store_for(group)
    engine = Engine(store, subquery_step_ms=eval_ms)
    templates = TemplateContext(group.external_labels, group.external_url,
                                template_query(engine.instant))
    groups = _ordered([build_group(spec, eval_ms, templates) for spec in specs],
                      test_file.group_eval_order)
    prefix = f"    name: {group.name},\n" if group.name else ""
    errors: list[str] = []  # evaluation errors: they end the group's test, as in promtool
    failures: list[str] = []  # failed checks: every one is reported
    alert_times = sorted({round(test.eval_time * 1000) for test in group.alert_rule_tests})
    last = max([*alert_times, *(round(t.eval_time * 1000) for t in group.promql_expr_tests),
                0])

    def failed(rule_group: RuleGroup, rule: Rule, exc: Exception) -> None:
        errors.append(f"    rule: {rule.name}, time: {format_duration(current / 1000)}, "
                      f"err: {exc}")

    current, next_alert = 0, 0
    while current <= last:
        for rule_group in groups:
            rule_group.evaluate(current, engine.instant, store, failed)
        if errors:
            return failures + errors
        while next_alert < len(alert_times) and current <= alert_times[next_alert] < (
                current + eval_ms):
            at = alert_times[next_alert]
            failures.extend(prefix + problem for problem in _check_alerts(
                groups, [t for t in group.alert_rule_tests if round(t.eval_time * 1000) == at]))
            next_alert += 1
        current += eval_ms
    for test in group.promql_expr_tests:
        problem = _check_expr(engine, test)
        if problem is not None:
            failures.append(prefix + problem)
    return failures


def _check_alerts(groups: Sequence[RuleGroup], tests: Sequence[AlertRuleTest]) -> list[str]:
    problems = []
    for test in tests:
        got = sorted(
            (alert.labels, alert.annotations)
            for rule_group in groups for rule in rule_group.rules
            if isinstance(rule, AlertingRule) and rule.name == test.alertname
            for alert in rule.active.values() if alert.state is AlertState.FIRING)
        expected = sorted(
            (labels_from({**e.labels, "alertname": test.alertname}),
             tuple(sorted(e.annotations.items())))
            for e in test.exp_alerts)
        if got != expected:
            problems.append(f"    alertname: {test.alertname}, time: "
                            f"{format_duration(test.eval_time)}, \n"
                            f"        exp:{_alerts_text(expected)}, \n"
                            f"        got:{_alerts_text(got)}")
    return problems


def _alerts_text(alerts: Sequence[tuple[Labels, Labels]]) -> str:
    if not alerts:
        return "[]"
    return "[" + ", ".join(f"\n            {i}:\n              Labels:{format_labels(labels)}"
                           f"\n              Annotations:{format_labels(annotations)}"
                           for i, (labels, annotations) in enumerate(alerts)) + "\n            ]"


def _check_expr(engine: Engine, test: PromqlExprTest) -> str | None:
    at = format_duration(test.eval_time)
    try:
        got = sorted(_instant_samples(engine, test), key=lambda s: s[0])
    except (QueryError, PromQLParseError) as exc:
        return f"    expr: {test.expr!r}, time: {at}, err: {exc}"
    expected = sorted(((labels_from(e.labels), e.value) for e in test.exp_samples),
                      key=lambda s: s[0])
    same = len(got) == len(expected) and all(
        gl == el and floats_equal(gv, ev) for (gl, gv), (el, ev) in zip(got, expected,
                                                                         strict=True))
    if same:
        return None
    return (f"    expr: {test.expr!r}, time: {at},\n        exp: {_samples_text(expected)}\n"
            f"        got: {_samples_text(got)}")


def _instant_samples(engine: Engine, test: PromqlExprTest) -> list[tuple[Labels, float]]:
    node = parse_expr(test.expr)
    if ast.value_type(node) not in (ast.ValueType.VECTOR, ast.ValueType.SCALAR):
        raise QueryError("rule result is not a vector or scalar")
    return _as_samples(engine.instant(node, round(test.eval_time * 1000)))


def _as_samples(value: Value) -> list[tuple[Labels, float]]:
    """An instant vector or scalar as (labels, value) pairs."""
    if isinstance(value, Scalar):
        return [((), value.v)]
    return [(s.labels, s.v) for s in value if isinstance(s, Sample)]  # type: ignore[union-attr]


def _samples_text(samples: Sequence[tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return "\n" + "\n".join(f"            {format_labels(labels)} {value!r}"
                            for labels, value in samples)
