"""The DingTalk channel (monitor/notify/channels/dingtalk.py) against DingtalkEmulator, which
checks signatures, keywords and sizes as DingTalk documents them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
import pytest
from emulators import DingtalkEmulator

from monitor.clock import FakeClock
from monitor.config_notify import DingtalkConfig
from monitor.notify.channels.base import Channel, RateLimit
from monitor.notify.channels.dingtalk import (
    MAX_BODY_BYTES,
    DingtalkChannel,
    dingtalk_body,
    dingtalk_payload,
)
from monitor.notify.channels.signing import dingtalk_signature, dingtalk_signed_url
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, FakeClock's start
SECRET = "SEC0123456789abcdef+/=secret"  # characters that must be URL-encoded in the sign


def alert(name: str = "HighLatency", *, resolved: bool = False, started: float = T0 - 300,
          **labels: str) -> NotifyAlert:
    return NotifyAlert({"alertname": name, "severity": "critical", "instance": "gpu-1:8000",
                        **labels},
                       {"summary": f"{name} on gpu-1", "description": "p99 over the SLO"},
                       started, ends_at=T0 - 60 if resolved else None)


def notification(*alerts: NotifyAlert, now: float = T0) -> Notification:
    return Notification("ops", '{}:{alertname="HighLatency"}', {"alertname": "HighLatency"},
                        alerts or (alert(),), now)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(timezone="Asia/Shanghai", external_url="http://inferwatch.local:9464/")


def channel_for(config: dict[str, Any], session: aiohttp.ClientSession, clock: FakeClock,
                renderer: Renderer, timeout: float = 5.0) -> DingtalkChannel:
    return DingtalkChannel(DingtalkConfig.model_validate(config), receiver="ops", index=0,
                           session=session, clock=clock, renderer=renderer, timeout=timeout)


async def test_a_signed_markdown_message_is_accepted(session: aiohttp.ClientSession,
                                                     clock: FakeClock,
                                                     renderer: Renderer) -> None:
    async with DingtalkEmulator(secret=SECRET, clock=clock) as robot:
        channel = channel_for({"url": robot.url, "secret": SECRET}, session, clock, renderer)
        message = channel.render(notification(alert(), alert("GpuHot", resolved=True)))
        delivery = await channel.deliver(message)
    assert delivery.ok, delivery
    [request] = robot.requests
    assert request.query["timestamp"] == str(int(T0 * 1000))
    assert request.query["sign"] == dingtalk_signature(SECRET, int(T0 * 1000))
    [body] = robot.received
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "[FIRING:1] HighLatency"
    assert body["msgUuid"] == message["msgUuid"]
    assert body["at"] == {"atMobiles": [], "atUserIds": [], "isAtAll": False}
    text = body["markdown"]["text"]
    assert "[FIRING:1]" in text and "[RESOLVED:1]" in text
    assert text.index("HighLatency") < text.index("[RESOLVED:1]") < text.index("GpuHot")


async def test_a_sign_with_plus_and_slash_survives_url_encoding(
        session: aiohttp.ClientSession, clock: FakeClock, renderer: Renderer) -> None:
    clock.advance(3)  # at this moment the signature holds both "+" and "/"
    sign = dingtalk_signature(SECRET, int(clock.time() * 1000))
    assert "+" in sign and "/" in sign
    async with DingtalkEmulator(secret=SECRET, clock=clock) as robot:
        channel = channel_for({"url": robot.url, "secret": SECRET}, session, clock, renderer)
        assert (await channel.deliver(channel.render(notification()))).ok
    assert robot.requests[0].query["sign"] == sign


def test_the_stored_message_is_json_and_holds_no_secret(session: aiohttp.ClientSession,
                                                        clock: FakeClock,
                                                        renderer: Renderer) -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=TOKEN-abc123"
    channel = channel_for({"url": url, "secret": SECRET}, session, clock, renderer)
    stored = orjson.dumps(channel.render(notification())).decode()
    assert "TOKEN-abc123" not in stored and SECRET not in stored
    assert "TOKEN-abc123" not in channel.rate_key and "oapi" not in channel.rate_key
    assert channel.limits == (RateLimit(20, 60.0),)
    assert channel.integration == "dingtalk" and channel.send_resolved
    typed: Channel = channel  # the protocol is satisfied
    assert typed.rate_key == channel_for({"url": url}, session, clock, renderer).rate_key
    other = channel_for({"url": url + "x"}, session, clock, renderer)
    assert other.rate_key != channel.rate_key


async def test_a_wrong_secret_is_a_permanent_310000(session: aiohttp.ClientSession,
                                                    clock: FakeClock,
                                                    renderer: Renderer) -> None:
    async with DingtalkEmulator(secret=SECRET, clock=clock) as robot:
        channel = channel_for({"url": robot.url, "secret": "SECwrong"}, session, clock,
                              renderer)
        delivery = await channel.deliver(channel.render(notification()))
    assert not delivery.ok and not delivery.retry
    assert delivery.reason == "dingtalk_310000"
    assert "sign not match" in delivery.detail
    assert robot.received == []


async def test_a_timestamp_over_an_hour_off_is_rejected(session: aiohttp.ClientSession,
                                                        renderer: Renderer) -> None:
    robot_clock, our_clock = FakeClock(T0 + 3601), FakeClock(T0)
    async with DingtalkEmulator(secret=SECRET, clock=robot_clock) as robot:
        channel = channel_for({"url": robot.url, "secret": SECRET}, session, our_clock,
                              renderer)
        late = await channel.deliver(channel.render(notification()))
        our_clock.advance(2)
        in_time = await channel.deliver(channel.render(notification()))
    assert late.reason == "dingtalk_310000" and not late.retry
    assert in_time.ok


async def test_every_attempt_is_signed_afresh_with_the_same_msg_uuid(
        session: aiohttp.ClientSession, clock: FakeClock, renderer: Renderer) -> None:
    async with DingtalkEmulator(secret=SECRET, clock=clock) as robot:
        channel = channel_for({"url": robot.url, "secret": SECRET}, session, clock, renderer)
        message = channel.render(notification())
        robot.fail_next(1, errcode=130101, errmsg="send too fast")
        first = await channel.deliver(message)
        clock.advance(61)
        second = await channel.deliver(message)
    assert first.retry and first.reason == "dingtalk_130101" and first.retry_after == 60.0
    assert second.ok
    stamps = [r.query["timestamp"] for r in robot.requests]
    assert stamps == [str(int(T0 * 1000)), str(int((T0 + 61) * 1000))]
    uuids = [orjson.loads(r.body)["msgUuid"] for r in robot.requests]
    assert uuids[0] == uuids[1] == message["msgUuid"]
    assert robot.requests[0].body == robot.requests[1].body


async def test_a_message_sent_twice_is_posted_once(session: aiohttp.ClientSession,
                                                   clock: FakeClock,
                                                   renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        message = channel.render(notification())
        assert (await channel.deliver(message)).ok
        assert (await channel.deliver(message)).ok  # e.g. the first answer was lost
    assert len(robot.received) == 1 and robot.duplicates == 1


def test_msg_uuid_is_decided_by_the_notification(session: aiohttp.ClientSession,
                                                 clock: FakeClock,
                                                 renderer: Renderer) -> None:
    channel = channel_for({"url": "https://oapi.dingtalk.com/robot/send?access_token=t"},
                          session, clock, renderer)
    first = channel.render(notification())["msgUuid"]
    assert channel.render(notification())["msgUuid"] == first  # a re-render after a crash
    assert channel.render(notification(now=T0 + 3600))["msgUuid"] != first  # a repeat
    assert channel.render(notification(alert(), alert("Other")))["msgUuid"] != first


@pytest.mark.parametrize(("script", "retry", "reason"), [
    ({"errcode": 130101}, True, "dingtalk_130101"),
    ({"errcode": -1}, True, "dingtalk_-1"),
    ({"errcode": 310000}, False, "dingtalk_310000"),
    ({"errcode": 460101}, False, "dingtalk_460101"),
    ({"errcode": 300001}, False, "dingtalk_300001"),
    ({"errcode": 400013}, False, "dingtalk_400013"),
    ({"status": 500}, True, "http_500"),
    ({"status": 502}, True, "http_502"),
    ({"status": 429}, True, "http_429"),
    ({"status": 404}, False, "http_404"),
    ({"status": 400}, False, "http_400"),
])
async def test_answers_are_classified(session: aiohttp.ClientSession, clock: FakeClock,
                                      renderer: Renderer, script: dict[str, int], retry: bool,
                                      reason: str) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        robot.fail_next(1, **script)
        delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, retry, reason)


async def test_an_errcode_in_a_4xx_answer_decides(session: aiohttp.ClientSession,
                                                  clock: FakeClock,
                                                  renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        robot.answer_next(1, {"errcode": 130101, "errmsg": "too fast"}, status=403)
        delivery = await channel.deliver(channel.render(notification()))
    assert delivery.retry and delivery.reason == "dingtalk_130101"


async def test_retry_after_and_odd_answers(session: aiohttp.ClientSession, clock: FakeClock,
                                           renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        message = channel.render(notification())
        robot.fail_next(1, status=503, headers={"Retry-After": "30"})
        busy = await channel.deliver(message)
        robot.answer_next(1, "<html>proxy error page</html>")
        not_json = await channel.deliver(message)
        robot.answer_next(1, {"errmsg": "no code"})
        no_code = await channel.deliver(message)
    assert busy.retry and busy.retry_after == 30.0
    assert not not_json.retry and not_json.reason == "dingtalk_bad_answer"
    assert "proxy error page" in not_json.detail
    assert not no_code.retry and no_code.reason == "dingtalk_bad_answer"


async def test_no_answer_is_a_transient_timeout(session: aiohttp.ClientSession,
                                                clock: FakeClock, renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer, timeout=0.05)
        robot.hang_next(1)
        delivery = await channel.deliver(channel.render(notification()))
    assert delivery.retry and delivery.reason == "timeout"


async def test_the_robot_limit_of_20_a_minute(session: aiohttp.ClientSession,
                                              clock: FakeClock, renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        outcomes = []
        for k in range(21):
            message = channel.render(notification(now=T0 + k))
            outcomes.append(await channel.deliver(message))
        clock.advance(61)
        still_throttled = await channel.deliver(message)
        clock.advance(600)
        after = await channel.deliver(message)
    assert all(o.ok for o in outcomes[:20])
    assert outcomes[20].retry and outcomes[20].reason == "dingtalk_130101"
    assert still_throttled.reason == "dingtalk_130101"  # DingTalk throttles for 10 minutes
    assert after.ok and len(robot.received) == 21


async def test_the_keyword_is_in_title_and_text(session: aiohttp.ClientSession,
                                                clock: FakeClock, renderer: Renderer) -> None:
    async with DingtalkEmulator(keyword="告警", clock=clock) as robot:
        with_keyword = channel_for({"url": robot.url, "keyword": "告警"}, session, clock,
                                   renderer)
        without = channel_for({"url": robot.url}, session, clock, renderer)
        accepted = await with_keyword.deliver(with_keyword.render(notification()))
        rejected = await without.deliver(without.render(notification(now=T0 + 1)))
    assert accepted.ok
    assert rejected.reason == "dingtalk_310000" and not rejected.retry
    [body] = robot.received
    assert body["markdown"]["title"].startswith("告警 ")
    assert "告警" in body["markdown"]["text"]


def test_a_keyword_already_present_is_not_repeated(session: aiohttp.ClientSession,
                                                   clock: FakeClock,
                                                   renderer: Renderer) -> None:
    channel = channel_for({"url": "https://oapi.dingtalk.com/robot/send?access_token=t",
                           "keyword": "FIRING"}, session, clock, renderer)
    payload = dingtalk_payload(channel.render(notification()))
    assert payload["markdown"]["title"] == "[FIRING:1] HighLatency"
    assert not payload["markdown"]["text"].endswith("FIRING")


async def test_mentions_are_in_the_text_and_the_at_block(session: aiohttp.ClientSession,
                                                         clock: FakeClock,
                                                         renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url, "at_mobiles": ["13800001111", "13900002222"],
                               "at_user_ids": ["manager4321"]}, session, clock, renderer)
        assert (await channel.deliver(channel.render(notification()))).ok
    [body] = robot.received
    assert body["at"] == {"atMobiles": ["13800001111", "13900002222"],
                          "atUserIds": ["manager4321"], "isAtAll": False}
    for who in ("13800001111", "13900002222", "manager4321"):
        assert f"@{who}" in body["markdown"]["text"]


def long_alert(k: int, *, description_chars: int = 300) -> NotifyAlert:
    return NotifyAlert({"alertname": "KVCacheFull", "severity": "warning",
                        "instance": f"gpu-{k}:8000", "model": "通义千问-72B"},
                       {"summary": f"显存缓存已满 {k}", "description": "缓存" * description_chars},
                       T0 - 60 - k)


async def test_too_many_alerts_are_cut_to_fit_with_a_count(session: aiohttp.ClientSession,
                                                           clock: FakeClock,
                                                           renderer: Renderer) -> None:
    alerts = tuple(long_alert(k) for k in range(200))
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        message = channel.render(notification(*alerts))
        delivery = await channel.deliver(message)
    assert delivery.ok
    body = dingtalk_body(message)
    assert len(robot.requests[0].body) == len(body) <= MAX_BODY_BYTES
    assert len(body) > MAX_BODY_BYTES - 2_000  # it did not give up more than it needed to
    text = orjson.loads(body)["markdown"]["text"]
    shown = text.count("#### KVCacheFull")
    assert 0 < shown < 200
    assert text.endswith(f"+{200 - shown} more alerts")
    assert message["sections"][0]["alerts"] == 200


async def test_a_huge_value_is_clipped_and_the_alert_stays_whole(
        session: aiohttp.ClientSession, clock: FakeClock, renderer: Renderer) -> None:
    giant = long_alert(1, description_chars=20_000)  # 120 kB of three-byte characters
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url}, session, clock, renderer)
        message = channel.render(notification(giant, long_alert(2)))
        delivery = await channel.deliver(message)
    assert delivery.ok
    text = robot.received[0]["markdown"]["text"]
    assert "缓存缓存 …" in text and text.count("#### KVCacheFull") == 2
    assert text.count("- since: ") == 2 and "more alerts" not in text
    assert len(dingtalk_body(message)) < 5_000


async def test_text_that_cannot_fit_is_cut_between_characters(
        session: aiohttp.ClientSession, clock: FakeClock, renderer: Renderer) -> None:
    template = "{% for i in range(6000) %}缓存{{ i }} {% endfor %}"
    async with DingtalkEmulator(clock=clock) as robot:
        channel = channel_for({"url": robot.url, "message": template}, session, clock,
                              renderer)
        message = channel.render(notification(alert(), alert("Other")))
        delivery = await channel.deliver(message)
    assert delivery.ok
    assert MAX_BODY_BYTES - 100 < len(dingtalk_body(message)) <= MAX_BODY_BYTES
    text = robot.received[0]["markdown"]["text"]
    assert text.startswith("缓存0 缓存1 ") and text.endswith(" …\n\n+1 more alerts")
    assert "\ufffd" not in text


def test_max_alerts_from_the_config(session: aiohttp.ClientSession, clock: FakeClock,
                                    renderer: Renderer) -> None:
    channel = channel_for({"url": "https://oapi.dingtalk.com/robot/send?access_token=t",
                           "max_alerts": 2}, session, clock, renderer)
    alerts = tuple(alert(instance=f"gpu-{k}") for k in range(5))
    text = dingtalk_payload(channel.render(notification(*alerts)))["markdown"]["text"]
    assert text.count("#### HighLatency") == 2 and text.endswith("+3 more alerts")


async def test_merge_concatenates_and_is_deterministic(session: aiohttp.ClientSession,
                                                       clock: FakeClock,
                                                       renderer: Renderer) -> None:
    async with DingtalkEmulator(clock=clock, keyword="告警") as robot:
        channel = channel_for({"url": robot.url, "keyword": "告警",
                               "at_mobiles": ["13800001111"]}, session, clock, renderer)
        messages = [channel.render(notification(alert(name), now=T0 + k))
                    for k, name in enumerate(("HighLatency", "GpuHot", "HighLatency"))]
        merged = channel.merge(messages)
        assert merged is not None
        assert channel.merge(messages) == merged
        assert (await channel.deliver(merged)).ok
    assert merged["msgUuid"] not in {m["msgUuid"] for m in messages}
    assert merged["title"] == "告警 [FIRING:1] HighLatency | 告警 [FIRING:1] GpuHot"
    text = robot.received[0]["markdown"]["text"]
    assert text.count("#### HighLatency") == 2 and text.count("#### GpuHot") == 1
    assert text.count("@13800001111") == 1
    assert channel.merge([]) is None and channel.merge(messages[:1]) == messages[0]


def test_merge_drops_whole_sections_to_fit(session: aiohttp.ClientSession, clock: FakeClock,
                                           renderer: Renderer) -> None:
    channel = channel_for({"url": "https://oapi.dingtalk.com/robot/send?access_token=t"},
                          session, clock, renderer)
    messages = [channel.render(notification(*(long_alert(10 * m + k) for k in range(8)),
                                            now=T0 + m))
                for m in range(6)]
    merged = channel.merge(messages)
    assert merged is not None
    body = dingtalk_body(merged)
    assert len(body) <= MAX_BODY_BYTES
    kept = len(merged["sections"])
    assert 1 <= kept < 6
    assert orjson.loads(body)["markdown"]["text"].endswith(f"+{8 * (6 - kept)} more alerts")
    again = channel.merge([merged, channel.render(notification(alert(), now=T0 + 99))])
    assert again is not None and len(dingtalk_body(again)) <= MAX_BODY_BYTES


def test_hostile_labels_render_as_data(session: aiohttp.ClientSession, clock: FakeClock,
                                       renderer: Renderer) -> None:
    channel = channel_for({"url": "https://oapi.dingtalk.com/robot/send?access_token=t"},
                          session, clock, renderer)
    hostile = NotifyAlert(
        {"alertname": "**[click](javascript:alert(1))**", "instance": "<script>x</script>",
         "model": "{{ 7 * 7 }}", "source": "{% raw %}\n# heading\n> quote"},
        {"summary": "`code` | table | ---", "description": "\x00\u202e\n\n@all"}, T0 - 10)
    text = dingtalk_payload(channel.render(notification(hostile)))["markdown"]["text"]
    assert "{{ 7 * 7 }}" in text and "49" not in text
    assert "<script>x</script>" in text and "{% raw %}" in text


def test_times_are_in_the_configured_zone(session: aiohttp.ClientSession, clock: FakeClock,
                                          renderer: Renderer) -> None:
    channel = channel_for({"url": "https://oapi.dingtalk.com/robot/send?access_token=t"},
                          session, clock, renderer)
    text = dingtalk_payload(channel.render(notification()))["markdown"]["text"]
    assert "since: 2026-01-01 07:55:00 CST (for 5m 0s)" in text
    assert "(http://inferwatch.local:9464/#alert-HighLatency)" in text
    assert "[Status page](http://inferwatch.local:9464)" in text


def test_custom_templates_and_a_broken_one(session: aiohttp.ClientSession, clock: FakeClock,
                                           renderer: Renderer) -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=t"
    custom = channel_for({"url": url, "title": "{{ receiver }}: {{ alerts|length }}",
                          "message": "{% for a in alerts %}{{ a.name }} {% endfor %}"},
                         session, clock, renderer)
    payload = dingtalk_payload(custom.render(notification()))
    assert payload["markdown"] == {"title": "ops: 1", "text": "HighLatency"}
    broken = channel_for({"url": url, "title": "{{ nope() }}", "message": "{{ nope() }}"},
                         session, clock, renderer)
    payload = dingtalk_payload(broken.render(notification()))
    assert payload["markdown"]["title"] == "[FIRING:1] HighLatency"
    assert "#### HighLatency" in payload["markdown"]["text"]


def test_a_signed_url_keeps_the_token_and_encodes_the_sign() -> None:
    signed = dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=t",
                                 SECRET, 1_700_000_000_000)
    query = parse_qs(urlsplit(signed).query)
    assert query["access_token"] == ["t"] and query["timestamp"] == ["1700000000000"]
    assert query["sign"] == [dingtalk_signature(SECRET, 1_700_000_000_000)]
    assert "+" not in urlsplit(signed).query.split("sign=")[1]
