"""Log schemas (SPEC §5): required fields, wrong types, timestamps, error classes, cache
splits, the flat API variant and custom schemas. Each odd input is its own case."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.ingest.events import classify_error
from monitor.ingest.schemas import (
    MalformedLine,
    build_custom_schema,
    parse_api_usage,
    parse_inference,
    parse_timestamp,
)

TS = "2026-01-18T06:07:46.123Z"
TS_EPOCH = datetime(2026, 1, 18, 6, 7, 46, 123000, tzinfo=UTC).timestamp()


def inference(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"timestamp": TS, "service": "svc", "duration_ms": 1500.0}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}


def api(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"timestamp": TS, "model": "deepseek-chat", "status": 200,
                              "duration_ms": 800.0}
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}


# -- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-01-18T06:07:46.123Z", TS_EPOCH),
    ("2026-01-18T14:07:46.123+08:00", TS_EPOCH),
    ("2026-01-18T06:07:46.123", TS_EPOCH),  # naive means UTC
    ("2026-01-18 06:07:46.123", TS_EPOCH),
    ("2026-01-18", datetime(2026, 1, 18, tzinfo=UTC).timestamp()),
    (1768716466, 1768716466.0),
    (1768716466.123, 1768716466.123),
    (0, 0.0),
])
def test_timestamps_in_iso_8601_and_epoch_seconds(value: object, expected: float) -> None:
    assert parse_timestamp(value) == pytest.approx(expected, abs=1e-6)


def test_epoch_milliseconds_with_unit_ms() -> None:
    assert parse_timestamp(1768716466123, "ms") == pytest.approx(1768716466.123)


@pytest.mark.parametrize("value", [
    True, False, None, "yesterday", "", "2026-13-01", [2026], {"t": 1}, -1, 1e12 * 1000,
    # Dates day arithmetic cannot take in every time zone (a crash of the ledger's day of a
    # request before), and dates before the epoch, as epoch numbers are.
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00", "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00",
])
def test_bad_timestamps_are_malformed(value: object) -> None:
    with pytest.raises(MalformedLine, match="timestamp"):
        parse_timestamp(value)


# -- inference: required fields and types ------------------------------------------------------


def test_inference_line_from_the_spec() -> None:
    event = parse_inference({
        "timestamp": TS, "level": "INFO", "service": "DeepSeek-R1-Distill-Qwen-1.5B",
        "request_id": "r1", "prompt_truncated": "PROMPT-TEXT", "response_truncated": "REPLY-TEXT",
        "duration_ms": 2006.24, "input_tokens": 1136, "output_tokens": 1004,
        "throughput_tps": 500.44,
    })
    assert event.timestamp == pytest.approx(TS_EPOCH)
    assert event.duration == pytest.approx(2.00624)
    assert (event.service, event.model) == ("DeepSeek-R1-Distill-Qwen-1.5B",) * 2
    assert (event.input_tokens, event.output_tokens, event.throughput) == (1136, 1004, 500.44)
    assert event.error_class is None
    assert event.request_id == "r1"
    assert "PROMPT-TEXT" not in repr(event)
    assert "REPLY-TEXT" not in repr(event)


def test_inference_model_field_overrides_the_service_as_model() -> None:
    event = parse_inference(inference(model="qwen-1.5b"))
    assert (event.service, event.model) == ("svc", "qwen-1.5b")


@pytest.mark.parametrize(("fields", "problem"), [
    ({"timestamp": ...}, "timestamp"),
    ({"duration_ms": ...}, "duration_ms"),
    ({"duration_ms": "1500"}, "duration_ms"),
    ({"duration_ms": True}, "duration_ms"),
    ({"duration_ms": None}, "duration_ms"),
    ({"duration_ms": -1}, "duration_ms"),
    ({"duration_ms": [1500]}, "duration_ms"),
    ({"timestamp": True}, "timestamp"),
    ({"timestamp": 17.5e9 * 10}, "timestamp"),
])
def test_inference_without_a_valid_required_field_is_malformed(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(MalformedLine, match=problem):
        parse_inference(inference(**fields))


@pytest.mark.parametrize("fields", [
    {"input_tokens": "1136"},
    {"input_tokens": True},
    {"input_tokens": -5},
    {"input_tokens": 3.5},
    {"output_tokens": "7"},
    {"ttft_ms": "12"},
    {"ttft_ms": False},
    {"throughput_tps": "fast"},
    {"status": True},
    {"status": "ok"},
    {"user_id": 42},
    {"request_id": ["r"]},
    {"service": 7},
    {"model": None},
])
def test_inference_optional_field_of_the_wrong_type_is_ignored(fields: dict[str, Any]) -> None:
    event = parse_inference(inference(**fields))
    (name,) = fields
    attribute = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
                 "ttft_ms": "ttft", "status": "status", "user_id": "user",
                 "request_id": "request_id"}.get(name)
    if attribute is not None:
        assert getattr(event, attribute) is None
    assert event.error_class is None
    assert event.duration == 1.5


def test_booleans_are_not_numbers_anywhere() -> None:
    event = parse_inference(inference(input_tokens=True, output_tokens=False, ttft_ms=True,
                                      throughput_tps=True, reasoning_tokens=True))
    assert (event.input_tokens, event.output_tokens, event.ttft, event.reasoning_tokens) == (
        None, None, None, None)
    assert event.throughput is None


def test_integral_float_token_counts_are_accepted() -> None:
    event = parse_inference(inference(input_tokens=1136.0, output_tokens=10.0))
    assert (event.input_tokens, event.output_tokens) == (1136, 10)


def test_throughput_is_derived_from_output_and_generation_time_when_missing() -> None:
    event = parse_inference(inference(duration_ms=2000.0, ttft_ms=500.0, output_tokens=300))
    assert event.throughput == pytest.approx(300 / 1.5)
    assert event.ttft == pytest.approx(0.5)


@pytest.mark.parametrize("fields", [
    {"level": "ERROR"},
    {"level": "error"},
    {"level": "CRITICAL"},
    {"error": "boom"},
    {"error": {"message": "boom"}},
    {"status": 500},
])
def test_inference_error_markers(fields: dict[str, Any]) -> None:
    assert parse_inference(inference(**fields)).error_class is not None


@pytest.mark.parametrize("fields", [
    {"level": "INFO"}, {"level": "WARNING"}, {"error": None}, {"error": ""}, {"error": False},
    {"error": {}}, {"status": 200},
])
def test_inference_success_markers(fields: dict[str, Any]) -> None:
    assert parse_inference(inference(**fields)).error_class is None


@pytest.mark.parametrize("level", [["ERROR"], {"name": "ERROR"}])
@pytest.mark.parametrize("schema", ["inference", "custom"])
def test_a_level_of_a_non_string_type_does_not_raise(level: object, schema: str) -> None:
    if schema == "inference":
        parse_inference(inference(level=level))
    else:
        custom = build_custom_schema({"timestamp": ("t", None), "level": ("lvl", None)})
        custom({"t": TS, "lvl": level})


# -- error classes (SPEC §5 table) -------------------------------------------------------------


@pytest.mark.parametrize(("status", "text", "expected"), [
    (408, "", "timeout"),
    (504, "Gateway Timeout", "timeout"),
    (None, "upstream request timeout", "timeout"),
    (None, "Deadline exceeded while waiting for the worker", "timeout"),
    (429, "", "rate_limit"),
    (None, "Rate limit reached for requests", "rate_limit"),
    (401, "", "auth"),
    (403, "forbidden", "auth"),
    (None, "Connection reset by peer", "connection"),
    (None, "connect: connection refused", "connection"),
    (502, "Connection refused", "connection"),
    (None, "CUDA out of memory. Tried to allocate 2.00 GiB", "oom"),
    (500, "CUDA out of memory. Tried to allocate 2.00 GiB", "oom"),
    (None, "torch.OutOfMemoryError: CUDA error", "oom"),
    (500, "Internal server error", "server"),
    (503, "Service unavailable: model is still loading", "server"),
    (502, "", "server"),
    (400, "bad request", "client"),
    (404, "", "client"),
    (422, "invalid payload", "client"),
    (None, "something odd happened", "other"),
    (None, "", "other"),
    (200, "", "other"),
])
def test_error_classification(status: int | None, text: str, expected: str) -> None:
    assert classify_error(status, text) == expected


@pytest.mark.parametrize(("status", "text"), [
    (500, "no room left in the batch queue"),
    (503, "Chatroom backend unavailable"),
    (500, "bloom filter rebuild failed"),
])
def test_words_containing_oom_are_not_out_of_memory(status: int, text: str) -> None:
    assert classify_error(status, text) == "server"


@pytest.mark.parametrize("text", ["read timed out", "Request timed out after 60s"])
def test_timed_out_is_a_timeout(text: str) -> None:
    assert classify_error(500, text) == "timeout"


def test_inference_error_class_comes_from_status_and_text() -> None:
    event = parse_inference(inference(level="ERROR", status=500,
                                      error="CUDA out of memory. Tried to allocate 4 GiB"))
    assert event.error_class == "oom"
    assert parse_inference(inference(level="ERROR")).error_class == "other"
    assert parse_inference(inference(status=429)).error_class == "rate_limit"


def test_api_error_object_type_and_message_classify() -> None:
    event = parse_api_usage(api(status=None, error={"type": "connection_error",
                                                    "message": "Connection refused"}))
    assert event.error_class == "connection"
    event = parse_api_usage(api(status=401, error={"type": "authentication_error",
                                                   "message": "Authentication Fails"}))
    assert event.error_class == "auth"
    assert event.throughput is None


# -- api_usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "problem"), [
    ({"timestamp": ...}, "timestamp"),
    ({"model": ...}, "model"),
    ({"model": ""}, "model"),
    ({"model": 3}, "model"),
    ({"timestamp": False}, "timestamp"),
])
def test_api_usage_without_a_valid_required_field_is_malformed(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(MalformedLine, match=problem):
        parse_api_usage(api(**fields))


def test_api_usage_deepseek_cache_split_and_reasoning_tokens() -> None:
    event = parse_api_usage(api(model="deepseek-reasoner", usage={
        "prompt_tokens": 1000, "completion_tokens": 900, "total_tokens": 1900,
        "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360,
        "prompt_tokens_details": {"cached_tokens": 1},  # DeepSeek's own fields win
        "completion_tokens_details": {"reasoning_tokens": 700},
    }))
    assert (event.input_tokens, event.output_tokens) == (1000, 900)
    assert (event.cache_hit_tokens, event.cache_miss_tokens) == (640, 360)
    assert event.reasoning_tokens == 700
    assert event.model == "deepseek-reasoner"


def test_api_usage_openai_cached_tokens_give_hit_and_the_rest_is_miss() -> None:
    event = parse_api_usage(api(usage={
        "prompt_tokens": 1000, "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 256},
    }))
    assert (event.cache_hit_tokens, event.cache_miss_tokens) == (256, 744)


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 1000, "completion_tokens": 10},
    {"prompt_tokens": 1000, "prompt_tokens_details": None},
    {"prompt_tokens": 1000, "prompt_tokens_details": {}},
    {"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": None}},
    {"prompt_tokens": 1000, "prompt_cache_hit_tokens": None, "prompt_cache_miss_tokens": None},
])
def test_api_usage_without_a_cache_split_is_unknown(usage: dict[str, Any]) -> None:
    event = parse_api_usage(api(usage=usage))
    assert (event.cache_hit_tokens, event.cache_miss_tokens) == (None, None)
    assert event.input_tokens == 1000


@pytest.mark.parametrize(("usage", "problem"), [
    ({"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": "256"}},
     r"usage\.prompt_tokens_details\.cached_tokens: not a token count \('256'\)"),
    ({"prompt_tokens": 1000, "prompt_tokens_details": {"cached_tokens": 2000}},
     r"usage\.prompt_tokens_details\.cached_tokens: 2000 is more than prompt_tokens \(1000\)"),
    ({"prompt_tokens": 1000, "prompt_tokens_details": 256},
     r"usage\.prompt_tokens_details: expected an object, got int"),
])
def test_api_usage_with_a_bad_cached_count_is_malformed(usage: dict[str, Any],
                                                        problem: str) -> None:
    with pytest.raises(MalformedLine, match=problem):
        parse_api_usage(api(usage=usage))


def test_api_usage_flat_variant() -> None:
    event = parse_api_usage({
        "timestamp": TS, "request_id": "r9", "model_name": "deepseek-chat", "user_id": "u-001",
        "status": 200, "response_time": 1.25, "request_tokens": 120, "response_tokens": 30,
        "total_tokens": 150, "cost": 0.000123,
    })
    assert event.model == "deepseek-chat"
    assert event.duration == pytest.approx(1.25)
    assert (event.input_tokens, event.output_tokens) == (120, 30)
    assert (event.cache_hit_tokens, event.cache_miss_tokens) == (None, None)
    assert event.reported_cost == "0.000123"
    assert event.user == "u-001"
    assert event.throughput == pytest.approx(30 / 1.25)


def test_api_usage_cost_text_is_kept_verbatim() -> None:
    assert parse_api_usage(api(cost="0.0001230")).reported_cost == "0.0001230"
    assert parse_api_usage(api(cost=True)).reported_cost is None


def test_api_usage_duration_ms_wins_over_response_time() -> None:
    assert parse_api_usage(api(duration_ms=500, response_time=9.0)).duration == 0.5
    assert parse_api_usage(api(duration_ms=..., response_time=2)).duration == 2.0
    assert parse_api_usage(api(duration_ms=...)).duration is None


def test_api_usage_status_and_error_object() -> None:
    assert parse_api_usage(api(status=200)).error_class is None
    assert parse_api_usage(api(status="503")).error_class == "server"
    event = parse_api_usage(api(status=429, error={"type": "rate_limit_error",
                                                   "message": "Rate limit reached"}))
    assert event.error_class == "rate_limit"


# -- custom schemas ---------------------------------------------------------------------------


def test_custom_schema_with_dotted_paths_and_units() -> None:
    schema = build_custom_schema({
        "timestamp": ("meta.ts", "ms"),
        "duration": ("timing.total", "s"),
        "ttft": ("timing.first", "ms"),
        "model": ("req.model", None),
        "input_tokens": ("usage.in", None),
        "output_tokens": ("usage.out", None),
        "status": ("http.code", None),
        "error": ("err", None),
        "cost": ("billing.cost", None),
        "user_id": ("req.user", None),
    })
    event = schema({
        "meta": {"ts": 1768716466123},
        "timing": {"total": 2.5, "first": 250},
        "req": {"model": "m1", "user": "alice"},
        "usage": {"in": 100, "out": 50},
        "http": {"code": 200},
        "billing": {"cost": "0.01"},
    })
    assert event.timestamp == pytest.approx(1768716466.123)
    assert event.duration == pytest.approx(2.5)
    assert event.ttft == pytest.approx(0.25)
    assert (event.model, event.user) == ("m1", "alice")
    assert (event.input_tokens, event.output_tokens) == (100, 50)
    assert event.error_class is None
    assert event.reported_cost == "0.01"
    assert event.throughput == pytest.approx(50 / 2.25)

    failed = schema({"meta": {"ts": 1768716466123}, "http": {"code": 504}, "err": "upstream"})
    assert failed.error_class == "timeout"
    assert failed.duration is None


def test_custom_schema_duration_defaults_to_milliseconds() -> None:
    schema = build_custom_schema({"timestamp": ("t", None), "duration": ("d", None)})
    event = schema({"t": "2026-01-18T06:07:46Z", "d": 1500})
    assert event.duration == pytest.approx(1.5)


@pytest.mark.parametrize("obj", [
    {},
    {"meta": {"ts": "not a time"}},
    {"meta": "flat"},
    {"meta": {"ts": True}},
])
def test_custom_schema_requires_its_timestamp(obj: dict[str, Any]) -> None:
    schema = build_custom_schema({"timestamp": ("meta.ts", "ms")})
    with pytest.raises(MalformedLine):
        schema(obj)


def test_custom_schema_requires_a_timestamp() -> None:
    # Field names are the config's to check (tests/test_config.py); the schema needs this one.
    with pytest.raises(ValueError, match="timestamp"):
        build_custom_schema({"duration": ("d", "ms")})


# -- plausibility bounds ----------------------------------------------------------------------

WEEK_MS = 7 * 86400 * 1000


@pytest.mark.parametrize("duration_ms", [WEEK_MS + 1, float(WEEK_MS) + 0.5, 1e300])
def test_inference_duration_over_a_week_is_malformed(duration_ms: float) -> None:
    with pytest.raises(MalformedLine, match="duration_ms"):
        parse_inference(inference(duration_ms=duration_ms))


def test_inference_duration_of_exactly_a_week_is_accepted() -> None:
    assert parse_inference(inference(duration_ms=WEEK_MS)).duration == 7 * 86400


@pytest.mark.parametrize(("fields", "attribute"), [
    ({"ttft_ms": WEEK_MS + 1}, "ttft"),
    ({"ttft_ms": 1e300}, "ttft"),
    ({"reasoning_tokens": 10**12 + 1}, "reasoning_tokens"),
    ({"reasoning_tokens": 1e20}, "reasoning_tokens"),
    ({"input_tokens": 1e13}, "input_tokens"),
    ({"output_tokens": 1e20}, "output_tokens"),
    ({"input_tokens": 10**12 + 1}, "input_tokens"),
    ({"output_tokens": 10**13}, "output_tokens"),
    ({"throughput_tps": 10**7 + 1}, "throughput"),
    ({"throughput_tps": 1e8}, "throughput"),
])
def test_inference_field_beyond_its_bound_is_ignored(fields: dict[str, Any],
                                                     attribute: str) -> None:
    event = parse_inference(inference(**fields))
    assert getattr(event, attribute) is None
    assert event.duration == 1.5  # the request itself still counts


@pytest.mark.parametrize(("fields", "attribute", "value"), [
    ({"ttft_ms": WEEK_MS}, "ttft", 7 * 86400),
    ({"reasoning_tokens": 10**12}, "reasoning_tokens", 10**12),
    ({"input_tokens": 10**12}, "input_tokens", 10**12),
    ({"throughput_tps": 1e7}, "throughput", 1e7),
])
def test_inference_field_at_its_bound_is_kept(fields: dict[str, Any], attribute: str,
                                              value: float) -> None:
    assert getattr(parse_inference(inference(**fields)), attribute) == value


def test_implausible_throughput_falls_back_to_the_derived_one() -> None:
    event = parse_inference(inference(duration_ms=2000.0, output_tokens=300,
                                      throughput_tps=10**9))
    assert event.throughput == pytest.approx(150.0)


@pytest.mark.parametrize(("fields", "attribute"), [
    ({"duration_ms": WEEK_MS + 1, "response_time": ...}, "duration"),
    ({"duration_ms": ..., "response_time": 7 * 86400 + 1}, "duration"),
])
def test_api_usage_duration_beyond_its_bound_is_ignored(fields: dict[str, Any],
                                                        attribute: str) -> None:
    event = parse_api_usage(api(**fields))
    assert getattr(event, attribute) is None
    assert event.model == "deepseek-chat"


@pytest.mark.parametrize(("fields", "problem"), [
    ({"request_tokens": 10**12 + 1}, "request_tokens"),
    ({"response_tokens": 1e20}, "response_tokens"),
    ({"usage": {"prompt_tokens": 10**13, "completion_tokens": 5}}, "usage.prompt_tokens"),
    ({"usage": {"completion_tokens": 10**13}}, "usage.completion_tokens"),
    ({"usage": {"completion_tokens": 5,
                "completion_tokens_details": {"reasoning_tokens": 10**13}}},
     "usage.completion_tokens_details.reasoning_tokens"),
])
def test_api_usage_token_count_beyond_its_bound_is_malformed(fields: dict[str, Any],
                                                             problem: str) -> None:
    # Priced: ignoring the count would charge the request too little (tests/ingest/
    # test_priced_counts.py has every field and every kind of bad value).
    with pytest.raises(MalformedLine, match=f"^{re.escape(problem)}: not a token count"):
        parse_api_usage(api(**fields))


@pytest.mark.parametrize(("fields", "attribute", "value"), [
    ({"request_tokens": 10**12}, "input_tokens", 10**12),
    ({"usage": {"completion_tokens": 10**12}}, "output_tokens", 10**12),
])
def test_api_usage_token_count_at_its_bound_is_kept(fields: dict[str, Any], attribute: str,
                                                   value: int) -> None:
    assert getattr(parse_api_usage(api(**fields)), attribute) == value


@pytest.mark.parametrize(("unit", "limit"), [("ms", WEEK_MS), ("s", 7 * 86400)])
def test_custom_duration_and_ttft_beyond_a_week_are_ignored(unit: str, limit: int) -> None:
    schema = build_custom_schema({"timestamp": ("t", None), "duration": ("d", unit),
                                  "ttft": ("f", unit), "output_tokens": ("o", None)})
    event = schema({"t": TS, "d": limit + 1, "f": limit + 1, "o": 10**13})
    assert (event.duration, event.ttft, event.output_tokens) == (None, None, None)
    kept = schema({"t": TS, "d": limit, "f": limit, "o": 10**12})
    assert (kept.duration, kept.ttft, kept.output_tokens) == (7 * 86400, 7 * 86400, 10**12)
