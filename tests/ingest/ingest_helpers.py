"""Helpers for the ingestion tests: request lines, a tailer driver, a crash/restart harness.

`drain` reads a tailer exactly as `IngestService._drain` does. `IngestHarness` runs the real
chain (tailer -> SourcePipeline -> CheckpointWriter -> StateStore), so a "crash" loses exactly
what was not committed and a restart resumes from what the state file really holds.

(Named `ingest_helpers`, not `helpers`: test directories have no `__init__.py`, so module
basenames must be unique across `tests/`.)
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from monitor.clock import FakeClock
from monitor.ingest.checkpoint import (
    CheckpointWriter,
    known_sources,
    load_file_checkpoints,
    restore_counters,
)
from monitor.ingest.files import FileCheckpoint, FileIdentity
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import parse_inference
from monitor.ingest.tailer import RotationAwareTailer
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.storage import StateStore

TIMESTAMP = "2026-01-18T06:07:46.123Z"
MiB = 1 << 20


def make_clock() -> FakeClock:
    """A fake clock an hour behind the real one.

    The tailer compares its wall clock with file mtimes (missed-rotation recovery); an hour's
    margin keeps every real mtime "after" the fake clock however far a test advances it.
    """
    return FakeClock(start=time.time() - 3600.0)


def request_line(tag: str, i: int, *, pad: int = 0) -> bytes:
    """One valid `inference` line whose request_id (`<tag>-<i>`) says where it came from."""
    record: dict[str, object] = {
        "timestamp": TIMESTAMP,
        "request_id": f"{tag}-{i:05d}",
        "service": "svc",
        "duration_ms": 100.0 + i,
        "input_tokens": i,
        "output_tokens": 2 * i,
    }
    if pad:
        record["prompt_truncated"] = "p" * pad
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def request_lines(tag: str, n: int, *, start: int = 0, pad: int = 0) -> list[bytes]:
    return [request_line(tag, i, pad=pad) for i in range(start, start + n)]


def bare(lines: Iterable[bytes]) -> list[bytes]:
    """Written lines as the tailer emits them: without their newline."""
    return [line.removesuffix(b"\n") for line in lines]


def ids(lines: Iterable[bytes]) -> list[str]:
    """The request_id of each emitted line (readable assertion diffs)."""
    return [orjson.loads(line)["request_id"] for line in lines]


def append(path: Path | str, *chunks: bytes) -> None:
    with open(path, "ab") as f:
        for chunk in chunks:
            f.write(chunk)


def identity(path: Path | str) -> FileIdentity:
    st = os.stat(path)
    return FileIdentity(st.st_dev, st.st_ino)


class RotatingLog:
    """The stdlib's RotatingFileHandler, writing raw lines; `rotate()` is its rollover."""

    def __init__(self, path: Path, *, backup_count: int = 3) -> None:
        self.handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=0, backupCount=backup_count, encoding="utf-8"
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            record = logging.makeLogRecord({"msg": line.removesuffix(b"\n").decode()})
            self.handler.emit(record)

    def rotate(self) -> None:
        self.handler.doRollover()

    def close(self) -> None:
        self.handler.close()


@dataclass
class Drained:
    """What one poll read: every line in order, per file, and the oversized lines skipped."""

    lines: list[bytes] = field(default_factory=list)
    oversized: int = 0
    by_file: dict[FileIdentity, list[bytes]] = field(default_factory=dict)


def drain(
    tailer: RotationAwareTailer,
    *,
    scan: bool = True,
    changed: set[str] | None = None,
    pipeline: SourcePipeline | None = None,
) -> Drained:
    """One cycle of the service: scan, then read every ready file until it has nothing."""
    if scan:
        tailer.scan()
    out = Drained()
    for tracked in tailer.files_with_data(changed):
        while tracked.fd >= 0:
            chunk = tailer.read(tracked)
            if chunk is None:
                break
            out.lines.extend(chunk.lines)
            out.oversized += chunk.oversized
            out.by_file.setdefault(tracked.identity, []).extend(chunk.lines)
            if pipeline is not None:
                pipeline.process(chunk, tracked.path)
    return out


