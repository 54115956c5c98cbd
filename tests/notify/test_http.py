"""post_json (monitor/notify/channels/http.py) against a real local aiohttp server: what it
sends, and how each kind of answer or failure is classified."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from monitor.notify.channels.http import HttpOutcome, parse_retry_after, post_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{path:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def answering(status: int, body: bytes | str = b"", headers: dict[str, str] | None = None,
              seen: list[web.Request] | None = None, bodies: list[bytes] | None = None
              ) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if seen is not None:
            seen.append(request)
        if bodies is not None:
            bodies.append(await request.read())
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=raw, headers=headers)

    return handle


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_dict_body_is_sent_as_json_and_the_answer_parsed(session: aiohttp.ClientSession
                                                               ) -> None:
    seen: list[web.Request] = []
    bodies: list[bytes] = []
    async with serve(answering(200, b'{"errcode":0,"errmsg":"ok"}', seen=seen,
                               bodies=bodies)) as base:
        outcome = await post_json(session, f"{base}/send?token=t", {"text": "告警"},
                                  timeout=5, headers={"X-Test": "1"})
    assert outcome.ok and outcome.status == 200 and not outcome.transient
    assert outcome.json == {"errcode": 0, "errmsg": "ok"}
    assert outcome.reason == ""
    assert orjson.loads(bodies[0]) == {"text": "告警"}
    assert seen[0].headers["Content-Type"] == "application/json; charset=utf-8"
    assert seen[0].headers["X-Test"] == "1"


async def test_bytes_are_sent_unchanged(session: aiohttp.ClientSession) -> None:
    bodies: list[bytes] = []
    async with serve(answering(204, bodies=bodies)) as base:
        outcome = await post_json(session, base + "/", b'{"a": 1}', timeout=5)
    assert outcome.ok and outcome.json is None
    assert bodies == [b'{"a": 1}']


@pytest.mark.parametrize(("status", "transient"), [
    (500, True), (502, True), (503, True), (408, True), (429, True),
    (400, False), (401, False), (403, False), (404, False), (413, False), (302, False),
])
async def test_statuses_are_classified(session: aiohttp.ClientSession, status: int,
                                       transient: bool) -> None:
    async with serve(answering(status, "not json", headers={"Location": "/x"})) as base:
        outcome = await post_json(session, base + "/", {}, timeout=5)
    assert not outcome.ok
    assert outcome.transient is transient
    assert outcome.reason == f"http_{status}"
    assert outcome.json is None and outcome.text == "not json"
    delivery = outcome.failure()
    assert delivery.retry is transient and delivery.reason == f"http_{status}"
    assert "not json" in delivery.detail


async def test_retry_after_seconds_is_honoured_on_429_and_503(session: aiohttp.ClientSession
                                                              ) -> None:
    for status in (429, 503):
        async with serve(answering(status, headers={"Retry-After": "7"})) as base:
            outcome = await post_json(session, base + "/", {}, timeout=5)
        assert outcome.retry_after == 7.0
        assert outcome.failure().retry_after == 7.0


async def test_retry_after_is_ignored_on_permanent_failures(session: aiohttp.ClientSession
                                                            ) -> None:
    async with serve(answering(400, headers={"Retry-After": "7"})) as base:
        outcome = await post_json(session, base + "/", {}, timeout=5)
    assert outcome.retry_after is None and not outcome.transient


def test_retry_after_as_a_date_is_measured_against_the_answers_date() -> None:
    headers = {"Retry-After": "Thu, 01 Jan 2026 00:02:00 GMT",
               "Date": "Thu, 01 Jan 2026 00:00:30 GMT"}
    assert parse_retry_after(headers) == 90.0
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 00:02:00 GMT"}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    past = {"Retry-After": "Thu, 01 Jan 2026 00:00:00 GMT",
            "Date": "Thu, 01 Jan 2026 00:00:30 GMT"}
    assert parse_retry_after(past) == 0.0


async def test_a_server_that_does_not_answer_is_a_transient_timeout(
        session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def never(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await release.wait()
        return web.Response()

    async with serve(never) as base:
        outcome = await post_json(session, base + "/", {}, timeout=0.05)
        release.set()
    assert outcome.status is None and outcome.transient
    assert outcome.reason == "timeout" and outcome.error == "timeout"
    assert outcome.failure().retry


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_refused_connection_is_transient_and_the_detail_hides_the_token(
        session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{_unused_port()}/robot/send?access_token=TOPSECRET"
    outcome = await post_json(session, url, {}, timeout=5)
    assert outcome.status is None and outcome.transient
    assert outcome.reason == "connection_error"
    assert "TOPSECRET" not in outcome.detail and "TOPSECRET" not in repr(outcome)


async def test_an_unusable_url_is_permanent(session: aiohttp.ClientSession) -> None:
    outcome = await post_json(session, "http://:80/x?token=TOPSECRET", {}, timeout=5)
    assert outcome == HttpOutcome(None, error="invalid_url",
                                  detail="the configured URL is not usable")
    assert not outcome.failure().retry
    assert "TOPSECRET" not in outcome.detail


async def test_a_huge_answer_is_read_only_in_part(session: aiohttp.ClientSession) -> None:
    async with serve(answering(500, b"x" * 1_000_000)) as base:
        outcome = await post_json(session, base + "/", {}, timeout=5)
    assert outcome.transient and len(outcome.text) <= 200


async def test_tls_to_a_plain_http_server_is_a_transient_tls_error(
        session: aiohttp.ClientSession) -> None:
    async with serve(answering(200)) as base:
        outcome = await post_json(session, base.replace("http:", "https:") + "/?k=SECRET", {},
                                  timeout=5)
    assert outcome.status is None and outcome.transient
    assert outcome.reason == "tls_error" and "SECRET" not in outcome.detail
