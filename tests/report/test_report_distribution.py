"""The percentile grid and the nearest-rank definition, against the documented definition
computed with `math.frexp` and `Fraction` (report_logs.grid / percentile)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from report_logs import grid, percentile

from monitor.report.distribution import (
    MAX_RELATIVE_ERROR,
    Distribution,
    cell_key,
    cell_keys,
    grid_value,
    nearest_rank,
)

latencies = st.floats(min_value=0.0, max_value=7 * 86400.0, allow_nan=False)


@given(latencies)
def test_cell_rounding_is_the_documented_grid(value: float) -> None:
    assert grid_value(cell_key(value)) == grid(value)
    assert list(cell_keys([value])) == [cell_key(value)]


@given(st.floats(min_value=1e-9, max_value=1e12, allow_nan=False))
def test_grid_value_is_within_the_stated_relative_error(value: float) -> None:
    assert abs(grid_value(cell_key(value)) - value) <= MAX_RELATIVE_ERROR * value
    assert MAX_RELATIVE_ERROR <= 0.005


def test_cells_are_ordered_like_their_values() -> None:
    values = sorted({0.0, 1e-6, 0.001, 0.0099, 0.01, 0.5, 1.0, 1.0078125, 2.0, 59.9, 3600.0})
    keys = [cell_key(v) for v in values]
    assert keys == sorted(keys)
    assert cell_key(1.0) != cell_key(1.0078125)  # 128 cells per octave: 1 + 1/128 is next


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=1, max_value=10**9))
def test_nearest_rank_is_an_exact_ceiling(percent: int, count: int) -> None:
    rank = nearest_rank(percent, count)
    assert (rank - 1) * 100 < percent * count <= rank * 100  # the exact ceiling


@given(st.lists(latencies, min_size=1, max_size=300), st.integers(min_value=1, max_value=5))
def test_percentiles_match_the_definition_however_values_arrive(
        values: list[float], parts: int) -> None:
    whole = Distribution()
    whole.add_many(values)
    split = Distribution()
    size = max(1, len(values) // parts)
    for start in range(0, len(values), size):
        piece = Distribution()
        piece.add_many(values[start:start + size])
        split.merge(piece)
    for dist in (whole, split):
        found = dist.percentiles((1, 50, 95, 99, 100))
        assert found == {p: percentile(values, p) for p in (1, 50, 95, 99, 100)}
        assert (dist.count, dist.low, dist.high) == (len(values), min(values), max(values))
        assert dist.total == math.fsum(values) or math.isclose(
            dist.total, math.fsum(values), rel_tol=1e-12)


def test_empty_distribution_has_no_figures() -> None:
    assert Distribution().summary() == {"count": 0, "min": None, "avg": None, "p50": None,
                                        "p95": None, "p99": None, "max": None}
