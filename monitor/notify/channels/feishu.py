"""The `feishu_configs` integration: a Feishu (Lark) custom bot, interactive card messages.

A message is a card: a header with the title (the receiver's `title` template or the
default), red while anything fires and green once all is resolved, and one markdown element
per section (`feishu.md.j2` or the receiver's `message`), divided by rules. Title, colour
and sections are decided at render time and stored; the webhook URL and the secret come
from the current config at delivery. Label and annotation values cannot mention anyone:
an `<at` tag in them is broken up.

With a `secret`, every attempt carries a fresh `timestamp` (seconds, as a string) and
`sign` in the JSON body (see signing.py); Feishu rejects timestamps more than an hour off.
The request body stays under 20,000 bytes (Feishu's limit is 20 KB).

Answers: `code` 0 (or the older API's `StatusCode` 0) is sent; 9499 and 11232 (frequency
limited) are transient; 19021 (signature or timestamp check failed), 19024 (keyword
missing), 19001 (invalid parameters) and every other code are permanent, with reason
"feishu_<code>".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from monitor.clock import Clock
from monitor.config_notify import FeishuConfig
from monitor.notify.channels.base import Delivery, Message, RateLimit
from monitor.notify.channels.http import post_json
from monitor.notify.channels.robot import (
    REQUEST_TIMEOUT_S,
    RobotAnswers,
    RobotChannel,
    Section,
    clip_values,
    fit_notification,
    fit_sections,
    merged_title,
    more_alerts,
    render_text,
    render_title,
)
from monitor.notify.channels.signing import feishu_signature, secret_digest
from monitor.notify.model import Notification
from monitor.notify.render import Renderer

MAX_BODY_BYTES = 20_000
LIMITS = (RateLimit(count=100, per_seconds=60.0), RateLimit(count=5, per_seconds=1.0))
TEMPLATE = "feishu.md.j2"
ANSWERS = RobotAnswers(
    provider="feishu", code_keys=("code", "StatusCode"), message_keys=("msg", "StatusMessage"),
    transient_codes=frozenset({9499, 11232}))
FIRING_COLOUR = "red"
RESOLVED_COLOUR = "green"
# What signing adds to the body, at its real length, so that sizes measured at render time
# hold at delivery: a 10-digit timestamp and a 44-character base64 SHA-256 digest.
_SIGNATURE_STAND_IN = {"timestamp": "0" * 10, "sign": "=" * 44}
_MENTION = re.compile(r"<(\s*/?\s*at\b)", re.IGNORECASE)


def defuse_mentions(value: str) -> str:
    """A label or annotation value with Feishu's `<at id=...></at>` mention tag broken."""
    return _MENTION.sub(r"< \1", value)


def feishu_payload(message: Message, signature: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON body Feishu receives for a stored message, signed when `signature` (the
    `timestamp` and `sign` fields) is given."""
    elements: list[dict[str, Any]] = []
    for section in message["sections"]:
        if elements:
            elements.append({"tag": "hr"})
        elements.append({"tag": "markdown", "content": Section.from_json(section).text})
    if message["more"]:
        elements.append({"tag": "markdown", "content": more_alerts(int(message["more"]))})
    card = {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": message["title"]},
                   "template": message["colour"]},
        "elements": elements,
    }
    return {**(signature or {}), "msg_type": "interactive", "card": card}


def _stored_size(message: Message, signed: bool) -> int:
    return len(orjson.dumps(feishu_payload(message, _SIGNATURE_STAND_IN if signed else None)))


class FeishuChannel(RobotChannel[FeishuConfig]):
    """One `feishu_configs` entry of one receiver."""

    integration = "feishu"

    def __init__(self, config: FeishuConfig, *, receiver: str, index: int,
                 session: aiohttp.ClientSession, clock: Clock, renderer: Renderer,
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        if config.url is None:
            raise ValueError("a Feishu config without a url (the config loader requires one)")
        super().__init__(config, receiver=receiver, index=index, session=session, clock=clock,
                         renderer=renderer, timeout=timeout)
        self._url = config.url.get_secret_value()

    @property
    def rate_key(self) -> str:
        return f"feishu:{secret_digest(self._url)}"

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return LIMITS

    def render(self, notification: Notification) -> Message:
        n = clip_values(notification.limited(self.config.max_alerts), defuse=defuse_mentions)
        signed = self.config.secret is not None
        message: Message = {
            "title": render_title(self.renderer, n, self.config.title),
            "colour": FIRING_COLOUR if n.firing else RESOLVED_COLOUR,
            "sections": [],
            "more": 0,
        }

        def size(text: str) -> int:
            return _stored_size({**message, "sections": [Section(text, 0).to_json()]}, signed)

        section = fit_notification(
            n, render=lambda m: render_text(self.renderer, m, default=TEMPLATE,
                                            override=self.config.message),
            size=size, limit=MAX_BODY_BYTES)
        message["sections"] = [section.to_json()]
        return message

    async def deliver(self, message: Message) -> Delivery:
        signature = None
        if self.config.secret is not None:
            timestamp = int(self.clock.time())
            signature = {"timestamp": str(timestamp),
                         "sign": feishu_signature(self.config.secret.get_secret_value(),
                                                  timestamp)}
        outcome = await post_json(self.session, self._url,
                                  orjson.dumps(feishu_payload(message, signature)),
                                  timeout=self.timeout)
        return ANSWERS.delivery(outcome)

    def merge(self, messages: list[Message]) -> Message | None:
        if not messages:
            return None
        if len(messages) == 1:
            return messages[0]
        signed = self.config.secret is not None
        firing = any(m["colour"] == FIRING_COLOUR for m in messages)
        merged: Message = {
            "title": merged_title([m["title"] for m in messages]),
            "colour": FIRING_COLOUR if firing else RESOLVED_COLOUR,
            "sections": [],
            "more": sum(int(m["more"]) for m in messages),
        }

        def size(sections: Sequence[Section], more: int) -> int:
            return _stored_size({**merged, "more": merged["more"] + more,
                                 "sections": [s.to_json() for s in sections]}, signed)

        kept, left_out = fit_sections(
            [Section.from_json(s) for m in messages for s in m["sections"]],
            size=size, limit=MAX_BODY_BYTES)
        merged["sections"] = [s.to_json() for s in kept]
        merged["more"] += left_out
        return merged
