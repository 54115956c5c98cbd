"""The NVIDIA GPU sampler: NVML readings into the SPEC §6 `gpu_*` families, on the loop.

NVML itself runs elsewhere (`nvml_worker`: one thread for calls, one for XID events); this
module owns the decisions and the store:

- start-up (`GpuSampler.open`): `enabled: false` never loads NVML; `auto` turns sampling off
  with one log line where the library or the driver is absent; `true` makes that a
  `StartupError`. NVML that loads but fails (a driver/library version mismatch) starts the
  sampler anyway, in the failed state, so it recovers without a restart.
- each tick: one job on the NVML thread with a deadline (`min(interval, 10 s)`). A field the
  GPU does not support is left out (absent, never 0); a lost GPU gets `gpu_up 0` and its
  value series are removed; a library-wide failure sets `gpu_up 0` for every known GPU and
  re-initialises NVML with exponential backoff (5 s doubling to 5 min, counted on the injected
  clock), also used while a GPU stays lost. A job that misses its deadline raises
  `NvmlTimeoutError` (the runner counts it) and sets `gpu_up 0`; while it is still stuck,
  samples queue nothing and raise again; when it returns, sampling carries on.
- XID events arrive from the watcher thread through `loop.call_soon_threadsafe`, so
  `gpu_xid_errors_total` is only ever touched on the loop.

Logging follows state changes (NVML failed / back, GPU lost / back, stuck / answering, a
field newly failing), never every tick. A known GPU stays known: if it vanishes from NVML its
`gpu_up` stays 0 until the daemon restarts, which is what a "GPU lost" alert needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from monitor.clock import Clock
from monitor.config_models import GpuConfig
from monitor.errors import InferwatchError, StartupError
from monitor.metrics.families import (
    GPU_ENERGY,
    GPU_INFO,
    GPU_MEMORY_TOTAL,
    GPU_MEMORY_USED,
    GPU_POWER,
    GPU_PROCESS_MEMORY,
    GPU_TEMPERATURE,
    GPU_UP,
    GPU_UTILIZATION,
    GPU_XID_ERRORS,
)
from monitor.metrics.store import LabelKey, MetricFamily, MetricStore
from monitor.samplers.nvml_worker import (
    DeviceReading,
    NvmlLibraryError,
    NvmlSession,
    NvmlThread,
    Snapshot,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class NvmlTimeoutError(InferwatchError):
    """An NVML call did not return within the sample's deadline (or still has not)."""


@dataclass(frozen=True, kw_only=True)
class GpuSamplerOptions:
    """Tuning that is not part of the config file (tests shorten these)."""

    deadline_s: float | None = None  # per sample; None: min(interval, 10 s)
    init_timeout_s: float = 30.0  # nvmlInit can take seconds per GPU without persistence mode
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    xid_wait_ms: int = 500  # nvmlEventSetWait_v2 timeout: how fast the XID thread stops

    def __post_init__(self) -> None:
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError("deadline_s must be positive")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("backoff_initial_s must be positive and at most backoff_max_s")


@dataclass(frozen=True, slots=True)
class _KnownGpu:
    index: int
    name: str


def _describe(index: int, uuid: str) -> str:
    return f"GPU {index} ({uuid})" if uuid else f"GPU {index}"


