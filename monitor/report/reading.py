"""The files of `inferwatch report`: which ones, in what order, read how.

* Globs expand like a shell's: each `--logs` pattern on its own, `~` expanded, hidden names
  only when the pattern says so, matches sorted — except that the generations of one log are
  put in time order, oldest first: `app.log.3.gz`, `app.log.2`, `app.log.1`, then `app.log`
  (numbered generations by falling number, dated ones such as `app.log-20260101` by date, the
  live file last). A file matched twice (same device and inode) is read once.
* Compression is recognised by the file's first bytes, not its name: gzip, bzip2 and xz are
  decompressed as they stream; anything else is read as it is. FIFOs work too.
* Lines are read in chunks of about 1 MiB: memory does not grow with the file. A line longer
  than `max_line_bytes` is skipped whole and counted as oversized (as the daemon does); a
  UTF-8 byte-order mark at the start of a file is dropped; a last line without a newline is
  still read (an offline file is complete).
* The schema of each file (`inference` or `api_usage`, SPEC §5) is decided from the fields of
  its first lines (`sniff_schema`): no configuration is needed to report on either.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import orjson

Schema = Literal["inference", "api_usage"]
READ_BYTES = 1 << 20
DEFAULT_MAX_LINE_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))

# `base` then an optional generation suffix then an optional compression suffix.
_GENERATION = re.compile(
    r"^(?P<base>.+?)(?:\.(?P<number>\d{1,6})|[-._](?P<date>\d{8}(?:[-_T]?\d{2,6})?"
    r"|\d{4}-\d{2}-\d{2}(?:[-_T]\d{2}(?:[-:]?\d{2}){0,2})?))?(?:\.(?:gz|bz2|xz))?$")

# Fields that only one schema has: a line holding more of one kind than the other is of that
# schema. `service` and `status` are left out: both schemas may carry them.
API_FIELDS = frozenset({"usage", "request_tokens", "response_tokens", "model_name",
                        "response_time", "cost"})
INFERENCE_FIELDS = frozenset({"input_tokens", "output_tokens", "throughput_tps", "ttft_ms",
                              "prompt_truncated", "response_truncated", "level"})
SNIFF_VOTES = 16  # decided lines that settle a file's schema
SNIFF_MAX_LINES = 256  # lines looked at, at most, before deciding anyway


@dataclass
class LogFile:
    """One file to read, in reading order."""

    path: str
    pattern: str


@dataclass
class Chunk:
    """Complete lines read from a file, and how many lines were skipped as oversized."""

    lines: list[bytes]
    oversized: int


def generation_key(path: str) -> tuple[str, str, int, int, str]:
    """Sort key putting the generations of one log oldest first and the live file last."""
    directory, name = os.path.split(path)
    match = _GENERATION.match(name)
    if match is None:  # only an empty name fails; a path here always has one
        return (directory, name, 2, 0, "")
    base = match.group("base")
    if match.group("number") is not None:
        return (directory, base, 0, -int(match.group("number")), "")
    if match.group("date") is not None:
        return (directory, base, 1, 0, re.sub(r"\D", "", match.group("date")))
    return (directory, base, 2, 0, name)


def expand(patterns: Sequence[str]) -> tuple[list[LogFile], list[str]]:
    """The files the patterns match, in reading order, and one warning per pattern that
    matches no readable file (a non-regular, non-FIFO path is skipped with a warning)."""
    files: list[LogFile] = []
    warnings: list[str] = []
    seen: set[tuple[int, int]] = set()
    for pattern in patterns:
        expanded = str(Path(pattern).expanduser())
        # glob.glob, as a shell: absolute and relative patterns alike, hidden names excluded.
        matches = (glob.glob(expanded)  # noqa: PTH207
                   if glob.has_magic(expanded) else [expanded])
        found = 0
        for path in sorted(matches, key=generation_key):
            try:
                info = Path(path).stat()
            except OSError as exc:
                warnings.append(f"{path}: {exc.strerror or exc}")
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
                warnings.append(f"{path}: not a file, skipped")
                continue
            identity = (info.st_dev, info.st_ino)
            found += 1
            if identity not in seen:
                seen.add(identity)
                files.append(LogFile(path, pattern))
        if not found and glob.has_magic(expanded):
            warnings.append(f"{pattern}: no file matches")
    return files, warnings


class ByteStream(Protocol):
    def read1(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class OpenedLog:
    """A binary stream of a file's (decompressed) content, the file under it, and the
    compression found (None for a plain file)."""

    stream: ByteStream
    raw: ByteStream
    compression: str | None

    def close(self) -> None:
        try:
            if self.stream is not self.raw:
                self.stream.close()
        finally:
            self.raw.close()


def open_log(path: str) -> OpenedLog:
    """The file opened for reading, decompressing when its first bytes say so."""
    raw = Path(path).open("rb")  # noqa: SIM115 - OpenedLog.close closes it
    try:
        head = raw.peek(6)[:6]
        for magic, kind in _MAGIC:
            if head.startswith(magic):
                if kind == "gzip":
                    return OpenedLog(gzip.GzipFile(fileobj=raw, mode="rb"), raw, kind)
                if kind == "bzip2":
                    return OpenedLog(bz2.BZ2File(raw, mode="rb"), raw, kind)
                return OpenedLog(lzma.LZMAFile(raw, mode="rb"), raw, kind)
    except BaseException:
        raw.close()
        raise
    return OpenedLog(raw, raw, None)


def read_chunks(stream: ByteStream, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                read_bytes: int = READ_BYTES) -> Iterator[Chunk]:
    """The stream's lines in chunks; memory stays within about 2·read_bytes + max_line_bytes.

    `read1` returns what one read (or one decompression step) gives, so the lines before a
    damaged part of a compressed file are yielded before the error that ends it propagates.
    """
    carry = b""
    skipping = False  # inside an oversized line, looking for its end
    first = True
    read = stream.read1
    while True:
        data = read(read_bytes)
        if not data:
            break
        if first:
            while len(data) < len(UTF8_BOM):  # a pipe may hand over fewer bytes than a BOM
                more = read(read_bytes)
                if not more:
                    break
                data += more
            first = False
            if data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM):]
        oversized = 0
        if skipping:
            newline = data.find(b"\n")
            if newline < 0:
                continue
            data = data[newline + 1:]
            skipping = False
            oversized = 1
        # Split the new data alone (no copy of the block): only the carried partial line is
        # joined to its rest.
        lines = data.split(b"\n")
        if carry:
            lines[0] = carry + lines[0]
        carry = lines.pop()
        if len(carry) > max_line_bytes:
            skipping, carry = True, b""
        if lines and len(data) > max_line_bytes and max(map(len, lines)) > max_line_bytes:
            kept = [line for line in lines if len(line) <= max_line_bytes]
            oversized += len(lines) - len(kept)
            lines = kept
        elif lines and len(lines[0]) > max_line_bytes:  # a carried line grew too long
            del lines[0]
            oversized += 1
        if lines or oversized:
            yield Chunk(lines, oversized)
    if skipping:
        yield Chunk([], 1)
    elif carry:
        yield Chunk([carry], 0)


def vote(obj: object) -> Schema | None:
    """The schema one decoded line looks like, or None when it does not tell."""
    if type(obj) is not dict:
        return None
    api = sum(1 for key in obj if key in API_FIELDS)
    inference = sum(1 for key in obj if key in INFERENCE_FIELDS)
    if api != inference:
        return "api_usage" if api > inference else "inference"
    has_model = "model" in obj or "model_name" in obj
    if has_model and "duration_ms" not in obj:
        return "api_usage"
    if "duration_ms" in obj and not has_model:
        return "inference"
    return None


def sniff_schema(lines: Iterable[bytes]) -> Schema | None:
    """The schema of most of the first lines that tell one (see `vote`); ties go to
    `inference`. None when no line tells: the caller decides."""
    votes = {"inference": 0, "api_usage": 0}
    undecided_models = 0
    looked = 0
    for line in lines:
        if looked >= SNIFF_MAX_LINES or votes["inference"] + votes["api_usage"] >= SNIFF_VOTES:
            break
        if not line.strip():
            continue
        looked += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        found = vote(obj)
        if found is not None:
            votes[found] += 1
        elif type(obj) is dict and ("model" in obj or "model_name" in obj):
            undecided_models += 1
    if votes["inference"] or votes["api_usage"]:
        return "api_usage" if votes["api_usage"] > votes["inference"] else "inference"
    if undecided_models:
        return "api_usage"  # `model` and `duration_ms` both: a gateway's failed call
    return None
