"""The durable outbox under SIGKILL: queued notifications are delivered after a restart, once.

a. The receiver is down (503): error lines for five models fire one alert per model, each
   its own group (group_by [alertname, model]), so five notifications wait in the outbox of
   the real `inferwatch run` and the head one has failed at least once. The daemon is
   SIGKILLed, the receiver comes back (200), the daemon restarts on the same state directory:
   every queued notification arrives exactly once, in the order it was queued, and nothing
   more arrives within several group_intervals (repeat_interval is 1 h) — neither a second
   "firing" nor a "resolved" one: the restored alerts stay firing across the restart.
b. The receiver is up: one notification is delivered, and the daemon is SIGKILLed only once
   the outbox row is gone from the state file, i.e. after the acknowledgement was committed.
   After a restart the alert is firing again, yet nothing is sent a second time (the
   notification log and the deleted row both survived). A kill between the receiver's 200 and
   that commit would make a second delivery legitimate (at-least-once); this test
   deliberately waits for the commit, so it checks that a committed acknowledgement holds.

The webhook receiver is an aiohttp server on loopback, in its own thread and event loop so the
test's blocking polls never stall its answers. Bounded: every wait is a poll with a deadline;
the daemons are SIGKILLed in the `spawn_daemon` teardown and the receiver stopped in its own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from monitor.storage import STATE_FILE_NAME

pytestmark = pytest.mark.integration

POLL_S = 0.02
WAIT_S = 20.0
GROUP_INTERVAL_S = 1.0
# Longer than a group_interval (a flush after the restart would have re-sent by then) and
# than the first retry backoff (about 1 s), far shorter than the 1 h repeat_interval.
QUIET_S = 3.0 * GROUP_INTERVAL_S
MODELS = ("model-a", "model-b", "model-c", "model-d", "model-e")
RECEIVER, INTEGRATION = "hook", "webhook"

RULES = """\
groups:
- name: errors
  rules:
  - alert: ModelErrors
    expr: sum by (model) (inferwatch_requests_total{status="error"}) > 0
    labels: {severity: page}
    annotations: {summary: 'errors on {{ $labels.model }}'}
"""


@dataclass(frozen=True)
class Post:
    order: int
    answered: int
    payload: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.payload["groupLabels"].get("model", ""))


class WebhookReceiver:
    """A loopback webhook endpoint that answers `status` and records every POST in order."""

    def __init__(self) -> None:
        self.status = 503
        self.url = ""
        self._posts: list[Post] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook",
                                        daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        with self._lock:
            status = self.status
            self._posts.append(Post(len(self._posts), status, payload))
        return web.Response(status=status, text="ok" if status == 200 else "down")

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return port

    def start(self) -> WebhookReceiver:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def posts(self) -> list[Post]:
        with self._lock:
            return list(self._posts)

    def delivered(self) -> list[Post]:
        """The POSTs that were acknowledged (answered 200), in arrival order."""
        return [p for p in self.posts() if p.answered == 200]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


def state_rows(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """A query on the daemon's state file, through a read-only connection."""
    conn = sqlite3.connect(f"file:{state_dir / STATE_FILE_NAME}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def queued_models(state_dir: Path) -> list[str]:
    """The `model` group label of each outbox row, in queue order."""
    return [json.loads(message)["groupLabels"]["model"]
            for (message,) in state_rows(state_dir, "SELECT message FROM outbox ORDER BY id")]


def wait_for(what: str, predicate: Callable[[], bool], daemon: Any,
             timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if not daemon.alive():
            pytest.fail(f"daemon exited while waiting for {what}:\n{daemon.log_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s:\n{daemon.log_text()}")
        time.sleep(POLL_S)


def sample(daemon: Any, name: str, **labels: str) -> float:
    value: float = daemon.samples().get((f"inferwatch_{name}", frozenset(labels.items())), 0.0)
    return value


def failed_attempts(daemon: Any) -> float:
    return float(sum(value for (name, labels), value in daemon.samples().items()
                     if name == "inferwatch_notifications_failed_total"
                     and ("receiver", RECEIVER) in labels))


def firing_models(daemon: Any) -> set[str]:
    """The models whose ModelErrors alert the daemon's dispatcher holds as active."""
    response = daemon.get("/api/v2/alerts")
    assert response.status == 200, response.body
    return {a["labels"]["model"] for a in json.loads(response.body)
            if a["labels"].get("alertname") == "ModelErrors" and a["status"]["state"] == "active"}


def error_lines(models: tuple[str, ...], per_model: int = 3) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return b"".join(
        json.dumps({"timestamp": stamp, "level": "ERROR", "service": model,
                    "request_id": f"{model}-{i}", "duration_ms": 12.5, "input_tokens": 10,
                    "output_tokens": 0, "status": 500,
                    "error": "Internal server error"}).encode() + b"\n"
        for model in models for i in range(per_model))


@pytest.fixture
def daemon_config(tmp_path: Path, free_port: Callable[[], int],
                  write_config: Callable[..., Path], fast_ingest: dict[str, str],
                  webhook: WebhookReceiver) -> tuple[Path, int, Path, Path]:
    """(config path, port, log file, state directory) of a daemon paging `webhook`."""
    port = free_port()
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    log = tmp_path / "logs" / "inference.log"
    log.parent.mkdir()
    log.write_bytes(b"")
    state_dir = tmp_path / "state"
    config = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(state_dir)},
        "ingest": fast_ingest, "host": {"enabled": False}, "gpu": {"enabled": False},
        # Rules run more often than the internal scrape, so the first evaluation after a
        # restart always comes before the first scheduled scrape: the restored alerts must
        # not resolve on a series store that is still empty (a "resolved" page and a second
        # "firing" one). New lines are seen at once anyway (prompt evaluation).
        "scrape_interval": "500ms", "evaluation_interval": "200ms",
        "rule_files": [str(rules)],
        "sources": [{"name": "inference", "paths": [str(log)], "schema": "inference"}],
        "notify": {
            "route": {"receiver": RECEIVER, "group_by": ["alertname", "model"],
                      "group_wait": "0s", "group_interval": f"{GROUP_INTERVAL_S:g}s",
                      "repeat_interval": "1h"},
            "receivers": [{"name": RECEIVER, "webhook_configs": [
                {"url": webhook.url, "max_alerts": 0, "send_resolved": True}]}],
        },
    })
    return config, port, log, state_dir


