"""Exactly-once ingestion under SIGKILL: counters equal what was written, after any crash.

a. The real `inferwatch run`, SIGKILLed at seeded random moments (during start-up, catch-up
   and steady tailing) while a writer appends both schemas and rotates the files like
   RotatingFileHandler; after the last restart the exported counters equal the truth.
b. Fault injection at the exact windows that matter, in forked children running the real
   IngestService on the shared state file: killed right after the pipelines' `apply()` (the
   metric store updated, nothing committed), inside the transaction before COMMIT, and right
   after COMMIT (before the tailers learn it). A last clean child finishes; the persisted
   counters equal the truth: never double-counted, never lost.
c. A damaged state file (empty, NUL-filled, truncated): the daemon refuses to start with one
   clear line and reads nothing; once the file is moved aside as the message says, it starts
   fresh.
d. logrotate's copytruncate while the daemon is down (killed or stopped): the lines after
   the saved offset are read from the copy, once.

Bounded: seeded randomness, every wait a poll with a deadline, every process killed in
teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.clock import SystemClock
from monitor.config import default_config
from monitor.demo.lines import GeneratedLine
from monitor.demo.workload import RotatingLineWriter, generate_lines
from monitor.ingest.checkpoint import restore_counters
from monitor.ingest.service import IngestService
from monitor.metrics import families as fam
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

pytestmark = pytest.mark.integration

SOURCES = {"inference": ("inference", "inference/deepseek-r1.log"),
           "api": ("api_usage", "api/usage.jsonl")}
POLL_S = 0.02
# Enough backups that no file is ever deleted (a deleted unread file is a legitimate loss);
# RotatingFileHandler renames every backup at each rotation, so not more than needed.
BACKUPS = 1000


def source_configs(logs: Path) -> list[dict[str, Any]]:
    return [{"name": name, "paths": [str(logs / relative)], "schema": schema}
            for name, (schema, relative) in SOURCES.items()]


class Traffic:
    """Endless seeded lines per source, written through rotating writers, and the truth."""

    def __init__(self, logs: Path, truth: Any, seed: int, *, max_bytes: int) -> None:
        self.truth = truth
        self.rng = random.Random(seed)
        self.writers = {name: RotatingLineWriter(logs / relative, max_bytes=max_bytes,
                                                 backup_count=BACKUPS)
                        for name, (_, relative) in SOURCES.items()}
        self._lines = {name: self._endless(schema, seed + i)
                       for i, (name, (schema, _)) in enumerate(SOURCES.items())}
        self.written = 0
        self.charged_ids: list[str] = []  # the request ids of the priced source's lines
        self._lock = threading.Lock()  # the writer thread and the test thread both write

    @staticmethod
    def _endless(schema: str, seed: int) -> Iterator[GeneratedLine]:
        batch = 0
        while True:
            yield from generate_lines(500, schema, seed * 1000 + batch,  # type: ignore[arg-type]
                                      error_rate=0.1)
            batch += 1

    def burst(self, source: str, n: int) -> None:
        writer, lines = self.writers[source], self._lines[source]
        with self._lock:
            for _ in range(n):
                line = next(lines)
                writer.write(line.data)
                self.truth.add(source, line)
                self.written += 1
                if line.schema == "api_usage":
                    self.charged_ids.append(orjson.loads(line.data)["request_id"])

    def random_bursts(self, max_lines: int) -> None:
        for source in SOURCES:
            self.burst(source, self.rng.randint(0, max_lines))

    @property
    def rotations(self) -> int:
        rotations = [w.rotations for w in self.writers.values()]
        assert max(rotations) < BACKUPS, "a backup was deleted: the truth no longer holds"
        return sum(rotations)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def persisted_samples(state_dir: Path, parse: Callable[[str], Any]) -> Any:
    """The counters in the state file, as a freshly started daemon would export them."""
    state = StateStore(state_dir)
    try:
        store = MetricStore()
        restore_counters(state, store)
        for spec in (*fam.REQUEST_FAMILIES, fam.LOG_LINES):
            store.register(spec)
        body, _ = Exposition(store).render(None)
        return parse(body.decode())
    finally:
        state.close()


# --- a. the real daemon, SIGKILLed at random ------------------------------------------------


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., Any], truth: Any,
        compare_samples: Callable[[Any, Any], str]) -> None:
    rng = random.Random(20260118)
    logs = tmp_path / "logs"
    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": {**fast_ingest, "checkpoint_lines": 150},
        "host": {"enabled": False},
        "gpu": {"enabled": False},
        "sources": source_configs(logs),
    })
    traffic = Traffic(logs, truth, seed=7, max_bytes=24 * 1024)
    # The first start must see the files before they rotate: rotated backups that exist
    # before a source's first commit are outside its glob, and rightly never read.
    traffic.random_bursts(20)
    first = spawn_daemon(config, port, log_name="daemon-first.log")
    first.wait_ready()
    first.kill()
    stop_writing = threading.Event()
    writer_errors: list[BaseException] = []

    def write() -> None:
        writer_rng = random.Random(99)
        try:
            while not stop_writing.is_set():
                traffic.burst(writer_rng.choice(list(SOURCES)), writer_rng.randint(1, 25))
                stop_writing.wait(writer_rng.uniform(0.01, 0.06))  # pacing, not syncing
        except BaseException as exc:  # reported by the test thread
            writer_errors.append(exc)

    writer = threading.Thread(target=write, name="log-writer", daemon=True)
    writer.start()
    kills = 0
    try:
        for round_ in range(12):
            daemon = spawn_daemon(config, port, log_name=f"daemon-{round_}.log")
            if rng.random() < 0.75:
                # Most kills land after start-up: during catch-up or steady tailing.
                deadline = time.monotonic() + 20
                while daemon.alive() and time.monotonic() < deadline:
                    with contextlib.suppress(OSError):  # not listening yet
                        if daemon.get("/-/healthy").status == 200:
                            break
                    time.sleep(POLL_S)
            assert daemon.alive(), daemon.log_text()
            time.sleep(rng.uniform(0.0, 0.8))  # the random moment of the crash
            assert daemon.alive(), daemon.log_text()
            daemon.kill()
            assert daemon.process.returncode == -signal.SIGKILL
            kills += 1
            if rng.random() < 0.3:
                traffic.random_bursts(150)  # lines written while it is down
    finally:
        stop_writing.set()
        writer.join(timeout=10)
        traffic.close()
    assert not writer_errors, writer_errors
    assert kills >= 10
    assert traffic.rotations >= 10, "the writers should have rotated the logs"

    final = spawn_daemon(config, port, log_name="daemon-final.log")
    final.wait_ready(timeout=30)
    deadline = time.monotonic() + 30
    lag_keys = [("inferwatch_log_lag_bytes", frozenset({("source", name)})) for name in SOURCES]
    while True:
        samples = final.samples()
        difference = compare_samples(samples, truth.samples())
        lag = [samples.get(key) for key in lag_keys]
        if not difference and lag == [0.0, 0.0]:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"after {kills} SIGKILLs and {traffic.rotations} rotations, "
                        f"{traffic.written} lines written; lag {lag}; counters differ:\n"
                        f"{difference}")
        time.sleep(POLL_S)
    # The cost ledger, converted by its own writer process (killed with each daemon, or left
    # to finish a transaction beside the next one): every request charged exactly once.
    wanted = sorted(traffic.charged_ids)
    assert len(set(wanted)) == len(wanted)
    deadline = time.monotonic() + 30
    while (charged := ledger_request_ids(tmp_path / "state")) != wanted:
        if time.monotonic() > deadline:
            pytest.fail(f"ledger: {len(charged)} rows ({len(set(charged))} distinct request "
                        f"ids) for {len(wanted)} requests written")
        time.sleep(POLL_S)
    assert "Traceback" not in final.log_text()


def ledger_request_ids(state_dir: Path) -> list[str]:
    connection = sqlite3.connect(f"{(state_dir / 'inferwatch.db').as_uri()}?mode=ro", uri=True)
    try:
        return sorted(rid for (rid,) in connection.execute("SELECT request_id FROM ledger"))
    finally:
        connection.close()


# --- b. fault injection at the commit windows -----------------------------------------------


class Injection:
    """Where and at which call a child kills itself with SIGKILL."""

    POINTS = ("after_apply", "before_commit", "after_commit")

    def __init__(self, point: str | None, at: int) -> None:
        self.point = point
        self.at = at
        self.calls = 0

    def due(self) -> bool:
        self.calls += 1
        return self.calls == self.at

    def install(self, state: StateStore, store: MetricStore) -> None:
        if self.point == "after_apply":
            take_dirty = store.take_dirty

            def take_dirty_then_die() -> Any:
                # CheckpointWriter.commit calls this right after every pipeline's apply():
                # the metric store holds the new counts, nothing is written yet.
                if self.due():
                    os.kill(os.getpid(), signal.SIGKILL)
                return take_dirty()

            store.take_dirty = take_dirty_then_die  # type: ignore[method-assign]
        elif self.point in ("before_commit", "after_commit"):
            transaction = state.transaction
            before = self.point == "before_commit"

            @contextlib.contextmanager
            def dying_transaction(**options: Any) -> Iterator[Any]:
                due = self.due()
                with transaction(**options) as cursor:
                    yield cursor
                    if due and before:  # every row written, COMMIT not yet run
                        os.kill(os.getpid(), signal.SIGKILL)
                if due and not before:  # committed; the tailers have not been told
                    os.kill(os.getpid(), signal.SIGKILL)

            state.transaction = dying_transaction  # type: ignore[method-assign]


async def _ingest_until_caught_up(state_dir: Path, logs: Path, injection: Injection) -> None:
    config = default_config(
        storage={"path": str(state_dir)},
        ingest={"checkpoint_interval": "100ms", "checkpoint_lines": 40,
                "rescan_interval": "100ms", "poll_interval": "50ms", "rotate_wait": "2s"},
        sources=source_configs(logs),
    )
    state = StateStore(config.storage.path)
    store = MetricStore(config.namespace, config.metrics.series_limit)
    restore_counters(state, store)
    service = IngestService(sources=config.sources, ingest=config.ingest,
                            metrics=config.metrics, state=state, store=store,
                            clock=SystemClock())
    injection.install(state, store)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    deadline = time.monotonic() + 30
    while not (service.is_ready()
               and all(rt.tailer.lag_bytes() == 0 for rt in service.runtimes.values())
               and all(rt.pipeline.pending_lines == 0 for rt in service.runtimes.values())
               and not store.dirty):
        if task.done():
            task.result()
            raise RuntimeError("ingestion ended by itself")
        if time.monotonic() > deadline:
            raise TimeoutError("not caught up within 30 s")
        await asyncio.sleep(POLL_S)
    stop.set()
    await task
    state.close()


def run_child(state_dir: Path, logs: Path, injection: Injection) -> int:
    """Fork; the child ingests (and maybe kills itself); its wait status, decoded."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            asyncio.run(_ingest_until_caught_up(state_dir, logs, injection))
            code = 0
        except BaseException:  # reported through the exit status
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("an ingest child ran for more than 60 s")
        time.sleep(POLL_S)


