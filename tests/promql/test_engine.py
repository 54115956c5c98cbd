"""The engine's limits and its answers to hostile queries (monitor/promql/engine.py, parse.py).

- A query that would hold more than `max_samples` samples (a range query of a million points,
  a huge range selector or subquery) is refused with Prometheus's error, early: its memory
  stays bounded by the limit, not by what the query asked for.
- The timeout, with Prometheus's error.
- Invalid PromQL is a PromQLParseError with a useful message; what this engine does not
  evaluate (Prometheus 3 syntax, native histograms) is refused by name; a deeply nested or
  huge query is refused without crashing the process; negative `@` times work.
"""

from __future__ import annotations

import contextlib
import re
import time
import tracemalloc

import pytest

from monitor.promql import ast
from monitor.promql.engine import (
    DEFAULT_MAX_SAMPLES,
    BadQueryError,
    Engine,
    QueryError,
    QueryTimeoutError,
    TooManySamplesError,
)
from monitor.promql.parse import MAX_NESTING, MAX_QUERY_BYTES, PromQLParseError, parse_expr
from monitor.promql.values import Labels, Sample, Scalar, Series, labels_from
from monitor.tsdb.store import SeriesStore

TOO_MANY = "query processing would load too many samples into memory in query execution"
STEP = 15_000


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


def store_of(series: int, samples: int, step: int = STEP) -> SeriesStore:
    store = SeriesStore(retention_ms=2**62)
    for i in range(series):
        stored = store.get_or_create(labels(__name__="m", i=str(i)))
        for k in range(samples):
            stored.append(k * step, float(k))
    return store


@pytest.fixture(scope="module")
def million() -> SeriesStore:
    """1,000 series of 1,001 samples: `m` over them at every step is 1,001,000 points."""
    return store_of(1000, 1001)


# --- max_samples ------------------------------------------------------------------------


def test_a_million_point_range_query_is_refused_early_with_prometheus_error(
        million: SeriesStore) -> None:
    engine = Engine(million, max_samples=10_000)
    tracemalloc.start()
    try:
        with pytest.raises(TooManySamplesError) as raised:
            engine.range("m", 0, 1000 * STEP, STEP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value) == TOO_MANY
    assert raised.value.kind == "execution"
    # The result it refused would be >= 16 MB even as bare (t, v) pairs; it stopped after
    # about 10,000 samples.
    assert peak < 2 * 1024 * 1024


def test_the_default_limit_refuses_a_million_point_range_query(million: SeriesStore) -> None:
    assert DEFAULT_MAX_SAMPLES < 1_001_000
    with pytest.raises(TooManySamplesError, match=f"^{TOO_MANY}$"):
        Engine(million).range("m", 0, 1000 * STEP, STEP)
    # The same store answers queries that stay within the limit.
    result = Engine(million).range("sum(m)", 0, 100 * STEP, STEP)
    assert len(result) == 1
    assert result[0].vs[-1] == 100.0 * 1000


def test_a_range_query_within_max_samples_is_answered() -> None:
    engine = Engine(store_of(10, 10), max_samples=100)
    result = engine.range("m", 0, 8 * STEP, STEP)  # 10 series x 9 steps = 90 points
    assert sum(len(s.ts) for s in result) == 90
    with pytest.raises(TooManySamplesError):
        engine.range("m", 0, 10 * STEP, STEP)  # 110


def test_a_range_query_of_exactly_max_samples_points_is_allowed() -> None:
    engine = Engine(store_of(10, 10), max_samples=100)
    result = engine.range("m", 0, 9 * STEP, STEP)  # 10 series x 10 steps = 100 points
    assert sum(len(s.ts) for s in result) == 100


