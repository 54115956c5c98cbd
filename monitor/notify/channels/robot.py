"""What the chat-robot channels (DingTalk, WeCom, Feishu) share: titles, fitting rendered
markdown into the provider's byte limit, and reading the error code a robot answers with.

A stored robot message is made of sections: one per rendered notification, more after the
outbox merges queued messages. Label and annotation values are first clipped to
VALUE_MAX_BYTES each, so one enormous description cannot crowd out the rest of its alert.
A section that does not fit then loses alerts from its end (the template is rendered again
with fewer, so its markdown stays whole) and says "+N more alerts"; a merge that does not
fit loses whole sections from its end and says the same. Only when a single alert alone is
too big is its text cut, at a line or character boundary.

Robots answer HTTP 200 with an error code in the JSON body (`errcode`, `code`); a few codes
mean "too fast, try later" and are transient, every other non-zero code is permanent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import aiohttp

from monitor.clock import Clock
from monitor.config_notify import IntegrationConfig
from monitor.notify.channels.base import Delivery
from monitor.notify.channels.http import HttpOutcome
from monitor.notify.model import Notification
from monitor.notify.render import Renderer, TemplateError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
ConfigT = TypeVar("ConfigT", bound=IntegrationConfig)

DEFAULT_TITLE = (
    '[{{ "FIRING:%d"|format(firing|length) if firing else "RESOLVED" }}] '
    '{{ common_labels.alertname or group_labels.values()|join(" ") or receiver }}'
)
CUT_MARK = " …"
TITLE_MAX_BYTES = 256
VALUE_MAX_BYTES = 1024


@dataclass(frozen=True)
class Section:
    """Rendered markdown standing for `alerts` alerts (those it leaves out included)."""

    text: str
    alerts: int

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "alerts": self.alerts}

    @classmethod
    def from_json(cls, data: Any) -> Section:
        return cls(str(data["text"]), int(data["alerts"]))


def more_alerts(count: int) -> str:
    """The line that stands for `count` alerts left out (empty for none)."""
    return f"+{count} more alerts" if count > 0 else ""


def with_more(text: str, count: int) -> str:
    line = more_alerts(count)
    return f"{text}\n\n{line}" if line else text


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` of at most `max_bytes` UTF-8 bytes (never half a
    character)."""
    if max_bytes <= 0:
        return ""
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def cut_to_fit(text: str, tail: str, size: Callable[[str], int], limit: int) -> str:
    """`text` shortened (ending at a line break when one is near) and marked as cut, so that
    `size(shortened + tail) <= limit`; `tail` is kept whole."""
    budget = len(text.encode()) - max(0, size(text + tail) - limit)
    while budget > 0:
        kept = cut_utf8(text, budget - len(CUT_MARK.encode()))
        line_end = kept.rfind("\n")
        if line_end >= len(kept) // 2:
            kept = kept[:line_end].rstrip()
        candidate = kept + CUT_MARK
        over = size(candidate + tail) - limit
        if over <= 0:
            return candidate
        # Every byte taken from the text takes at least one from the body (JSON escaping
        # only adds), so this converges.
        budget = len(candidate.encode()) - over
    return CUT_MARK.strip()


def clip_values(n: Notification, max_bytes: int = VALUE_MAX_BYTES, *,
                defuse: Callable[[str], str] | None = None) -> Notification:
    """`n` with every label and annotation value passed through `defuse` (which breaks a
    provider's inline mention syntax, so a value from a log line cannot page anyone) and
    cut to `max_bytes` (marked as cut); the alerts keep their fingerprints."""

    def clip(values: Mapping[str, str]) -> dict[str, str]:
        clipped = {}
        for key, value in values.items():
            text = defuse(value) if defuse is not None else value
            if len(text.encode()) > max_bytes:
                text = cut_utf8(text, max_bytes - len(CUT_MARK.encode())) + CUT_MARK
            clipped[key] = text
        return clipped

    alerts = tuple(replace(a, labels=clip(a.labels), annotations=clip(a.annotations))
                   for a in n.alerts)
    return replace(n, alerts=alerts)


def fit_notification(n: Notification, *, render: Callable[[Notification], str],
                     size: Callable[[str], int], limit: int) -> Section:
    """The section for as many of `n`'s alerts as fit: `size(text)` (the whole body if this
    were the only section) at most `limit`. Alerts are dropped from the end (resolved ones
    go first: they come last)."""
    total = len(n.alerts) + n.truncated
    full = with_more(render(n), n.truncated)
    if size(full) <= limit:
        return Section(full, total)
    best: str | None = None
    low, high = 1, len(n.alerts) - 1
    while low <= high:
        middle = (low + high) // 2
        fewer = n.limited(middle)
        text = with_more(render(fewer), fewer.truncated)
        if size(text) <= limit:
            best, low = text, middle + 1
        else:
            high = middle - 1
    if best is not None:
        return Section(best, total)
    one = n.limited(1)
    tail = f"\n\n{more_alerts(one.truncated)}" if one.truncated else ""
    return Section(cut_to_fit(render(one), tail, size, limit) + tail, total)