def test_kill_between_metric_update_and_commit_never_double_counts(
        tmp_path: Path, truth: Any, parse_exposition: Callable[[str], Any],
        compare_samples: Callable[[Any, Any], str]) -> None:
    rng = random.Random(424242)
    logs, state_dir = tmp_path / "logs", tmp_path / "state"
    traffic = Traffic(logs, truth, seed=11, max_bytes=16 * 1024)
    outcomes: dict[str, list[int]] = {point: [] for point in Injection.POINTS}
    try:
        # A first clean run records the sources before any rotation (see test a).
        traffic.random_bursts(20)
        assert run_child(state_dir, logs, Injection(None, 0)) == 0
        for _ in range(30):
            traffic.random_bursts(120)
            point = rng.choice(Injection.POINTS)
            status = run_child(state_dir, logs, Injection(point, rng.randint(1, 4)))
            assert status in (0, -signal.SIGKILL), f"child at {point} ended with {status}"
            outcomes[point].append(status)
        traffic.random_bursts(120)
        assert run_child(state_dir, logs, Injection(None, 0)) == 0
    finally:
        traffic.close()
    killed = {point: statuses.count(-signal.SIGKILL) for point, statuses in outcomes.items()}
    assert all(n >= 3 for n in killed.values()), killed
    assert traffic.rotations >= 5

    difference = compare_samples(persisted_samples(state_dir, parse_exposition),
                                 truth.samples())
    assert difference == "", (f"{killed} injected kills, {traffic.written} lines, "
                              f"{traffic.rotations} rotations:\n{difference}")