def test_a_coarse_range_query_counts_the_samples_of_one_step_not_of_the_whole_span() -> None:
    # 10,000 samples 15 s apart; a 1 m window per hourly step holds 5 of them. Prometheus
    # answers this with max_samples=100; so must we, however many steps one block covers.
    engine = Engine(store_of(1, 10_000), max_samples=100)
    result = engine.range("count_over_time(m[1m])", 3_600_000, 10_000 * STEP, 3_600_000)
    assert list(result[0].vs) == [5.0] * 41
    with pytest.raises(TooManySamplesError):
        engine.range("count_over_time(m[30m])", 3_600_000, 10_000 * STEP, 3_600_000)


def test_an_instant_query_over_a_huge_range_is_refused() -> None:
    engine = Engine(store_of(5, 1000), max_samples=4_000)
    with pytest.raises(TooManySamplesError):
        engine.instant("sum_over_time(m[1d])", 999 * STEP)
    assert engine.instant("sum_over_time(m[1h])", 999 * STEP) != []


def test_a_subquery_with_millions_of_steps_is_refused() -> None:
    engine = Engine(store_of(1, 10), max_samples=50_000)
    started = time.monotonic()
    with pytest.raises(TooManySamplesError):
        engine.instant("max_over_time(vector(1)[30d:1s])", 10 * STEP)  # 2.6M inner steps
    assert time.monotonic() - started < 30  # refused after ~50k steps (bound, not a timing)


def test_a_range_query_with_a_million_steps_of_a_constant_is_refused() -> None:
    engine = Engine(SeriesStore(retention_ms=1), max_samples=10_000)
    with pytest.raises(TooManySamplesError):
        engine.range("vector(1)", 0, 1_000_000 * 1000, 1000)


def test_the_steps_of_a_refused_range_query_are_not_allocated_up_front() -> None:
    engine = Engine(SeriesStore(retention_ms=1), max_samples=1_000)
    tracemalloc.start()
    try:
        with pytest.raises(TooManySamplesError):
            engine.range("vector(1)", 0, 300_000 * 1000, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


# --- timeout and bad requests --------------------------------------------------------------------


def test_a_query_past_its_deadline_is_refused_with_prometheus_error() -> None:
    engine = Engine(store_of(3, 10), timeout_s=-1.0)
    with pytest.raises(QueryTimeoutError) as raised:
        engine.instant("m", 9 * STEP)
    assert str(raised.value) == "query timed out in expression evaluation"
    assert raised.value.kind == "timeout"
    with pytest.raises(QueryTimeoutError):
        engine.range("1", 0, 10 * STEP, STEP)


@pytest.mark.parametrize(("expr", "step", "message"), [
    ("m[5m]", STEP, 'invalid expression type "range vector" for range query, must be Scalar '
                    "or instant Vector"),
    ('"text"', STEP, 'invalid expression type "string" for range query, must be Scalar or '
                     "instant Vector"),
    ("m", 0, "zero or negative query resolution step widths are not accepted. Try a positive "
             "integer"),
    ("m", -STEP, "zero or negative query resolution step widths are not accepted. Try a "
                 "positive integer"),
])
def test_bad_range_queries(expr: str, step: int, message: str) -> None:
    with pytest.raises(BadQueryError) as raised:
        Engine(store_of(1, 2)).range(expr, 0, STEP, step)
    assert str(raised.value) == message
    assert raised.value.kind == "bad_data"


def test_duplicate_label_sets_in_a_result_are_an_execution_error() -> None:
    store = SeriesStore(retention_ms=2**62)
    store.append(labels(__name__="a", job="x"), 0, 1.0)
    store.append(labels(__name__="b", job="x"), 0, 2.0)
    with pytest.raises(QueryError, match=r"^vector cannot contain metrics with the same "
                                         r"labelset$"):
        Engine(store).instant('-{job="x"}', 0)


# --- invalid and unsupported PromQL ---------------------------------------------------------------


@pytest.mark.parametrize(("expr", "message"), [
    ("sum(m", "unclosed left parenthesis"),
    ("m +", "invalid promql query"),
    ("rate(m)", "expected type matrix in call to function 'rate', got vector"),
    ('label_replace(m, "a", "b")', "expected 5 argument(s) in call to 'label_replace', got 3"),
    ('"a" + 1', "binary expression must contain only scalar and instant vector types"),
    ("m{", "unexpected end of input inside braces"),
    ("{}", "vector selector must contain at least one non-empty matcher"),
    ('{a=""}', "vector selector must contain at least one non-empty matcher"),
    ('m{__name__="n"}', "metric name must not be set twice"),
    ("m and bool n", "bool modifier can only be used on comparison operators"),
    ("m @ 1 @ 2", "@ <timestamp> may not be set multiple times"),
    ("rate(m[1m:0s])", "duration must be greater than 0"),
    ("nosuchfunction(m)", "unknown function"),
    ("", ""),
])
def test_invalid_promql_is_a_parse_error_saying_why(expr: str, message: str) -> None:
    with pytest.raises(PromQLParseError) as raised:
        parse_expr(expr)
    assert str(raised.value).startswith("parse error: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(("expr", "named"), [
    ("limitk(2, m)", "aggregation limitk is not in Prometheus 2.x"),
    ("limit_ratio(0.5, m)", "aggregation limit_ratio is not in Prometheus 2.x"),
    ("info(m)", "function info() is not in Prometheus 2.x"),
    ("histogram_count(m)", "histogram_count() works on native histograms"),
    ("histogram_sum(m)", "histogram_sum()"),
    ("histogram_fraction(0, 1, m)", "histogram_fraction()"),
    ('m{a="b" or c="d"}', "'or' between matchers in a selector is Prometheus 3 syntax"),
    ("mad_over_time(m[5m])", "function mad_over_time() is not in Prometheus 2.x"),
    ('sort_by_label(m, "a")', "function sort_by_label() is not in Prometheus 2.x"),
    ("double_exponential_smoothing(m[5m], 0.5, 0.5)", "double_exponential_smoothing()"),
])
def test_unsupported_constructs_are_refused_by_name(expr: str, named: str) -> None:
    with pytest.raises(PromQLParseError) as raised:
        parse_expr(expr)
    assert "unsupported PromQL" in str(raised.value)
    assert named in str(raised.value)


