"""The cost trend and the recommendations: each triggered by logs made to show its problem,
checked against a reference computation, and absent from logs that do not show it."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from report_logs import START, theil_sen, write

from monitor.clock import FakeClock
from monitor.config_models import CostConfig
from monitor.report.command import analyse
from monitor.report.document import iso

DAY = 86400.0


def api_line(t: float, *, model: str = "deepseek-chat", prompt: int = 1000, hit: int = 0,
             completion: int = 200, status: int = 200, error: dict[str, str] | None = None,
             request_id: str | None = None, duration_ms: float = 900.0) -> bytes:
    record: dict[str, Any] = {"timestamp": iso(t), "model": model, "status": status,
                              "duration_ms": duration_ms}
    if request_id is not None:
        record["request_id"] = request_id
    if error is None:
        record["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "prompt_cache_hit_tokens": hit,
                           "prompt_cache_miss_tokens": prompt - hit}
    else:
        record["error"] = error
    return json.dumps(record).encode() + b"\n"


def inference_line(t: float, *, tokens: int = 300, duration_ms: float = 1500.0,
                   error: str | None = None, status: int | None = None) -> bytes:
    record: dict[str, Any] = {"timestamp": iso(t), "level": "ERROR" if error else "INFO",
                              "service": "r1", "duration_ms": duration_ms,
                              "input_tokens": tokens, "output_tokens": 0 if error else 100}
    if error:
        record["error"] = error
    if status is not None:
        record["status"] = status
    return json.dumps(record).encode() + b"\n"


def _daily_api_lines(counts: list[int]) -> list[bytes]:
    """`counts[d]` requests of 1000 miss + 200 output tokens on day d, spread over the day."""
    lines = []
    for day, count in enumerate(counts):
        for i in range(count):
            lines.append(api_line(START + day * DAY + (i + 0.5) * DAY / count))
    return lines


def _ids(doc: dict[str, Any]) -> list[str]:
    return [item["id"] for item in doc["recommendations"]]


def test_rising_spend_is_a_robust_trend_with_a_budget_suggestion(tmp_path: Path) -> None:
    counts = [100, 110, 120, 130, 900, 150, 160, 170, 180, 190]  # one surge day
    write(tmp_path / "api.jsonl", _daily_api_lines(counts))
    doc = analyse([str(tmp_path / "api.jsonl")], clock=FakeClock(START + 20 * DAY))

    per_request = (1000 * Decimal(2) + 200 * Decimal(3)) / Decimal(10**6)
    days = doc["cost"]["days"]
    assert [Decimal(d["amount"]) for d in days] == [c * per_request for c in counts]
    assert all(d["whole"] for d in days)  # requests from 00:00 to 24:00 within the hour
    trend = doc["cost"]["trend"]
    slope = theil_sen([float(c * per_request) for c in counts])
    assert trend["slope_per_day"] == pytest.approx(slope, rel=1e-12)
    assert trend["slope_per_day"] == pytest.approx(10 * float(per_request))  # not the surge
    assert trend["direction"] == "rising"
    item = next(r for r in doc["recommendations"] if r["id"] == "cost_rising")
    assert Decimal(item["evidence"]["highest_day"]) == 900 * per_request
    assert item["evidence"]["suggested_daily_limit"] == "2.9"  # 1.2 x 2.34, 2 digits, up
    assert "limit: 2.9" in item["detail"]


@pytest.mark.parametrize(("counts", "direction"), [
    ([100, 101, 99, 100, 102, 98, 100], "flat"),
    ([200, 190, 180, 170, 160, 150, 140], "falling"),
    ([100, 100], "insufficient data"),
])
def test_other_trends(tmp_path: Path, counts: list[int], direction: str) -> None:
    write(tmp_path / "api.jsonl", _daily_api_lines(counts))
    doc = analyse([str(tmp_path / "api.jsonl")], clock=FakeClock(START + 20 * DAY))
    assert doc["cost"]["trend"]["direction"] == direction
    assert "cost_rising" not in _ids(doc)


def test_a_partial_last_day_does_not_make_a_trend(tmp_path: Path) -> None:
    lines = _daily_api_lines([100] * 6)
    lines += [api_line(START + 6 * DAY + i * 60.0) for i in range(20)]  # 20 min of day 7
    write(tmp_path / "api.jsonl", lines)
    doc = analyse([str(tmp_path / "api.jsonl")], clock=FakeClock(START + 20 * DAY))
    assert [d["whole"] for d in doc["cost"]["days"]] == [True] * 6 + [False]
    assert (doc["cost"]["trend"]["direction"], doc["cost"]["trend"]["days"]) == ("flat", 6)


def test_each_problem_brings_its_recommendation(tmp_path: Path) -> None:
    rng = random.Random(7)
    inference = []
    for i in range(400):
        tokens = rng.randint(50, 8000)
        # latency grows with the prompt, with noise: Spearman's rho well above 0.5
        inference.append(inference_line(START + i * 30.0, tokens=tokens,
                                        duration_ms=200 + tokens * rng.uniform(0.8, 1.2)))
    inference += [inference_line(START + 5.0 + i, error="CUDA out of memory. Tried to "
                                 "allocate 2.00 GiB") for i in range(3)]
    inference += [inference_line(START + 9.0 + i, status=504, error="gateway timed out",
                                 duration_ms=60000.0) for i in range(10)]
    api = [api_line(START + i * 20.0, prompt=4000, hit=128) for i in range(500)]
    api += [api_line(START + 7.0 + i, status=429, error={"type": "rate_limit_error",
                                                         "message": "Rate limit reached"})
            for i in range(12)]
    api += [api_line(START + 3.0 + i, model="my-own-model") for i in range(4)]
    write(tmp_path / "inference.log", inference)
    write(tmp_path / "api.jsonl", api)

    doc = analyse([str(tmp_path / "*")], clock=FakeClock(START + DAY))

    found = {item["id"]: item for item in doc["recommendations"]}
    assert set(found) == {"long_prompts", "rate_limit", "low_cache_hit", "oom", "timeouts",
                          "unpriced"}
    assert found["long_prompts"]["evidence"]["model"] == "r1"
    assert found["long_prompts"]["evidence"]["spearman"] > 0.8
    assert found["long_prompts"]["evidence"]["sample_size"] == 400
    assert found["rate_limit"]["evidence"]["rate_limit_errors"] == 12
    assert found["rate_limit"]["evidence"]["peak_in_one_bin"] == 12
    # 500 requests hit 128 of 4,000 prompt tokens, the 4 unpriced ones 0 of 1,000
    assert found["low_cache_hit"]["evidence"]["cache_hit_ratio"] == pytest.approx(
        500 * 128 / (500 * 4000 + 4 * 1000))
    assert found["oom"]["evidence"] == {"oom_errors": 3, "share_of_requests": 3 / 929,
                                        "by_model": {"r1": 3}}
    assert found["timeouts"]["evidence"]["timeout_errors"] == 10
    assert found["unpriced"]["evidence"] == {"unpriced_requests": 4,
                                             "by_model": {"my-own-model": 4}}
    for item in found.values():
        assert item["title"] and item["detail"]


def test_healthy_logs_bring_no_recommendation(tmp_path: Path) -> None:
    rng = random.Random(8)
    lines = [inference_line(START + i * 30.0, tokens=rng.randint(50, 8000),
                            duration_ms=rng.uniform(500, 3000)) for i in range(300)]
    lines += [api_line(START + i * 30.0, prompt=1000, hit=640) for i in range(300)]
    write(tmp_path / "mixed.log", lines[:300])
    write(tmp_path / "api.jsonl", lines[300:])
    doc = analyse([str(tmp_path / "*")], clock=FakeClock(START + DAY))
    assert doc["recommendations"] == []
    by_model = {entry["model"]: entry for entry in doc["correlation"]["by_model"]}
    assert abs(by_model["r1"]["spearman"]) < 0.3
    assert by_model["deepseek-chat"]["spearman"] is None  # one prompt length: no ranks


def test_a_request_id_seen_twice_is_charged_once(tmp_path: Path) -> None:
    lines = [api_line(START + 60.0, request_id="same"), api_line(START + 120.0,
                                                                 request_id="same"),
             api_line(START + 180.0, request_id="other")]
    write(tmp_path / "api.jsonl", lines)
    doc = analyse([str(tmp_path / "api.jsonl")], clock=FakeClock(START + DAY))
    assert doc["requests"]["total"] == 3  # requests are lines, as the daemon counts them
    assert doc["cost"]["duplicate_requests"] == 1
    assert Decimal(doc["cost"]["total"]) == 2 * (1000 * Decimal(2) + 200 * Decimal(3)) / 10**6


def test_discount_windows_and_exchange_rates_price_as_the_ledger(tmp_path: Path) -> None:
    """deepseek-chat on 2025-03-01 (CNY 0.5/2/8, half price 16:30-00:30 UTC) and gpt-4o-mini
    (USD 0.075/0.15/0.60) converted at 7.1 CNY/USD; prices typed in from the bundled table."""
    day = 1_740_787_200.0  # 2025-03-01T00:00:00Z
    lines, expected = [], Decimal(0)
    for minute in range(0, 1440, 7):
        t = day + minute * 60.0
        lines.append(api_line(t, prompt=3000, hit=1024, completion=500))
        factor = Decimal("0.5") if minute >= 16 * 60 + 30 or minute < 30 else Decimal(1)
        expected += (1024 * Decimal("0.5") + 1976 * Decimal(2) + 500 * Decimal(8)) / 10**6 \
            * factor
        lines.append(api_line(t + 1.0, model="gpt-4o-mini", prompt=2000, hit=0,
                              completion=100))
        expected += (2000 * Decimal("0.15") + 100 * Decimal("0.60")) / 10**6 * Decimal("7.1")
    write(tmp_path / "api.jsonl", lines)
    cost = CostConfig(currency="CNY", exchange_rates={"USD": Decimal("7.1")})

    doc = analyse([str(tmp_path / "api.jsonl")], clock=FakeClock(day + 2 * DAY), cost=cost)

    assert Decimal(doc["cost"]["total"]) == expected
    assert doc["cost"]["unpriced_requests"] == 0
    without_rate = analyse([str(tmp_path / "api.jsonl")], clock=FakeClock(day + 2 * DAY))
    assert without_rate["cost"]["unpriced_by_model"] == {"gpt-4o-mini": len(lines) // 2}
