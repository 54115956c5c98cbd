"""The `dingtalk_configs` integration: a DingTalk custom robot, markdown messages.

Decided at render time and stored: the title (the receiver's `title` template or the
default, with the `keyword` in front when the robot requires one), the markdown sections
(`dingtalk.md.j2` or the receiver's `message`), who to mention, and `msgUuid`, which
DingTalk uses to drop a message it has already accepted, so a retry after a lost answer
does not post twice. The webhook URL and the signing secret come from the current config
at delivery; the signature (`timestamp` in milliseconds, `sign`) is computed fresh for
every attempt, since DingTalk rejects timestamps more than an hour off.

DingTalk only highlights a mention that also appears in the text as "@<mobile or user id>",
and a robot with the keyword setting rejects (310000) a message whose text lacks the
keyword; both are added to the text when it is assembled. The whole JSON body stays under
20,000 bytes.

Answers: errcode 0 is sent; 130101 (sending too fast; DingTalk then throttles the robot for
a while) and -1 (system busy) are transient; 310000 (signature, keyword or IP check
failed), 300001 (no such token), 460101 (message too large) and every other code are
permanent, with reason "dingtalk_<errcode>".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from monitor.clock import Clock
from monitor.config_notify import DingtalkConfig
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
    render_text,
    render_title,
    with_more,
)
from monitor.notify.channels.signing import dingtalk_signed_url, secret_digest
from monitor.notify.model import Notification
from monitor.notify.render import Renderer

MAX_BODY_BYTES = 20_000
LIMITS = (RateLimit(count=20, per_seconds=60.0),)
TEMPLATE = "dingtalk.md.j2"
ANSWERS = RobotAnswers(
    provider="dingtalk", code_keys=("errcode",), message_keys=("errmsg",),
    transient_codes=frozenset({130101, -1}), retry_after=60.0)
# msgUuid values are UUIDv5 names in this namespace, so the same notification (or the same
# merge) always gets the same id.
_MSG_UUID_NAMESPACE = uuid.UUID("6f1c9e52-3d0b-4f7a-9a55-0c2f4e1d8b37")


def dingtalk_payload(message: Message) -> dict[str, Any]:
    """The JSON body DingTalk receives for a stored message (the same on every attempt)."""
    sections = [Section.from_json(s) for s in message["sections"]]
    text = with_more("\n\n".join(s.text for s in sections), int(message["more"]))
    keyword = message.get("keyword")
    if keyword and keyword not in text:
        text = f"{text}\n\n{keyword}"
    at = message["at"]
    mentions = " ".join(f"@{who}" for who in [*at["atMobiles"], *at["atUserIds"]])
    if mentions:
        text = f"{text}\n\n{mentions}"
    return {"msgtype": "markdown", "markdown": {"title": message["title"], "text": text},
            "at": at, "msgUuid": message["msgUuid"]}


def dingtalk_body(message: Message) -> bytes:
    return orjson.dumps(dingtalk_payload(message))


class DingtalkChannel(RobotChannel[DingtalkConfig]):
    """One `dingtalk_configs` entry of one receiver."""

    integration = "dingtalk"

    def __init__(self, config: DingtalkConfig, *, receiver: str, index: int,
                 session: aiohttp.ClientSession, clock: Clock, renderer: Renderer,
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        if config.url is None:
            raise ValueError("a DingTalk config without a url (the config loader requires one)")
        super().__init__(config, receiver=receiver, index=index, session=session, clock=clock,
                         renderer=renderer, timeout=timeout)
        self._url = config.url.get_secret_value()

    @property
    def rate_key(self) -> str:
        return f"dingtalk:{secret_digest(self._url)}"

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return LIMITS

    def render(self, notification: Notification) -> Message:
        n = clip_values(notification.limited(self.config.max_alerts))
        title = render_title(self.renderer, n, self.config.title)
        keyword = self.config.keyword
        if keyword and keyword not in title:
            title = f"{keyword} {title}"
        message: Message = {
            "title": title,
            "sections": [],
            "more": 0,
            "keyword": keyword,
            "at": {"atMobiles": list(self.config.at_mobiles),
                   "atUserIds": list(self.config.at_user_ids),
                   "isAtAll": self.config.at_all},
            "msgUuid": self._msg_uuid(n),
        }

        def size(text: str) -> int:
            return len(dingtalk_body({**message, "sections": [Section(text, 0).to_json()]}))

        section = fit_notification(
            n, render=lambda m: render_text(self.renderer, m, default=TEMPLATE,
                                            override=self.config.message),
            size=size, limit=MAX_BODY_BYTES)
        message["sections"] = [section.to_json()]
        return message

    async def deliver(self, message: Message) -> Delivery:
        url = self._url
        if self.config.secret is not None:
            url = dingtalk_signed_url(url, self.config.secret.get_secret_value(),
                                      int(self.clock.time() * 1000))
        outcome = await post_json(self.session, url, dingtalk_body(message),
                                  timeout=self.timeout)
        return ANSWERS.delivery(outcome)

    def merge(self, messages: list[Message]) -> Message | None:
        if not messages:
            return None
        if len(messages) == 1:
            return messages[0]
        merged: Message = {
            "title": merged_title([m["title"] for m in messages]),
            "sections": [],
            "more": sum(int(m["more"]) for m in messages),
            "keyword": next((m["keyword"] for m in messages if m.get("keyword")), None),
            "at": _merged_mentions([m["at"] for m in messages]),
            "msgUuid": str(uuid.uuid5(_MSG_UUID_NAMESPACE,
                                      "merge\n" + "\n".join(m["msgUuid"] for m in messages))),
        }

        def size(sections: Sequence[Section], more: int) -> int:
            return len(dingtalk_body({**merged, "more": merged["more"] + more,
                                      "sections": [s.to_json() for s in sections]}))

        kept, left_out = fit_sections(
            [Section.from_json(s) for m in messages for s in m["sections"]],
            size=size, limit=MAX_BODY_BYTES)
        merged["sections"] = [s.to_json() for s in kept]
        merged["more"] += left_out
        return merged

    def _msg_uuid(self, n: Notification) -> str:
        alerts = [(a.fingerprint, a.status_at(n.now), a.starts_at, a.ends_at)
                  for a in n.alerts]
        name = orjson.dumps([self.rate_key, n.receiver, self.index, n.group_key, n.now,
                             alerts, n.truncated])
        return str(uuid.uuid5(_MSG_UUID_NAMESPACE, name.decode()))


def _merged_mentions(ats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"atMobiles": list(dict.fromkeys(m for at in ats for m in at["atMobiles"])),
            "atUserIds": list(dict.fromkeys(u for at in ats for u in at["atUserIds"])),
            "isAtAll": any(bool(at["isAtAll"]) for at in ats)}
