"""What every contender must compute from the log, and how its answer is checked.

`Aggregate` is the common result of the benchmark: requests by status, input and output
tokens, and the request-duration histogram (non-cumulative bucket counts, +Inf last, and the
sum). The truth comes from the generator's own record of each line; mtail's and the daemon's
answers are read back from Prometheus text exposition; the bare loop reports its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# The sum of ~1e6 durations accumulated in a different order differs in the last digits.
SUM_REL_TOLERANCE = 1e-9


@dataclass
class Aggregate:
    """Request counts, token totals and the duration histogram of one log file."""

    success: int = 0
    error: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duration_buckets: list[int] = field(default_factory=list)
    duration_sum: float = 0.0

    @property
    def requests(self) -> int:
        return self.success + self.error

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Aggregate:
        return cls(
            success=int(data["success"]),
            error=int(data["error"]),
            input_tokens=int(data["input_tokens"]),
            output_tokens=int(data["output_tokens"]),
            duration_buckets=[int(c) for c in data["duration_buckets"]],
            duration_sum=float(data["duration_sum"]),
        )


def differences(truth: Aggregate, got: Aggregate) -> list[str]:
    """Human-readable mismatches between `got` and `truth`; empty when they agree."""
    problems = [
        f"{name}: expected {want}, got {have}"
        for name, want, have in (
            ("requests{status=success}", truth.success, got.success),
            ("requests{status=error}", truth.error, got.error),
            ("input_tokens", truth.input_tokens, got.input_tokens),
            ("output_tokens", truth.output_tokens, got.output_tokens),
        )
        if want != have
    ]
    if truth.duration_buckets != got.duration_buckets:
        problems.append(f"duration buckets: expected {truth.duration_buckets}, "
                        f"got {got.duration_buckets}")
    if not math.isclose(truth.duration_sum, got.duration_sum, rel_tol=SUM_REL_TOLERANCE):
        problems.append(f"duration sum: expected {truth.duration_sum!r}, "
                        f"got {got.duration_sum!r}")
    return problems


def _non_cumulative(cumulative: Sequence[float]) -> list[int]:
    counts, previous = [], 0
    for value in cumulative:
        counts.append(round(value) - previous)
        previous = round(value)
    return counts


def aggregate_from_exposition(
    text: str,
    *,
    requests: str,
    input_tokens: str,
    output_tokens: str,
    duration: str,
    n_buckets: int,
) -> Aggregate:
    """Sum every series of the named samples (any labels) out of Prometheus text format.

    `requests` must carry a `status` label of `success` or `error`; `duration` is the
    histogram's base name (its `_bucket` series are summed per `le`).
    """
    result = Aggregate(duration_buckets=[0] * (n_buckets + 1))
    cumulative: dict[float, float] = {}
    for sample in _samples(text):
        name, labels, value = sample.name, sample.labels, sample.value
        if name == requests and labels.get("status") in ("success", "error"):
            setattr(result, labels["status"], getattr(result, labels["status"]) + round(value))
        elif name == input_tokens:
            result.input_tokens += round(value)
        elif name == output_tokens:
            result.output_tokens += round(value)
        elif name == f"{duration}_bucket":
            bound = float(labels["le"])
            cumulative[bound] = cumulative.get(bound, 0.0) + value
        elif name == f"{duration}_sum":
            result.duration_sum += value
    if cumulative:
        ordered = [cumulative[bound] for bound in sorted(cumulative)]
        if len(ordered) == n_buckets + 1:
            result.duration_buckets = _non_cumulative(ordered)
        else:
            result.duration_buckets = [-1] * len(ordered)  # a layout mismatch: never equal
    return result


def _samples(text: str) -> Iterable[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples
