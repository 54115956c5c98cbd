"""Line decoders: the bytes of one line in, a `RequestEvent` out, as fast as possible.

The built-in schemas decode with msgspec into typed structs: the JSON is parsed, the fields
are type-checked and range-checked and the timestamp is parsed in C, and fields the schema
does not use (the prompt and response text above all) are skipped without being turned into
Python objects. That is what makes ingestion several times faster than decoding a dict and
checking it.

The typed path is strict; the schemas of SPEC §5 are lenient (an optional field of the wrong
type is ignored, a date-only timestamp is fine — but not an `api_usage` token count, which is
priced: there a bad one rejects the line). So any line the typed path rejects is handed to the
dict-based parser in `schemas.py`, which gives the answer for those lines, the reason of a
rejection included; the cache split's consistency checks are `cache_split`'s, shared by both.
A line is judged by the fields its schema uses: bad UTF-8 or an overflowing number elsewhere
does not cost the request on either path. Both paths produce the same event for the same line,
except that a timestamp with more than six fractional digits is rounded by one and truncated
by the other (they agree to the microsecond).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson

from monitor.ingest.events import RequestEvent, classify_error
from monitor.ingest.schemas import (
    ERROR_LEVELS,
    MAX_COUNT,
    MAX_DURATION_MS,
    MAX_DURATION_S,
    MAX_EPOCH,
    MAX_TOKENS_PER_SECOND,
    MalformedLine,
    cache_split,
    cost_text,
    epoch_seconds,
    error_text,
    has_error,
    parse_api_usage,
    parse_inference,
    request_throughput,
)

LineDecoder = Callable[[bytes], RequestEvent]

_ABSENT = msgspec.Raw(b"")
# What the typed path may not decide: any of it sends the line to the lenient parser.
_FALL_BACK = (msgspec.DecodeError, ValueError, RecursionError)  # ValueError: bad UTF-8

# Ranges checked in C by msgspec; a value outside them sends the line to the lenient parser,
# which decides what the schema says (ignore the field, or reject the line).
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Milliseconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_MS)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_S)]
TokensPerSecond = Annotated[float, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_SECOND)]
Status = Annotated[int, msgspec.Meta(gt=0, lt=1000)]
Epoch = Annotated[float, msgspec.Meta(ge=0, lt=MAX_EPOCH)]


def decode_object(line: bytes) -> dict[str, Any]:
    """The line as a JSON object, or MalformedLine saying what it is instead.

    A line orjson refuses only for bad UTF-8 inside a string (a prompt cut mid-character)
    or a number too large for a double is decoded leniently, as the typed path does for
    fields it does not use: the schema then judges the fields it needs.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            obj = json.loads(line.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            raise MalformedLine(f"not JSON ({exc})") from None
    if type(obj) is not dict:
        raise MalformedLine(f"a JSON {type(obj).__name__}, not an object")
    return obj


class _InferenceRecord(msgspec.Struct, gc=False):
    timestamp: datetime | Epoch
    duration_ms: Milliseconds
    service: str = ""
    model: str = ""
    level: str = ""
    request_id: str = ""
    user_id: str = ""
    status: Status | None = None
    error: Any = None
    ttft_ms: Milliseconds | None = None
    input_tokens: Count | None = None
    output_tokens: Count | None = None
    reasoning_tokens: Count | None = None
    throughput_tps: TokensPerSecond | None = None


_decode_inference_record = msgspec.json.Decoder(_InferenceRecord).decode


def decode_inference(line: bytes) -> RequestEvent:
    try:
        rec = _decode_inference_record(line)
    except _FALL_BACK:
        return parse_inference(decode_object(line))
    timestamp = rec.timestamp
    if isinstance(timestamp, datetime):
        timestamp = epoch_seconds(timestamp)
    status = rec.status
    duration = rec.duration_ms / 1000.0
    ttft = rec.ttft_ms / 1000.0 if rec.ttft_ms is not None else None
    error = rec.error
    if rec.level in ERROR_LEVELS or (error is not None and has_error(error)) or (
        status is not None and status >= 400
    ):
        error_class: str | None = classify_error(status, error_text(error))
    else:
        error_class = None
    service = rec.service
    output = rec.output_tokens
    tps = rec.throughput_tps
    return RequestEvent(
        timestamp,
        duration,
        ttft,
        service,
        rec.model or service,
        rec.request_id or None,
        rec.user_id or None,
        status,
        error_class,
        rec.input_tokens,
        output,
        rec.reasoning_tokens,
        None,
        None,
        tps if tps is not None else request_throughput(None, output, duration, ttft),
        None,
    )


class _CompletionDetails(msgspec.Struct, gc=False):
    reasoning_tokens: Count | None = None


class _PromptDetails(msgspec.Struct, gc=False):
    cached_tokens: Count | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    prompt_cache_hit_tokens: Count | None = None
    prompt_cache_miss_tokens: Count | None = None
    completion_tokens_details: _CompletionDetails | None = None
    prompt_tokens_details: _PromptDetails | None = None


class _ApiUsageRecord(msgspec.Struct, gc=False):
    timestamp: datetime | Epoch
    model: str = ""
    model_name: str = ""
    service: str = ""
    request_id: str = ""
    id: str = ""
    user_id: str = ""
    user: str = ""
    status: Status | None = None
    duration_ms: Milliseconds | None = None
    response_time: Seconds | None = None
    usage: _Usage | None = None
    request_tokens: Count | None = None
    response_tokens: Count | None = None
    cost: msgspec.Raw = _ABSENT
    error: Any = None


_decode_api_record = msgspec.json.Decoder(_ApiUsageRecord).decode


class _CostOnly(msgspec.Struct, gc=False):
    cost: msgspec.Raw = _ABSENT


_decode_cost_only = msgspec.json.Decoder(_CostOnly).decode


def _parse_api_usage_exactly(line: bytes) -> RequestEvent:
    """The lenient parser's event, with the reported cost's digits as the line wrote them
    (the dict holds a float, which may have lost some)."""
    event = parse_api_usage(decode_object(line))
    if event.reported_cost is not None:
        try:
            exact = _cost_text(_decode_cost_only(line).cost)
        except _FALL_BACK:
            exact = None
        if exact is not None:
            event.reported_cost = exact
    return event


def _cost_text(raw: msgspec.Raw) -> str | None:
    """The reported cost exactly as written (a JSON number's digits, or a string's text)."""
    if not len(raw):
        return None
    data = bytes(raw)
    if data[:1] == b'"':
        return cost_text(orjson.loads(data))
    return cost_text(data.decode()) if data[:1] in b"-0123456789" else None


def decode_api_usage(line: bytes) -> RequestEvent:
    try:
        rec = _decode_api_record(line)
    except _FALL_BACK:
        return _parse_api_usage_exactly(line)
    model = rec.model or rec.model_name
    if not model:
        return parse_api_usage(decode_object(line))  # it raises, naming the missing model
    timestamp = rec.timestamp
    if isinstance(timestamp, datetime):
        timestamp = epoch_seconds(timestamp)
    usage = rec.usage
    status = rec.status
    hit = miss = reasoning = None
    if usage is not None:
        prompt, output = usage.prompt_tokens, usage.completion_tokens
        if usage.completion_tokens_details is not None:
            reasoning = usage.completion_tokens_details.reasoning_tokens
        details = usage.prompt_tokens_details
        hit, miss = cache_split(prompt, usage.prompt_cache_hit_tokens,
                                usage.prompt_cache_miss_tokens,
                                details.cached_tokens if details is not None else None)
    else:
        prompt, output = rec.request_tokens, rec.response_tokens
    if rec.duration_ms is not None:
        duration: float | None = rec.duration_ms / 1000.0
    else:
        duration = rec.response_time
    error = rec.error
    failed = (error is not None and has_error(error)) or (status is not None and status >= 400)
    return RequestEvent(
        timestamp,
        duration,
        None,
        rec.service,
        model,
        rec.request_id or rec.id or None,
        rec.user_id or rec.user or None,
        status,
        classify_error(status, error_text(error)) if failed else None,
        prompt,
        output,
        reasoning,
        hit,
        miss,
        request_throughput(None, output, duration, None) if not failed else None,
        _cost_text(rec.cost),
    )


FAST_DECODERS: dict[str, LineDecoder] = {
    "inference": decode_inference,
    "api_usage": decode_api_usage,
}
