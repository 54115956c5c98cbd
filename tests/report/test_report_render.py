"""The three renderings of one report: JSON keys and types as documented, hostile strings
from the logs escaped in HTML and neutralised in text, and the command line around them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from report_logs import START, generated, write

from monitor.clock import FakeClock
from monitor.report.command import analyse, run_report
from monitor.report.document import iso
from monitor.report.render_html import render_html
from monitor.report.render_text import render_text

HOSTILE_SERVICE = '<script>alert(1)</script>'
HOSTILE_MODEL = '"><img src=x onerror=alert(2)>'
HOSTILE_ID = "</td><svg onload=alert(3)>"
TERMINAL_ESCAPE = "\x1b]0;pwned\x07\x1b[31mred"

TOP_LEVEL_KEYS = ["report_version", "generated_at", "since", "range",
                  "percentile_grid_relative_error", "files", "warnings", "lines", "requests",
                  "latency_seconds", "ttft_seconds", "throughput_tokens_per_second", "tokens",
                  "rates", "errors", "models", "timeline", "cost", "slowest", "correlation",
                  "recommendations"]
SUMMARY_KEYS = ["count", "min", "avg", "p50", "p95", "p99", "max"]


def hostile_logs(directory: Path) -> list[Path]:
    inference = []
    for i in range(40):
        record: dict[str, Any] = {
            "timestamp": iso(START + i * 60.0), "level": "ERROR" if i % 10 == 0 else "INFO",
            "service": HOSTILE_SERVICE, "request_id": f"{HOSTILE_ID}-{i}",
            "duration_ms": 500_000.0 + i * 50, "input_tokens": 100 + i, "output_tokens": 50,
            "prompt_truncated": "<script>alert('prompt')</script> secret prompt text"}
        if i % 3:  # otherwise the service names the model
            record["model"] = HOSTILE_MODEL if i % 3 == 1 else TERMINAL_ESCAPE
        if i % 10 == 0:
            record["error"] = "CUDA out of memory <b>now</b>"
        inference.append(json.dumps(record).encode() + b"\n")
    api = [line.data for line in generated("api_usage", 200, seed=3, start=START)]
    api.append(json.dumps({"timestamp": iso(START + 30.0), "model": "<i>private</i>",
                           "usage": {"prompt_tokens": 5, "completion_tokens": 5}}).encode()
               + b"\n")
    return [write(directory / "svc<b>.log", inference), write(directory / "api.jsonl", api)]


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    hostile_logs(tmp_path)
    return analyse([str(tmp_path / "*")], clock=FakeClock(START + 86400.0))


class _Collector(HTMLParser):
    """Tags and attributes as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_escapes_everything_from_the_logs(document: dict[str, Any]) -> None:
    page = render_html(document)
    parsed = _Collector()
    parsed.feed(page)
    assert not {"script", "img"} & set(parsed.tags)
    assert not [a for a in parsed.attributes if a.startswith("on")]
    assert "svg" in parsed.tags  # the charts, inline
    text = "".join(parsed.text)
    for hostile in (HOSTILE_SERVICE, HOSTILE_MODEL, "<i>private</i>", "svc<b>.log",
                    f"{HOSTILE_ID}-"):
        assert hostile in text  # shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "secret prompt text" not in page  # prompt text never reaches a report
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "<script" not in page.lower()


def test_text_neutralises_terminal_escapes(document: dict[str, Any]) -> None:
    text = render_text(document)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned" in text
    assert "secret prompt text" not in text


def test_json_keys_types_and_money(document: dict[str, Any]) -> None:
    parsed = json.loads(json.dumps(document))
    assert list(parsed) == TOP_LEVEL_KEYS
    for key in ("latency_seconds", "ttft_seconds", "throughput_tokens_per_second"):
        assert list(parsed[key]) == SUMMARY_KEYS
    assert list(parsed["requests"]) == ["total", "success", "error", "success_ratio",
                                        "error_ratio"]
    assert isinstance(parsed["latency_seconds"]["p99"], float)
    cost = parsed["cost"]
    assert all(isinstance(cost[k], str) for k in ("total",))
    assert all(isinstance(day["amount"], str) for day in cost["days"])
    assert cost["unpriced_by_model"] == {"<i>private</i>": 1}
    assert parsed["models"][0]["model"] in {HOSTILE_MODEL, TERMINAL_ESCAPE, "deepseek-chat"}
    for model in parsed["models"]:
        assert list(model) == ["model", "requests", "errors_by_class", "latency_seconds",
                               "ttft_seconds", "throughput_tokens_per_second", "tokens"]
    assert "secret prompt text" not in json.dumps(parsed)


def test_the_command_line(tmp_path: Path,
                          run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    now = time.time()
    lines = [line.data for line in generated("inference", 120, seed=9, start=now - 7200.0,
                                             spacing_s=60.0)]
    write(tmp_path / "logs" / "app.log", lines)

    done = run_cli("report", "--logs", str(tmp_path / "logs" / "*.log"), "--since", "1h",
                   "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["since"]["duration"] == "1h"
    assert 0 < doc["requests"]["total"] <= 61 < 120
    assert doc["lines"]["before_since"] + doc["requests"]["total"] == 120

    for fmt, marker in (("text", "REQUESTS"), ("html", "<!DOCTYPE html>")):
        done = run_cli("report", "--logs", str(tmp_path / "logs" / "app.log"), "--format", fmt)
        assert done.returncode == 0, done.stderr
        assert marker in done.stdout

    done = run_cli("report", "--logs", str(tmp_path / "nothing-*.log"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("inferwatch: report: no log file")
    assert "Traceback" not in done.stderr

    done = run_cli("report", "--logs", str(tmp_path / "logs" / "app.log"), "--since", "1x")
    assert done.returncode == 2 and "invalid duration" in done.stderr

    config = tmp_path / "inferwatch.yml"
    config.write_text("cost:\n  currency: USD\n  timezone: Asia/Shanghai\n")
    write(tmp_path / "logs" / "usage.jsonl", [line.data for line in generated(
        "api_usage", 50, seed=4, start=now - 600.0, spacing_s=1.0)])
    done = run_cli("report", "--logs", str(tmp_path / "logs" / "usage.jsonl"), "--config",
                   str(config), "--format", "json")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)["cost"]
    assert (cost["currency"], cost["timezone"], cost["requests"]) == ("USD", "Asia/Shanghai", 50)

    done = run_cli("report", "--help")
    assert "nearest-rank" in done.stdout and "Theil-Sen" in done.stdout


def test_run_report_formats_agree(tmp_path: Path) -> None:
    hostile_logs(tmp_path)
    clock = FakeClock(START + 86400.0)
    as_json = json.loads(run_report([str(tmp_path / "*")], output="json", clock=clock))
    as_text = run_report([str(tmp_path / "*")], output="text", clock=clock)
    total = as_json["requests"]["total"]
    assert f"{total:,} requests" in as_text
    assert as_json["cost"]["total"] in as_text
