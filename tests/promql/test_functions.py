"""PromQL functions against Prometheus 2.42's answers, compared exactly.

The oracles: Prometheus's own test scripts (testdata/*.test, ported with exact values),
Go-math values and date fields that promtool 2.42 printed (testdata/go_math.json), and result
orders that a Prometheus 2.42 server returned (testdata/ordering.json). The integration tests
re-run the scripts and random math arguments through promtool itself.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from conftest import require_program
from promql_scripts import EvalCase, check_case, parse_script, promtool_disagreements

from monitor.goregexp import RegexpError as GoRegexpError
from monitor.goregexp import compile_go_regexp
from monitor.goregexp import expand as expand_template
from monitor.promql import gomath, gotrig
from monitor.promql.ast import (
    FUNCTIONS,
    Call,
    MatrixSelector,
    ParenExpr,
    StringLiteral,
    ValueType,
    VectorSelector,
)
from monitor.promql.functions import (
    INSTANT_FUNCTIONS,
    RANGE_FUNCTIONS,
    CallInput,
    FunctionError,
    RangeInput,
    absent_labels,
)
from monitor.promql.goconv import format_float, parse_float
from monitor.promql.quantile import bucket_quantile, histogram_quantile
from monitor.promql.values import Sample, Scalar, String, Vector
from monitor.tsdb.store import Matcher

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = ("functions.test", "histograms.test", "trig_functions.test", "at_modifier.test")
GO_MATH = json.loads((TESTDATA / "go_math.json").read_text())
ORDERING = json.loads((TESTDATA / "ordering.json").read_text())


def script_cases(*names: str) -> list[EvalCase]:
    return [case for name in names for case in parse_script((TESTDATA / name).read_text())]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                 == math.copysign(1, b))


def decode(text: str) -> float:
    return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}.get(text) or float(text)


def window(ts: list[int], vs: list[float], start: int, end: int, *params: float,
           t: int | None = None) -> RangeInput:
    return RangeInput(ts, vs, start, end, params, t)


def call(func: str, *args: Vector | Scalar | String, t: int = 0,
         node: Call | None = None) -> Vector | Scalar:
    return INSTANT_FUNCTIONS[func](CallInput(list(args), node or Call(func, ()), t))


def vec(*values: float, name: str = "m") -> Vector:
    return [Sample((("__name__", name), ("i", f"{i:02d}")), 0, v) for i, v in enumerate(values)]


# --- Prometheus's test scripts -------------------------------------------------------------

@pytest.mark.parametrize("case", script_cases(*SCRIPTS), ids=EvalCase.id)
def test_prometheus_testdata(case: EvalCase) -> None:
    check_case(case)


# --- Go's math, as promtool printed it -----------------------------------------------------

@pytest.mark.parametrize("func", sorted(GO_MATH["math"]["results"]))
def test_math_functions_match_go_bit_for_bit(func: str) -> None:
    inputs = [decode(x) for x in GO_MATH["math"]["inputs"]]
    result = call(func, vec(*inputs))
    assert isinstance(result, list)
    expected = [decode(x) for x in GO_MATH["math"]["results"][func]]
    mismatches = [(x, s.v, want) for x, s, want in zip(inputs, result, expected, strict=True)
                  if not (math.isnan(s.v) and math.isnan(want)) and s.v != want]
    assert not mismatches


@pytest.mark.parametrize("func", sorted(GO_MATH["dates"]["results"]))
def test_date_functions_match_go_including_nan_and_huge_values(func: str) -> None:
    inputs = [decode(x) for x in GO_MATH["dates"]["inputs"]]
    result = call(func, vec(*inputs))
    assert isinstance(result, list)
    assert [s.v for s in result] == [decode(x) for x in GO_MATH["dates"]["results"][func]]
    assert all(s.labels == (("i", f"{i:02d}"),) for i, s in enumerate(result))  # name dropped


def test_go_quirks_python_would_get_wrong() -> None:
    assert gomath.log10(1000.0) == 3.0
    assert gomath.exp(1.0) == 2.718281828459045
    assert gomath.ceil(-0.5) == 0 and math.copysign(1, gomath.ceil(-0.5)) == -1
    assert gomath.go_max(math.inf, math.nan) == math.inf  # Go's Max: +Inf beats NaN
    assert math.isnan(gomath.go_min(1.0, math.nan))
    assert gotrig.sin(1e22) == -0.8522008497671889  # Go's Payne-Hanek reduction, 1 ulp off


def test_pow_and_atan2_for_the_binary_operators() -> None:
    assert gomath.go_pow(2.5, 1.7) == 4.747861205827336  # C's pow: ...337
    assert math.isnan(gomath.go_pow(-8.0, 0.3))
    assert gomath.go_pow(7.3, -2.0) == 0.018765246762994934
    assert gomath.go_pow(0.0, -3.0) == math.inf and gomath.go_pow(-0.0, -3.0) == -math.inf
    assert gotrig.atan2(2.5, 3.1) == 0.6786624907483126
    assert gotrig.atan2(-8.0, 3.1) == -1.2011120379995952
    assert gotrig.atan2(-0.0, -1.0) == -math.pi


def test_date_functions_without_argument_use_the_evaluation_time() -> None:
    result = call("year", t=1136239445_000)
    assert isinstance(result, list)
    assert [(s.labels, s.v) for s in result] == [((), 2006.0)]
    result = call("hour", t=-1)  # Go truncates -1 ms to second 0
    assert isinstance(result, list) and result[0].v == 0.0


# --- range functions -----------------------------------------------------------------------

def test_rate_extrapolates_to_the_zero_point_of_a_counter() -> None:
    # testcounter_zero_cutoff{start="1m"} at 10m over [20m]: samples from 60 every 4m.
    ts = [0, 240_000, 480_000]
    assert RANGE_FUNCTIONS["rate"](window(ts, [60.0, 300.0, 540.0], -600_000, 600_000)) == 0.55


def test_rate_counts_resets_and_needs_two_samples() -> None:
    assert RANGE_FUNCTIONS["increase"](window([0, 10_000, 20_000], [5.0, 2.0, 4.0],
                                              0, 20_000)) == 4.0
    assert RANGE_FUNCTIONS["rate"](window([0], [1.0], -60_000, 0)) is None
    assert RANGE_FUNCTIONS["delta"](window([0, 10_000], [5.0, 2.0], 0, 10_000)) == -3.0


def test_rate_divides_by_the_range_as_go_durations_do() -> None:
    # 1001 ms: Go adds 1 s and 1e6 ns / 1e9, which is not float(1001) / 1000 in every case.
    result = RANGE_FUNCTIONS["rate"](window([0, 1001], [0.0, 1.0], 0, 1001))
    assert result == 1.0 * (1.001 / 1.001) / (1.0 + 1_000_000 / 1e9)


def test_irate_and_idelta_use_the_last_two_samples() -> None:
    data = window([0, 10_000, 20_000], [10.0, 50.0, 20.0], 0, 20_000)
    assert RANGE_FUNCTIONS["irate"](data) == 2.0  # a reset: the last value over 10 s
    assert RANGE_FUNCTIONS["idelta"](data) == -30.0


def test_predict_linear_extrapolates_from_the_evaluation_time() -> None:
    # testcounter_reset_middle[100m] @ 3000 evaluated at 10m (a Prometheus 2.42 server).
    ts = [i * 300_000 for i in range(11)]
    vs = [0.0, 10, 20, 30, 40, 0, 10, 20, 30, 40, 50]
    data = window(ts, vs, 3_000_000 - 6_000_000, 3_000_000, 3600.0, t=600_000)
    assert RANGE_FUNCTIONS["predict_linear"](data) == 51.36363636363637
    data.t_ms = None  # without an evaluation time: from the window end
    assert RANGE_FUNCTIONS["predict_linear"](data) == 76.81818181818181


def test_holt_winters_rejects_factors_outside_zero_one_with_prometheus_message() -> None:
    data = window([0, 1], [1.0, 2.0], 0, 1, 1.0, 0.5)
    with pytest.raises(FunctionError, match=r"^invalid smoothing factor\. Expected: 0 < sf < 1, "
                                            r"got: 1\.000000$"):
        RANGE_FUNCTIONS["holt_winters"](data)
    data.params = (0.5, 0.0)
    with pytest.raises(FunctionError, match=r"^invalid trend factor\. Expected: 0 < tf < 1, "
                                            r"got: 0\.000000$"):
        RANGE_FUNCTIONS["holt_winters"](data)
    data.params = (0.5, 0.5)
    assert RANGE_FUNCTIONS["holt_winters"](window([0], [1.0], 0, 0, 0.5, 0.5)) is None


def test_over_time_nan_handling() -> None:
    data = window([0, 1, 2], [math.nan, 1.0, 0.5], 0, 2)
    assert RANGE_FUNCTIONS["min_over_time"](data) == 0.5
    assert RANGE_FUNCTIONS["max_over_time"](data) == 1.0
    assert RANGE_FUNCTIONS["changes"](window([0, 1, 2], [math.nan, math.nan, 1.0], 0, 2)) == 1.0
    quantile = RANGE_FUNCTIONS["quantile_over_time"](window([0], [1.0], 0, 0, math.nan))
    assert quantile is not None and math.isnan(quantile)


def test_every_range_function_is_registered() -> None:
    with_matrix = {name for name, sig in FUNCTIONS.items() if ValueType.MATRIX in sig.arg_types}
    assert set(RANGE_FUNCTIONS) == with_matrix - {"absent_over_time"}
    assert set(INSTANT_FUNCTIONS) == set(FUNCTIONS) - with_matrix


# --- label functions -----------------------------------------------------------------------

def label_replace(vector: Vector, dst: str, replacement: str, src: str, regex: str) -> Vector:
    result = call("label_replace", vector, *(String(0, s) for s in (dst, replacement, src, regex)))
    assert isinstance(result, list)
    return result


def test_label_replace_expands_templates_as_go_does() -> None:
    vector = [Sample((("__name__", "m"), ("src", "ab")), 0, 1.0)]
    expanded = {template: dict(label_replace(vector, "dst", template, "src", "(?P<x>a)(b)")[0]
                               .labels).get("dst")
                for template in ("$1-$2", "${1}x", "$1x", "$x", "$$1", "$", "$3")}
    assert expanded == {"$1-$2": "a-b", "${1}x": "ax", "$1x": None, "$x": "a", "$$1": "$1",
                        "$": "$", "$3": None}
    assert label_replace(vector, "dst", "x", "src", "b")[0].labels == vector[0].labels


def test_label_replace_errors_carry_prometheus_messages() -> None:
    vector = vec(1.0)
    with pytest.raises(FunctionError, match=r"^invalid regular expression in label_replace\(\): "
                                            r"\(\.\*$"):
        label_replace(vector, "dst", "", "src", "(.*")
    with pytest.raises(FunctionError, match="invalid destination label name in label_replace"):
        label_replace([], "in-valid", "", "src", "(.*)")
    with pytest.raises(FunctionError, match="vector cannot contain metrics with the same"):
        label_replace(vec(1.0, 2.0), "i", "", "", "")


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("a$", "a\n", False),  # RE2's $ is the end of the text; Python's also before a final \n
    (r"\d+", "١٢", False),  # \d is ASCII in RE2
    ("[[:alpha:]]+", "abc", True),
    (r"\Qa.b\E", "a.b", True),
    (r"\Qa.b\E", "axb", False),
    ("(?i)abc", "ABC", True),
    ("x{,2}", "x{,2}", True),  # not a repetition in RE2
    (r"\pL+", "héllo", True),
    (r"\p{Greek}+", "αβγ", True),
    (r"\p{Greek}+", "abc", False),
    ("a(?i)b", "aB", True),
    ("a(?i)b", "AB", False),
])
def test_go_regexp_translation(pattern: str, text: str, matches: bool) -> None:
    assert bool(compile_go_regexp(f"^(?:{pattern})$").search(text)) is matches


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)", "a*+", "a{1001}", "(?<n>a)", r"\C",
                                     r"a\Z", "(", "[a", "x**"])
def test_go_regexp_refuses_what_go_refuses(pattern: str) -> None:
    with pytest.raises(GoRegexpError):
        compile_go_regexp(pattern)


def test_go_regexp_errors_read_as_go_s() -> None:
    with pytest.raises(GoRegexpError, match=r"^error parsing regexp: missing closing \): `\(`$"):
        compile_go_regexp("(")
    with pytest.raises(GoRegexpError, match="invalid or unsupported Perl syntax: `\\(\\?<`"):
        compile_go_regexp("(?<n>a)")


def test_a_pathological_pattern_matches_in_linear_time() -> None:
    # (a+)+$ against a run of a's and a b backtracks for ever in Python's re; RE2 does not.
    assert compile_go_regexp("^(?:(a+)+)$").search("a" * 50_000 + "b") is None


def test_expand_template_leaves_unknown_groups_empty() -> None:
    match = compile_go_regexp("(a)").search("a")
    assert match is not None
    assert expand_template("[$1][$2][${name}][$0]", match) == "[a][][][a]"


def test_label_join() -> None:
    vector = [Sample((("__name__", "m"), ("a", "x"), ("b", "y")), 0, 1.0)]
    args = [String(0, s) for s in ("dst", "-", "a", "missing", "b")]
    result = call("label_join", vector, *args)
    assert isinstance(result, list)
    assert dict(result[0].labels)["dst"] == "x--y" and dict(result[0].labels)["__name__"] == "m"
    with pytest.raises(FunctionError, match=r"^invalid source label name in label_join\(\): $"):
        call("label_join", vector, String(0, "dst"), String(0, ""), String(0, ""))


# --- absent --------------------------------------------------------------------------------

def selector(*matchers: tuple[str, str, str]) -> VectorSelector:
    return VectorSelector("x", tuple(Matcher.of(*m) for m in matchers))


@pytest.mark.parametrize(("matchers", "labels"), [
    ((("__name__", "=", "x"),), ()),
    ((("job", "=", "a"), ("instance", "=", "i"), ("method", "=~", ".x")),
     (("instance", "i"), ("job", "a"))),
    ((("job", "=", "a"), ("job", "=", "b"), ("foo", "=", "bar")), (("foo", "bar"),)),
    ((("job", "=", "a"), ("job", "=~", "b"), ("foo", "=", "bar")), (("foo", "bar"),)),
    ((("job", "=", ""),), ()),
])
def test_absent_labels(matchers: tuple[tuple[str, str, str], ...], labels: tuple[object, ...]
                       ) -> None:
    node = selector(*matchers)
    assert absent_labels(node) == labels
    assert absent_labels(ParenExpr(MatrixSelector(node, 60_000))) == labels
    assert absent_labels(StringLiteral("x")) == ()
    result = call("absent", [], node=Call("absent", (node,)), t=5)
    assert result == [Sample(labels, 5, 1.0)]  # type: ignore[arg-type]
    assert call("absent", vec(1.0), node=Call("absent", (node,))) == []


# --- simple functions ----------------------------------------------------------------------

def test_round_clamp_scalar_vector_time() -> None:
    rounded = call("round", vec(2.5, -2.5, 0.15, math.nan), Scalar(0, 0.1))
    assert isinstance(rounded, list)
    assert [s.v for s in rounded][:3] == [2.5, -2.5, 0.2]
    assert call("clamp", vec(1.0), Scalar(0, 5.0), Scalar(0, -5.0)) == []
    clamped = call("clamp", vec(-10.0, 10.0, math.nan), Scalar(0, -1.0), Scalar(0, 1.0))
    assert isinstance(clamped, list) and [s.v for s in clamped][:2] == [-1.0, 1.0]
    several = call("scalar", vec(1.0, 2.0), t=7)
    assert isinstance(several, Scalar) and math.isnan(several.v)
    assert call("scalar", vec(3.0), t=7) == Scalar(7, 3.0)
    assert call("time", t=1500) == Scalar(1500, 1.5)
    assert call("vector", Scalar(0, 2.0), t=3) == [Sample((), 3, 2.0)]
    assert call("pi") == Scalar(0, math.pi)


def test_timestamp_uses_each_samples_own_time() -> None:
    vector = [Sample((("__name__", "m"),), 10_500, 1.0)]
    assert call("timestamp", vector, t=60_000) == [Sample((), 60_000, 10.5)]


def test_sort_keeps_labels_and_puts_nan_last() -> None:
    result = call("sort", vec(3.0, math.nan, 1.0))
    assert isinstance(result, list)
    assert [s.labels[1][1] for s in result] == ["02", "00", "01"]
    assert result[0].labels[0] == ("__name__", "m")


@pytest.mark.parametrize("fixture", range(len(ORDERING)))
def test_sort_order_with_ties_and_nan_is_prometheus_order(fixture: int) -> None:
    data = ORDERING[fixture]
    vector = vec(*(decode(v) for v in data["values"]))
    for expr in ("sort(x)", "sort_desc(x)"):
        result = call(expr.split("(")[0], vector)
        assert isinstance(result, list)
        assert [int(s.labels[1][1]) for s in result] == data["orders"][expr], expr


# --- histogram_quantile --------------------------------------------------------------------

def buckets(**counts: float) -> Vector:
    return [Sample((("__name__", "h_bucket"), ("job", "j"), ("le", le.replace("_", "."))), 0, c)
            for le, c in counts.items()]


@pytest.mark.parametrize(("bounds", "q", "expected"), [  # promtool 2.42's answers
    ([("+Inf", 10.0)], 0.5, math.nan),
    ([("1", 0.0), ("2", 5.0), ("+Inf", 5.0)], 0.0, math.nan),
    ([("-1", 0.0), ("2", 5.0), ("+Inf", 5.0)], 0.0, -1.0),
    ([("1", 0.0), ("+Inf", 10.0)], 0.5, 1.0),
    ([("1", math.nan), ("2", 5.0), ("+Inf", 10.0)], 0.75, 2.0),
    ([("1", 3.0), ("2", 5.0)], 0.5, math.nan),
    ([("1e400", 3.0), ("2", 5.0), ("+Inf", 6.0), ("0x1p-1", 1.0)], 0.25, 0.6875),
    ([("1", 7.0), ("2", 5.0), ("3", 9.0), ("+Inf", 8.0)], 0.25, 0.32142857142857145),
    ([("1", 0.0), ("2", 0.0), ("+Inf", 0.0)], 0.5, math.nan),
    ([("1", 1.0), ("+Inf", 2.0)], -0.1, -math.inf),
    ([("1", 1.0), ("+Inf", 2.0)], 1.1, math.inf),
])
def test_histogram_quantile_edge_cases(bounds: list[tuple[str, float]], q: float,
                                       expected: float) -> None:
    vector = [Sample((("__name__", "h_bucket"), ("le", le)), 0, c) for le, c in bounds]
    result = histogram_quantile(q, vector, 0)
    assert len(result) == 1 and result[0].labels == ()
    assert same(result[0].v, expected)


def test_histogram_quantile_groups_by_everything_but_le_and_skips_bad_le() -> None:
    vector = [*buckets(**{"0_1": 1.0, "+Inf": 2.0}),
              Sample((("__name__", "h_bucket"), ("job", "k"), ("le", "+Inf")), 0, 1.0),
              Sample((("__name__", "h_bucket"), ("job", "k"), ("le", "x")), 0, 1.0),
              Sample((("__name__", "h_bucket"), ("job", "k")), 0, 1.0)]
    result = call("histogram_quantile", Scalar(0, 0.5), vector)
    assert isinstance(result, list)
    assert [s.labels for s in result] == [(("job", "j"),), (("job", "k"),)]
    assert result[0].v == 0.1 and math.isnan(result[1].v)
    assert bucket_quantile(0.5, [(0.1, 1.0), (math.inf, 2.0)]) == 0.1


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1.0), ("+Inf", math.inf), ("inf", math.inf), ("-Infinity", -math.inf), ("NaN", math.nan),
    (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0), ("0x1p-2", 0.25), ("1_0", 10.0), ("1e-400", 0.0),
    ("+nan", None), (" 1", None), ("1e400", None), ("1_", None), ("0x10", None), ("\u0661", None),
    ("", None), ("abc", None),
])
def test_parse_float_is_strconv(text: str, value: float | None) -> None:
    parsed = parse_float(text)
    assert (parsed is None) if value is None else (parsed is not None and same(parsed, value))


def test_format_float_is_strconv_f() -> None:
    assert [format_float(v) for v in (1e21, 1e-7, -0.0, 1.0, 0.1, math.nan, -math.inf)] == [
        "1000000000000000000000", "0.0000001", "-0", "1", "0.1", "NaN", "-Inf"]


# --- promtool ------------------------------------------------------------------------------

def promtool() -> str:
    return str(require_program("promtool", "prometheus"))


@pytest.mark.integration
@pytest.mark.parametrize("script", SCRIPTS)
def test_testdata_agrees_with_promtool(script: str) -> None:
    assert promtool_disagreements(script_cases(script), promtool()) == []


REGEXPS = [r"a$", r"(.*)", r"(a)(b)?c", r"(?i)abc", r"x{,2}", r"\Qa.b\E", r"(\d+)",
           r"([[:alpha:]]+)", r"(.+):(\d+)", r"(?s)a.", r"a.", r"(\w+)\s(\w+)", r"(a+?)(a*)",
           r"(a|ab)(c|bcd)?", r"\x{61}(.*)", r"[\d]+", r"(?i:A)(B)?", r"((a)|b)+", r"\Aa",
           r"a\z", r"\ba", r"(?m)^a$", r"(.*", r"\C"]


@pytest.mark.integration
def test_label_replace_regexps_agree_with_promtool() -> None:
    sources = ["a", "a\\n", "abc", "ABC", "x{,2}", "a.b", "axb", "12", "foo:9090", "é", "aaa",
               "a_b c", "\\u0661"]
    load = "\n".join(f'  x{{i="{i}", src="{s}"}} 1' for i, s in enumerate(sources))
    template = "$1|$2|${1}x|$1x|$$|$name"
    evals = "\n".join(
        f'eval instant at 0m label_replace(x, "dst", "{template}", "src", '
        f'"{pattern.replace(chr(92), chr(92) * 2)}")\n' for pattern in REGEXPS)
    assert promtool_disagreements(parse_script(f"load 1m\n{load}\n\n{evals}"), promtool()) == []


@pytest.mark.integration
def test_pow_and_atan2_agree_with_promtool_on_random_arguments() -> None:
    rng = random.Random(7)
    pairs = [(rng.uniform(-10, 10), rng.uniform(-10, 10)) for _ in range(200)] + [
        (10 ** rng.uniform(-20, 20), rng.choice((-1, 1)) * 10 ** rng.uniform(-1, 1.5))
        for _ in range(200)]
    load = "\n".join(f'  x{{i="{i}"}} {a!r}\n  y{{i="{i}"}} {b!r}'
                     for i, (a, b) in enumerate(pairs))
    script = f"load 1m\n{load}\n\neval instant at 0m x ^ y\n\neval instant at 0m x atan2 y\n"
    assert promtool_disagreements(parse_script(script), promtool()) == []


@pytest.mark.integration
def test_math_agrees_with_promtool_on_random_arguments() -> None:
    rng = random.Random(20230131)
    values = [rng.uniform(-10, 10) for _ in range(150)] + [
        math.copysign(10 ** rng.uniform(-20, 20), rng.choice((-1, 1))) for _ in range(150)]
    text = "\n".join(f'  x{{i="{i:03d}"}} {v!r}' for i, v in enumerate(values))
    functions = sorted(set(GO_MATH["math"]["results"]) - {"round"})
    script = f"load 1m\n{text}\n\n" + "\n".join(
        f"eval instant at 0m {func}(x)\n" for func in functions)
    cases = parse_script(script)
    assert promtool_disagreements(cases, promtool()) == []
