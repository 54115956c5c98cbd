"""Synthetic series for the rules benchmark: inferwatch-like families, loaded and exported.

Every *instance* (`host-NNNN`) serves three (service, model) pairs and carries 100 series:

| family (type)                                        | series per (service, model) |
| ---------------------------------------------------- | --------------------------- |
| `inferwatch_requests_total` (counter)                | 2 (`status` success, error) |
| `inferwatch_request_errors_total` (counter)          | 3 (`class`)                 |
| `inferwatch_request_duration_seconds` (histogram)    | 22 buckets, `_sum`, `_count` |
| `inferwatch_output_tokens_total` (counter)           | 1                           |
| `inferwatch_queue_depth`, `…_kv_cache_usage_ratio`, `…_gpu_utilization_ratio` | 3 gauges |

plus one `up` per instance: 3 x 33 + 1 = 100. A dataset of N series has N / 100 instances;
pair `p` (instance `p // 3`) belongs to service `svc-(p % 20)` and model `model-(p // 20 % 8)`,
so every service owns 1/20 of every family whatever N is, and a rule that selects one service
does work in proportion to N.

Samples are every 15 s on whole seconds, ending at END_S. Counters and buckets hold whole
counts, as real ones do. Values come from a few precomputed curves scaled per pair (rates,
error ratios and latencies drawn once per pair from the seed), so generating millions of
samples costs a multiplication each. The store is filled through `SeriesStore.append`; the
OpenMetrics export reads the samples back out of that store, so the Prometheus peer gets
exactly the samples inferwatch holds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from monitor.metrics.families import DURATION_BUCKETS
from monitor.promql.values import Labels
from monitor.tsdb.store import SeriesStore

END_S = 1_767_268_800  # 2026-01-01T12:00:00Z: a 6 h history stays inside one UTC day
STEP_S = 15
SERIES_PER_INSTANCE = 100
PAIRS_PER_INSTANCE = 3
SERVICES = 20
MODELS = 8
CURVES = 16
ERROR_CLASSES = (("timeout", 0.5), ("rate_limit", 0.3), ("server", 0.2))
BUCKETS = (*(repr(b) for b in DURATION_BUCKETS), "+Inf")
FAR_FUTURE_MS = 2**62

# metric name -> (family, OpenMetrics type), in the order the export writes them
FAMILIES: dict[str, tuple[str, str]] = {
    "inferwatch_requests_total": ("inferwatch_requests", "counter"),
    "inferwatch_request_errors_total": ("inferwatch_request_errors", "counter"),
    "inferwatch_request_duration_seconds_bucket": ("inferwatch_request_duration_seconds",
                                                   "histogram"),
    "inferwatch_request_duration_seconds_count": ("inferwatch_request_duration_seconds",
                                                  "histogram"),
    "inferwatch_request_duration_seconds_sum": ("inferwatch_request_duration_seconds",
                                                "histogram"),
    "inferwatch_output_tokens_total": ("inferwatch_output_tokens", "counter"),
    "inferwatch_queue_depth": ("inferwatch_queue_depth", "gauge"),
    "inferwatch_kv_cache_usage_ratio": ("inferwatch_kv_cache_usage_ratio", "gauge"),
    "inferwatch_gpu_utilization_ratio": ("inferwatch_gpu_utilization_ratio", "gauge"),
    "up": ("up", "gauge"),
}


@dataclass(frozen=True)
class Shape:
    """What a dataset holds: how many instances and how long a history."""

    instances: int
    history_s: int
    seed: int

    @property
    def series(self) -> int:
        return self.instances * SERIES_PER_INSTANCE

    @property
    def steps(self) -> int:
        return self.history_s // STEP_S + 1

    @property
    def samples(self) -> int:
        return self.series * self.steps

    @property
    def start_s(self) -> int:
        return END_S - (self.steps - 1) * STEP_S

    @property
    def end_ms(self) -> int:
        return END_S * 1000

    def describe(self) -> str:
        return f"{self.series:,} series x {self.steps:,} samples ({format_span(self.history_s)})"


def shape_for(series: int, history_s: int, seed: int) -> Shape:
    return Shape(max(1, round(series / SERIES_PER_INSTANCE)), history_s, seed)


def format_span(seconds: float) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


# -- values -----------------------------------------------------------------------------------


class _Curves:
    """Shared per-step shapes: cumulative unit-rate request counts and gauge waves."""

    def __init__(self, steps: int, seed: int) -> None:
        rng = random.Random(seed)
        self.counters: list[list[float]] = []
        self.waves: list[list[float]] = []
        for c in range(CURVES):
            period = rng.uniform(600, 5400) / STEP_S
            phase = rng.uniform(0, 2 * math.pi)
            total, cumulative = 0.0, []
            for k in range(steps):
                load = 1.0 + 0.3 * math.sin(2 * math.pi * k / period + phase) \
                    + rng.uniform(-0.15, 0.15)
                total += STEP_S * max(load, 0.05)
                cumulative.append(total)
            self.counters.append(cumulative)
            wave_period = rng.uniform(300, 3600) / STEP_S
            self.waves.append([
                min(1.0, max(0.0, 0.5 + 0.35 * math.sin(2 * math.pi * k / wave_period + c)
                             + rng.uniform(-0.1, 0.1)))
                for k in range(steps)])


@dataclass(frozen=True)
class _Pair:
    """One (service, model) served by one instance, and its traffic's character."""

    instance: str
    service: str
    model: str
    curve: int
    rate: float  # requests per second
    error_ratio: float
    latency_median_s: float
    latency_sigma: float
    tokens_per_request: float
    queue_scale: float
    start_count: float

    @classmethod
    def draw(cls, index: int, seed: int) -> _Pair:
        rng = random.Random(seed * 1_000_003 + index)
        error_ratio = rng.uniform(0.06, 0.15) if rng.random() < 0.08 \
            else math.exp(rng.uniform(math.log(0.001), math.log(0.02)))
        return cls(
            instance=f"host-{index // PAIRS_PER_INSTANCE:04d}",
            service=f"svc-{index % SERVICES:02d}",
            model=f"model-{index // SERVICES % MODELS}",
            curve=index % CURVES,
            rate=math.exp(rng.uniform(math.log(0.2), math.log(20.0))),
            error_ratio=error_ratio,
            latency_median_s=math.exp(rng.gauss(math.log(1.5), 0.6)),
            latency_sigma=rng.uniform(0.4, 0.9),
            tokens_per_request=rng.uniform(50, 800),
            queue_scale=rng.uniform(5, 60),
            start_count=rng.uniform(0, 1e5),
        )


