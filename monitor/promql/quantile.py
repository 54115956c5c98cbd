"""Quantiles as Prometheus 2.42 computes them (promql/quantile.go).

- `quantile`: the φ-quantile of plain values, interpolating between the two nearest ranks;
  used by the `quantile` aggregation and `quantile_over_time`.
- `bucket_quantile`: the φ-quantile of classic histogram buckets (`le` upper bounds and
  cumulative counts), after merging equal bounds and forcing counts to be monotonic.
- `histogram_quantile`: groups an instant vector's `*_bucket` series into histograms.

Out-of-range φ gives -Inf (φ < 0) or +Inf (φ > 1), NaN φ gives NaN. Sorting goes through
`go_sort` whenever NaNs or ties could make the order depend on Go's algorithm.
"""

from __future__ import annotations

import math

from monitor.promql.goconv import parse_float
from monitor.promql.gomath import floor, go_div
from monitor.promql.gosort import go_sort
from monitor.promql.values import METRIC_NAME, Labels, Sample, Vector, drop, label_value

BUCKET_LABEL = "le"


def _nan_first_less(a: float, b: float) -> bool:
    return math.isnan(a) or a < b


def sort_values(values: list[float]) -> list[float]:
    """The values in the order Go's sort.Sort(vectorByValueHeap) leaves them."""
    if not any(math.isnan(v) for v in values):
        return sorted(values)  # ties are equal floats: their order cannot show
    ordered = list(values)
    go_sort(ordered, _nan_first_less)
    return ordered


def quantile(q: float, values: list[float]) -> float:
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sort_values(values)
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def _sorted_buckets(buckets: list[tuple[float, float]]) -> list[list[float]]:
    bounds = [upper for upper, _ in buckets]
    if not any(math.isnan(b) for b in bounds) and len(set(bounds)) == len(bounds):
        return [[upper, count] for upper, count in sorted(buckets)]
    ordered = [[upper, count] for upper, count in buckets]
    go_sort(ordered, lambda a, b: a[0] < b[0])
    return ordered


def _search(n: int, found: list[bool]) -> int:
    """sort.Search(n, f): binary search that, like Go's, assumes `found` is monotonic."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if not found[mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """bucketQuantile: `buckets` are (upper bound, cumulative count) in any order."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = _sorted_buckets(buckets)
    if ordered[-1][0] != math.inf:
        return math.nan
    merged: list[list[float]] = []
    last = ordered[0]
    for bucket in ordered[1:]:
        if bucket[0] == last[0]:
            last = [last[0], last[1] + bucket[1]]
        else:
            merged.append(last)
            last = bucket
    merged.append(last)
    highest = merged[0][1]
    for bucket in merged[1:]:  # ensureMonotonic
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = _search(len(merged) - 1, [bucket[1] >= rank for bucket in merged[:-1]])
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * go_div(rank, count)


def histogram_quantile(q: float, vector: Vector, t_ms: int) -> Vector:
    """histogram_quantile(q, vector) over classic buckets: one output per label set minus
    `le`, labelled without `le` and the metric name. Series whose `le` is missing or not a
    float are skipped. Groups come out in the order they are first seen (Go's is random)."""
    groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
    for sample in vector:
        upper = parse_float(label_value(sample.labels, BUCKET_LABEL))
        if upper is None:
            continue
        key = drop(sample.labels, (BUCKET_LABEL,))
        group = groups.get(key)
        if group is None:
            group = groups[key] = (drop(key, (METRIC_NAME,)), [])
        group[1].append((upper, sample.v))
    return [Sample(labels, t_ms, bucket_quantile(q, buckets))
            for labels, buckets in groups.values()]
