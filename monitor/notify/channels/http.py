"""POST a JSON body with aiohttp and classify what came back, for every HTTP channel.

`post_json` never raises for a failed request: network errors, timeouts and HTTP error
statuses all come back as an `HttpOutcome`, already sorted into transient (worth a retry:
timeouts, connection and TLS errors, 408, 429, 5xx) and permanent (any other status outside
2xx, a URL that cannot be used). A provider that reports its errors inside a 200 answer
(DingTalk, WeCom, Feishu) reads `outcome.json` itself once `outcome.ok`.

Nothing here puts the URL into a detail or reason: robot URLs carry their access tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from ssl import SSLContext
from typing import Any

import aiohttp
import orjson

from monitor.notify.channels.base import Delivery

MAX_BODY_BYTES = 64 * 1024  # providers answer with a few hundred bytes; never buffer more
_DETAIL_CHARS = 200
_TRANSIENT_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class HttpOutcome:
    """One POST's result. `status` is None when no response arrived (`error` says why)."""

    status: int | None
    json: Any | None = None  # the parsed JSON answer; None if absent or not JSON
    text: str = ""  # the start of the answer, for log lines
    transient: bool = False
    retry_after: float | None = None  # seconds, from Retry-After on 429/503/5xx
    error: str = ""  # "timeout", "connection_error", "tls_error", "invalid_url" (no status)
    detail: str = ""

    @property
    def ok(self) -> bool:
        """A 2xx answer (the provider may still report an error inside it)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def reason(self) -> str:
        """A stable metric label: "http_503", "timeout", "connection_error", ""."""
        if self.status is None:
            return self.error
        return "" if self.ok else f"http_{self.status}"

    def failure(self) -> Delivery:
        """The Delivery for an outcome that is not `ok` (transient or permanent)."""
        detail = self.detail or self.text
        if self.transient:
            return Delivery.transient(self.reason, detail, self.retry_after)
        return Delivery.permanent(self.reason, detail)


async def post_json(session: aiohttp.ClientSession, url: str,
                    body: bytes | Mapping[str, Any] | list[Any], *,
                    timeout: float,  # noqa: ASYNC109 - aiohttp's own per-request total timeout
                    headers: Mapping[str, str] | None = None,
                    ssl: SSLContext | None = None,
                    server_hostname: str | None = None) -> HttpOutcome:
    """POST `body` (bytes sent as they are, anything else serialised with orjson) as
    `application/json` to `url`, waiting at most `timeout` seconds in all.

    For https URLs: `ssl` replaces aiohttp's default verification (None keeps it), and
    `server_hostname` is the name sent in SNI and checked against the certificate instead
    of the URL's host."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    sent_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    try:
        async with session.post(url, data=data, headers=sent_headers,
                                timeout=aiohttp.ClientTimeout(total=timeout),
                                allow_redirects=False,
                                ssl=True if ssl is None else ssl,
                                server_hostname=server_hostname) as response:
            raw = await response.content.read(MAX_BODY_BYTES)
            return _classify(response.status, raw, response.headers)
    except TimeoutError:
        return HttpOutcome(None, transient=True, error="timeout",
                           detail=f"no answer within {timeout:g}s")
    except aiohttp.InvalidURL:
        return HttpOutcome(None, error="invalid_url", detail="the configured URL is not usable")
    except aiohttp.ClientSSLError as exc:
        return HttpOutcome(None, transient=True, error="tls_error",
                           detail=f"TLS with {exc.host}:{exc.port} failed: "
                                  f"{type(exc.os_error).__name__}")
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return HttpOutcome(None, transient=True, error="connection_error",
                           detail=f"cannot connect to {exc.host}:{exc.port}: {reason}")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
        return HttpOutcome(None, transient=True, error="connection_error",
                           detail=type(exc).__name__)


def _classify(status: int, raw: bytes, headers: Mapping[str, str]) -> HttpOutcome:
    text = raw[:_DETAIL_CHARS * 4].decode("utf-8", "replace")[:_DETAIL_CHARS]
    try:
        parsed: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    transient = status in _TRANSIENT_STATUSES or status >= 500
    retry_after = parse_retry_after(headers) if transient else None
    detail = "" if 200 <= status < 300 else f"HTTP {status}: {text}".rstrip(": ")
    return HttpOutcome(status, parsed, text, transient, retry_after, detail=detail)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds: delay-seconds, or an HTTP date measured against the answer's
    own Date header (the server's clock, so no local clock is needed). None if unusable."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        until = parsedate_to_datetime(value)
        sent = parsedate_to_datetime(headers.get("Date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if until.tzinfo is None or sent.tzinfo is None:
        return None
    return max(0.0, (until - sent).total_seconds())
