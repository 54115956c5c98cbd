"""Watched processes (SPEC §4 `processes`): found by a regex over the command line, then
followed by PID.

Owns `ProcessSampler`, and `ProcessTable`, the few calls into the OS process list it needs,
with `PsutilProcessTable` (the real one) and `FakeProcessTable` (its twin for tests).

Cost. Reading every process's command line (a full scan) is the expensive part, so the
sampler scans only when it has to: when a watch has no known process (not found yet, or
gone) or one of a watch's known processes ended; and then at most once per
`rescan_interval_s` (30 s), however long something stays missing. Otherwise it reads only
the PIDs it knows. So a process that starts while its watch is up (a server's new worker) is
seen at the next scan only, and a process that comes back is seen within
`rescan_interval_s`.

Identity and restarts. A process is its PID and its start time, so a reused PID is a new
process. A watch's *main* process is its oldest match (earliest start, then lowest PID). A
restart is counted when the main process is one the watch did not have at the previous
sample, once the watch has been up in this daemon's life: a new PID, a reused PID, or a
process that went away and came back (counted when it is back; `process_up` is 0 while it is
gone). The first discovery is not a restart; nor is a worker replaced under a running main
process, nor a main process ending while its workers run on (the oldest worker, already
known, becomes the main one).

Values. Memory, CPU time and open fds are summed over a watch's processes. A value the OS
refuses for any of them (AccessDenied, e.g. another user's fd directory) is left out, its
series removed, rather than under-counted; the others are still reported. While a watch has
no process, `process_up` is 0 and its memory, CPU and fd series are removed. The CPU counter
is the live processes' own counters added up, so it drops when one of them ends; `rate()`
takes that as a counter reset, as it does for a restarted process's own counter.

Blocking. A /proc read can hang on a process stuck in the kernel, so reads run in one worker
thread of the sampler's own, with a deadline of one interval; while such a read is overdue,
later samples fail at once instead of stacking up threads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import psutil

from monitor.clock import Clock, SystemClock
from monitor.config_models import ProcessConfig
from monitor.goregexp import Regexp
from monitor.metrics.families import (
    PROCESS_CPU,
    PROCESS_OPEN_FDS,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_RESTARTS,
    PROCESS_UP,
)
from monitor.metrics.store import LabelKey, MetricStore

DEFAULT_RESCAN_INTERVAL_S = 30.0

Identity = tuple[int, float]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ProcessEntry:
    """A process found by a scan. `create_time` (epoch seconds, as the table first saw this
    process) and `pid` together are its identity."""

    pid: int
    create_time: float
    cmdline: str  # the arguments joined with spaces

    @property
    def identity(self) -> Identity:
        return (self.pid, self.create_time)


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One process's readings; None where the OS refused that one (AccessDenied)."""

    rss_bytes: int | None
    cpu_seconds: float | None
    open_fds: int | None


class ProcessTable(Protocol):
    """The OS process list, as far as the sampler needs it."""

    def scan(self, wanted: Callable[[str], bool]) -> list[ProcessEntry]:
        """One pass over all processes: those whose command line `wanted` accepts.
        Processes without a command line (kernel threads, zombies) are skipped."""
        ...

    def read(self, entry: ProcessEntry) -> ProcessUsage | None:
        """The process's usage now; None when it has ended, is a zombie, or its PID belongs
        to another process."""
        ...


def _unless_denied(read: Callable[[], _T]) -> _T | None:
    try:
        return read()
    except psutil.AccessDenied:
        return None


