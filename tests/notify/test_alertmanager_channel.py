"""Forwarding to Alertmanagers (monitor/notify/channels/alertmanager.py) against loopback fakes.

The body is Prometheus's: a JSON list of PostableAlerts with endsAt projected
4 * max(resend delay, evaluation interval) ahead while firing. Success is counted as
Prometheus counts it: one Alertmanager that took the alerts is enough.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.clock import FakeClock
from monitor.config_notify import AlertmanagerForwardConfig, NotifyConfig
from monitor.notify.channels.alertmanager import (
    RESEND_DELAY_S,
    RESOLVED_RESEND_S,
    AlertmanagerChannel,
    ends_at_for,
)
from monitor.notify.channels.registry import build_channels
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class FakeAlertmanager:
    """POST {prefix}/api/v2/alerts: answers from a script (then 200), keeps the bodies."""

    url: str = ""
    answers: list[web.Response] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(orjson.loads(await request.read()))
        self.headers.append(dict(request.headers))
        return self.answers.pop(0) if self.answers else web.Response(text="")


@pytest.fixture
async def fake_am() -> AsyncIterator[FakeAlertmanager]:
    fake = FakeAlertmanager()
    app = web.Application()
    app.router.add_post("/am/api/v2/alerts", fake.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        fake.url = str(server.make_url("/"))
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def forwarder(session: aiohttp.ClientSession, *urls: str, eval_interval: float = 0.0,
              external_labels: dict[str, str] | None = None,
              **extra: Any) -> AlertmanagerChannel:
    config = AlertmanagerForwardConfig.model_validate(
        {"urls": list(urls), "path_prefix": "/am", "timeout": "2s", **extra})
    return AlertmanagerChannel(config, receiver="central", index=0, session=session,
                               clock=FakeClock(T0), renderer=Renderer(),
                               eval_interval=eval_interval, external_labels=external_labels)


FIRING = NotifyAlert({"alertname": "DiskFull", "host": "gpu-1"}, {"summary": "97%"},
                     starts_at=T0 - 600, generator_url="http://mon:9464/#alert-DiskFull")
RESOLVED = NotifyAlert({"alertname": "DiskFull", "host": "gpu-2"}, {}, starts_at=T0 - 900,
                       ends_at=T0 - 30)


def notification(*alerts: NotifyAlert) -> Notification:
    return Notification("central", "{}:{}", {}, alerts, T0)


def test_ends_at_projects_firing_alerts_and_keeps_resolve_times() -> None:
    assert (RESEND_DELAY_S, RESOLVED_RESEND_S) == (60, 900)
    assert ends_at_for(FIRING, T0) == T0 + 240
    assert ends_at_for(FIRING, T0, eval_interval=120) == T0 + 480
    assert ends_at_for(RESOLVED, T0, eval_interval=120) == T0 - 30
    # An end still in the future is not a resolution yet.
    later = NotifyAlert(FIRING.labels, {}, starts_at=T0 - 5, ends_at=T0 + 30)
    assert ends_at_for(later, T0) == T0 + 240


async def test_posts_the_postable_alerts_to_every_alertmanager(
        fake_am: FakeAlertmanager, session: aiohttp.ClientSession) -> None:
    channel = forwarder(session, fake_am.url, fake_am.url,
                        http_config={"bearer_token": "tok"})
    message = channel.render(notification(FIRING, RESOLVED))
    assert message == {"alerts": [
        {"labels": {"alertname": "DiskFull", "host": "gpu-1"}, "annotations": {"summary": "97%"},
         "startsAt": "2025-12-31T23:50:00Z", "endsAt": "2026-01-01T00:04:00Z",
         "generatorURL": "http://mon:9464/#alert-DiskFull"},
        {"labels": {"alertname": "DiskFull", "host": "gpu-2"}, "annotations": {},
         "startsAt": "2025-12-31T23:45:00Z", "endsAt": "2025-12-31T23:59:30Z",
         "generatorURL": ""},
    ]}
    delivery = await channel.deliver(message)
    assert delivery.ok and delivery.detail == "", delivery
    assert fake_am.bodies == [message["alerts"], message["alerts"]]
    assert fake_am.headers[0]["Authorization"] == "Bearer tok"
    assert fake_am.headers[0]["Content-Type"].startswith("application/json")


def test_external_labels_are_added_unless_the_alert_has_them(
        session: aiohttp.ClientSession) -> None:
    channel = forwarder(session, "http://127.0.0.1:9",
                        external_labels={"instance": "gpu-host-7:9464", "host": "ignored"})
    [alert] = channel.render(notification(FIRING))["alerts"]
    assert alert["labels"] == {"alertname": "DiskFull", "host": "gpu-1",
                               "instance": "gpu-host-7:9464"}


async def test_build_channels_gives_external_labels_to_alertmanager_forwarding_only(
        session: aiohttp.ClientSession) -> None:
    config = NotifyConfig.model_validate({
        "route": {"receiver": "central"},
        "receivers": [{"name": "central",
                       "alertmanager_configs": [{"urls": ["http://127.0.0.1:9"]}],
                       "webhook_configs": [{"url": "http://127.0.0.1:9/hook"}]}]})
    channels = build_channels(config, session=session, clock=FakeClock(T0),
                              renderer=Renderer(), external_labels={"instance": "h:1"})
    by_integration = {cid.integration: channel for cid, channel in channels.items()}
    [alert] = by_integration["alertmanager"].render(notification(FIRING))["alerts"]
    assert alert["labels"]["instance"] == "h:1"
    webhook = by_integration["webhook"].render(notification(FIRING))
    assert "instance" not in orjson.dumps(webhook).decode()


async def test_one_alertmanager_down_is_still_a_delivery(
        fake_am: FakeAlertmanager, session: aiohttp.ClientSession,
        free_port: Callable[[], int]) -> None:
    channel = forwarder(session, f"http://127.0.0.1:{free_port()}", fake_am.url)
    delivery = await channel.deliver(channel.render(notification(FIRING)))
    assert delivery.ok
    assert "alertmanager 1 of 2" in delivery.detail
    assert len(fake_am.bodies) == 1


async def test_all_down_is_transient(session: aiohttp.ClientSession,
                                     free_port: Callable[[], int]) -> None:
    channel = forwarder(session, f"http://127.0.0.1:{free_port()}",
                        f"http://127.0.0.1:{free_port()}")
    delivery = await channel.deliver(channel.render(notification(FIRING)))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "connection_error")


@pytest.mark.parametrize(("first", "second", "retry", "reason"), [
    (400, 400, False, "http_400"),
    (400, 503, True, "http_503"),  # one may still take it later
    (500, 500, True, "http_500"),
])
async def test_failures_of_every_alertmanager_are_combined(
        fake_am: FakeAlertmanager, session: aiohttp.ClientSession,
        first: int, second: int, retry: bool, reason: str) -> None:
    fake_am.answers += [web.Response(status=first, text='{"message":"bad"}'),
                        web.Response(status=second)]
    channel = forwarder(session, fake_am.url, fake_am.url)
    delivery = await channel.deliver(channel.render(notification(FIRING)))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, retry, reason)
    assert "alertmanager 1 of 2" in delivery.detail and "alertmanager 2 of 2" in delivery.detail


async def test_rate_key_and_interface(session: aiohttp.ClientSession) -> None:
    channel = forwarder(session, "http://am-1:9093", "http://am-2:9093")
    assert channel.rate_key.startswith("alertmanager:") and "am-1" not in channel.rate_key
    assert channel.integration == "alertmanager" and channel.send_resolved
    assert channel.limits == () and channel.merge([{}]) is None