# --- c. a damaged state file -----------------------------------------------------------------


def _rewrite(transform: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_bytes(transform(path.read_bytes()))
    return damage


def _garble_a_counter_row(path: Path) -> None:
    """Valid SQLite that passes quick_check, with one row no inferwatch could have written."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("UPDATE counters SET labels = 'garbage' "
                     "WHERE rowid = (SELECT min(rowid) FROM counters)")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "empty": _rewrite(lambda data: b""),
    "nul-filled": _rewrite(lambda data: b"\0" * len(data)),
    "truncated-at-page": _rewrite(lambda data: data[: max(4096, len(data) // 2 // 4096 * 4096)]),
    "truncated-mid-page": _rewrite(lambda data: data[: len(data) - 1000]),
    "truncated-in-header": _rewrite(lambda data: data[:50]),
    "garbled-row": _garble_a_counter_row,
}


@pytest.mark.parametrize("damage", [
    "empty", "nul-filled", "truncated-at-page",
    "truncated-mid-page",
    "truncated-in-header",
    "garbled-row",
])
def test_damaged_state_file_refuses_to_start_and_reads_nothing(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., Any],
        run_cli: Callable[..., Any], truth: Any,
        compare_samples: Callable[[Any, Any], str], damage: str) -> None:
    logs, state_dir = tmp_path / "logs", tmp_path / "state"
    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(state_dir)},
        "ingest": fast_ingest,
        "host": {"enabled": False},
        "gpu": {"enabled": False},
        "sources": source_configs(logs),
    })
    traffic = Traffic(logs, truth, seed=5, max_bytes=0)
    try:
        traffic.burst("inference", 300)
        traffic.burst("api", 300)
    finally:
        traffic.close()
    first = spawn_daemon(config, port, log_name="first.log")
    first.wait_ready()
    assert first.terminate() == 0
    state_file = state_dir / "inferwatch.db"
    assert not Path(f"{state_file}-wal").exists() or Path(f"{state_file}-wal").stat().st_size == 0
    DAMAGE[damage](state_file)
    damaged = state_file.read_bytes()

    refused = run_cli("run", "--config", str(config), timeout=30)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    error = lines[0]
    assert error.startswith(f"inferwatch: state file {state_file}")
    assert "move" in error
    assert state_file.read_bytes() == damaged  # left as it was: no fresh start over it

    aside = tmp_path / "inferwatch.db.damaged"
    shutil.move(state_file, aside)
    for suffix in ("-wal", "-shm"):
        Path(f"{state_file}{suffix}").unlink(missing_ok=True)
    fresh = spawn_daemon(config, port, log_name="fresh.log")
    fresh.wait_ready()
    # A fresh start re-reads every log from the beginning: the counts are the whole truth.
    assert compare_samples(fresh.samples(), truth.samples()) == ""
    assert fresh.terminate() == 0


# --- d. copytruncate while the daemon is down ---------------------------------------------


@pytest.mark.parametrize("down", ["sigkill", "sigterm"])
def test_copytruncate_while_down_loses_nothing(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., Any], truth: Any,
        compare_samples: Callable[[Any, Any], str], down: str) -> None:
    """The lines after the saved offset are in logrotate's copy: read from there, once."""
    logs = tmp_path / "logs"
    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": fast_ingest,
        "host": {"enabled": False},
        "gpu": {"enabled": False},
        "sources": source_configs(logs),
    })
    traffic = Traffic(logs, truth, seed=3, max_bytes=0)
    live = logs / SOURCES["inference"][1]
    try:
        traffic.burst("inference", 200)
        traffic.burst("api", 50)
        first = spawn_daemon(config, port, log_name="first.log")
        first.wait_ready()
        if down == "sigkill":
            first.kill()
        else:
            assert first.terminate() == 0
        traffic.burst("inference", 100)  # written while it is down, never read
        # logrotate's copytruncate, while the daemon is down.
        shutil.copyfile(live, live.with_name(live.name + ".1"))
        with live.open("r+b") as f:
            f.truncate(0)
        traffic.burst("inference", 30)
    finally:
        traffic.close()
    second = spawn_daemon(config, port, log_name="second.log")
    second.wait_ready()  # everything was on disk before the start: ready means all counted
    assert compare_samples(second.samples(), truth.samples()) == ""


