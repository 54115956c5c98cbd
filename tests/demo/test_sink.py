"""The demo's webhook sink (monitor/demo/sink.py) and the demo's whole alert loop.

The sink is fed payloads rendered and POSTed by the real webhook channel, shaped payloads
from `webhook_payload`, and hostile bodies; `run_demo` runs once for real with a short error
burst, which must reach the sink as a firing and then a resolved notification. Every wait
is bounded; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from monitor.clock import FakeClock, SystemClock
from monitor.config_notify import WebhookConfig
from monitor.demo.lines import Incident, IncidentKind
from monitor.demo.runner import (
    SINK_RECEIVER,
    demo_config,
    ingested_since,
    run_demo,
    undelivered,
    written_by_source,
)
from monitor.demo.sink import (
    SinkAlert,
    SinkNotification,
    Status,
    WebhookSink,
    parse_webhook,
    shown,
)
from monitor.demo.workload import WorkloadStats
from monitor.errors import StartupError
from monitor.notify.channels.webhook import WebhookChannel, webhook_payload
from monitor.notify.model import Notification, NotifyAlert, fingerprint
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BURST = {"alertname": "DemoErrorBurst", "severity": "page"}
GROUP_KEY = '{}:{alertname="DemoErrorBurst"}'
WAIT_S = 10.0


class Printed(list[str]):
    """The lines a sink printed."""


@pytest.fixture
async def sink() -> AsyncIterator[tuple[WebhookSink, Printed, FakeClock]]:
    clock = FakeClock(T0)
    printed = Printed()
    async with WebhookSink(clock, out=printed.append) as receiver:
        yield receiver, printed, clock


async def post(url: str, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=WAIT_S)) as response:
        return response.status, await response.text()


def notification(*alerts: NotifyAlert, now: float,
                 group: dict[str, str] | None = None) -> Notification:
    return Notification(SINK_RECEIVER, GROUP_KEY, group or {"alertname": "DemoErrorBurst"},
                        alerts, now)


async def test_notifications_from_the_webhook_channel_are_recorded_and_printed(
        sink: tuple[WebhookSink, Printed, FakeClock]) -> None:
    receiver, printed, clock = sink
    clock.advance(52)
    config = WebhookConfig.model_validate({"url": receiver.url})
    firing = NotifyAlert(BURST, {"summary": "14% of requests are failing"}, starts_at=T0 + 40)
    resolved = NotifyAlert(BURST, firing.annotations, starts_at=T0 + 40, ends_at=T0 + 70)
    async with aiohttp.ClientSession() as session:
        channel = WebhookChannel(config, receiver=SINK_RECEIVER, index=0, session=session,
                                 clock=clock, renderer=Renderer(external_url="http://x:9464"))
        assert (await channel.deliver(channel.render(notification(firing, now=T0 + 52)))).ok
        clock.advance(23)
        assert (await channel.deliver(channel.render(notification(resolved, now=T0 + 75)))).ok

    assert printed == [
        "    +52s  notified  DemoErrorBurst firing (1 alert): 14% of requests are failing",
        "    +75s  notified  DemoErrorBurst resolved (1 alert)",
    ]
    first, second = receiver.notifications
    alert = SinkAlert("DemoErrorBurst", "firing", fingerprint(BURST),
                      "14% of requests are failing")
    assert first == SinkNotification(52.0, SINK_RECEIVER, "firing", "DemoErrorBurst", (alert,),
                                     "14% of requests are failing")
    assert second.status == "resolved" and second.offset_s == 75.0
    assert [a.status for a in second.alerts] == ["resolved"]
    assert receiver.rejected == 0


def test_a_mixed_truncated_group_is_summarised_on_one_line() -> None:
    labels = {"alertname": "DemoLatencySpike", "service": "deepseek-r1"}
    alerts = (
        NotifyAlert({**labels, "instance": "a"}, {"summary": "p95 is 41s"}, T0),
        NotifyAlert({**labels, "instance": "b"}, {"summary": "p95 is 38s"}, T0 + 1),
        NotifyAlert({**labels, "instance": "c"}, {"summary": "gone"}, T0 - 60, ends_at=T0),
        NotifyAlert({**labels, "instance": "d"}, {"summary": "more"}, T0 + 2),
    )
    group = notification(alerts[0], alerts[2], alerts[1], alerts[3], now=T0 + 10,
                         group={"alertname": "DemoLatencySpike", "service": "deepseek-r1"})
    body = orjson.dumps(webhook_payload(group, max_alerts=3, external_url=""))
    parsed = parse_webhook(body, 7.4)
    assert parsed.line() == (
        '     +7s  notified  DemoLatencySpike{service="deepseek-r1"} firing '
        "(3 alerts: 2 firing, 1 resolved, 1 more left out): p95 is 41s (and 1 more)")
    assert [a.name for a in parsed.alerts] == ["DemoLatencySpike"] * 3


def test_text_from_a_payload_is_made_safe_for_a_terminal() -> None:
    assert shown("ok\x1b[31mred\x07\n") == "ok?[31mred??"
    assert shown("x" * 500, 10) == "x" * 9 + "…"
    assert shown("请用简单的语言") == "请用简单的语言"
    payload = webhook_payload(notification(NotifyAlert(
        {"alertname": "Demo\x1b]0;pwned\x07"}, {"summary": "a\rb" + "z" * 400}, T0),
        now=T0, group={}), max_alerts=0, external_url="")
    line = parse_webhook(orjson.dumps(payload), 0).line()
    assert "\x1b" not in line and "\r" not in line and "\x07" not in line
    assert len(line) < 400


def valid_body() -> dict[str, Any]:
    return webhook_payload(notification(NotifyAlert(BURST, {}, T0), now=T0), max_alerts=0,
                           external_url="")


def changed(**fields: Any) -> bytes:
    return orjson.dumps(valid_body() | fields)


def bad_alert(**fields: Any) -> bytes:
    body = valid_body()
    return orjson.dumps(body | {"alerts": [body["alerts"][0] | fields]})


HOSTILE: list[tuple[str, bytes, str]] = [
    ("not json", b"{not json", "invalid JSON"),
    ("empty", b"", "invalid JSON"),
    ("bad utf-8", b'{"version": "4\xff\xfe"}', "invalid JSON"),
    ("too deep", b"[" * 100_000 + b"]" * 100_000, "invalid JSON"),
    ("a list", b"[1, 2]", "JSON object"),
    ("null", b"null", "JSON object"),
    ("wrong version", changed(version="3"), "version"),
    ("no version", orjson.dumps({k: v for k, v in valid_body().items() if k != "version"}),
     "version"),
    ("bad status", changed(status="exploded"), "status"),
    ("no alerts", changed(alerts=[]), "alerts"),
    ("alerts not a list", changed(alerts={"a": 1}), "alerts"),
    ("alert not an object", changed(alerts=["x"]), "alerts[0]"),
    ("label not a string", bad_alert(labels={"alertname": 1}), "alerts[0].labels"),
    ("annotations a list", bad_alert(annotations=["x"]), "alerts[0].annotations"),
    ("alert status", bad_alert(status=None), "alerts[0].status"),
    ("fingerprint", bad_alert(fingerprint=7), "fingerprint"),
    ("group labels", changed(groupLabels="alertname"), "groupLabels"),
    ("receiver", changed(receiver=["x"]), "receiver"),
    ("negative truncation", changed(truncatedAlerts=-1), "truncatedAlerts"),
    ("boolean truncation", changed(truncatedAlerts=True), "truncatedAlerts"),
    ("oversized", b'{"pad": "' + b"x" * (2 << 20) + b'"}', "too large"),
]


async def test_hostile_bodies_are_answered_400_and_the_sink_keeps_working(
        sink: tuple[WebhookSink, Printed, FakeClock]) -> None:
    receiver, printed, _clock = sink
    for name, body, words in HOSTILE:
        status, text = await post(receiver.url, body)
        assert status == 400, name
        assert words in text, (name, text)
    assert receiver.rejected == len(HOSTILE)
    assert receiver.notifications == [] and printed == []
    assert await post(receiver.url, orjson.dumps(valid_body())) == (200, "ok\n")
    assert [n.group for n in receiver.notifications] == ["DemoErrorBurst"]
    assert len(printed) == 1


async def test_a_failing_terminal_does_not_turn_a_delivery_into_an_error() -> None:
    def broken(line: str) -> None:
        raise BrokenPipeError(line)

    async with WebhookSink(FakeClock(T0), out=broken) as receiver:
        assert (await post(receiver.url, orjson.dumps(valid_body())))[0] == 200
        assert len(receiver.notifications) == 1


async def test_wait_until_returns_when_a_notification_arrives_or_time_is_up(
        sink: tuple[WebhookSink, Printed, FakeClock]) -> None:
    receiver, _printed, _clock = sink
    assert not await receiver.wait_until(bool, timeout=0.05)
    waiting = asyncio.create_task(receiver.wait_until(bool, timeout=WAIT_S))
    await asyncio.sleep(0)
    await post(receiver.url, orjson.dumps(valid_body()))
    assert await asyncio.wait_for(waiting, WAIT_S)


def arrived(offset: float, *alerts: tuple[str, Status]) -> SinkNotification:
    return SinkNotification(offset, SINK_RECEIVER, "firing", "g",
                            tuple(SinkAlert(n, s, "", "") for n, s in alerts), "")


def test_undelivered_pairs_each_event_with_a_later_notification() -> None:
    events = [(10.0, "A", "fired", "x"), (30.0, "A", "resolved", ""),
              (50.0, "A", "fired", "x"), (12.0, "B", "fired", "y")]
    assert undelivered(events, []) == [(10.0, "A", "fired"), (12.0, "B", "fired"),
                                       (30.0, "A", "resolved"), (50.0, "A", "fired")]
    got = [arrived(11, ("A", "firing"), ("B", "firing")), arrived(31, ("A", "resolved")),
           arrived(13, ("B", "firing"))]
    assert undelivered(events, got) == [(50.0, "A", "fired")]
    assert undelivered(events, [*got, arrived(51, ("A", "firing"))]) == []
    # A notification from before the event (a repeat of an earlier firing) does not count.
    assert undelivered([(50.0, "A", "fired", "")], [arrived(20, ("A", "firing"))]) == \
        [(50.0, "A", "fired")]


def test_the_demo_config_routes_every_alert_to_the_sink(tmp_path: Path) -> None:
    config = demo_config(tmp_path, "127.0.0.1:9464", "http://127.0.0.1:1234/webhook")
    tree = config.notify.route_tree
    assert tree is not None and tree.receiver == SINK_RECEIVER
    assert tree.group_by == ("alertname",)
    (hook,) = config.notify.receiver_by_name(SINK_RECEIVER).webhook_configs
    assert hook.url is not None
    assert hook.url.get_secret_value() == "http://127.0.0.1:1234/webhook"
    assert hook.send_resolved


async def refused(url: str) -> bool:
    try:
        await post(url, b"{}")
    except aiohttp.ClientConnectorError:
        return True
    return False


async def test_the_sink_closes_when_the_daemon_cannot_start(tmp_path: Path) -> None:
    receiver = WebhookSink(SystemClock(), out=lambda _line: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match="cannot listen"):
            await asyncio.wait_for(run_demo(directory=tmp_path, duration=5,
                                            listen=f"127.0.0.1:{port}", sink=receiver), 30)
    assert receiver.url and await refused(receiver.url)


@pytest.mark.slow
async def test_the_demo_delivers_an_alert_and_its_resolution_to_the_sink(
        tmp_path: Path, free_port: Callable[[], int], capsys: pytest.CaptureFixture[str]) -> None:
    # A 10 s burst from the start: DemoErrorBurst (30 s window, `for: 10s`) fires near 12 s
    # and resolves near 32 s, once the burst has left the window; 55 s leaves room for a
    # loaded machine (the resolution waits for a group_interval too).
    printed = Printed()
    receiver = WebhookSink(SystemClock(), out=printed.append)
    code = await asyncio.wait_for(run_demo(
        directory=tmp_path, duration=55, listen=f"127.0.0.1:{free_port()}",
        incidents=[Incident(IncidentKind.ERROR_BURST, 0, 10)], sink=receiver), 120)

    assert code == 0
    burst = [a.status for n in receiver.notifications for a in n.alerts
             if a.name == "DemoErrorBurst"]
    assert "firing" in burst and "resolved" in burst[burst.index("firing"):], burst
    assert receiver.rejected == 0
    assert printed == [n.line() for n in receiver.notifications]
    assert any(" notified  DemoErrorBurst firing (1 alert): " in line for line in printed)
    out = capsys.readouterr().out
    assert f"delivered to the webhook receiver {receiver.url}" in out
    assert "what fired (as the rules evaluated it):" in out and "not yet sent" not in out
    assert "what was delivered" in out and "NOT DELIVERED: DemoErrorBurst" not in out
    assert "error_burst at 0s" in out
    assert await refused(receiver.url)


def test_written_and_ingested_are_compared_per_source_and_status() -> None:
    stats = WorkloadStats()
    stats.requests.update({("inference", "m", "success"): 5, ("api_usage", "a", "success"): 2,
                           ("api_usage", "b", "success"): 1, ("api_usage", "a", "error"): 1})
    written = written_by_source(stats)
    assert written == {("inference", "success"): 5, ("api", "success"): 3, ("api", "error"): 1}
    before = Counter({("inference", "success"): 100, ("old", "error"): 7})
    after = before + written
    assert ingested_since(before, after) == written
    assert ingested_since(before, before) == Counter()
