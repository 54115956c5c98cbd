"""The demo's notification sink: a webhook receiver on loopback that shows what was delivered.

`inferwatch demo` routes every alert to one receiver whose `webhook_configs` URL is this
sink, so the notifications travel the daemon's real path (dispatcher, notification log,
durable outbox, webhook channel, HTTP) and arrive here as Alertmanager webhook payloads,
version 4. Each one is parsed, recorded as a `SinkNotification` and printed as one line:

      +52s  notified  DemoErrorBurst firing (1 alert): 14% of requests are failing
      +75s  notified  DemoErrorBurst resolved (1 alert)

The sink trusts nothing it receives: a body that is too large, not JSON or not shaped like
a v4 payload is answered 400, counted in `rejected`, and the sink goes on. Text taken from
a payload is cut short and stripped of control characters before it reaches the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

import orjson
from aiohttp import web

from monitor.clock import Clock

log = logging.getLogger(__name__)

Status = Literal["firing", "resolved"]

WEBHOOK_VERSION: Final = "4"
SINK_PATH: Final = "/webhook"
MAX_BODY_BYTES: Final = 1 << 20
_STATUSES: Final[tuple[Status, ...]] = ("firing", "resolved")
_SHOWN_CHARS: Final = 160
_READ_CHUNK: Final = 64 * 1024


class PayloadError(ValueError):
    """A request body that is not an Alertmanager webhook payload, version 4."""


@dataclass(frozen=True, slots=True)
class SinkAlert:
    """One alert of a delivered notification."""

    name: str
    status: Status
    fingerprint: str
    summary: str


@dataclass(frozen=True, slots=True)
class SinkNotification:
    """One delivered notification; `offset_s` is when it arrived, from the demo's start."""

    offset_s: float
    receiver: str
    status: Status
    group: str  # the group's alertname, with its other group labels in braces
    alerts: tuple[SinkAlert, ...]
    summary: str
    truncated: int = 0

    def line(self) -> str:
        """The line the demo prints when this notification arrives."""
        count = _plural(len(self.alerts), "alert")
        states = {a.status for a in self.alerts}
        if len(states) > 1:
            firing = sum(a.status == "firing" for a in self.alerts)
            count += f": {firing} firing, {len(self.alerts) - firing} resolved"
        if self.truncated:
            count += f", {self.truncated} more left out"
        detail = f": {self.summary}" if self.status == "firing" and self.summary else ""
        return (f"  {f'+{self.offset_s:.0f}s':>6}  notified  {self.group} {self.status} "
                f"({count}){detail}")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def shown(text: str, limit: int = _SHOWN_CHARS) -> str:
    """`text` safe to print on a terminal: control characters replaced, cut to `limit`."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:limit + 1])
    return clean if len(clean) <= limit else clean[:limit - 1] + "…"


def _string_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PayloadError(f"{key}: expected an object of strings")
    return value


def _status(value: Any, key: str) -> Status:
    for status in _STATUSES:
        if value == status:
            return status
    raise PayloadError(f"{key}: expected 'firing' or 'resolved'")


def _alert(value: Any, index: int) -> SinkAlert:
    where = f"alerts[{index}]"
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object")
    labels = _string_map(value.get("labels"), f"{where}.labels")
    annotations = _string_map(value.get("annotations"), f"{where}.annotations")
    fingerprint = value.get("fingerprint", "")
    if not isinstance(fingerprint, str):
        raise PayloadError(f"{where}.fingerprint: expected a string")
    return SinkAlert(name=shown(labels.get("alertname", "")),
                     status=_status(value.get("status"), f"{where}.status"),
                     fingerprint=shown(fingerprint, 32),
                     summary=shown(annotations.get("summary", "")))


def _group_name(group_labels: Mapping[str, str], common_labels: Mapping[str, str],
                alerts: tuple[SinkAlert, ...]) -> str:
    name = group_labels.get("alertname") or common_labels.get("alertname") \
        or (alerts[0].name if len({a.name for a in alerts}) == 1 else "") or "alerts"
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()) if k != "alertname")
    return shown(f"{name}{{{rest}}}" if rest else name)


def _summary(common: Mapping[str, str], alerts: tuple[SinkAlert, ...]) -> str:
    if common.get("summary"):
        return shown(common["summary"])
    summaries = list(dict.fromkeys(a.summary for a in alerts if a.status == "firing" and a.summary))
    if not summaries:
        return ""
    more = f" (and {len(summaries) - 1} more)" if len(summaries) > 1 else ""
    return summaries[0] + more


def parse_webhook(body: bytes, offset_s: float) -> SinkNotification:
    """One webhook v4 payload as a `SinkNotification`; `PayloadError` if it is not one."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadError("expected a JSON object")
    if payload.get("version") != WEBHOOK_VERSION:
        raise PayloadError(f"version: expected {WEBHOOK_VERSION!r}")
    receiver = payload.get("receiver", "")
    if not isinstance(receiver, str):
        raise PayloadError("receiver: expected a string")
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise PayloadError("alerts: expected a non-empty list")
    alerts = tuple(_alert(value, i) for i, value in enumerate(raw_alerts))
    group_labels = _string_map(payload.get("groupLabels"), "groupLabels")
    common_labels = _string_map(payload.get("commonLabels"), "commonLabels")
    common_annotations = _string_map(payload.get("commonAnnotations"), "commonAnnotations")
    truncated = payload.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("truncatedAlerts: expected a count")
    return SinkNotification(
        offset_s=offset_s, receiver=shown(receiver),
        status=_status(payload.get("status"), "status"),
        group=_group_name(group_labels, common_labels, alerts), alerts=alerts,
        summary=_summary(common_annotations, alerts), truncated=truncated)


