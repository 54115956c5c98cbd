"""The webhook channel (monitor/notify/channels/webhook.py) against a loopback aiohttp receiver.

The payload is checked field by field against Alertmanager's webhook v4 message
(notify/webhook/webhook.go, template/template.go `Data` and `Alert`), and the answers are
classified as Alertmanager's Retrier does (2xx ok, 5xx retried, other 4xx not).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.clock import FakeClock
from monitor.config_notify import WebhookConfig
from monitor.notify.channels.webhook import WebhookChannel, go_quote_meta, webhook_payload
from monitor.notify.model import Notification, NotifyAlert, fingerprint
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TOKEN = "hook-token-123"


@dataclass
class Hook:
    """A webhook endpoint that answers from a script (then 200) and keeps every request."""

    url: str
    answers: list[web.Response] = field(default_factory=list)
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    hanging: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), orjson.loads(await request.read())))
        if self.hanging:
            await asyncio.wait_for(self.hang.wait(), 5)
        return self.answers.pop(0) if self.answers else web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    endpoint = Hook(url="")
    app.router.add_post("/hook/{secret}", endpoint.handle)
    async with server:
        endpoint.url = str(server.make_url(f"/hook/{TOKEN}"))
        yield endpoint
        endpoint.hang.set()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def webhook(session: aiohttp.ClientSession, url: str, *, receiver: str = "ops",
            **extra: Any) -> WebhookChannel:
    config = WebhookConfig.model_validate({"url": url, **extra})
    return WebhookChannel(config, receiver=receiver, index=0, session=session,
                          clock=FakeClock(T0), renderer=Renderer(external_url="http://mon:9464"))


FIRING_A = NotifyAlert({"alertname": "HighLatency", "team": "ml", "instance": "gpu-1"},
                       {"summary": "slow", "runbook": "r1"}, starts_at=T0 - 300,
                       generator_url="http://prom/graph?g0.expr=x")
FIRING_B = NotifyAlert({"alertname": "HighLatency", "team": "ml", "instance": "gpu-2"},
                       {"summary": "slow"}, starts_at=T0 - 120.5)
RESOLVED_C = NotifyAlert({"alertname": "HighLatency", "team": "ml", "instance": "gpu-3"},
                         {"summary": "fine"}, starts_at=T0 - 900, ends_at=T0 - 60)
GROUP_KEY = '{}/{team="ml"}:{alertname="HighLatency"}'


def notification(*alerts: NotifyAlert, receiver: str = "ops") -> Notification:
    return Notification(receiver, GROUP_KEY, {"alertname": "HighLatency"}, alerts, T0)


async def test_the_payload_is_alertmanager_webhook_v4_field_by_field(
        hook: Hook, session: aiohttp.ClientSession) -> None:
    channel = webhook(session, hook.url, max_alerts=2,
                      http_config={"authorization": {"credentials": "abc"}})
    message = channel.render(notification(FIRING_A, FIRING_B, RESOLVED_C))
    delivery = await channel.deliver(message)

    assert delivery.ok, delivery
    [(headers, body)] = hook.requests
    assert body == message
    assert body == {
        "receiver": "ops",
        "status": "firing",
        "alerts": [
            {"status": "firing",
             "labels": {"alertname": "HighLatency", "team": "ml", "instance": "gpu-1"},
             "annotations": {"summary": "slow", "runbook": "r1"},
             "startsAt": "2025-12-31T23:55:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prom/graph?g0.expr=x",
             "fingerprint": fingerprint(FIRING_A.labels)},
            {"status": "firing",
             "labels": {"alertname": "HighLatency", "team": "ml", "instance": "gpu-2"},
             "annotations": {"summary": "slow"},
             "startsAt": "2025-12-31T23:57:59.5Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": fingerprint(FIRING_B.labels)},
        ],
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency", "team": "ml"},
        "commonAnnotations": {"summary": "slow"},
        "externalURL": "http://mon:9464",
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 1,
    }
    assert list(body) == ["receiver", "status", "alerts", "groupLabels", "commonLabels",
                          "commonAnnotations", "externalURL", "version", "groupKey",
                          "truncatedAlerts"]
    assert list(body["alerts"][0]) == ["status", "labels", "annotations", "startsAt",
                                       "endsAt", "generatorURL", "fingerprint"]
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Authorization"] == "Bearer abc"
    assert headers["User-Agent"].startswith("inferwatch/")
    assert TOKEN not in orjson.dumps(message).decode()  # the URL is not stored


async def test_resolved_alerts_and_receiver_quoting(
        hook: Hook, session: aiohttp.ClientSession) -> None:
    channel = webhook(session, hook.url, receiver="team.ops (eu)")
    message = channel.render(notification(RESOLVED_C, receiver="team.ops (eu)"))
    assert (await channel.deliver(message)).ok
    body = hook.requests[0][1]
    assert body["status"] == "resolved" and body["truncatedAlerts"] == 0
    assert body["receiver"] == r"team\.ops \(eu\)"  # Alertmanager's regexp.QuoteMeta
    assert body["alerts"][0]["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] == "2025-12-31T23:59:00Z"
    assert "Authorization" not in hook.requests[0][0]


# What Alertmanager 0.25.0 (Debian's prometheus-alertmanager) POSTed to a webhook with
# max_alerts: 1 for two alerts in group {alertname="X"}, captured once from the real program.
ALERTMANAGER_0_25_PAYLOAD = (
    b'{"receiver":"hook","status":"firing","alerts":[{"status":"firing","labels":'
    b'{"alertname":"X","i":"1"},"annotations":{"s":"a"},"startsAt":"2026-01-01T00:00:00Z",'
    b'"endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"b915815a9d04c3be"}],'
    b'"groupLabels":{"alertname":"X"},"commonLabels":{"alertname":"X","i":"1"},'
    b'"commonAnnotations":{"s":"a"},"externalURL":"http://vm:39112","version":"4",'
    b'"groupKey":"{}:{alertname=\\"X\\"}","truncatedAlerts":1}'
)


def test_the_payload_matches_what_alertmanager_sends_byte_for_byte() -> None:
    alerts = (NotifyAlert({"i": "1", "alertname": "X"}, {"s": "a"}, starts_at=T0),
              NotifyAlert({"alertname": "X", "i": "2"}, {"s": "a"}, starts_at=T0 + 1))
    n = Notification("hook", '{}:{alertname="X"}', {"alertname": "X"}, alerts, T0 + 5,
                     external_url="http://vm:39112")
    assert orjson.dumps(webhook_payload(n, max_alerts=1, external_url="")) == \
        ALERTMANAGER_0_25_PAYLOAD


def test_go_quote_meta_escapes_what_go_escapes() -> None:
    assert go_quote_meta(r"a.b+c*d?e(f)g|h[i]j{k}l^m$n\o-p/q") == \
        r"a\.b\+c\*d\?e\(f\)g\|h\[i\]j\{k\}l\^m\$n\\o-p/q"


async def test_500_then_200_is_retried_then_sent(
        hook: Hook, session: aiohttp.ClientSession) -> None:
    hook.answers.append(web.Response(status=500, text="upstream down"))
    channel = webhook(session, hook.url)
    message = channel.render(notification(FIRING_A))
    first = await channel.deliver(message)
    assert (first.ok, first.retry, first.reason) == (False, True, "http_500")
    assert "upstream down" in first.detail and TOKEN not in first.detail
    assert (await channel.deliver(message)).ok
    assert hook.requests[0][1] == hook.requests[1][1]


@pytest.mark.parametrize(("status", "retry"), [(400, False), (404, False), (429, True),
                                              (503, True)])
async def test_http_statuses_are_classified(hook: Hook, session: aiohttp.ClientSession,
                                            status: int, retry: bool) -> None:
    hook.answers.append(web.Response(status=status, headers={"Retry-After": "7"}))
    channel = webhook(session, hook.url)
    delivery = await channel.deliver(channel.render(notification(FIRING_A)))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, retry, f"http_{status}")
    assert delivery.retry_after == (7.0 if retry else None)


async def test_a_slow_receiver_is_a_transient_timeout(
        hook: Hook, session: aiohttp.ClientSession) -> None:
    hook.hanging = True
    channel = webhook(session, hook.url, timeout="200ms")
    delivery = await channel.deliver(channel.render(notification(FIRING_A)))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "timeout")


async def test_nobody_listening_is_transient(session: aiohttp.ClientSession,
                                             free_port: Callable[[], int]) -> None:
    channel = webhook(session, f"http://127.0.0.1:{free_port()}/hook")
    delivery = await channel.deliver(channel.render(notification(FIRING_A)))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "connection_error")


async def test_rate_key_hides_the_url(session: aiohttp.ClientSession) -> None:
    channel = webhook(session, f"http://example.com/hook/{TOKEN}")
    other = webhook(session, "http://example.com/hook/other")
    assert TOKEN not in channel.rate_key and channel.rate_key != other.rate_key
    assert channel.limits == () and channel.merge([{}]) is None and channel.send_resolved
