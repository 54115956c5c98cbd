"""Log schemas: one decoded JSON object in, one `RequestEvent` out (SPEC §5).

A schema is a callable that raises `MalformedLine` naming the problem when the object lacks a
required field or has one of the wrong type. Optional fields of the wrong type are ignored, so
one odd field never costs the request — except the token counts of `api_usage`. Those lines
are priced into the cost ledger, and a count dropped to "unknown" would charge the request
too little without a trace; so there a token field (or the `usage` object or a `*_details`
object holding them) that is present, not null and not a valid count makes the line
malformed, and so does a cache split that contradicts `prompt_tokens`. This is the hot path
of ingestion: plain functions, `type(x) is` checks, no per-line allocation beyond the event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.ingest.events import RequestEvent, classify_error

Schema = Callable[[dict[str, Any]], RequestEvent]

ERROR_LEVELS = frozenset({"ERROR", "CRITICAL", "FATAL", "error", "critical", "fatal"})
MAX_EPOCH = 32_503_680_000.0  # year 3000: a larger "epoch seconds" is a unit mistake
_fromisoformat = datetime.fromisoformat
# Subtracting an epoch is ~40 % faster than datetime.timestamp() on this path.
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)  # naive timestamps are UTC by definition


def epoch_seconds(value: datetime) -> float:
    """Seconds since the epoch; a naive datetime is UTC. Outside 1970 to 3000 (the range of
    epoch numbers) it is MalformedLine: day arithmetic in a time zone overflows near year 1 and
    9999, and no request of this century is dated there."""
    if value.tzinfo is None:
        seconds = (value - _EPOCH_NAIVE).total_seconds()
    else:
        seconds = (value - _EPOCH_AWARE).total_seconds()
    if 0.0 <= seconds < MAX_EPOCH:
        return seconds
    raise MalformedLine(f"timestamp: {value.isoformat()} out of range (1970 to 3000)")


class MalformedLine(ValueError):
    """The line is not a request event of its source's schema; the message says why."""


def parse_timestamp(value: object, unit: str = "s") -> float:
    """Epoch seconds from ISO 8601 (naive means UTC) or an epoch number in `unit`."""
    if type(value) is str:
        try:
            parsed = _fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
        except ValueError:
            raise MalformedLine(f"timestamp: not ISO 8601: {value!r:.60}") from None
        return epoch_seconds(parsed)
    if type(value) is int or type(value) is float:
        seconds = value / 1000.0 if unit == "ms" else float(value)
        if 0.0 <= seconds < MAX_EPOCH:
            return seconds
        raise MalformedLine(f"timestamp: epoch {value!r} out of range")
    if value is None:
        raise MalformedLine("timestamp: missing")
    raise MalformedLine(f"timestamp: expected a string or number, got {type(value).__name__}")


# Plausibility bounds. A value beyond them is a corrupt line, not a request to believe: one
# 1e20-token line would freeze a float64 counter (adding 1000 to it changes nothing) forever.
MAX_COUNT = 10**12  # tokens in one request
MAX_DURATION_S = 7 * 86400.0  # one request's latency (or time to first token)
MAX_DURATION_MS = MAX_DURATION_S * 1000.0
MAX_TOKENS_PER_SECOND = 1e7


# `type(x) is int` rather than isinstance: JSON booleans must not pass as numbers.
def _number(value: object, limit: float) -> float | None:
    if (type(value) is float or type(value) is int) and 0 <= value <= limit:
        return float(value)
    return None


def _count(value: object) -> int | None:
    if type(value) is int:
        return value if 0 <= value <= MAX_COUNT else None
    if type(value) is float and value.is_integer() and 0 <= value <= MAX_COUNT:
        return int(value)
    return None


def _priced_count(value: object, field: str) -> int | None:
    """A token count of a priced (`api_usage`) line: None when absent or null, else a valid
    count or `MalformedLine` naming the field — never silently None (see the docstring)."""
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    if value is None:
        return None
    count = _count(value)
    if count is None:
        raise MalformedLine(f"{field}: not a token count ({value!r:.40})")
    return count


