"""The SQLite state file: creation, reopening, refusing damaged or foreign files (never a
silent fresh start), and the checkpoint that commits counters and offsets together."""

from __future__ import annotations

import os
import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.clock import FakeClock
from monitor.cost import ledger_rows
from monitor.cost.ledger_rows import amount_of
from monitor.errors import StateError
from monitor.ingest.checkpoint import (
    CheckpointWriter,
    known_sources,
    load_file_checkpoints,
    restore_counters,
)
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import parse_inference
from monitor.ingest.tailer import RotationAwareTailer
from monitor.metrics import families as fam
from monitor.metrics.store import CounterSeries, HistogramSeries, MetricStore
from monitor.storage import MIGRATIONS, STATE_FILE_NAME, StateStore

TS = "2026-01-18T06:07:46.123Z"


STATE_TABLES = {"sources", "file_offsets", "counters", "alert_state", "rule_groups", "silences",
                "notification_log", "outbox", "rate_log", "sqlite_sequence", "ledger_rows",
                "ledger_keys", "ledger_spans", "ledger_journal", "cost_daily", "cost_meta",
                "budget_alerts", "slo_minutes", "slo_alerts", "slo_meta"}

def tables(state: StateStore) -> set[str]:
    rows = state.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


# -- creation and reopening -----------------------------------------------------------------


def test_fresh_directory_gets_a_new_state_file(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "state"
    state = StateStore(directory)
    assert state.path == directory / STATE_FILE_NAME
    assert tables(state) == STATE_TABLES
    (version,) = state.connection.execute("PRAGMA user_version").fetchone()
    assert version == len(MIGRATIONS)
    (mode,) = state.connection.execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
    assert not (directory / f"{STATE_FILE_NAME}.creating").exists()
    state.close()


def test_reopen_keeps_what_was_written(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    with state.transaction() as cursor:
        cursor.execute("INSERT INTO sources (name, first_seen) VALUES ('logs', 1.0)")
    state.close()
    again = StateStore(tmp_path)
    assert known_sources(again) == {"logs"}
    again.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    with pytest.raises(RuntimeError), state.transaction() as cursor:
        cursor.execute("INSERT INTO sources (name, first_seen) VALUES ('logs', 1.0)")
        raise RuntimeError("boom")
    assert known_sources(state) == set()
    state.close()


def test_a_leftover_creating_file_from_a_crashed_creation_is_ignored(tmp_path: Path) -> None:
    leftover = tmp_path / f"{STATE_FILE_NAME}.creating"
    leftover.write_bytes(b"half a database from a crash")
    Path(f"{leftover}-wal").write_bytes(b"junk")
    state = StateStore(tmp_path)
    assert tables(state) == STATE_TABLES
    assert not leftover.exists()
    state.close()



@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_wal_or_shm_file_left_without_its_state_file_is_refused(
    tmp_path: Path, suffix: str
) -> None:
    """SQLite would replay an old -wal into a new database: half old state, half new."""
    leftover = tmp_path / f"{STATE_FILE_NAME}{suffix}"
    leftover.write_bytes(b"what is left of an old state file")
    with pytest.raises(StateError) as caught:
        StateStore(tmp_path)
    message = str(caught.value)
    assert str(leftover) in message
    assert str(tmp_path / STATE_FILE_NAME) in message
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name]  # nothing created
    assert leftover.read_bytes() == b"what is left of an old state file"

# -- refusing unusable files ------------------------------------------------------------------


def _filled_then_truncated(directory: Path) -> None:
    state = StateStore(directory)
    with state.transaction() as cursor:
        cursor.executemany(
            "INSERT INTO file_offsets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [("logs", 1, i, f"/var/log/app/{i}.log", i * 100, 4096, i, 64, i, 1.0)
             for i in range(500)],
        )
    state.close()
    path = directory / STATE_FILE_NAME
    os.truncate(path, path.stat().st_size // 2)


def _foreign(directory: Path) -> None:
    conn = sqlite3.connect(directory / STATE_FILE_NAME)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()


def _newer(directory: Path) -> None:
    StateStore(directory).close()
    conn = sqlite3.connect(directory / STATE_FILE_NAME)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()


CORRUPTIONS = {
    "random bytes": (lambda d: (d / STATE_FILE_NAME).write_bytes(
        random.Random(1).randbytes(16384)), "not a usable database"),
    "NUL-filled": (lambda d: (d / STATE_FILE_NAME).write_bytes(bytes(16384)),
                   "not a usable database"),
    "empty": (lambda d: (d / STATE_FILE_NAME).write_bytes(b""), "is empty"),
    "text file": (lambda d: (d / STATE_FILE_NAME).write_text("offsets: 12\n"),
                  "not a usable database"),
    "truncated in half": (_filled_then_truncated, "not a usable database"),
    "foreign SQLite": (_foreign, "not an inferwatch state file"),
    "newer schema": (_newer, "newer than this inferwatch understands"),
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_an_unusable_state_file_is_refused_and_left_untouched(tmp_path: Path, kind: str) -> None:
    prepare, message = CORRUPTIONS[kind]
    prepare(tmp_path)
    path = tmp_path / STATE_FILE_NAME
    before = path.read_bytes()
    with pytest.raises(StateError, match=message) as caught:
        StateStore(tmp_path)
    assert str(path) in str(caught.value)
    if kind != "newer schema":
        assert "move" in str(caught.value)  # says how to recover
    assert path.read_bytes() == before  # never rewritten into a fresh start
    assert "\n" not in str(caught.value)


def test_a_directory_in_place_of_the_state_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE_NAME).mkdir()
    with pytest.raises(StateError):
        StateStore(tmp_path)


def test_an_uncreatable_state_directory_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StateError, match="cannot create state directory"):
        StateStore(blocker / "state")


