"""One tracked log file: its identity, its position, and reading whole lines from it.

A file is known by (device, inode) and checked by two pieces of its content that were already
consumed: the *fingerprint* (its first bytes, up to 4 KiB) and the *tail* (the 64 bytes just
before the offset). A file whose fingerprint or tail no longer matches was truncated and
rewritten (possibly past the old offset), or its inode was reused for a new file. Only crc32s
of both are persisted; the bytes are re-read to verify after a restart.

The offset only ever moves past complete lines, so a partial last line is read again once its
newline arrives, and a crash can never leave the position inside a line. A line longer than
`max_line_bytes` is skipped whole: the offset stays at its start while scanning continues
(`scan_pos`), and jumps past its newline once found, so a crash mid-skip re-scans it rather
than reading its remainder as a line.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from enum import Enum

FINGERPRINT_BYTES = 4096
TAIL_BYTES = 64
READ_CHUNK_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class FileIdentity:
    dev: int
    ino: int


@dataclass(frozen=True, slots=True)
class FileCheckpoint:
    """What the state file keeps of one file (crc32s, not the bytes themselves)."""

    identity: FileIdentity
    path: str
    offset: int
    fp_len: int
    fp_crc: int
    tail_len: int
    tail_crc: int
    last_seen: float  # wall time the file was last seen, for pruning and missed rotations


class FileRole(Enum):
    ACTIVE = "active"  # at a path matched by the source's globs
    ROTATED = "rotated"  # no longer at a matched path: read to its end, then closed
    DEFERRED = "deferred"  # new, but its start equals a tracked file's: maybe a copy


@dataclass(slots=True)
class LineChunk:
    """Complete lines read from one file, the position after them, and lines skipped."""

    lines: list[bytes]
    oversized: int
    end_offset: int


@dataclass(eq=False)
class TrackedFile:
    """An open file and what has been consumed of it."""

    identity: FileIdentity
    path: str
    fd: int
    role: FileRole
    offset: int = 0
    fingerprint: bytes = b""
    tail: bytes = b""
    skipping: bool = False
    scan_pos: int = 0
    size: int = 0  # size at the last fstat
    last_growth: float = 0.0  # monotonic time the file last had new data
    last_seen: float = 0.0  # wall time last seen at a path (or open, when rotated)
    deferred_since: float = 0.0
    deferred_first: float = 0.0  # when it was first deferred: bounds the wait for a copy
    dirty: bool = True  # position changed since the last checkpoint
    exhausted_at: int = -1  # size at which the last read found no complete line
    in_glob: bool = True  # at a path the source's globs match, as of the last scan

    def caught_up(self) -> bool:
        """Nothing complete left to read: at the end, or only a partial last line remains."""
        return self.offset >= self.size or self.exhausted_at == self.size

    def checkpoint(self) -> FileCheckpoint:
        return FileCheckpoint(
            identity=self.identity,
            path=self.path,
            offset=self.offset,
            fp_len=len(self.fingerprint),
            fp_crc=zlib.crc32(self.fingerprint),
            tail_len=len(self.tail),
            tail_crc=zlib.crc32(self.tail),
            last_seen=self.last_seen,
        )

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def fstat_size(self) -> int:
        self.size = os.fstat(self.fd).st_size
        return self.size

    def pending_bytes(self) -> int:
        return max(0, self.size - self.offset)

    def content_still_matches(self) -> bool:
        """Whether the consumed fingerprint and tail are still in the file where they were."""
        if self.tail and os.pread(self.fd, len(self.tail), self.offset - len(self.tail)) != (
            self.tail
        ):
            return False
        return not self.fingerprint or os.pread(self.fd, len(self.fingerprint), 0) == (
            self.fingerprint
        )

    def restore_from(self, saved: FileCheckpoint) -> bool:
        """Resume at a saved position if the file still holds the same consumed bytes."""
        if self.size < saved.offset:
            return False
        fingerprint = os.pread(self.fd, saved.fp_len, 0) if saved.fp_len else b""
        tail_start = saved.offset - saved.tail_len
        tail = os.pread(self.fd, saved.tail_len, tail_start) if saved.tail_len else b""
        if (
            len(fingerprint) != saved.fp_len
            or zlib.crc32(fingerprint) != saved.fp_crc
            or len(tail) != saved.tail_len
            or zlib.crc32(tail) != saved.tail_crc
        ):
            return False
        self.offset = saved.offset
        self.fingerprint = fingerprint
        self.tail = tail
        return True

    def start_at(self, offset: int) -> None:
        """Begin at `offset` (a line boundary) without consuming what lies before it."""
        self.offset = offset
        self.fingerprint = os.pread(self.fd, min(offset, FINGERPRINT_BYTES), 0)
        self.tail = os.pread(self.fd, min(offset, TAIL_BYTES), offset - min(offset, TAIL_BYTES))
        self.dirty = True

    def reset(self) -> None:
        """Start over from byte 0 (after a truncation)."""
        self.offset = 0
        self.fingerprint = b""
        self.tail = b""
        self.skipping = False
        self.scan_pos = 0
        self.dirty = True

    def read_lines(self, max_line_bytes: int) -> LineChunk | None:
        """The next complete lines after the offset (up to about 1 MiB), advancing past them.

        None when there is nothing complete to consume yet. A chunk may hold no lines but
        report progress through an oversized line; call again until None.
        """
        start = self.scan_pos if self.skipping else self.offset
        data = os.pread(self.fd, max(READ_CHUNK_BYTES, max_line_bytes + 1), start)
        if not data:
            self.exhausted_at = self.size
            return None
        if self.skipping:
            return self._continue_skip(data, start)
        last_newline = data.rfind(b"\n")
        if last_newline < 0:
            if len(data) > max_line_bytes:
                self.skipping = True
                self.scan_pos = start + len(data)
                return LineChunk([], 0, self.offset)
            self.exhausted_at = self.size
            return None  # a partial line: wait for its newline
        block = data[: last_newline + 1]
        lines = block.split(b"\n")
        lines.pop()  # the empty piece after the final newline
        if start == 0 and lines[0].startswith(UTF8_BOM):
            lines[0] = lines[0][len(UTF8_BOM):]
        oversized = 0
        if last_newline > max_line_bytes:
            kept = [line for line in lines if len(line) <= max_line_bytes]
            oversized = len(lines) - len(kept)
            lines = kept
        self._consume(block, start)
        return LineChunk(lines, oversized, self.offset)

    def _continue_skip(self, data: bytes, start: int) -> LineChunk:
        newline = data.find(b"\n")
        if newline < 0:
            self.scan_pos = start + len(data)
            return LineChunk([], 0, self.offset)
        end = start + newline + 1
        self.skipping = False
        self.scan_pos = 0
        self.offset = end
        self._refresh_fingerprint_and_tail()
        self.dirty = True
        return LineChunk([], 1, end)

    def _consume(self, block: bytes, start: int) -> None:
        self.offset = start + len(block)
        if len(self.fingerprint) < FINGERPRINT_BYTES:
            if start == len(self.fingerprint):
                self.fingerprint += block[: FINGERPRINT_BYTES - len(self.fingerprint)]
            else:
                self.fingerprint = os.pread(self.fd, min(self.offset, FINGERPRINT_BYTES), 0)
        if len(block) >= TAIL_BYTES:
            self.tail = block[-TAIL_BYTES:]
        else:
            self.tail = (self.tail + block)[-TAIL_BYTES:]
        self.dirty = True

    def _refresh_fingerprint_and_tail(self) -> None:
        if len(self.fingerprint) < FINGERPRINT_BYTES:
            self.fingerprint = os.pread(self.fd, min(self.offset, FINGERPRINT_BYTES), 0)
        length = min(self.offset, TAIL_BYTES)
        self.tail = os.pread(self.fd, length, self.offset - length)


def last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline before `size` (0 if there is none).

    Not bounded by max_line_bytes: a partial last line longer than that must not send
    start_at=end back to byte 0 (it is skipped as oversized once its newline arrives).
    """
    position = size
    block = 64 * 1024
    while position > 0:
        start = max(0, position - block)
        data = os.pread(fd, position - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0
