"""PromQL printed back from our tree (monitor/promql/printer.py) and the rewrite that keeps
`instance` (monitor/promql/keep_label.py).

The printer's oracle is the parser: every expression of Prometheus's own test scripts
(testdata/*.test), of the bundled and demo rules, and a list of corner cases prints to text
that parses back to the same tree. That Prometheus reads the printed text the same way is
checked where it matters, on exported rule files, by promtool (tests/test_export_rules.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from promql_scripts import parse_script

from monitor.promql.keep_label import carrying_records, keep_label
from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.promql.printer import to_promql

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = Path(__file__).with_name("testdata")

CORNERS = [
    "- -x", "-1", "x - -1", "-x ^ 2", "+Inf", "-Inf", "NaN", "1e-05 * x", "52428800 < x",
    "x offset -5m", "x @ start() offset 5m", "x @ -5", "x @ 100.5", "rate(x[5m] offset 1h)",
    "x[5m:]", "rate(x[5m])[1h:30s] @ end()", "sum without () (x)", "sum by () (x)",
    "a * ignoring() group_left b", "a * on() group_right(c, d) b", "a and on(x) b",
    "a or ignoring(y) b", "x > bool 2", '"a\\n\\"q"', '{__name__="x"}',
    '{__name__=~"x.*", a!~"b|c"}', 'x{a="\\u00e9\\t"}', "topk by (a) (3, x)",
    'count_values("v", x)', "quantile without (a) (0.9, x)",
    'label_replace(x, "a", "$1", "b", "(.*)")', "x ^ y ^ z", "(x ^ y) ^ z", "x atan2 y",
    "time()", "vector(1)", "1 + 2 * 3", "(1 + 2) * 3", "x unless on (a) y",
]


def _rule_exprs() -> list[str]:
    exprs: list[str] = []
    for path in [*sorted((ROOT / "rules").glob("*.yml")), ROOT / "monitor/demo/rules.yml"]:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            exprs.extend(rule["expr"] for rule in group["rules"])
    return exprs


def _script_exprs() -> list[str]:
    exprs: list[str] = []
    for path in sorted(TESTDATA.glob("*.test")):
        for case in parse_script(path.read_text(encoding="utf-8")):
            try:
                parse_expr(case.expr)
            except PromQLParseError:
                continue  # eval_fail cases and constructs refused by name
            exprs.append(case.expr)
    return exprs


def test_printed_expressions_parse_back_to_the_same_tree() -> None:
    exprs = [*CORNERS, *_rule_exprs(), *_script_exprs()]
    assert len(exprs) > 400
    for text in exprs:
        tree = parse_expr(text)
        printed = to_promql(tree)
        # repr, not ==: a NaN literal is never equal to itself.
        assert repr(parse_expr(printed)) == repr(tree), (text, printed)


@pytest.mark.parametrize(("before", "after"), [
    ("sum(rate(x[5m]))", "sum by (instance) (rate(x[5m]))"),
    ("histogram_quantile(0.95, sum(rate(b[5m])) by (le)) > 15",
     "histogram_quantile(0.95, sum by (instance, le) (rate(b[5m]))) > 15"),
    ("sum without (instance, a) (x)", "sum without (a) (x)"),
    ("count(up) > 1", "count by (instance) (up) > 1"),
    ("topk(3, x)", "topk by (instance) (3, x)"),
    ("a > on (budget) b", "a > on (instance, budget) b"),
    ("x / ignoring (instance) y", "x / y"),
    ("x * on () group_left (instance, y) sum(y)",
     "x * on (instance) group_left (y) sum by (instance) (y)"),
    # A side that cannot carry the label is matched as written.
    ("r / on (id) group_left vector(1)", "r / on (id) group_left vector(1)"),
    ("sum(vector(1))", "sum(vector(1))"),
    ("absent(x)", "absent(x)"),
    ('sum(x{instance=""})', 'sum(x{instance=""})'),
    # A one-to-one match keeps only its `on` labels, so instance must be one of them.
    ("sum(a > on () b)", "sum by (instance) (a > on (instance) b)"),
    # A side the label cannot reach (vector(), the same on every host) matches each host.
    ("sum(a > on () vector(1))", "sum by (instance) (a > on () group_left vector(1))"),
    ("sum(x) / vector(2)", "sum by (instance) (x) / ignoring (instance) group_left vector(2)"),
    ("vector(2) - sum(x)", "vector(2) - ignoring (instance) group_right sum by (instance) (x)"),
    ("vector(1) * on () group_left sum(x)",
     "vector(1) * on () group_right sum by (instance) (x)"),
    ("sum(x) or vector(0)", "sum by (instance) (x) or ignoring (instance) vector(0)"),
    ("max by (w) (x) and on (w) y", "max by (instance, w) (x) and on (instance, w) y"),
])
def test_keep_label_keeps_instance_through_aggregations_and_matches(before: str,
                                                                    after: str) -> None:
    assert to_promql(keep_label(parse_expr(before)).expr) == after


def test_a_record_made_from_vector_does_not_carry_instance_and_one_made_from_series_does(
        ) -> None:
    rules = [("budget:ratio", parse_expr("vector(0.001)"), {}),
             ("sli:ratio", parse_expr("sum(rate(errors[5m])) / sum(rate(total[5m]))"), {}),
             ("burn:ratio", parse_expr("sli:ratio / on (id) group_left budget:ratio"), {}),
             ("tagged", parse_expr("vector(1)"), {"instance": "a"})]
    recorded = carrying_records(rules)
    assert recorded == {"budget:ratio": False, "sli:ratio": True, "burn:ratio": True,
                        "tagged": True}
    assert to_promql(keep_label(parse_expr("burn:ratio / on (id) group_left budget:ratio"),
                                recorded=recorded).expr) == \
        "burn:ratio / on (id) group_left budget:ratio"
    assert to_promql(keep_label(parse_expr("sli:ratio > on (id) burn:ratio"),
                                recorded=recorded).expr) == \
        "sli:ratio > on (instance, id) burn:ratio"
