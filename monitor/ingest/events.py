"""The request event every schema produces, and the error classes of SPEC §5.

An event carries numbers and identifiers only: prompt and response text never enter it, so it
can never reach a label, the ledger or a notification.
"""

from __future__ import annotations

import re

import msgspec

from monitor.metrics.store import without_surrogates

# Error classes (label `class`), most specific first.
TIMEOUT = "timeout"
RATE_LIMIT = "rate_limit"
AUTH = "auth"
CONNECTION = "connection"
OOM = "oom"
SERVER = "server"
CLIENT = "client"
OTHER = "other"
ERROR_CLASSES = (TIMEOUT, RATE_LIMIT, AUTH, CONNECTION, OOM, SERVER, CLIENT, OTHER)

_STATUS_CLASSES = {408: TIMEOUT, 504: TIMEOUT, 429: RATE_LIMIT, 401: AUTH, 403: AUTH}
# Checked in this order against the error text. Word boundaries matter: "oom" must not match
# "room" or "bloom", "reset" must not match "preset".
_TEXT_CLASSES = tuple(
    (error_class, re.compile(pattern, re.IGNORECASE))
    for error_class, pattern in (
        (OOM, r"out of memory|outofmemory|\boom(?:[-_ ]?kill(?:ed|er)?)?\b"),
        (TIMEOUT, r"timed?[-_ ]?out|deadline exceeded"),
        (RATE_LIMIT, r"rate[-_ ]?limit|too many requests"),
        (CONNECTION, r"connection|\brefused\b|\breset by peer\b|broken pipe|unreachable"),
        (AUTH, r"unauthori[sz]ed|forbidden|authentication|invalid api key"),
    )
)


def classify_error(status: int | None, text: str) -> str:
    """The class of a failed request from its HTTP status and its error text.

    Statuses that name a class (408/504, 429, 401/403) decide first; then the text, which is
    more specific than a bare 5xx (a 500 saying "CUDA out of memory" is `oom`); then the
    status range.
    """
    if status is not None:
        by_status = _STATUS_CLASSES.get(status)
        if by_status is not None:
            return by_status
    if text:
        for error_class, pattern in _TEXT_CLASSES:
            if pattern.search(text):
                return error_class
    if status is not None:
        if 500 <= status <= 599:
            return SERVER
        if 400 <= status <= 499:
            return CLIENT
    return OTHER


class RequestEvent(msgspec.Struct, gc=False, array_like=True):
    """One request, as read from one log line.

    A msgspec Struct without GC tracking: built once per line, it costs a third of a slotted
    dataclass. It holds no containers, so it can never be part of a reference cycle. Not
    frozen, for the same speed; nothing mutates an event after its schema builds it. Encoded
    as an array (the ledger journal's msgpack: a third of the bytes, half the time of a map).
    """

    timestamp: float  # epoch seconds, UTC
    duration: float | None  # seconds
    ttft: float | None  # seconds to first token
    service: str
    model: str
    request_id: str | None
    user: str | None
    status: int | None  # HTTP-like status code when the log gives one
    error_class: str | None  # None means success
    input_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    cache_hit_tokens: int | None
    cache_miss_tokens: int | None
    throughput: float | None  # output tokens per second of this request
    reported_cost: str | None  # a cost the log itself carries, kept as text for exact decimals


def _utf8_safe(text: str | None) -> str | None:
    if text is None or text.isascii():
        return text
    return without_surrogates(text)


def without_lone_surrogates(event: RequestEvent) -> RequestEvent:
    """`event` with every lone surrogate in its text replaced by U+FFFD.

    JSON may escape half of a surrogate pair alone (`"\\ud800"`); both decoders hand it over
    as a str that cannot be encoded as UTF-8, and as a label value or a ledger column it would
    make every /metrics render and every checkpoint fail from then on. Callers check the line
    for a `\\uD8..`-`\\uDF..` escape first, so ordinary lines never come here.
    """
    return msgspec.structs.replace(
        event,
        service=_utf8_safe(event.service) or "",
        model=_utf8_safe(event.model) or "",
        request_id=_utf8_safe(event.request_id),
        user=_utf8_safe(event.user),
    )


def may_hold_lone_surrogates(line: bytes) -> bool:
    """Whether the JSON line escapes a UTF-16 surrogate (\\uD800-\\uDFFF) anywhere (the hot
    loop asks only about lines with a `\\u` escape at all)."""
    return b"\\ud" in line or b"\\uD" in line