class GpuSampler:
    """Samples every GPU NVML reports. Create it with `await GpuSampler.open(...)`."""

    def __init__(
        self,
        config: GpuConfig,
        *,
        store: MetricStore,
        clock: Clock,
        options: GpuSamplerOptions | None = None,
    ) -> None:
        self._options = options = options or GpuSamplerOptions()
        self._interval_s = float(config.interval)
        self._deadline_s = options.deadline_s or min(self._interval_s, 10.0)
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._thread = NvmlThread()
        self._session = NvmlSession(self._xid_from_thread, xid_wait_ms=options.xid_wait_ms)

        self._up = store.register(GPU_UP)
        self._info = store.register(GPU_INFO)
        self._energy = store.register(GPU_ENERGY)
        self._xid = store.register(GPU_XID_ERRORS)
        self._process_memory = store.register(GPU_PROCESS_MEMORY)
        self._memory_used = store.register(GPU_MEMORY_USED)
        self._memory_total = store.register(GPU_MEMORY_TOTAL)
        self._utilization = store.register(GPU_UTILIZATION)
        self._temperature = store.register(GPU_TEMPERATURE)
        self._power = store.register(GPU_POWER)
        # Every family this sampler writes but the XID counter (persistent, kept when down).
        self._owned: tuple[MetricFamily, ...] = (
            self._up, self._info, self._energy, self._process_memory, self._memory_used,
            self._memory_total, self._utilization, self._temperature, self._power,
        )
        self._written: dict[str, set[LabelKey]] = {f.full_name: set() for f in self._owned}

        self._known: dict[str, _KnownGpu] = {}  # uuid -> where it was last seen
        self._driver_version = ""
        self._down: set[tuple[int, str]] = set()  # GPUs reported down, for logging changes
        self._library_error: int | None = None
        self._failed_attempts = 0
        self._retry_at: float | None = None
        self._backoff_s = options.backoff_initial_s
        self._pending: Future[Snapshot] | None = None
        self._pending_since = 0.0
        self._field_errors: set[tuple[str, str, int]] = set()
        self._unsupported_logged: set[tuple[str, str]] = set()
        self._skipped: tuple[tuple[int, str], ...] = ()
        self._xid_watched: tuple[int, ...] | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return "gpu"

    @property
    def interval_s(self) -> float:
        return self._interval_s

    @property
    def deadline_s(self) -> float:
        return self._deadline_s

    @classmethod
    async def open(
        cls,
        config: GpuConfig,
        *,
        store: MetricStore,
        clock: Clock,
        options: GpuSamplerOptions | None = None,
    ) -> GpuSampler | None:
        """The sampler, started; None when sampling is off (`false`, or `auto` without NVML).

        Raises `StartupError` when `enabled: true` and NVML or its driver is absent.
        """
        if config.enabled == "false":
            return None
        sampler = cls(config, store=store, clock=clock, options=options)
        job = sampler._thread.submit(functools.partial(sampler._session.collect, reinit=True))
        try:
            snapshot = await sampler._wait(job, sampler._options.init_timeout_s)
        except NvmlLibraryError as exc:
            if not exc.nvml_absent:
                sampler._library_failed(exc)
                return sampler
            sampler._thread.stop()
            if config.enabled == "true":
                raise StartupError(
                    f"gpu.enabled is true but NVML is not available: {exc.detail}"
                ) from exc
            log.info("GPU sampling off: NVML is not available (%s); gpu.enabled is auto",
                     exc.detail)
            return None
        except TimeoutError:
            sampler._went_stuck(job, sampler._options.init_timeout_s)
            return sampler
        except Exception as exc:  # not an NVML error: pynvml or the library misbehaving
            sampler._thread.stop()
            if config.enabled == "true":
                message = f"gpu.enabled is true but NVML failed to start: {exc!r}"
                raise StartupError(message) from exc
            log.warning("GPU sampling off: NVML failed to start: %r", exc)
            return None
        sampler._apply(snapshot)
        log.info("GPU sampling on: %d GPU(s), driver %s", len(snapshot.devices),
                 snapshot.driver_version)
        return sampler

    async def sample(self) -> None:
        if self._closed:
            return
        now = self._clock.monotonic()
        if not self._take_pending(now):
            return
        reinit = self._retry_at is not None and now >= self._retry_at
        if self._library_error is not None and not reinit:
            return  # waiting out the backoff; gpu_up is already 0
        timeout = self._options.init_timeout_s if reinit else self._deadline_s
        job = self._thread.submit(functools.partial(self._session.collect, reinit=reinit))
        try:
            snapshot = await self._wait(job, timeout)
        except NvmlLibraryError as exc:
            self._library_failed(exc)
            return
        except TimeoutError:
            self._went_stuck(job, timeout)
            raise NvmlTimeoutError(
                f"NVML did not answer within {timeout:g}s; gpu_up is 0 until it does"
            ) from None
        self._apply(snapshot)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pending is None or self._pending.done():
            job = self._thread.submit(self._session.close)
            try:
                await self._wait(job, self._deadline_s + 2 * self._options.xid_wait_ms / 1000)
            except TimeoutError:
                log.warning("NVML did not shut down within the deadline; leaving it")
            except NvmlLibraryError as exc:
                log.debug("NVML shutdown failed: %s", exc)
        self._thread.stop()

    # -- the NVML thread -----------------------------------------------------------------------

    async def _wait(self, job: Future[T], limit_s: float) -> T:
        waiter = asyncio.wrap_future(job)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), limit_s)
        except TimeoutError:
            # The late result is read from `job` by _take_pending; mark this one as seen.
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise

    def _went_stuck(self, job: Future[Snapshot], timeout: float) -> None:
        self._pending = job
        self._pending_since = self._clock.monotonic()
        log.warning("NVML did not answer within %gs: gpu_up 0 for every GPU; samples are "
                    "skipped until the call returns", timeout)
        self._all_down()

    def _take_pending(self, now: float) -> bool:
        """Settle a call that missed its deadline: raise while it runs, False if it failed."""
        job = self._pending
        if job is None:
            return True
        if not job.done():
            raise NvmlTimeoutError(
                f"an NVML call has not returned for {now - self._pending_since:.0f}s; "
                "sample skipped"
            )
        self._pending = None
        log.info("NVML answered again after %.0fs", now - self._pending_since)
        exc = job.exception()
        if isinstance(exc, NvmlLibraryError):
            self._library_failed(exc)
            return False
        return True  # the late readings are stale: read afresh now

    def _xid_from_thread(self, index: int, uuid: str, xid: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is stopping
            self._loop.call_soon_threadsafe(self._count_xid, index, uuid, xid)

    def _count_xid(self, index: int, uuid: str, xid: int) -> None:
        if self._closed:
            return
        log.warning("%s reported XID %d", _describe(index, uuid), xid)
        self._xid.inc(self._xid.key((str(index), uuid, str(xid))))

    # -- state -----------------------------------------------------------------------------

    def _library_failed(self, exc: NvmlLibraryError) -> None:
        now = self._clock.monotonic()
        self._failed_attempts += 1
        if exc.code != self._library_error:
            log.warning("NVML failed: %s; gpu_up 0 for every GPU, re-initialising with "
                        "backoff", exc)
        else:
            log.debug("NVML re-initialisation failed again: %s", exc)
        self._library_error = exc.code
        self._schedule_retry(now)
        self._all_down()

    def _schedule_retry(self, now: float) -> None:
        self._retry_at = now + self._backoff_s
        self._backoff_s = min(2 * self._backoff_s, self._options.backoff_max_s)

    def _apply(self, snapshot: Snapshot) -> None:
        now = self._clock.monotonic()
        if self._library_error is not None:
            log.info("NVML is back after %d failed attempt(s)", self._failed_attempts)
            self._library_error = None
        self._failed_attempts = 0
        self._driver_version = snapshot.driver_version
        self._log_inventory(snapshot)
        desired = self._desired(snapshot.devices)
        self._write(desired)
        if self._down:
            if snapshot.reinitialised or self._retry_at is None:
                self._schedule_retry(now)  # a lost GPU may need a fresh NVML to come back
        else:
            self._retry_at = None
            self._backoff_s = self._options.backoff_initial_s

    def _all_down(self) -> None:
        self._write(self._desired((), all_down=True))

    def _desired(
        self, readings: Iterable[DeviceReading], *, all_down: bool = False
    ) -> dict[str, dict[LabelKey, float]]:
        """Every series this sampler should hold now, by family name (XIDs aside)."""
        desired: dict[str, dict[LabelKey, float]] = {f.full_name: {} for f in self._owned}
        up = desired[self._up.full_name]
        seen: set[str] = set()
        down: set[tuple[int, str]] = set()
        for r in readings:
            seen.add(r.uuid)
            if r.uuid:
                self._known[r.uuid] = _KnownGpu(r.index, r.name or self._known_name(r.uuid))
            key = self._up.key((str(r.index), r.uuid))
            up[key] = 0.0 if r.lost else 1.0
            if r.lost:
                down.add((r.index, r.uuid))
                continue
            self._log_fields(r)
            for family, value in (
                (self._memory_used, r.memory_used_bytes),
                (self._memory_total, r.memory_total_bytes),
                (self._utilization, r.utilization_ratio),
                (self._temperature, r.temperature_celsius),
                (self._power, r.power_watts),
                (self._energy, r.energy_joules),
            ):
                if value is not None:
                    desired[family.full_name][key] = value
            processes = desired[self._process_memory.full_name]
            for p in r.processes:
                pkey = self._process_memory.key((str(r.index), r.uuid, str(p.pid), p.name))
                processes[pkey] = processes.get(pkey, 0.0) + p.memory_bytes
        for uuid, gpu in self._known.items():
            if uuid not in seen:
                up[self._up.key((str(gpu.index), uuid))] = 0.0
                down.add((gpu.index, uuid))
        info = desired[self._info.full_name]
        for uuid, gpu in self._known.items():
            info[self._info.key((str(gpu.index), uuid, gpu.name, self._driver_version))] = 1.0
        if not all_down:  # all down for a library failure or a hang is logged as that
            self._log_down(down)
        return desired

    def _known_name(self, uuid: str) -> str:
        gpu = self._known.get(uuid)
        return gpu.name if gpu is not None else ""

    def _write(self, desired: dict[str, dict[LabelKey, float]]) -> None:
        for family in self._owned:
            values = desired[family.full_name]
            written = self._written[family.full_name]
            for key in written - values.keys():
                family.remove(key)
            if family is self._energy:
                for key, value in values.items():
                    family.set_total(key, value)
            else:
                for key, value in values.items():
                    family.set(key, value)
            self._written[family.full_name] = set(values)

    # -- logging state changes -------------------------------------------------------------------

    def _log_down(self, down: set[tuple[int, str]]) -> None:
        for index, uuid in sorted(down - self._down):
            log.warning("%s is lost: gpu_up 0 and its series removed until it answers",
                        _describe(index, uuid))
        for index, uuid in sorted(self._down - down):
            log.info("%s answers again", _describe(index, uuid))
        self._down = down

    def _log_fields(self, r: DeviceReading) -> None:
        for field in r.unsupported:
            if (r.uuid, field) not in self._unsupported_logged:
                self._unsupported_logged.add((r.uuid, field))
                log.debug("%s does not support %s; that series is left out",
                          _describe(r.index, r.uuid), field)
        failing = {(r.uuid, e.field, e.code) for e in r.errors}
        for e in r.errors:
            if (r.uuid, e.field, e.code) not in self._field_errors:
                log.warning("%s: reading %s failed: %s (NVML error %d); that series is left "
                            "out", _describe(r.index, r.uuid), e.field, e.text, e.code)
        self._field_errors = {f for f in self._field_errors if f[0] != r.uuid} | failing

    def _log_inventory(self, snapshot: Snapshot) -> None:
        if snapshot.skipped != self._skipped:
            for index, why in snapshot.skipped:
                log.warning("GPU %d is not sampled: %s", index, why)
            self._skipped = snapshot.skipped
        if snapshot.xid_watched != self._xid_watched:
            unwatched = sorted({r.index for r in snapshot.devices if not r.lost}
                               - set(snapshot.xid_watched))
            if unwatched:
                log.info("XID events are not available for GPU(s) %s",
                         ", ".join(map(str, unwatched)))
            self._xid_watched = snapshot.xid_watched
