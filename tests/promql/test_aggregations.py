"""Aggregation operators against Prometheus 2.42's answers, compared exactly.

Oracles: aggregators.test (Prometheus's script, exact values), result orders a Prometheus 2.42
server returned for topk/bottomk with ties and NaNs (testdata/ordering.json), and promtool in
the integration test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import require_program
from promql_scripts import EvalCase, check_case, parse_script, promtool_disagreements

from monitor.promql.aggregations import AggregationError, aggregate
from monitor.promql.values import Labels, Sample, Vector

TESTDATA = Path(__file__).parent / "testdata"
CASES = parse_script((TESTDATA / "aggregators.test").read_text())
ORDERING = json.loads((TESTDATA / "ordering.json").read_text())


def sample(value: float, **labels: str) -> Sample:
    return Sample(tuple(sorted(labels.items())), 0, value)


def agg(op: str, vector: Vector, *, by: tuple[str, ...] = (), without: bool = False,
        param: float | str | None = None) -> list[tuple[Labels, float]]:
    return [(s.labels, s.v) for s in aggregate(op, vector, grouping=by, without=without,
                                               param=param, t_ms=42)]


def decode(text: str) -> float:
    return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}.get(text) or float(text)


def numbered(*values: float) -> Vector:
    return [Sample((("__name__", "x"), ("i", f"{i:05d}")), 0, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("case", CASES, ids=EvalCase.id)
def test_prometheus_testdata(case: EvalCase) -> None:
    check_case(case)


REQUESTS = [sample(1.0, __name__="req", job="a", instance="1"),
            sample(2.0, __name__="req", job="a", instance="2"),
            sample(4.0, __name__="req", job="b", instance="1")]


def test_grouping_labels() -> None:
    assert agg("sum", REQUESTS, by=("job",)) == [((("job", "a"),), 3.0), ((("job", "b"),), 4.0)]
    assert agg("sum", REQUESTS, by=("instance",), without=True) == [
        ((("job", "a"),), 3.0), ((("job", "b"),), 4.0)]
    assert agg("sum", REQUESTS) == [((), 7.0)]
    assert agg("sum", REQUESTS, by=("__name__",)) == [((("__name__", "req"),), 7.0)]
    assert agg("count", REQUESTS, by=("nonexistent",)) == [((), 3.0)]
    every = aggregate("sum", REQUESTS, grouping=(), without=False, param=None, t_ms=42)
    assert {s.t for s in every} == {42}


def test_avg_infinities_and_overflow() -> None:
    big = 9.988465674311579e307
    cases = [((math.inf, 0.0, math.inf), math.inf), ((math.inf, -math.inf), math.nan),
             ((-math.inf, 0.0, math.inf), math.nan), ((big, big, big), big),
             ((-big, -big, big, big), 0.0), ((1.0, math.nan), math.nan)]
    for values, expected in cases:
        (_, got), = agg("avg", numbered(*values))
        assert got == expected or (math.isnan(got) and math.isnan(expected)), values


def test_stddev_stdvar_min_max_group() -> None:
    values = numbered(0.0, 8.0, 8.0, 2.0, 3.0)
    assert agg("stdvar", values) == [((), 10.559999999999999)]
    assert agg("stddev", values) == [((), 3.249615361854384)]
    assert agg("stddev", numbered(5.0)) == [((), 0.0)]
    assert agg("max", numbered(math.nan, 1.0, math.nan)) == [((), 1.0)]
    assert agg("min", numbered(math.nan, 1.0, 0.5)) == [((), 0.5)]
    (_, only_nan), = agg("max", numbered(math.nan, math.nan))
    assert math.isnan(only_nan)
    assert agg("group", values) == [((), 1.0)]


def test_quantile_phi() -> None:
    values = numbered(0.0, 1.0, 4.0)
    assert agg("quantile", values, param=0.8) == [((), 2.8000000000000003)]
    assert agg("quantile", values, param=-1.0) == [((), -math.inf)]
    assert agg("quantile", values, param=2.0) == [((), math.inf)]
    (_, nan), = agg("quantile", values, param=math.nan)
    assert math.isnan(nan)


def test_count_values_formats_values_as_strconv() -> None:
    vector = numbered(1e21, 1e-7, -0.0, 0.0, 2.5, 2.5, math.nan, math.inf)
    counted = dict(agg("count_values", vector, param="v"))
    assert counted == {(("v", "1000000000000000000000"),): 1.0, (("v", "0.0000001"),): 1.0,
                       (("v", "-0"),): 1.0, (("v", "0"),): 1.0, (("v", "2.5"),): 2.0,
                       (("v", "NaN"),): 1.0, (("v", "+Inf"),): 1.0}
    # `without` keeps the other labels; the value label may overwrite an input label.
    assert agg("count_values", REQUESTS, by=("instance",), without=True, param="job") == [
        ((("job", "1"),), 1.0), ((("job", "2"),), 1.0), ((("job", "4"),), 1.0)]
    with pytest.raises(AggregationError, match=r'^invalid label name "a-b"$'):
        agg("count_values", REQUESTS, param="a-b")


def test_topk_bottomk_k() -> None:
    assert agg("topk", REQUESTS, param=0.9) == []
    assert agg("bottomk", REQUESTS, param=-3.0) == []
    assert [v for _, v in agg("topk", REQUESTS, param=1e18)] == [4.0, 2.0, 1.0]
    assert [v for _, v in agg("topk", REQUESTS, param=2.7)] == [4.0, 2.0]
    assert agg("topk", REQUESTS, param=1.0)[0][0] == REQUESTS[2].labels  # labels kept
    with pytest.raises(AggregationError, match=r"^Scalar value NaN overflows int64$"):
        agg("topk", REQUESTS, param=math.nan)
    with pytest.raises(AggregationError, match=r"^Scalar value 1e\+19 overflows int64$"):
        agg("bottomk", REQUESTS, param=1e19)


def test_topk_by_group() -> None:
    result = agg("topk", REQUESTS, by=("job",), param=1.0)
    assert result == [(REQUESTS[1].labels, 2.0), (REQUESTS[2].labels, 4.0)]


@pytest.mark.parametrize("fixture", range(len(ORDERING)))
def test_topk_bottomk_order_is_prometheus_order(fixture: int) -> None:
    data = ORDERING[fixture]
    vector = numbered(*(decode(v) for v in data["values"]))
    for expr, expected in data["orders"].items():
        if expr.startswith("sort"):
            continue
        op, k = expr.split("(")[0], float(expr.split("(")[1].split(",")[0])
        got = [int(s.labels[1][1]) for s in aggregate(op, vector, grouping=(), without=False,
                                                      param=k, t_ms=0)]
        assert got == expected, expr


def test_unknown_operator() -> None:
    with pytest.raises(AggregationError):
        agg("median", REQUESTS)


@pytest.mark.integration
def test_testdata_agrees_with_promtool() -> None:
    promtool = str(require_program("promtool", "prometheus"))
    assert promtool_disagreements(CASES, promtool) == []
