"""The typed fast decoders against the lenient dict parsers of `schemas.py`.

`decoders.py` promises that both paths give the same event (or the same rejection) for every
line; the pipeline uses the fast one unless a filter needs the dict, so any difference makes
counts depend on whether a source has a filter. Checked on hand-picked odd lines, on the demo
generator's traffic, and on Hypothesis-generated objects of every field type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.clock import FakeClock
from monitor.demo.workload import generate_lines
from monitor.ingest.decoders import (
    FAST_DECODERS,
    decode_api_usage,
    decode_inference,
    decode_object,
)
from monitor.ingest.events import RequestEvent
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import MalformedLine, Schema, parse_api_usage, parse_inference
from monitor.metrics.store import MetricStore

Decoder = Callable[[bytes], RequestEvent]
PATHS: dict[str, tuple[Decoder, Schema]] = {
    "inference": (decode_inference, parse_inference),
    "api_usage": (decode_api_usage, parse_api_usage),
}


def outcome(decode: Callable[[], RequestEvent]) -> object:
    """An event as comparable fields (cost as a Decimal), or the rejection with its reason
    (the reason is logged, so both paths must give the same one)."""
    try:
        event = decode()
    except MalformedLine as exc:
        return ("malformed", str(exc))
    except Exception as exc:  # the kind of failure is what is compared
        return type(exc).__name__
    fields = msgspec.structs.asdict(event)
    cost = fields["reported_cost"]
    if cost is not None:
        with contextlib.suppress(InvalidOperation):  # a cost that is no number stays text
            fields["reported_cost"] = Decimal(cost)
    return fields


def assert_same(schema_name: str, line: bytes) -> None:
    fast, slow = PATHS[schema_name]
    assert outcome(lambda: fast(line)) == outcome(lambda: slow(decode_object(line)))


TS = '"timestamp":"2026-01-18T06:07:46.123Z"'
INFERENCE_LINES = [
    "{" + TS + ',"duration_ms":5}',
    "{" + TS + ',"duration_ms":5,"duration_ms":7}',  # duplicate keys: the last one wins
    '{"timestamp":"2026-01-18","duration_ms":5}',
    '{"timestamp":"2026-01-18 06:07:46","duration_ms":5}',
    '{"timestamp":"2026-01-18T14:07:46+08:00","duration_ms":5}',
    '{"timestamp":1768716466,"duration_ms":5}',
    '{"timestamp":1768716466.5,"duration_ms":5.5}',
    '{"timestamp":true,"duration_ms":5}',
    '{"timestamp":-1,"duration_ms":5}',
    "{" + TS + "}",
    "{" + TS + ',"duration_ms":-5}',
    "{" + TS + ',"duration_ms":"5"}',
    "{" + TS + ',"duration_ms":null}',
    "{" + TS + ',"duration_ms":5,"input_tokens":3.0,"output_tokens":-2}',
    "{" + TS + ',"duration_ms":5,"input_tokens":"3","ttft_ms":-1,"throughput_tps":true}',
    "{" + TS + ',"duration_ms":2000,"ttft_ms":500,"output_tokens":300}',
    "{" + TS + ',"duration_ms":5,"throughput_tps":7,"output_tokens":1}',
    "{" + TS + ',"duration_ms":5,"status":0}',
    "{" + TS + ',"duration_ms":5,"status":"503","error":"Service unavailable"}',
    "{" + TS + ',"duration_ms":5,"status":429}',
    "{" + TS + ',"duration_ms":5,"level":"ERROR"}',
    "{" + TS + ',"duration_ms":5,"level":40}',
    "{" + TS + ',"duration_ms":5,"error":{"type":"x","message":"CUDA out of memory"}}',
    "{" + TS + ',"duration_ms":5,"error":[]}',
    "{" + TS + ',"duration_ms":5,"error":0}',
    "{" + TS + ',"duration_ms":5,"error":""}',
    "{" + TS + ',"duration_ms":5,"service":"s","model":""}',
    "{" + TS + ',"duration_ms":5,"service":7,"model":["m"]}',
    "{" + TS + ',"duration_ms":5,"request_id":"","user_id":""}',
    "{" + TS + ',"duration_ms":5,"reasoning_tokens":12}',
    "[1]",
    '"text"',
    "",
    "   ",
]
API_LINES = [
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m"}',
    '{"timestamp":"2026-01-18T06:07:46Z","model_name":"m","request_tokens":4,'
    '"response_tokens":5,"response_time":1.5,"cost":0.000123}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":5,"model_name":"n"}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":""}',
    '{"timestamp":"2026-01-18T06:07:46Z"}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","cost":1.50}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","cost":"0.10"}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","cost":true}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":"x","request_tokens":4}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_cache_hit_tokens":null}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_tokens_details":{"cached_tokens":30}}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_tokens_details":{"cached_tokens":300}}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":9,'
    '"completion_tokens_details":[]}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":-1}}',
    # priced token counts: present and not a count rejects the line; null is "not given"
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":-5}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":1.5}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":12.0}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":-0.0}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":true}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":"12"}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":null}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":1e400}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":'
    '18446744073709551616}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":[]}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":null,"request_tokens":4}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":9,'
    '"completion_tokens_details":5}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"completion_tokens":9,'
    '"completion_tokens_details":null}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":30}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_cache_miss_tokens":101}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"prompt_tokens":100,'
    '"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36,'
    '"prompt_tokens_details":{"cached_tokens":101}}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{"total_tokens":-1}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","usage":{},"request_tokens":-1}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","request_tokens":"4"}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","response_tokens":[4]}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","total_tokens":"4"}',
    '{"timestamp":"yesterday","model":"m","request_tokens":-4}',
    '{"timestamp":"2026-01-18T06:07:46Z","request_tokens":-4}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","status":"503"}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","status":200,"error":{"type":"x"}}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","duration_ms":5,"response_time":9}',
    '{"timestamp":"2026-01-18T06:07:46Z","model":"m","id":"r","user":"u"}',
]


@pytest.mark.parametrize("line", INFERENCE_LINES)
def test_inference_paths_agree_on_odd_lines(line: str) -> None:
    assert_same("inference", line.encode())


@pytest.mark.parametrize("line", API_LINES)
def test_api_usage_paths_agree_on_odd_lines(line: str) -> None:
    assert_same("api_usage", line.encode())


@pytest.mark.parametrize("schema_name", ["inference", "api_usage"])
def test_paths_agree_on_generated_traffic(schema_name: Any) -> None:
    for generated in generate_lines(2000, schema_name, seed=21, error_rate=0.2):
        assert_same(schema_name, generated.data.rstrip(b"\n"))


# -- Hypothesis: objects with fields of every type ------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.integers(-3, 5000),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=2),
    st.dictionaries(st.sampled_from(["type", "code", "message"]), _scalars, max_size=2),
)
_timestamps = st.one_of(
    st.sampled_from([
        "2026-01-18T06:07:46.123Z", "2026-01-18T06:07:46+08:00", "2026-01-18T06:07:46",
        "2026-01-18", "2026-01-18 06:07:46.5", "2026-02-30T00:00:00Z", "yesterday",
    ]),
    st.floats(-10.0, 4e10), st.integers(-5, 4 * 10**10), st.booleans(), st.none(),
)
_levels = st.one_of(st.sampled_from(["INFO", "ERROR", "error", "fatal", "Error"]),
                   st.integers(-100, 100))
_errors = st.one_of(
    _values,
    st.sampled_from(["CUDA out of memory", "Connection refused", "rate limit", "timeout"]),
)


def _record(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_inference_records = _record({
    "timestamp": _timestamps, "duration_ms": _values, "service": _values, "model": _values,
    "level": _levels, "request_id": _values, "user_id": _values, "status": _values,
    "error": _errors, "ttft_ms": _values, "input_tokens": _values, "output_tokens": _values,
    "reasoning_tokens": _values, "throughput_tps": _values, "prompt_truncated": _values,
})
_usage = _record({
    "prompt_tokens": _values, "completion_tokens": _values, "total_tokens": _values,
    "prompt_cache_hit_tokens": _values, "prompt_cache_miss_tokens": _values,
    "completion_tokens_details": st.one_of(_values, _record({"reasoning_tokens": _values})),
    "prompt_tokens_details": st.one_of(_values, _record({"cached_tokens": _values})),
})
_api_records = _record({
    "timestamp": _timestamps, "model": _values, "model_name": _values, "service": _values,
    "request_id": _values, "id": _values, "user_id": _values, "user": _values,
    "status": _values, "duration_ms": _values, "response_time": _values,
    "usage": st.one_of(_values, _usage), "request_tokens": _values, "response_tokens": _values,
    "cost": _values, "error": _errors,
})


@settings(max_examples=400, deadline=None)
@given(record=_inference_records)
def test_inference_paths_agree_on_any_object(record: dict[str, Any]) -> None:
    assert_same("inference", orjson.dumps(record))


@settings(max_examples=400, deadline=None)
@given(record=_api_records)
def test_api_usage_paths_agree_on_any_object(record: dict[str, Any]) -> None:
    assert_same("api_usage", orjson.dumps(record))


# Lines that pass the required fields, with token counts near and beyond what is valid: the
# objects above mostly fail on the timestamp or model before a count is looked at.
_counts = st.one_of(
    st.none(), st.integers(0, 300), st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, 10**12, 10**12 + 1, -1, 12.0, -0.0, 1.5, 1e20, True, False, "12", "",
                     [], [3], {}, {"n": 1}]),
    st.floats(allow_nan=False, allow_infinity=False),
)
_odd_objects = st.sampled_from([5, [], "x", True, [{}]])
_priced_usage = _record({
    "prompt_tokens": _counts, "completion_tokens": _counts, "total_tokens": _counts,
    "prompt_cache_hit_tokens": _counts, "prompt_cache_miss_tokens": _counts,
    "completion_tokens_details": st.one_of(st.none(), _odd_objects,
                                           _record({"reasoning_tokens": _counts})),
    "prompt_tokens_details": st.one_of(st.none(), _odd_objects,
                                       _record({"cached_tokens": _counts})),
})
_priced_records = st.fixed_dictionaries(
    {"timestamp": st.just("2026-01-18T06:07:46Z"), "model": st.just("m")},
    optional={"usage": st.one_of(st.none(), _odd_objects, _priced_usage),
              "request_tokens": _counts, "response_tokens": _counts, "total_tokens": _counts,
              "status": st.sampled_from([200, 500]), "duration_ms": st.just(5)},
)


@settings(max_examples=600, deadline=None)
@given(record=_priced_records)
def test_api_usage_paths_agree_on_any_token_counts(record: dict[str, Any]) -> None:
    assert_same("api_usage", orjson.dumps(record))


# -- known differences and crashes ----------------------------------------------------------


@pytest.mark.parametrize("schema_name", ["inference", "api_usage"])
def test_a_deeply_nested_value_is_malformed_not_a_crash(schema_name: str) -> None:
    nested = b"[" * 5000 + b"]" * 5000
    line = b'{"timestamp":"2026-01-18T06:07:46Z","model":"m","duration_ms":5,"x":' + nested + b"}"
    store = MetricStore()
    pipeline = SourcePipeline(name="s", schema=PATHS[schema_name][1],
                              fast_decoder=FAST_DECODERS[schema_name], store=store,
                              clock=FakeClock())
    pipeline.process(LineChunk([line], 0, 0), "x.log")
    assert pipeline.counts.malformed == 1


@pytest.mark.parametrize("schema_name", ["inference", "api_usage"])
def test_invalid_utf8_in_a_skipped_field_gives_the_same_answer_on_both_paths(
    schema_name: str,
) -> None:
    line = (b'{"timestamp":"2026-01-18T06:07:46Z","model":"m","duration_ms":5,'
            b'"prompt_truncated":"\xe8\xaf\xb7\xe7\x94"}')  # cut inside a UTF-8 sequence
    assert_same(schema_name, line)


def test_lowercase_rfc3339_timestamp_gives_the_same_answer_on_both_paths() -> None:
    assert_same("inference", b'{"timestamp":"2026-01-18t06:07:46z","duration_ms":5}')


@pytest.mark.parametrize("stamp", [b"0001-01-01T00:00:00Z", b"9999-12-31T23:59:59Z",
                                   b"1970-01-01T00:30:00+01:00"])
@pytest.mark.parametrize("schema_name", ["inference", "api_usage"])
def test_a_timestamp_outside_1970_to_3000_is_malformed_on_both_paths(
        schema_name: str, stamp: bytes) -> None:
    line = b'{"timestamp":"' + stamp + b'","model":"m","duration_ms":5}'
    assert_same(schema_name, line)
    decode = decode_inference if schema_name == "inference" else decode_api_usage
    with pytest.raises(MalformedLine, match="out of range"):
        decode(line)


def test_reported_cost_keeps_the_digits_of_the_line_on_the_fast_path() -> None:
    line = b'{"timestamp":"2026-01-18T06:07:46Z","model":"m","cost":0.12345678901234567891}'
    assert decode_api_usage(line).reported_cost == "0.12345678901234567891"


# -- lines orjson or msgspec refuse, and implausible values: the same answer on both paths ----

API_TS = b'"timestamp":"2026-01-18T06:07:46Z"'
BAD_UTF8 = b"ab\xe8\xaf"  # cut inside a UTF-8 sequence


def accepted(schema_name: str, line: bytes) -> dict[str, Any]:
    """The event both paths give for `line`, failing unless they agree and accept it."""
    assert_same(schema_name, line)
    result = outcome(lambda: PATHS[schema_name][0](line))
    assert isinstance(result, dict), f"rejected: {result}"
    return result


@pytest.mark.parametrize(("schema_name", "field", "event_field"), [
    ("inference", "service", "service"), ("inference", "model", "model"),
    ("inference", "user_id", "user"), ("inference", "request_id", "request_id"),
    ("inference", "level", None),
    ("api_usage", "model", "model"), ("api_usage", "user", "user"),
    ("api_usage", "user_id", "user"), ("api_usage", "request_id", "request_id"),
    ("api_usage", "service", "service"),
])
def test_invalid_utf8_in_a_mapped_string_field_is_accepted_on_both_paths(
    schema_name: str, field: str, event_field: str | None,
) -> None:
    others = b',"model":"m"' if field != "model" else b""
    line = (b"{" + API_TS + b',"duration_ms":5' + others + b',"' + field.encode() + b'":"'
            + BAD_UTF8 + b'"}')
    event = accepted(schema_name, line)
    if event_field is not None:
        assert event[event_field] == "ab\ufffd"
    assert event["error_class"] is None


@pytest.mark.parametrize("schema_name", ["inference", "api_usage"])
def test_a_number_too_large_for_a_double_in_an_unused_field_is_accepted_on_both_paths(
    schema_name: str,
) -> None:
    line = b"{" + API_TS + b',"model":"m","duration_ms":5,"prompt_len":1e400}'
    assert accepted(schema_name, line)["duration"] == 0.005


def test_a_duration_too_large_for_a_double_is_malformed_on_both_paths() -> None:
    line = b"{" + API_TS + b',"duration_ms":1e400}'
    assert_same("inference", line)
    assert outcome(lambda: decode_inference(line)) == (
        "malformed", "duration_ms: expected a number from 0 to 604800000, got inf")


def test_an_api_duration_too_large_for_a_double_is_ignored_on_both_paths() -> None:
    line = b"{" + API_TS + b',"model":"m","duration_ms":1e400,"response_time":2}'
    assert accepted("api_usage", line)["duration"] == 2.0


@pytest.mark.parametrize(("field", "count"), [
    pytest.param(field, count, id=f"{field}={count.decode()}")
    for field in ("input_tokens", "output_tokens", "reasoning_tokens")
    for count in (b"1e20", b"1.5e300", b"10000000000000")
])
def test_implausible_inference_token_counts_are_ignored_on_both_paths(
    field: str, count: bytes,
) -> None:
    line = b"{" + API_TS + b',"duration_ms":5,"' + field.encode() + b'":' + count + b"}"
    assert accepted("inference", line)[field] is None


@pytest.mark.parametrize(("tokens", "field"), [
    (b'"request_tokens":1e20,"response_tokens":10000000000000', "request_tokens"),
    (b'"request_tokens":5,"response_tokens":10000000000000', "response_tokens"),
    (b'"usage":{"prompt_tokens":10000000000000,"completion_tokens":1e20}',
     "usage.prompt_tokens"),
    (b'"usage":{"prompt_tokens":5,"completion_tokens":1e400}', "usage.completion_tokens"),
])
def test_implausible_api_token_counts_are_malformed_on_both_paths(tokens: bytes,
                                                                  field: str) -> None:
    # Unlike inference: these lines are priced, and an ignored count would undercharge them.
    line = b"{" + API_TS + b',"model":"m",' + tokens + b"}"
    assert_same("api_usage", line)
    result = outcome(lambda: decode_api_usage(line))
    assert isinstance(result, tuple)
    assert result[1].startswith(f"{field}: not a token count (")


@pytest.mark.parametrize("schema_name", ["inference", "api_usage"])
@pytest.mark.parametrize("status", [
    "\u00b2\u2070\u2070",  # superscript 200: str.isdigit() says yes, int() says no
    "\u0662\u0660\u0660",  # Arabic-Indic 200: int() would accept it
    "\uff15\uff10\uff13",  # full-width 503
], ids=["superscript", "arabic-indic", "fullwidth"])
def test_a_status_of_non_ascii_digits_is_ignored_on_both_paths(
    schema_name: str, status: str,
) -> None:
    line = ("{" + TS + ',"model":"m","duration_ms":5,"status":"' + status + '"}').encode()
    event = accepted(schema_name, line)
    assert event["status"] is None
    assert event["error_class"] is None


EXACT_COST = b"0.12345678901234567891"


@pytest.mark.parametrize("odd", [
    b"",  # the typed path
    b',"status":"200"',  # a string status: the lenient path
    b',"user":"' + BAD_UTF8 + b'"',  # bad UTF-8 in a mapped field: the lenient path
])
@pytest.mark.parametrize(("cost", "expected"), [
    (EXACT_COST, EXACT_COST.decode()),
    (b'"' + EXACT_COST + b'"', EXACT_COST.decode()),
    (b'"n/a"', None),
    (b'"0.1 USD"', None),
])
def test_reported_cost_keeps_its_digits_or_is_absent_on_every_path(
    odd: bytes, cost: bytes, expected: str | None,
) -> None:
    line = b"{" + API_TS + b',"model":"m"' + odd + b',"cost":' + cost + b"}"
    assert decode_api_usage(line).reported_cost == expected
