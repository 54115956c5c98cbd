"""The statistics behind the report's judgements: a robust trend of daily cost, a rank
correlation between prompt length and latency, and the bounded sample it is computed on.

Trend (Theil-Sen): over the daily costs c_0..c_{d-1} of the last TREND_DAYS whole days (days
without a request count as 0; the first and last day of the logs only when the logs cover
them to within an hour of their start and end), the slope is the median, over every pair of
days i < j, of (c_j - c_i) / (j - i) — in exact fractions, so no rounding decides a
direction — and the intercept the median of c_i - slope·i. One odd day (a surge) moves it
little: up to 29 % of the days may be outliers before it breaks. The direction is `rising`
when the slope is more than FLAT_FRACTION (2 %) of the mean daily cost per day, `falling` when
it is less than minus that, `flat` otherwise (and when the mean is 0); with fewer than
MIN_TREND_DAYS (3) whole days it is `insufficient data`.

Rank correlation (Spearman's rho): the Pearson correlation of the ranks of the two variables,
ties given their average rank; None when either variable is constant or there are fewer than
two pairs.

Sample: `Reservoir` keeps a uniform sample of at most `size` items from a stream of any
length (Li's algorithm L, seeded, so the same input gives the same sample), so the correlation
costs constant memory; while the stream is no longer than `size`, the sample is all of it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import inf, log, log1p, sqrt
from typing import Generic, TypeVar

TREND_DAYS = 90
MIN_TREND_DAYS = 3
FLAT_FRACTION = Fraction(2, 100)

T = TypeVar("T")


@dataclass(frozen=True)
class Trend:
    direction: str  # rising | falling | flat | insufficient data
    days: int  # the days fitted
    slope_per_day: Fraction | None  # money per day
    mean_per_day: Fraction | None
    intercept: Fraction | None = None  # the fitted cost of the first day fitted

    @property
    def relative_slope(self) -> Fraction | None:
        """The slope as a fraction of the mean daily cost (None when the mean is 0)."""
        if self.slope_per_day is None or not self.mean_per_day:
            return None
        return self.slope_per_day / self.mean_per_day


def median(values: Sequence[Fraction]) -> Fraction:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def theil_sen_slope(values: Sequence[Fraction]) -> Fraction:
    """The median of the pairwise slopes of (index, value); needs at least two values."""
    slopes = [(values[j] - values[i]) / (j - i)
              for i in range(len(values)) for j in range(i + 1, len(values))]
    return median(slopes)


def cost_trend(daily: Sequence[Fraction]) -> Trend:
    """The direction of the last TREND_DAYS daily costs (see the module docstring)."""
    values = list(daily[-TREND_DAYS:])
    if len(values) < MIN_TREND_DAYS:
        return Trend("insufficient data", len(values), None, None)
    slope = theil_sen_slope(values)
    mean = sum(values, Fraction(0)) / len(values)
    threshold = FLAT_FRACTION * mean
    if mean > 0 and slope > threshold:
        direction = "rising"
    elif mean > 0 and slope < -threshold:
        direction = "falling"
    else:
        direction = "flat"
    intercept = median([value - slope * index for index, value in enumerate(values)])
    return Trend(direction, len(values), slope, mean, intercept)


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, tied values sharing the average of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = rank
        start = end + 1
    return ranks


def spearman(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Spearman's rank correlation of the pairs (see the module docstring)."""
    if len(pairs) < 2:
        return None
    xs = average_ranks([x for x, _ in pairs])
    ys = average_ranks([y for _, y in pairs])
    n = len(pairs)
    mean = (n + 1) / 2  # the mean of average ranks is always this
    sxy = sum((x - mean) * (y - mean) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mean) ** 2 for x in xs)
    syy = sum((y - mean) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / sqrt(sxx * syy)


class Reservoir(Generic[T]):
    """A uniform random sample of at most `size` items of a stream (algorithm L)."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.items: list[T] = []
        self.seen = 0
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not secrets
        self._random = self._rng.random
        self._inverse_size = 1.0 / size
        self._weight = 1.0
        self._next = size  # the index of the next item to take once the sample is full
        self._advance()

    def _advance(self) -> None:
        # Li's algorithm L: the weight shrinks by U^(1/size) per item taken, and the number of
        # items to skip before the next one taken is geometric in it.
        random = self._random
        self._weight *= (1.0 - random()) ** self._inverse_size
        scale = log1p(-self._weight) if self._weight < 1.0 else -inf
        skip = int(log(1.0 - random()) / scale) if scale < 0.0 else 1 << 62
        self._next += skip + (1 if len(self.items) >= self.size else 0)

    def offer_many(self, items: Sequence[T]) -> None:
        """`offer` each item in order; only the items taken are touched."""
        start = self.seen
        self.seen = start + len(items)
        if start < self.size:
            self.items.extend(items[: self.size - start])
        random, size, taken = self._random, self.size, self.items
        while self._next < self.seen:
            taken[int(random() * size)] = items[self._next - start]
            self._advance()

    def offer(self, item: T) -> None:
        index = self.seen
        self.seen = index + 1
        if index < self.size:
            self.items.append(item)
            return
        if index == self._next:
            self.items[int(self._random() * self.size)] = item
            self._advance()
