"""IngestService end to end: real files rotating under a RotatingFileHandler-style writer, a
real watcher (polling or inotify), a stop, rotations while stopped and a restart, with the
counters compared to the generator's truth. Every wait is bounded; nothing sleeps blindly."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import append, request_lines

from monitor.clock import FakeClock, SystemClock
from monitor.config import default_config
from monitor.demo.workload import RotatingLineWriter, WorkloadStats, generate_lines
from monitor.ingest import files as files_module
from monitor.ingest.checkpoint import load_file_checkpoints, restore_counters
from monitor.ingest.files import TrackedFile
from monitor.ingest.service import STOP_DRAIN_S, IngestService
from monitor.ingest.tailer import RotationAwareTailer
from monitor.ingest.watch import Changes, PollingWatcher
from monitor.metrics import families as fam
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


# -- one source's trouble, reloads while the state file refuses writes, stopping --------------


def append_lines(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    append(path, *lines)


def _deny_writes(action: int, *args: object) -> int:
    """A sqlite3 authorizer that makes every write fail, as a full disk would."""
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE,
                                             sqlite3.SQLITE_DELETE) else sqlite3.SQLITE_OK


class StepService:
    """IngestService on a FakeClock and a ScriptedWatcher: one cycle per `step()`, so
    checkpoints happen only at catch-up, at `checkpoint_lines` and at the stop."""

    def __init__(self, root: Path, sources: list[dict[str, Any]], **ingest: Any) -> None:
        self.config = default_config(
            sources=sources,
            ingest={"checkpoint_interval": "1h", "rescan_interval": "1h", **ingest})
        self.state_dir = root / "state"
        self.clock = FakeClock()

    def start(self, watcher: Any = None) -> None:
        self.state = StateStore(self.state_dir)
        self.store = MetricStore()
        restore_counters(self.state, self.store)
        self.watcher = watcher or ScriptedWatcher()
        self.service = IngestService(
            sources=self.config.sources, ingest=self.config.ingest, metrics=self.config.metrics,
            state=self.state, store=self.store, clock=self.clock,
            watcher_factory=lambda _: self.watcher,
        )
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.service.run(self.stop_event))

    async def cycle_done(self, waits: int) -> None:
        """Until the loop waits for the `waits`-th time (or ends: a crash is not hidden)."""
        await until(lambda: self.task.done() or self.watcher.waits >= waits, f"wait {waits}")
        if self.task.done():
            self.task.result()  # raises what the loop raised
            pytest.fail("the ingest loop ended by itself")

    async def step(self) -> None:
        """One more cycle, with a full rescan (as polling or a CREATE would ask)."""
        waits = self.watcher.waits
        self.watcher.queue.put_nowait(Changes(rescan=True))
        await self.cycle_done(waits + 1)

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, WAIT_S)
        self.state.close()

    def requests(self, **labels: str) -> float:
        return counter_total(self.store, "requests", **labels)

    def persisted_requests(self) -> float:
        state = StateStore(self.state_dir)
        try:
            store = MetricStore()
            restore_counters(state, store)
            store.register(fam.REQUESTS)  # restored series show once their family registers
            return counter_total(store, "requests")
        finally:
            state.close()


@pytest.mark.parametrize("reload", ["change", "remove then add back"])
async def test_reload_while_the_checkpoint_fails_does_not_double_count(
    tmp_path: Path, reload: str
) -> None:
    live = tmp_path / "logs" / "app.log"
    source = {"name": "app", "paths": [str(live)], "schema": "inference"}
    append_lines(live, request_lines("A", 5))
    svc = StepService(tmp_path, [source])
    svc.start()
    await svc.cycle_done(1)
    assert svc.service.is_ready()
    assert svc.requests() == 5

    svc.state.connection.set_authorizer(_deny_writes)  # every commit fails from now on
    append_lines(live, request_lines("A", 3, start=5))
    await svc.step()  # read, not committed
    if reload == "change":
        changed = default_config(sources=[{**source, "labels": {"team": "infer"}}]).sources
        svc.service.reconfigure(changed)
        await svc.step()  # the source's last lines cannot be committed: it is not closed
        svc.state.connection.set_authorizer(None)
        await svc.step()
    else:
        svc.service.reconfigure([])
        await svc.step()
        svc.state.connection.set_authorizer(None)
        await svc.step()
        svc.service.reconfigure(svc.config.sources)
        await svc.step()
    await svc.step()
    assert svc.service.is_ready()
    assert svc.requests() == 8
    await svc.stop()
    assert svc.service.final_commit_ok
    assert svc.persisted_requests() == 8


async def test_an_io_error_on_one_source_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = tmp_path / "bad" / "a.log", tmp_path / "good" / "b.log"
    append_lines(bad, request_lines("BAD", 4))
    append_lines(good, request_lines("GOOD", 6))
    failing = {str(bad)}
    real_read = TrackedFile.read_lines

    def read_lines(self: TrackedFile, max_line_bytes: int) -> Any:
        if self.path in failing:
            raise OSError(errno.EIO, "Input/output error")
        return real_read(self, max_line_bytes)

    monkeypatch.setattr(TrackedFile, "read_lines", read_lines)
    caplog.set_level(logging.WARNING, logger="monitor.ingest.service")
    svc = StepService(tmp_path, [
        {"name": "bad", "paths": [str(bad)], "schema": "inference"},  # read first
        {"name": "good", "paths": [str(good)], "schema": "inference"},
    ])
    svc.start()
    await svc.cycle_done(1)
    await svc.step()
    assert svc.requests(source="good") == 6
    assert svc.requests(source="bad") == 0
    assert counter_total(svc.store, "log_read_errors", source="bad") == 2
    assert counter_total(svc.store, "log_read_errors", source="good") == 0
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once per cycle
    assert "Input/output error" in warnings[0]

    failing.clear()  # the disk recovers
    await svc.step()
    assert svc.requests(source="bad") == 4
    assert svc.service.is_ready()
    await svc.stop()
    assert svc.persisted_requests() == 10


class RecordingPollingWatcher(PollingWatcher):
    """What make_watcher returns where inotify cannot start; records each wait's limit."""

    def __init__(self) -> None:
        self.max_waits: list[float] = []

    async def wait(self, max_wait: float) -> Changes:
        self.max_waits.append(max_wait)
        await asyncio.sleep(0)
        return Changes(rescan=True)