def test_holt_winters_is_still_prometheus_2() -> None:
    parse_expr("holt_winters(m[5m], 0.5, 0.5)")


@pytest.mark.parametrize("expr", [
    "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1),
    "1" + " + 1" * (MAX_NESTING + 1),
    "-" * 100_000 + "1",
    "(" * 100_000,
    "sum(" * 20_000 + "m" + ")" * 20_000,
], ids=["brackets", "operators", "unary-chain", "open-brackets", "nested-sums"])
def test_deeply_nested_queries_are_refused_without_crashing(expr: str) -> None:
    with pytest.raises(PromQLParseError, match=r"query too (complex|long)"):
        parse_expr(expr)


def test_nesting_just_under_the_limit_still_evaluates() -> None:
    depth = MAX_NESTING // 2
    value = Engine(store_of(1, 1)).instant("(" * depth + "1" + ")" * depth, 0)
    assert value == Scalar(0, 1.0)


def test_function_calls_nested_to_the_limit_evaluate() -> None:
    depth = MAX_NESTING - 2
    value = Engine(store_of(1, 1)).instant("abs(" * depth + "vector(1)" + ")" * depth, 0)
    assert value == [Sample((), 0, 1.0)]


def test_a_tree_too_deep_to_evaluate_is_a_query_error_not_a_crash() -> None:
    # Trees built in code skip the parser's limit; the engine still answers with an error.
    node = parse_expr("vector(1)")
    for _ in range(5_000):
        node = ast.Call("abs", (node,))
    engine = Engine(store_of(1, 1))
    with pytest.raises(BadQueryError, match="nested too deeply"):
        engine.instant(node, 0)
    with pytest.raises(BadQueryError, match="nested too deeply"):
        engine.range(node, 0, 60_000, 15_000)


