"""Hostile and absurd log content: the report counts it, bounds it and renders it, and never
fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

from report_logs import START, write

from monitor.clock import FakeClock
from monitor.config_models import CostConfig
from monitor.report.aggregate import MAX_ID_CHARS, MAX_MODELS, OVERFLOW
from monitor.report.command import analyse
from monitor.report.document import iso
from monitor.report.render_html import render_html
from monitor.report.render_json import render_json
from monitor.report.render_text import render_text


def _line(**fields: object) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def test_absurd_content_is_counted_bounded_and_rendered(tmp_path: Path) -> None:
    lines = [
        _line(timestamp="0001-01-01T00:00:00", duration_ms=5, service="s"),  # before 1970
        _line(timestamp="9999-12-31T23:59:59Z", duration_ms=5, service="s"),  # after 2999
        _line(timestamp="1970-01-01T00:00:01Z", duration_ms=5, service="s"),
        _line(timestamp="2999-12-31T23:00:00Z", duration_ms=5, service="s"),
        b"[" * 100_000 + b"\n",  # nesting too deep for any parser
        b'{"timestamp": 1, "duration_ms": 1e999}\n',  # not a finite number
        b'{"timestamp": "2026-01-01T00:00:00Z", "duration_ms": 5, "service": "\xff\xfe"}\n',
        b"\x00\x00\x00\n",
        _line(timestamp=iso(START), duration_ms=86_400_000.0, service="s",
              request_id="r" * 100_000),
    ]
    lines += [_line(timestamp=iso(START + i), duration_ms=10, service=f"model-{i}")
              for i in range(MAX_MODELS + 50)]
    write(tmp_path / "weird.log", lines)
    api = [_line(timestamp="1970-01-02T00:00:00Z", model="deepseek-chat",
                 usage={"prompt_tokens": 10, "completion_tokens": 10}),
           _line(timestamp="2999-12-30T00:00:00Z", model="deepseek-chat",
                 usage={"prompt_tokens": 10, "completion_tokens": 10}, cost="1e-3"),
           _line(timestamp=iso(START), model="deepseek-chat", usage={"prompt_tokens": -1})]
    write(tmp_path / "api.jsonl", api)

    doc = analyse([str(tmp_path / "*")], clock=FakeClock(START),
                  cost=CostConfig(timezone="America/New_York"))

    weird = next(f for f in doc["files"] if f["path"].endswith("weird.log"))
    assert weird["malformed"] == 5  # two dates out of range, nesting, 1e999, NULs
    assert weird["parsed"] == len(lines) - 5
    assert len(doc["models"]) == MAX_MODELS + 1
    assert any(m["model"] == OVERFLOW for m in doc["models"])
    slowest = doc["slowest"][0]
    assert slowest["latency_seconds"] == 86_400.0
    assert len(slowest["request_id"]) == MAX_ID_CHARS + 1  # cut, with an ellipsis
    api_file = next(f for f in doc["files"] if f["path"].endswith("api.jsonl"))
    assert (api_file["parsed"], api_file["malformed"]) == (2, 1)
    cost = doc["cost"]
    assert cost["days"][0]["day"] == "1970-01-01"  # New York's day of 1970-01-02T00:00Z
    assert len(cost["days"]) <= 2 * 3660 + 1
    assert cost["unpriced_by_model"] == {"deepseek-chat": 1}  # 1970: before its first price
    for render in (render_text, render_json, render_html):
        assert render(doc)


def test_negative_zero_latency_is_zero(tmp_path: Path) -> None:
    # -0.0 passes the parsers' "not negative" check; its sign bit once made a cell key whose
    # grid value overflowed, and the whole report failed with OverflowError.
    write(tmp_path / "zero.log", [
        b'{"timestamp": "2026-01-01T00:00:00Z", "service": "s", "duration_ms": -0.0,'
        b' "ttft_ms": -0.0}\n',
        _line(timestamp="2026-01-01T00:00:01Z", service="s", duration_ms=4)])

    doc = analyse([str(tmp_path / "zero.log")], clock=FakeClock(START), cost=CostConfig())

    latency = doc["latency_seconds"]
    assert (latency["count"], latency["p50"], latency["max"]) == (2, 0.0, 0.004)
    assert str(latency["min"]) == "0.0"
    assert str(doc["ttft_seconds"]["p99"]) == "0.0"
    render_text(doc)


def test_lone_surrogates_render_as_valid_utf8(tmp_path: Path) -> None:
    # A JSON escape such as "\ud800" in a log line decodes to a lone surrogate, and a file
    # name that is not UTF-8 reaches Python as one (surrogateescape). Neither may fail the
    # JSON output (orjson refuses them) or leave text that UTF-8 cannot encode.
    name = os.fsdecode(b"bad\xff.log")
    write(tmp_path / name, [
        b'{"timestamp": "2026-01-01T00:00:00Z", "service": "s\\ud800", "model": "m\\udcff",'
        b' "request_id": "r\\ud800", "duration_ms": 5, "input_tokens": 1, "output_tokens": 1}\n'])

    doc = analyse([str(tmp_path / "*.log")], clock=FakeClock(START), cost=CostConfig())

    assert doc["requests"]["total"] == 1
    parsed = json.loads(render_json(doc))
    assert parsed["files"][0]["path"].endswith(".log")
    assert parsed["slowest"][0]["request_id"].startswith("r")
    render_html(doc).encode("utf-8")
    render_text(doc).encode("utf-8")