async def test_polling_fallback_under_inotify_true_waits_poll_interval(tmp_path: Path) -> None:
    live = tmp_path / "app.log"
    append_lines(live, request_lines("A", 1))
    svc = StepService(tmp_path, [{"name": "app", "paths": [str(live)], "schema": "inference"}],
                      inotify=True, poll_interval="20ms", rescan_interval="5s")
    watcher = RecordingPollingWatcher()
    svc.start(watcher)
    await until(lambda: len(watcher.max_waits) >= 2, "two waits")
    await svc.stop()
    assert set(watcher.max_waits) == {0.02}
    assert svc.service.max_wait == 0.02  # what the daemon's watchdog allows for


async def test_stop_during_a_large_backlog_reads_for_stop_drain_s_then_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = tmp_path / "app.log"
    lines = request_lines("A", 400)
    append_lines(live, lines)
    monkeypatch.setattr(files_module, "READ_CHUNK_BYTES", 1)  # chunks of max_line_bytes + 1
    svc = StepService(tmp_path, [{"name": "app", "paths": [str(live)], "schema": "inference",
                                  "max_line_bytes": 1024}])
    chunks: list[int] = []
    real_read = RotationAwareTailer.read

    def read(self: RotationAwareTailer, tracked: TrackedFile) -> Any:
        chunk = real_read(self, tracked)
        if chunk is not None:
            chunks.append(len(chunk.lines))
            svc.clock.advance(1.0)  # each chunk takes a second
            if len(chunks) == 3:
                svc.stop_event.set()  # SIGTERM in the middle of the catch-up
        return chunk

    monkeypatch.setattr(RotationAwareTailer, "read", read)
    svc.start()
    await asyncio.wait_for(svc.task, WAIT_S)
    svc.state.close()
    assert svc.service.final_commit_ok
    # The chunk being read when the stop came, then STOP_DRAIN_S (5 s) of reading.
    assert len(chunks) == 3 + int(STOP_DRAIN_S) + 1
    read_lines = sum(chunks)
    assert 0 < read_lines < len(lines)
    assert svc.requests() == read_lines  # everything read was committed ...
    assert svc.persisted_requests() == read_lines
    state = StateStore(svc.state_dir)
    (saved,) = load_file_checkpoints(state, "app")
    state.close()
    assert saved.offset == len(b"".join(lines[:read_lines]))  # ... with its offset

    monkeypatch.setattr(RotationAwareTailer, "read", real_read)
    svc.start()  # ... and the rest is read at the next start, once
    await svc.cycle_done(1)
    assert svc.service.is_ready()
    assert svc.requests() == len(lines)
    await svc.stop()


