"""Alerts forwarded by the alertmanager channel into a real Alertmanager, read back through its
own API (GET /api/v2/alerts).

Checks what Alertmanager itself makes of our POST: the labels and annotations as sent, the
fingerprint it computes equal to `monitor.notify.model.fingerprint` (so ids agree between
the two), startsAt/endsAt as rendered, and that the resolved form of the same alert
resolves it there. A second, unreachable Alertmanager in the same config does not stop it.

Alertmanager runs on loopback with clustering off and a temporary storage directory; every
wait is a poll with a deadline, and the process is killed in teardown. Skips without
/usr/bin/prometheus-alertmanager unless INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import require_program

from monitor.clock import SystemClock
from monitor.config_notify import AlertmanagerForwardConfig
from monitor.notify.channels.alertmanager import AlertmanagerChannel
from monitor.notify.model import Notification, NotifyAlert, fingerprint
from monitor.notify.render import Renderer

pytestmark = pytest.mark.integration

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
READY_TIMEOUT_S = 20.0
POLL_S = 0.05
AM_CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""


@pytest.fixture
def alertmanager_binary() -> Path:
    return require_program(ALERTMANAGER, "prometheus-alertmanager")


@pytest.fixture
def alertmanager(alertmanager_binary: Path, tmp_path: Path,
                 free_port: Callable[[], int]) -> Iterator[str]:
    """A running Alertmanager's base URL; killed in teardown whatever the test did."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(AM_CONFIG, encoding="utf-8")
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [str(alertmanager_binary), f"--config.file={config}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


async def wait_ready(session: aiohttp.ClientSession, base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/-/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(POLL_S)
    pytest.fail(f"Alertmanager not ready in {READY_TIMEOUT_S:g}s; its log:\n"
                f"{log.read_text(errors='replace')}")


async def alerts_in(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v2/alerts") as response:
        assert response.status == 200
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


async def poll_alerts(session: aiohttp.ClientSession, base: str,
                      done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10.0
    alerts = await alerts_in(session, base)
    while not done(alerts):
        if time.monotonic() > deadline:
            pytest.fail(f"Alertmanager never reached the expected state; it has {alerts}")
        await asyncio.sleep(POLL_S)
        alerts = await alerts_in(session, base)
    return alerts


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_alertmanager_receives_and_resolves_forwarded_alerts(
        alertmanager: str, session: aiohttp.ClientSession, tmp_path: Path,
        free_port: Callable[[], int]) -> None:
    await wait_ready(session, alertmanager, tmp_path / "alertmanager.log")
    config = AlertmanagerForwardConfig.model_validate(
        {"urls": [f"http://127.0.0.1:{free_port()}", alertmanager], "timeout": "5s"})
    clock = SystemClock()
    channel = AlertmanagerChannel(config, receiver="central", index=0, session=session,
                                  clock=clock, renderer=Renderer())
    now = round(clock.time(), 3)
    labels = {"alertname": "GPU显存不足", "instance": "gpu-1:9464", "severity": "page",
              "model": 'weird "quoted" \\ value'}
    firing = NotifyAlert(labels, {"summary": "显存 97%"}, starts_at=now - 120,
                         generator_url="http://mon:9464/#alert-GPU")

    delivery = await channel.deliver(channel.render(
        Notification("central", "{}:{}", {}, (firing,), now)))
    assert delivery.ok, delivery

    [got] = await poll_alerts(session, alertmanager, lambda alerts: len(alerts) == 1)
    assert got["labels"] == labels
    assert got["annotations"] == {"summary": "显存 97%"}
    assert got["fingerprint"] == fingerprint(labels) == firing.fingerprint
    assert got["generatorURL"] == "http://mon:9464/#alert-GPU"
    assert parse_time(got["startsAt"]) == pytest.approx(now - 120, abs=0.001)
    assert parse_time(got["endsAt"]) == pytest.approx(now + 240, abs=0.001)
    assert got["status"]["state"] in {"active", "unprocessed"}

    resolved_at = clock.time()
    resolved = NotifyAlert(labels, firing.annotations, starts_at=firing.starts_at,
                           ends_at=resolved_at, generator_url=firing.generator_url)
    delivery = await channel.deliver(channel.render(
        Notification("central", "{}:{}", {}, (resolved,), resolved_at)))
    assert delivery.ok, delivery
    # Alertmanager lists only alerts that have not ended.
    await poll_alerts(session, alertmanager, lambda alerts: alerts == [])