def _labels(name: str, **pairs: str) -> Labels:
    return tuple(sorted({"__name__": name, **pairs}.items()))


def _pair_series(pair: _Pair, curves: _Curves) -> Iterator[tuple[Labels, list[float]]]:
    common = {"instance": pair.instance, "service": pair.service, "model": pair.model,
              "source": "inference"}
    requests = [pair.start_count + u for u in curves.counters[pair.curve]]
    errors = [pair.start_count * pair.error_ratio + u
              for u in curves.counters[(pair.curve + 5) % CURVES]]
    for status, scale, values in (("success", pair.rate * (1 - pair.error_ratio), requests),
                                  ("error", pair.rate * pair.error_ratio, errors)):
        yield (_labels("inferwatch_requests_total", status=status, **common),
               [round(scale * v, 0) for v in values])
    for error_class, share in ERROR_CLASSES:
        scale = pair.rate * pair.error_ratio * share
        yield (_labels("inferwatch_request_errors_total", **{"class": error_class}, **common),
               [round(scale * v, 0) for v in errors])
    counts = [round(pair.rate * v, 0) for v in requests]
    for bound, le in zip((*DURATION_BUCKETS, math.inf), BUCKETS, strict=True):
        z = (math.log(bound) - math.log(pair.latency_median_s)) / pair.latency_sigma
        share = 0.5 * (1 + math.erf(z / math.sqrt(2))) if bound != math.inf else 1.0
        yield (_labels("inferwatch_request_duration_seconds_bucket", le=le, **common),
               [round(share * v, 0) for v in counts])
    mean = pair.latency_median_s * math.exp(pair.latency_sigma ** 2 / 2)
    yield _labels("inferwatch_request_duration_seconds_sum", **common), [mean * v for v in counts]
    yield _labels("inferwatch_request_duration_seconds_count", **common), counts
    yield (_labels("inferwatch_output_tokens_total", **common),
           [round(pair.tokens_per_request * v, 0) for v in counts])
    wave = curves.waves[pair.curve]
    other = curves.waves[(pair.curve + 3) % CURVES]
    yield _labels("inferwatch_queue_depth", **common), [round(pair.queue_scale * w) * 1.0
                                                         for w in wave]
    yield _labels("inferwatch_kv_cache_usage_ratio", **common), [0.55 + 0.45 * w for w in other]
    yield _labels("inferwatch_gpu_utilization_ratio", **common), [1.0 - w for w in wave]


def generate(shape: Shape) -> Iterator[tuple[Labels, list[float]]]:
    """Every series of the dataset with its values (one per step, oldest first)."""
    curves = _Curves(shape.steps, shape.seed)
    for instance in range(shape.instances):
        for slot in range(PAIRS_PER_INSTANCE):
            index = instance * PAIRS_PER_INSTANCE + slot
            yield from _pair_series(_Pair.draw(index, shape.seed), curves)
        yield _labels("up", instance=f"host-{instance:04d}", job="inference"), \
            [1.0] * shape.steps


def timestamps_ms(shape: Shape) -> list[int]:
    return [(shape.start_s + k * STEP_S) * 1000 for k in range(shape.steps)]


def load(shape: Shape, store: SeriesStore) -> int:
    """Append every sample of `shape` to `store`; the number appended."""
    times = timestamps_ms(shape)
    appended = 0
    for labels, values in generate(shape):
        append = store.append
        for t, v in zip(times, values, strict=True):
            append(labels, t, v)
        appended += len(values)
    return appended


def new_store() -> SeriesStore:
    return SeriesStore(retention_ms=FAR_FUTURE_MS)


# -- OpenMetrics export -----------------------------------------------------------------------


def _exposition_name(labels: Labels) -> str:
    name = labels[0][1]
    inner = ",".join(f'{k}="{v}"' for k, v in labels[1:])
    return f"{name}{{{inner}}}"


def write_openmetrics(store: SeriesStore, out: TextIO) -> int:
    """Every sample in `store` as OpenMetrics text (timestamps in seconds); samples written.

    Families are contiguous and each series' samples are in time order, which is what
    `promtool tsdb create-blocks-from openmetrics` needs."""
    by_family: dict[str, list[Labels]] = {}
    for labels in store.series:
        assert labels[0][0] == "__name__"
        by_family.setdefault(FAMILIES[labels[0][1]][0], []).append(labels)
    types = dict(FAMILIES.values())
    written = 0
    for family, members in by_family.items():
        out.write(f"# TYPE {family} {types[family]}\n")
        for labels in sorted(members):
            prefix = _exposition_name(labels)
            ts, vs = store.series[labels].window(-FAR_FUTURE_MS, FAR_FUTURE_MS)
            assert all(t % 1000 == 0 for t in ts), "whole seconds keep promtool's ms exact"
            out.write("".join([f"{prefix} {v!r} {t // 1000}\n" for t, v in zip(ts, vs,
                                                                                 strict=True)]))
            written += len(ts)
    out.write("# EOF\n")
    return written


def export_openmetrics(store: SeriesStore, path: Path) -> int:
    with path.open("w", buffering=1 << 20) as out:
        return write_openmetrics(store, out)