# --- e. a partial last line across a SIGKILL -------------------------------------------------


def test_partial_last_line_across_a_sigkill_is_counted_once_when_completed(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., Any], truth: Any,
        compare_samples: Callable[[Any, Any], str]) -> None:
    logs = tmp_path / "logs"
    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": fast_ingest,
        "host": {"enabled": False},
        "gpu": {"enabled": False},
        "sources": source_configs(logs)[:1],
    })
    live = logs / SOURCES["inference"][1]
    live.parent.mkdir(parents=True)
    complete, partial = generate_lines(2, "inference", seed=17)
    cut = len(partial.data) // 2
    with live.open("ab") as f:
        f.write(complete.data + partial.data[:cut])  # a writer caught mid-line
    truth.add("inference", complete)

    first = spawn_daemon(config, port, log_name="first.log")
    first.wait_ready()
    deadline = time.monotonic() + 10
    while compare_samples(first.samples(), truth.samples()):
        if time.monotonic() > deadline:
            pytest.fail(f"the complete line never showed in /metrics:\n{first.log_text()}")
        time.sleep(POLL_S)
    first.kill()
    assert first.process.returncode == -signal.SIGKILL

    with live.open("ab") as f:
        f.write(partial.data[cut:])  # the line completes while the daemon is down
    truth.add("inference", partial)
    second = spawn_daemon(config, port, log_name="second.log")
    second.wait_ready()  # everything was on disk before the start: ready means all counted
    assert compare_samples(second.samples(), truth.samples()) == ""
    assert "Traceback" not in first.log_text() + second.log_text()
