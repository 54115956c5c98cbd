"""`/metrics` of a real daemon checked by the real `promtool check metrics` (SPEC §6).

The daemon reads both schemas with errors of every class, malformed and oversized lines and
label values that need escaping (quotes, backslash, newline, CJK). The text exposition must
pass promtool with no lint output at all; both encodings must parse with prometheus_client's
parsers and agree with each other and with what was written.

Skips without /usr/bin/promtool unless INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from monitor.demo.lines import CHAT_MODEL, SERVICE, GeneratedLine, format_timestamp
from monitor.demo.workload import BENCH_START_TIME, generate_lines

pytestmark = pytest.mark.integration

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
MAX_LINE_BYTES = 64 * 1024
ODD_MODEL = 'weird "quoted" \\ back\nslash 模型'


def handmade(schema: str, record: dict[str, Any], *, model: str, error_class: str | None,
             status: int | None = None) -> GeneratedLine:
    """A line the generators never write, and what it means."""
    stamp = format_timestamp(BENCH_START_TIME + 5)
    data = orjson.dumps({"timestamp": stamp, **record}, option=orjson.OPT_APPEND_NEWLINE)
    return GeneratedLine(data=data, schema=schema, model=model,  # type: ignore[arg-type]
                         error_class=error_class, status=status, duration_ms=0.0,
                         input_tokens=0, output_tokens=0)


# Error classes the generators leave out (client, other) or rarely produce (403).
INFERENCE_EXTRA = [
    handmade("inference", {"level": "ERROR", "service": SERVICE, "duration_ms": 12.5,
                           "status": 400, "error": "bad request: prompt is empty"},
             model=SERVICE, error_class="client", status=400),
    handmade("inference", {"level": "ERROR", "service": SERVICE, "duration_ms": 3.0,
                           "error": "worker said something odd"},
             model=SERVICE, error_class="other"),
    handmade("inference", {"service": SERVICE, "duration_ms": 1.0, "status": 403,
                           "error": "forbidden"},
             model=SERVICE, error_class="auth", status=403),
]
API_EXTRA = [
    handmade("api_usage", {"model": CHAT_MODEL, "status": 404, "duration_ms": 8.0,
                           "error": {"type": "invalid_request_error",
                                     "message": "Model Not Exist"}},
             model=CHAT_MODEL, error_class="client", status=404),
    handmade("api_usage", {"model": CHAT_MODEL, "duration_ms": 4.0,
                           "error": {"type": "unknown", "message": "something odd"}},
             model=CHAT_MODEL, error_class="other"),
    handmade("api_usage", {"model": ODD_MODEL, "status": 200, "duration_ms": 900.0},
             model=ODD_MODEL, error_class=None, status=200),
]
INFERENCE_MALFORMED = [
    b"this is not json\n",
    b"[1, 2, 3]\n",
    b'{"timestamp": "2026-01-01T00:00:00Z", "level": "INFO"}\n',
    b'{"timestamp": "yesterday", "duration_ms": 5}\n',
]
API_MALFORMED = [
    b'{"timestamp": "2026-01-01T00:00:00Z", "status": 200}\n',
    b"{truncated\n",
]


def oversized_line(schema: str) -> bytes:
    record = {"timestamp": "2026-01-01T00:00:00Z", "duration_ms": 1.0, "model": CHAT_MODEL,
              "service": SERVICE, "schema": schema, "prompt_truncated": "x" * MAX_LINE_BYTES}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def write_source(path: Path, generated: list[GeneratedLine], extra: list[GeneratedLine],
                 malformed: list[bytes], oversized: bytes) -> None:
    half = len(generated) // 2
    parts = [line.data for line in generated[:half]]
    parts += malformed
    parts.append(b"\n")  # a blank line: neither a request nor a mistake
    parts += [line.data for line in extra]
    parts.append(oversized)
    parts += [line.data for line in generated[half:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))


def test_metrics_pass_promtool_and_both_parsers(
        promtool: Path, tmp_path: Path, free_port: Callable[[], int],
        write_config: Callable[..., Path], fast_ingest: dict[str, str],
        spawn_daemon: Callable[..., Any], truth: Any, compare_samples: Any,
        parse_exposition: Callable[[str], Any]) -> None:
    inference_log = tmp_path / "logs" / "inference.log"
    api_log = tmp_path / "logs" / "usage.jsonl"
    inference = list(generate_lines(600, "inference", seed=101, error_rate=0.5))
    api = list(generate_lines(600, "api_usage", seed=102, error_rate=0.5))
    write_source(inference_log, inference, INFERENCE_EXTRA, INFERENCE_MALFORMED,
                 oversized_line("inference"))
    write_source(api_log, api, API_EXTRA, API_MALFORMED, oversized_line("api_usage"))
    for source, lines, extra, malformed in (
            ("inference", inference, INFERENCE_EXTRA, INFERENCE_MALFORMED),
            ("api", api, API_EXTRA, API_MALFORMED)):
        truth.add_all(source, lines)
        truth.add_all(source, extra)
        truth.add_result(source, "malformed", len(malformed))
        truth.add_result(source, "oversized")
    classes = {key for key in truth.counts if key[0] == "request_errors_total"}
    assert {dict(labels)["class"] for _, labels in classes} == {
        "timeout", "rate_limit", "auth", "connection", "oom", "server", "client", "other"}

    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": fast_ingest,
        "host": {"enabled": False},
        "gpu": {"enabled": False},
        "sources": [
            {"name": "inference", "paths": [str(inference_log)], "schema": "inference",
             "max_line_bytes": MAX_LINE_BYTES},
            {"name": "api", "paths": [str(api_log)], "schema": "api_usage",
             "max_line_bytes": MAX_LINE_BYTES},
        ],
    })
    daemon = spawn_daemon(config, port)
    daemon.wait_ready()

    text = daemon.get("/metrics")
    assert text.status == 200
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    checked = subprocess.run([str(promtool), "check", "metrics"], input=text.body,
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""

    samples = parse_exposition(text.body)
    assert compare_samples(samples, truth.samples()) == ""
    histogram_counts = {labels: value for (name, labels), value in samples.items()
                        if name == "inferwatch_request_duration_seconds_count"}
    requests_by_series: dict[frozenset[tuple[str, str]], float] = {}
    for (name, labels), value in samples.items():
        if name == "inferwatch_requests_total":
            series = frozenset(item for item in labels if item[0] != "status")
            requests_by_series[series] = requests_by_series.get(series, 0) + value
    # Every request had a duration, so each series' histogram counts all its requests.
    assert histogram_counts == requests_by_series

    om = daemon.get("/metrics", headers={"Accept": OPENMETRICS})
    assert om.status == 200
    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.body.endswith("# EOF\n")
    om_samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in openmetrics_families(om.body):
        types[family.name] = family.type
        for sample in family.samples:
            om_samples[sample.name, frozenset(sample.labels.items())] = sample.value
    assert types["inferwatch_requests"] == "counter"
    assert types["inferwatch_request_duration_seconds"] == "histogram"
    assert types["inferwatch_log_lag_bytes"] == "gauge"
    # The same numbers in both encodings (gauges may move between the two scrapes).
    moving = ("inferwatch_log_lag_bytes", "inferwatch_log_files")
    assert {k: v for k, v in om_samples.items() if not k[0].startswith(moving)} == {
        k: v for k, v in samples.items() if not k[0].startswith(moving)}
    assert any(dict(labels).get("model") == ODD_MODEL for _, labels in om_samples)


@pytest.mark.parametrize("series_limit", [
    4,
    2,
])
def test_series_cap_overflow_passes_promtool(
        promtool: Path, tmp_path: Path, free_port: Callable[[], int],
        write_config: Callable[..., Path], fast_ingest: dict[str, str],
        spawn_daemon: Callable[..., Any], parse_exposition: Callable[[str], Any],
        series_limit: int) -> None:
    """At the series cap, the `__overflow__` series and series_dropped_total are valid too.

    The api source overflows three families (requests, errors, input tokens) at a cap of 4;
    at a cap of 2 more families overflow than series_dropped_total may hold.
    """
    api_log = tmp_path / "logs" / "usage.jsonl"
    api = list(generate_lines(300, "api_usage", seed=103, error_rate=0.5))
    write_source(api_log, api, API_EXTRA, API_MALFORMED, oversized_line("api_usage"))
    port = free_port()
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": fast_ingest,
        "metrics": {"series_limit": series_limit},
        "sources": [{"name": "api", "paths": [str(api_log)], "schema": "api_usage",
                     "max_line_bytes": MAX_LINE_BYTES}],
    })
    daemon = spawn_daemon(config, port)
    daemon.wait_ready()
    text = daemon.get("/metrics").body
    checked = subprocess.run([str(promtool), "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""
    samples = parse_exposition(text)
    requests = {labels: v for (name, labels), v in samples.items()
                if name == "inferwatch_requests_total"}
    assert any(dict(labels).get("model") == "__overflow__" for labels in requests)
    # Diverted, not lost: every request is still counted once.
    assert sum(requests.values()) == len(api) + len(API_EXTRA)
    assert any(name == "inferwatch_series_dropped_total" and value > 0
               for (name, _), value in samples.items())