def _priced_object(value: object, field: str) -> dict[str, Any] | None:
    """An object holding priced token counts: None when absent or null, else a dict or
    `MalformedLine` naming the field."""
    if type(value) is dict:
        return value
    if value is None:
        return None
    raise MalformedLine(f"{field}: expected an object, got {type(value).__name__}")


def _text(value: object) -> str | None:
    return value if type(value) is str and value else None


def _status(value: object) -> int | None:
    if type(value) is int and 0 < value < 1000:
        return value
    if type(value) is str and len(value) == 3 and value.isascii() and value.isdigit():
        return int(value)
    return None


def error_text(error: object) -> str:
    """Text to classify an `error` field by: a string, or an object's type and message."""
    if type(error) is str:
        return error
    if type(error) is dict:
        parts = [error.get(k) for k in ("type", "code", "message")]
        return " ".join(str(p) for p in parts if p is not None)
    return ""


def is_error_level(level: object) -> bool:
    """Whether a `level` field says the request failed (any JSON type may arrive here)."""
    return type(level) is str and level in ERROR_LEVELS


def has_error(error: object) -> bool:
    return error is not None and error is not False and error not in ("", {})


def request_throughput(reported: object, output: int | None, duration: float | None,
                ttft: float | None) -> float | None:
    tps = _number(reported, MAX_TOKENS_PER_SECOND)
    if tps is not None:
        return tps
    if output is None or duration is None:
        return None
    generating = duration - ttft if ttft is not None and ttft < duration else duration
    return output / generating if generating > 0 else None


def cost_text(value: object) -> str | None:
    """A reported cost as exact decimal text, or None when it is not a finite number."""
    if type(value) is int or type(value) is float:
        text = repr(value)
    elif type(value) is str and value:
        text = value.strip()
    else:
        return None
    try:
        return text if Decimal(text).is_finite() else None
    except InvalidOperation:
        return None


def parse_inference(obj: dict[str, Any]) -> RequestEvent:
    """The inference layer's request log: `timestamp` and `duration_ms` required.

    The hottest function of ingestion: common fields are checked inline and the event is built
    positionally (keyword construction costs three times as much).
    """
    timestamp = parse_timestamp(obj.get("timestamp"))
    raw_duration = obj.get("duration_ms")
    duration_ms = _number(raw_duration, MAX_DURATION_MS)
    if duration_ms is not None:
        duration = duration_ms / 1000.0
    elif raw_duration is None:
        raise MalformedLine("duration_ms: missing")
    else:
        raise MalformedLine(
            f"duration_ms: expected a number from 0 to {MAX_DURATION_MS:.0f}, "
            f"got {raw_duration!r:.40}"
        )
    service = obj.get("service")
    if type(service) is not str:
        service = ""
    model = obj.get("model")
    if type(model) is not str or not model:
        model = service
    status = _status(obj.get("status")) if "status" in obj else None
    error = obj.get("error")
    if is_error_level(obj.get("level")) or has_error(error) or (
        status is not None and status >= 400
    ):
        error_class: str | None = classify_error(status, error_text(error))
    else:
        error_class = None
    ttft_ms = _number(obj.get("ttft_ms"), MAX_DURATION_MS) if "ttft_ms" in obj else None
    ttft = ttft_ms / 1000.0 if ttft_ms is not None else None
    output = obj.get("output_tokens")
    if type(output) is not int or not 0 <= output <= MAX_COUNT:
        output = _count(output)
    input_tokens = obj.get("input_tokens")
    if type(input_tokens) is not int or not 0 <= input_tokens <= MAX_COUNT:
        input_tokens = _count(input_tokens)
    tps = obj.get("throughput_tps")
    if type(tps) is not float or not 0 <= tps <= MAX_TOKENS_PER_SECOND:
        tps = request_throughput(tps, output, duration, ttft)
    request_id = obj.get("request_id")
    user = obj.get("user_id")
    return RequestEvent(
        timestamp,
        duration,
        ttft,
        service,
        model,
        request_id if type(request_id) is str and request_id else None,
        user if type(user) is str and user else None,
        status,
        error_class,
        input_tokens,
        output,
        _count(obj.get("reasoning_tokens")) if "reasoning_tokens" in obj else None,
        None,  # cache hit tokens: the inference layer does not report them
        None,  # cache miss tokens
        tps,
        None,  # reported cost
    )