class PsutilProcessTable:
    """The real process list, through psutil (a /proc reader on Linux).

    A scan is one `psutil.process_iter` pass reading each command line. psutil caches its
    Process objects between passes, and a cached object can outlive its process when the
    PID is reused; so each match is checked against a fresh look at its PID, with psutil's
    own identity test (PID and start time since boot, which a wall-clock step does not move).
    This daemon's own process is never a match.
    """

    def __init__(self, *, own_pid: int | None = None) -> None:
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._handles: dict[int, psutil.Process] = {}  # matched PIDs of the latest scan

    def scan(self, wanted: Callable[[str], bool]) -> list[ProcessEntry]:
        found: list[ProcessEntry] = []
        handles: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            args = proc.info.get("cmdline")
            if not args or proc.pid == self._own_pid:
                continue
            cmdline = " ".join(args)
            if not wanted(cmdline):
                continue
            handle = self._current(proc)
            if handle is None:
                continue
            try:
                create_time = handle.create_time()
            except psutil.NoSuchProcess:
                continue
            handles[proc.pid] = handle
            found.append(ProcessEntry(proc.pid, create_time, cmdline))
        self._handles = handles
        return found

    def _current(self, proc: psutil.Process) -> psutil.Process | None:
        """The Process object for whoever holds `proc.pid` now, preferring the one handed
        out before (its create_time, hence the entry's identity, stays the same)."""
        try:
            now = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return None
        for candidate in (self._handles.get(proc.pid), proc):
            if candidate is not None and candidate == now:
                return candidate
        return now

    def read(self, entry: ProcessEntry) -> ProcessUsage | None:
        handle = self._handles.get(entry.pid)
        if handle is None or handle.create_time() != entry.create_time:
            return None
        try:
            if not handle.is_running():  # also false when the PID was reused
                del self._handles[entry.pid]
                return None
            with handle.oneshot():
                if handle.status() == psutil.STATUS_ZOMBIE:
                    del self._handles[entry.pid]
                    return None
                return ProcessUsage(
                    rss_bytes=_unless_denied(lambda: handle.memory_info().rss),
                    cpu_seconds=_unless_denied(lambda: _cpu_seconds(handle)),
                    open_fds=_unless_denied(handle.num_fds),
                )
        except psutil.NoSuchProcess:  # ZombieProcess included
            self._handles.pop(entry.pid, None)
            return None


def _cpu_seconds(handle: psutil.Process) -> float:
    times = handle.cpu_times()
    return times.user + times.system


@dataclass
class FakeProcess:
    """A process of `FakeProcessTable`; a field named in `denied` raises AccessDenied."""

    pid: int
    cmdline: str
    create_time: float = 1_767_225_600.0
    rss_bytes: int = 100 << 20
    cpu_seconds: float = 1.0
    open_fds: int = 10
    zombie: bool = False
    denied: frozenset[str] = frozenset()


@dataclass
class FakeProcessTable:
    """An in-memory process list that counts its scans and reads."""

    processes: dict[int, FakeProcess] = field(default_factory=dict)
    scans: int = 0
    reads: int = 0

    def add(self, process: FakeProcess) -> FakeProcess:
        """Start `process`, replacing whatever held its PID (that is how PID reuse looks)."""
        self.processes[process.pid] = process
        return process

    def remove(self, pid: int) -> None:
        self.processes.pop(pid, None)

    def scan(self, wanted: Callable[[str], bool]) -> list[ProcessEntry]:
        self.scans += 1
        return [ProcessEntry(p.pid, p.create_time, p.cmdline)
                for p in sorted(self.processes.values(), key=lambda p: p.pid)
                if p.cmdline and not p.zombie and wanted(p.cmdline)]

    def read(self, entry: ProcessEntry) -> ProcessUsage | None:
        self.reads += 1
        process = self.processes.get(entry.pid)
        if process is None or process.zombie or process.create_time != entry.create_time:
            return None
        return ProcessUsage(
            rss_bytes=None if "rss_bytes" in process.denied else process.rss_bytes,
            cpu_seconds=None if "cpu_seconds" in process.denied else process.cpu_seconds,
            open_fds=None if "open_fds" in process.denied else process.open_fds,
        )


Found = list[tuple[ProcessEntry, ProcessUsage]]


@dataclass(frozen=True)
class _ReadPass:
    """What one pass in the worker thread found: per watch, its live processes."""

    found: list[Found]
    scanned: bool


@dataclass
class _Watch:
    config: ProcessConfig
    key: LabelKey
    processes: tuple[ProcessEntry, ...] = ()  # as of the last sample, main process first
    ever_up: bool = False


