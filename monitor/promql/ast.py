"""The PromQL syntax tree the engine evaluates, and the Prometheus 2.x function table.

Built from `promql-parser`'s tree once per expression (see parse.py), so evaluation never
crosses into the Rust extension, and so that every construct this engine does not evaluate is
refused at parse time by name. Durations and offsets are milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from monitor.tsdb.store import Matcher


class ValueType(Enum):
    SCALAR = "scalar"
    VECTOR = "vector"
    MATRIX = "matrix"
    STRING = "string"


S, V, M, STR = ValueType.SCALAR, ValueType.VECTOR, ValueType.MATRIX, ValueType.STRING


@dataclass(frozen=True)
class FunctionSignature:
    arg_types: tuple[ValueType, ...]
    variadic: int  # 0: exactly these args; n > 0: up to n more of the last type; -1: any more
    return_type: ValueType

    def accepts(self, count: int) -> bool:
        required = len(self.arg_types) - (1 if self.variadic else 0)
        if self.variadic == 0:
            return count == len(self.arg_types)
        if self.variadic < 0:
            return count >= required
        return required <= count <= len(self.arg_types) + self.variadic - 1


def _sig(args: str, ret: ValueType, variadic: int = 0) -> FunctionSignature:
    kinds = {"s": S, "v": V, "m": M, "str": STR}
    return FunctionSignature(tuple(kinds[a] for a in args.split()) if args else (),
                             variadic, ret)


# Prometheus 2.42's functions (promql/parser/functions.go), native-histogram ones left out.
FUNCTIONS: dict[str, FunctionSignature] = {
    **{name: _sig("v", V) for name in (
        "abs", "absent", "acos", "acosh", "asin", "asinh", "atan", "atanh", "ceil", "cos",
        "cosh", "deg", "exp", "floor", "ln", "log10", "log2", "rad", "sgn", "sin", "sinh",
        "sort", "sort_desc", "sqrt", "tan", "tanh", "timestamp")},
    **{name: _sig("m", V) for name in (
        "absent_over_time", "avg_over_time", "changes", "count_over_time", "delta", "deriv",
        "idelta", "increase", "irate", "last_over_time", "max_over_time", "min_over_time",
        "present_over_time", "rate", "resets", "stddev_over_time", "stdvar_over_time",
        "sum_over_time")},
    **{name: _sig("v", V, variadic=1) for name in (
        "days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour", "minute",
        "month", "year")},
    "clamp": _sig("v s s", V),
    "clamp_max": _sig("v s", V),
    "clamp_min": _sig("v s", V),
    "histogram_quantile": _sig("s v", V),
    "holt_winters": _sig("m s s", V),
    "label_replace": _sig("v str str str str", V),
    "label_join": _sig("v str str str", V, variadic=-1),
    "pi": _sig("", S),
    "predict_linear": _sig("m s", V),
    "quantile_over_time": _sig("s m", V),
    "round": _sig("v s", V, variadic=1),
    "scalar": _sig("v", S),
    "time": _sig("", S),
    "vector": _sig("s", V),
}

AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
                          "topk", "bottomk", "quantile", "count_values"})
COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})


class AtKind(Enum):
    TIME = "time"
    START = "start"
    END = "end"


@dataclass(frozen=True)
class At:
    """An `@` modifier: a fixed time (ms), or the query's start() or end()."""

    kind: AtKind
    t_ms: int = 0


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class StringLiteral:
    value: str


@dataclass(frozen=True)
class VectorSelector:
    name: str | None
    matchers: tuple[Matcher, ...]  # the name, if any, is among them as __name__="..."
    offset_ms: int = 0
    at: At | None = None


@dataclass(frozen=True)
class MatrixSelector:
    selector: VectorSelector
    range_ms: int


@dataclass(frozen=True)
class SubqueryExpr:
    expr: Expr
    range_ms: int
    step_ms: int  # 0: the evaluation interval (rules) or the default resolution
    offset_ms: int = 0
    at: At | None = None


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class AggregateExpr:
    op: str
    expr: Expr
    param: Expr | None
    grouping: tuple[str, ...]
    without: bool


