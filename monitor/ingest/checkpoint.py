"""Persisting what ingestion has done: file positions and the counters they produced.

`commit` applies every pipeline's pending batch to the metric store and writes the changed
counter series and the file positions in one SQLite transaction. It runs on the event loop
without awaiting between the two steps, so nothing (no `/metrics` request) can observe counts
whose offsets are not committed; and a process killed anywhere in between restarts from the
previous commit, re-reading exactly the lines whose counts were lost.

The requests of priced sources go into the ledger's journal in the same transaction
(monitor/cost/journal.py); the ledger writer owns the cost families' rows, so this writer
leaves them out.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence

from monitor.clock import Clock
from monitor.cost.feed import LedgerFeed
from monitor.ingest.files import FileCheckpoint, FileIdentity
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.tailer import RotationAwareTailer
from monitor.metrics import families as fam
from monitor.metrics.persistence import restore_counters, write_counter_rows
from monitor.metrics.store import MetricStore
from monitor.storage import Busy, StateStore

__all__ = ["CheckpointWriter", "known_sources", "load_file_checkpoints", "restore_counters"]

log = logging.getLogger(__name__)


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
                 ledger: LedgerFeed | None = None) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.ledger = ledger
        self._failures = store.register(fam.CHECKPOINT_FAILURES)
        self._recorded_sources = known_sources(state)
        self._failed_since_log = 0
        self._failure_logged_at: float | None = None

    def commit(self, work: Sequence[tuple[SourcePipeline, RotationAwareTailer]], *,
               wait: bool = True) -> bool | None:
        """Apply every pending batch and commit it with the offsets; False (and nothing
        changed, the batches still pending) if the state file refused the transaction. Without
        `wait`, None (nothing done, not a failure) when the ledger writer holds the write lock:
        the caller reads on and tries again."""
        priced = [(pipeline.name, pipeline.model_override, pipeline.priced_events)
                  for pipeline, _ in work if pipeline.priced_events]
        tailers = [tailer for _, tailer in work]
        new_sources = [t.source for t in tailers if t.source not in self._recorded_sources]
        try:
            with self.state.transaction(wait=wait) as cursor:
                # Applied under the lock, so that a busy state file costs no apply and undo.
                self.store.begin_changes()
                for pipeline, _ in work:
                    pipeline.apply()
                dirty = self.store.take_dirty()
                if self.ledger is not None:
                    owned = self.ledger.owned_families
                    dirty = [change for change in dirty if change[0].full_name not in owned]
                write_counter_rows(cursor, dirty)
                for tailer in tailers:
                    self._write_offsets(cursor, tailer)
                cursor.executemany(
                    "INSERT OR IGNORE INTO sources (name, first_seen) VALUES (?, ?)",
                    [(name, self.clock.time()) for name in new_sources],
                )
                if priced and self.ledger is not None:
                    self.ledger.record(cursor, priced)
        except Busy:
            return None
        except sqlite3.Error as exc:
            self.store.undo_changes()
            self._failures.inc(self._failures.key(()))
            self._log_failure(exc)
            return False
        self.store.keep_changes()
        for pipeline, tailer in work:
            pipeline.clear()
            tailer.mark_saved()
        self._recorded_sources.update(new_sources)
        if priced and self.ledger is not None:
            self.ledger.recorded()
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