# -- checkpoints ----------------------------------------------------------------------------


def request(i: int, **fields: object) -> bytes:
    record = {"timestamp": TS, "service": "svc", "duration_ms": 100.0 * (i + 1),
              "input_tokens": 10 * i, "output_tokens": i}
    record.update(fields)
    return orjson.dumps(record)


class Source:
    """One source with a real file, tailer and pipeline, reading into `store`."""

    def __init__(self, root: Path, state: StateStore, store: MetricStore,
                 clock: FakeClock) -> None:
        self.path = root / "logs" / "app.log"
        self.path.parent.mkdir(exist_ok=True)
        self.tailer = RotationAwareTailer(
            source="logs", patterns=[str(self.path)], clock=clock,
            saved=load_file_checkpoints(state, "logs"),
            source_known="logs" in known_sources(state),
        )
        self.pipeline = SourcePipeline(name="logs", schema=parse_inference, store=store,
                                       clock=clock)

    def write_and_read(self, lines: list[bytes]) -> None:
        with self.path.open("ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))
        self.tailer.scan()
        for tracked in self.tailer.files_with_data(None):
            while (chunk := self.tailer.read(tracked)) is not None:
                self.pipeline.process(chunk, tracked.path)


def test_commit_round_trips_counters_histograms_and_offsets(tmp_path: Path) -> None:
    clock = FakeClock()
    state = StateStore(tmp_path / "state")
    store = MetricStore()
    source = Source(tmp_path, state, store, clock)
    writer = CheckpointWriter(state, store, clock)
    source.write_and_read([request(i) for i in range(5)] + [request(9, level="ERROR",
                                                                    error="CUDA out of memory")])
    assert writer.commit([(source.pipeline, source.tailer)])
    saved_offsets = {f.identity: f.checkpoint() for f in source.tailer.files.values()}
    source.tailer.close()
    state.close()

    state = StateStore(tmp_path / "state")
    assert known_sources(state) == {"logs"}
    loaded = {cp.identity: cp for cp in load_file_checkpoints(state, "logs")}
    assert loaded == saved_offsets
    (row,) = loaded.values()
    assert row.offset == source.path.stat().st_size

    fresh = MetricStore()
    assert restore_counters(state, fresh) > 0
    assert fresh.take_births() == []
    requests = fresh.register(fam.REQUESTS)
    by_status = {dict(k)["status"]: s.value for k, s in requests.series.items()
                 if isinstance(s, CounterSeries)}
    assert by_status == {"success": 5, "error": 1}
    errors = fresh.register(fam.REQUEST_ERRORS)
    assert {dict(k)["class"] for k in errors.series} == {"oom"}
    durations = fresh.register(fam.REQUEST_DURATION)
    (hist,) = durations.series.values()
    assert isinstance(hist, HistogramSeries)
    original = store.family("inferwatch_request_duration_seconds")
    assert original is not None
    (expected,) = original.series.values()
    assert isinstance(expected, HistogramSeries)
    assert (hist.counts, hist.count, hist.sum) == (expected.counts, 6, pytest.approx(expected.sum))
    lines = fresh.register(fam.LOG_LINES)
    assert {dict(k)["result"]: s.value for k, s in lines.series.items()
            if isinstance(s, CounterSeries)} == {"parsed": 6}
    state.close()


def test_later_commits_update_rows_in_place(tmp_path: Path) -> None:
    clock = FakeClock()
    state = StateStore(tmp_path / "state")
    store = MetricStore()
    source = Source(tmp_path, state, store, clock)
    writer = CheckpointWriter(state, store, clock)
    source.write_and_read([request(0)])
    assert writer.commit([(source.pipeline, source.tailer)])
    source.write_and_read([request(1), request(2)])
    assert writer.commit([(source.pipeline, source.tailer)])
    assert writer.commit([(source.pipeline, source.tailer)])  # nothing new: still fine
    (count,) = state.connection.execute(
        "SELECT value FROM counters WHERE family = 'inferwatch_requests'").fetchone()
    assert count == 3
    (offset,) = state.connection.execute("SELECT offset FROM file_offsets").fetchone()
    assert offset == source.path.stat().st_size
    source.tailer.close()
    state.close()


def _deny_writes(action: int, *args: object) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE,
                                             sqlite3.SQLITE_DELETE) else sqlite3.SQLITE_OK


