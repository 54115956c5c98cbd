"""The synthetic workload: line schemas, distributions, incidents, rotation, the driver."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import random
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.clock import FakeClock
from monitor.demo.lines import (
    BURST_ERROR_RATE,
    CHAT_MODEL,
    DEFAULT_ERROR_RATE,
    REASONER_MODEL,
    SERVICE,
    USER_POOL,
    GeneratedLine,
    Incident,
    IncidentKind,
    active_kinds,
    api_usage_line,
    default_incident_schedule,
    format_timestamp,
    generate_api_usage,
    generate_inference,
    inference_line,
    rate_factor,
)
from monitor.demo.workload import (
    DemoWorkload,
    RotatingLineWriter,
    WorkloadStats,
    generate_file,
    generate_lines,
    log_path,
    rotated_paths,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MODELS = {CHAT_MODEL, REASONER_MODEL}


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def spec_classes(status: int | None, text: str) -> set[str]:
    """Every error class of SPEC section 5 that the status or the text points to."""
    text = text.lower()
    found = set()
    if status in (408, 504) or "timeout" in text:
        found.add("timeout")
    if status == 429 or "rate limit" in text:
        found.add("rate_limit")
    if status in (401, 403):
        found.add("auth")
    if "connection" in text or "refused" in text or "reset" in text:
        found.add("connection")
    if "cuda out of memory" in text or "outofmemory" in text:
        found.add("oom")
    if status is not None and 500 <= status < 600 and status != 504:
        found.add("server")
    if status is not None and 400 <= status < 500 and status not in (401, 403, 408, 429):
        found.add("client")
    return found or {"other"}


def check_inference(line: GeneratedLine) -> dict[str, Any]:
    assert line.data.endswith(b"\n") and line.data.count(b"\n") == 1
    record = orjson.loads(line.data)
    assert isinstance(record, dict)
    assert TIMESTAMP_RE.match(record["timestamp"])
    assert is_number(record["duration_ms"]) and record["duration_ms"] > 0
    assert record["level"] in ("INFO", "ERROR")
    assert record["service"] == SERVICE
    assert re.fullmatch(r"[0-9a-f]{32}", record["request_id"])
    assert isinstance(record["prompt_truncated"], str)
    assert isinstance(record["response_truncated"], str)
    assert is_count(record["input_tokens"]) and is_count(record["output_tokens"])
    assert is_number(record["throughput_tps"])
    assert record.get("user_id", USER_POOL[0]) in USER_POOL
    if line.is_error:
        assert record["level"] == "ERROR"
        assert isinstance(record["error"], str)
        assert spec_classes(record.get("status"), record["error"]) == {line.error_class}
    else:
        assert "error" not in record and "status" not in record
        assert is_number(record["ttft_ms"]) and 0 < record["ttft_ms"] < record["duration_ms"]
        assert record["duration_ms"] <= 60_000
        decode_s = (record["duration_ms"] - record["ttft_ms"]) / 1000
        assert record["throughput_tps"] == pytest.approx(
            record["output_tokens"] / decode_s, rel=1e-2
        )
    assert line.duration_ms == record["duration_ms"]
    assert line.input_tokens == record["input_tokens"]
    assert line.output_tokens == record["output_tokens"]
    return record


def check_api_usage(line: GeneratedLine) -> dict[str, Any]:
    assert line.data.endswith(b"\n") and line.data.count(b"\n") == 1
    record = orjson.loads(line.data)
    assert isinstance(record, dict)
    assert TIMESTAMP_RE.match(record["timestamp"])
    assert re.fullmatch(r"[0-9a-f]{32}", record["request_id"])
    assert record["user_id"] in USER_POOL
    model = record.get("model", record.get("model_name"))
    assert model in MODELS and model == line.model
    if line.is_error:
        assert {"type", "message"} <= record["error"].keys()
        text = f"{record['error']['type']} {record['error']['message']}"
        assert spec_classes(record.get("status"), text) == {line.error_class}
        usage = record.get("usage", {})
        assert all(v == 0 for v in usage.values())
        assert is_number(record["duration_ms"])
    elif "model_name" in record:
        assert record["status"] == 200
        assert is_number(record["response_time"]) and is_number(record["cost"])
        assert is_count(record["request_tokens"]) and is_count(record["response_tokens"])
        assert record["total_tokens"] == record["request_tokens"] + record["response_tokens"]
    else:
        assert record["status"] == 200 and is_number(record["duration_ms"])
        usage = record["usage"]
        for key in (
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_cache_hit_tokens",
            "prompt_cache_miss_tokens",
        ):
            assert is_count(usage[key]), key
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        hit, miss = usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"]
        assert hit + miss == usage["prompt_tokens"]
        assert usage["prompt_tokens_details"]["cached_tokens"] == hit
        assert (line.cache_hit_tokens, line.cache_miss_tokens) == (hit, miss)
        if model == REASONER_MODEL:
            reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
            assert 0 < reasoning <= usage["completion_tokens"]
            assert reasoning == line.reasoning_tokens
        else:
            assert "completion_tokens_details" not in usage
    return record


# --- line generators ------------------------------------------------------------------


def test_timestamps_are_iso_with_milliseconds_and_z() -> None:
    assert format_timestamp(1_768_716_466.123) == "2026-01-18T06:07:46.123Z"
    assert format_timestamp(T0) == "2026-01-01T00:00:00.000Z"
    assert format_timestamp(T0 + 0.9996) == "2026-01-01T00:00:01.000Z"


def test_inference_lines_follow_the_schema() -> None:
    rng = random.Random(7)
    lines = [generate_inference(rng, T0 + i, error_rate=0.2) for i in range(2000)]
    records = [check_inference(line) for line in lines]
    assert {r["level"] for r in records} == {"INFO", "ERROR"}
    assert {line.error_class for line in lines if line.is_error} == {
        "oom",
        "timeout",
        "connection",
        "server",
    }
    assert any("user_id" in r for r in records) and any("user_id" not in r for r in records)


def test_api_usage_lines_follow_the_schema_in_both_shapes() -> None:
    rng = random.Random(7)
    lines = [generate_api_usage(rng, T0 + i, error_rate=0.2) for i in range(3000)]
    records = [check_api_usage(line) for line in lines]
    assert any("model_name" in r for r in records)
    assert any("usage" in r and "model" in r for r in records)
    assert {line.error_class for line in lines if line.is_error} == {
        "rate_limit",
        "auth",
        "server",
        "timeout",
        "connection",
    }
    assert {r["status"] for r in records if "status" in r} >= {200, 429, 401, 500, 503, 504}


def test_inference_lines_average_about_550_bytes() -> None:
    rng = random.Random(11)
    sizes = [len(inference_line(rng, T0 + i)) for i in range(5000)]
    assert 450 <= statistics.mean(sizes) <= 650


def test_latency_looks_like_a_small_model() -> None:
    rng = random.Random(3)
    ok = [x for x in (generate_inference(rng, T0) for _ in range(5000)) if not x.is_error]
    durations = sorted(x.duration_ms for x in ok)
    assert 1500 <= statistics.median(durations) <= 3000
    assert durations[-1] > 20_000  # a long tail
    assert durations[-1] <= 60_000


def test_api_usage_model_mix_and_cache_hits_are_realistic() -> None:
    rng = random.Random(5)
    lines = [generate_api_usage(rng, T0, error_rate=0.0) for _ in range(5000)]
    reasoner = sum(x.model == REASONER_MODEL for x in lines) / len(lines)
    assert 0.15 <= reasoner <= 0.25
    hit = sum(x.cache_hit_tokens or 0 for x in lines)
    miss = sum(x.cache_miss_tokens or 0 for x in lines)
    assert 0.3 <= hit / (hit + miss) <= 0.6


@pytest.mark.parametrize("generate", [generate_inference, generate_api_usage])
def test_error_rate_stays_in_the_configured_band(generate: Any) -> None:
    rng = random.Random(13)
    lines = [generate(rng, T0) for _ in range(10_000)]
    rate = sum(x.is_error for x in lines) / len(lines)
    assert abs(rate - DEFAULT_ERROR_RATE) < 0.01
    assert 0.01 <= rate <= 0.05
    assert len({x.error_class for x in lines if x.is_error}) >= 4


def test_a_fixed_seed_gives_the_same_bytes() -> None:
    def run(seed: int) -> list[bytes]:
        rng = random.Random(seed)
        return [inference_line(rng, T0 + i) + api_usage_line(rng, T0 + i) for i in range(300)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_a_latency_spike_multiplies_latency() -> None:
    def median(active: frozenset[str]) -> float:
        rng = random.Random(17)
        lines = [generate_inference(rng, T0, active=active) for _ in range(3000)]
        return statistics.median(x.duration_ms for x in lines if not x.is_error)

    assert median(frozenset({IncidentKind.LATENCY_SPIKE})) >= 4 * median(frozenset())


def test_an_error_burst_raises_the_error_rate_on_both_schemas() -> None:
    rng = random.Random(19)
    burst = frozenset({IncidentKind.ERROR_BURST})
    for generate in (generate_inference, generate_api_usage):
        lines = [generate(rng, T0, active=burst) for _ in range(3000)]
        rate = sum(x.is_error for x in lines) / len(lines)
        assert rate >= 0.2
        assert rate == pytest.approx(BURST_ERROR_RATE, abs=0.04)
        assert len({x.error_class for x in lines if x.is_error}) >= 4


def test_a_spend_surge_raises_the_api_rate_and_reasoner_output() -> None:
    surge = frozenset({IncidentKind.SPEND_SURGE})
    assert rate_factor("api_usage", surge) == 5.0
    assert rate_factor("inference", surge) == 1.0
    assert rate_factor("api_usage", frozenset()) == 1.0

    def reasoner_output(active: frozenset[str]) -> float:
        rng = random.Random(23)
        lines = [generate_api_usage(rng, T0, active=active, error_rate=0) for _ in range(3000)]
        return statistics.mean(x.output_tokens for x in lines if x.model == REASONER_MODEL)

    assert reasoner_output(surge) >= 2.5 * reasoner_output(frozenset())


def test_unknown_incident_kinds_change_nothing() -> None:
    plain = inference_line(random.Random(1), T0)
    other = inference_line(random.Random(1), T0, active=frozenset({"gpu_memory_climb"}))
    assert plain == other


# --- incidents --------------------------------------------------------------------------


def test_default_schedule_spreads_the_incidents_over_the_run() -> None:
    schedule = default_incident_schedule(600)
    assert [(i.kind, i.start_s, i.end_s) for i in schedule] == [
        ("latency_spike", 120, 180),
        ("error_burst", 240, 300),
        ("spend_surge", 360, 480),
        ("gpu_memory_climb", 420, 510),
    ]
    assert active_kinds(schedule, 150) == {"latency_spike"}
    assert active_kinds(schedule, 180) == frozenset()
    assert active_kinds(schedule, 479.9) == {"spend_surge", "gpu_memory_climb"}
    short = default_incident_schedule(60)
    assert [(i.start_s, i.end_s) for i in short] == [(12, 18), (24, 30), (36, 48), (42, 51)]
    assert default_incident_schedule(0) == ()


def test_incidents_are_validated() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        Incident(IncidentKind.ERROR_BURST, 10, 0)
    with pytest.raises(ValueError, match="start_s"):
        Incident(IncidentKind.ERROR_BURST, -1, 5)
    with pytest.raises(ValueError, match="kind"):
        Incident("", 0, 5)


def test_generated_files_apply_incidents_at_their_offsets() -> None:
    schedule = (Incident(IncidentKind.ERROR_BURST, 50, 50),)
    lines = list(generate_lines(2000, "api_usage", 9, spacing_s=0.05, incidents=schedule))
    before = sum(x.is_error for x in lines[:1000]) / 1000
    during = sum(x.is_error for x in lines[1000:]) / 1000
    assert before < 0.06 and during >= 0.2


# --- rotation ---------------------------------------------------------------------------


def ascii_lines(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [f"{i:05d} {'x' * rng.randint(10, 300)}\n".encode() for i in range(count)]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    ("max_bytes", "backup_count"), [(2000, 3), (700, 1), (5000, 5), (1000, 0), (0, 2)]
)
def test_rotation_matches_rotating_file_handler(
    tmp_path: Path, max_bytes: int, backup_count: int
) -> None:
    lines = ascii_lines(max_bytes + backup_count, 400)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    handler = logging.handlers.RotatingFileHandler(
        theirs / "x.log", maxBytes=max_bytes, backupCount=backup_count, encoding="ascii"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    oracle = logging.Logger("oracle")
    oracle.addHandler(handler)
    with RotatingLineWriter(
        ours / "x.log", max_bytes=max_bytes, backup_count=backup_count
    ) as writer:
        for line in lines:
            writer.write(line)
            oracle.info(line[:-1].decode())
    handler.close()
    assert snapshot(ours) == snapshot(theirs)
    if max_bytes and backup_count:
        assert writer.rotations > backup_count
        assert len(snapshot(ours)) == backup_count + 1


def test_rotated_set_holds_every_line_in_order_untorn(tmp_path: Path) -> None:
    lines = [x.data for x in generate_lines(600, "inference", 1)]
    path = tmp_path / "deepseek-r1.log"
    with RotatingLineWriter(path, max_bytes=32 * 1024, backup_count=20) as writer:
        for line in lines:
            writer.write(line)
    files = rotated_paths(path, 20)
    assert not files[-1].exists(), "backup_count should leave room: the test needs all lines"
    present = [p for p in reversed(files) if p.exists()]
    assert len(present) > 5
    for p in present:
        content = p.read_bytes()
        assert content.endswith(b"\n")
        assert len(content) < 32 * 1024
    assert b"".join(p.read_bytes() for p in present) == b"".join(lines)


def test_backup_count_drops_the_oldest_lines(tmp_path: Path) -> None:
    lines = [x.data for x in generate_lines(600, "api_usage", 2)]
    path = tmp_path / "usage.jsonl"
    with RotatingLineWriter(path, max_bytes=16 * 1024, backup_count=2) as writer:
        for line in lines:
            writer.write(line)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "usage.jsonl",
        "usage.jsonl.1",
        "usage.jsonl.2",
    ]
    kept = b"".join(p.read_bytes() for p in reversed(rotated_paths(path, 2)))
    assert b"".join(lines).endswith(kept)
    assert kept.startswith(lines[-len(kept.splitlines())])


def test_each_line_goes_out_in_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls: list[bytes] = []

    def spy(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    lines = [x.data for x in generate_lines(100, "inference", 4)]
    with RotatingLineWriter(tmp_path / "a.log", max_bytes=8192, backup_count=2) as writer:
        for line in lines:
            writer.write(line)
    monkeypatch.undo()
    assert calls == lines


def test_writer_refuses_partial_or_multiple_lines(tmp_path: Path) -> None:
    with RotatingLineWriter(tmp_path / "a.log", max_bytes=0, backup_count=0) as writer:
        for bad in (b"no newline", b"two\nlines\n"):
            with pytest.raises(ValueError, match="newline"):
                writer.write(bad)


# --- driver, bursts and files -----------------------------------------------------------


def read_records(paths: list[Path]) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for p in paths if p.exists() for raw in p.read_bytes().splitlines()]


def test_emit_due_writes_poisson_traffic_with_rotation(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    demo = DemoWorkload(tmp_path, clock, random.Random(1), max_bytes=16 * 1024, backup_count=50)
    assert demo.emit_due() >= 0
    for _ in range(120):
        clock.advance(0.5)
        demo.emit_due()
    demo.close()
    assert 200 <= demo.stats.lines["inference"] <= 400  # 5/s over 60 s
    assert 110 <= demo.stats.lines["api_usage"] <= 250  # 3/s over 60 s
    assert demo.stats.rotations["inference"] >= 5
    assert demo.paths["inference"] == tmp_path / "inference" / "deepseek-r1.log"
    assert demo.paths["api_usage"] == log_path(tmp_path, "api_usage")
    for schema, path in demo.paths.items():
        files = list(reversed(rotated_paths(path, 50)))
        records = read_records(files)
        assert len(records) == demo.stats.lines[schema]
        stamps = [r["timestamp"] for r in records]
        assert stamps == sorted(stamps)
        assert format_timestamp(T0) <= stamps[0] and stamps[-1] <= format_timestamp(T0 + 60)


def test_stats_agree_with_the_files(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    demo = DemoWorkload(
        tmp_path, clock, random.Random(2), rates={"api_usage": 20.0}, error_rate=0.2, max_bytes=0
    )
    demo.emit_due()
    clock.advance(60)
    demo.emit_due()
    demo.close()
    assert demo.stats.lines["inference"] == 0
    records = read_records([demo.paths["api_usage"]])
    assert len(records) == demo.stats.lines["api_usage"] > 800
    errors = Counter(
        next(iter(spec_classes(r.get("status"), f"{r['error']['type']} {r['error']['message']}")))
        for r in records
        if "error" in r
    )
    assert errors == Counter({c: n for (_, c), n in demo.stats.errors.items()})
    hit = sum(
        r["usage"]["prompt_cache_hit_tokens"] for r in records if "error" not in r and "usage" in r
    )
    assert hit == sum(n for (_, _, cache), n in demo.stats.input_tokens.items() if cache == "hit")
    assert demo.stats.error_ratio("api_usage") == pytest.approx(sum(errors.values()) / len(records))
    summary = demo.stats.summary()
    assert summary["api_usage"]["lines"] == len(records)
    orjson.dumps(summary)


def test_a_spend_surge_speeds_up_api_traffic(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    demo = DemoWorkload(
        tmp_path,
        clock,
        random.Random(3),
        rates={"api_usage": 4.0},
        incidents=[Incident(IncidentKind.SPEND_SURGE, 60, 60)],
        max_bytes=0,
    )
    demo.emit_due()
    clock.advance(59.9)
    demo.emit_due()
    assert demo.active_incidents() == ()
    clock.advance(30)
    demo.emit_due()
    assert [i.kind for i in demo.active_incidents()] == ["spend_surge"]
    clock.advance(30.1)
    demo.emit_due()
    demo.close()
    assert demo.stats.incidents_seen == {"spend_surge"}
    cut = format_timestamp(T0 + 60)
    stamps = [r["timestamp"] for r in read_records([demo.paths["api_usage"]])]
    before = sum(s < cut for s in stamps)
    during = len(stamps) - before
    assert during >= 3 * before


def test_the_driver_is_deterministic(tmp_path: Path) -> None:
    def run(directory: Path) -> dict[str, bytes]:
        clock = FakeClock(T0)
        demo = DemoWorkload(
            directory, clock, random.Random(99), incidents=default_incident_schedule(30)
        )
        demo.emit_due()
        for _ in range(30):
            clock.advance(1)
            demo.emit_due()
        demo.close()
        return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*.*")}

    assert run(tmp_path / "a") == run(tmp_path / "b")


async def test_run_writes_and_stops_when_told(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    demo = DemoWorkload(tmp_path, clock, random.Random(5))
    stop = asyncio.Event()
    demo.emit_due()
    clock.advance(5)
    task = asyncio.create_task(demo.run(stop))
    await asyncio.sleep(0)
    assert demo.stats.lines["inference"] > 0
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert task.done() and task.exception() is None


def test_write_burst_appends_without_rotating(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    demo = DemoWorkload(tmp_path, clock, random.Random(6), max_bytes=4096, backup_count=2)
    written = demo.write_burst(500, "inference", start_time=T0, spacing_s=0.01)
    demo.close()
    path = demo.paths["inference"]
    assert written == path.stat().st_size > 4096
    assert not rotated_paths(path, 1)[1].exists()
    records = read_records([path])
    assert len(records) == 500 == demo.stats.lines["inference"]
    assert records[0]["timestamp"] == format_timestamp(T0)
    assert records[-1]["timestamp"] == format_timestamp(T0 + 4.99)


def test_generate_file_is_fresh_and_reproducible(tmp_path: Path) -> None:
    path = tmp_path / "bench" / "inference.log"
    path.parent.mkdir()
    path.write_bytes(b"old content\n")
    stats = generate_file(path, 3000, "inference", seed=8)
    first = path.read_bytes()
    assert first.count(b"\n") == 3000 == stats.lines["inference"]
    assert len(first) == stats.bytes_written["inference"]
    assert not first.startswith(b"old")
    generate_file(path, 3000, "inference", seed=8)
    assert path.read_bytes() == first
    assert isinstance(stats, WorkloadStats)


def test_rates_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rates"):
        DemoWorkload(tmp_path, FakeClock(), random.Random(), rates={"inference": -1})
    with pytest.raises(ValueError, match="unknown schema"):
        DemoWorkload(tmp_path, FakeClock(), random.Random(), rates={"custom": 1})  # type: ignore[dict-item]
