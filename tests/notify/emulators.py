"""Local stand-ins for the DingTalk, WeCom and Feishu robots, for tests.

Each is an aiohttp server on 127.0.0.1 (a free port) that checks a request the way the
provider documents it and answers with the provider's own error codes:

- `DingtalkEmulator`: access_token (300001); with a secret, `timestamp` (ms, within an hour
  of the emulator's clock) and the URL-encoded `sign` = base64(HMAC-SHA256(key=secret,
  msg=f"{timestamp}\\n{secret}")) (310000); body over 20,000 bytes (460101); the keyword in
  the text (310000); 20 messages a minute, then throttled for 10 minutes (130101). A
  `msgUuid` it has already accepted is answered "ok" and not posted again.
- `WecomEmulator`: the `key` (93000); markdown content over 4,096 bytes or text content over
  2,048 (40058); 20 messages a minute (45009).
- `FeishuEmulator`: the hook token (19001); with a secret, `timestamp` (s) and `sign` =
  base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")) in the body (19021); the
  keyword in the content (19024); 100 a minute and 5 a second (11232).

The signature checks are written here independently of monitor/notify/channels/signing.py,
from the providers' descriptions, so one cannot hide a mistake in the other.

Use:

    async with DingtalkEmulator(secret="SEC...", keyword="alert", clock=clock) as robot:
        config = DingtalkConfig(url=robot.url, secret="SEC...")
        robot.fail_next(2, errcode=130101)    # the next two requests get this answer
        robot.hang_next(1)                    # the next one gets no answer at all
        ... deliver ...
        await robot.wait_for_requests(3)      # bounded by a timeout
        robot.received                        # JSON bodies it accepted (posted to the group)
        robot.requests                        # every request, with the answer it got

Time comes from `clock` (a FakeClock in unit tests; the system clock by default), for the
signature window and the rate limits alike.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from monitor.clock import Clock, SystemClock

HANG_LIMIT_S = 30.0  # a hung request is released after this (or when the emulator closes)
WAIT_TIMEOUT_S = 5.0


@dataclass
class RobotRequest:
    """One request as the emulator saw it, and what it answered."""

    path: str
    query: dict[str, str]
    body: bytes
    json: Any
    status: int = 0
    answer: Any = None
    accepted: bool = False


@dataclass
class _Scripted:
    remaining: int
    status: int = 200
    answer: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass(frozen=True)
class _Refusal:
    code: int
    message: str


class RobotEmulator:
    """What the three emulators share: the server, the records, scripted answers and the
    rate limits. Subclasses check requests (`_check`) and shape answers."""

    code_key = "errcode"
    message_key = "errmsg"
    rate_limited_code = 0

    def __init__(self, *, clock: Clock | None = None,
                 rate_limits: Sequence[tuple[int, float]] = (),
                 throttle_s: float = 0.0) -> None:
        self.clock: Clock = clock or SystemClock()
        self.rate_limits = tuple(rate_limits)
        self.throttle_s = throttle_s
        self.requests: list[RobotRequest] = []
        self.received: list[Any] = []
        self._script: deque[_Scripted] = deque()
        self._accepted_at: list[float] = []
        self._throttled_until = float("-inf")
        self._closing = asyncio.Event()
        self._activity = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> RobotEmulator:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting and waiting ------------------------------------------------------------

    def answer_next(self, count: int, answer: Any, *, status: int = 200,
                    headers: Mapping[str, str] | None = None) -> None:
        """The next `count` requests get `answer` (a dict is sent as JSON, a str as text)
        with `status`, without being checked or posted."""
        self._script.append(_Scripted(count, status, answer, dict(headers or {})))

    def fail_next(self, count: int = 1, errcode: int | None = None, *, status: int = 200,
                  errmsg: str = "scripted failure",
                  headers: Mapping[str, str] | None = None) -> None:
        """The next `count` requests fail: with the provider error `errcode` in the JSON
        answer (under the provider's own key), or, without one, with an HTTP `status`."""
        answer = {self.code_key: errcode, self.message_key: errmsg} \
            if errcode is not None else "scripted failure"
        self.answer_next(count, answer, status=status, headers=headers)

    def hang_next(self, count: int = 1) -> None:
        """The next `count` requests get no answer (until the emulator closes)."""
        self._script.append(_Scripted(count, hang=True))

    async def wait_for_requests(self, count: int, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Until `count` requests have arrived in all; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._activity.clear()
                await self._activity.wait()

    async def wait_for_received(self, count: int, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Until `count` messages have been accepted; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._activity.clear()
                await self._activity.wait()

    # -- the request path -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        record = RobotRequest(request.path, dict(request.query), body, parsed)
        self.requests.append(record)
        self._activity.set()
        if self._script:
            scripted = self._script[0]
            scripted.remaining -= 1
            if scripted.remaining <= 0:
                self._script.popleft()
            if scripted.hang:
                try:
                    async with asyncio.timeout(HANG_LIMIT_S):
                        await self._closing.wait()
                except TimeoutError:
                    pass
                record.status = 504
                return web.Response(status=504)
            return self._respond(record, scripted.status, scripted.answer, scripted.headers)
        refusal = self._check(record) or self._rate_check()
        if refusal is not None:
            return self._respond(record, 200, self._error(refusal))
        record.accepted = True
        if self._is_new(parsed):
            self.received.append(parsed)
            self._accepted_at.append(self.clock.time())
        self._activity.set()
        return self._respond(record, 200, self._ok())

    def _respond(self, record: RobotRequest, status: int, answer: Any,
                 headers: Mapping[str, str] | None = None) -> web.Response:
        record.status, record.answer = status, answer
        if isinstance(answer, str):
            return web.Response(status=status, text=answer, headers=headers)
        return web.Response(status=status, body=orjson.dumps(answer), headers=headers,
                            content_type="application/json")

    def _rate_check(self) -> _Refusal | None:
        now = self.clock.time()
        if now < self._throttled_until:
            return _Refusal(self.rate_limited_code, "throttled: sending too fast")
        for count, per_seconds in self.rate_limits:
            recent = sum(1 for t in self._accepted_at if t > now - per_seconds)
            if recent >= count:
                self._throttled_until = now + self.throttle_s
                return _Refusal(self.rate_limited_code,
                                f"sending too fast: over {count} per {per_seconds:g}s")
        return None

    def _error(self, refusal: _Refusal) -> dict[str, Any]:
        return {self.code_key: refusal.code, self.message_key: refusal.message}

    def _ok(self) -> dict[str, Any]:
        return {self.code_key: 0, self.message_key: "ok"}

    def _is_new(self, parsed: Any) -> bool:
        return True

    def _check(self, record: RobotRequest) -> _Refusal | None:
        raise NotImplementedError


class DingtalkEmulator(RobotEmulator):
    """A DingTalk custom robot (`/robot/send?access_token=...`)."""

    rate_limited_code = 130101

    def __init__(self, *, secret: str | None = None, keyword: str | None = None,
                 access_token: str = "robot-token-1", clock: Clock | None = None,
                 per_minute: int = 20, throttle_s: float = 600.0,
                 max_body_bytes: int = 20_000) -> None:
        super().__init__(clock=clock, rate_limits=((per_minute, 60.0),), throttle_s=throttle_s)
        self.secret = secret
        self.keyword = keyword
        self.access_token = access_token
        self.max_body_bytes = max_body_bytes
        self.duplicates = 0
        self._uuids: set[str] = set()

    async def __aenter__(self) -> DingtalkEmulator:
        await super().__aenter__()
        return self

    @property
    def url(self) -> str:
        return f"{self.base_url}/robot/send?access_token={self.access_token}"

    def _check(self, record: RobotRequest) -> _Refusal | None:
        if record.path != "/robot/send" or record.query.get("access_token") != self.access_token:
            return _Refusal(300001, "token is not exist")
        if self.secret is not None:
            refusal = self._check_signature(record.query, self.secret)
            if refusal is not None:
                return refusal
        if len(record.body) > self.max_body_bytes:
            return _Refusal(460101, "message too large")
        message = record.json
        if not isinstance(message, dict) or message.get("msgtype") not in ("markdown", "text"):
            return _Refusal(40035, "missing or invalid msgtype")
        if message["msgtype"] == "markdown":
            markdown = message.get("markdown") or {}
            if not markdown.get("title") or not markdown.get("text"):
                return _Refusal(40035, "markdown needs title and text")
            text = str(markdown["text"])
        else:
            text = str((message.get("text") or {}).get("content", ""))
        if self.keyword is not None and self.keyword not in text:
            return _Refusal(310000, "keywords not in content")
        return None

    def _check_signature(self, query: Mapping[str, str], secret: str) -> _Refusal | None:
        timestamp, sign = query.get("timestamp", ""), query.get("sign", "")
        if not timestamp.isdigit() or not sign:
            return _Refusal(310000, "sign not match: timestamp and sign are required")
        if abs(int(timestamp) - self.clock.time() * 1000) > 3_600_000:
            return _Refusal(310000, "invalid timestamp: more than one hour off")
        digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                          hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), sign):
            return _Refusal(310000, "sign not match")
        return None

    def _is_new(self, parsed: Any) -> bool:
        msg_uuid = parsed.get("msgUuid") if isinstance(parsed, dict) else None
        if msg_uuid is None:
            return True
        if msg_uuid in self._uuids:
            self.duplicates += 1
            return False
        self._uuids.add(msg_uuid)
        return True


class WecomEmulator(RobotEmulator):
    """A WeCom group robot (`/cgi-bin/webhook/send?key=...`)."""

    rate_limited_code = 45009

    def __init__(self, *, key: str = "wecom-key-1", clock: Clock | None = None,
                 per_minute: int = 20) -> None:
        super().__init__(clock=clock, rate_limits=((per_minute, 60.0),))
        self.key = key

    async def __aenter__(self) -> WecomEmulator:
        await super().__aenter__()
        return self

    @property
    def endpoint(self) -> str:
        """The webhook endpoint without a key (what a `key` config is sent to)."""
        return f"{self.base_url}/cgi-bin/webhook/send"

    @property
    def url(self) -> str:
        return f"{self.endpoint}?key={self.key}"

    def _check(self, record: RobotRequest) -> _Refusal | None:
        if record.path != "/cgi-bin/webhook/send" or record.query.get("key") != self.key:
            return _Refusal(93000, "invalid webhook url")
        message = record.json
        if not isinstance(message, dict) or message.get("msgtype") not in ("markdown", "text"):
            return _Refusal(40008, "invalid message type")
        limit = 4096 if message["msgtype"] == "markdown" else 2048
        content = str((message.get(message["msgtype"]) or {}).get("content", ""))
        if not content:
            return _Refusal(41009, "missing content")
        if len(content.encode()) > limit:
            return _Refusal(40058, f"content exceed max length {limit}")
        return None


class FeishuEmulator(RobotEmulator):
    """A Feishu custom bot (`/open-apis/bot/v2/hook/<token>`)."""

    code_key = "code"
    message_key = "msg"
    rate_limited_code = 11232

    def __init__(self, *, secret: str | None = None, keyword: str | None = None,
                 token: str = "hook-token-1", clock: Clock | None = None,
                 per_minute: int = 100, per_second: int = 5,
                 max_body_bytes: int = 20_000) -> None:
        super().__init__(clock=clock, rate_limits=((per_minute, 60.0), (per_second, 1.0)))
        self.secret = secret
        self.keyword = keyword
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __aenter__(self) -> FeishuEmulator:
        await super().__aenter__()
        return self

    @property
    def url(self) -> str:
        return f"{self.base_url}/open-apis/bot/v2/hook/{self.token}"

    def _ok(self) -> dict[str, Any]:
        return {"code": 0, "data": {}, "msg": "success"}

    def _error(self, refusal: _Refusal) -> dict[str, Any]:
        return {"code": refusal.code, "data": {}, "msg": refusal.message}

    def _check(self, record: RobotRequest) -> _Refusal | None:
        if record.path != f"/open-apis/bot/v2/hook/{self.token}":
            return _Refusal(19001, "param invalid: incoming webhook access token invalid")
        if len(record.body) > self.max_body_bytes:
            return _Refusal(19001, "param invalid: request body too large")
        message = record.json
        if not isinstance(message, dict) or message.get("msg_type") not in (
                "text", "post", "interactive"):
            return _Refusal(19001, "param invalid: msg_type")
        if self.secret is not None:
            refusal = self._check_signature(message, self.secret)
            if refusal is not None:
                return refusal
        shown = "\n".join(_strings(message.get("card") or message.get("content")))
        if self.keyword is not None and self.keyword not in shown:
            return _Refusal(19024, "Key Words Not Found")
        return None

    def _check_signature(self, message: Mapping[str, Any], secret: str) -> _Refusal | None:
        timestamp, sign = message.get("timestamp"), message.get("sign")
        failed = _Refusal(19021, "sign match fail or timestamp is not within one hour "
                                 "from current time")
        if not isinstance(timestamp, str) or not timestamp.isdigit() or not sign:
            return failed
        if abs(int(timestamp) - self.clock.time()) > 3600:
            return failed
        key = f"{timestamp}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return None if hmac.compare_digest(expected, str(sign)) else failed


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value (what a card shows, and its tags)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []
