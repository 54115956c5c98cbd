"""Range queries compute range functions a block of steps at a time; the answer must equal
evaluating the expression at every step on its own (the instant path)."""

from __future__ import annotations

import math
import random

import pytest

from monitor.promql.engine import BLOCK_STEPS, Engine
from monitor.promql.values import STALE_NAN, Sample
from monitor.tsdb.store import SeriesStore

MINUTE = 60_000


@pytest.fixture(scope="module")
def engine() -> Engine:
    rng = random.Random(7)
    store = SeriesStore(retention_ms=2**62)
    for job in ("a", "b", "c"):
        for code in ("200", "500"):
            labels = (("__name__", "requests_total"), ("code", code), ("job", job))
            value = 0.0
            for i in range(0, 400):
                t = i * 15_000 + rng.randrange(0, 3000)
                if rng.random() < 0.05:
                    continue  # gaps
                value = 0.0 if rng.random() < 0.01 else value + rng.randrange(0, 50)  # resets
                store.append(labels, t, value)
        gauge = (("__name__", "temperature"), ("job", job))
        for i in range(0, 400):
            store.append(gauge, i * 15_000, rng.uniform(20, 90))
        if job == "b":
            store.series[gauge].append_stale(400 * 15_000)
    store.append((("__name__", "nan_gauge"),), 30_000, math.nan)
    store.append((("__name__", "nan_gauge"),), 45_000, STALE_NAN)
    return Engine(store)


EXPRESSIONS = [
    "rate(requests_total[5m])",
    "sum by (job) (increase(requests_total[2m]))",
    "irate(requests_total[1m])",
    "resets(requests_total[10m])",
    "delta(temperature[5m] offset 2m)",
    "deriv(temperature[10m])",
    "predict_linear(temperature[10m], 600)",
    "avg_over_time(temperature[3m] @ 3000)",
    "max_over_time(temperature[1m]) - min_over_time(temperature[1m])",
    "quantile_over_time(0.9, temperature[5m])",
    "quantile_over_time(scalar(max(temperature)) / 100, temperature[5m])",
    "last_over_time(temperature[2m])",
    "count_over_time(nan_gauge[5m])",
    "changes(temperature[4m])",
    "holt_winters(temperature[10m], 0.5, 0.5)",
    "stddev_over_time(temperature[5m] offset -1m)",
    "present_over_time(requests_total[30s])",
]


@pytest.mark.parametrize("step", [37_000, 11 * MINUTE])
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_range_query_equals_per_step_evaluation(engine: Engine, expr: str, step: int) -> None:
    # 37 s: more steps than one block, unaligned, overlapping windows. 11 m: windows with
    # gaps between them, each read on its own.
    start, end = 0, 100 * MINUTE
    if step < MINUTE:
        assert (end - start) // step + 1 > 2 * BLOCK_STEPS
    matrix = engine.range(expr, start, end, step)
    got = {(series.labels, t): v for series in matrix
           for t, v in zip(series.ts, series.vs, strict=True)}
    expected = {}
    for t in range(start, end + 1, step):
        value = engine.instant(expr, t)
        assert isinstance(value, list)
        for sample in value:
            assert isinstance(sample, Sample)
            expected[(sample.labels, t)] = sample.v
    assert got.keys() == expected.keys()
    for key, value in got.items():
        other = expected[key]
        assert value == other or (math.isnan(value) and math.isnan(other)), key
