"""Writing synthetic traffic to disk: rotating writer, async demo driver, benchmark files.

Files, under the demo directory (`LOG_PATHS`):

    inference/deepseek-r1.log     rotated to deepseek-r1.log.1 ... .<backup_count>
    api/usage.jsonl               rotated to usage.jsonl.1 ... .<backup_count>

A demo config points the `inference` source at `<dir>/inference/deepseek-r1.log` and the
`api_usage` source at `<dir>/api/usage.jsonl` (or globs `<dir>/inference/*.log`,
`<dir>/api/*.jsonl` that match only the live files); the rotated names are where the
tailer must find the rest of a file it was reading when the rename happened.

`RotatingLineWriter` reproduces `logging.handlers.RotatingFileHandler` on disk: the same
size test (`size + len(line) >= max_bytes`, counted in bytes, and never on an empty file, as
in CPython 3.12+), the same rename sequence, `backup_count=0` meaning "never rotate". Each
line goes out in one `os.write` on an `O_APPEND` descriptor, so a tailer never sees a torn
line except at EOF while the write is in progress.

`DemoWorkload.run` is the only place that waits; `emit_due` does the work of one wake-up
against the injected clock, so tests drive it with a `FakeClock` and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Final

from monitor.clock import Clock
from monitor.demo.lines import (
    DEFAULT_ERROR_RATE,
    SCHEMAS,
    GeneratedLine,
    Incident,
    Schema,
    active_kinds,
    generate_line,
    rate_factor,
)

INFERENCE_LOG: Final = PurePosixPath("inference/deepseek-r1.log")
API_USAGE_LOG: Final = PurePosixPath("api/usage.jsonl")
LOG_PATHS: Final[Mapping[Schema, PurePosixPath]] = {
    "inference": INFERENCE_LOG,
    "api_usage": API_USAGE_LOG,
}
DEFAULT_RATES: Final[Mapping[Schema, float]] = {"inference": 5.0, "api_usage": 3.0}
DEFAULT_MAX_BYTES: Final = 256 * 1024
DEFAULT_BACKUP_COUNT: Final = 3
BENCH_START_TIME: Final = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_MAX_WAIT_S: Final = 1.0
_CHUNK_BYTES: Final = 1 << 20


def log_path(directory: Path, schema: Schema) -> Path:
    """The live file of `schema` under a demo directory."""
    return directory / LOG_PATHS[schema]


def rotated_paths(path: Path, backup_count: int) -> list[Path]:
    """`path` and its backups, newest first: `x`, `x.1`, ... `x.<backup_count>`."""
    return [path, *(path.with_name(f"{path.name}.{i}") for i in range(1, backup_count + 1))]


def _write_all(fd: int, data: bytes) -> None:
    # A regular file takes the whole buffer in one call; the loop covers a short write
    # (disk full, signal) without ever splitting a line across two calls otherwise.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class RotatingLineWriter:
    """Appends whole lines to `path`, rotating exactly like `RotatingFileHandler`."""

    def __init__(self, path: Path, *, max_bytes: int, backup_count: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes: must be >= 0, got {max_bytes}")
        if backup_count < 0:
            raise ValueError(f"backup_count: must be >= 0, got {backup_count}")
        self.path = path
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.rotations = 0
        self._fd: int | None = None

    def __enter__(self) -> RotatingLineWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write(self, line: bytes) -> bool:
        """Append one line (exactly one `\\n`, at the end); True when it rotated first."""
        if not line.endswith(b"\n") or line.count(b"\n") != 1:
            raise ValueError("a line must end with its only newline")
        rotated = self._should_rollover(len(line))
        if rotated:
            self._do_rollover()
        _write_all(self._open(), line)
        return rotated

    def write_unrotated(self, lines: bytes) -> None:
        """Append a chunk of whole lines in one write, without the rotation test."""
        if lines and not lines.endswith(b"\n"):
            raise ValueError("a chunk must end with a newline")
        _write_all(self._open(), lines)

    def _should_rollover(self, size: int) -> bool:
        # bpo-45401: never roll over anything but a regular file (/dev/null, a FIFO).
        if self.path.exists() and not self.path.is_file():
            return False
        fd = self._open()
        if self.max_bytes > 0:
            position = os.lseek(fd, 0, os.SEEK_END)
            if not position:  # gh-116263: never roll over an empty file
                return False
            if position + size >= self.max_bytes:
                return True
        return False

    def _do_rollover(self) -> None:
        self.close()
        if self.backup_count > 0:
            for i in range(self.backup_count - 1, 0, -1):
                source, dest = self._backup(i), self._backup(i + 1)
                if source.exists():
                    if dest.exists():
                        dest.unlink()
                    source.rename(dest)
            dest = self._backup(1)
            if dest.exists():
                dest.unlink()
            if self.path.exists():
                self.path.rename(dest)
            self.rotations += 1
        self._open()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")


@dataclass
class WorkloadStats:
    """What was written, in the terms the daemon's metrics use.

    Keys: `requests[(schema, model, "success"|"error")]`, `errors[(schema, class)]`,
    `input_tokens[(schema, model, "hit"|"miss"|"unknown")]` (unknown: the line has no cache
    split), `output_tokens[(schema, model)]`, `reasoning_tokens[(schema, model)]`. Inference
    lines carry no `model`; they are keyed by their `service`.
    """

    lines: Counter[str] = field(default_factory=Counter)
    bytes_written: Counter[str] = field(default_factory=Counter)
    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    input_tokens: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    output_tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    reasoning_tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    rotations: Counter[str] = field(default_factory=Counter)
    incidents_seen: set[str] = field(default_factory=set)

    def record(self, line: GeneratedLine) -> None:
        schema, model = line.schema, line.model
        self.lines[schema] += 1
        self.bytes_written[schema] += len(line.data)
        self.requests[schema, model, "error" if line.is_error else "success"] += 1
        if line.error_class is not None:
            self.errors[schema, line.error_class] += 1
        if line.cache_hit_tokens is None or line.cache_miss_tokens is None:
            if line.input_tokens:
                self.input_tokens[schema, model, "unknown"] += line.input_tokens
        else:
            self.input_tokens[schema, model, "hit"] += line.cache_hit_tokens
            self.input_tokens[schema, model, "miss"] += line.cache_miss_tokens
        if line.output_tokens:
            self.output_tokens[schema, model] += line.output_tokens
        if line.reasoning_tokens:
            self.reasoning_tokens[schema, model] += line.reasoning_tokens

    def error_ratio(self, schema: Schema) -> float:
        lines = self.lines[schema]
        errors = sum(n for (s, _), n in self.errors.items() if s == schema)
        return errors / lines if lines else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest for the demo's closing report."""
        return {
            schema: {
                "lines": self.lines[schema],
                "bytes": self.bytes_written[schema],
                "errors": {c: n for (s, c), n in sorted(self.errors.items()) if s == schema},
                "rotations": self.rotations[schema],
            }
            for schema in SCHEMAS
        } | {"incidents_seen": sorted(self.incidents_seen)}


