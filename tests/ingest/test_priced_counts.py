"""The token counts of `api_usage` lines, which are priced into the cost ledger.

A count that is present but not a valid count (negative, above `MAX_COUNT`, fractional, a
boolean, a string, a list or object) makes the line malformed rather than "unknown": priced
as unknown, the request would be charged too little and nobody would know. So does a `usage`
or `*_details` object of another type, and a cache split that contradicts `prompt_tokens`.
JSON null stays "not given". Each case runs through the lenient dict parser, the typed fast
decoder and a `SourcePipeline` on each of them, which must all give the same answer, and the
reason must name the field. The inference schema keeps ignoring an odd count (see
`test_schemas.py` and `test_decoders.py`): its lines are not priced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from monitor.clock import FakeClock
from monitor.ingest.decoders import decode_api_usage, decode_object
from monitor.ingest.events import RequestEvent
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import MAX_COUNT, MalformedLine, parse_api_usage
from monitor.metrics.store import CounterSeries, MetricStore

TS = "2026-01-18T06:07:46Z"


def dumps(record: dict[str, Any]) -> bytes:
    """The record as one compact JSON line (the json module: orjson refuses 2**64)."""
    return json.dumps(record, separators=(",", ":")).encode()

# Every token count the api_usage schema reads (dotted path in the line → event attribute).
# `total_tokens` (flat or in `usage`) is not read, so it is not judged: see the last tests.
USAGE_FIELDS = {
    "usage.prompt_tokens": "input_tokens",
    "usage.completion_tokens": "output_tokens",
    "usage.prompt_cache_hit_tokens": "cache_hit_tokens",
    "usage.prompt_cache_miss_tokens": "cache_miss_tokens",
    "usage.completion_tokens_details.reasoning_tokens": "reasoning_tokens",
    "usage.prompt_tokens_details.cached_tokens": "cache_hit_tokens",
}
FLAT_FIELDS = {"request_tokens": "input_tokens", "response_tokens": "output_tokens"}
FIELDS = {**USAGE_FIELDS, **FLAT_FIELDS}

BAD_COUNTS: list[Any] = [-5, -1, MAX_COUNT + 1, 2**64, 1e20, 1.5, -0.5, True, False, "12", "",
                         [12], {"n": 12}]


def line_with(path: str, value: Any) -> bytes:
    """A valid line (prompt 100, output 10) with `value` at the dotted `path`."""
    record: dict[str, Any] = {"timestamp": TS, "model": "deepseek-chat", "duration_ms": 500}
    if path.startswith("usage."):
        record["usage"] = {"prompt_tokens": 100, "completion_tokens": 10}
    else:
        record.update(request_tokens=100, response_tokens=10)
    *parents, leaf = path.split(".")
    node = record
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return dumps(record)


def lenient(line: bytes) -> RequestEvent:
    return parse_api_usage(decode_object(line))


PATHS: dict[str, Callable[[bytes], RequestEvent]] = {"dict": lenient, "fast": decode_api_usage}


def rejection(line: bytes) -> str:
    """The reason both paths reject `line` with, failing unless they agree on it."""
    reasons = set()
    for decode in PATHS.values():
        with pytest.raises(MalformedLine) as caught:
            decode(line)
        reasons.add(str(caught.value))
    assert len(reasons) == 1, reasons
    return reasons.pop()


def event(line: bytes) -> RequestEvent:
    """The event both paths give for `line`, failing unless they agree on it."""
    dict_event, fast_event = (decode(line) for decode in PATHS.values())
    assert dict_event == fast_event
    return dict_event


# -- a bad count rejects the line, on both paths, naming the field -------------------------------


@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("path", FIELDS)
def test_a_bad_token_count_makes_the_line_malformed(path: str, value: Any) -> None:
    reason = rejection(line_with(path, value))
    assert reason.startswith(f"{path}: not a token count (")


def test_the_reason_shows_the_bad_value() -> None:
    assert rejection(line_with("usage.completion_tokens", -5)) == (
        "usage.completion_tokens: not a token count (-5)")
    assert rejection(line_with("request_tokens", "12")) == (
        "request_tokens: not a token count ('12')")


def test_a_count_too_large_for_a_double_makes_the_line_malformed() -> None:
    line = line_with("usage.completion_tokens", 0).replace(
        b'"completion_tokens":0', b'"completion_tokens":1e400')
    assert rejection(line) == "usage.completion_tokens: not a token count (inf)"


@pytest.mark.parametrize("value", [5, "x", True, [], [{}]], ids=repr)
@pytest.mark.parametrize("path", [
    "usage", "usage.completion_tokens_details", "usage.prompt_tokens_details",
])
def test_a_container_of_counts_of_another_type_makes_the_line_malformed(
    path: str, value: Any,
) -> None:
    line = line_with(path, value) if path != "usage" else dumps(
        {"timestamp": TS, "model": "m", "usage": value, "request_tokens": 4})
    reason = rejection(line)
    assert reason == f"{path}: expected an object, got {type(value).__name__}"


# -- valid counts and null: as before ---------------------------------------------------------


@pytest.mark.parametrize("value", [0, 7, 7.0, -0.0], ids=repr)
@pytest.mark.parametrize("path", FIELDS)
def test_a_valid_token_count_is_kept(path: str, value: Any) -> None:
    got = event(line_with(path, value))
    assert getattr(got, FIELDS[path]) == int(value)
    assert type(getattr(got, FIELDS[path])) is int


def test_a_count_at_the_bound_is_kept() -> None:
    assert event(line_with("usage.completion_tokens", MAX_COUNT)).output_tokens == MAX_COUNT
    assert event(line_with("request_tokens", float(MAX_COUNT))).input_tokens == MAX_COUNT


@pytest.mark.parametrize("path", FIELDS)
def test_a_null_token_count_is_not_given(path: str) -> None:
    got = event(line_with(path, None))
    assert getattr(got, FIELDS[path]) is None


@pytest.mark.parametrize("value", [None, {}], ids=["null", "empty"])
@pytest.mark.parametrize("path", ["usage.completion_tokens_details",
                                  "usage.prompt_tokens_details"])
def test_a_null_or_empty_details_object_is_not_given(path: str,
                                                     value: dict[str, Any] | None) -> None:
    got = event(line_with(path, value))
    assert (got.input_tokens, got.output_tokens) == (100, 10)
    assert (got.reasoning_tokens, got.cache_hit_tokens, got.cache_miss_tokens) == (
        None, None, None)


def test_a_null_usage_falls_back_to_the_flat_counts() -> None:
    got = event(dumps({"timestamp": TS, "model": "m", "usage": None,
                              "request_tokens": 4, "response_tokens": 5}))
    assert (got.input_tokens, got.output_tokens) == (4, 5)


def test_the_line_from_the_spec_is_unchanged() -> None:
    got = event(dumps({
        "timestamp": TS, "request_id": "r1", "model": "deepseek-reasoner", "user_id": "u",
        "status": 200, "duration_ms": 2000, "usage": {
            "prompt_tokens": 1000, "completion_tokens": 900, "total_tokens": 1900,
            "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 360,
            "completion_tokens_details": {"reasoning_tokens": 700},
            "prompt_tokens_details": {"cached_tokens": 640}},
    }))
    assert (got.input_tokens, got.output_tokens, got.reasoning_tokens) == (1000, 900, 700)
    assert (got.cache_hit_tokens, got.cache_miss_tokens) == (640, 360)


# -- cache splits -----------------------------------------------------------------------------


def usage_line(**usage: Any) -> bytes:
    return dumps({"timestamp": TS, "model": "deepseek-chat", "usage": usage})


@pytest.mark.parametrize(("usage", "split"), [
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36},
     (64, 36)),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 100, "prompt_cache_miss_tokens": 0},
     (100, 0)),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64}, (64, 36)),
    ({"prompt_tokens": 100, "prompt_cache_miss_tokens": 36}, (64, 36)),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 100}, (100, 0)),
    ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 100}}, (100, 0)),
    ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 30}}, (30, 70)),
    # DeepSeek's fields win over a cached_tokens (within the prompt) that disagrees
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36,
      "prompt_tokens_details": {"cached_tokens": 1}}, (64, 36)),
    # no prompt_tokens to check against: the fields as given, a missing half is 0
    ({"prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36}, (64, 36)),
    ({"prompt_cache_hit_tokens": 64}, (64, 0)),
    ({"prompt_cache_miss_tokens": 36}, (0, 36)),
    ({"prompt_tokens_details": {"cached_tokens": 30}}, (None, None)),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": None}, (None, None)),
])
def test_a_consistent_cache_split_is_kept(usage: dict[str, Any],
                                          split: tuple[int | None, int | None]) -> None:
    got = event(usage_line(**usage))
    assert (got.cache_hit_tokens, got.cache_miss_tokens) == split


@pytest.mark.parametrize(("usage", "reason"), [
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 30},
     "usage: prompt_cache_hit_tokens + prompt_cache_miss_tokens (64 + 30) is not "
     "prompt_tokens (100)"),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 64},
     "usage: prompt_cache_hit_tokens + prompt_cache_miss_tokens (64 + 64) is not "
     "prompt_tokens (100)"),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 101},
     "usage.prompt_cache_hit_tokens: 101 is more than prompt_tokens (100)"),
    ({"prompt_tokens": 100, "prompt_cache_miss_tokens": 101},
     "usage.prompt_cache_miss_tokens: 101 is more than prompt_tokens (100)"),
    ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 101}},
     "usage.prompt_tokens_details.cached_tokens: 101 is more than prompt_tokens (100)"),
    ({"prompt_tokens": 100, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36,
      "prompt_tokens_details": {"cached_tokens": 300}},
     "usage.prompt_tokens_details.cached_tokens: 300 is more than prompt_tokens (100)"),
])
def test_a_cache_split_that_contradicts_the_prompt_is_malformed(usage: dict[str, Any],
                                                                reason: str) -> None:
    assert rejection(usage_line(**usage)) == reason


# -- fields that are not read are not judged ----------------------------------------------------


@pytest.mark.parametrize("line", [
    line_with("usage.total_tokens", -5),
    line_with("total_tokens", "many"),
    # with a usage object the flat counts are not read
    dumps({"timestamp": TS, "model": "m", "usage": {"prompt_tokens": 3},
                  "request_tokens": -1, "response_tokens": "x"}),
], ids=["usage.total_tokens", "total_tokens", "flat-beside-usage"])
def test_a_count_the_schema_does_not_read_does_not_reject_the_line(line: bytes) -> None:
    event(line)


# -- through SourcePipeline: counted as malformed, the next line still read ------------------------


def log_lines(store: MetricStore) -> dict[str, float]:
    family = store.family("inferwatch_log_lines")
    assert family is not None
    out = {}
    for key, series in family.series.items():
        assert isinstance(series, CounterSeries)
        out[dict(key)["result"]] = series.value
    return out


@pytest.mark.parametrize("fast", [False, True], ids=["dict path", "fast path"])
@pytest.mark.parametrize(("path", "value"), [
    (path, value) for path in FIELDS for value in (-5, MAX_COUNT + 1, 1.5, True, "12")
] + [("usage", []), ("usage.completion_tokens_details", 5)])
def test_the_pipeline_counts_a_bad_token_count_as_malformed(
    path: str, value: Any, fast: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    store = MetricStore()
    pipeline = SourcePipeline(name="api", schema=parse_api_usage, store=store,
                              fast_decoder=decode_api_usage if fast else None,
                              clock=FakeClock())
    bad = line_with(path, value) if path != "usage" else dumps(
        {"timestamp": TS, "model": "m", "usage": value})
    with caplog.at_level(logging.WARNING, logger="monitor.ingest.pipeline"):
        chunk = LineChunk([bad, line_with("request_tokens", 1)], 0, 0)
        assert pipeline.process(chunk, "usage.jsonl") == 2
    pipeline.apply()
    pipeline.clear()
    assert log_lines(store) == {"malformed": 1, "parsed": 1}
    assert f"{path}: " in caplog.records[0].getMessage()
