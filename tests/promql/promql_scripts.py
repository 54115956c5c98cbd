"""Runs Prometheus's PromQL test scripts (promql/testdata/*.test) against our functions.

The script language is Prometheus's own (`load 5m` + series in expanding notation, `clear`,
`eval instant at 50m EXPR` + expected samples, `eval_ordered`, `eval_fail`). Expressions are
parsed by the project's parser and evaluated by `ScriptEvaluator`, a deliberately small
evaluator that knows selectors (5m lookback, offset, @), calls, aggregations, unary minus,
arithmetic (with Go's Pow and Atan2) and `or`: just enough to reach RANGE_FUNCTIONS,
INSTANT_FUNCTIONS and `aggregate` directly, without the engine. Values are compared exactly
(or both NaN).

`promtool_results` evaluates the same cases with `promtool test rules`, so an integration test
can check every expected value against Prometheus 2.42 itself.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitor.promql import ast
from monitor.promql.aggregations import AggregationError, aggregate
from monitor.promql.functions import (
    INSTANT_FUNCTIONS,
    RANGE_FUNCTIONS,
    CallInput,
    FunctionError,
    RangeInput,
    absent_labels,
)
from monitor.promql.gomath import go_div, go_pow
from monitor.promql.gotrig import atan2
from monitor.promql.parse import parse_expr
from monitor.promql.values import (
    STALE_NAN,
    Labels,
    Sample,
    Scalar,
    String,
    Vector,
    format_labels,
    is_stale_nan,
    without_name,
)

LOOKBACK_MS = 5 * 60_000
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
          "w": 7 * 86_400_000, "y": 365 * 86_400_000}
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SERIES_LINE = re.compile(rf'\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?(\{{(?:[^}}"]|{_QUOTED})*\}})?\s+(.*)')
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_EVAL = re.compile(r"(eval|eval_fail|eval_ordered) instant at (\S+) (.*)")
_EXPANDING = re.compile(r"([-+]?[^-+x\s]+?)([-+][^x\s]+)x(\d+)$")


def duration_ms(text: str) -> int:
    total, pos = 0, 0
    for match in _DURATION.finditer(text):
        assert match.start() == pos, text
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    assert pos == len(text) and text, text
    return total


def parse_number(text: str) -> float:
    lowered = text.lower()
    if lowered in ("nan", "+nan", "-nan"):
        return math.nan
    if lowered in ("inf", "+inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def parse_labels(text: str) -> Labels:
    match = _SERIES_LINE.fullmatch(text + " 0")
    assert match is not None, text
    pairs = dict(_label_pairs(match.group(2) or ""))
    if match.group(1):
        pairs["__name__"] = match.group(1)
    return tuple(sorted(pairs.items()))


def _label_pairs(braces: str) -> Iterator[tuple[str, str]]:
    inner = braces.strip()[1:-1] if braces else ""
    for name, value in _LABEL_PAIR.findall(inner):
        yield name, json.loads(f'"{value}"')


def expand_values(text: str) -> list[float | None]:
    """Prometheus's series notation: `1 2 _ stale 0+10x3 5x2 _x3` (None: no sample)."""
    values: list[float | None] = []
    for token in text.split():
        if token == "_":
            values.append(None)
        elif token == "stale":
            values.append(STALE_NAN)
        elif token.startswith("_x"):
            values.extend([None] * int(token[2:]))
        elif (expanding := _EXPANDING.fullmatch(token)) is not None:
            start, step = parse_number(expanding.group(1)), float(expanding.group(2))
            values.extend(start + step * i for i in range(int(expanding.group(3)) + 1))
        elif re.fullmatch(r"[^x]+x\d+", token):
            value, times = token.rsplit("x", 1)
            values.extend([parse_number(value)] * (int(times) + 1))
        else:
            values.append(parse_number(token))
    return values


@dataclass
class StoredSeries:
    labels: Labels
    ts: list[int] = field(default_factory=list)
    vs: list[float] = field(default_factory=list)


@dataclass
class Storage:
    """Series sorted by labels when selected, as Prometheus returns them from persisted
    blocks; `reordered` gives another order (the TSDB head returns creation order)."""

    series: dict[Labels, StoredSeries] = field(default_factory=dict)
    order: list[Labels] | None = None

    def load(self, interval_ms: int, lines: list[str]) -> None:
        for line in lines:
            match = _SERIES_LINE.fullmatch(line)
            assert match is not None, line
            labels = parse_labels(line[:match.start(3)].strip())
            stored = self.series.setdefault(labels, StoredSeries(labels))
            for i, value in enumerate(expand_values(match.group(3))):
                if value is not None:
                    stored.ts.append(i * interval_ms)
                    stored.vs.append(value)

    def copy(self) -> Storage:
        return Storage({labels: StoredSeries(labels, list(s.ts), list(s.vs))
                        for labels, s in self.series.items()})

    def reordered(self, order: list[Labels]) -> Storage:
        return Storage(self.series, order)

    def select(self, selector: ast.VectorSelector) -> list[StoredSeries]:
        order = sorted(self.series) if self.order is None else self.order
        return [self.series[labels] for labels in order
                if all(m.matches(dict(labels).get(m.name, "")) for m in selector.matchers)]