def cache_split(prompt: int | None, hit: int | None, miss: int | None,
                cached: int | None) -> tuple[int | None, int | None]:
    """(hit, miss) input tokens: DeepSeek's hit/miss fields (one of them missing is the
    prompt's rest), else OpenAI's cached_tokens (miss = prompt - cached), else unknown.

    A split that contradicts a given `prompt_tokens` is `MalformedLine`: hit + miss other than
    the prompt, or a hit, miss or cached count above it. Priced as written it would charge a
    different number of input tokens than the request had.
    """
    if prompt is None:  # nothing to check against: the fields as given, a missing half is 0
        if hit is None and miss is None:
            return None, None
        return (hit if hit is not None else 0), (miss if miss is not None else 0)
    if cached is not None and cached > prompt:
        raise MalformedLine(f"usage.prompt_tokens_details.cached_tokens: {cached} is more "
                            f"than prompt_tokens ({prompt})")
    if hit is not None:
        if miss is not None:
            if hit + miss == prompt:
                return hit, miss
            raise MalformedLine(f"usage: prompt_cache_hit_tokens + prompt_cache_miss_tokens "
                                f"({hit} + {miss}) is not prompt_tokens ({prompt})")
        if hit <= prompt:
            return hit, prompt - hit
        raise MalformedLine(f"usage.prompt_cache_hit_tokens: {hit} is more than "
                            f"prompt_tokens ({prompt})")
    if miss is not None:
        if miss <= prompt:
            return prompt - miss, miss
        raise MalformedLine(f"usage.prompt_cache_miss_tokens: {miss} is more than "
                            f"prompt_tokens ({prompt})")
    if cached is not None:
        return cached, prompt - cached
    return None, None


def _usage_cache_split(usage: Mapping[str, Any], prompt: int | None
                       ) -> tuple[int | None, int | None]:
    details = _priced_object(usage.get("prompt_tokens_details"), "usage.prompt_tokens_details")
    cached = (_priced_count(details.get("cached_tokens"),
                            "usage.prompt_tokens_details.cached_tokens")
              if details is not None else None)
    hit = _priced_count(usage.get("prompt_cache_hit_tokens"), "usage.prompt_cache_hit_tokens")
    miss = _priced_count(usage.get("prompt_cache_miss_tokens"),
                         "usage.prompt_cache_miss_tokens")
    return cache_split(prompt, hit, miss, cached)


def parse_api_usage(obj: dict[str, Any]) -> RequestEvent:
    """One hosted-API call: `timestamp` and `model` (or `model_name`) required.

    The token counts it reads are priced, so one that is present but not a count is
    `MalformedLine` (see the module docstring); `total_tokens` is not read, so not judged.
    """
    timestamp = parse_timestamp(obj.get("timestamp"))
    model = _text(obj.get("model")) or _text(obj.get("model_name"))
    if model is None:
        raise MalformedLine("model: missing (neither model nor model_name is a non-empty string)")
    usage = _priced_object(obj.get("usage"), "usage")
    reasoning = None
    if usage is not None:
        prompt = _priced_count(usage.get("prompt_tokens"), "usage.prompt_tokens")
        output = _priced_count(usage.get("completion_tokens"), "usage.completion_tokens")
        details = _priced_object(usage.get("completion_tokens_details"),
                                 "usage.completion_tokens_details")
        if details is not None:
            reasoning = _priced_count(details.get("reasoning_tokens"),
                                      "usage.completion_tokens_details.reasoning_tokens")
        hit, miss = _usage_cache_split(usage, prompt)
    else:
        prompt = _priced_count(obj.get("request_tokens"), "request_tokens")
        output = _priced_count(obj.get("response_tokens"), "response_tokens")
        hit = miss = None
    duration_ms = _number(obj.get("duration_ms"), MAX_DURATION_MS)
    if duration_ms is not None:
        duration: float | None = duration_ms / 1000.0
    else:
        duration = _number(obj.get("response_time"), MAX_DURATION_S)
    status = _status(obj.get("status"))
    error = obj.get("error")
    failed = has_error(error) or (status is not None and status >= 400)
    return RequestEvent(
        timestamp=timestamp,
        duration=duration,
        ttft=None,
        service=_text(obj.get("service")) or "",
        model=model,
        request_id=_text(obj.get("request_id")) or _text(obj.get("id")),
        user=_text(obj.get("user_id")) or _text(obj.get("user")),
        status=status,
        error_class=classify_error(status, error_text(error)) if failed else None,
        input_tokens=prompt,
        output_tokens=output,
        reasoning_tokens=reasoning,
        cache_hit_tokens=hit,
        cache_miss_tokens=miss,
        throughput=request_throughput(None, output, duration, None) if not failed else None,
        reported_cost=cost_text(obj.get("cost")),
    )


