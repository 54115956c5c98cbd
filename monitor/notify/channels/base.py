"""The interface every integration implements, and what a delivery attempt can come to.

A channel works in two steps so that the outbox can be durable and exact:

1. `render(notification)` -> a message: a JSON-serialisable dict, stored in the outbox row
   *before* anything is sent. Everything that must stay the same across retries (DingTalk's
   `msgUuid`, an email's Message-Id, the rendered text) is decided here.
2. `deliver(message)` -> a `Delivery`, called by the outbox, possibly many times (retries,
   after a restart). Secrets (webhook URLs, signing keys, passwords) come from the channel's
   current config at delivery time and are never stored in the message.

Channels never raise for a failed delivery: they classify it. Transient failures (5xx,
timeouts, connection errors, DingTalk 130101, HTTP 429) are retried by the outbox with
backoff; permanent ones (bad signature, 4xx, a keyword the robot rejects) are not, and are
logged loudly and counted under `reason`.

Rate limits are declared (`limits`) and enforced by the outbox per `rate_key` (one robot
may be shared by several receivers). When a rate-limited queue backs up, the outbox asks the
channel to `merge` queued messages into one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from monitor.notify.model import Notification

Message = dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    """The outcome of one attempt. `reason` is a short, stable metric label value."""

    ok: bool
    retry: bool = False
    reason: str = ""
    detail: str = ""  # for the log line: the provider's error code and message
    retry_after: float | None = None  # seconds, when the provider says (Retry-After)

    @classmethod
    def sent(cls) -> Delivery:
        return cls(ok=True)

    @classmethod
    def transient(cls, reason: str, detail: str = "",
                  retry_after: float | None = None) -> Delivery:
        return cls(ok=False, retry=True, reason=reason, detail=detail, retry_after=retry_after)

    @classmethod
    def permanent(cls, reason: str, detail: str = "") -> Delivery:
        return cls(ok=False, retry=False, reason=reason, detail=detail)


@dataclass(frozen=True)
class RateLimit:
    """At most `count` messages per `per_seconds` seconds."""

    count: int
    per_seconds: float


class Channel(Protocol):
    """One configured integration of one receiver (e.g. the first dingtalk_configs entry)."""

    integration: str  # "dingtalk", "wecom", "feishu", "email", "webhook", "alertmanager"
    send_resolved: bool

    @property
    def rate_key(self) -> str:
        """Messages with the same key share the rate limits (e.g. one DingTalk robot)."""
        ...

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        ...

    def render(self, notification: Notification) -> Message:
        ...

    async def deliver(self, message: Message) -> Delivery:
        ...

    def merge(self, messages: list[Message]) -> Message | None:
        """One message standing for all of `messages` (in order), or None if this channel
        does not merge."""
        ...