def assert_quiet(webhook: WebhookReceiver, daemon: Any, posts: int) -> None:
    """No POST beyond the first `posts` for QUIET_S (the daemon staying alive)."""
    deadline = time.monotonic() + QUIET_S
    while time.monotonic() < deadline:
        extra = webhook.posts()[posts:]
        assert not extra, f"sent again: {[(p.model, p.payload['status']) for p in extra]}"
        assert daemon.alive(), daemon.log_text()
        time.sleep(POLL_S)


def test_notifications_queued_while_the_receiver_is_down_survive_a_sigkill_once(
        daemon_config: tuple[Path, int, Path, Path], webhook: WebhookReceiver,
        spawn_daemon: Callable[..., Any]) -> None:
    config, port, log, state_dir = daemon_config
    webhook.status = 503
    first = spawn_daemon(config, port, log_name="first.log")
    first.wait_ready()
    with log.open("ab") as f:
        f.write(error_lines(MODELS))
    wait_for("five queued notifications and a failed attempt",
             lambda: len(queued_models(state_dir)) == len(MODELS)
             and sample(first, "notification_queue_length") == len(MODELS)
             and failed_attempts(first) >= 1, first)
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    queued = queued_models(state_dir)
    assert sorted(queued) == sorted(MODELS)
    refused = webhook.posts()
    assert refused and all(p.answered == 503 for p in refused)
    assert {p.model for p in refused} <= set(MODELS)

    webhook.status = 200
    second = spawn_daemon(config, port, log_name="second.log")
    second.wait_ready()
    wait_for("every queued notification delivered",
             lambda: len(webhook.delivered()) >= len(MODELS) and not queued_models(state_dir),
             second)
    wait_for("the alerts firing again after the restart",
             lambda: firing_models(second) == set(MODELS), second)
    assert_quiet(webhook, second, len(webhook.posts()))

    delivered = webhook.delivered()
    assert Counter(p.model for p in delivered) == Counter(MODELS), \
        [(p.model, p.payload["status"]) for p in delivered]
    assert [p.model for p in delivered] == queued  # one queue per channel, in order
    assert len({p.payload["groupKey"] for p in delivered}) == len(MODELS)
    for post in delivered:
        assert post.payload["status"] == "firing"
        assert post.payload["groupLabels"] == {"alertname": "ModelErrors", "model": post.model}
        (alert,) = post.payload["alerts"]
        assert alert["labels"] == {"alertname": "ModelErrors", "model": post.model,
                                   "severity": "page"}
    assert sample(second, "notifications_total",
                  receiver=RECEIVER, integration=INTEGRATION) == len(MODELS)
    assert sample(second, "notification_queue_length") == 0
    assert "Traceback" not in first.log_text() + second.log_text()


def test_a_committed_acknowledgement_survives_a_sigkill(
        daemon_config: tuple[Path, int, Path, Path], webhook: WebhookReceiver,
        spawn_daemon: Callable[..., Any]) -> None:
    config, port, log, state_dir = daemon_config
    webhook.status = 200
    first = spawn_daemon(config, port, log_name="first.log")
    first.wait_ready()
    with log.open("ab") as f:
        f.write(error_lines(MODELS[:1]))
    wait_for("the notification delivered", lambda: len(webhook.posts()) >= 1, first)
    # Kill only once the acknowledgement is committed: the row is gone from the state file
    # (before that, a second delivery after the restart would be legitimate).
    wait_for("the acknowledgement committed",
             lambda: not state_rows(state_dir, "SELECT id FROM outbox"), first)
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    assert [p.model for p in webhook.posts()] == [MODELS[0]]
    (logged,) = state_rows(state_dir, "SELECT group_key, receiver, integration "
                                      "FROM notification_log")
    assert logged[1:] == (RECEIVER, INTEGRATION)
    # notifications_total is written by whichever ingest checkpoint follows the delivery, so
    # the killed daemon may or may not have persisted its 1: the restart restores that value.
    persisted = state_rows(state_dir, "SELECT value FROM counters "
                                      "WHERE family = 'inferwatch_notifications'")
    restored = persisted[0][0] if persisted else 0

    second = spawn_daemon(config, port, log_name="second.log")
    second.wait_ready()
    # The dispatcher holds the alert again, so its group is flushed; only the log holds it.
    wait_for("the alert firing again after the restart",
             lambda: firing_models(second) == {MODELS[0]}, second)
    assert_quiet(webhook, second, 1)
    assert sample(second, "notifications_total",
                  receiver=RECEIVER, integration=INTEGRATION) == restored  # nothing new
    assert sample(second, "notification_queue_length") == 0
    (post,) = webhook.posts()
    assert post.answered == 200 and post.payload["status"] == "firing"
    assert post.payload["groupKey"] == logged[0]
    assert "Traceback" not in first.log_text() + second.log_text()
