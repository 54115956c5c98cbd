"""The WeCom channel (monitor/notify/channels/wecom.py) against WecomEmulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from emulators import WecomEmulator

from monitor.clock import FakeClock
from monitor.config_notify import WecomConfig
from monitor.notify.channels.base import RateLimit
from monitor.notify.channels.wecom import (
    MAX_MARKDOWN_BYTES,
    MAX_TEXT_BYTES,
    WEBHOOK_ENDPOINT,
    WecomChannel,
    wecom_content,
    wecom_payload,
)
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0


def alert(name: str = "HighLatency", *, resolved: bool = False, **labels: str) -> NotifyAlert:
    return NotifyAlert({"alertname": name, "severity": "critical", "instance": "gpu-1:8000",
                        **labels},
                       {"summary": f"{name} on gpu-1"}, T0 - 300,
                       ends_at=T0 - 60 if resolved else None)


def notification(*alerts: NotifyAlert, now: float = T0) -> Notification:
    return Notification("ops", "{}:{}", {"alertname": "HighLatency"}, alerts or (alert(),),
                        now)


def long_alert(k: int) -> NotifyAlert:
    return NotifyAlert({"alertname": "KVCacheFull", "instance": f"gpu-{k}:8000",
                        "model": "通义千问-72B"},
                       {"summary": f"显存缓存已满 {k}", "description": "缓存" * 60}, T0 - 60)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(timezone="Asia/Shanghai", external_url="http://inferwatch.local:9464")


def channel_for(config: dict[str, Any], session: aiohttp.ClientSession, clock: FakeClock,
                renderer: Renderer, **extra: Any) -> WecomChannel:
    return WecomChannel(WecomConfig.model_validate(config), receiver="ops", index=0,
                        session=session, clock=clock, renderer=renderer, **extra)


async def test_by_key_and_by_url_reach_the_same_robot(session: aiohttp.ClientSession,
                                                      clock: FakeClock,
                                                      renderer: Renderer) -> None:
    async with WecomEmulator(key="abc-123", clock=clock) as robot:
        by_key = channel_for({"key": "abc-123"}, session, clock, renderer,
                             endpoint=robot.endpoint)
        by_url = channel_for({"url": robot.url}, session, clock, renderer)
        assert (await by_key.deliver(by_key.render(notification()))).ok
        assert (await by_url.deliver(by_url.render(notification()))).ok
    assert by_key.rate_key == by_url.rate_key
    assert "abc-123" not in by_key.rate_key
    assert by_key.limits == (RateLimit(20, 60.0),)
    [first, _second] = robot.received
    assert first["msgtype"] == "markdown"
    content = first["markdown"]["content"]
    assert '<font color="warning">[FIRING:1]</font> HighLatency' in content
    assert "since: 2026-01-01 07:55:00 CST (for 5m 0s)" in content


async def test_the_key_is_quoted_and_kept_out_of_the_message(
        session: aiohttp.ClientSession, clock: FakeClock, renderer: Renderer) -> None:
    assert WEBHOOK_ENDPOINT == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    async with WecomEmulator(key="k/1&x=2", clock=clock) as robot:
        channel = channel_for({"key": "k/1&x=2"}, session, clock, renderer,
                              endpoint=robot.endpoint)
        message = channel.render(notification())
        assert (await channel.deliver(message)).ok
    assert "k/1" not in orjson.dumps(message).decode()


async def test_an_unknown_key_is_a_permanent_93000(session: aiohttp.ClientSession,
                                                   clock: FakeClock,
                                                   renderer: Renderer) -> None:
    async with WecomEmulator(key="right", clock=clock) as robot:
        channel = channel_for({"key": "wrong"}, session, clock, renderer,
                              endpoint=robot.endpoint)
        delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.retry, delivery.reason) == (False, "wecom_93000")
    assert robot.received == []


@pytest.mark.parametrize(("script", "retry", "reason"), [
    ({"errcode": 45009}, True, "wecom_45009"),
    ({"errcode": -1}, True, "wecom_-1"),
    ({"errcode": 93000}, False, "wecom_93000"),
    ({"errcode": 40058}, False, "wecom_40058"),
    ({"status": 503}, True, "http_503"),
    ({"status": 403}, False, "http_403"),
])
async def test_answers_are_classified(session: aiohttp.ClientSession, clock: FakeClock,
                                      renderer: Renderer, script: dict[str, int], retry: bool,
                                      reason: str) -> None:
    async with WecomEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        robot.fail_next(1, **script)
        delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, retry, reason)


async def test_the_robot_limit_of_20_a_minute(session: aiohttp.ClientSession,
                                              clock: FakeClock, renderer: Renderer) -> None:
    async with WecomEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        message = channel.render(notification())
        outcomes = [await channel.deliver(message) for _ in range(21)]
        clock.advance(60)
        after = await channel.deliver(message)
    assert all(o.ok for o in outcomes[:20])
    assert outcomes[20].retry and outcomes[20].reason == "wecom_45009"
    assert outcomes[20].retry_after == 60.0
    assert after.ok


async def test_markdown_content_fits_4096_bytes_with_a_count(session: aiohttp.ClientSession,
                                                             clock: FakeClock,
                                                             renderer: Renderer) -> None:
    async with WecomEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url, "mentioned_list": ["zhangsan"]}, session,
                              clock, renderer)
        message = channel.render(notification(*(long_alert(k) for k in range(40))))
        assert (await channel.deliver(message)).ok
    content = robot.received[0]["markdown"]["content"]
    assert 3_000 < len(content.encode()) <= MAX_MARKDOWN_BYTES
    shown = content.count("**KVCacheFull**")
    assert 0 < shown < 40
    assert content.endswith(f"+{40 - shown} more alerts\n\n<@zhangsan>")


async def test_mobiles_or_everyone_need_a_text_message(session: aiohttp.ClientSession,
                                                       clock: FakeClock,
                                                       renderer: Renderer) -> None:
    async with WecomEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url, "mentioned_list": ["zhangsan", "@all"],
                               "mentioned_mobile_list": ["13800001111"]}, session, clock,
                              renderer)
        message = channel.render(notification(*(long_alert(k) for k in range(40))))
        assert (await channel.deliver(message)).ok
    [body] = robot.received
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_list"] == ["zhangsan", "@all"]
    assert body["text"]["mentioned_mobile_list"] == ["13800001111"]
    assert len(body["text"]["content"].encode()) <= MAX_TEXT_BYTES
    assert "<@" not in body["text"]["content"]


def test_user_ids_alone_stay_markdown(session: aiohttp.ClientSession, clock: FakeClock,
                                      renderer: Renderer) -> None:
    channel = channel_for({"key": "k", "mentioned_list": ["zhangsan", "lisi"]}, session,
                          clock, renderer)
    payload = wecom_payload(channel.render(notification()))
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["content"].endswith("<@zhangsan> <@lisi>")


async def test_merge_concatenates_and_fits(session: aiohttp.ClientSession, clock: FakeClock,
                                           renderer: Renderer) -> None:
    async with WecomEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url, "mentioned_list": ["zhangsan"]}, session,
                              clock, renderer)
        small = [channel.render(notification(alert(name), now=T0 + k))
                 for k, name in enumerate(("HighLatency", "GpuHot"))]
        merged = channel.merge(small)
        assert merged is not None and (await channel.deliver(merged)).ok
        big = [channel.render(notification(*(long_alert(10 * m + k) for k in range(5))))
               for m in range(6)]
        merged_big = channel.merge(big)
        assert merged_big is not None and (await channel.deliver(merged_big)).ok
    content = robot.received[0]["markdown"]["content"]
    assert content.count("**HighLatency**") == 1 and content.count("**GpuHot**") == 1
    assert content.count("<@zhangsan>") == 1
    big_content = wecom_content(merged_big)
    assert len(big_content.encode()) <= MAX_MARKDOWN_BYTES
    kept = len(merged_big["sections"])
    assert big_content.endswith(f"+{5 * (6 - kept)} more alerts\n\n<@zhangsan>")
    assert channel.merge([]) is None


def test_hostile_labels_render_as_data(session: aiohttp.ClientSession, clock: FakeClock,
                                       renderer: Renderer) -> None:
    channel = channel_for({"key": "k"}, session, clock, renderer)
    hostile = alert('</font><font color="info">fake', instance="<@all>",
                    model="{{ 7 * 7 }}", source="[x](javascript:1)")
    content = wecom_content(channel.render(notification(hostile)))
    assert "{{ 7 * 7 }}" in content and "[x](javascript:1)" in content
    assert "<@" not in content and "< @all>" in content
