"""PromQL's function table: Prometheus 2.42's functions, evaluated one step at a time.

`RANGE_FUNCTIONS` (in range_functions.py, re-exported here) computes one value per series of a
range argument; `INSTANT_FUNCTIONS` takes every argument evaluated at the step and returns a
vector or a scalar. Each instant function drops the metric name exactly where 2.42 does: the
math, clamp, round, date and timestamp functions and histogram_quantile drop it; sort,
label_replace and label_join keep it. Arithmetic goes through `gomath`, so values are Go's
to the last bit. Errors carry Prometheus's message text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from monitor.goregexp import RegexpError, compile_go_regexp, expand
from monitor.promql import gomath, gotrig
from monitor.promql.ast import Call, Expr, MatrixSelector, VectorSelector, unwrap_parens
from monitor.promql.gosort import go_sort
from monitor.promql.gotime import GoDate, days_in, go_int64, unix_date
from monitor.promql.quantile import histogram_quantile
from monitor.promql.range_functions import RANGE_FUNCTIONS, FunctionError, RangeInput
from monitor.promql.values import (
    METRIC_NAME,
    Labels,
    Sample,
    Scalar,
    String,
    Vector,
    label_value,
    with_label,
    without_name,
)

__all__ = ["INSTANT_FUNCTIONS", "RANGE_FUNCTIONS", "CallInput", "FunctionError", "RangeInput",
           "absent_labels"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


@dataclass(slots=True)
class CallInput:
    args: list[Vector | Scalar | String]  # every argument evaluated at this step
    call: Call  # the AST node (absent() reads its argument's matchers)
    t_ms: int  # the evaluation time


InstantFunction = Callable[[CallInput], Vector | Scalar]


def _vector(inp: CallInput, index: int) -> Vector:
    value = inp.args[index]
    assert isinstance(value, list)
    return value


def _scalar(inp: CallInput, index: int) -> float:
    value = inp.args[index]
    assert isinstance(value, Scalar)
    return value.v


def _string(inp: CallInput, index: int) -> str:
    value = inp.args[index]
    assert isinstance(value, String)
    return value.v


def _check_unique(vector: Vector) -> Vector:
    if len({s.labels for s in vector}) != len(vector):
        raise FunctionError(_DUPLICATE_LABELSET)
    return vector


def _elementwise(fn: Callable[[float], float]) -> InstantFunction:
    """simpleFunc: fn of every value, the metric name dropped."""
    def apply(inp: CallInput) -> Vector:
        return [Sample(without_name(s.labels), inp.t_ms, fn(s.v)) for s in _vector(inp, 0)]
    return apply


def _sgn(v: float) -> float:
    if v < 0:
        return -1.0
    if v > 0:
        return 1.0
    return v


def absent_labels(expr: Expr) -> Labels:
    """createLabelsForAbsentFunction: the labels a selector pins with `=` matchers.

    A label matched more than once, or by any other operator, is left out; an empty value is
    an absent label; the metric name never appears. Anything but a selector gives {}."""
    expr = unwrap_parens(expr)
    if isinstance(expr, MatrixSelector):
        expr = expr.selector
    if not isinstance(expr, VectorSelector):
        return ()
    built: dict[str, str] = {}
    seen: set[str] = set()
    for matcher in expr.matchers:
        if matcher.name == METRIC_NAME:
            continue
        if matcher.op == "=" and matcher.name not in seen:
            if matcher.value:
                built[matcher.name] = matcher.value
            else:
                built.pop(matcher.name, None)
            seen.add(matcher.name)
        else:
            built.pop(matcher.name, None)
    return tuple(sorted(built.items()))


def _absent(inp: CallInput) -> Vector:
    if _vector(inp, 0):
        return []
    return [Sample(absent_labels(inp.call.args[0]), inp.t_ms, 1.0)]


def _time(inp: CallInput) -> Scalar:
    return Scalar(inp.t_ms, float(inp.t_ms) / 1000)


def _pi(inp: CallInput) -> Scalar:
    return Scalar(inp.t_ms, gomath.PI)


def _vector_of(inp: CallInput) -> Vector:
    return [Sample((), inp.t_ms, _scalar(inp, 0))]


def _scalar_of(inp: CallInput) -> Scalar:
    vector = _vector(inp, 0)
    return Scalar(inp.t_ms, vector[0].v if len(vector) == 1 else math.nan)


def _timestamp(inp: CallInput) -> Vector:
    return [Sample(without_name(s.labels), inp.t_ms, float(s.t) / 1000)
            for s in _vector(inp, 0)]


def _round(inp: CallInput) -> Vector:
    to_nearest = _scalar(inp, 1) if len(inp.args) > 1 else 1.0
    # Rounding to the inverse reduces floating-point error; ties round up.
    inverse = gomath.go_div(1.0, to_nearest)
    return [Sample(without_name(s.labels), inp.t_ms,
                   gomath.go_div(gomath.floor(s.v * inverse + 0.5), inverse))
            for s in _vector(inp, 0)]


def _clamp(inp: CallInput) -> Vector:
    low, high = _scalar(inp, 1), _scalar(inp, 2)
    if high < low:
        return []
    return [Sample(without_name(s.labels), inp.t_ms,
                   gomath.go_max(low, gomath.go_min(high, s.v))) for s in _vector(inp, 0)]


def _clamp_max(inp: CallInput) -> Vector:
    high = _scalar(inp, 1)
    return [Sample(without_name(s.labels), inp.t_ms, gomath.go_min(high, s.v))
            for s in _vector(inp, 0)]


def _clamp_min(inp: CallInput) -> Vector:
    low = _scalar(inp, 1)
    return [Sample(without_name(s.labels), inp.t_ms, gomath.go_max(low, s.v))
            for s in _vector(inp, 0)]


def _sorted_vector(inp: CallInput, descending: bool) -> Vector:
    vector = [Sample(s.labels, inp.t_ms, s.v) for s in _vector(inp, 0)]
    values = [s.v for s in vector]
    if not any(math.isnan(v) for v in values) and len(set(values)) == len(values):
        return sorted(vector, key=lambda s: s.v, reverse=descending)
    # sort: sort.Reverse(vectorByReverseValueHeap); sort_desc: sort.Reverse(vectorByValueHeap).
    if descending:
        go_sort(vector, lambda a, b: math.isnan(b.v) or b.v < a.v)
    else:
        go_sort(vector, lambda a, b: math.isnan(b.v) or b.v > a.v)
    return vector


def _sort(inp: CallInput) -> Vector:
    return _sorted_vector(inp, descending=False)


def _sort_desc(inp: CallInput) -> Vector:
    return _sorted_vector(inp, descending=True)


def _label_replace(inp: CallInput) -> Vector:
    dst, replacement, src, regex = (_string(inp, i) for i in range(1, 5))
    try:
        pattern = compile_go_regexp("^(?:" + regex + ")$")
    except RegexpError:
        raise FunctionError(f"invalid regular expression in label_replace(): {regex}") from None
    if not _LABEL_NAME.fullmatch(dst):
        raise FunctionError(f"invalid destination label name in label_replace(): {dst}")
    out: Vector = []
    for s in _vector(inp, 0):
        match = pattern.search(label_value(s.labels, src))
        labels = s.labels
        if match is not None:
            labels = with_label(labels, dst, expand(replacement, match))
        out.append(Sample(labels, inp.t_ms, s.v))
    return _check_unique(out)


def _label_join(inp: CallInput) -> Vector:
    dst, separator = _string(inp, 1), _string(inp, 2)
    sources = [_string(inp, i) for i in range(3, len(inp.args))]
    for src in sources:
        if not _LABEL_NAME.fullmatch(src):
            raise FunctionError(f"invalid source label name in label_join(): {src}")
    if not _LABEL_NAME.fullmatch(dst):
        raise FunctionError(f"invalid destination label name in label_join(): {dst}")
    out: Vector = []
    for s in _vector(inp, 0):
        joined = separator.join(label_value(s.labels, src) for src in sources)
        out.append(Sample(with_label(s.labels, dst, joined), inp.t_ms, s.v))
    return _check_unique(out)


def _histogram_quantile(inp: CallInput) -> Vector:
    return histogram_quantile(_scalar(inp, 0), _vector(inp, 1), inp.t_ms)


def _date_function(field: Callable[[GoDate], int]) -> InstantFunction:
    """dateWrapper: with no argument the evaluation time, else each value as Unix seconds."""
    def apply(inp: CallInput) -> Vector:
        if not inp.args:
            seconds = -(-inp.t_ms // 1000) if inp.t_ms < 0 else inp.t_ms // 1000  # Go's /
            return [Sample((), inp.t_ms, float(field(unix_date(seconds))))]
        return [Sample(without_name(s.labels), inp.t_ms, float(field(unix_date(go_int64(s.v)))))
                for s in _vector(inp, 0)]
    return apply


INSTANT_FUNCTIONS: dict[str, InstantFunction] = {
    "abs": _elementwise(abs),
    "absent": _absent,
    "acos": _elementwise(gotrig.acos),
    "acosh": _elementwise(gotrig.acosh),
    "asin": _elementwise(gotrig.asin),
    "asinh": _elementwise(gotrig.asinh),
    "atan": _elementwise(gotrig.atan),
    "atanh": _elementwise(gotrig.atanh),
    "ceil": _elementwise(gomath.ceil),
    "clamp": _clamp,
    "clamp_max": _clamp_max,
    "clamp_min": _clamp_min,
    "cos": _elementwise(gotrig.cos),
    "cosh": _elementwise(gotrig.cosh),
    "day_of_month": _date_function(lambda d: d.day),
    "day_of_week": _date_function(lambda d: d.weekday),
    "day_of_year": _date_function(lambda d: d.year_day),
    "days_in_month": _date_function(lambda d: days_in(d.month, d.year)),
    "deg": _elementwise(lambda v: v * 180 / gomath.PI),
    "exp": _elementwise(gomath.exp),
    "floor": _elementwise(gomath.floor),
    "histogram_quantile": _histogram_quantile,
    "hour": _date_function(lambda d: d.hour),
    "label_join": _label_join,
    "label_replace": _label_replace,
    "ln": _elementwise(gomath.log),
    "log10": _elementwise(gomath.log10),
    "log2": _elementwise(gomath.log2),
    "minute": _date_function(lambda d: d.minute),
    "month": _date_function(lambda d: d.month),
    "pi": _pi,
    "rad": _elementwise(lambda v: v * gomath.PI / 180),
    "round": _round,
    "scalar": _scalar_of,
    "sgn": _elementwise(_sgn),
    "sin": _elementwise(gotrig.sin),
    "sinh": _elementwise(gotrig.sinh),
    "sort": _sort,
    "sort_desc": _sort_desc,
    "sqrt": _elementwise(gomath.sqrt),
    "tan": _elementwise(gotrig.tan),
    "tanh": _elementwise(gotrig.tanh),
    "time": _time,
    "timestamp": _timestamp,
    "vector": _vector_of,
    "year": _date_function(lambda d: d.year),
}
