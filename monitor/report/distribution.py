"""Distributions in constant memory: exact count, sum, min and max, and percentiles read from a
fixed log-linear grid (the definition the report's documentation gives, word for word).

The grid: a value v > 0 is written v = m·2^e with m in [0.5, 1) (`math.frexp`, exact), and
falls in the cell [j·2^(e-8), (j+1)·2^(e-8)) where j = ⌊256·m⌋, 128 ≤ j ≤ 255 — 128 cells per
power of two. The cell's *grid value* is its midpoint (j + ½)·2^(e-8), so a grid value is
never more than 1/256 (0.39 %) of the true value away from it. Zero (and the subnormal
values below 2^-1022, which no latency reaches) is one cell, grid value 0. Every step is exact
in binary floating point, so anyone can recompute the cell.

The percentile p (an integer percent, 1..100) of n values is nearest-rank over the grid
values: sort the n values, take the r-th smallest with r = ⌈p·n/100⌉ computed in integers,
replace it by its grid value, and clamp that to the exact [min, max]. Since rounding to the
grid is monotonic, this equals the r-th smallest grid value.

How the cell is found: for a positive IEEE 754 double, j - 128 is the top 7 bits of the
stored mantissa and e - 1 + 1023 its biased exponent, so the cell key is simply the double's
bit pattern shifted right by 45 (`(biased exponent << 7) | top 7 mantissa bits`). Done for a
whole array of values at once (`array('d')` reinterpreted as unsigned 64-bit integers) this
costs a fraction of a `frexp` call per value.

Cells are kept in a dict keyed that way, so a distribution costs a few kilobytes however many
values it sees: latencies from a microsecond to a week span about 40 powers of two, at most
5,120 cells.
"""

from __future__ import annotations

import struct
from array import array
from collections import Counter
from collections.abc import Sequence
from math import inf, ldexp

CELLS_PER_OCTAVE = 128
_SHIFT = 52 - 7  # of a double's 52 mantissa bits, keep the top 7 (and the exponent above)
_BIAS = 1023
# -0.0 is >= 0 but has the sign bit set: its key would be this, whose grid value overflows.
_NEGATIVE_ZERO_KEY = 1 << (63 - _SHIFT)
PERCENTILES = (50, 95, 99)
MAX_RELATIVE_ERROR = 1.0 / (2 * CELLS_PER_OCTAVE)  # half a cell over its lower bound


def cell_keys(values: Sequence[float]) -> Counter[int]:
    """How many of the values (each >= 0) fall in each cell, by cell key."""
    bits = memoryview(array("d", values)).cast("B").cast("Q")
    shift = _SHIFT
    counts = Counter([pattern >> shift for pattern in bits])
    if _NEGATIVE_ZERO_KEY in counts:
        counts[0] += counts.pop(_NEGATIVE_ZERO_KEY)
    return counts


def cell_key(value: float) -> int:
    """The cell key of one value >= 0."""
    (pattern,) = struct.unpack("=Q", struct.pack("=d", value + 0.0))  # -0.0 + 0.0 is 0.0
    return int(pattern) >> _SHIFT


def grid_value(key: int) -> float:
    """The midpoint of a cell: the value every member of the cell is rounded to."""
    biased, top = divmod(key, CELLS_PER_OCTAVE)
    if biased == 0:
        return 0.0
    return ldexp(CELLS_PER_OCTAVE + top + 0.5, biased - _BIAS - 7)


def nearest_rank(percent: int, count: int) -> int:
    """r = ⌈percent·count/100⌉ in integers (no floating-point ceiling), at least 1."""
    return max(1, -(-percent * count // 100))


class Distribution:
    """Count, exact sum/min/max, and grid cells of a stream of non-negative values."""

    __slots__ = ("cells", "count", "high", "low", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.low = inf
        self.high = -inf
        self.cells: dict[int, int] = {}

    def add_many(self, values: Sequence[float]) -> Counter[int] | None:
        """Record values (each >= 0); returns their cells so a caller can record the same
        values elsewhere with `add_cells` without finding the cells again."""
        if not values:
            return None
        cells = cell_keys(values)
        self.add_cells(values, cells)
        return cells

    def add_cells(self, values: Sequence[float], cells: Counter[int]) -> None:
        """Record values whose cells `cell_keys` already counted."""
        self.count += len(values)
        self.total += sum(values)
        low = min(values) + 0.0  # not -0.0
        if low < self.low:  # noqa: PLR1730 - a comparison, not a call, per chunk
            self.low = low
        high = max(values) + 0.0
        if high > self.high:  # noqa: PLR1730
            self.high = high
        mine = self.cells
        for key, count in cells.items():
            mine[key] = mine.get(key, 0) + count

    def merge(self, other: Distribution) -> None:
        self.count += other.count
        self.total += other.total
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        cells = self.cells
        for key, count in other.cells.items():
            cells[key] = cells.get(key, 0) + count

    def percentiles(self, percents: tuple[int, ...] = PERCENTILES) -> dict[int, float]:
        """Each percent's value as defined in the module docstring (empty when no values)."""
        if not self.count:
            return {}
        wanted = sorted((nearest_rank(p, self.count), p) for p in percents)
        found: dict[int, float] = {}
        seen = 0
        index = 0
        for key in sorted(self.cells):
            seen += self.cells[key]
            while index < len(wanted) and wanted[index][0] <= seen:
                value = grid_value(key)
                found[wanted[index][1]] = min(max(value, self.low), self.high)
                index += 1
            if index == len(wanted):
                break
        return found

    def summary(self) -> dict[str, float | int | None]:
        """count, min, avg, p50, p95, p99, max (None each when there are no values)."""
        if not self.count:
            return {"count": 0, "min": None, "avg": None, "p50": None, "p95": None,
                    "p99": None, "max": None}
        found = self.percentiles()
        return {"count": self.count, "min": self.low, "avg": self.total / self.count,
                "p50": found[50], "p95": found[95], "p99": found[99], "max": self.high}