async def test_a_failed_final_commit_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = tmp_path / "app.log"
    append_lines(live, request_lines("A", 2))
    svc = StepService(tmp_path, [{"name": "app", "paths": [str(live)], "schema": "inference"}])
    svc.start()
    await svc.cycle_done(1)
    svc.state.connection.set_authorizer(_deny_writes)
    append_lines(live, request_lines("A", 3, start=2))
    await svc.step()
    caplog.set_level(logging.ERROR, logger="monitor.ingest.service")
    await svc.stop()
    assert svc.service.final_commit_ok is False
    assert any("stopped without committing the last 3 line(s)" in r.getMessage()
               for r in caplog.records)
    assert svc.persisted_requests() == 2


async def test_exclude_paths_without_a_slash_match_base_names_in_any_directory(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    append_lines(logs / "app.log", request_lines("A", 3))
    append_lines(logs / "app.log.1.gz", request_lines("GZ", 5))  # stands for a compressed one
    svc = StepService(tmp_path, [{"name": "app", "paths": [str(logs / "app.log*")],
                                  "schema": "inference", "exclude_paths": ["*.gz"]}])
    svc.start()
    await svc.cycle_done(1)
    assert svc.requests() == 3
    await svc.stop()


async def test_a_busy_source_does_not_starve_the_scan_for_new_directories(
        tmp_path: Path) -> None:
    # Source a is written to all the time, so the watcher always has a change to report and
    # never times out; source b's directory appears later and must still be found.
    busy, late = tmp_path / "a" / "a.log", tmp_path / "b" / "b.log"
    append_lines(busy, request_lines("A", 1))
    config = default_config(
        sources=[{"name": "a", "paths": [str(busy)], "schema": "inference"},
                 {"name": "b", "paths": [str(late)], "schema": "inference"}],
        ingest={"checkpoint_interval": "50ms", "rescan_interval": "250ms", "inotify": True})
    state = StateStore(tmp_path / "state")
    store = MetricStore()
    service = IngestService(sources=config.sources, ingest=config.ingest,
                            metrics=config.metrics, state=state, store=store,
                            clock=SystemClock())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    stop_writing = asyncio.Event()

    async def keep_writing() -> None:
        i = 1
        while not stop_writing.is_set():
            append_lines(busy, request_lines("A", 1, start=i))
            i += 1
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(keep_writing())
    try:
        await until(lambda: counter_total(store, "requests", source="a") >= 1, "source a")
        append_lines(late, request_lines("B", 3))
        await until(lambda: counter_total(store, "requests", source="b") == 3,
                    "the late directory's lines while source a stays busy")
    finally:
        stop_writing.set()
        await writer
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
        state.close()


async def test_a_busy_state_file_makes_the_checkpoint_read_on_not_fail(tmp_path: Path) -> None:
    """While another connection (the ledger writer) holds the write lock, a checkpoint due by
    checkpoint_lines is put off, not failed: reading goes on, and the next attempt after the
    lock is free commits everything read so far, once."""
    live = tmp_path / "logs" / "app.log"
    append_lines(live, request_lines("A", 12, pad=300_000))  # ~3 lines per 1 MiB read
    svc = StepService(tmp_path, [{"name": "app", "paths": [str(live)],
                                  "schema": "inference"}], checkpoint_lines=2)
    svc.state_dir.mkdir(parents=True)
    StateStore(svc.state_dir).close()
    writer = sqlite3.connect(svc.state_dir / "inferwatch.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    svc.start()
    attempts: list[tuple[bool, bool | None]] = []
    commit = svc.service._writer.commit

    def observed(work: Any, *, wait: bool = True) -> bool | None:
        result = commit(work, wait=wait)
        attempts.append((wait, result))
        if result is None and sum(r is None for _, r in attempts) == 2:
            writer.execute("COMMIT")  # the writer's transaction ends
        return result

    svc.service._writer.commit = observed  # type: ignore[method-assign]
    await svc.cycle_done(1)
    writer.close()
    assert attempts[:2] == [(False, None), (False, None)]
    assert attempts[2][1] is True
    assert counter_total(svc.store, "checkpoint_failures") == 0
    assert svc.requests() == 12
    await svc.stop()
    assert svc.persisted_requests() == 12