def fit_sections(sections: Sequence[Section], *,
                 size: Callable[[Sequence[Section], int], int],
                 limit: int) -> tuple[list[Section], int]:
    """The leading sections that fit together with a "+N more alerts" line for the rest:
    (kept sections, alerts left out). `size(sections, left_out)` measures the whole body.
    The first section is always kept, cut if it must be."""
    kept = list(sections)
    left_out = 0
    while len(kept) > 1 and size(kept, left_out) > limit:
        left_out += kept.pop().alerts
    if size(kept, left_out) > limit:
        first = kept[0]
        text = cut_to_fit(first.text, "", lambda t: size([Section(t, first.alerts)], left_out),
                          limit)
        kept = [Section(text, first.alerts)]
    return kept, left_out


def render_text(renderer: Renderer, n: Notification, *, default: str,
                override: str | None) -> str:
    """The receiver's template if it renders, else the default file `default`: a page in
    the default layout is better than no page (the failure is logged)."""
    if override is not None:
        try:
            return renderer.render(n, default=default, override=override)
        except TemplateError as exc:
            log.error("%s (receiver %s); using the default template %s", exc, n.receiver,
                      default)
    return renderer.render(n, default=default)


def render_title(renderer: Renderer, n: Notification, override: str | None) -> str:
    """The one-line title: the receiver's `title` template if it renders, else
    DEFAULT_TITLE; whitespace collapsed, at most TITLE_MAX_BYTES."""
    title = None
    if override is not None:
        try:
            title = renderer.render(n, default="", override=override)
        except TemplateError as exc:
            log.error("%s (receiver %s, title); using the default title", exc, n.receiver)
    if title is None:
        title = renderer.render(n, default="", override=DEFAULT_TITLE)
    title = " ".join(title.split())
    if len(title.encode()) > TITLE_MAX_BYTES:
        title = cut_utf8(title, TITLE_MAX_BYTES - len(CUT_MARK.encode())) + CUT_MARK
    return title


def merged_title(titles: Sequence[str]) -> str:
    """The distinct titles in order, joined, at most TITLE_MAX_BYTES."""
    title = " | ".join(dict.fromkeys(titles))
    if len(title.encode()) > TITLE_MAX_BYTES:
        title = cut_utf8(title, TITLE_MAX_BYTES - len(CUT_MARK.encode())) + CUT_MARK
    return title


def answer_code(answer: Any, keys: Sequence[str]) -> int | None:
    """The first integer error code found under `keys` in a JSON answer, else None."""
    if not isinstance(answer, dict):
        return None
    for key in keys:
        code = answer.get(key)
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None


def answer_message(answer: Any, keys: Sequence[str]) -> str:
    if isinstance(answer, dict):
        for key in keys:
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return ""


@dataclass(frozen=True)
class RobotAnswers:
    """How one provider reports errors: where the code and message are, which codes are
    worth a retry, and how long to wait before it."""

    provider: str  # the reason prefix: "dingtalk" gives "dingtalk_310000"
    code_keys: tuple[str, ...]
    message_keys: tuple[str, ...]
    transient_codes: frozenset[int]
    retry_after: float | None = None

    def delivery(self, outcome: HttpOutcome) -> Delivery:
        """The Delivery an HTTP outcome comes to. A provider code decides when there is one,
        except that 5xx, 429, timeouts and connection errors are always transient."""
        code = answer_code(outcome.json, self.code_keys)
        if not outcome.ok and (outcome.transient or code is None):
            return outcome.failure()
        if code is None:
            return Delivery.permanent(f"{self.provider}_bad_answer",
                                      f"HTTP {outcome.status} without an error code: "
                                      f"{outcome.text}")
        if code == 0:
            return Delivery.sent()
        reason = f"{self.provider}_{code}"
        detail = f"{self.provider} error {code}: {answer_message(outcome.json, self.message_keys)}"
        if code in self.transient_codes:
            return Delivery.transient(reason, detail, self.retry_after)
        return Delivery.permanent(reason, detail)


class RobotChannel(Generic[ConfigT]):
    """What every chat-robot channel holds: its config entry, where it belongs (receiver,
    index), and the session, clock and renderer it sends with."""

    def __init__(self, config: ConfigT, *, receiver: str, index: int,
                 session: aiohttp.ClientSession, clock: Clock, renderer: Renderer,
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.config = config
        self.receiver = receiver
        self.index = index
        self.session = session
        self.clock = clock
        self.renderer = renderer
        self.timeout = timeout
        self.send_resolved = config.send_resolved
