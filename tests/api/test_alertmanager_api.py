"""The Alertmanager-shaped API (monitor/api/alertmanager.py) through a real aiohttp server on
loopback, over a NotifyService on a fake clock, checked against Alertmanager's api/v2/api.go:

- `GET /api/v2/alerts`: `inhibitedBy` holds the inhibiting alert's fingerprint, `silencedBy`
  the active silences' ids sorted, `state` "suppressed" when either is set; `active`,
  `silenced` and `inhibited` leave out what they are false for; `unprocessed` changes
  nothing; `filter` is one matcher per parameter, `{...}` refused with a JSON string.
- `GET /api/v2/silences`: listed when every filter equals one of the silence's matchers;
  active by end, pending by start, expired latest first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from monitor.api.alertmanager import add_alertmanager_api
from monitor.clock import FakeClock
from monitor.config import parse_config
from monitor.metrics.store import MetricStore
from monitor.notify.model import NotifyAlert, fingerprint, rfc3339
from monitor.notify.service import NotifyService
from monitor.storage import StateStore

CONFIG = """
notify:
  route: {receiver: team}
  receivers: [{name: team}]
  inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [instance]
"""
HOUR = 3600.0
Client = TestClient[web.Request, web.Application]


class Api:
    def __init__(self, client: Client, notify: NotifyService, clock: FakeClock) -> None:
        self.client, self.notify, self.clock = client, notify, clock

    def fire(self, **labels: str) -> NotifyAlert:
        alert = NotifyAlert(labels, {}, self.clock.time() - 60, self.clock.time() + HOUR)
        self.notify.dispatcher.put([alert])
        return alert

    async def silence(self, *matchers: str, starts: float = 0.0, ends: float = 1.0) -> str:
        now = self.clock.time()
        body = {"matchers": [_matcher_json(m) for m in matchers],
                "startsAt": rfc3339(now + starts * HOUR), "endsAt": rfc3339(now + ends * HOUR),
                "createdBy": "test", "comment": "test"}
        async with self.client.post("/api/v2/silences", json=body) as response:
            assert response.status == 200, await response.text()
            silence_id: str = (await response.json())["silenceID"]
            return silence_id

    async def get(self, path: str, status: int = 200) -> Any:
        async with self.client.get(path) as response:
            assert response.status == status, await response.text()
            assert response.content_type == "application/json"
            return await response.json()


def _matcher_json(text: str) -> dict[str, Any]:
    for op, is_regex, is_equal in (("=~", True, True), ("!~", True, False),
                                   ("!=", False, False), ("=", False, True)):
        if op in text:
            name, value = text.split(op, 1)
            return {"name": name, "value": value, "isRegex": is_regex, "isEqual": is_equal}
    raise AssertionError(text)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    clock = FakeClock()
    state = StateStore(tmp_path)
    notify = NotifyService(parse_config(CONFIG).notify, timezone="UTC", state=state,
                           clock=clock, metrics=MetricStore())
    app = web.Application()
    add_alertmanager_api(app, notify=notify, clock=clock)
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Api(client, notify, clock)
    await client.close()
    state.close()


# -- /api/v2/alerts ---------------------------------------------------------------------------


async def test_alert_status_names_the_inhibiting_alert_and_the_silences(api: Api) -> None:
    source_labels = {"alertname": "Down", "severity": "critical", "instance": "a"}
    source = api.fire(**source_labels)
    inhibited = api.fire(alertname="Slow", severity="warning", instance="a")
    both = api.fire(alertname="Queue", severity="warning", instance="a")
    plain = api.fire(alertname="Slow", severity="warning", instance="b")
    silences = [await api.silence("alertname=Queue"), await api.silence("instance=a",
                                                                          "severity=warning")]
    await api.silence("alertname=Queue", starts=1, ends=2)  # pending: silences nothing yet
    shown = {a["fingerprint"]: a for a in await api.get("/api/v2/alerts")}
    assert list(shown) == sorted(shown)
    assert source.fingerprint == fingerprint(source_labels)
    assert shown[inhibited.fingerprint]["status"] == {
        "state": "suppressed", "silencedBy": [silences[1]],
        "inhibitedBy": [source.fingerprint]}
    assert shown[both.fingerprint]["status"] == {
        "state": "suppressed", "silencedBy": sorted(silences),
        "inhibitedBy": [source.fingerprint]}
    assert shown[plain.fingerprint]["status"] == {
        "state": "active", "silencedBy": [], "inhibitedBy": []}
    assert shown[source.fingerprint]["status"]["state"] == "active"


@pytest.mark.parametrize(("query", "listed"), [
    ("", {"source", "inhibited", "silenced", "both", "plain"}),
    ("?active=false", {"inhibited", "silenced", "both"}),
    ("?silenced=false", {"source", "inhibited", "plain"}),
    ("?inhibited=false", {"source", "silenced", "plain"}),
    ("?silenced=false&inhibited=false", {"source", "plain"}),
    ("?active=false&silenced=false", {"inhibited"}),
    ("?active=0&silenced=no&inhibited=off", set()),
    ("?unprocessed=false", {"source", "inhibited", "silenced", "both", "plain"}),
    ("?active=", {"source", "inhibited", "silenced", "both", "plain"}),
    ("?active=true&active=false", {"inhibited", "silenced", "both"}),  # the last one counts
    ("?filter=instance=a", {"source", "inhibited", "silenced", "both"}),
    ('?filter=instance="a"&filter=severity!="critical"', {"inhibited", "silenced", "both"}),
    ("?filter=zone!=1", {"source", "inhibited", "silenced", "both", "plain"}),
    ('?filter=alertname=~"S.*"', {"inhibited", "plain"}),
])
async def test_the_state_parameters_and_filters_choose_the_alerts(
        api: Api, query: str, listed: set[str]) -> None:
    names = {
        api.fire(alertname="Down", severity="critical", instance="a").fingerprint: "source",
        api.fire(alertname="Slow", severity="warning", instance="a").fingerprint: "inhibited",
        api.fire(alertname="Queue", severity="info", instance="a").fingerprint: "silenced",
        api.fire(alertname="Disk", severity="warning", instance="a").fingerprint: "both",
        api.fire(alertname="Slow", severity="warning", instance="b").fingerprint: "plain",
    }
    await api.silence("alertname=~Queue|Disk")
    shown = await api.get("/api/v2/alerts" + query)
    assert {names[a["fingerprint"]] for a in shown} == listed


@pytest.mark.parametrize(("path", "words"), [
    ('/api/v2/alerts?filter={instance="a"}', 'unexpected open or close brace: {instance="a"}'),
    ("/api/v2/alerts?filter=instance=a}", "unexpected open or close brace"),
    ('/api/v2/alerts?filter=a="x",b="y"', "unescaped double quote"),
    ("/api/v2/alerts?filter=", "bad matcher format"),
    ("/api/v2/alerts?filter=%3Doops", "bad filter"),
    ('/api/v2/alerts?filter=a=~"("', "bad filter"),
    ("/api/v2/alerts?inhibited=maybe", "inhibited: must be true or false"),
    ("/api/v2/alerts?unprocessed=maybe", "unprocessed: must be true or false"),
    ('/api/v2/silences?filter={alertname="x"}', "unexpected open or close brace"),
    ("/api/v2/silences?filter=nonsense", "bad matcher format"),
])
async def test_bad_parameters_are_refused_with_a_json_string(
        api: Api, path: str, words: str) -> None:
    message = await api.get(path, 400)
    assert isinstance(message, str) and words in message


async def test_an_unquoted_filter_value_runs_to_the_end_commas_included(api: Api) -> None:
    comma = api.fire(alertname="Odd", team="a,b")
    api.fire(alertname="Odd", team="a")
    shown = await api.get("/api/v2/alerts?filter=team=a,b")
    assert [a["fingerprint"] for a in shown] == [comma.fingerprint]


# -- /api/v2/silences -------------------------------------------------------------------------


async def test_the_silence_list_filters_by_equal_matchers_and_sorts_as_alertmanager(
        api: Api) -> None:
    regex = await api.silence("alertname=Down", "team=~x", ends=3)
    equal = await api.silence("alertname=Down", "team=x", ends=2)
    negative = await api.silence("alertname=Down", "env!=prod", starts=2, ends=5)
    later = await api.silence("alertname=Down", "team=x", starts=1, ends=9)
    gone = await api.silence("alertname=Down", ends=1)
    api.clock.advance(HOUR / 2)
    async with api.client.delete(f"/api/v2/silence/{gone}") as response:
        assert response.status == 200

    async def listed(query: str = "") -> list[str]:
        return [s["id"] for s in await api.get("/api/v2/silences" + query)]

    assert await listed() == [equal, regex, later, negative, gone]
    assert await listed('?filter=team="x"') == [equal, later]
    assert await listed('?filter=team=~"x"') == [regex]
    assert await listed('?filter=env!="prod"') == [negative]
    assert await listed('?filter=foo!="bar"') == []
    assert await listed("?filter=alertname=Down&filter=team=x") == [equal, later]
    assert await listed("?filter=alertname=Down&filter=team=y") == []
