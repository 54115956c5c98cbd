"""Pure, seeded generators of synthetic log lines, and the scripted incidents that bend them.

Each generator takes an injected `random.Random`, a wall-clock timestamp (epoch seconds) and
the set of incident kinds active at that moment, and returns a `GeneratedLine`: the bytes of
one JSON object ending in `\\n` (orjson, compact, about 550 bytes for `inference`) plus what
the line means (model, error class, tokens), so a driver can count what it wrote and a test
can compare that with what the daemon made of it. Same seed, same calls: same bytes.

Distributions are meant to look like a DeepSeek-R1-Distill-Qwen-1.5B server and a gateway
in front of DeepSeek's hosted API: lognormal token counts and latencies, time to first token
growing with the prompt, prompt-cache hits of 30-60 % on cached prompts, an 80/20
chat/reasoner mix, and 1-5 % errors spread over the error classes of SPEC section 5. Every
error message is chosen so that its status code and its text name the same class.

Incidents: an `Incident` is a kind plus a window in seconds from the start of the run.
Generators ignore kinds they do not know, so a schedule may also carry kinds meant for other
fakes (a GPU memory climb for the GPU sampler) without touching this module.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from math import log
from typing import Any, Final, Literal

import orjson

Schema = Literal["inference", "api_usage"]
SCHEMAS: Final[tuple[Schema, ...]] = ("inference", "api_usage")

SERVICE: Final = "DeepSeek-R1-Distill-Qwen-1.5B"
CHAT_MODEL: Final = "deepseek-chat"
REASONER_MODEL: Final = "deepseek-reasoner"
REASONER_SHARE: Final = 0.2
USER_POOL: Final[tuple[str, ...]] = tuple(f"u-{i:03d}" for i in range(1, 51))

DEFAULT_ERROR_RATE: Final = 0.03
BURST_ERROR_RATE: Final = 0.30
FLAT_API_SHARE: Final = 0.1
MAX_INFERENCE_MS: Final = 60_000.0
SPEND_SURGE_RATE_FACTOR: Final = 5.0

# DeepSeek list prices (CNY per 1M tokens) used only for the `cost` of flat-variant lines,
# which a gateway reports without a cache split, so all input is priced as a miss.
_FLAT_PRICE_INPUT_MISS: Final = 2.0
_FLAT_PRICE_OUTPUT: Final = 3.0


class IncidentKind(StrEnum):
    """The incident kinds these generators act on; other kinds are passed over."""

    LATENCY_SPIKE = "latency_spike"  # inference latency x5-10
    ERROR_BURST = "error_burst"  # error rate ~30 % on both schemas
    SPEND_SURGE = "spend_surge"  # api_usage rate x5, reasoner outputs much longer
    GPU_MEMORY_CLIMB = "gpu_memory_climb"  # the simulated GPU's memory climbs past 90 %


@dataclass(frozen=True, slots=True)
class Incident:
    """One scripted incident: `kind` is active in [start_s, start_s + duration_s)."""

    kind: str
    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("incident kind: must not be empty")
        if self.start_s < 0:
            raise ValueError(f"incident start_s: must be >= 0, got {self.start_s}")
        if self.duration_s <= 0:
            raise ValueError(f"incident duration_s: must be > 0, got {self.duration_s}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active_at(self, offset_s: float) -> bool:
        return self.start_s <= offset_s < self.end_s


def active_kinds(schedule: Iterable[Incident], offset_s: float) -> frozenset[str]:
    """The kinds of the incidents of `schedule` active `offset_s` seconds into the run."""
    return frozenset(incident.kind for incident in schedule if incident.active_at(offset_s))


def default_incident_schedule(duration_s: float) -> tuple[Incident, ...]:
    """The demo's incidents spread over a run of `duration_s` seconds.

    The windows are fractions of the run, so a 10-minute demo gets the latency spike at
    2-3 min, the error burst at 4-5 min, the spend surge at 6-8 min and the (simulated) GPU
    memory climb at 7-8.5 min, and a shorter or longer demo gets the same shape compressed or
    stretched.
    """
    if duration_s <= 0:
        return ()
    return (
        Incident(IncidentKind.LATENCY_SPIKE, 0.2 * duration_s, 0.1 * duration_s),
        Incident(IncidentKind.ERROR_BURST, 0.4 * duration_s, 0.1 * duration_s),
        Incident(IncidentKind.SPEND_SURGE, 0.6 * duration_s, 0.2 * duration_s),
        Incident(IncidentKind.GPU_MEMORY_CLIMB, 0.7 * duration_s, 0.15 * duration_s),
    )


def rate_factor(schema: Schema, active: Collection[str]) -> float:
    """How much the request rate of `schema` is multiplied while `active` incidents run."""
    if schema == "api_usage" and IncidentKind.SPEND_SURGE in active:
        return SPEND_SURGE_RATE_FACTOR
    return 1.0


def format_timestamp(epoch_s: float) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`: `2026-01-18T06:07:46.123Z`."""
    seconds, millis = divmod(round(epoch_s * 1000), 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


@dataclass(frozen=True, slots=True)
class GeneratedLine:
    """One line and what it means; `model` is the service name for `inference` lines.

    Cache tokens are None where the line carries no cache split (inference, flat api lines).
    """

    data: bytes
    schema: Schema
    model: str
    error_class: str | None
    status: int | None
    duration_ms: float
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    cache_hit_tokens: int | None = None
    cache_miss_tokens: int | None = None
    reported_cost: float | None = None

    @property
    def is_error(self) -> bool:
        return self.error_class is not None


@dataclass(frozen=True, slots=True)
class _Failure:
    error_class: str  # SPEC section 5 class that both `status` and `message` point to
    status: int | None
    message: str
    api_type: str
    weight: float


# Messages avoid every other class's keywords ("timeout", "connection", "rate limit", ...).
_INFERENCE_FAILURES: Final = (
    _Failure("oom", None, "CUDA out of memory. Tried to allocate {gib} GiB", "", 0.30),
    _Failure("timeout", 504, "Request timeout after 60s", "", 0.25),
    _Failure("connection", None, "Connection reset by peer", "", 0.20),
    _Failure("server", 500, "Internal server error: generation worker exited", "", 0.15),
    _Failure("server", 503, "Service unavailable: model is still loading", "", 0.10),
)
_API_FAILURES: Final = (
    _Failure("rate_limit", 429, "Rate limit reached", "rate_limit_error", 0.35),
    _Failure(
        "auth", 401, "Authentication Fails, Your api key is invalid", "authentication_error", 0.10
    ),
    _Failure("server", 500, "Internal server error", "server_error", 0.15),
    _Failure("server", 503, "Server overloaded, please try again later", "server_overloaded", 0.15),
    _Failure("timeout", 504, "Gateway timeout", "timeout_error", 0.10),
    _Failure("timeout", 408, "Request timeout after 120s", "timeout_error", 0.10),
    _Failure("connection", None, "Connection refused", "connection_error", 0.05),
)
_INFERENCE_FAILURE_WEIGHTS: Final = tuple(f.weight for f in _INFERENCE_FAILURES)
_API_FAILURE_WEIGHTS: Final = tuple(f.weight for f in _API_FAILURES)

_PROMPT_OPENERS: Final = (
    "Explain in simple terms:",
    "Summarize the following notes:",
    "Write a short Python function that",
    "Translate into English:",
    "What is the difference between",
    "请用简单的语言解释一下：",  # noqa: RUF001 - CJK punctuation: multi-byte UTF-8 on purpose
    "Give three tips about",
)
_RESPONSE_OPENERS: Final = (
    "<think>\nOkay, the user wants",
    "<think>\nLet me think about",
    "Sure.",
    "好的，下面是简要说明：",  # noqa: RUF001 - CJK punctuation: multi-byte UTF-8 on purpose
    "Here is a short answer:",
)
_CORPUS_TEXT: Final = (
    "the garden needs water in the morning and shade in the afternoon so the tomatoes keep "
    "growing while the basil stays green a sorted list can be searched in logarithmic time "
    "by halving the range at every step the recipe asks for two cups of flour one egg and a "
    "pinch of salt mixed until smooth the train leaves at nine and arrives before noon if "
    "the weather holds a function should do one thing and name it clearly so the next "
    "reader understands the intent the river bends twice before it reaches the old mill "
    "where the children feed the ducks on sunday caching the result of a pure function "
    "trades memory for time and works best when inputs repeat the library opens at ten and "
    "lends up to five books for three weeks with one renewal allowed a good summary keeps "
    "the main claim the evidence and the open questions and drops the rest the moon is "
    "about a quarter of the width of the earth and always shows us the same face "
    "一个好的总结应当保留主要观点和证据 天气晴朗的时候适合去公园散步"
)
_CORPUS: Final = tuple(_CORPUS_TEXT.split())


def _filler(rng: random.Random, opener: str, length: int) -> str:
    """`opener` then corpus words from a random place, cut to `length` characters."""
    start = rng.randrange(len(_CORPUS))
    words: list[str] = [opener]
    size = len(opener)
    index = start
    while size < length:
        word = _CORPUS[index % len(_CORPUS)]
        words.append(word)
        size += len(word) + 1
        index += 1
    return " ".join(words)[:length].rstrip() + "..."


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(log(median), sigma)


def _clamp_int(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


def _request_id(rng: random.Random) -> str:
    return uuid.UUID(int=rng.getrandbits(128), version=4).hex


def _user(rng: random.Random) -> str:
    # Squared uniform: a few heavy users, a long tail of light ones.
    return USER_POOL[int(len(USER_POOL) * rng.random() ** 2)]


def _dump(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def _error_rate(base: float, active: Collection[str]) -> float:
    return max(base, BURST_ERROR_RATE) if IncidentKind.ERROR_BURST in active else base


def generate_inference(
    rng: random.Random,
    timestamp: float,
    *,
    active: Collection[str] = (),
    error_rate: float = DEFAULT_ERROR_RATE,
) -> GeneratedLine:
    """One request of the self-hosted model, as its structured request log writes it."""
    request_id = _request_id(rng)
    input_tokens = _clamp_int(_lognormal(rng, 400, 1.0), 12, 8192)
    prompt = _filler(rng, rng.choice(_PROMPT_OPENERS), rng.randint(55, 155))
    user_id = _user(rng) if rng.random() < 0.7 else None
    slowdown = rng.uniform(5.0, 10.0) if IncidentKind.LATENCY_SPIKE in active else 1.0
    record: dict[str, Any] = {
        "timestamp": format_timestamp(timestamp),
        "level": "INFO",
        "service": SERVICE,
        "request_id": request_id,
        "prompt_truncated": prompt,
    }
    if rng.random() < _error_rate(error_rate, active):
        failure = rng.choices(_INFERENCE_FAILURES, _INFERENCE_FAILURE_WEIGHTS)[0]
        if failure.error_class == "timeout":
            duration_ms = MAX_INFERENCE_MS + rng.uniform(0.0, 50.0)
        else:
            duration_ms = min(_lognormal(rng, 300, 1.0) * slowdown, MAX_INFERENCE_MS)
        record.update(
            level="ERROR",
            response_truncated="",
            duration_ms=round(duration_ms, 2),
            input_tokens=input_tokens,
            output_tokens=0,
            throughput_tps=0.0,
        )
        if user_id is not None:
            record["user_id"] = user_id
        if failure.status is not None:
            record["status"] = failure.status
        record["error"] = failure.message.format(gib=f"{rng.choice((0.5, 1, 2, 4)):.2f}")
        return GeneratedLine(
            data=_dump(record),
            schema="inference",
            model=SERVICE,
            error_class=failure.error_class,
            status=failure.status,
            duration_ms=record["duration_ms"],
            input_tokens=input_tokens,
            output_tokens=0,
        )

    ttft_ms = (90.0 + 0.15 * input_tokens) * _lognormal(rng, 1.0, 0.35) * slowdown
    tokens_per_s = _lognormal(rng, 280.0, 0.3) / slowdown
    output_tokens = _clamp_int(_lognormal(rng, 550, 0.8), 4, 8192)
    decode_ms = output_tokens / tokens_per_s * 1000.0
    if ttft_ms + decode_ms > MAX_INFERENCE_MS:  # generation is cut at the time limit
        decode_ms = max(MAX_INFERENCE_MS - ttft_ms, 1000.0)
        output_tokens = max(1, int(decode_ms / 1000.0 * tokens_per_s))
    duration_ms = round(ttft_ms + decode_ms, 2)
    record.update(
        response_truncated=_filler(rng, rng.choice(_RESPONSE_OPENERS), rng.randint(65, 175)),
        duration_ms=duration_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        throughput_tps=round(output_tokens / (decode_ms / 1000.0), 2),
        ttft_ms=round(ttft_ms, 2),
    )
    if user_id is not None:
        record["user_id"] = user_id
    return GeneratedLine(
        data=_dump(record),
        schema="inference",
        model=SERVICE,
        error_class=None,
        status=None,
        duration_ms=duration_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def generate_api_usage(
    rng: random.Random,
    timestamp: float,
    *,
    active: Collection[str] = (),
    error_rate: float = DEFAULT_ERROR_RATE,
    flat_share: float = FLAT_API_SHARE,
) -> GeneratedLine:
    """One call of the hosted API as a gateway logs it; `flat_share` of successes are flat."""
    request_id = _request_id(rng)
    model = REASONER_MODEL if rng.random() < REASONER_SHARE else CHAT_MODEL
    user_id = _user(rng)
    stamp = format_timestamp(timestamp)
    if rng.random() < _error_rate(error_rate, active):
        return _api_failure(rng, stamp, request_id, model, user_id)

    prompt_tokens = _clamp_int(_lognormal(rng, 900, 0.9), 8, 65_536)
    hit = 0
    if rng.random() < 0.85:  # a repeated system prompt; DeepSeek caches 64-token units
        hit = int(prompt_tokens * rng.uniform(0.35, 0.7)) // 64 * 64
    miss = prompt_tokens - hit
    reasoning = 0
    if model == REASONER_MODEL:
        surge = IncidentKind.SPEND_SURGE in active
        reasoning = _clamp_int(_lognormal(rng, 1200, 0.7) * (4.0 if surge else 1.0), 16, 32_768)
        answer = _clamp_int(_lognormal(rng, 400, 0.7) * (2.0 if surge else 1.0), 1, 8192)
        completion = reasoning + answer
    else:
        completion = _clamp_int(_lognormal(rng, 300, 0.8), 1, 8192)
    ttft_ms = (300.0 + 0.05 * prompt_tokens) * _lognormal(rng, 1.0, 0.3)
    duration_ms = round(ttft_ms + completion / _lognormal(rng, 50.0, 0.25) * 1000.0, 2)

    if rng.random() < flat_share:
        cost = round(
            (prompt_tokens * _FLAT_PRICE_INPUT_MISS + completion * _FLAT_PRICE_OUTPUT) / 1e6, 6
        )
        record: dict[str, Any] = {
            "timestamp": stamp,
            "request_id": request_id,
            "model_name": model,
            "user_id": user_id,
            "status": 200,
            "response_time": round(duration_ms / 1000.0, 3),
            "request_tokens": prompt_tokens,
            "response_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "cost": cost,
        }
        return GeneratedLine(
            data=_dump(record),
            schema="api_usage",
            model=model,
            error_class=None,
            status=200,
            duration_ms=duration_ms,
            input_tokens=prompt_tokens,
            output_tokens=completion,
            reasoning_tokens=0,  # the flat shape has no field for them
            reported_cost=cost,
        )

    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": hit},
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": miss,
    }
    if model == REASONER_MODEL:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    record = {
        "timestamp": stamp,
        "request_id": request_id,
        "model": model,
        "user_id": user_id,
        "status": 200,
        "duration_ms": duration_ms,
        "usage": usage,
    }
    return GeneratedLine(
        data=_dump(record),
        schema="api_usage",
        model=model,
        error_class=None,
        status=200,
        duration_ms=duration_ms,
        input_tokens=prompt_tokens,
        output_tokens=completion,
        reasoning_tokens=reasoning,
        cache_hit_tokens=hit,
        cache_miss_tokens=miss,
    )


def _api_failure(
    rng: random.Random, stamp: str, request_id: str, model: str, user_id: str
) -> GeneratedLine:
    failure = rng.choices(_API_FAILURES, _API_FAILURE_WEIGHTS)[0]
    if failure.status == 504:
        duration_ms = 60_000.0 + rng.uniform(0.0, 50.0)
    elif failure.status == 408:
        duration_ms = 120_000.0 + rng.uniform(0.0, 50.0)
    else:
        duration_ms = _lognormal(rng, 80.0, 0.8)
    record: dict[str, Any] = {
        "timestamp": stamp,
        "request_id": request_id,
        "model": model,
        "user_id": user_id,
    }
    if failure.status is not None:
        record["status"] = failure.status
    record["duration_ms"] = round(duration_ms, 2)
    if failure.error_class == "server":  # the upstream answered: an all-zero usage block
        record["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    record["error"] = {"type": failure.api_type, "message": failure.message}
    return GeneratedLine(
        data=_dump(record),
        schema="api_usage",
        model=model,
        error_class=failure.error_class,
        status=failure.status,
        duration_ms=record["duration_ms"],
        input_tokens=0,
        output_tokens=0,
    )


def generate_line(
    schema: Schema,
    rng: random.Random,
    timestamp: float,
    *,
    active: Collection[str] = (),
    error_rate: float = DEFAULT_ERROR_RATE,
) -> GeneratedLine:
    """One line of `schema`; dispatches to `generate_inference` or `generate_api_usage`."""
    if schema == "inference":
        return generate_inference(rng, timestamp, active=active, error_rate=error_rate)
    if schema == "api_usage":
        return generate_api_usage(rng, timestamp, active=active, error_rate=error_rate)
    raise ValueError(f"schema: expected one of {', '.join(SCHEMAS)}, got {schema!r}")


def inference_line(
    rng: random.Random,
    timestamp: float,
    *,
    active: Collection[str] = (),
    error_rate: float = DEFAULT_ERROR_RATE,
) -> bytes:
    """The bytes of one `inference` line (see `generate_inference`)."""
    return generate_inference(rng, timestamp, active=active, error_rate=error_rate).data


def api_usage_line(
    rng: random.Random,
    timestamp: float,
    *,
    active: Collection[str] = (),
    error_rate: float = DEFAULT_ERROR_RATE,
) -> bytes:
    """The bytes of one `api_usage` line (see `generate_api_usage`)."""
    return generate_api_usage(rng, timestamp, active=active, error_rate=error_rate).data
