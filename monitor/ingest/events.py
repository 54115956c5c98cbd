"""The request event every schema produces, and the error classes of SPEC §5.

An event carries numbers and identifiers only: prompt and response text never enter it, so it
can never reach a label, the ledger or a notification.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# Checked in this order against the lower-cased error text.
_TEXT_CLASSES = (
    (OOM, ("cuda out of memory", "outofmemory", "out of memory", "oom")),
    (TIMEOUT, ("timeout", "timed out", "deadline exceeded")),
    (RATE_LIMIT, ("rate limit", "rate_limit", "ratelimit", "too many requests")),
    (CONNECTION, ("connection", "refused", "reset by peer", "broken pipe", "unreachable")),
    (AUTH, ("unauthorized", "forbidden", "authentication", "invalid api key")),
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
        lowered = text.lower()
        for error_class, needles in _TEXT_CLASSES:
            for needle in needles:
                if needle in lowered:
                    return error_class
    if status is not None:
        if 500 <= status <= 599:
            return SERVER
        if 400 <= status <= 499:
            return CLIENT
    return OTHER


@dataclass(slots=True)
class RequestEvent:
    """One request, as read from one log line. Not frozen: construction speed matters on the
    ingest path, and nothing mutates an event after its schema builds it."""

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

    @property
    def is_error(self) -> bool:
        return self.error_class is not None
