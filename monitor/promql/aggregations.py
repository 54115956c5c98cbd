"""Aggregation operators as Prometheus 2.42's `evaluator.aggregation` computes them.

Grouping: `by (l...)` keeps exactly those labels (the metric name too, if named); `without
(l...)` drops them and the metric name; no clause is one group with no labels. Groups come out
in the order their first series appears. Values follow 2.42 to the last bit: `sum` adds plainly
(no compensation), `avg` keeps an incremental mean that tolerates infinities, `stddev` and
`stdvar` use Welford's update, `min`/`max` replace a NaN by any later value.

`topk`/`bottomk` keep each series' own labels and replay Go's container/heap and sort.Sort
(gosort.py), so ties and NaNs come out in Prometheus's order: largest (smallest) first, NaN
last. k is truncated to an integer; k < 1 gives nothing. `count_values` adds the label named
by its parameter, valued as strconv.FormatFloat(v, 'f', -1, 64) writes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from monitor.promql.goconv import format_float, format_float_g, go_quote
from monitor.promql.gomath import sqrt
from monitor.promql.gosort import go_sort, heap_pop, heap_push
from monitor.promql.quantile import quantile
from monitor.promql.values import METRIC_NAME, Labels, Sample, Vector, drop, keep_only, with_label

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MAX_INT64_FLOAT = 9223372036854774784.0  # the largest float64 below 2**63
_MIN_INT64_FLOAT = -9223372036854775808.0
_OPERATORS = frozenset({"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
                        "topk", "bottomk", "quantile", "count_values"})


class AggregationError(ValueError):
    """An aggregation Prometheus rejects at evaluation time; the message is Prometheus's."""


@dataclass(slots=True)
class _Group:
    labels: Labels
    value: float
    mean: float
    count: int = 1
    heap: list[Sample] = field(default_factory=list)


def _min_heap_less(a: Sample, b: Sample) -> bool:
    """vectorByValueHeap.Less: the smallest value on top, NaN above everything."""
    return math.isnan(a.v) or a.v < b.v


def _max_heap_less(a: Sample, b: Sample) -> bool:
    """vectorByReverseValueHeap.Less: the largest value on top, NaN above everything."""
    return math.isnan(a.v) or a.v > b.v


def _k_param(param: float | str | None) -> int:
    if not isinstance(param, float | int):
        raise AggregationError("expected a scalar parameter")
    value = float(param)
    if not _MIN_INT64_FLOAT <= value <= _MAX_INT64_FLOAT:
        raise AggregationError(f"Scalar value {format_float_g(value)} overflows int64")
    return int(value)


def aggregate(op: str, vector: Vector, *, grouping: tuple[str, ...], without: bool,
              param: float | str | None, t_ms: int) -> Vector:
    """One aggregation over one instant vector; every output sample is stamped `t_ms`."""
    if op not in _OPERATORS:
        raise AggregationError(f"expected aggregation operator but got {op!r}")
    k = 0
    if op in ("topk", "bottomk"):
        k = _k_param(param)
        if k < 1:
            return []
    q = math.nan
    if op == "quantile":
        if not isinstance(param, float | int):
            raise AggregationError("expected a scalar parameter")
        q = float(param)
    value_label = ""
    if op == "count_values":
        if not isinstance(param, str):
            raise AggregationError("expected a string parameter")
        value_label = param
        if not _LABEL_NAME.fullmatch(value_label):
            raise AggregationError(f"invalid label name {go_quote(value_label)}")
        if not without:
            grouping = (*grouping, value_label)
    dropped = (*grouping, METRIC_NAME)

    groups: dict[Labels, _Group] = {}
    for sample in vector:
        metric = sample.labels
        if op == "count_values":
            metric = with_label(metric, value_label, format_float(sample.v))
        key = drop(metric, dropped) if without else keep_only(metric, grouping)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(key, sample.v, sample.v)
            if op in ("stddev", "stdvar"):
                group.value = 0.0
            elif op in ("topk", "bottomk", "quantile"):
                group.heap.append(sample)
            elif op == "group":
                group.value = 1.0
            continue
        _accumulate(op, group, sample, k)
    return [out for group in groups.values() for out in _result(op, group, q, t_ms)]


def _accumulate(op: str, group: _Group, sample: Sample, k: int) -> None:
    value = sample.v
    if op == "sum":
        group.value += value
    elif op == "avg":
        group.count += 1
        if math.isinf(group.mean):
            if math.isinf(value) and (group.mean > 0) == (value > 0):
                return  # same-signed infinities: the mean is right already
            if not math.isinf(value) and not math.isnan(value):
                return  # a finite value cannot move an infinite mean
        # Each term divided separately so that large values do not overflow.
        group.mean += value / group.count - group.mean / group.count
    elif op == "max":
        if group.value < value or math.isnan(group.value):
            group.value = value
    elif op == "min":
        if group.value > value or math.isnan(group.value):
            group.value = value
    elif op in ("count", "count_values"):
        group.count += 1
    elif op in ("stddev", "stdvar"):
        group.count += 1
        delta = value - group.mean
        group.mean += delta / group.count
        group.value += delta * (value - group.mean)
    elif op in ("topk", "bottomk"):
        less = _min_heap_less if op == "topk" else _max_heap_less
        top = group.heap[0].v
        beats = top < value if op == "topk" else top > value
        if len(group.heap) < k or beats or math.isnan(top):
            if len(group.heap) == k:
                if k == 1:
                    group.heap[0] = sample
                    return
                heap_pop(group.heap, less)
            heap_push(group.heap, sample, less)
    elif op == "quantile":
        group.heap.append(sample)


def _result(op: str, group: _Group, q: float, t_ms: int) -> Vector:
    if op in ("topk", "bottomk"):
        return [Sample(s.labels, t_ms, s.v) for s in _heap_order(op, group.heap)]
    if op == "avg":
        value = group.mean
    elif op in ("count", "count_values"):
        value = float(group.count)
    elif op == "stdvar":
        value = group.value / group.count
    elif op == "stddev":
        value = sqrt(group.value / group.count)
    elif op == "quantile":
        value = quantile(q, [s.v for s in group.heap])
    else:
        value = group.value
    return [Sample(group.labels, t_ms, value)]


def _heap_order(op: str, heap: list[Sample]) -> list[Sample]:
    """sort.Sort(sort.Reverse(heap)): best first, NaN last, ties as Go leaves them."""
    if len(heap) <= 1:
        return heap
    values = [s.v for s in heap]
    if not any(math.isnan(v) for v in values) and len(set(values)) == len(values):
        return sorted(heap, key=lambda s: s.v, reverse=op == "topk")
    ordered = list(heap)
    less = _min_heap_less if op == "topk" else _max_heap_less
    go_sort(ordered, lambda a, b: less(b, a))
    return ordered
