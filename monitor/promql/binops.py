"""Binary operators: arithmetic, comparisons and set operations, as Prometheus 2.42 does them.

Arithmetic follows Go's float64 rules rather than Python's: division by zero gives ±Inf or
NaN, `%` is Go's math.Mod (sign of the dividend, NaN for a zero divisor), `^` and atan2 are
ports of Go's math.Pow and math.Atan2 (NaN and ±Inf where Python raises, and the same last
bit). Only + - * / % ^ drop the metric name; atan2 and comparisons keep it (a `bool`
comparison drops it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from monitor.promql import ast
from monitor.promql.gomath import go_div, go_pow
from monitor.promql.gotrig import atan2
from monitor.promql.values import (
    METRIC_NAME,
    Labels,
    Sample,
    Vector,
    drop,
    format_labels,
    keep_only,
    with_label,
    without_name,
)

NAME_DROPPING = frozenset({"+", "-", "*", "/", "%", "^"})


class BinaryOpError(ValueError):
    """A vector matching that Prometheus refuses (duplicates on the "one" side, …)."""


def go_mod(a: float, b: float) -> float:
    if b == 0.0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)


ARITHMETIC_OPS: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": go_div,
    "%": go_mod,
    "^": go_pow,  # Go's math.Pow, bit for bit (Python's pow differs in the last bit)
    "atan2": atan2,
}
COMPARISON_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def scalar_binop(op: str, lhs: float, rhs: float) -> float:
    """Both sides scalars: comparisons give 1 or 0 (the parser demands `bool` there)."""
    arithmetic = ARITHMETIC_OPS.get(op)
    if arithmetic is not None:
        return arithmetic(lhs, rhs)
    return 1.0 if COMPARISON_OPS[op](lhs, rhs) else 0.0


def elem_binop(op: str, lhs: float, rhs: float) -> tuple[float, bool]:
    """(value, keep) for one pair: comparisons keep the left value when true."""
    arithmetic = ARITHMETIC_OPS.get(op)
    if arithmetic is not None:
        return arithmetic(lhs, rhs), True
    return lhs, COMPARISON_OPS[op](lhs, rhs)


def vector_scalar_binop(op: str, vector: Vector, scalar: float, *, swap: bool,
                        return_bool: bool, t: int) -> Vector:
    """A vector and a scalar; `swap` when the scalar is on the left."""
    out: Vector = []
    comparison = op in ast.COMPARISONS
    drop_name = op in NAME_DROPPING or return_bool
    for sample in vector:
        lhs, rhs = (scalar, sample.v) if swap else (sample.v, scalar)
        value, keep = elem_binop(op, lhs, rhs)
        if comparison and swap:
            value = rhs  # a filter keeps the vector's own value
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if keep:
            labels = without_name(sample.labels) if drop_name else sample.labels
            out.append(Sample(labels, t, value))
    return out


def signature(labels: Labels, matching: ast.VectorMatching) -> Labels:
    """The part of a label set that must be equal on both sides for a match."""
    if matching.on:
        return keep_only(labels, matching.labels)
    return drop(labels, (METRIC_NAME, *matching.labels))


def set_binop(op: str, lhs: Vector, rhs: Vector, matching: ast.VectorMatching) -> Vector:
    if op == "and":
        if not lhs or not rhs:
            return []
        right = {signature(s.labels, matching) for s in rhs}
        return [s for s in lhs if signature(s.labels, matching) in right]
    if op == "or":
        if not lhs or not rhs:
            return [*lhs, *rhs]
        left = {signature(s.labels, matching) for s in lhs}
        return [*lhs, *(s for s in rhs if signature(s.labels, matching) not in left)]
    # unless
    if not lhs or not rhs:
        return list(lhs)
    right = {signature(s.labels, matching) for s in rhs}
    return [s for s in lhs if signature(s.labels, matching) not in right]


def vector_binop(op: str, lhs: Vector, rhs: Vector, matching: ast.VectorMatching, *,
                 return_bool: bool, t: int) -> Vector:
    """Two vectors, one-to-one, many-to-one (group_left) or one-to-many (group_right)."""
    if not lhs or not rhs:
        return []
    one_to_many = matching.card is ast.Cardinality.ONE_TO_MANY
    if one_to_many:
        lhs, rhs = rhs, lhs
    right: dict[Labels, Sample] = {}
    for sample in rhs:
        sig = signature(sample.labels, matching)
        duplicate = right.get(sig)
        if duplicate is not None:
            side = "left" if one_to_many else "right"
            raise BinaryOpError(
                f"found duplicate series for the match group {format_labels(sig)} on the "
                f"{side} hand-side of the operation: [{format_labels(sample.labels)}, "
                f"{format_labels(duplicate.labels)}];many-to-many matching not allowed: "
                f"matching labels must be unique on one side")
        right[sig] = sample
    matched: dict[Labels, set[Labels] | None] = {}
    out: Vector = []
    for sample in lhs:
        sig = signature(sample.labels, matching)
        other = right.get(sig)
        if other is None:
            continue
        vl, vr = (other.v, sample.v) if one_to_many else (sample.v, other.v)
        value, keep = elem_binop(op, vl, vr)
        if return_bool:
            value = 1.0 if keep else 0.0
        elif not keep:
            continue
        labels = result_labels(sample.labels, other.labels, op, matching)
        if return_bool:
            labels = without_name(labels)
        if matching.card is ast.Cardinality.ONE_TO_ONE:
            if sig in matched:
                raise BinaryOpError("multiple matches for labels: many-to-one matching must "
                                    "be explicit (group_left/group_right)")
            matched[sig] = None
        else:
            inserted = matched.get(sig)
            if inserted is None:
                inserted = matched[sig] = set()
            elif labels in inserted:
                raise BinaryOpError("multiple matches for labels: grouping labels must ensure "
                                    "unique matches")
            inserted.add(labels)
        out.append(Sample(labels, t, value))
    return out


def result_labels(lhs: Labels, rhs: Labels, op: str, matching: ast.VectorMatching) -> Labels:
    labels = without_name(lhs) if op in NAME_DROPPING else lhs
    if matching.card is ast.Cardinality.ONE_TO_ONE:
        if matching.on:
            labels = keep_only(labels, matching.labels)
        else:
            labels = drop(labels, matching.labels)
    for name in matching.include:
        value = next((v for k, v in rhs if k == name), "")
        labels = with_label(labels, name, value)
    return labels
