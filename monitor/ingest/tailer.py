"""Following the files of one source across rotation, truncation, deletion and restarts.

Files are tracked by identity (device, inode), never by name, and each is held open, so:

* rename+create rotation (RotatingFileHandler, logrotate `create`): the old file leaves the
  glob, becomes ROTATED and is read through its open descriptor to its end, including lines a
  writer still appends to the old handle, until it has been idle for `rotate_wait`;
* several rotations between two scans, or while stopped: a rotation of path P triggers a look
  in P's directory for files named like P that changed after P was last seen and are unknown
  — the intermediate generations — which are read from their start;
* copytruncate and truncation: the size falls below the offset, or the consumed fingerprint or
  tail no longer match (truncated then regrown past the old offset). The file restarts at 0,
  and the directory is searched for the copy, identified by holding exactly the consumed
  fingerprint and tail; the copy is read from the old offset, so the lines written between
  the last read and the copy are not lost. A new file in the glob whose start equals a tracked
  file's is DEFERRED for `copy_wait` in case it is such a copy, then read normally;
* deletion: the open descriptor keeps the data readable; the file is read to its end and
  dropped after `rotate_wait`;
* inode reuse while stopped: a saved position is only resumed when the fingerprint and tail
  still match; otherwise the file is new.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatch
from pathlib import PurePath

from monitor.clock import Clock
from monitor.ingest.files import (
    FileCheckpoint,
    FileIdentity,
    FileRole,
    LineChunk,
    TrackedFile,
    last_line_end,
)

log = logging.getLogger(__name__)

_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")
_MTIME_SLACK_S = 1.0
_MAX_COPY_WAIT_FACTOR = 10  # a copy still growing after this many copy_waits is a live log


class RotationAwareTailer:
    """All files of one source: which exist, where each one's reading stands."""

    def __init__(
        self,
        *,
        source: str,
        patterns: Sequence[str],
        exclude: Sequence[str] = (),
        start_at: str = "beginning",
        max_line_bytes: int = 1 << 20,
        saved: Iterable[FileCheckpoint] = (),
        source_known: bool = False,
        clock: Clock,
        rotate_wait: float = 30.0,
        copy_wait: float = 2.0,
        on_error: Callable[[str, OSError], None] | None = None,
    ) -> None:
        self.source = source
        self.patterns = tuple(patterns)
        self.exclude = tuple(exclude)
        self.start_at = start_at
        self.max_line_bytes = max_line_bytes
        self.clock = clock
        self.rotate_wait = rotate_wait
        self.copy_wait = copy_wait
        self.on_error = on_error or self._log_error
        self.files: dict[FileIdentity, TrackedFile] = {}
        self.known: dict[FileIdentity, FileCheckpoint] = {cp.identity: cp for cp in saved}
        self.removed: set[FileIdentity] = set()
        self._closed_unsaved: set[FileIdentity] = set()  # closed; final row not yet written
        self._source_known = source_known
        self._scanned = False
        self._last_scan = 0.0
        self._unreadable: set[str] = set()

    def _log_error(self, where: str, exc: OSError) -> None:
        log.warning("source %s: cannot read %s: %s", self.source, where, exc)

    # -- discovery -------------------------------------------------------------------------

    def directories(self) -> set[str]:
        """Directories whose changes matter: those of the patterns and of open files."""
        dirs = {os.path.dirname(f.path) or "." for f in self.files.values()}
        for pattern in self.patterns:
            parent = os.path.dirname(pattern) or "."
            if glob.has_magic(parent):
                dirs.update(d for d in glob.glob(parent, recursive=True) if os.path.isdir(d))
            elif os.path.isdir(parent):
                dirs.add(parent)
        return dirs

    def matched_paths(self) -> dict[FileIdentity, tuple[str, os.stat_result]]:
        found: dict[FileIdentity, tuple[str, os.stat_result]] = {}
        for pattern in self.patterns:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if self._excluded(path):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # vanished between listing and stat
                if stat.S_ISREG(st.st_mode):
                    found.setdefault(FileIdentity(st.st_dev, st.st_ino), (path, st))
        return found

    def scan(self) -> None:
        """Match the globs against what is tracked: new files, renames, rotations."""
        now = self.clock.time()
        matched = self.matched_paths()
        first_scan = not self._scanned
        self._scanned = True
        self._last_scan, last_scan = now, self._last_scan
        vacated: list[tuple[str, float]] = []
        for identity, tracked in list(self.files.items()):
            hit = matched.get(identity)
            tracked.in_glob = hit is not None
            if hit is not None:
                if tracked.path != hit[0]:
                    tracked.path = hit[0]
                    tracked.dirty = True
                tracked.last_seen = now
                if tracked.role is FileRole.ROTATED:
                    tracked.role = FileRole.ACTIVE
            elif tracked.role is FileRole.ACTIVE:
                vacated.append((tracked.path, tracked.last_seen))
                tracked.role = FileRole.ROTATED
                tracked.last_growth = self.clock.monotonic()
            # A DEFERRED file that left the glob stays deferred: if it is the copy of a file
            # about to be truncated (even compressed and unlinked by now), its open descriptor
            # is still how the lines between the last read and the copy are recovered.
        # Saved files first, then new ones: a new file can only be recognised as a copy of a
        # tracked file once that file is tracked again (glob order is no help).
        new = [(i, hit) for i, hit in matched.items() if i not in self.files]
        for identity, (path, st) in sorted(new, key=lambda item: item[0] not in self.known):
            if identity in self.files:
                continue  # claimed meanwhile as the copy of a file restored just before
            try:
                replaced = self._discover(identity, path, st, first_scan=first_scan, now=now)
            except OSError as exc:
                self._report(path, exc)
                self.files.pop(identity, None)
                continue
            if replaced is not None:
                vacated.append(replaced)  # its inode now holds another file: rotated
            if not first_scan and identity in self.files:
                vacated.append((path, last_scan))  # it may follow unseen rotations
        if first_scan:
            vacated.extend(self._resume_rotated_while_stopped(matched))
        self._recover_missed_rotations(vacated)
        self._review_deferrals()

    def _report(self, where: str, exc: OSError) -> None:
        """An I/O error on one file: reported, never raised out of the tailer."""
        self.on_error(where, exc)

    def _open(self, identity: FileIdentity, path: str, role: FileRole) -> TrackedFile | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if path not in self._unreadable:
                self._unreadable.add(path)
                log.warning("source %s: cannot open %s: %s", self.source, path, exc)
            return None
        st = os.fstat(fd)
        if FileIdentity(st.st_dev, st.st_ino) != identity:
            os.close(fd)  # replaced between stat and open; the next scan sees the new one
            return None
        self._unreadable.discard(path)
        tracked = TrackedFile(identity=identity, path=path, fd=fd, role=role, size=st.st_size,
                              last_seen=self.clock.time(), last_growth=self.clock.monotonic())
        self.files[identity] = tracked
        return tracked

    def _discover(self, identity: FileIdentity, path: str, st: os.stat_result, *,
                  first_scan: bool, now: float) -> tuple[str, float] | None:
        """Start tracking a file; (old path, last seen) when a saved file's inode turned out
        to hold another file (so the saved one went away, maybe by rotation)."""
        replaced = None
        tracked = self._open(identity, path, FileRole.ACTIVE)
        if tracked is None:
            return None
        saved = self.known.pop(identity, None)
        if saved is not None:
            if tracked.restore_from(saved):
                tracked.dirty = tracked.path != saved.path
                return None
            replaced = (saved.path, saved.last_seen)
            log.info("source %s: %s reuses the inode of a file read before, or was truncated "
                     "while stopped; reading it as new", self.source, path)
            self._resume_copy_of(saved)
        if first_scan and not self._source_known and self.start_at == "end":
            tracked.start_at(last_line_end(tracked.fd, tracked.size))
            return replaced
        if (self._source_known or not first_scan) and self._may_be_copy(tracked):
            tracked.role = FileRole.DEFERRED
            tracked.deferred_since = tracked.deferred_first = self.clock.monotonic()
        return replaced

    def _may_be_copy(self, new: TrackedFile) -> bool:
        """Whether all of `new` so far agrees with the consumed start of a tracked file.

        Empty or partly written copies count too: logrotate's copy starts empty and fills up,
        and reading it from 0 in the meantime would count the copied lines twice.
        """
        head_cache: dict[int, bytes] = {}
        for other in self.files.values():
            if other is new or not other.fingerprint or other.role is FileRole.DEFERRED:
                continue
            length = min(new.size, len(other.fingerprint))
            head = head_cache.get(length)
            if head is None:
                head = head_cache[length] = os.pread(new.fd, length, 0)
            if other.fingerprint.startswith(head):
                return True
        return False

    def _review_deferrals(self) -> None:
        """Promote deferred files that turned out not to be copies, or stopped growing."""
        for tracked in self.files.values():
            if tracked.role is FileRole.DEFERRED:
                previous = tracked.size
                try:
                    tracked.fstat_size()
                except OSError:
                    continue
                self._review_deferral(tracked, previous)

    def _review_deferral(self, tracked: TrackedFile, previous_size: int) -> None:
        """Decide again about one deferred file whose size was `previous_size` last time.

        Called at every scan and as soon as the file grows, so a new log created empty and
        then written is read at once, not at the next safety-net rescan.
        """
        now = self.clock.monotonic()
        growing = tracked.size != previous_size
        if growing and now - tracked.deferred_first < _MAX_COPY_WAIT_FACTOR * self.copy_wait:
            tracked.deferred_since = now  # a copy in progress: wait for it to finish
        if not self._may_be_copy(tracked) or now - tracked.deferred_since >= self.copy_wait:
            tracked.role = FileRole.ACTIVE if tracked.in_glob else FileRole.ROTATED
            tracked.last_growth = now

    # -- recovery -----------------------------------------------------------------------------

    def _resume_rotated_while_stopped(
        self, matched: dict[FileIdentity, tuple[str, os.stat_result]]
    ) -> list[tuple[str, float]]:
        """Saved files no longer under the globs: find them beside their old path by inode."""
        vacated = []
        lost = [cp for cp in self.known.values() if cp.identity not in matched]
        by_dir: dict[str, list[FileCheckpoint]] = {}
        for cp in lost:
            by_dir.setdefault(os.path.dirname(cp.path) or ".", []).append(cp)
        for directory, checkpoints in by_dir.items():
            wanted = {cp.identity: cp for cp in checkpoints}
            for entry_path, st in _regular_files(directory):
                identity = FileIdentity(st.st_dev, st.st_ino)
                saved = wanted.pop(identity, None)
                if saved is None:
                    continue
                tracked = self._open(identity, entry_path, FileRole.ROTATED)
                if tracked is not None and tracked.restore_from(saved):
                    del self.known[identity]
                    vacated.append((saved.path, saved.last_seen))
                elif tracked is not None:
                    tracked.close()
                    del self.files[identity]
                    del self.known[identity]  # the inode was reused: another file now
            for cp in wanted.values():
                if not self._is_matched(cp.path):
                    continue  # left the glob by a config change, not by rotation: keep it
                vacated.append((cp.path, cp.last_seen))
                # Gone (deleted, compressed, moved elsewhere): its row can only mislead later.
                del self.known[cp.identity]
                self.removed.add(cp.identity)
        return vacated

    def _recover_missed_rotations(self, vacated: list[tuple[str, float]]) -> None:
        """Read generations of vacated paths that were created and rotated away unseen.

        `vacated` holds (path, wall time it was last seen); one listing per directory.
        """
        by_dir: dict[str, list[tuple[re.Pattern[str], float, str]]] = {}
        for path, last_seen in vacated:
            by_dir.setdefault(os.path.dirname(path) or ".", []).append(
                (_generation_name(PurePath(path).name), last_seen, path))
        for directory, wanted in by_dir.items():
            for entry_path, st in _regular_files(directory):
                name = PurePath(entry_path).name
                identity = FileIdentity(st.st_dev, st.st_ino)
                if identity in self.known and identity not in self.files:
                    self._forget_if_reused(identity, entry_path)
                if (
                    name.endswith(_COMPRESSED_SUFFIXES)
                    or identity in self.files
                    or identity in self.known
                    or self._is_matched(entry_path)
                ):
                    continue
                for generation, last_seen, path in wanted:
                    if generation.match(name) and st.st_mtime >= last_seen - _MTIME_SLACK_S:
                        if self._open(identity, entry_path, FileRole.ROTATED) is not None:
                            log.info("source %s: reading %s, a rotation of %s that was never "
                                     "seen open", self.source, entry_path, path)
                        break

    def _forget_if_reused(self, identity: FileIdentity, path: str) -> None:
        """Drop a closed file's row when its inode now holds another file's content."""
        probe = self._open(identity, path, FileRole.ROTATED)
        if probe is None:
            return
        reused = not probe.restore_from(self.known[identity])
        probe.close()
        del self.files[identity]
        if reused:
            del self.known[identity]
            log.info("source %s: %s reuses the inode of a file read before", self.source, path)

    def _resume_copy_of(self, saved: FileCheckpoint) -> None:
        """A saved file found truncated (copytruncate while stopped, or while closed) may
        have a copy holding what was consumed; if so, resume the copy at the saved offset."""
        directory = os.path.dirname(saved.path) or "."
        for entry_path, st in _regular_files(directory):
            identity = FileIdentity(st.st_dev, st.st_ino)
            if identity in self.files or st.st_size < saved.offset or saved.offset == 0:
                continue
            role = FileRole.ACTIVE if self._is_matched(entry_path) else FileRole.ROTATED
            candidate = self._open(identity, entry_path, role)
            if candidate is None:
                continue
            if candidate.restore_from(dataclasses.replace(saved, identity=identity)):
                self.known.pop(identity, None)
                log.info("source %s: %s was truncated while stopped; reading the rest of its "
                         "copy %s", self.source, saved.path, entry_path)
                return
            candidate.close()
            del self.files[identity]

    def _recover_copy(self, truncated: TrackedFile, offset: int, fingerprint: bytes,
                      tail: bytes) -> None:
        """After a truncation, find the copy holding what was consumed and read its rest.

        Deferred files come first, through their open descriptors (a copy compressed and
        unlinked since is still readable there); then the truncated file's directory.
        """
        def holds_consumed(candidate: TrackedFile) -> bool:
            return (candidate.size >= offset
                    and os.pread(candidate.fd, len(fingerprint), 0) == fingerprint
                    and os.pread(candidate.fd, len(tail), offset - len(tail)) == tail)

        for deferred in list(self.files.values()):
            if deferred.role is FileRole.DEFERRED and holds_consumed(deferred):
                self._resume_copy(deferred, truncated, offset, fingerprint, tail)
                return
        for entry_path, st in _regular_files(os.path.dirname(truncated.path) or "."):
            identity = FileIdentity(st.st_dev, st.st_ino)
            if identity in self.files or st.st_size < offset:
                continue
            candidate = self._open(identity, entry_path, FileRole.ROTATED)
            if candidate is None:
                continue
            if holds_consumed(candidate):
                candidate.in_glob = self._is_matched(entry_path)
                if candidate.in_glob:
                    candidate.role = FileRole.ACTIVE
                self._resume_copy(candidate, truncated, offset, fingerprint, tail)
                return
            candidate.close()
            del self.files[identity]

    def _resume_copy(self, copy: TrackedFile, truncated: TrackedFile, offset: int,
                     fingerprint: bytes, tail: bytes) -> None:
        copy.offset, copy.fingerprint, copy.tail = offset, fingerprint, tail
        copy.dirty = True
        if copy.role is FileRole.DEFERRED:
            copy.role = FileRole.ACTIVE if copy.in_glob else FileRole.ROTATED
            copy.last_growth = self.clock.monotonic()
        log.info("source %s: %s was truncated; reading the rest of its copy %s",
                 self.source, truncated.path, copy.path)

    def _is_matched(self, path: str) -> bool:
        return any(fnmatch(path, p) for p in self.patterns) and not self._excluded(path)

    def _excluded(self, path: str) -> bool:
        """`exclude_paths`: a pattern with a "/" is a path glob, one without matches the
        base name wherever the file is (`*.gz`)."""
        name = os.path.basename(path)
        return any(fnmatch(path if "/" in ex else name, ex) for ex in self.exclude)

    # -- reading ------------------------------------------------------------------------------

    def files_with_data(self, changed_paths: set[str] | None) -> list[TrackedFile]:
        """Files that have unread bytes, after checking each for truncation and rewrites.

        `changed_paths` narrows the check to files the watcher reported (rotated and deferred
        files are always checked); None checks every file.
        """
        ready = []
        now = self.clock.monotonic()
        for tracked in list(self.files.values()):
            if (
                changed_paths is not None
                and tracked.role is FileRole.ACTIVE
                and tracked.path not in changed_paths
            ):
                continue
            try:
                if self._has_data(tracked, now):
                    ready.append(tracked)
            except OSError as exc:
                self._report(tracked.path, exc)
        return ready

    def _has_data(self, tracked: TrackedFile, now: float) -> bool:
        """Check one file for truncation and growth; True when it has bytes to read now."""
        previous_size = tracked.size
        size = tracked.fstat_size()
        if tracked.role is FileRole.DEFERRED and size != previous_size:
            self._review_deferral(tracked, previous_size)
        position = tracked.scan_pos if tracked.skipping else tracked.offset
        if size < tracked.offset or (
            size > position and not tracked.skipping and not tracked.content_still_matches()
        ):
            self._handle_truncation(tracked)
            position = 0
        if size > position:
            tracked.last_growth = now
            return tracked.role is not FileRole.DEFERRED
        if tracked.role is FileRole.ROTATED and now - tracked.last_growth >= self.rotate_wait:
            self._close_rotated(tracked)
        return False

    def read(self, tracked: TrackedFile) -> LineChunk | None:
        return tracked.read_lines(self.max_line_bytes)

    def _handle_truncation(self, tracked: TrackedFile) -> None:
        offset, fingerprint, tail = tracked.offset, tracked.fingerprint, tracked.tail
        log.info("source %s: %s was truncated or rewritten at offset %d; reading it from the "
                 "start", self.source, tracked.path, offset)
        tracked.reset()
        if offset > 0 and fingerprint:
            self._recover_copy(tracked, offset, fingerprint, tail)

    def _close_rotated(self, tracked: TrackedFile) -> None:
        try:
            deleted = os.fstat(tracked.fd).st_nlink == 0
        except OSError:
            deleted = True
        tracked.close()
        del self.files[tracked.identity]
        if deleted:
            self.removed.add(tracked.identity)
            self.known.pop(tracked.identity, None)
        else:
            self.known[tracked.identity] = tracked.checkpoint()
            if tracked.dirty:
                self._closed_unsaved.add(tracked.identity)

    # -- state --------------------------------------------------------------------------------

    def dirty_checkpoints(self) -> list[FileCheckpoint]:
        """Rows to write at the next checkpoint: moved files, and closed ones not yet saved."""
        # Deferred files have no position yet (they may be copies): a restart decides anew.
        rows = [f.checkpoint() for f in self.files.values()
                if f.dirty and f.role is not FileRole.DEFERRED]
        rows.extend(self.known[i] for i in self._closed_unsaved if i in self.known)
        return rows

    def mark_saved(self) -> None:
        """The rows from `dirty_checkpoints` and the `removed` identities are committed."""
        for tracked in self.files.values():
            tracked.dirty = False
        self._closed_unsaved = set()
        self.removed = set()

    def lag_bytes(self) -> int:
        return sum(f.pending_bytes() for f in self.files.values())

    def caught_up(self) -> bool:
        """Whether every open file has been read to the size seen at its last check."""
        return self._scanned and all(
            f.caught_up() or f.role is FileRole.DEFERRED for f in self.files.values()
        )

    def close(self) -> None:
        for tracked in self.files.values():
            tracked.close()
        self.files.clear()


def _generation_name(live_name: str) -> re.Pattern[str]:
    """Names another generation of `live_name` may have: `x.log.1`, `x.log-20260101` (the
    live name and a suffix), `x-20260101.log`, `x-2026-01-01.log` (logrotate's dateext with
    `extension`), `x.1.log`; never a sibling such as `x-stderr.log`, `x-1.log` or `x.err`."""
    stem = re.escape(live_name.split(".", maxsplit=1)[0])
    return re.compile(
        rf"{re.escape(live_name)}[.\-_]|{stem}[.\-_](?:\d{{8}}|\d{{4}}-\d\d-\d\d)|{stem}\.\d+\."
    )


def _regular_files(directory: str) -> list[tuple[str, os.stat_result]]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((entry.path, st))
    return found
