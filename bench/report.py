"""Turning repeated samples into the printed summary: medians, ratios against peers, tables.

Ratios are "how many times the work of the peer inferwatch does in the same time", so higher
is better for inferwatch and a target reads `>= 3x`. They are only meaningful within one run:
every contender was measured on the same machine, interleaved, a moment apart.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Ratio:
    """`name`: `value` (higher is better) against `target`, from two absolute medians."""

    name: str
    value: float | None
    target: float | None
    detail: str
    higher_is_better: bool = True

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        if self.target is None:
            return ""
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "ok" if ok else "BELOW"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items() if values}


def ratio(name: str, numerator: float | None, denominator: float | None,
          target: float | None, detail: str, *, higher_is_better: bool = True) -> Ratio:
    """`numerator / denominator`, or n/a when either side was not measured."""
    if numerator is None or denominator is None or denominator <= 0:
        return Ratio(name, None, target, detail, higher_is_better)
    return Ratio(name, numerator / denominator, target, detail, higher_is_better)


def _target_text(item: Ratio) -> str:
    if item.target is None:
        return "-"
    return f"{'>=' if item.higher_is_better else '<='} {item.target:g}x"


def format_ratios(items: Sequence[Ratio]) -> str:
    width = max(len(item.name) for item in items)
    lines = [f"{'ratio':<{width}}  {'value':>7}  {'target':>8}  {'':<5}  absolute medians",
             "-" * (width + 60)]
    for item in items:
        value = "n/a" if item.value is None else f"{item.value:.2f}x"
        lines.append(f"{item.name:<{width}}  {value:>7}  {_target_text(item):>8}  "
                     f"{item.verdict:<5}  {item.detail}")
    return "\n".join(lines)


def format_absolutes(rows: Sequence[tuple[str, float, int, int, int]]) -> str:
    """Rows of (what, median seconds, repetitions, lines, bytes) with throughput."""
    width = max(len(row[0]) for row in rows)
    lines = [f"{'measured (median)':<{width}}  {'seconds':>8}  {'lines/s':>9}  {'MB/s':>6}  n",
             "-" * (width + 38)]
    for what, seconds, count, n_lines, n_bytes in rows:
        lines.append(f"{what:<{width}}  {seconds:>8.3f}  {n_lines / seconds:>9,.0f}  "
                     f"{n_bytes / seconds / 1e6:>6.1f}  {count}")
    return "\n".join(lines)
