"""SamplerRunner (monitor/samplers/runner.py): samplers on their own intervals, failures
counted and logged once a minute, one failing sampler never stopping another, all closed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from monitor.clock import FakeClock, SystemClock
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.samplers.runner import SamplerRunner

WAIT_S = 5.0


class ScriptedSampler:
    def __init__(self, name: str, interval_s: float, *, fail: bool = False) -> None:
        self._name = name
        self._interval_s = interval_s
        self.fail = fail
        self.calls = 0
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def interval_s(self) -> float:
        return self._interval_s

    async def sample(self) -> None:
        self.calls += 1
        if self.fail:
            raise OSError("sensor unreadable")

    async def close(self) -> None:
        self.closed = True


def failures(store: MetricStore) -> dict[str, float]:
    family = store.family("inferwatch_sampler_failures")
    assert family is not None
    return {dict(key)["sampler"]: s.value for key, s in family.series.items()
            if isinstance(s, CounterSeries)}


async def test_failures_are_counted_every_time_and_logged_once_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    store = MetricStore()
    broken = ScriptedSampler("gpu", 1.0, fail=True)
    runner = SamplerRunner([broken], store=store, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert not await runner.sample_once(broken)
            clock.advance(1)
        clock.advance(60)
        await runner.sample_once(broken)
    assert failures(store) == {"gpu": 4.0}
    lines = [r.getMessage() for r in caplog.records if "sampler gpu failed" in r.getMessage()]
    assert len(lines) == 2
    assert "(1 time(s)" in lines[0] and "(3 time(s)" in lines[1]
    assert "sensor unreadable" in lines[0]


async def test_a_failing_sampler_does_not_stop_the_others_and_all_are_closed() -> None:
    store = MetricStore()
    good = ScriptedSampler("host", 0.01)
    bad = ScriptedSampler("probe", 0.01, fail=True)
    runner = SamplerRunner([good, bad], store=store, clock=SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))

    async def both_ran_a_few_times() -> None:
        while good.calls < 5 or bad.calls < 5:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(both_ran_a_few_times(), WAIT_S)
    stop.set()
    await asyncio.wait_for(task, WAIT_S)
    assert runner.samples["host"] >= 5 and "probe" not in runner.samples
    assert failures(store)["probe"] >= 5
    assert good.closed and bad.closed
