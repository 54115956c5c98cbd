"""Which files `inferwatch report` reads, in what order, and how: rotation order, compression
by content, streaming lines (oversized, BOM, no final newline), damaged files, FIFOs, and the
per-file schema."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from report_logs import START, generated, write

from monitor.clock import FakeClock
from monitor.report.command import analyse
from monitor.report.reading import (
    expand,
    generation_key,
    open_log,
    read_chunks,
    sniff_schema,
)


def test_generations_sort_oldest_first_and_the_live_file_last() -> None:
    names = ["app.log", "app.log.1", "app.log.10.gz", "app.log.2.gz", "app.log.9",
             "app.log-20260102", "app.log-20260101.gz", "other.log", "other.log.1"]
    ordered = [os.path.basename(p) for p in sorted((f"/l/{n}" for n in names),
                                                   key=generation_key)]
    assert ordered == ["app.log.10.gz", "app.log.9", "app.log.2.gz", "app.log.1",
                       "app.log-20260101.gz", "app.log-20260102", "app.log",
                       "other.log.1", "other.log"]


def test_expand_reads_each_file_once_and_names_what_matched_nothing(tmp_path: Path) -> None:
    for name in ("b.log", "a.log", "a.log.1", ".hidden.log"):
        (tmp_path / name).write_text("")
    (tmp_path / "dir.log").mkdir()
    files, warnings = expand([str(tmp_path / "*.log*"), str(tmp_path / "a.log"),
                              str(tmp_path / "none-*.log"), str(tmp_path / "missing.log")])
    assert [Path(f.path).name for f in files] == ["a.log.1", "a.log", "b.log"]
    assert any("dir.log: not a file" in w for w in warnings)
    assert any("none-*.log: no file matches" in w for w in warnings)
    assert any("missing.log" in w for w in warnings)


def _reference_lines(data: bytes, limit: int) -> tuple[list[bytes], int]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    kept = [p for p in pieces if len(p) <= limit]
    return kept, len(pieces) - len(kept)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), max_size=30),
       st.booleans(), st.booleans(), st.integers(min_value=1, max_value=64),
       st.integers(min_value=1, max_value=32))
def test_chunks_hold_exactly_the_lines_of_the_file(
        lines: list[bytes], bom: bool, final_newline: bool, read_bytes: int,
        limit: int) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (
        b"\n" if final_newline and lines else b"")
    got: list[bytes] = []
    oversized = 0
    for chunk in read_chunks(io.BytesIO(data), max_line_bytes=limit, read_bytes=read_bytes):
        got.extend(chunk.lines)
        oversized += chunk.oversized
    assert (got, oversized) == _reference_lines(data, limit)


def test_compression_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    payload = b'{"a": 1}\n{"a": 2}\n'
    for name, data, kind in (("x.log", gzip.compress(payload), "gzip"),
                             ("y.gz", bz2.compress(payload), "bzip2"),
                             ("z", lzma.compress(payload), "xz"),
                             ("plain.gz", payload, None)):
        (tmp_path / name).write_bytes(data)
        opened = open_log(str(tmp_path / name))
        try:
            assert opened.compression == kind
            assert opened.stream.read1(1 << 20) == payload
        finally:
            opened.close()


def test_a_truncated_gzip_file_costs_only_its_missing_end(tmp_path: Path) -> None:
    lines = generated("inference", 3000, seed=5)
    whole = gzip.compress(b"".join(line.data for line in lines))
    (tmp_path / "cut.log.gz").write_bytes(whole[: len(whole) // 2])
    write(tmp_path / "fine.log", [line.data for line in lines[:10]])

    doc = analyse([str(tmp_path / "*")], clock=FakeClock(START))

    cut, fine = doc["files"]
    assert cut["error"] is not None and cut["error"].startswith("reading stopped")
    assert 0 < cut["parsed"] < 3000
    assert fine["parsed"] == 10 and fine["error"] is None
    assert doc["requests"]["total"] == cut["parsed"] + 10
    assert any("cut.log.gz" in w for w in doc["warnings"])


def test_a_fifo_is_read_to_its_end(tmp_path: Path) -> None:
    lines = generated("api_usage", 500, seed=6)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as out:
            for line in lines:
                out.write(line.data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    doc = analyse([str(fifo)], clock=FakeClock(START))
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert doc["files"][0]["schema"] == "api_usage"
    assert doc["requests"]["total"] == 500


def test_schema_is_decided_by_the_fields_of_the_first_lines() -> None:
    api_failure = (b'{"timestamp": "2026-01-01T00:00:00Z", "request_id": "r", "model": '
                   b'"deepseek-chat", "status": 429, "duration_ms": 12.5, "error": '
                   b'{"type": "rate_limit_error", "message": "Rate limit reached"}}')
    inference = generated("inference", 3, seed=1)
    api = generated("api_usage", 3, seed=2)
    assert sniff_schema(line.data for line in inference) == "inference"
    assert sniff_schema(line.data for line in api) == "api_usage"
    assert sniff_schema([b"garbage", api_failure]) == "api_usage"
    assert sniff_schema([b'{"timestamp": 1, "duration_ms": 5}']) == "inference"
    assert sniff_schema([b"garbage", b"", b"[]"]) is None


def test_each_file_gets_its_own_schema_and_odd_lines_are_counted(tmp_path: Path) -> None:
    inference = generated("inference", 50, seed=3)
    api = generated("api_usage", 50, seed=4)
    write(tmp_path / "a.log", [b"\xef\xbb\xbf", *(line.data for line in inference)])
    long_line = b'{"timestamp": "2026-01-01T00:00:00Z", "x": "' + b"y" * (2 << 20) + b'"}\n'
    write(tmp_path / "b.jsonl", [api[0].data, long_line, *(line.data for line in api[1:]),
                                 b"\n", b'{"truncated": '])
    doc = analyse([str(tmp_path / "*")], clock=FakeClock(START))
    a, b = doc["files"]
    assert (a["schema"], a["parsed"], a["malformed"]) == ("inference", 50, 0)
    assert (b["schema"], b["parsed"], b["oversized"], b["blank"], b["malformed"]) == (
        "api_usage", 50, 1, 1, 1)
    assert b["lines"] == 53
    assert "not JSON" in b["malformed_reasons"][0]
