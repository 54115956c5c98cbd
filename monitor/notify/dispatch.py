"""The dispatcher: alerts in, notifications into the outbox (Alertmanager's dispatch/ and the
notify pipeline, on one host).

Each alert follows the routes it matches into one aggregation group per route (named by the
route and the alert's `group_by` values). A new group flushes after `group_wait` (at once if
its first alert is already older than that), then every `group_interval`. A flush drops
silenced and inhibited alerts, then, for each integration of the route's receiver, asks the
notification log whether this is news (new firing alerts, all resolved, newly resolved with
`send_resolved`, or `repeat_interval` passed); if so the channel renders the message and the
message and the log entry are written in one transaction. Resolved alerts leave a group once
a flush has handled them; an empty group goes.

Receivers' `alertmanager_configs` are not grouped: alerts routed to them are forwarded as
Prometheus forwards to Alertmanager — when they start firing or resolve, and again every
minute while firing and for 15 minutes after resolving — and the Alertmanager groups them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from monitor.clock import Clock
from monitor.config_notify import NotifyConfig
from monitor.config_routing import ResolvedRoute
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.notify.channels.alertmanager import RESEND_DELAY_S, RESOLVED_RESEND_S
from monitor.notify.channels.base import Channel
from monitor.notify.inhibit import Inhibitor
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.nflog import LogEntry, LogKey, NotificationLog, needs_update
from monitor.notify.outbox import ChannelId, Outbox
from monitor.notify.routing import (
    format_labels,
    group_labels,
    matching_routes,
    parents_of,
    route_key,
)
from monitor.notify.silences import SilenceStore
from monitor.notify.wakeup import wait_for_news
from monitor.storage import StateStore

log = logging.getLogger(__name__)

IDLE_WAKE_S = 30.0


@dataclass
class AggregationGroup:
    key: str
    route: ResolvedRoute
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, NotifyAlert] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    flushed: bool = False


@dataclass
class _Forwarded:
    sent_at: float
    resolved: bool


class Dispatcher:
    def __init__(self, *, config: NotifyConfig, state: StateStore, clock: Clock,
                 metrics: MetricStore, silences: SilenceStore, nflog: NotificationLog,
                 outbox: Outbox, channels: Callable[[], Mapping[ChannelId, Channel]],
                 external_url: str = "") -> None:
        self.state = state
        self.clock = clock
        self.silences = silences
        self.nflog = nflog
        self.outbox = outbox
        self.channels = channels
        self.external_url = external_url
        self.alerts: dict[str, NotifyAlert] = {}
        # By (route path, group key): sibling routes with the same matchers share Alertmanager's
        # group key string but are separate groups there (one per route), each notifying its own
        # receiver.
        self.groups: dict[tuple[str, str], AggregationGroup] = {}
        self._versions: dict[str, int] = {}
        self._forwarded: dict[tuple[ChannelId, str], _Forwarded] = {}
        self._failed = metrics.register(fam.NOTIFICATIONS_FAILED)
        self._wake = asyncio.Event()
        self.configure(config)

    def configure(self, config: NotifyConfig) -> None:
        """Use a new routing tree, receivers and inhibit rules (start-up and reload); every
        known alert is routed again, keeping the notification log."""
        self.config = config
        self.tree = config.route_tree
        self._parents = parents_of(self.tree) if self.tree else {}
        self.inhibitor = Inhibitor(config.inhibit_rules)
        old = self.groups
        self.groups = {}
        now = self.clock.time()
        for alert in self.alerts.values():
            self._route(alert, now)
        for key, group in self.groups.items():
            before = old.get(key)
            if before is not None:  # same group as before: keep its schedule
                group.next_flush, group.flushed = before.next_flush, before.flushed
        self._wake.set()

    # -- alerts in -----------------------------------------------------------------------------

    def put(self, alerts: Iterable[NotifyAlert]) -> None:
        now = self.clock.time()
        forwarded: list[NotifyAlert] = []
        for incoming in alerts:
            old = self.alerts.get(incoming.fingerprint)
            if old is not None and old.resolved_at(now) and incoming.resolved_at(now):
                forwarded.append(incoming)  # resolved before: nothing new for the groups
                continue
            alert = incoming
            if old is not None and not old.resolved_at(now) and not alert.resolved_at(now):
                # Still firing: keep when it started, as Alertmanager merges updates.
                alert = NotifyAlert(alert.labels, alert.annotations,
                                    min(old.starts_at, alert.starts_at), alert.ends_at,
                                    alert.generator_url, alert.fingerprint)
            if old is None or old.resolved_at(now) != alert.resolved_at(now) \
                    or old.annotations != alert.annotations:
                self._versions[alert.fingerprint] = self._versions.get(alert.fingerprint, 0) + 1
            self.alerts[alert.fingerprint] = alert
            self._route(alert, now)
            forwarded.append(alert)
        self._forward(forwarded, now)
        self._wake.set()

    def _route(self, alert: NotifyAlert, now: float) -> None:
        if self.tree is None:
            return
        for route in matching_routes(self.tree, alert.labels):
            labels = group_labels(route, alert.labels)
            key = f"{route_key(route, self._parents)}:{format_labels(labels)}"
            group = self.groups.get((route.path, key))
            if group is None:
                group = self.groups[route.path, key] = AggregationGroup(
                    key, route, labels, next_flush=now + route.group_wait)
            if not group.flushed and alert.starts_at + route.group_wait < now:
                group.next_flush = min(group.next_flush, now)
            group.alerts[alert.fingerprint] = alert
            group.versions[alert.fingerprint] = self._versions.get(alert.fingerprint, 0)

    # -- flushing ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.flush_due()
            except Exception:  # a defect must cost one pass, never the dispatcher
                log.exception("dispatcher: unexpected error")
                wait = IDLE_WAKE_S
            await wait_for_news(self._wake, stop, max(0.005, wait))

    def flush_due(self) -> float:
        """Flush every group that is due; the seconds until the next one is."""
        now = self.clock.time()
        for group in list(self.groups.values()):
            if group.next_flush <= now:
                self.flush(group, now)
        self._collect_garbage(now)
        upcoming = [g.next_flush for g in self.groups.values()]
        return max(0.0, min(upcoming) - now) if upcoming else IDLE_WAKE_S

    def muted(self, alert: NotifyAlert, now: float) -> bool:
        return bool(self.silences.mutes(alert.labels, now)) or self.inhibitor.mutes(
            alert.labels, self.alerts.values(), now)

    def flush(self, group: AggregationGroup, now: float) -> None:
        group.next_flush = now + group.route.group_interval
        group.flushed = True
        seen = dict(group.versions)
        alerts = sorted(group.alerts.values(), key=lambda a: (a.starts_at, a.fingerprint))
        shown = [a for a in alerts if not self.muted(a, now)]
        firing = frozenset(a.fingerprint for a in shown if not a.resolved_at(now))
        resolved = frozenset(a.fingerprint for a in shown if a.resolved_at(now))
        delivered = self._notify(group, shown, firing, resolved, now)
        if delivered:
            for alert in alerts:
                if alert.resolved_at(now) and group.versions.get(alert.fingerprint) == \
                        seen.get(alert.fingerprint):
                    del group.alerts[alert.fingerprint]
                    del group.versions[alert.fingerprint]
        if not group.alerts:
            del self.groups[group.route.path, group.key]

    def _notify(self, group: AggregationGroup, shown: list[NotifyAlert],
                firing: frozenset[str], resolved: frozenset[str], now: float) -> bool:
        """Queue what each integration of the group's receiver needs; False if a message
        could not be rendered (the group keeps its resolved alerts and tries again)."""
        try:
            receiver = self.config.receiver_by_name(group.route.receiver)
        except KeyError:
            return True
        channels = self.channels()
        ok = True
        queued = False
        for index, (integration, _config) in enumerate(receiver.integrations()):
            if integration == "alertmanager":
                continue
            cid = ChannelId(receiver.name, integration, index)
            channel = channels.get(cid)
            if channel is None:
                continue
            key = LogKey(group.key, receiver.name, integration, index)
            if not needs_update(self.nflog.get(key), firing, resolved,
                                send_resolved=channel.send_resolved,
                                repeat_interval=group.route.repeat_interval, now=now):
                continue
            entry = LogEntry(firing, resolved, now)
            alerts = tuple(a for a in shown if channel.send_resolved or not a.resolved_at(now))
            try:
                message = channel.render(Notification(
                    receiver.name, group.key, group.labels, alerts, now, self.external_url)) \
                    if alerts else None
            except Exception as exc:
                log.error("cannot render the %s notification for %s (group %s): %s",
                          integration, receiver.name, group.key, exc)
                self._failed.inc(self._failed.key((receiver.name, integration, "template")))
                ok = False
                continue
            with self.state.transaction() as cursor:
                if message is not None:
                    Outbox.add(cursor, cid, message, now)
                    queued = True
                self.nflog.record(cursor, key, entry)
            self.nflog.remember(key, entry)
        if queued:
            self.outbox.wake()
        return ok

    # -- forwarding to Alertmanager -------------------------------------------------------------

    def _forward(self, alerts: list[NotifyAlert], now: float) -> None:
        if self.tree is None:
            return
        channels = self.channels()
        batches: dict[ChannelId, list[NotifyAlert]] = {}
        for alert in alerts:
            for route in matching_routes(self.tree, alert.labels):
                try:
                    receiver = self.config.receiver_by_name(route.receiver)
                except KeyError:
                    continue
                for index, (integration, _config) in enumerate(receiver.integrations()):
                    if integration != "alertmanager":
                        continue
                    cid = ChannelId(receiver.name, integration, index)
                    if self._forward_due(cid, alert, now):
                        batches.setdefault(cid, []).append(alert)
        for cid, batch in batches.items():
            channel = channels.get(cid)
            if channel is None:
                continue
            try:
                message = channel.render(Notification(cid.receiver, "", {}, tuple(batch), now,
                                                      self.external_url))
            except Exception as exc:
                log.error("cannot render alerts forwarded to %s: %s", cid.receiver, exc)
                self._failed.inc(self._failed.key((cid.receiver, cid.integration, "template")))
                continue
            with self.state.transaction() as cursor:
                Outbox.add(cursor, cid, message, now)
            for alert in batch:
                self._forwarded[(cid, alert.fingerprint)] = _Forwarded(
                    now, alert.resolved_at(now))
        if batches:
            self.outbox.wake()

    def _forward_due(self, cid: ChannelId, alert: NotifyAlert, now: float) -> bool:
        last = self._forwarded.get((cid, alert.fingerprint))
        resolved = alert.resolved_at(now)
        if resolved and alert.ends_at is not None and \
                alert.ends_at + RESOLVED_RESEND_S < now:
            return False
        if last is None:
            return True
        if resolved != last.resolved:
            return True
        return last.sent_at + RESEND_DELAY_S <= now

    # -- housekeeping --------------------------------------------------------------------------

    def _collect_garbage(self, now: float) -> None:
        grouped = {fp for g in self.groups.values() for fp in g.alerts}
        for fp, alert in list(self.alerts.items()):
            if fp in grouped or not alert.resolved_at(now):
                continue
            if alert.ends_at is not None and alert.ends_at + RESOLVED_RESEND_S > now:
                continue  # still forwarded, and shown as resolved in /api/v2/alerts
            del self.alerts[fp]
            self._versions.pop(fp, None)
        for key, sent in list(self._forwarded.items()):
            if sent.sent_at + RESOLVED_RESEND_S + RESEND_DELAY_S < now:
                del self._forwarded[key]
