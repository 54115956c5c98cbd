"""Persisting what ingestion has done: file positions and the counters they produced.

`commit` applies every pipeline's pending batch to the metric store and writes the changed
counter series and the file positions in one SQLite transaction. It runs on the event loop
without awaiting between the two steps, so nothing (no `/metrics` request) can observe counts
whose offsets are not committed; and a process killed anywhere in between restarts from the
previous commit, re-reading exactly the lines whose counts were lost.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence

import orjson

from monitor.clock import Clock
from monitor.cost.ledger import Ledger
from monitor.errors import StateError
from monitor.ingest.files import FileCheckpoint, FileIdentity
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.tailer import RotationAwareTailer
from monitor.metrics import families as fam
from monitor.metrics.store import (
    CounterSeries,
    HistogramSeries,
    LabelKey,
    MetricFamily,
    MetricStore,
    Series,
)
from monitor.storage import StateStore, remedy

log = logging.getLogger(__name__)


def _encode_labels(key: LabelKey) -> str:
    return orjson.dumps([list(pair) for pair in key]).decode()


def _decode_labels(text: str) -> LabelKey:
    return tuple((str(name), str(value)) for name, value in orjson.loads(text))


def restore_counters(state: StateStore, store: MetricStore) -> int:
    """Load every persisted counter and histogram series into the store."""
    rows = state.connection.execute("SELECT family, labels, kind, value, buckets FROM counters")
    restored = 0
    for family, labels, kind, value, buckets in rows:
        try:
            series = _decode_series(kind, value, buckets)
            key = _decode_labels(labels)
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise StateError(
                f"state file {state.path} holds an unreadable counter row for {family} "
                f"({exc}). {remedy(state.path)}"
            ) from exc
        store.restore(family, key, series)
        restored += 1
    return restored


def _decode_series(kind: str, value: float, buckets: str | None) -> Series:
    if kind == "counter":
        return CounterSeries(float(value))
    if buckets is None:
        raise ValueError("a histogram row without buckets")
    counts = [int(c) for c in orjson.loads(buckets)]
    if not counts or any(c < 0 for c in counts):
        raise ValueError("histogram buckets must be non-negative counts")
    series = HistogramSeries(len(counts) - 1)
    series.counts = counts
    series.count = sum(counts)
    series.sum = float(value)
    return series


def load_file_checkpoints(state: StateStore, source: str) -> list[FileCheckpoint]:
    rows = state.connection.execute(
        "SELECT dev, ino, path, offset, fp_len, fp_crc, tail_len, tail_crc, last_seen "
        "FROM file_offsets WHERE source = ?",
        (source,),
    )
    return [
        FileCheckpoint(FileIdentity(dev, ino), path, offset, fp_len, fp_crc, tail_len, tail_crc,
                       last_seen)
        for dev, ino, path, offset, fp_len, fp_crc, tail_len, tail_crc, last_seen in rows
    ]


def known_sources(state: StateStore) -> set[str]:
    return {name for (name,) in state.connection.execute("SELECT name FROM sources")}


class CheckpointWriter:
    """Commits the pending work of a set of pipelines atomically."""

    def __init__(self, state: StateStore, store: MetricStore, clock: Clock,
                 ledger: Ledger | None = None) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.ledger = ledger
        self._failures = store.register(fam.CHECKPOINT_FAILURES)
        self._recorded_sources = known_sources(state)
        self._failed_since_log = 0
        self._failure_logged_at: float | None = None

    def commit(self, work: Sequence[tuple[SourcePipeline, RotationAwareTailer]]) -> bool:
        """Apply every pending batch and commit it with the offsets; False (and nothing
        changed, the batches still pending) if the state file refused the transaction."""
        self.store.begin_changes()
        for pipeline, _ in work:
            pipeline.apply()
        costs = None
        if self.ledger is not None:
            costs = self.ledger.price(
                (pipeline.name, pipeline.model_override, pipeline.priced_events)
                for pipeline, _ in work if pipeline.priced_events)
        dirty = self.store.take_dirty()
        tailers = [tailer for _, tailer in work]
        new_sources = [t.source for t in tailers if t.source not in self._recorded_sources]
        try:
            with self.state.transaction() as cursor:
                self._write_counters(cursor, dirty)
                for tailer in tailers:
                    self._write_offsets(cursor, tailer)
                cursor.executemany(
                    "INSERT OR IGNORE INTO sources (name, first_seen) VALUES (?, ?)",
                    [(name, self.clock.time()) for name in new_sources],
                )
                if costs is not None and self.ledger is not None:
                    self.ledger.write(cursor, costs)
        except sqlite3.Error as exc:
            self.store.undo_changes()
            self._failures.inc(self._failures.key(()))
            self._log_failure(exc)
            return False
        self.store.keep_changes()
        if costs is not None and self.ledger is not None:
            self.ledger.committed(costs)
        for pipeline, tailer in work:
            pipeline.clear()
            tailer.mark_saved()
        self._recorded_sources.update(new_sources)
        if self._failed_since_log or self._failure_logged_at is not None:
            log.info("checkpoint succeeded again")
            self._failed_since_log, self._failure_logged_at = 0, None
        return True

    def _log_failure(self, exc: sqlite3.Error) -> None:
        """One line a minute while commits keep failing, not one per attempt."""
        self._failed_since_log += 1
        now = self.clock.monotonic()
        if self._failure_logged_at is None or now - self._failure_logged_at >= 60.0:
            log.error("checkpoint failed %d time(s), will retry; counts and offsets stay "
                      "pending, /metrics shows only what is committed: %s",
                      self._failed_since_log, exc)
            self._failure_logged_at = now
            self._failed_since_log = 0

    @staticmethod
    def _write_counters(cursor: sqlite3.Cursor,
                        dirty: Iterable[tuple[MetricFamily, LabelKey, Series]]) -> None:
        rows: list[tuple[str, str, str, float, str | None]] = []
        for family, key, series in dirty:
            if isinstance(series, CounterSeries):
                rows.append((family.full_name, _encode_labels(key), "counter", series.value,
                             None))
            elif isinstance(series, HistogramSeries):
                rows.append((family.full_name, _encode_labels(key), "histogram", series.sum,
                             orjson.dumps(series.counts).decode()))
        cursor.executemany(
            "INSERT INTO counters (family, labels, kind, value, buckets) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (family, labels) DO UPDATE SET kind = excluded.kind, "
            "value = excluded.value, buckets = excluded.buckets",
            rows,
        )

    @staticmethod
    def _write_offsets(cursor: sqlite3.Cursor, tailer: RotationAwareTailer) -> None:
        cursor.executemany(
            "INSERT INTO file_offsets (source, dev, ino, path, offset, fp_len, fp_crc, tail_len, "
            "tail_crc, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, dev, ino) DO UPDATE SET path = excluded.path, "
            "offset = excluded.offset, fp_len = excluded.fp_len, fp_crc = excluded.fp_crc, "
            "tail_len = excluded.tail_len, tail_crc = excluded.tail_crc, "
            "last_seen = excluded.last_seen",
            [
                (tailer.source, cp.identity.dev, cp.identity.ino, cp.path, cp.offset, cp.fp_len,
                 cp.fp_crc, cp.tail_len, cp.tail_crc, cp.last_seen)
                for cp in tailer.dirty_checkpoints()
            ],
        )
        cursor.executemany(
            "DELETE FROM file_offsets WHERE source = ? AND dev = ? AND ino = ?",
            [(tailer.source, i.dev, i.ino) for i in tailer.removed],
        )

    def prune_offsets(self, tailers: Iterable[RotationAwareTailer], older_than: float) -> int:
        """Forget closed files of these tailers' sources not seen for a long time. Open files
        are never pruned, nor are the rows of sources not configured now."""
        tailers = list(tailers)
        by_source = {t.source: t for t in tailers}
        open_files = {(t.source, i.dev, i.ino) for t in tailers for i in t.files}
        rows = self.state.connection.execute(
            "SELECT source, dev, ino FROM file_offsets WHERE last_seen < ?", (older_than,)
        ).fetchall()
        stale = [tuple(row) for row in rows
                 if row[0] in by_source and tuple(row) not in open_files]
        with self.state.transaction() as cursor:
            cursor.executemany(
                "DELETE FROM file_offsets WHERE source = ? AND dev = ? AND ino = ?", stale
            )
        for source, dev, ino in stale:
            by_source[source].known.pop(FileIdentity(dev, ino), None)
        return len(stale)