Getter = Callable[[dict[str, Any]], object]


def path_getter(path: str) -> Getter:
    """A function reading a dotted path (`usage.prompt_tokens`) from a decoded object."""
    keys = tuple(path.split("."))
    if len(keys) == 1:
        (only,) = keys
        return lambda obj: obj.get(only)

    def get(obj: dict[str, Any]) -> object:
        node: object = obj
        for key in keys:
            if type(node) is not dict:
                return None
            node = node.get(key)
        return node

    return get


def _absent(obj: dict[str, Any]) -> object:
    """The getter of a field the custom source does not map."""
    return None


def build_custom_schema(fields: Mapping[str, tuple[str, str | None]]) -> Schema:
    """A schema from `fields:` (event field → (dotted path, unit)); `timestamp` is required."""
    if "timestamp" not in fields:  # the config checks field names; this is the one we need
        raise ValueError("custom schema: fields must map timestamp")
    get = {name: path_getter(path) for name, (path, _) in fields.items()}

    def getter(name: str) -> Getter:
        return get.get(name, _absent)
    ts_get, ts_unit = get["timestamp"], fields["timestamp"][1] or "s"
    seconds_per = {name: (0.001 if (unit or "ms") == "ms" else 1.0)
                   for name, (_, unit) in fields.items() if name in ("duration", "ttft")}
    limits = {name: MAX_DURATION_S / per for name, per in seconds_per.items()}
    duration_get, ttft_get = getter("duration"), getter("ttft")
    model_get, service_get, level_get = getter("model"), getter("service"), getter("level")
    error_get, status_get = getter("error"), getter("status")
    rid_get, user_get, cost_get = getter("request_id"), getter("user_id"), getter("cost")
    in_get, out_get, reason_get = (getter("input_tokens"), getter("output_tokens"),
                                   getter("reasoning_tokens"))
    hit_get, miss_get, tps_get = (getter("cache_hit_tokens"), getter("cache_miss_tokens"),
                                  getter("throughput"))

    def parse_custom(obj: dict[str, Any]) -> RequestEvent:
        raw_duration = _number(duration_get(obj), limits.get("duration", 0.0))
        duration = raw_duration * seconds_per["duration"] if raw_duration is not None else None
        raw_ttft = _number(ttft_get(obj), limits.get("ttft", 0.0))
        ttft = raw_ttft * seconds_per["ttft"] if raw_ttft is not None else None
        service = _text(service_get(obj)) or ""
        status = _status(status_get(obj))
        error = error_get(obj)
        failed = (is_error_level(level_get(obj)) or has_error(error)
                  or (status is not None and status >= 400))
        output = _count(out_get(obj))
        return RequestEvent(
            timestamp=parse_timestamp(ts_get(obj), ts_unit),
            duration=duration,
            ttft=ttft,
            service=service,
            model=_text(model_get(obj)) or service,
            request_id=_text(rid_get(obj)),
            user=_text(user_get(obj)),
            status=status,
            error_class=classify_error(status, error_text(error)) if failed else None,
            input_tokens=_count(in_get(obj)),
            output_tokens=output,
            reasoning_tokens=_count(reason_get(obj)),
            cache_hit_tokens=_count(hit_get(obj)),
            cache_miss_tokens=_count(miss_get(obj)),
            throughput=request_throughput(tps_get(obj), output, duration, ttft),
            reported_cost=cost_text(cost_get(obj)),
        )

    return parse_custom
