"""The `wecom_configs` integration: a WeCom (WeChat Work) group robot.

The robot is named by its `key` (sent to the public webhook endpoint) or by its full `url`.
Messages are markdown (`wecom.md.j2` or the receiver's `message`), content at most 4,096
bytes of UTF-8. Markdown messages mention people by user id with `<@userid>` in the content;
mentions by mobile number and "@all" exist only for text messages, so a receiver that asks
for them gets a text message (the same content, at most 2,048 bytes) with
`mentioned_list` / `mentioned_mobile_list`. The choice, the content and the mentions are
decided at render time and stored; the key or URL is read from the current config at
delivery. Label and annotation values cannot mention anyone: `<@` in them is broken up.

Answers: errcode 0 is sent; 45009 (API frequency limit) and -1 (system busy) are transient;
93000 (invalid webhook URL or key) and every other code are permanent, with reason
"wecom_<errcode>".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import orjson

from monitor.clock import Clock
from monitor.config_notify import WecomConfig
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
    render_text,
    with_more,
)
from monitor.notify.channels.signing import secret_digest
from monitor.notify.model import Notification
from monitor.notify.render import Renderer

WEBHOOK_ENDPOINT = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
MAX_MARKDOWN_BYTES = 4096
MAX_TEXT_BYTES = 2048
LIMITS = (RateLimit(count=20, per_seconds=60.0),)
TEMPLATE = "wecom.md.j2"
ANSWERS = RobotAnswers(
    provider="wecom", code_keys=("errcode",), message_keys=("errmsg",),
    transient_codes=frozenset({45009, -1}), retry_after=60.0)
_EVERYONE = "@all"
_MENTION = re.compile(r"<@")


def defuse_mentions(value: str) -> str:
    """A label or annotation value with WeCom's `<@userid>` mention syntax broken."""
    return _MENTION.sub("< @", value)


def wecom_content(message: Message) -> str:
    """The `content` WeCom receives for a stored message."""
    sections = [Section.from_json(s) for s in message["sections"]]
    content = with_more("\n\n".join(s.text for s in sections), int(message["more"]))
    if message["msgtype"] == "markdown" and message["mentioned_list"]:
        content += "\n\n" + " ".join(f"<@{who}>" for who in message["mentioned_list"])
    return content


def wecom_payload(message: Message) -> dict[str, Any]:
    """The JSON body WeCom receives for a stored message."""
    content = wecom_content(message)
    if message["msgtype"] == "markdown":
        return {"msgtype": "markdown", "markdown": {"content": content}}
    text: dict[str, Any] = {"content": content}
    if message["mentioned_list"]:
        text["mentioned_list"] = message["mentioned_list"]
    if message["mentioned_mobile_list"]:
        text["mentioned_mobile_list"] = message["mentioned_mobile_list"]
    return {"msgtype": "text", "text": text}


def _content_limit(message: Message) -> int:
    return MAX_MARKDOWN_BYTES if message["msgtype"] == "markdown" else MAX_TEXT_BYTES


class WecomChannel(RobotChannel[WecomConfig]):
    """One `wecom_configs` entry of one receiver."""

    integration = "wecom"

    def __init__(self, config: WecomConfig, *, receiver: str, index: int,
                 session: aiohttp.ClientSession, clock: Clock, renderer: Renderer,
                 timeout: float = REQUEST_TIMEOUT_S,
                 endpoint: str = WEBHOOK_ENDPOINT) -> None:
        super().__init__(config, receiver=receiver, index=index, session=session, clock=clock,
                         renderer=renderer, timeout=timeout)
        if config.key is not None:
            key = config.key.get_secret_value()
            self._url = f"{endpoint}?key={quote(key, safe='')}"
            self._robot = key
        elif config.url is not None:
            self._url = config.url.get_secret_value()
            # The same robot by key or by URL shares one rate limit.
            self._robot = parse_qs(urlsplit(self._url).query).get("key", [self._url])[0]
        else:
            raise ValueError("a WeCom config without key or url (the loader requires one)")

    @property
    def rate_key(self) -> str:
        return f"wecom:{secret_digest(self._robot)}"

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return LIMITS

    def render(self, notification: Notification) -> Message:
        n = clip_values(notification.limited(self.config.max_alerts), defuse=defuse_mentions)
        mentioned = list(self.config.mentioned_list)
        mobiles = list(self.config.mentioned_mobile_list)
        text_only = bool(mobiles) or _EVERYONE in mentioned
        message: Message = {
            "msgtype": "text" if text_only else "markdown",
            "sections": [],
            "more": 0,
            "mentioned_list": mentioned,
            "mentioned_mobile_list": mobiles,
        }

        def size(text: str) -> int:
            return len(wecom_content({**message, "sections": [Section(text, 0).to_json()]})
                       .encode())

        section = fit_notification(
            n, render=lambda m: render_text(self.renderer, m, default=TEMPLATE,
                                            override=self.config.message),
            size=size, limit=_content_limit(message))
        message["sections"] = [section.to_json()]
        return message

    async def deliver(self, message: Message) -> Delivery:
        outcome = await post_json(self.session, self._url, orjson.dumps(wecom_payload(message)),
                                  timeout=self.timeout)
        return ANSWERS.delivery(outcome)

    def merge(self, messages: list[Message]) -> Message | None:
        if not messages:
            return None
        if len(messages) == 1:
            return messages[0]
        merged: Message = {
            "msgtype": "text" if any(m["msgtype"] == "text" for m in messages) else "markdown",
            "sections": [],
            "more": sum(int(m["more"]) for m in messages),
            "mentioned_list": _union(m["mentioned_list"] for m in messages),
            "mentioned_mobile_list": _union(m["mentioned_mobile_list"] for m in messages),
        }

        def size(sections: Sequence[Section], more: int) -> int:
            return len(wecom_content({**merged, "more": merged["more"] + more,
                                      "sections": [s.to_json() for s in sections]}).encode())

        kept, left_out = fit_sections(
            [Section.from_json(s) for m in messages for s in m["sections"]],
            size=size, limit=_content_limit(merged))
        merged["sections"] = [s.to_json() for s in kept]
        merged["more"] += left_out
        return merged


def _union(lists: Iterable[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(item for values in lists for item in values))
