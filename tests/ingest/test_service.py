"""IngestService end to end: real files rotating under a RotatingFileHandler-style writer, a
real watcher (polling or inotify), a stop, rotations while stopped and a restart, with the
counters compared to the generator's truth. Every wait is bounded; nothing sleeps blindly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.clock import SystemClock
from monitor.config import default_config
from monitor.demo.workload import RotatingLineWriter, WorkloadStats, generate_lines
from monitor.ingest.checkpoint import restore_counters
from monitor.ingest.service import IngestService
from monitor.ingest.watch import Changes
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.storage import StateStore

WAIT_S = 10.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), WAIT_S)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def counter_total(store: MetricStore, family: str, **labels: str) -> float:
    found = store.family(f"inferwatch_{family}")
    if found is None:
        return 0.0
    return sum(s.value for k, s in found.series.items()
               if isinstance(s, CounterSeries) and all((n, v) in k for n, v in labels.items()))


class Daemon:
    """The ingest part of the daemon: state file, restored counters, the service task."""

    def __init__(self, root: Path, pattern: str, *, inotify: bool,
                 watcher_factory: Callable[[bool], Any] | None = None) -> None:
        self.config = default_config(
            sources=[{"name": "inference", "paths": [pattern], "schema": "inference"}],
            ingest={"poll_interval": "20ms", "checkpoint_interval": "50ms",
                    "rescan_interval": "250ms" if inotify else "1s", "inotify": inotify},
        )
        self.state_dir = root / "state"
        self.watcher_factory = watcher_factory
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.state = StateStore(self.state_dir)
        self.store = MetricStore()
        restore_counters(self.state, self.store)
        options: dict[str, Any] = {}
        if self.watcher_factory is not None:
            options["watcher_factory"] = self.watcher_factory
        self.service = IngestService(
            sources=self.config.sources, ingest=self.config.ingest, metrics=self.config.metrics,
            state=self.state, store=self.store, clock=SystemClock(), **options,
        )
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.service.run(self.stop_event))

    async def stop(self) -> None:
        assert self.task is not None
        self.stop_event.set()
        await asyncio.wait_for(self.task, WAIT_S)
        self.state.close()

    def requests(self) -> float:
        return counter_total(self.store, "requests")


def traffic(seed: int) -> Iterator[Any]:
    return generate_lines(100_000, "inference", seed=seed, error_rate=0.2)


def write(writer: RotatingLineWriter, lines: Iterator[Any], n: int, stats: WorkloadStats) -> None:
    for _ in range(n):
        line = next(lines)
        writer.write(line.data)
        stats.record(line)


@pytest.mark.parametrize("inotify", [False, True], ids=["polling", "inotify"])
async def test_rotation_stop_rotation_while_stopped_and_restart_count_exactly_once(
    tmp_path: Path, inotify: bool
) -> None:
    live = tmp_path / "logs" / "deepseek-r1.log"
    # Enough backups that no generation is deleted: deletion while stopped frees inodes that
    # new files reuse, which test_tailer covers on its own (a known bug there).
    writer = RotatingLineWriter(live, max_bytes=64 * 1024, backup_count=30)
    stats = WorkloadStats()
    lines = traffic(seed=11)
    daemon = Daemon(tmp_path, str(tmp_path / "logs" / "*.log"), inotify=inotify)
    daemon.start()
    try:
        await until(daemon.service.is_ready, "readiness")
        # Rotated names are outside the glob: a generation is found through the rotation of
        # one the service was reading, so the first file must be seen before the bursts.
        write(writer, lines, 1, stats)
        await until(lambda: daemon.requests() == 1, "the first line")
        for batch in range(1, 4):  # ~165 KB a burst: two or three rollovers between polls
            write(writer, lines, 300, stats)
            await until(lambda b=batch: daemon.requests() == 1 + 300 * b, f"burst {batch}")
    finally:
        await daemon.stop()
    assert writer.rotations >= 6

    write(writer, lines, 250, stats)  # while stopped: rollovers included
    daemon.start()
    try:
        await until(lambda: daemon.requests() == 1151, "catch-up after the restart")
    finally:
        await daemon.stop()
    writer.close()

    assert stats.lines["inference"] == 1151
    for (_, model, status), n in stats.requests.items():
        assert counter_total(daemon.store, "requests", model=model, status=status) == n
    for (_, error_class), n in stats.errors.items():
        assert counter_total(daemon.store, "request_errors", **{"class": error_class}) == n
    for (_, model), n in stats.output_tokens.items():
        assert counter_total(daemon.store, "output_tokens", model=model) == n
    assert counter_total(daemon.store, "log_lines", result="parsed") == 1151
    assert counter_total(daemon.store, "log_lines", result="malformed") == 0


async def test_restart_without_new_lines_counts_nothing_more(tmp_path: Path) -> None:
    live = tmp_path / "app.log"
    stats = WorkloadStats()
    with RotatingLineWriter(live, max_bytes=0, backup_count=0) as writer:
        write(writer, traffic(seed=5), 100, stats)
    daemon = Daemon(tmp_path, str(live), inotify=False)
    for _ in range(3):
        daemon.start()
        try:
            await until(daemon.service.is_ready, "readiness")
            await until(lambda: daemon.requests() == 100, "the 100 requests")
        finally:
            await daemon.stop()
        assert daemon.requests() == 100


class ScriptedWatcher:
    """A watcher that reports exactly what the test puts in its queue, and nothing else."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Changes] = asyncio.Queue()
        self.waits = 0

    def watch(self, directories: set[str]) -> None:
        del directories

    async def wait(self, max_wait: float) -> Changes:
        del max_wait
        self.waits += 1
        return await self.queue.get()

    def close(self) -> None:
        return None


async def test_stop_reads_what_was_written_before_it(tmp_path: Path) -> None:
    live = tmp_path / "app.log"
    stats = WorkloadStats()
    lines = traffic(seed=9)
    writer = RotatingLineWriter(live, max_bytes=0, backup_count=0)
    write(writer, lines, 1, stats)
    watcher = ScriptedWatcher()
    daemon = Daemon(tmp_path, str(live), inotify=False, watcher_factory=lambda _: watcher)
    daemon.start()
    await until(lambda: watcher.waits == 1, "the first wait")
    watcher.queue.put_nowait(Changes())  # a wake-up naming no file
    await until(lambda: watcher.waits == 2, "the second wait")
    write(writer, lines, 1, stats)  # its notification has not been delivered yet
    writer.close()
    await daemon.stop()
    assert daemon.requests() == 2
