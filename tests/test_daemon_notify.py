"""Alert delivery inside the running daemon, in process: error lines appended to a real log
fire a rule, the dispatcher groups the alert and the outbox delivers Alertmanager's webhook
payload to a receiver on loopback; a silence posted through `/api/v2/silences` keeps a
second alert from being sent; `/api/v2/alerts` shows both. Bounded polls, no timing
assertions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.demo.workload import generate_lines
from monitor.errors import ConfigError
from monitor.notify.testsend import send_test
from monitor.sdnotify import SystemdNotifier
from monitor.silence_client import (
    SilenceClientError,
    add_silence,
    expire_silence,
    list_silences,
)

WAIT_S = 15.0

RULES = """\
groups:
- name: requests
  rules:
  - alert: ErrorBurst
    expr: sum by (source) (increase(inferwatch_requests_total{status="error"}[1m])) > 0
    labels: {severity: page}
    annotations: {summary: 'errors on {{ $labels.source }}'}
  - alert: AnyRequests
    expr: sum by (source) (inferwatch_requests_total) > 0
    labels: {severity: info}
"""


class Hook:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield receiver, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_an_error_line_pages_through_the_webhook_and_a_silence_holds_the_rest(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], hook: tuple[Hook, str]) -> None:
    receiver, url = hook
    port = free_port()
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    log = tmp_path / "logs" / "inference.log"
    log.parent.mkdir()
    log.write_bytes(b"")
    config_path = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": fast_ingest, "host": {"enabled": False}, "gpu": {"enabled": False},
        "scrape_interval": "100ms", "evaluation_interval": "100ms",
        "rule_files": [str(rules)],
        "sources": [{"name": "inference", "paths": [str(log)], "schema": "inference"}],
        "notify": {
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "0s",
                      "group_interval": "1s"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": url}]}],
        },
    })
    daemon = Daemon(load_config(config_path), config_path=config_path,
                    notifier=SystemdNotifier(environ={}))
    await daemon.start()
    base = daemon.listen_url
    try:
        async with aiohttp.ClientSession() as http:
            silence = {"matchers": [{"name": "alertname", "value": "AnyRequests",
                                     "isRegex": False, "isEqual": True}],
                       "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                       "createdBy": "test", "comment": "not interesting"}
            async with http.post(f"{base}/api/v2/silences", json=silence) as response:
                assert response.status == 200
                silence_id = (await response.json())["silenceID"]
            with log.open("ab") as f:
                f.write(b"".join(line.data for line in generate_lines(
                    50, "inference", seed=3, error_rate=0.5)))
            await until(lambda: any(p["commonLabels"].get("alertname") == "ErrorBurst"
                                    for p in receiver.received))
            (payload,) = receiver.received
            assert payload["version"] == "4" and payload["status"] == "firing"
            assert payload["receiver"] == "hook"
            assert payload["groupLabels"] == {"alertname": "ErrorBurst"}
            (alert,) = payload["alerts"]
            assert alert["labels"] == {"alertname": "ErrorBurst", "severity": "page",
                                       "source": "inference"}
            assert alert["annotations"] == {"summary": "errors on inference"}
            async with http.get(f"{base}/api/v2/alerts") as response:
                shown = {a["labels"]["alertname"]: a["status"] for a in await response.json()}
            assert shown["ErrorBurst"]["state"] == "active"
            assert shown["AnyRequests"] == {"state": "suppressed", "silencedBy": [silence_id],
                                            "inhibitedBy": []}
            async with http.delete(f"{base}/api/v2/silence/{silence_id}") as response:
                assert response.status == 200
            async with http.get(f"{base}/api/v2/silence/{silence_id}") as response:
                assert (await response.json())["status"]["state"] == "expired"
            await until(lambda: any(p["commonLabels"].get("alertname") == "AnyRequests"
                                    for p in receiver.received))
            async with http.post(f"{base}/api/v2/silences", json={"matchers": []}) as response:
                assert response.status == 400
                assert "matcher" in await response.json()
    finally:
        await daemon.stop()
    assert sum(1 for p in receiver.received
               if p["commonLabels"].get("alertname") == "ErrorBurst") == 1


async def test_the_silence_commands_work_against_the_daemon(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path]) -> None:
    port = free_port()
    config_path = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "host": {"enabled": False}, "gpu": {"enabled": False},
    })
    daemon = Daemon(load_config(config_path), config_path=config_path,
                    notifier=SystemdNotifier(environ={}))
    await daemon.start()
    url = daemon.listen_url
    try:
        silence_id = await asyncio.to_thread(
            add_silence, url, ['alertname=~"High.*"', "instance=a"], duration_s=3600,
            author="ops", comment="deploy", now=daemon.clock.time())
        (line,) = await asyncio.to_thread(list_silences, url)
        assert line.startswith(f"{silence_id}  active")
        assert 'alertname=~"High.*" instance="a"  by ops: deploy' in line
        await asyncio.to_thread(expire_silence, url, silence_id)
        assert await asyncio.to_thread(list_silences, url) == []
        assert len(await asyncio.to_thread(list_silences, url, expired=True)) == 1
        with pytest.raises(SilenceClientError, match="404"):
            await asyncio.to_thread(expire_silence, url, "no-such-id")
        with pytest.raises(SilenceClientError, match="bad matcher"):
            await asyncio.to_thread(add_silence, url, ["=oops"], duration_s=60,
                                    author="ops", comment="x", now=daemon.clock.time())
        async with aiohttp.ClientSession() as http:
            for method, path, body, status, words in [
                ("POST", "/api/v2/silences", b"{not json", 400, "invalid JSON"),
                ("POST", "/api/v2/silences", b"x" * (2 * 1024 * 1024), 400, "too large"),
                ("GET", "/api/v2/silence/unknown", None, 404, "not found"),
                ("GET", "/api/v2/alerts?active=maybe", None, 400, "true or false"),
                ("GET", "/api/v2/alerts?filter=%3Doops", None, 400, "bad filter"),
            ]:
                async with http.request(method, url + path, data=body) as response:
                    assert response.status == status, path
                    assert words in await response.json(), path
    finally:
        await daemon.stop()


async def test_notify_test_sends_through_every_integration_of_the_receiver(
        tmp_path: Path, write_config: Callable[..., Path], hook: tuple[Hook, str]) -> None:
    receiver, url = hook
    config_path = write_config(tmp_path / "inferwatch.yml", {
        "notify": {"route": {"receiver": "ops"},
                   "receivers": [{"name": "ops", "webhook_configs": [
                       {"url": url}, {"url": "http://127.0.0.1:9/unreachable"}]}]},
    })
    results = await send_test(load_config(config_path), "ops")
    assert [ok for _line, ok in results] == [True, False]
    assert results[1][0].startswith("webhook[1]: FAILED (retryable")
    (payload,) = receiver.received
    assert payload["commonLabels"]["alertname"] == "InferwatchTestNotification"
    with pytest.raises(ConfigError, match="no receiver named 'nobody'"):
        await send_test(load_config(config_path), "nobody")
