"""A dispatcher and an outbox over a real state file, a FakeClock and scripted channels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monitor.clock import FakeClock
from monitor.config import parse_config
from monitor.metrics.store import MetricStore
from monitor.notify.channels.base import Channel, Delivery, Message, RateLimit
from monitor.notify.dispatch import Dispatcher
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.nflog import NotificationLog
from monitor.notify.outbox import ChannelId, Outbox
from monitor.notify.silences import SilenceStore
from monitor.storage import StateStore


class ScriptedChannel:
    """Records what it renders and delivers; answers from a script (default: success)."""

    def __init__(self, integration: str = "webhook", *, send_resolved: bool = True,
                 limits: tuple[RateLimit, ...] = (), rate_key: str = "k",
                 merges: bool = False) -> None:
        self.integration = integration
        self.send_resolved = send_resolved
        self._limits = limits
        self._rate_key = rate_key
        self.merges = merges
        self.rendered: list[Notification] = []
        self.delivered: list[Message] = []
        self.attempts: list[Message] = []
        self.script: list[Delivery] = []

    @property
    def rate_key(self) -> str:
        return self._rate_key

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return self._limits

    def render(self, notification: Notification) -> Message:
        self.rendered.append(notification)
        return {"status": notification.status,
                "firing": sorted(a.name + "/" + a.labels.get("i", "") for a in
                                 notification.firing),
                "resolved": sorted(a.name + "/" + a.labels.get("i", "") for a in
                                   notification.resolved),
                "parts": 1}

    async def deliver(self, message: Message) -> Delivery:
        self.attempts.append(message)
        outcome = self.script.pop(0) if self.script else Delivery.sent()
        if outcome.ok:
            self.delivered.append(message)
        return outcome

    def merge(self, messages: list[Message]) -> Message | None:
        if not self.merges:
            return None
        return {"status": "merged", "firing": [f for m in messages for f in m["firing"]],
                "resolved": [r for m in messages for r in m["resolved"]],
                "parts": sum(m["parts"] for m in messages)}


ROUTING = """
notify:
  route:
    receiver: team
    group_by: [alertname]
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 4h
  receivers:
  - name: team
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
"""


class Rig:
    def __init__(self, root: Path, config_text: str = ROUTING,
                 channels: Mapping[ChannelId, Any] | None = None,
                 clock: FakeClock | None = None) -> None:
        self.root = root
        self.clock = clock or FakeClock()
        self.metrics = MetricStore()
        self.config = parse_config(config_text).notify
        self.channel = ScriptedChannel()
        self.channel_map: dict[ChannelId, Channel] = dict(channels) if channels else {
            ChannelId("team", "webhook", 0): self.channel}
        self.open()

    def open(self) -> None:
        self.state = StateStore(self.root)
        self.silences = SilenceStore(self.state)
        self.nflog = NotificationLog(self.state)
        self.outbox = Outbox(self.state, self.clock, self.metrics, lambda: self.channel_map)
        self.dispatcher = Dispatcher(
            config=self.config, state=self.state, clock=self.clock, metrics=self.metrics,
            silences=self.silences, nflog=self.nflog, outbox=self.outbox,
            channels=lambda: self.channel_map, external_url="http://host:9464")

    def restart(self) -> None:
        self.state.close()
        self.open()

    def close(self) -> None:
        self.state.close()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.dispatcher.flush_due()

    async def deliver(self) -> None:
        await self.outbox.send_due()

    def firing(self, name: str, *, i: str = "", started: float | None = None,
               **labels: str) -> NotifyAlert:
        all_labels = {"alertname": name, **({"i": i} if i else {}), **labels}
        start = self.clock.time() if started is None else started
        return NotifyAlert(all_labels, {"summary": f"{name} {i}"}, start,
                           self.clock.time() + 7 * 86400)

    def resolved(self, alert: NotifyAlert) -> NotifyAlert:
        return NotifyAlert(alert.labels, alert.annotations, alert.starts_at, self.clock.time())

    def counter(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        family = self.metrics.family(name)
        if family is None:
            return {}
        return {key: s.value for key, s in family.series.items()}  # type: ignore[union-attr]
