"""Alert delivery inside the daemon: the silences, the notification log, the outbox, the
dispatcher and the channels, started together, reconfigured together on reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp

from monitor.alerting.groups import RuleGroup
from monitor.clock import Clock
from monitor.config_notify import NotifyConfig
from monitor.metrics.store import MetricStore
from monitor.notify.channels.base import Channel
from monitor.notify.channels.registry import build_channels
from monitor.notify.dispatch import Dispatcher
from monitor.notify.nflog import NotificationLog
from monitor.notify.outbox import ChannelId, Outbox
from monitor.notify.render import Renderer
from monitor.notify.rule_alerts import alerts_of
from monitor.notify.silences import SilenceStore
from monitor.storage import StateStore

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY_S = 3600.0


class NotifyService:
    def __init__(self, config: NotifyConfig, *, timezone: str, state: StateStore,
                 clock: Clock, metrics: MetricStore,
                 external_labels: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.timezone = timezone
        self.external_labels = dict(external_labels or {})
        self.clock = clock
        self.state = state
        self.external_url = ""
        self.renderer = Renderer(timezone=timezone)
        self.session: aiohttp.ClientSession | None = None
        self.channels: dict[ChannelId, Channel] = {}
        self.silences = SilenceStore(state)
        self.nflog = NotificationLog(state)
        self.outbox = Outbox(state, clock, metrics, lambda: self.channels)
        self.dispatcher = Dispatcher(
            config=config, state=state, clock=clock, metrics=metrics, silences=self.silences,
            nflog=self.nflog, outbox=self.outbox, channels=lambda: self.channels)

    async def start(self, external_url: str) -> None:
        self.external_url = external_url
        self.session = aiohttp.ClientSession(trust_env=True)
        self.configure(self.config, self.timezone)

    def configure(self, config: NotifyConfig, timezone: str,
                  external_labels: Mapping[str, str] | None = None) -> None:
        self.config, self.timezone = config, timezone
        if external_labels is not None:
            self.external_labels = dict(external_labels)
        self.renderer = Renderer(timezone=timezone, external_url=self.external_url)
        self.dispatcher.external_url = self.external_url
        if self.session is not None:
            self.channels = build_channels(config, session=self.session, clock=self.clock,
                                           renderer=self.renderer,
                                           external_labels=self.external_labels)
        self.dispatcher.configure(config)

    def on_rule_group(self, group: RuleGroup, t_ms: int) -> None:
        """A rule group was evaluated: its alerts go to the dispatcher. A failure here is
        delivery's, not the rules': logged, never raised into the rule loop."""
        try:
            self.dispatcher.put(alerts_of(group, t_ms, self.external_url))
        except Exception:
            log.exception("cannot hand the alerts of rule group %s to the dispatcher",
                          group.name)

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.dispatcher.run(stop), name="dispatcher")
            tasks.create_task(self.outbox.run(stop), name="outbox")
            tasks.create_task(self._housekeeping(stop), name="notify-housekeeping")

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock.time()
            try:
                self.silences.collect_garbage(now)
                self.nflog.collect_garbage(now)
            except Exception:  # a full disk must not stop delivery
                log.exception("notify housekeeping failed")
            try:
                await asyncio.wait_for(stop.wait(), HOUSEKEEPING_EVERY_S)
            except TimeoutError:
                continue

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
