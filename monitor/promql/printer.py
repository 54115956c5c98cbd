"""PromQL text from our syntax tree: the inverse of parse.py.

Owns `to_promql`. The text parses back to an equal tree (parentheses are nodes of the tree, so
printing never has to add any), and Prometheus reads it with the same meaning: strings and
label values are quoted as Go's strconv.Quote does, numbers printed as Go's %g, durations as
Prometheus writes them. `export rules` uses it to write expressions it has rewritten.
"""

from __future__ import annotations

import math

from monitor.promql import ast
from monitor.promql.goconv import format_float_g, go_quote
from monitor.tsdb.store import EQUAL, Matcher
from monitor.units import format_duration


def to_promql(expr: ast.Expr) -> str:
    """`expr` as PromQL text."""
    if isinstance(expr, ast.NumberLiteral):
        return _number(expr.value)
    if isinstance(expr, ast.StringLiteral):
        return go_quote(expr.value)
    if isinstance(expr, ast.VectorSelector):
        return _selector(expr) + _modifiers(expr.offset_ms, expr.at)
    if isinstance(expr, ast.MatrixSelector):
        inner = expr.selector
        return (f"{_selector(inner)}[{format_duration(expr.range_ms / 1000)}]"
                + _modifiers(inner.offset_ms, inner.at))
    if isinstance(expr, ast.SubqueryExpr):
        step = format_duration(expr.step_ms / 1000) if expr.step_ms else ""
        return (f"{to_promql(expr.expr)}[{format_duration(expr.range_ms / 1000)}:{step}]"
                + _modifiers(expr.offset_ms, expr.at))
    if isinstance(expr, ast.Call):
        return f"{expr.func}({', '.join(to_promql(arg) for arg in expr.args)})"
    if isinstance(expr, ast.AggregateExpr):
        return _aggregate(expr)
    if isinstance(expr, ast.BinaryExpr):
        return _binary(expr)
    if isinstance(expr, ast.UnaryExpr):
        operand = to_promql(expr.expr)
        return f"- {operand}" if operand.startswith("-") else f"-{operand}"
    return f"({to_promql(expr.expr)})"


def _number(value: float) -> str:
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return format_float_g(value)


def _matcher(matcher: Matcher) -> str:
    return f"{matcher.name}{matcher.op}{go_quote(matcher.value)}"


def _selector(selector: ast.VectorSelector) -> str:
    matchers = list(selector.matchers)
    name = selector.name or ""
    if name:
        named = Matcher.of("__name__", EQUAL, name)
        matchers = [m for m in matchers if m != named]
    if name and not matchers:
        return name
    return name + "{" + ", ".join(_matcher(m) for m in matchers) + "}"


def _modifiers(offset_ms: int, at: ast.At | None) -> str:
    text = ""
    if at is not None:
        if at.kind is ast.AtKind.START:
            text += " @ start()"
        elif at.kind is ast.AtKind.END:
            text += " @ end()"
        else:
            text += f" @ {at.t_ms / 1000:.3f}"
    if offset_ms:
        text += f" offset {format_duration(offset_ms / 1000)}"
    return text


def _labels(names: tuple[str, ...]) -> str:
    return "(" + ", ".join(names) + ")"


def _aggregate(expr: ast.AggregateExpr) -> str:
    if expr.without:
        grouping = f" without {_labels(expr.grouping)} "
    elif expr.grouping:
        grouping = f" by {_labels(expr.grouping)} "
    else:
        grouping = ""
    args = to_promql(expr.expr)
    if expr.param is not None:
        args = f"{to_promql(expr.param)}, {args}"
    return f"{expr.op}{grouping}({args})"


def _binary(expr: ast.BinaryExpr) -> str:
    parts = [to_promql(expr.lhs), expr.op]
    if expr.return_bool:
        parts.append("bool")
    matching = expr.matching
    if matching is not None:
        grouped = matching.card in (ast.Cardinality.MANY_TO_ONE, ast.Cardinality.ONE_TO_MANY)
        if matching.on:
            parts.append(f"on {_labels(matching.labels)}")
        elif matching.labels or grouped:
            parts.append(f"ignoring {_labels(matching.labels)}")
        if grouped:
            side = "group_left" if matching.card is ast.Cardinality.MANY_TO_ONE \
                else "group_right"
            parts.append(f"{side} {_labels(matching.include)}" if matching.include else side)
    parts.append(to_promql(expr.rhs))
    return " ".join(parts)