class DemoWorkload:
    """Synthetic inference and API traffic written to a demo directory at Poisson rates.

    `rates` are requests per second per schema (0 turns a schema off); incident windows
    are seconds from the first `emit_due` (or `run`). Each schema draws from its own
    generator seeded from `rng`, so one stream does not shift the other.
    """

    def __init__(
        self,
        directory: Path,
        clock: Clock,
        rng: random.Random,
        *,
        rates: Mapping[Schema, float] = DEFAULT_RATES,
        incidents: Sequence[Incident] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        backup_count: int = DEFAULT_BACKUP_COUNT,
        error_rate: float = DEFAULT_ERROR_RATE,
    ) -> None:
        for schema, rate in rates.items():
            if schema not in SCHEMAS:
                raise ValueError(f"rates: unknown schema {schema!r}")
            if rate < 0:
                raise ValueError(f"rates.{schema}: must be >= 0, got {rate}")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate: must be within [0, 1], got {error_rate}")
        self.directory = directory
        self.incidents = tuple(incidents)
        self.error_rate = error_rate
        self.stats = WorkloadStats()
        self._clock = clock
        self._rates: dict[Schema, float] = {s: float(rates.get(s, 0.0)) for s in SCHEMAS}
        self._rngs = {
            s: random.Random(rng.getrandbits(64))  # noqa: S311 - synthetic traffic, no secrets
            for s in SCHEMAS
        }
        self._writers = {
            s: RotatingLineWriter(
                log_path(directory, s), max_bytes=max_bytes, backup_count=backup_count
            )
            for s in SCHEMAS
        }
        self._origin: float | None = None
        self._next_due: dict[Schema, float] = {}

    @property
    def paths(self) -> dict[Schema, Path]:
        """The live file of each schema."""
        return {s: w.path for s, w in self._writers.items()}

    def elapsed_s(self) -> float:
        """Seconds since the workload started (0 before it has)."""
        if self._origin is None:
            return 0.0
        return self._clock.monotonic() - self._origin

    def active_incidents(self) -> tuple[Incident, ...]:
        offset = self.elapsed_s()
        return tuple(i for i in self.incidents if i.active_at(offset))

    def _next_gap(self, schema: Schema, offset: float) -> float:
        rate = self._rates[schema] * rate_factor(schema, active_kinds(self.incidents, offset))
        return self._rngs[schema].expovariate(rate)

    def emit_due(self) -> float:
        """Write every line due by the clock's now; return seconds until the next is due."""
        now = self._clock.monotonic()
        if self._origin is None:
            self._origin = now
            for schema in SCHEMAS:
                if self._rates[schema] > 0:
                    self._next_due[schema] = self._next_gap(schema, 0.0)
        elapsed = now - self._origin
        wall_now = self._clock.time()
        self.stats.incidents_seen.update(active_kinds(self.incidents, elapsed))
        for schema, first_due in list(self._next_due.items()):
            writer = self._writers[schema]
            due = first_due
            while due <= elapsed:
                active = active_kinds(self.incidents, due)
                line = generate_line(
                    schema,
                    self._rngs[schema],
                    wall_now - (elapsed - due),
                    active=active,
                    error_rate=self.error_rate,
                )
                if writer.write(line.data):
                    self.stats.rotations[schema] += 1
                self.stats.record(line)
                self.stats.incidents_seen.update(active)
                due += self._next_gap(schema, due)
            self._next_due[schema] = due
        if not self._next_due:
            return _MAX_WAIT_S
        return max(0.0, min(self._next_due.values()) - elapsed)

    async def run(self, stop: asyncio.Event) -> None:
        """Write traffic until `stop` is set, then close the files."""
        try:
            while not stop.is_set():
                delay = min(self.emit_due(), _MAX_WAIT_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            self.close()

    def write_burst(
        self,
        n_lines: int,
        schema: Schema,
        start_time: float | None = None,
        spacing_s: float = 0.001,
        *,
        active: Collection[str] = (),
    ) -> int:
        """Append `n_lines` of `schema` as fast as possible, with no rotation; bytes written.

        Timestamps run from `start_time` (default: the clock's now) in steps of `spacing_s`;
        lines go out in chunks of whole lines, one `os.write` per chunk.
        """
        start = self._clock.time() if start_time is None else start_time
        lines = _generate(
            schema,
            self._rngs[schema],
            n_lines,
            start_time=start,
            spacing_s=spacing_s,
            error_rate=self.error_rate,
            active=active,
        )
        return _write_chunks(self._writers[schema], lines, self.stats)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def _generate(
    schema: Schema,
    rng: random.Random,
    n_lines: int,
    *,
    start_time: float,
    spacing_s: float,
    error_rate: float,
    active: Collection[str] = (),
    incidents: Sequence[Incident] = (),
) -> Iterator[GeneratedLine]:
    for i in range(n_lines):
        offset = i * spacing_s
        kinds = active_kinds(incidents, offset) | frozenset(active) if incidents else active
        yield generate_line(schema, rng, start_time + offset, active=kinds, error_rate=error_rate)


def _write_chunks(
    writer: RotatingLineWriter, lines: Iterator[GeneratedLine], stats: WorkloadStats
) -> int:
    total = 0
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        stats.record(line)
        chunk.append(line.data)
        size += len(line.data)
        if size >= _CHUNK_BYTES:
            writer.write_unrotated(b"".join(chunk))
            total += size
            chunk, size = [], 0
    if chunk:
        writer.write_unrotated(b"".join(chunk))
        total += size
    return total


def generate_lines(
    n_lines: int,
    schema: Schema,
    seed: int,
    *,
    start_time: float = BENCH_START_TIME,
    spacing_s: float = 0.01,
    error_rate: float = DEFAULT_ERROR_RATE,
    incidents: Sequence[Incident] = (),
) -> Iterator[GeneratedLine]:
    """`n_lines` lines of `schema` from `seed`; incident offsets count from `start_time`."""
    rng = random.Random(seed)  # noqa: S311 - synthetic traffic, no secrets
    return _generate(
        schema,
        rng,
        n_lines,
        start_time=start_time,
        spacing_s=spacing_s,
        error_rate=error_rate,
        incidents=incidents,
    )


def generate_file(
    path: Path,
    n_lines: int,
    schema: Schema,
    seed: int,
    *,
    start_time: float = BENCH_START_TIME,
    spacing_s: float = 0.01,
    error_rate: float = DEFAULT_ERROR_RATE,
    incidents: Sequence[Incident] = (),
) -> WorkloadStats:
    """Write a fresh file of `n_lines` lines (truncating `path`), as fast as possible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    stats = WorkloadStats()
    lines = generate_lines(
        n_lines,
        schema,
        seed,
        start_time=start_time,
        spacing_s=spacing_s,
        error_rate=error_rate,
        incidents=incidents,
    )
    with RotatingLineWriter(path, max_bytes=0, backup_count=0) as writer:
        _write_chunks(writer, lines, stats)
    return stats
