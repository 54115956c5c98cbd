"""RotationAwareTailer on real files: rotation, truncation, copies, deletion, restarts, giant
lines, and the exactly-once property under any interleaving of writes and reads.

Every test drives the tailer as `IngestService` does (scan, `files_with_data`, read until
None) against a FakeClock; nothing sleeps. Restarts go through the real state file
(`IngestHarness`), so a "crash" loses exactly what was not committed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ingest_helpers import (
    IngestHarness,
    MiB,
    RotatingLog,
    append,
    bare,
    drain,
    drain_all,
    identity,
    ids,
    make_clock,
    new_tailer,
    request_line,
    request_lines,
)

from monitor.ingest.files import UTF8_BOM, FileCheckpoint, FileIdentity
from monitor.storage import StateStore


def assert_exactly_once(read: list[bytes], *written: list[bytes]) -> None:
    """Every written line was read, none twice (order across files is free)."""
    expected = [line for lines in written for line in lines]
    assert sorted(ids(read)) == sorted(ids(bare(expected)))


# -- rename+create rotation ----------------------------------------------------------------


def test_rename_create_rotation_reads_both_generations_once_in_order(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live)
    tailer = new_tailer([live], make_clock())
    first = request_lines("A", 10)
    log.write(first)
    old = identity(live)
    assert drain(tailer).lines == bare(first)

    unread = request_lines("A", 5, start=10)  # written, not yet polled, when the rollover comes
    log.write(unread)
    log.rotate()
    second = request_lines("B", 8)
    log.write(second)
    new = identity(live)

    got = drain_all(tailer)
    assert got.by_file == {old: bare(unread), new: bare(second)}
    log.close()
    tailer.close()


def test_writes_to_the_old_handle_after_rotation_are_read_then_the_file_is_closed(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    harness = IngestHarness(tmp_path, [live], rotate_wait=30.0)
    fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    late = request_lines("A", 6, start=5)
    try:
        os.write(fd, b"".join(request_lines("A", 5)))
        old = identity(live)
        harness.poll()
        harness.commit()

        os.rename(live, tmp_path / "x.log.1")
        append(live, *request_lines("B", 3))
        os.write(fd, b"".join(late[:5]))  # the writer has not reopened yet
        got = harness.poll()
        assert got.by_file[old] == bare(late[:5])
        assert ids(got.by_file[identity(live)]) == ["B-00000", "B-00001", "B-00002"]

        harness.clock.advance(20.0)
        os.write(fd, late[5])
        assert harness.poll().lines == bare(late[5:])
    finally:
        os.close(fd)

    harness.clock.advance(29.0)  # idle 29 s of rotate_wait's 30: still open
    harness.poll()
    assert old in harness.tailer.files
    harness.clock.advance(1.0)
    harness.poll()
    assert old not in harness.tailer.files
    harness.commit()
    # The file still exists (as x.log.1): its row stays, at its end, so it is never re-read.
    assert harness.offsets()[old].offset == (tmp_path / "x.log.1").stat().st_size

    harness.restart()
    assert harness.poll_all().lines == []
    harness.commit()
    assert_exactly_once(harness.committed, request_lines("A", 11), request_lines("B", 3))
    assert harness.counter("requests") == 14
    harness.kill()


def test_file_deleted_while_open_is_read_to_its_end_then_dropped_with_its_row(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    append(live, *request_lines("A", 4))
    harness = IngestHarness(tmp_path, [live], rotate_wait=30.0)
    gone = identity(live)
    harness.poll()
    harness.commit()
    assert gone in harness.offsets()

    append(live, *request_lines("A", 3, start=4))
    live.unlink()
    assert ids(harness.poll().lines) == ["A-00004", "A-00005", "A-00006"]
    harness.clock.advance(29.0)
    harness.poll()
    assert gone in harness.tailer.files
    harness.clock.advance(1.0)
    harness.poll()
    assert gone not in harness.tailer.files
    harness.commit()
    assert gone not in harness.offsets()
    assert harness.counter("requests") == 7
    harness.kill()


# -- copytruncate and truncation -----------------------------------------------------------


def test_copytruncate_recovers_the_lines_written_before_the_copy_from_the_copy(
    tmp_path: Path,
) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    append(live, *request_lines("A", 6))
    tailer = new_tailer([live], make_clock())
    assert ids(drain(tailer).lines) == ids(bare(request_lines("A", 6)))

    unread = request_lines("A", 4, start=6)
    append(live, *unread)  # after the last read, before the copy
    shutil.copyfile(live, copy)
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)

    got = drain_all(tailer)
    assert got.by_file[identity(copy)] == bare(unread)
    assert got.by_file[identity(live)] == bare(after)
    assert_exactly_once(got.lines, unread, after)
    tailer.close()


def test_copytruncate_with_nothing_new_in_the_live_file_still_finds_the_copy(
    tmp_path: Path,
) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    append(live, *request_lines("A", 3))
    tailer = new_tailer([live], make_clock())
    drain(tailer)
    unread = request_lines("A", 2, start=3)
    append(live, *unread)
    shutil.copyfile(live, copy)
    os.truncate(live, 0)
    got = drain_all(tailer)
    assert got.lines == bare(unread)
    tailer.close()


@pytest.mark.parametrize("poll_between_copy_and_truncate", [False, True])
def test_copytruncate_under_a_glob_matching_the_copy_does_not_reread_it(
    tmp_path: Path, poll_between_copy_and_truncate: bool
) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    append(live, *request_lines("A", 6))
    tailer = new_tailer([f"{live}*"], make_clock())
    assert len(drain(tailer).lines) == 6

    unread = request_lines("A", 4, start=6)
    append(live, *unread)
    shutil.copyfile(live, copy)
    got = drain(tailer) if poll_between_copy_and_truncate else None
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)

    rest = drain_all(tailer)
    lines = (got.lines if got else []) + rest.lines
    assert_exactly_once(lines, unread, after)
    tailer.close()


def test_copytruncate_copy_first_seen_while_still_empty_is_not_reread(tmp_path: Path) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    append(live, *request_lines("A", 6))
    tailer = new_tailer([f"{live}*"], make_clock())
    assert len(drain(tailer).lines) == 6

    copy.touch()  # logrotate has created the copy; the inotify CREATE triggers a scan now
    assert drain(tailer).lines == []
    unread = request_lines("A", 4, start=6)
    append(live, *unread)
    copy.write_bytes(live.read_bytes())
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)

    assert_exactly_once(drain_all(tailer).lines, unread, after)
    tailer.close()


@pytest.mark.parametrize("shared_first_line", [False, True])
def test_truncate_then_regrow_past_the_old_offset_reads_the_new_content_from_the_start(
    tmp_path: Path, shared_first_line: bool
) -> None:
    live = tmp_path / "x.log"
    before = request_lines("A", 4)
    append(live, *before)
    tailer = new_tailer([live], make_clock())
    assert len(drain(tailer).lines) == 4
    old = identity(live)

    head = before[:1] if shared_first_line else []
    rewritten = head + request_lines("C", 6, pad=20)
    live.write_bytes(b"".join(rewritten))  # O_TRUNC and rewrite, before the next poll
    assert identity(live) == old
    assert live.stat().st_size > sum(map(len, before))

    assert drain_all(tailer).lines == bare(rewritten)
    tailer.close()


def test_truncation_below_the_offset_reads_the_file_again_from_the_start(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    append(live, *request_lines("A", 10))
    tailer = new_tailer([live], make_clock())
    drain(tailer)
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)
    assert drain_all(tailer).lines == bare(after)
    tailer.close()


# -- identity and restarts ------------------------------------------------------------------


def test_inode_reused_while_stopped_is_read_from_the_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "x.log"
    append(live, *request_lines("A", 10))
    harness = IngestHarness(tmp_path, [live])
    harness.poll()
    harness.stop()
    old = identity(live)

    live.unlink()
    for attempt in range(200):  # kept until the end, so each one takes another free inode
        candidate = logs / f"candidate-{attempt}"
        candidate.touch()
        if identity(candidate) == old:
            candidate.rename(live)
            break
    else:
        pytest.skip("this filesystem did not reuse the freed inode within 200 creations")
    newer = request_lines("N", 12)  # longer than the old offset: the size alone cannot tell
    append(live, *newer)

    harness.start()
    assert harness.poll_all().lines == bare(newer)
    harness.commit()
    assert harness.counter("requests") == 22
    harness.kill()


def _checkpoint_for(path: Path, *, offset: int, fingerprint: bytes, tail: bytes) -> FileCheckpoint:
    return FileCheckpoint(
        identity=identity(path), path=str(path), offset=offset,
        fp_len=len(fingerprint), fp_crc=zlib.crc32(fingerprint),
        tail_len=len(tail), tail_crc=zlib.crc32(tail), last_seen=0.0,
    )


@pytest.mark.parametrize("mismatch", ["fingerprint", "tail", "shorter than the offset"])
def test_saved_position_whose_content_does_not_match_is_not_resumed(
    tmp_path: Path, mismatch: str
) -> None:
    live = tmp_path / "x.log"
    lines = request_lines("B", 6)
    data = b"".join(lines)
    append(live, data)
    offset = sum(map(len, lines[:3]))  # a line boundary inside the new file
    fingerprint, tail = data[:offset], data[offset - 64:offset]
    if mismatch == "fingerprint":
        fingerprint = b"X" + fingerprint[1:]
    elif mismatch == "tail":
        tail = tail[:-2] + b"X\n"
    else:
        offset = len(data) + 100
        fingerprint, tail = data, data[-64:]
    saved = _checkpoint_for(live, offset=offset, fingerprint=fingerprint, tail=tail)
    tailer = new_tailer([live], make_clock(), saved=[saved], source_known=True)
    assert drain_all(tailer).lines == bare(lines)
    tailer.close()


def test_saved_position_whose_content_matches_is_resumed(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    lines = request_lines("B", 6)
    data = b"".join(lines)
    append(live, data)
    offset = sum(map(len, lines[:3]))
    saved = _checkpoint_for(live, offset=offset, fingerprint=data[:offset],
                            tail=data[offset - 64:offset])
    tailer = new_tailer([live], make_clock(), saved=[saved], source_known=True)
    assert drain_all(tailer).lines == bare(lines[3:])
    tailer.close()


def test_partial_line_is_held_back_and_emitted_once_after_a_crash(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    line = request_line("A", 1)
    append(live, request_line("A", 0), line[:20])
    harness = IngestHarness(tmp_path, [live])
    assert ids(harness.poll().lines) == ["A-00000"]
    assert harness.poll().lines == []
    harness.commit()
    assert harness.offsets()[identity(live)].offset == len(request_line("A", 0))

    append(live, line[20:40])  # more of it, still no newline
    assert harness.poll().lines == []
    harness.crash()
    assert harness.poll().lines == []
    append(live, line[40:])
    assert ids(harness.poll().lines) == ["A-00001"]
    harness.commit()
    assert ids(harness.committed) == ["A-00000", "A-00001"]
    assert harness.counter("requests") == 2
    harness.kill()


# -- lines longer than max_line_bytes --------------------------------------------------------


GIANT = 10 * MiB


def test_giant_line_is_skipped_once_and_the_lines_after_it_are_read(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    append(live, request_line("A", 0), b'{"x":"' + b"x" * GIANT + b'"}\n',
           request_line("A", 1), request_line("A", 2))
    harness = IngestHarness(tmp_path, [live], max_line_bytes=MiB)
    got = harness.poll_all()
    assert ids(got.lines) == ["A-00000", "A-00001", "A-00002"]
    assert got.oversized == 1
    harness.commit()
    assert harness.counter("log_lines", result="oversized") == 1
    assert harness.counter("log_lines", result="parsed") == 3
    harness.kill()


def test_giant_line_written_in_pieces_over_several_polls_is_skipped_once(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    append(live, request_line("A", 0), b"{" + b"x" * (3 * MiB))
    tailer = new_tailer([live], make_clock(), max_line_bytes=MiB)
    got = drain(tailer)
    assert (ids(got.lines), got.oversized) == (["A-00000"], 0)
    append(live, b"x" * (3 * MiB))
    got = drain(tailer)
    assert (got.lines, got.oversized) == ([], 0)
    append(live, b"x" * (4 * MiB) + b"}\n", request_line("A", 1))
    got = drain_all(tailer)
    assert (ids(got.lines), got.oversized) == (["A-00001"], 1)
    tailer.close()


def test_restart_in_the_middle_of_skipping_a_giant_line_skips_it_once(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    first = request_line("A", 0)
    append(live, first, b"{" + b"x" * (3 * MiB))
    harness = IngestHarness(tmp_path, [live], max_line_bytes=MiB)
    harness.poll()
    harness.commit()  # committed while skipping: the row stays at the giant line's start
    assert harness.offsets()[identity(live)].offset == len(first)
    append(live, b"x" * (3 * MiB))
    harness.poll()
    harness.crash()

    append(live, b"x" * (4 * MiB) + b"}\n", request_line("A", 1))
    got = harness.poll_all()
    assert (ids(got.lines), got.oversized) == (["A-00001"], 1)
    harness.commit()
    assert ids(harness.committed) == ["A-00000", "A-00001"]
    assert harness.committed_oversized == 1
    assert harness.counter("log_lines", result="oversized") == 1
    harness.kill()


def test_line_of_exactly_max_line_bytes_is_kept_and_one_byte_more_is_oversized(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    limit = 1000
    kept = b"k" * limit
    dropped = b"d" * (limit + 1)
    append(live, kept + b"\n", dropped + b"\n", b"tail\n")
    tailer = new_tailer([live], make_clock(), max_line_bytes=limit)
    got = drain_all(tailer)
    assert (got.lines, got.oversized) == ([kept, b"tail"], 1)
    tailer.close()


# -- discovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("a_line_count", [1, 3])
def test_two_files_with_the_same_first_line_are_both_read_in_full(
    tmp_path: Path, a_line_count: int
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    shared = request_line("S", 0)
    a_lines = [shared, *request_lines("A", a_line_count - 1, start=1)]
    b_lines = [shared, *request_lines("B", 3, start=1)]
    clock = make_clock()
    append(a, *a_lines)
    tailer = new_tailer([tmp_path / "*.log"], clock, copy_wait=2.0)
    assert drain(tailer).lines == bare(a_lines)

    append(b, *b_lines)
    got = drain(tailer)
    if a_line_count == 1:
        # b starts with everything consumed of a: maybe a copy of it, so it waits copy_wait.
        assert got.lines == []
        clock.advance(1.5)
        assert drain(tailer).lines == []
        clock.advance(0.5)
        got = drain(tailer)
    assert got.by_file == {identity(b): bare(b_lines)}
    assert drain_all(tailer).lines == []
    tailer.close()


def test_a_new_log_created_empty_is_read_as_soon_as_it_is_written(tmp_path: Path) -> None:
    """An empty new file may be a copy being made, so it waits; its first distinct line ends
    the wait at once (on the watcher's modify event), without a rescan or copy_wait."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    clock = make_clock()
    append(a, *request_lines("A", 3))
    tailer = new_tailer([tmp_path / "*.log"], clock, copy_wait=2.0)
    assert len(drain(tailer).lines) == 3

    b.touch()
    assert drain(tailer).lines == []  # discovered empty: deferred
    b_lines = request_lines("B", 2)
    append(b, *b_lines)
    got = drain(tailer, scan=False, changed={str(b)})  # no scan, no clock movement
    assert got.by_file == {identity(b): bare(b_lines)}
    tailer.close()


def test_a_new_file_that_starts_like_a_tracked_one_and_keeps_growing_is_still_read(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    banner = request_line("S", 0)  # the same first line in every file, as a startup banner
    clock = make_clock()
    append(a, banner)
    tailer = new_tailer([tmp_path / "*.log"], clock, copy_wait=2.0)
    drain(tailer)
    written = [banner]
    append(b, banner)
    while_growing: list[bytes] = []
    for i in range(30):  # a live log written to every second for 30 s: no copy in progress
        line = request_line("B", i)
        append(b, line)
        written.append(line)
        clock.advance(1.0)
        while_growing.extend(drain(tailer).lines)
    assert while_growing, "b.log was held back as a possible copy for as long as it grew"
    assert while_growing + drain_all(tailer).lines == bare(written)
    tailer.close()


def test_start_at_beginning_reads_a_file_that_existed_before_the_first_poll(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    lines = request_lines("A", 5)
    append(live, *lines)
    tailer = new_tailer([live], make_clock(), start_at="beginning")
    assert drain(tailer).lines == bare(lines)
    tailer.close()


def test_start_at_end_for_a_new_source_starts_after_the_last_complete_line(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    partial = request_line("A", 2)
    append(live, request_line("A", 0), request_line("A", 1), partial[:15])
    tailer = new_tailer([live], make_clock(), start_at="end")
    assert drain(tailer).lines == []
    append(live, partial[15:])
    assert ids(drain(tailer).lines) == ["A-00002"]
    append(live, request_line("A", 3))
    assert ids(drain(tailer).lines) == ["A-00003"]
    tailer.close()


def test_start_at_end_reads_files_created_after_the_first_poll_from_their_start(
    tmp_path: Path,
) -> None:
    tailer = new_tailer([tmp_path / "*.log"], make_clock(), start_at="end")
    append(tmp_path / "old.log", request_line("O", 0))
    # old.log appeared before the first poll: skipped to its end.
    assert drain(tailer).lines == []
    new_lines = request_lines("N", 3)
    append(tmp_path / "new.log", *new_lines)
    assert drain(tailer).lines == bare(new_lines)
    tailer.close()


def test_start_at_end_for_a_known_source_reads_new_files_from_the_start(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    lines = request_lines("A", 4)
    append(live, *lines)
    tailer = new_tailer([live], make_clock(), start_at="end", source_known=True)
    assert drain(tailer).lines == bare(lines)
    tailer.close()


def test_start_at_end_with_a_giant_partial_last_line_does_not_replay_the_file(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    append(live, *request_lines("OLD", 50), b"{" + b"x" * (2 * MiB))
    tailer = new_tailer([live], make_clock(), start_at="end", max_line_bytes=MiB)
    assert drain_all(tailer).lines == []
    append(live, b"}\n", request_line("A", 0))
    got = drain_all(tailer)
    assert (ids(got.lines), got.oversized) == (["A-00000"], 1)
    tailer.close()


def test_rotation_does_not_read_unrelated_files_that_share_the_name_prefix(
    tmp_path: Path,
) -> None:
    live = tmp_path / "app.log"
    append(tmp_path / "app-stderr.log", request_line("STDERR", 0))
    append(tmp_path / "application.json", request_line("OTHER", 0))
    append(live, *request_lines("A", 2))
    tailer = new_tailer([live], make_clock())
    drain(tailer)
    os.rename(live, tmp_path / "app.log.1")
    after = request_lines("B", 2)
    append(live, *after)
    assert drain_all(tailer).lines == bare(after)
    tailer.close()


# -- several rotations between two polls ------------------------------------------------------


@pytest.mark.parametrize("rotations", [2, 4])
def test_rotations_missed_between_polls_are_recovered_with_a_live_only_glob(
    tmp_path: Path, rotations: int
) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live, backup_count=3)
    log.write(request_lines("A", 5))
    tailer = new_tailer([live], make_clock())
    assert len(drain(tailer).lines) == 5

    written: dict[FileIdentity, list[bytes]] = {identity(live): request_lines("A", 2, start=5)}
    log.write(written[identity(live)])
    for generation in range(rotations):
        log.rotate()
        lines = request_lines(f"G{generation}", 3)
        log.write(lines)
        written[identity(live)] = lines
    # With 4 rotations and 3 backups, the first file is deleted: still read through its fd.
    got = drain_all(tailer)
    assert got.by_file == {key: bare(lines) for key, lines in written.items()}
    log.close()
    tailer.close()


def test_rotations_between_polls_under_a_glob_matching_every_generation(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live, backup_count=3)
    log.write(request_lines("A", 5))
    tailer = new_tailer([f"{live}*"], make_clock())
    assert len(drain(tailer).lines) == 5

    written: dict[FileIdentity, list[bytes]] = {identity(live): request_lines("A", 2, start=5)}
    log.write(written[identity(live)])
    for generation in range(3):
        log.rotate()
        lines = request_lines(f"G{generation}", 3)
        log.write(lines)
        written[identity(live)] = lines
    got = drain_all(tailer)
    assert got.by_file == {key: bare(lines) for key, lines in written.items()}
    log.close()
    tailer.close()


def test_a_first_generation_rotated_away_before_any_poll_saw_it_is_read(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    tailer = new_tailer([live], make_clock())
    assert drain(tailer).lines == []  # the directory is watched; no file yet
    log = RotatingLog(live)
    first = request_lines("A", 3)
    log.write(first)
    log.rotate()
    second = request_lines("B", 2)
    log.write(second)
    assert_exactly_once(drain_all(tailer).lines, first, second)
    log.close()
    tailer.close()


def test_missed_generation_reusing_the_inode_of_a_closed_deleted_file_is_read(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    clock = make_clock()
    log = RotatingLog(live, backup_count=1)
    log.write(request_lines("A", 3))
    first = identity(live)
    tailer = new_tailer([live], clock, rotate_wait=30.0)
    drain(tailer)
    log.rotate()  # A -> x.log.1
    log.write(request_lines("B", 2))
    drain(tailer)
    clock.advance(30.0)
    drain(tailer)
    assert first in tailer.known  # A read to its end and closed; its row is kept

    log.rotate()  # A deleted (its inode is free now), B -> x.log.1, C created
    reused = identity(live)
    if reused != first:
        log.close()
        tailer.close()
        pytest.skip("this filesystem did not reuse the freed inode for the next file")
    middle = request_lines("C", 4)
    log.write(middle)
    log.rotate()  # C -> x.log.1 before any poll saw it; D created
    fresh = request_lines("D", 2)
    log.write(fresh)
    assert_exactly_once(drain_all(tailer).lines, middle, fresh)
    log.close()
    tailer.close()


# -- changes while stopped ------------------------------------------------------------------


def test_rotation_while_stopped_resumes_the_old_file_at_its_saved_offset(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live)
    log.write(request_lines("A", 5))
    harness = IngestHarness(tmp_path, [live])
    old = identity(live)
    harness.poll()
    harness.stop()

    tail = request_lines("A", 3, start=5)  # after the checkpoint, before the rotation
    log.write(tail)
    log.rotate()
    fresh = request_lines("B", 4)
    log.write(fresh)

    harness.start()
    got = harness.poll_all()
    assert got.by_file == {old: bare(tail), identity(live): bare(fresh)}
    harness.commit()
    assert_exactly_once(harness.committed, request_lines("A", 8), fresh)
    assert harness.counter("requests") == 12
    log.close()
    harness.kill()


def test_two_rotations_while_stopped_also_read_the_generation_in_between(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live, backup_count=3)
    log.write(request_lines("A", 5))
    harness = IngestHarness(tmp_path, [live])
    old = identity(live)
    harness.poll()
    harness.stop()

    log.write(request_lines("A", 1, start=5))
    log.rotate()
    middle = identity(live)
    log.write(request_lines("B", 3))
    log.rotate()
    log.write(request_lines("C", 2))

    harness.start()
    got = harness.poll_all()
    assert got.by_file == {
        old: bare(request_lines("A", 1, start=5)),
        middle: bare(request_lines("B", 3)),
        identity(live): bare(request_lines("C", 2)),
    }
    log.close()
    harness.kill()


def test_rotations_while_stopped_that_deleted_the_saved_file_still_read_the_middle_one(
    tmp_path: Path,
) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live, backup_count=1)
    log.write(request_lines("A", 5))
    harness = IngestHarness(tmp_path, [live])
    harness.poll()
    harness.stop()

    log.rotate()  # A -> x.log.1
    middle = request_lines("B", 3)
    log.write(middle)
    log.rotate()  # A deleted, B -> x.log.1
    fresh = request_lines("C", 2)
    log.write(fresh)

    harness.start()
    assert_exactly_once(harness.poll_all().lines, middle, fresh)
    log.close()
    harness.kill()


def test_generation_rotated_while_stopped_on_a_reused_inode_is_read(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    log = RotatingLog(live, backup_count=3)
    log.write(request_lines("A", 5))
    harness = IngestHarness(tmp_path, [live])
    harness.poll()
    harness.stop()

    log.rotate()  # A -> x.log.1
    middle = request_lines("B", 3)
    log.write(middle)
    reused = identity(live)
    log.rotate()  # A -> x.log.2, B -> x.log.1
    fresh = request_lines("C", 2)
    log.write(fresh)
    # The state file still holds a row for B's inode: a generation deleted long ago while
    # it was open, which the daemon stopped before closing (that is how it happens for real).
    state = StateStore(harness.state_dir)
    with state.transaction() as cursor:
        cursor.execute(
            "INSERT INTO file_offsets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("logs", reused.dev, reused.ino, str(live), 10_000, 4096, 123, 64, 456,
             harness.clock.time() - 600),
        )
    state.close()

    harness.start()
    assert_exactly_once(harness.poll_all().lines, middle, fresh)
    log.close()
    harness.kill()


def test_copytruncate_while_stopped_recovers_the_unread_lines_from_the_copy(
    tmp_path: Path,
) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    append(live, *request_lines("A", 5))
    harness = IngestHarness(tmp_path, [live])
    harness.poll()
    harness.stop()

    unread = request_lines("A", 3, start=5)
    append(live, *unread)
    shutil.copyfile(live, copy)
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)

    harness.start()
    assert_exactly_once(harness.poll_all().lines, unread, after)
    harness.kill()


def test_copytruncate_while_stopped_under_a_glob_matching_the_copy_does_not_reread_it(
    tmp_path: Path,
) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    append(live, *request_lines("A", 5))
    harness = IngestHarness(tmp_path, [f"{live}*"])
    harness.poll()
    harness.stop()

    unread = request_lines("A", 3, start=5)
    append(live, *unread)
    shutil.copyfile(live, copy)
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)

    harness.start()
    harness.clock.advance(5.0)  # past copy_wait, whatever the tailer decided to wait for
    assert_exactly_once(harness.poll_all().lines, unread, after)
    harness.kill()


# -- encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("bom_arrives_alone", [False, True])
def test_crlf_lines_and_a_bom_at_the_start_of_the_file_parse(
    tmp_path: Path, bom_arrives_alone: bool
) -> None:
    live = tmp_path / "x.log"
    lines = [line.replace(b"\n", b"\r\n") for line in request_lines("A", 3)]
    harness = IngestHarness(tmp_path, [live])
    append(live, UTF8_BOM)
    if bom_arrives_alone:
        assert harness.poll().lines == []
    append(live, *lines, b"\r\n")  # and an empty CRLF line, which is no request at all
    got = harness.poll()
    assert not got.lines[0].startswith(UTF8_BOM)
    assert ids(got.lines[:3]) == ["A-00000", "A-00001", "A-00002"]
    harness.commit()
    assert harness.counter("log_lines", result="parsed") == 3
    assert harness.counter("log_lines", result="malformed") == 0
    assert harness.counter("requests", status="success") == 3
    harness.kill()


def test_a_bom_is_stripped_only_at_offset_zero(tmp_path: Path) -> None:
    live = tmp_path / "x.log"
    append(live, request_line("A", 0))
    harness = IngestHarness(tmp_path, [live])
    harness.poll()
    append(live, UTF8_BOM + request_line("A", 1), request_line("A", 2))
    got = harness.poll()
    assert got.lines[0].startswith(UTF8_BOM)
    harness.commit()
    assert harness.counter("log_lines", result="parsed") == 2
    assert harness.counter("log_lines", result="malformed") == 1
    harness.kill()


# -- the exactly-once property ---------------------------------------------------------------

_line = st.binary(max_size=40).filter(lambda b: b"\n" not in b)
_actions = st.lists(st.sampled_from(["poll", "scan", "read", "commit", "crash"]), max_size=3)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_split_of_writes_with_any_interleaving_of_reads_yields_the_same_lines(
    data: st.DataObject,
) -> None:
    lines = data.draw(st.lists(_line, max_size=25), label="lines")
    partial = data.draw(_line, label="partial tail")
    stream = b"".join(line + b"\n" for line in lines) + partial
    assume(not stream.startswith(UTF8_BOM))  # a BOM at offset 0 is stripped on purpose
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts"))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "x.log"
        path.touch()
        clock = make_clock()
        saved: dict[FileIdentity, FileCheckpoint] = {}
        tailer = new_tailer([path], clock)
        got: list[bytes] = []
        committed = 0

        def read_ready() -> None:
            for tracked in tailer.files_with_data(None):
                while (chunk := tailer.read(tracked)) is not None:
                    got.extend(chunk.lines)

        for piece in pieces:
            append(path, piece)
            for action in data.draw(_actions, label="actions"):
                if action == "poll":
                    tailer.scan()
                    read_ready()
                elif action == "scan":
                    tailer.scan()
                elif action == "read":
                    read_ready()
                elif action == "commit":
                    saved.update((cp.identity, cp) for cp in tailer.dirty_checkpoints())
                    tailer.mark_saved()
                    committed = len(got)
                else:  # crash: what was read since the last commit is read again
                    tailer.close()
                    del got[committed:]
                    tailer = new_tailer([path], clock, saved=list(saved.values()),
                                        source_known=bool(saved))
            assert all(b"\n" not in line for line in got)
        tailer.scan()
        read_ready()
        tailer.close()
    assert got == lines


# -- scale ----------------------------------------------------------------------------------


def test_a_poll_of_1000_idle_files_reads_no_file_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(1000):
        append(tmp_path / f"f{i:04d}.log", request_line("F", i))
    tailer = new_tailer([tmp_path / "*.log"], make_clock())
    assert len(drain(tailer).lines) == 1000

    calls: list[str] = []

    def counting(name: str, real: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(os, "pread", counting("pread", os.pread))
    monkeypatch.setattr(os, "open", counting("open", os.open))
    tailer.scan()
    assert tailer.files_with_data(None) == []
    assert calls == []
    monkeypatch.undo()
    tailer.close()


def test_files_with_data_narrowed_to_changed_paths_still_checks_rotated_files(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    append(a, request_line("A", 0))
    append(b, request_line("B", 0))
    tailer = new_tailer([tmp_path / "*.log"], make_clock())
    drain(tailer)
    append(a, request_line("A", 1))
    append(b, request_line("B", 1))
    assert ids(drain(tailer, scan=False, changed={str(a)}).lines) == ["A-00001"]
    rotated = identity(b)
    append(b, request_line("B", 2))
    os.rename(b, tmp_path / "b.old")  # leaves the glob: rotated
    tailer.scan()
    got = drain(tailer, scan=False, changed=set())
    assert got.by_file == {rotated: bare([request_line("B", 1), request_line("B", 2)])}
    tailer.close()


# -- copytruncate with a restart, or a deletion, between the copy and the truncation ---------


def test_copy_seen_then_restart_before_the_truncate_is_not_saved_nor_reread(
    tmp_path: Path,
) -> None:
    """logrotate copied x.log to x.log.1 (matched by the glob), the daemon saw the copy and
    committed, then was killed; the truncation comes after the restart."""
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    first = request_lines("A", 6)
    append(live, *first)
    harness = IngestHarness(tmp_path, [f"{live}*"])
    assert harness.poll().lines == bare(first)
    harness.commit()

    unread = request_lines("A", 4, start=6)
    append(live, *unread)
    shutil.copyfile(live, copy)
    harness.tailer.scan()  # the copy's CREATE: found, deferred as a possible copy
    harness.commit()  # a checkpoint before this cycle read anything
    # A deferred file has no position yet: no row, so a restart cannot resume it at 0.
    assert identity(copy) not in harness.offsets()
    harness.crash()

    harness.tailer.scan()  # the restart's first scan: the copy is deferred again
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)
    got = harness.poll_all()
    assert sorted(ids(got.lines)) == sorted(ids(bare(unread + after)))
    harness.commit()
    assert_exactly_once(harness.committed, first, unread, after)
    assert harness.counter("requests") == 12
    harness.kill()


@pytest.mark.parametrize("read_live_before_truncate", [False, True])
def test_copy_made_while_stopped_and_truncated_after_the_start_is_not_reread(
    tmp_path: Path, read_live_before_truncate: bool
) -> None:
    """The daemon never saw the copy before it stopped: at the start, a new file under the
    glob that starts like a saved one is a possible copy, not a file to read from 0."""
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    first = request_lines("A", 6)
    append(live, *first)
    harness = IngestHarness(tmp_path, [f"{live}*"])
    harness.poll()
    harness.stop()

    unread = request_lines("A", 4, start=6)
    append(live, *unread)
    shutil.copyfile(live, copy)

    harness.start()
    if read_live_before_truncate:
        assert harness.poll().lines == bare(unread)  # from the live file; the copy waits
    else:
        harness.tailer.scan()
    os.truncate(live, 0)
    after = request_lines("B", 2)
    append(live, *after)
    harness.poll_all()
    harness.commit()
    assert_exactly_once(harness.committed, first, unread, after)
    assert harness.counter("requests") == 12
    harness.kill()


def test_deferred_copy_compressed_and_deleted_before_the_truncation_is_read_through_its_fd(
    tmp_path: Path,
) -> None:
    live, copy = tmp_path / "x.log", tmp_path / "x.log.1"
    first = request_lines("A", 6)
    append(live, *first)
    harness = IngestHarness(tmp_path, [f"{live}*"], exclude=["*.gz"])
    harness.poll()
    harness.commit()

    unread = request_lines("A", 4, start=6)
    append(live, *unread)
    shutil.copyfile(live, copy)
    harness.tailer.scan()  # the copy is deferred
    os.truncate(live, 0)
    with gzip.open(tmp_path / "x.log.1.gz", "wb") as compressed:
        compressed.write(copy.read_bytes())
    copy.unlink()  # logrotate's compress: only the open descriptor still holds the copy
    after = request_lines("B", 2)
    append(live, *after)

    got = harness.poll_all()
    assert sorted(ids(got.lines)) == sorted(ids(bare(unread + after)))
    harness.commit()
    assert_exactly_once(harness.committed, first, unread, after)
    assert harness.counter("log_lines", result="malformed") == 0
    harness.kill()


# -- exclude_paths --------------------------------------------------------------------------


def test_exclude_without_a_slash_matches_base_names_and_with_one_whole_paths(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "any" / "dir"
    logs.mkdir(parents=True)
    for name in ("x.log", "x.log.1", "x.log.1.gz", "x.log.2", "x.log.3"):
        append(logs / name, request_line(name, 0))
    tailer = new_tailer(
        [logs / "x.log*"], make_clock(),
        exclude=["*.gz", "x.log.2", f"{logs}/x.log.3*", "dir/x.log.1"],
    )
    got = drain(tailer)
    # "dir/x.log.1" has a "/": a path glob, which the absolute path does not match.
    assert sorted(ids(got.lines)) == ["x.log-00000", "x.log.1-00000"]
    assert sorted(os.path.basename(f.path) for f in tailer.files.values()) == [
        "x.log", "x.log.1"]
    tailer.close()