class Cardinality(Enum):
    ONE_TO_ONE = "one-to-one"
    MANY_TO_ONE = "many-to-one"
    ONE_TO_MANY = "one-to-many"
    MANY_TO_MANY = "many-to-many"


@dataclass(frozen=True)
class VectorMatching:
    card: Cardinality
    on: bool  # True: on(labels); False: ignoring(labels)
    labels: tuple[str, ...]
    include: tuple[str, ...]  # group_left/group_right(labels)


@dataclass(frozen=True)
class BinaryExpr:
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool
    matching: VectorMatching | None  # None between two scalars or a scalar and a vector


@dataclass(frozen=True)
class UnaryExpr:
    expr: Expr  # negation: the only unary operator that survives parsing


@dataclass(frozen=True)
class ParenExpr:
    expr: Expr


Expr = (NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | SubqueryExpr | Call
        | AggregateExpr | BinaryExpr | UnaryExpr | ParenExpr)


def unwrap_parens(expr: Expr) -> Expr:
    while isinstance(expr, ParenExpr):
        expr = expr.expr
    return expr


def value_type(expr: Expr) -> ValueType:
    if isinstance(expr, NumberLiteral):
        return S
    if isinstance(expr, StringLiteral):
        return STR
    if isinstance(expr, VectorSelector | AggregateExpr):
        return V
    if isinstance(expr, MatrixSelector | SubqueryExpr):
        return M
    if isinstance(expr, Call):
        return FUNCTIONS[expr.func].return_type
    if isinstance(expr, BinaryExpr):
        both_scalar = value_type(expr.lhs) is S and value_type(expr.rhs) is S
        return S if both_scalar else V
    return value_type(expr.expr)


def children(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, MatrixSelector):
        return (expr.selector,)
    if isinstance(expr, SubqueryExpr | UnaryExpr | ParenExpr):
        return (expr.expr,)
    if isinstance(expr, Call):
        return expr.args
    if isinstance(expr, AggregateExpr):
        return (expr.expr,) if expr.param is None else (expr.param, expr.expr)
    if isinstance(expr, BinaryExpr):
        return (expr.lhs, expr.rhs)
    return ()


def reach_ms(expr: Expr, lookback_ms: int) -> int:
    """How far back before its evaluation time `expr` reads samples (ranges, offsets,
    subqueries and the lookback of instant selectors), ignoring `@`: the retention it needs."""
    if isinstance(expr, VectorSelector):
        return max(0, expr.offset_ms) + lookback_ms
    if isinstance(expr, MatrixSelector):
        return max(0, expr.selector.offset_ms) + expr.range_ms
    if isinstance(expr, SubqueryExpr):
        return max(0, expr.offset_ms) + expr.range_ms + reach_ms(expr.expr, lookback_ms)
    return max((reach_ms(child, lookback_ms) for child in children(expr)), default=0)


def map_selectors(expr: Expr, change: Callable[[VectorSelector], VectorSelector]) -> Expr:
    """`expr` with `change` applied to every vector selector (those of ranges included)."""
    if isinstance(expr, VectorSelector):
        return change(expr)
    if isinstance(expr, MatrixSelector):
        return replace(expr, selector=change(expr.selector))
    if isinstance(expr, SubqueryExpr | UnaryExpr | ParenExpr):
        return replace(expr, expr=map_selectors(expr.expr, change))
    if isinstance(expr, Call):
        return replace(expr, args=tuple(map_selectors(arg, change) for arg in expr.args))
    if isinstance(expr, AggregateExpr):
        param = None if expr.param is None else map_selectors(expr.param, change)
        return replace(expr, expr=map_selectors(expr.expr, change), param=param)
    if isinstance(expr, BinaryExpr):
        return replace(expr, lhs=map_selectors(expr.lhs, change),
                       rhs=map_selectors(expr.rhs, change))
    return expr