class ScriptError(Exception):
    """The evaluation failed the way an `eval_fail` expects."""


Value = Vector | Scalar | String | list[tuple[Labels, RangeInput]]


class ScriptEvaluator:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def run(self, expr: str, t: int) -> Vector | Scalar:
        try:
            value = self.eval(parse_expr(expr), t)
        except (FunctionError, AggregationError) as exc:
            raise ScriptError(str(exc)) from exc
        assert isinstance(value, list | Scalar)
        assert all(isinstance(s, Sample) for s in value) if isinstance(value, list) else True
        return value  # type: ignore[return-value]

    def reference(self, selector: ast.VectorSelector | ast.SubqueryExpr, t: int) -> int:
        at = selector.at
        base = at.t_ms if at is not None and at.kind is ast.AtKind.TIME else t
        return base - selector.offset_ms

    def instant(self, selector: ast.VectorSelector, t: int, real_times: bool) -> Vector:
        ref = self.reference(selector, t)
        out: Vector = []
        for series in self.storage.select(selector):
            before = [i for i, ts in enumerate(series.ts) if ts <= ref]
            if not before:
                continue
            i = before[-1]
            if series.ts[i] < ref - LOOKBACK_MS or is_stale_nan(series.vs[i]):
                continue
            out.append(Sample(series.labels, series.ts[i] if real_times else t, series.vs[i]))
        return out

    def windows(self, node: ast.MatrixSelector, t: int) -> list[tuple[Labels, RangeInput]]:
        end = self.reference(node.selector, t)
        start = end - node.range_ms
        out = []
        for series in self.storage.select(node.selector):
            points = [(ts, v) for ts, v in zip(series.ts, series.vs, strict=True)
                      if start <= ts <= end and not is_stale_nan(v)]
            if points:
                out.append((series.labels, RangeInput([p[0] for p in points],
                                                      [p[1] for p in points], start, end, (), t)))
        return out

    def eval(self, node: ast.Expr, t: int) -> Value:
        if isinstance(node, ast.NumberLiteral):
            return Scalar(t, node.value)
        if isinstance(node, ast.StringLiteral):
            return String(t, node.value)
        if isinstance(node, ast.ParenExpr):
            return self.eval(node.expr, t)
        if isinstance(node, ast.VectorSelector):
            return self.instant(node, t, real_times=False)
        if isinstance(node, ast.MatrixSelector):
            return self.windows(node, t)
        if isinstance(node, ast.UnaryExpr):
            value = self.eval(node.expr, t)
            if isinstance(value, Scalar):
                return Scalar(t, -value.v)
            return [Sample(without_name(s.labels), t, -s.v) for s in _vector(value)]
        if isinstance(node, ast.Call):
            return self.call(node, t)
        if isinstance(node, ast.AggregateExpr):
            param: Any = None
            if node.param is not None:
                param_value = self.eval(node.param, t)
                assert isinstance(param_value, Scalar | String)
                param = param_value.v
            return aggregate(node.op, _vector(self.eval(node.expr, t)), grouping=node.grouping,
                             without=node.without, param=param, t_ms=t)
        if isinstance(node, ast.BinaryExpr):
            return self.binary(node, t)
        raise NotImplementedError(type(node).__name__)

    def call(self, node: ast.Call, t: int) -> Value:
        args = [_unwrap(arg) for arg in node.args]
        matrix = [i for i, arg in enumerate(args) if isinstance(arg, ast.MatrixSelector)]
        if matrix:
            index = matrix[0]
            params = tuple(_scalar(self.eval(arg, t)) for i, arg in enumerate(args)
                           if i != index)
            selector = args[index]
            assert isinstance(selector, ast.MatrixSelector)
            windows = self.windows(selector, t)
            if node.func == "absent_over_time":
                return [] if windows else [Sample(absent_labels(selector), t, 1.0)]
            out: Vector = []
            for labels, window in windows:
                window.params = params
                value = RANGE_FUNCTIONS[node.func](window)
                if value is not None:
                    keep = node.func == "last_over_time"
                    out.append(Sample(labels if keep else without_name(labels), t, value))
            _check_unique(out)
            return out
        if node.func == "timestamp" and isinstance(args[0], ast.VectorSelector):
            values: list[Vector | Scalar | String] = [self.instant(args[0], t, real_times=True)]
        else:
            values = []
            for arg in args:
                evaluated = self.eval(arg, t)
                assert not (isinstance(evaluated, list) and evaluated
                            and isinstance(evaluated[0], tuple))
                values.append(evaluated)  # type: ignore[arg-type]
        result = INSTANT_FUNCTIONS[node.func](CallInput(values, node, t))
        if isinstance(result, list):
            _check_unique(result)
        return result

    def binary(self, node: ast.BinaryExpr, t: int) -> Value:
        lhs, rhs = self.eval(node.lhs, t), self.eval(node.rhs, t)
        if node.op == "or":
            left, right = _vector(lhs), _vector(rhs)
            seen = {without_name(s.labels) for s in left}
            return left + [s for s in right if without_name(s.labels) not in seen]
        op = _ARITHMETIC[node.op]
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return Scalar(t, op(lhs.v, rhs.v))
        if isinstance(lhs, Scalar):
            return [Sample(without_name(s.labels), t, op(lhs.v, s.v)) for s in _vector(rhs)]
        if isinstance(rhs, Scalar):
            return [Sample(without_name(s.labels), t, op(s.v, rhs.v)) for s in _vector(lhs)]
        matches = {without_name(s.labels): s for s in _vector(rhs)}
        return [Sample(s.labels if node.op == "atan2" else without_name(s.labels), t,
                       op(s.v, matches[without_name(s.labels)].v))
                for s in _vector(lhs) if without_name(s.labels) in matches]