def _print_now(line: str) -> None:
    print(line, flush=True)


class WebhookSink:
    """An aiohttp server on `host`, on a port the kernel picks, for webhook v4 payloads.

    Use as an async context manager (or `start` / `close`); `url` is the address to put in
    `webhook_configs`. `out` receives each notification's line as it arrives; `started` is
    the moment offsets count from (the sink's start unless the owner sets it).
    """

    def __init__(self, clock: Clock, *, out: Callable[[str], None] = _print_now,
                 host: str = "127.0.0.1", max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.clock = clock
        self.out = out
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.started = clock.time()
        self.url = ""
        self.notifications: list[SinkNotification] = []
        self.rejected = 0
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> WebhookSink:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(SINK_PATH, self._receive)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, 0).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}{SINK_PATH}"
        self.started = self.clock.time()
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def wait_until(self, done: Callable[[list[SinkNotification]], bool], *,
                         timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not a cancel scope
        """Until `done(notifications)` holds or `timeout` seconds pass; whether it holds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not done(self.notifications):
                    self._arrived.clear()
                    await self._arrived.wait()
        return done(self.notifications)

    def record(self, body: bytes) -> SinkNotification:
        """Parse, record and print one payload; `PayloadError` (nothing recorded) if bad."""
        notification = parse_webhook(body, self.clock.time() - self.started)
        self.notifications.append(notification)
        self._arrived.set()
        try:
            self.out(notification.line())
        except Exception:  # a closed terminal must not turn a delivery into a retry
            log.exception("demo sink: cannot print a notification")
        return notification

    async def _receive(self, request: web.Request) -> web.Response:
        raw = bytearray()
        while chunk := await request.content.read(_READ_CHUNK):
            raw += chunk
            if len(raw) > self.max_body_bytes:
                return self._reject(f"body too large (at most {self.max_body_bytes} bytes)")
        try:
            self.record(bytes(raw))
        except PayloadError as exc:
            return self._reject(str(exc))
        return web.Response(text="ok\n")

    def _reject(self, reason: str) -> web.Response:
        self.rejected += 1
        log.warning("demo sink: rejected a request: %s", shown(reason))
        return web.Response(status=400, text=f"bad webhook payload: {shown(reason)}\n")