def test_a_failed_commit_keeps_everything_pending_and_a_later_commit_writes_it(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    state = StateStore(tmp_path / "state")
    store = MetricStore()
    source = Source(tmp_path, state, store, clock)
    writer = CheckpointWriter(state, store, clock)
    source.write_and_read([request(i) for i in range(3)])

    state.connection.set_authorizer(_deny_writes)
    assert writer.commit([(source.pipeline, source.tailer)]) is False
    state.connection.set_authorizer(None)
    failures = store.family("inferwatch_checkpoint_failures")
    assert failures is not None
    assert failures.counter(()).value == 1
    assert state.connection.execute("SELECT count(*) FROM counters").fetchone() == (0,)
    assert load_file_checkpoints(state, "logs") == []
    assert known_sources(state) == set()
    assert source.tailer.dirty_checkpoints()  # offsets still to be written

    source.write_and_read([request(3)])
    assert writer.commit([(source.pipeline, source.tailer)])
    rows = dict(state.connection.execute(
        "SELECT family, value FROM counters WHERE kind = 'counter' AND family IN "
        "('inferwatch_requests', 'inferwatch_checkpoint_failures')").fetchall())
    assert rows == {"inferwatch_requests": 4, "inferwatch_checkpoint_failures": 1}
    (offset,) = state.connection.execute("SELECT offset FROM file_offsets").fetchone()
    assert offset == source.path.stat().st_size
    assert known_sources(state) == {"logs"}
    assert source.tailer.dirty_checkpoints() == []
    source.tailer.close()
    state.close()


def test_a_commit_failing_on_a_closed_connection_is_counted_not_raised(tmp_path: Path) -> None:
    clock = FakeClock()
    state = StateStore(tmp_path / "state")
    store = MetricStore()
    writer = CheckpointWriter(state, store, clock)
    pipeline = SourcePipeline(name="logs", schema=parse_inference, store=store, clock=clock)
    pipeline.process(LineChunk([request(0)], 0, 0), "x")
    state.connection.close()
    assert writer.commit([(pipeline, RotationAwareTailer(source="logs", patterns=[],
                                                         clock=clock))]) is False
    failures = store.family("inferwatch_checkpoint_failures")
    assert failures is not None
    assert failures.counter(()).value == 1
    # Nothing of the failed batch is visible in the store; it waits for the next commit.
    requests = store.family("inferwatch_requests")
    assert requests is not None
    assert requests.series == {}
    assert pipeline.pending_lines == 1


def test_restore_counters_before_the_families_register(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    with state.transaction() as cursor:
        cursor.execute(
            "INSERT INTO counters VALUES (?, ?, 'counter', 12.0, NULL)",
            ("inferwatch_requests", orjson.dumps([["source", "s"], ["service", "v"],
                                                  ["model", "m"], ["status", "success"]])),
        )
        cursor.execute(
            "INSERT INTO counters VALUES (?, ?, 'histogram', 3.5, ?)",
            ("inferwatch_request_duration_seconds",
             orjson.dumps([["source", "s"], ["service", "v"], ["model", "m"]]),
             orjson.dumps([1, 2] + [0] * (len(fam.DURATION_BUCKETS) - 1))),
        )
    store = MetricStore()
    assert restore_counters(state, store) == 2
    requests = store.register(fam.REQUESTS)
    assert requests.counter((("source", "s"), ("service", "v"), ("model", "m"),
                             ("status", "success"))).value == 12
    durations = store.register(fam.REQUEST_DURATION)
    hist = durations.histogram((("source", "s"), ("service", "v"), ("model", "m")))
    assert (hist.count, hist.sum, hist.cumulative()[1]) == (3, 3.5, 3)
    assert store.take_births() == []
    state.close()


# -- v9: the ledger as rows, keys and spans ---------------------------------------------------


def state_at_version(directory: Path, version: int) -> Path:
    """A state file made by the first `version` migrations, as an older inferwatch left it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA application_id = 1769431412")
    for migration in MIGRATIONS[:version]:
        assert isinstance(migration, str)
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return path


V8_LEDGER = [
    # t, source, request_id, model, user, amount, reported
    (1000.0, "api", "r1", "chat", "", "0.002201531280", None),
    (1001.0, "api", "r2", "chat", "u1", "1.5E-7", "0.1"),  # exponent text, as str(Decimal) had
    (1002.0, "api", "r3", "gpt-x", "", None, None),  # unpriced
    (999.0, "other", None, "chat", "", "1500", None),  # whole, and earlier than the row before
    (1003.0, "api", "r4", "chat", "", "123456789012345678901234.5", None),  # past 64 bits
    (1002.5, "api", "r5", "chat", "", "0.000000000000000001", None),  # 19 digits: not in SQL
]


def v8_ledger(directory: Path, rows: list[tuple[Any, ...]]) -> Path:
    """A v8 state file holding `rows` (as V8_LEDGER) in its ledger, all with the same tokens."""
    path = state_at_version(directory, 8)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executemany(
        "INSERT INTO ledger (t, source, request_id, model, user, input_tokens, "
        "cache_hit_tokens, cache_miss_tokens, output_tokens, reasoning_tokens, currency, "
        "amount, reported) VALUES (?, ?, ?, ?, ?, 10, 4, 6, 7, 2, 'CNY', ?, ?)", rows)
    conn.close()
    return path


def test_v8_ledger_rows_migrate_exactly(tmp_path: Path) -> None:
    v8_ledger(tmp_path, V8_LEDGER)
    state = StateStore(tmp_path)
    rows = state.connection.execute(
        "SELECT t, source, request_id, model, user, input_tokens, cache_hit_tokens, "
        "cache_miss_tokens, output_tokens, reasoning_tokens, currency, amount_units, "
        "amount_places, reported FROM ledger ORDER BY id").fetchall()
    assert [(t, source, rid, model, user, amount_of(units, places), reported)
            for t, source, rid, model, user, *_, units, places, reported in rows] == [
        (t, source, rid, model, user, None if amount is None else Decimal(amount), reported)
        for t, source, rid, model, user, amount, reported in V8_LEDGER]
    assert {row[5:11] for row in rows} == {(10, 4, 6, 7, 2, "CNY")}
    assert [row[11:13] for row in rows] == [(2201531280, 12), (15, 8), (None, None), (1500, 0),
                                            ("1234567890123456789012345", 1), (1, 18)]
    assert not any(isinstance(row[11], float) for row in rows)  # never rounded to a float
    (keys,) = state.connection.execute("SELECT COUNT(*) FROM ledger_keys").fetchone()
    assert keys == 4  # (api, chat, ""), (api, chat, u1), (api, gpt-x, ""), (other, chat, "")
    assert ledger_rows.id_range(state.connection, 999.0, 999.5) == (1, 6)  # one span holds all
    assert ledger_rows.id_range(state.connection, 1003.5) is None
    assert (ledger_rows.oldest_time(state.connection),
            ledger_rows.newest_time(state.connection)) == (999.0, 1003.0)
    state.close()


def test_a_v8_amount_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    path = v8_ledger(tmp_path, [(1.0, "api", "r1", "chat", "", "twelve", None)])
    with pytest.raises(StateError, match=r"ledger row 1 has an amount that is not a number"):
        StateStore(tmp_path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (8,)  # rolled back, not half-done
    conn.close()


def test_freed_pages_are_not_zeroed_and_checkpoints_wait_for_16_mb(tmp_path: Path) -> None:
    # Debian's SQLite zeroes every freed page by default: each converted journal row would be
    # written again in full. FAST still zeroes deleted content within pages written anyway.
    state = StateStore(tmp_path)
    assert state.connection.execute("PRAGMA secure_delete").fetchone() == (2,)  # FAST
    assert state.connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (4000,)
    state.close()