_ARITHMETIC = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
               "/": go_div, "^": go_pow, "atan2": atan2}


def _unwrap(node: ast.Expr) -> ast.Expr:
    while isinstance(node, ast.ParenExpr):
        node = node.expr
    return node


def _vector(value: Value) -> Vector:
    assert isinstance(value, list)
    return value  # type: ignore[return-value]


def _scalar(value: Value) -> float:
    assert isinstance(value, Scalar)
    return value.v


def _check_unique(vector: Vector) -> None:
    if len({s.labels for s in vector}) != len(vector):
        raise ScriptError("vector cannot contain metrics with the same labelset")


# --- scripts -------------------------------------------------------------------------------

@dataclass
class EvalCase:
    line: int
    kind: str  # eval, eval_fail, eval_ordered
    t: int
    expr: str
    expected: list[tuple[Labels | None, float]]  # labels None: a scalar result
    storage: Storage
    loads: list[tuple[int, list[str]]]

    def id(self) -> str:
        return f"L{self.line}: {self.expr} @ {self.t}ms"


def parse_script(script: str) -> list[EvalCase]:
    storage, loads = Storage(), list[tuple[int, list[str]]]()
    cases: list[EvalCase] = []
    lines = script.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        line_number = i
        if not line or line.startswith("#"):
            continue
        if line == "clear":
            storage, loads = Storage(), []
            continue
        block = []
        while i < len(lines) and lines[i].strip() and lines[i][:1] in (" ", "\t"):
            if not lines[i].strip().startswith("#"):
                block.append(lines[i].strip())
            i += 1
        if line.startswith("load "):
            interval = duration_ms(line.split()[1])
            storage = storage.copy()  # earlier cases keep the data they were written against
            storage.load(interval, block)
            loads.append((interval, block))
            continue
        match = _EVAL.fullmatch(line)
        assert match is not None, f"line {i}: {line}"
        expected = [_expected(text) for text in block]
        cases.append(EvalCase(line_number, match.group(1), duration_ms(match.group(2)),
                              match.group(3), expected, storage, list(loads)))
    return cases


def _expected(text: str) -> tuple[Labels | None, float]:
    match = re.fullmatch(r"(.*?)\s*(\S+)", text.strip())
    assert match is not None, text
    head, value = match.groups()
    return (parse_labels(head) if head else None), parse_number(value)


def same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_case(case: EvalCase) -> None:
    evaluator = ScriptEvaluator(case.storage)
    if case.kind == "eval_fail":
        try:
            evaluator.run(case.expr, case.t)
        except ScriptError:
            return
        raise AssertionError(f"{case.id()}: expected an error")
    result = evaluator.run(case.expr, case.t)
    if isinstance(result, Scalar):
        assert len(case.expected) == 1 and case.expected[0][0] is None, case.id()
        assert same_value(result.v, case.expected[0][1]), (case.id(), result.v)
        return
    got = [(s.labels, s.v) for s in result]
    want = [(labels or (), value) for labels, value in case.expected]
    if case.kind != "eval_ordered":
        got.sort(key=lambda p: p[0])
        want.sort(key=lambda p: p[0])
    assert [p[0] for p in got] == [p[0] for p in want], (
        f"{case.id()}\n got: {[format_labels(p[0]) for p in got]}"
        f"\nwant: {[format_labels(p[0]) for p in want]}")
    for (labels, value), (_, expected) in zip(got, want, strict=True):
        assert same_value(value, expected), (
            f"{case.id()} {format_labels(labels)}: got {value!r}, want {expected!r}")