def test_a_query_over_64k_is_refused() -> None:
    expr = "m{a=\"" + "x" * MAX_QUERY_BYTES + "\"}"
    with pytest.raises(PromQLParseError, match=f"more than {MAX_QUERY_BYTES} bytes"):
        parse_expr(expr)


def test_brackets_and_operators_inside_strings_do_not_count_as_nesting() -> None:
    text = "(" * MAX_NESTING + "+-*/"
    node = parse_expr(f'm{{a="{text}"}}')
    assert node is not None


# --- @ with negative times ---------------------------------------------------------------------


def test_negative_at_times_select_before_the_epoch() -> None:
    store = SeriesStore(retention_ms=2**62)
    store.append(labels(__name__="m"), -100_000, 7.0)
    store.append(labels(__name__="m"), -1_500, 8.0)
    engine = Engine(store)
    assert engine.instant("m @ -100", 10**9) == [Sample(labels(__name__="m"), 10**9, 7.0)]
    assert engine.instant("m @ -1.5", 0) == [Sample(labels(__name__="m"), 0, 8.0)]
    assert engine.instant("timestamp(m @ -99)", 0) == [Sample((), 0, -100.0)]
    assert engine.range("m @ -100", 0, 60_000, 30_000) == [
        Series(labels(__name__="m"), [0, 30_000, 60_000], [7.0, 7.0, 7.0])]
    assert engine.instant('label_replace(m @ -100, "s", "@ -5", "", "")', 0) == [
        Sample(labels(__name__="m", s="@ -5"), 0, 7.0)]


def test_a_string_that_looks_like_a_negative_at_is_left_alone() -> None:
    store = SeriesStore(retention_ms=2**62)
    store.append(labels(__name__="m", a="@ -5"), 0, 1.0)
    assert Engine(store).instant('m{a="@ -5"}', 0) == [
        Sample(labels(__name__="m", a="@ -5"), 0, 1.0)]


# --- regexes: RE2 is linear, Python's `re` backtracks ----------------------------------


def test_a_pathological_regex_cannot_outlive_the_query_timeout() -> None:
    store = SeriesStore(retention_ms=2**62)
    store.append(labels(__name__="m", a="a" * 25), 0, 1.0)
    engine = Engine(store, timeout_s=0.01)
    started = time.monotonic()
    with contextlib.suppress(QueryTimeoutError):
        engine.instant('m{a=~"(a+)+b"}', 0)
    assert time.monotonic() - started < 0.25


# --- syntax promql-parser reads and Prometheus 2.x refuses ------------------------------------


@pytest.mark.parametrize(("expr", "message"), [
    ("up[300]", "bad duration syntax: '300'"),
    ("rate(up[5m:30])", "bad duration syntax: '30'"),
    ("up offset 60", "bad duration syntax: '60'"),
    ('{"up"}', "quoted metric and label names in braces are Prometheus 3 syntax"),
    ('up{a="1", "b.c"="2"}', "quoted metric and label names"),
    ("up @ -1e20", "timestamp out of bounds for @ modifier"),
    ("up @ -1e308", "timestamp out of bounds for @ modifier"),
    ('up{a=~"(?<n>x)"}', "invalid or unsupported Perl syntax"),
])
def test_syntax_prometheus_2_refuses_is_refused(expr: str, message: str) -> None:
    with pytest.raises(PromQLParseError, match=re.escape(message)):
        parse_expr(expr)


@pytest.mark.parametrize("expr", [
    "sum(job:a:1)", 'label_replace(up, "dst", "$1", "src", "(.*)")', "up[5m:30s] offset 1m",
    'up{a="{\\"b\\"}"}', "up @ -1e9",
])
def test_similar_looking_valid_queries_parse(expr: str) -> None:
    assert parse_expr(expr) is not None
