"""`inferwatch report`'s figures against the plain reference of report_logs.py, over logs the
demo's generators wrote: both schemas, three models, errors of every class, some malformed
lines, a rotated and gzip-compressed generation, and `--since` on a fake clock."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from report_logs import (
    START,
    Reference,
    generated,
    spearman,
    summary,
    write,
)

from monitor.clock import FakeClock
from monitor.demo.lines import GeneratedLine
from monitor.report.command import analyse

BAD_LINES = [b"not json at all", b'{"timestamp": "2026-01-01T00:00:00Z"}', b"[1, 2]", b"   "]


def _lines(items: list[GeneratedLine]) -> list[bytes]:
    return [line.data for line in items]


@pytest.fixture(scope="module")
def traffic() -> dict[str, list[GeneratedLine]]:
    return {"inference": generated("inference", 2500, seed=11, spacing_s=13.0),
            "api_usage": generated("api_usage", 2500, seed=12, spacing_s=13.0)}


def _write_logs(directory: Path, traffic: dict[str, list[GeneratedLine]]) -> None:
    inference, api = traffic["inference"], traffic["api_usage"]
    # The inference log rotated twice: the oldest generation gzip-compressed, with a few
    # malformed lines (and a blank one) in the middle generation.
    old, middle, live = inference[:800], inference[800:1700], inference[1700:]
    (directory / "inference").mkdir()
    with gzip.open(directory / "inference" / "app.log.2.gz", "wb") as out:
        out.write(b"".join(_lines(old)))
    write(directory / "inference" / "app.log.1",
          [*_lines(middle[:400]), *(line + b"\n" for line in BAD_LINES), *_lines(middle[400:])])
    write(directory / "inference" / "app.log", _lines(live))
    write(directory / "api" / "usage.jsonl", _lines(api))


def _check_summary(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["count"] == expected["count"]
    for key in ("min", "p50", "p95", "p99", "max"):
        assert got[key] == expected[key], key  # exactly: the grid is defined to the bit
    if expected["avg"] is None:
        assert got["avg"] is None
    else:
        assert got["avg"] == pytest.approx(expected["avg"], rel=1e-12)


def test_numbers_match_an_independent_computation(
        tmp_path: Path, traffic: dict[str, list[GeneratedLine]]) -> None:
    _write_logs(tmp_path, traffic)
    reference = Reference()
    reference.add_all(traffic["inference"])
    reference.add_all(traffic["api_usage"])
    clock = FakeClock(START + 10 * 86400)

    doc = analyse([str(tmp_path / "inference" / "app.log*"), str(tmp_path / "api" / "*.jsonl")],
                  clock=clock)

    files = [(Path(f["path"]).name, f["schema"], f["compression"]) for f in doc["files"]]
    assert files == [("app.log.2.gz", "inference", "gzip"), ("app.log.1", "inference", None),
                     ("app.log", "inference", None), ("usage.jsonl", "api_usage", None)]
    total = sum(reference.requests.values())
    assert doc["lines"] == {"total": total + len(BAD_LINES), "parsed": total, "malformed": 3,
                            "oversized": 0, "blank": 1, "before_since": 0}
    assert len(doc["files"][1]["malformed_reasons"]) == 3

    errors = sum(sum(c.values()) for c in reference.errors.values())
    assert doc["requests"]["total"] == total
    assert doc["requests"]["error"] == errors
    assert doc["requests"]["error_ratio"] == errors / total
    _check_summary(doc["latency_seconds"], summary(reference.all_values(reference.latency)))
    _check_summary(doc["ttft_seconds"], summary(reference.all_values(reference.ttft)))
    _check_summary(doc["throughput_tokens_per_second"],
                   summary(reference.all_values(reference.throughput)))

    models = {m["model"]: m for m in doc["models"]}
    assert set(models) == set(reference.requests)
    for name, model in models.items():
        assert model["requests"]["total"] == reference.requests[name]
        assert model["errors_by_class"] == dict(reference.errors[name])
        _check_summary(model["latency_seconds"], summary(reference.latency[name]))
        _check_summary(model["ttft_seconds"], summary(reference.ttft[name]))
        _check_summary(model["throughput_tokens_per_second"],
                       summary(reference.throughput[name]))
        tokens = reference.tokens[name]
        assert (model["tokens"]["input"], model["tokens"]["output"]) == (
            tokens["input"], tokens["output"])
        assert (model["tokens"]["cache_hit"], model["tokens"]["cache_miss"],
                model["tokens"]["reasoning"]) == (
            tokens["cache_hit"], tokens["cache_miss"], tokens["reasoning"])

    by_class: dict[str, int] = {}
    for counts in reference.errors.values():
        for name, count in counts.items():
            by_class[name] = by_class.get(name, 0) + count
    assert doc["errors"]["by_class"] == by_class
    assert len(by_class) >= 5  # the generators cover most classes

    bins = doc["timeline"]["bins"]
    assert doc["timeline"]["bin_seconds"] == 3600
    assert [b["requests"] for b in bins] == [
        reference.hours[h]["requests"] for h in sorted(reference.hours)]
    for time_bin, hour in zip(bins, sorted(reference.hours), strict=True):
        counts = reference.hours[hour]
        assert time_bin["start"] == datetime.fromtimestamp(hour * 3600, UTC).strftime(
            "%Y-%m-%dT%H:00:00.000Z")
        assert time_bin["errors"] == counts["errors"]
        assert time_bin["errors_by_class"] == {
            k: v for k, v in counts.items() if k not in ("requests", "errors", "input",
                                                         "output")}
        assert (time_bin["input_tokens"], time_bin["output_tokens"]) == (
            counts["input"], counts["output"])
    hours = doc["range"]["hours"]
    assert doc["rates"]["requests_per_hour"] == pytest.approx(total / hours, rel=1e-12)

    cost = doc["cost"]
    assert cost["currency"] == "CNY"
    assert [(d["day"], Decimal(d["amount"])) for d in cost["days"]] == sorted(
        reference.cost_days.items())
    assert Decimal(cost["total"]) == sum(reference.cost_days.values())
    assert Decimal(cost["reported_total"]) == reference.reported
    assert cost["reported_requests"] == reference.reported_lines > 0
    assert cost["unpriced_requests"] == 0
    for amount in (cost["total"], *(d["amount"] for d in cost["days"])):
        assert isinstance(amount, str)

    expected_slow = sorted(reference.slow, key=lambda item: -item[0])[:10]
    assert [(s["latency_seconds"], s["request_id"]) for s in doc["slowest"]] == expected_slow

    correlation = doc["correlation"]
    assert correlation["sample_size"] == len(reference.pairs)
    assert correlation["input_tokens_latency_spearman"] == pytest.approx(
        spearman(reference.pairs), abs=1e-9)


def test_since_counts_only_recent_requests(
        tmp_path: Path, traffic: dict[str, list[GeneratedLine]]) -> None:
    _write_logs(tmp_path, traffic)
    last = START + 2499 * 13.0
    clock = FakeClock(last + 60.0)
    since = 3 * 3600.0
    reference = Reference(cutoff=clock.time() - since)
    reference.add_all(traffic["inference"])
    reference.add_all(traffic["api_usage"])

    doc = analyse([str(tmp_path / "*" / "*")], since=since, clock=clock)

    cutoff = datetime.fromtimestamp(clock.time() - since, UTC)
    assert doc["since"] == {"duration": "3h", "from": f"{cutoff:%Y-%m-%dT%H:%M:%S}.000Z"}
    assert doc["lines"]["before_since"] == reference.before_since > 0
    assert doc["requests"]["total"] == sum(reference.requests.values()) > 0
    _check_summary(doc["latency_seconds"], summary(reference.all_values(reference.latency)))
    assert [(d["day"], Decimal(d["amount"])) for d in doc["cost"]["days"]] == sorted(
        reference.cost_days.items())
