"""The Feishu channel (monitor/notify/channels/feishu.py) against FeishuEmulator, which checks
the body signature and the keyword as Feishu documents them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from emulators import FeishuEmulator

from monitor.clock import FakeClock
from monitor.config_notify import FeishuConfig
from monitor.notify.channels.base import RateLimit
from monitor.notify.channels.feishu import MAX_BODY_BYTES, FeishuChannel, feishu_payload
from monitor.notify.channels.signing import feishu_signature
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0
SECRET = "feishu-secret-0123"


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
                       {"summary": f"显存缓存已满 {k}", "description": "缓存" * 300}, T0 - 60)


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
                renderer: Renderer, timeout: float = 5.0) -> FeishuChannel:
    return FeishuChannel(FeishuConfig.model_validate(config), receiver="ops", index=0,
                         session=session, clock=clock, renderer=renderer, timeout=timeout)


async def test_a_signed_card_is_accepted(session: aiohttp.ClientSession, clock: FakeClock,
                                         renderer: Renderer) -> None:
    async with FeishuEmulator(secret=SECRET, clock=clock) as bot:
        channel = channel_for({"url": bot.url, "secret": SECRET}, session, clock, renderer)
        message = channel.render(notification(alert(), alert("GpuHot", resolved=True)))
        delivery = await channel.deliver(message)
    assert delivery.ok, delivery
    [body] = bot.received
    assert body["timestamp"] == str(int(T0))
    assert body["sign"] == feishu_signature(SECRET, int(T0))
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"] == {"title": {"tag": "plain_text",
                                        "content": "[FIRING:1] HighLatency"},
                              "template": "red"}
    [element] = card["elements"]
    assert element["tag"] == "markdown"
    assert "HighLatency" in element["content"] and "[RESOLVED:1]" in element["content"]
    assert "2026-01-01 07:55:00 CST" in element["content"]


def test_identity_limits_and_no_secret_stored(session: aiohttp.ClientSession,
                                              clock: FakeClock, renderer: Renderer) -> None:
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/HOOK-abc"
    channel = channel_for({"url": url, "secret": SECRET}, session, clock, renderer)
    stored = orjson.dumps(channel.render(notification())).decode()
    assert "HOOK-abc" not in stored and SECRET not in stored
    assert "HOOK-abc" not in channel.rate_key
    assert channel.limits == (RateLimit(100, 60.0), RateLimit(5, 1.0))
    assert channel.integration == "feishu"


async def test_a_wrong_secret_or_a_stale_timestamp_is_a_permanent_19021(
        session: aiohttp.ClientSession, renderer: Renderer) -> None:
    bot_clock, our_clock = FakeClock(T0), FakeClock(T0 - 3601)
    async with FeishuEmulator(secret=SECRET, clock=bot_clock) as bot:
        wrong = channel_for({"url": bot.url, "secret": "other"}, session, bot_clock, renderer)
        stale = channel_for({"url": bot.url, "secret": SECRET}, session, our_clock, renderer)
        wrong_secret = await wrong.deliver(wrong.render(notification()))
        stale_time = await stale.deliver(stale.render(notification()))
        our_clock.advance(2)
        in_time = await stale.deliver(stale.render(notification()))
    for delivery in (wrong_secret, stale_time):
        assert (delivery.retry, delivery.reason) == (False, "feishu_19021")
        assert "sign match fail" in delivery.detail
    assert in_time.ok and len(bot.received) == 1


async def test_every_attempt_is_signed_afresh(session: aiohttp.ClientSession,
                                              clock: FakeClock, renderer: Renderer) -> None:
    async with FeishuEmulator(secret=SECRET, clock=clock) as bot:
        channel = channel_for({"url": bot.url, "secret": SECRET}, session, clock, renderer)
        message = channel.render(notification())
        bot.fail_next(1, errcode=11232, errmsg="frequency limited")
        first = await channel.deliver(message)
        clock.advance(5)
        second = await channel.deliver(message)
    assert first.retry and first.reason == "feishu_11232" and second.ok
    stamps = [orjson.loads(r.body)["timestamp"] for r in bot.requests]
    assert stamps == [str(int(T0)), str(int(T0) + 5)]
    cards = [orjson.loads(r.body)["card"] for r in bot.requests]
    assert cards[0] == cards[1]


async def test_a_keyword_the_bot_requires(session: aiohttp.ClientSession, clock: FakeClock,
                                          renderer: Renderer) -> None:
    async with FeishuEmulator(keyword="告警", clock=clock) as bot:
        plain = channel_for({"url": bot.url}, session, clock, renderer)
        titled = channel_for({"url": bot.url, "title": "告警 {{ receiver }}"}, session, clock,
                             renderer)
        missing = await plain.deliver(plain.render(notification()))
        present = await titled.deliver(titled.render(notification()))
    assert (missing.retry, missing.reason) == (False, "feishu_19024")
    assert present.ok


@pytest.mark.parametrize(("answer", "status", "ok", "retry", "reason"), [
    ({"code": 9499, "msg": "too many request"}, 200, False, True, "feishu_9499"),
    ({"code": 11232, "msg": "frequency limited"}, 200, False, True, "feishu_11232"),
    ({"code": 19021, "msg": "sign match fail"}, 200, False, False, "feishu_19021"),
    ({"code": 19024, "msg": "Key Words Not Found"}, 200, False, False, "feishu_19024"),
    ({"code": 19001, "msg": "param invalid"}, 400, False, False, "feishu_19001"),
    ({"StatusCode": 0, "StatusMessage": "success"}, 200, True, False, ""),
    ({"code": 0, "msg": "success", "StatusCode": 0}, 200, True, False, ""),
    ({"error": "gateway"}, 502, False, True, "http_502"),
    ("busy", 429, False, True, "http_429"),
])
async def test_answers_are_classified(session: aiohttp.ClientSession, clock: FakeClock,
                                      renderer: Renderer, answer: Any, status: int, ok: bool,
                                      retry: bool, reason: str) -> None:
    async with FeishuEmulator(clock=clock) as bot:
        channel = channel_for({"url": bot.url}, session, clock, renderer)
        bot.answer_next(1, answer, status=status)
        delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (ok, retry, reason)


async def test_five_a_second(session: aiohttp.ClientSession, clock: FakeClock,
                             renderer: Renderer) -> None:
    async with FeishuEmulator(clock=clock) as bot:
        channel = channel_for({"url": bot.url}, session, clock, renderer)
        message = channel.render(notification())
        outcomes = [await channel.deliver(message) for _ in range(6)]
        clock.advance(1)
        after = await channel.deliver(message)
    assert all(o.ok for o in outcomes[:5])
    assert outcomes[5].retry and outcomes[5].reason == "feishu_11232"
    assert after.ok


async def test_no_answer_is_a_transient_timeout(session: aiohttp.ClientSession,
                                                clock: FakeClock, renderer: Renderer) -> None:
    async with FeishuEmulator(clock=clock) as bot:
        channel = channel_for({"url": bot.url}, session, clock, renderer, timeout=0.05)
        bot.hang_next(1)
        delivery = await channel.deliver(channel.render(notification()))
    assert delivery.retry and delivery.reason == "timeout"


async def test_the_signed_body_fits_20000_bytes(session: aiohttp.ClientSession,
                                                clock: FakeClock, renderer: Renderer) -> None:
    async with FeishuEmulator(secret=SECRET, clock=clock) as bot:
        channel = channel_for({"url": bot.url, "secret": SECRET}, session, clock, renderer)
        message = channel.render(notification(*(long_alert(k) for k in range(100))))
        assert (await channel.deliver(message)).ok
    size = len(bot.requests[0].body)
    assert MAX_BODY_BYTES - 2_000 < size <= MAX_BODY_BYTES
    content = bot.received[0]["card"]["elements"][0]["content"]
    shown = content.count("KVCacheFull</font>")
    assert 0 < shown < 100 and content.endswith(f"+{100 - shown} more alerts")


async def test_merge_divides_sections_with_rules(session: aiohttp.ClientSession,
                                                 clock: FakeClock, renderer: Renderer) -> None:
    async with FeishuEmulator(clock=clock) as bot:
        channel = channel_for({"url": bot.url}, session, clock, renderer)
        firing = channel.render(notification(alert("GpuHot")))
        resolved = channel.render(notification(alert(resolved=True)))
        assert resolved["colour"] == "green"
        merged = channel.merge([resolved, firing])
        assert merged is not None and (await channel.deliver(merged)).ok
        big = [channel.render(notification(*(long_alert(10 * m + k) for k in range(6))))
               for m in range(8)]
        merged_big = channel.merge(big)
        assert merged_big is not None and (await channel.deliver(merged_big)).ok
    card = bot.received[0]["card"]
    assert card["header"]["template"] == "red"
    assert [e["tag"] for e in card["elements"]] == ["markdown", "hr", "markdown"]
    assert card["header"]["title"]["content"] == "[RESOLVED] HighLatency | [FIRING:1] GpuHot"
    big_card = bot.received[1]["card"]
    kept = len(merged_big["sections"])
    assert 1 <= kept < 8
    assert big_card["elements"][-1] == {"tag": "markdown",
                                        "content": f"+{6 * (8 - kept)} more alerts"}
    assert len(orjson.dumps(feishu_payload(merged_big))) <= MAX_BODY_BYTES


def test_hostile_labels_render_as_data(session: aiohttp.ClientSession, clock: FakeClock,
                                       renderer: Renderer) -> None:
    channel = channel_for({"url": "https://open.feishu.cn/open-apis/bot/v2/hook/x"}, session,
                          clock, renderer)
    hostile = alert("<at id=all></at>", instance="</font>**x**", model="{{ 7 * 7 }}",
                    source="{% if %}")
    payload = feishu_payload(channel.render(notification(hostile)))
    content = payload["card"]["elements"][0]["content"]
    assert "{{ 7 * 7 }}" in content and "{% if %}" in content
    assert "<at" not in content.lower() and "< at id=all>< /at>" in content


def test_a_template_may_still_mention_everyone(session: aiohttp.ClientSession,
                                               clock: FakeClock, renderer: Renderer) -> None:
    channel = channel_for({"url": "https://open.feishu.cn/open-apis/bot/v2/hook/x",
                           "message": "<at id=all></at> {{ alerts[0].name }}"}, session,
                          clock, renderer)
    payload = feishu_payload(channel.render(notification(alert("<AT id=all></at>"))))
    assert payload["card"]["elements"][0]["content"] == "<at id=all></at> < AT id=all>< /at>"