Result = list[tuple[Labels, float]] | str


def promtool_results(cases: list[EvalCase], promtool: str) -> list[Result]:
    """Each case's result as Prometheus 2.42 computes it: samples sorted by labels, or the
    error text. Every case gets a sentinel expectation, so promtool prints what it got.

    promtool loads samples only up to the last rule evaluation time, stepping by the file's
    evaluation_interval, so each eval time gets its own file whose interval is that time."""
    by_time: dict[int, list[int]] = {}
    for index, case in enumerate(cases):
        by_time.setdefault(case.t, []).append(index)
    results: list[list[tuple[Labels, float]] | str] = [""] * len(cases)
    with tempfile.TemporaryDirectory() as directory:
        for t, indexes in by_time.items():
            path = Path(directory) / f"cases_{t}.yml"
            document = {"rule_files": [], "evaluation_interval": f"{t or 60_000}ms",
                        "tests": [_promtool_group(cases[i]) for i in indexes]}
            path.write_text(yaml.safe_dump(document), encoding="utf-8")
            proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                                  text=True, timeout=300, check=False)
            for index, result in zip(indexes, _parse_promtool_output(
                    proc.stdout + proc.stderr, len(indexes)), strict=True):
                results[index] = result
    return results


def _promtool_group(case: EvalCase) -> dict[str, Any]:
    interval = math.gcd(*[load[0] for load in case.loads]) if case.loads else 60_000
    series = []
    for stored in case.storage.series.values():
        slots: list[str] = ["_"] * (max(stored.ts, default=0) // interval + 1)
        for ts, value in zip(stored.ts, stored.vs, strict=True):
            slots[ts // interval] = _series_value(value)
        series.append({"series": format_labels(stored.labels), "values": " ".join(slots)})
    return {"interval": f"{interval}ms", "input_series": series,
            "promql_expr_test": [{"expr": case.expr, "eval_time": f"{case.t}ms",
                                  "exp_samples": [{"labels": "sentinel", "value": 0}]}]}


def _series_value(value: float) -> str:
    if is_stale_nan(value):
        return "stale"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(value)


_GOT_SAMPLE = re.compile(r'\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\} (\S+?)(?:, |$)')
_GOT_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _parse_promtool_output(text: str, count: int) -> list[list[tuple[Labels, float]] | str]:
    results: list[list[tuple[Labels, float]] | str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("    expr: "):
            continue
        if ", err: " in line and (i + 1 == len(lines)
                                  or not lines[i + 1].strip().startswith("exp:")):
            results.append(line.split(", err: ", 1)[1])
            continue
        got = lines[i + 2].strip().removeprefix("got: ")
        samples = [] if got == "nil" else [
            (tuple(sorted((k, json.loads(f'"{v}"')) for k, v in _GOT_PAIR.findall(m.group(1)))),
             parse_number(m.group(2))) for m in _GOT_SAMPLE.finditer(got)]
        results.append(samples)
    assert len(results) == count, text[-2000:]
    return results


def _evaluate_sorted(storage: Storage, case: EvalCase) -> list[tuple[Labels, float]] | str:
    try:
        result = ScriptEvaluator(storage).run(case.expr, case.t)
    except ScriptError as exc:
        return f"error: {exc}"
    if isinstance(result, Scalar):
        return [((), result.v)]
    return sorted(((s.labels, s.v) for s in result), key=lambda pair: pair[0])


def _same_result(a: list[tuple[Labels, float]] | str, b: list[tuple[Labels, float]] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return [p[0] for p in a] == [p[0] for p in b] and all(
        same_value(x[1], y[1]) for x, y in zip(a, b, strict=True))


def promtool_disagreements(cases: list[EvalCase], promtool: str,
                           seed: int = 0) -> list[str]:
    """The cases where promtool's answer is not ours. Cases with `@` are left out (promtool
    only loads samples up to the evaluation time, so it cannot see a later `@`). promtool
    creates series in random order and some sums depend on order, so where the answers
    differ, our answer for other series orders is tried before reporting a disagreement."""
    checked = [case for case in cases if "@" not in case.expr]
    rng = random.Random(seed)
    problems = []
    for case, answer in zip(checked, promtool_results(checked, promtool), strict=True):
        theirs = answer if isinstance(answer, str) else sorted(answer, key=lambda p: p[0])
        ours = _evaluate_sorted(case.storage, case)
        if _same_result(ours, theirs):
            continue
        order = list(case.storage.series)
        for _ in range(300):
            rng.shuffle(order)
            if _same_result(_evaluate_sorted(case.storage.reordered(list(order)), case), theirs):
                break
        else:
            problems.append(f"{case.id()}: promtool {theirs!r}, ours {ours!r}")
    return problems