def drain_all(
    tailer: RotationAwareTailer,
    *,
    pipeline: SourcePipeline | None = None,
    max_polls: int = 10,
) -> Drained:
    """Poll until two polls in a row read nothing (a file found during one poll, such as a
    copy or a missed generation, is read by the next)."""
    total = Drained()
    quiet = 0
    for _ in range(max_polls):
        got = drain(tailer, pipeline=pipeline)
        total.lines.extend(got.lines)
        total.oversized += got.oversized
        for key, lines in got.by_file.items():
            total.by_file.setdefault(key, []).extend(lines)
        quiet = 0 if got.lines or got.oversized else quiet + 1
        if quiet == 2:
            return total
    raise AssertionError(f"still reading after {max_polls} polls")


def new_tailer(
    patterns: Iterable[Path | str],
    clock: FakeClock,
    *,
    saved: Iterable[FileCheckpoint] = (),
    source_known: bool = False,
    **options: object,
) -> RotationAwareTailer:
    return RotationAwareTailer(
        source="logs",
        patterns=[str(p) for p in patterns],
        saved=saved,
        source_known=source_known,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


class IngestHarness:
    """One `inference` source read, committed and crashed like the daemon does it."""

    def __init__(
        self,
        root: Path,
        patterns: Iterable[Path | str],
        *,
        clock: FakeClock | None = None,
        source: str = "logs",
        **tailer_options: object,
    ) -> None:
        self.state_dir = root / "state"
        self.patterns = [str(p) for p in patterns]
        self.clock = clock or make_clock()
        self.source = source
        self.tailer_options = tailer_options
        self.committed: list[bytes] = []  # lines whose counts are in the state file
        self.committed_oversized = 0
        self._pending: list[bytes] = []
        self._pending_oversized = 0
        self.start()

    def start(self) -> None:
        """Open the state file and build the source from it, as the daemon does at start."""
        self.state = StateStore(self.state_dir)
        self.store = MetricStore()
        restore_counters(self.state, self.store)
        self.pipeline = SourcePipeline(
            name=self.source, schema=parse_inference, store=self.store, clock=self.clock
        )
        self.writer = CheckpointWriter(self.state, self.store, self.clock)
        self.tailer = RotationAwareTailer(
            source=self.source,
            patterns=self.patterns,
            saved=load_file_checkpoints(self.state, self.source),
            source_known=self.source in known_sources(self.state),
            clock=self.clock,
            **self.tailer_options,  # type: ignore[arg-type]
        )

    def poll(self, *, scan: bool = True) -> Drained:
        got = drain(self.tailer, scan=scan, pipeline=self.pipeline)
        self._note(got)
        return got

    def poll_all(self) -> Drained:
        got = drain_all(self.tailer, pipeline=self.pipeline)
        self._note(got)
        return got

    def _note(self, got: Drained) -> None:
        self._pending.extend(got.lines)
        self._pending_oversized += got.oversized

    def commit(self) -> None:
        assert self.writer.commit([(self.pipeline, self.tailer)])
        self.committed.extend(self._pending)
        self.committed_oversized += self._pending_oversized
        self._pending, self._pending_oversized = [], 0

    def kill(self) -> None:
        """SIGKILL: whatever was read since the last commit is lost."""
        self.tailer.close()
        self.state.close()
        self._pending, self._pending_oversized = [], 0

    def stop(self) -> None:
        """A clean stop: the final commit, then close."""
        self.commit()
        self.kill()

    def crash(self) -> None:
        self.kill()
        self.start()

    def restart(self) -> None:
        self.stop()
        self.start()

    def offsets(self) -> dict[FileIdentity, FileCheckpoint]:
        """The file rows the state file holds now."""
        return {cp.identity: cp for cp in load_file_checkpoints(self.state, self.source)}

    def counter(self, family: str, **labels: str) -> float:
        """Sum of a counter family's series whose labels include `labels`."""
        found = self.store.family(f"inferwatch_{family}")
        if found is None:
            return 0.0
        total = 0.0
        for key, series in found.series.items():
            assert isinstance(series, CounterSeries)
            if all((name, value) in key for name, value in labels.items()):
                total += series.value
        return total
