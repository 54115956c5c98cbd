"""Runs the samplers, each on its own interval, so that one failing never touches another.

Every sampler gets a task that calls `sample()` at a fixed rate (ticks that a slow sample
overran are skipped, not piled up). A sample that raises is counted in
`<ns>_sampler_failures_total{sampler}` and logged at most once a minute per sampler with the
number of failures since the last line; the next tick tries again. On stop every task ends and
every sampler is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from monitor.clock import Clock
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.samplers.base import Sampler

log = logging.getLogger(__name__)

FAILURE_LOG_INTERVAL_S = 60.0


class SamplerRunner:
    def __init__(self, samplers: Sequence[Sampler], *, store: MetricStore, clock: Clock) -> None:
        self.samplers = list(samplers)
        self.clock = clock
        self._failures = store.register(fam.SAMPLER_FAILURES)
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self.samples: dict[str, int] = {}  # successful samples per sampler, for tests and status

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._loop(sampler, stop), name=f"sampler-{sampler.name}")
                 for sampler in self.samplers]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.close()

    async def close(self) -> None:
        for sampler in self.samplers:
            try:
                await sampler.close()
            except Exception:  # closing one must not keep the others open
                log.exception("cannot close sampler %s", sampler.name)

    async def sample_once(self, sampler: Sampler) -> bool:
        """One guarded sample; whether it succeeded."""
        try:
            await sampler.sample()
        except Exception as exc:
            self._failed(sampler.name, exc)
            return False
        self.samples[sampler.name] = self.samples.get(sampler.name, 0) + 1
        return True

    async def _loop(self, sampler: Sampler, stop: asyncio.Event) -> None:
        interval = sampler.interval_s
        next_at = self.clock.monotonic()
        while not stop.is_set():
            await self.sample_once(sampler)
            next_at += interval
            now = self.clock.monotonic()
            if next_at <= now:  # the sample overran its interval: skip the missed ticks
                next_at = now + interval - (now - next_at) % interval
            await asyncio.sleep(next_at - now)

    def _failed(self, name: str, exc: Exception) -> None:
        self._failures.inc(self._failures.key((name,)))
        self._unlogged[name] = self._unlogged.get(name, 0) + 1
        now = self.clock.monotonic()
        if now - self._logged_at.get(name, float("-inf")) >= FAILURE_LOG_INTERVAL_S:
            count = self._unlogged.pop(name)
            self._logged_at[name] = now
            log.warning("sampler %s failed (%d time(s) since the last report; retried every "
                        "interval): %s", name, count, exc or type(exc).__name__)