class ProcessSampler:
    """`process_up`, memory, CPU, open fds and restarts of each configured process."""

    name = "processes"

    def __init__(self, configs: Sequence[ProcessConfig], *, store: MetricStore,
                 interval_s: float, table: ProcessTable | None = None,
                 clock: Clock | None = None,
                 rescan_interval_s: float = DEFAULT_RESCAN_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._table: ProcessTable = table if table is not None else PsutilProcessTable()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.rescan_interval_s = rescan_interval_s
        self._up = store.register(PROCESS_UP)
        self._memory = store.register(PROCESS_RESIDENT_MEMORY)
        self._cpu = store.register(PROCESS_CPU)
        self._fds = store.register(PROCESS_OPEN_FDS)
        self._restarts = store.register(PROCESS_RESTARTS)
        self._watches = [_Watch(config, self._up.key([config.name])) for config in configs]
        self._patterns: tuple[Regexp, ...] = tuple(c.pattern for c in configs)
        self._last_scan: float | None = None
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="inferwatch-processes")
        self._running: Future[_ReadPass] | None = None
        self._started = False

    @property
    def interval_s(self) -> float:
        return self._interval_s

    async def sample(self) -> None:
        if self._running is not None and not self._running.done():
            raise TimeoutError("the previous read of the process table has not returned yet")
        if not self._started:
            for watch in self._watches:
                self._restarts.counter(watch.key)  # born at 0, so increase() sees the first
            self._started = True
        now = self._clock.monotonic()
        may_scan = self._last_scan is None or now - self._last_scan >= self.rescan_interval_s
        known = [watch.processes for watch in self._watches]
        self._running = self._executor.submit(self._read_pass, known, may_scan)
        async with asyncio.timeout(self._interval_s):
            result = await asyncio.shield(asyncio.wrap_future(self._running))
        if result.scanned:
            self._last_scan = now
        for watch, found in zip(self._watches, result.found, strict=True):
            self._update(watch, found)

    def _read_pass(self, known: list[tuple[ProcessEntry, ...]], may_scan: bool) -> _ReadPass:
        """Runs in the worker thread; touches the table only, never the store."""
        usages: dict[Identity, ProcessUsage | None] = {}

        def usage(entry: ProcessEntry) -> ProcessUsage | None:
            if entry.identity not in usages:
                usages[entry.identity] = self._table.read(entry)
            return usages[entry.identity]

        found: list[Found] = []
        need_scan = False
        for entries in known:
            alive = [(entry, u) for entry in entries if (u := usage(entry)) is not None]
            need_scan = need_scan or not alive or len(alive) < len(entries)
            found.append(alive)
        if not (need_scan and may_scan):
            return _ReadPass(found, scanned=False)
        patterns = self._patterns
        matches = self._table.scan(lambda cmdline: any(p.search(cmdline) for p in patterns))
        found = [[(entry, u) for entry in matches
                  if pattern.search(entry.cmdline) and (u := usage(entry)) is not None]
                 for pattern in patterns]
        return _ReadPass(found, scanned=True)

    def _update(self, watch: _Watch, found: Found) -> None:
        found = sorted(found, key=lambda item: (item[0].create_time, item[0].pid))
        before = {entry.identity for entry in watch.processes}
        watch.processes = tuple(entry for entry, _ in found)
        key = watch.key
        if not found:
            self._up.set(key, 0)
            for family in (self._memory, self._cpu, self._fds):
                family.remove(key)
            return
        if watch.ever_up and found[0][0].identity not in before:
            self._restarts.inc(key)
        watch.ever_up = True
        self._up.set(key, 1)
        usages = [u for _, u in found]
        _set_or_remove(self._memory.set, self._memory.remove, key,
                       _sum_all(u.rss_bytes for u in usages))
        _set_or_remove(self._cpu.set_total, self._cpu.remove, key,
                       _sum_all(u.cpu_seconds for u in usages))
        _set_or_remove(self._fds.set, self._fds.remove, key,
                       _sum_all(u.open_fds for u in usages))

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _sum_all(values: Iterable[float | None]) -> float | None:
    """The sum, or None when any value is missing (a partial sum would understate)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _set_or_remove(setter: Callable[[LabelKey, float], None],
                   remover: Callable[[LabelKey], None], key: LabelKey,
                   value: float | None) -> None:
    if value is None:
        remover(key)
    else:
        setter(key, value)
