"""The `alertmanager_configs` integration: alerts forwarded to real Alertmanagers, as
Prometheus's notifier sends them (POST a JSON list of alerts to `/api/v2/alerts`).

Each alert carries an `endsAt`: its resolve time once resolved, and while firing a time
`4 * max(RESEND_DELAY_S, evaluation interval)` ahead, so that an Alertmanager resolves it by
itself if we stop re-sending (Prometheus's `ValidUntil`). Both are decided at render time and
stored. When to re-send (every RESEND_DELAY_S while firing, for RESOLVED_RESEND_S after
resolving) is the dispatcher's decision; `ends_at_for` is here for it.

Outcome, as Prometheus counts it: sent if at least one Alertmanager accepted the alerts;
otherwise transient if any failure was transient (5xx, 429, timeout, connection), permanent
if every one was permanent (e.g. 400 for alerts it rejects). One `http_config.tls_config`
serves every URL; if its certificate or key will not load, nothing is sent and the failure is
permanent (reason "tls").

`external_labels` (the config's top-level key) are added to every alert that lacks them, as
Prometheus adds its global external labels to the alerts it sends.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping

import aiohttp

from monitor.clock import Clock
from monitor.config_notify import AlertmanagerForwardConfig
from monitor.notify.channels.base import Delivery, Message, RateLimit
from monitor.notify.channels.http import HttpOutcome, post_json
from monitor.notify.channels.tls import HttpClientSettings
from monitor.notify.model import Notification, NotifyAlert, rfc3339
from monitor.notify.render import Renderer

RESEND_DELAY_S = 60.0  # Prometheus's --rules.alert.resend-delay default
RESOLVED_RESEND_S = 15 * 60.0  # Prometheus keeps sending a resolved alert this long


def ends_at_for(alert: NotifyAlert, now: float, eval_interval: float = 0.0) -> float:
    """The endsAt to send for `alert` at `now`: its resolve time if resolved, else when an
    Alertmanager should give up on it if no re-send arrives."""
    if alert.ends_at is not None and alert.resolved_at(now):
        return alert.ends_at
    return valid_until(now, eval_interval)


def valid_until(now: float, eval_interval: float) -> float:
    """When a firing alert sent at `now` lapses if nothing re-sends it (Prometheus's rule)."""
    return now + 4 * max(RESEND_DELAY_S, eval_interval)


def postable_alerts(notification: Notification, eval_interval: float = 0.0,
                    external_labels: Mapping[str, str] | None = None,
                    ) -> list[dict[str, object]]:
    """The body of POST /api/v2/alerts (Alertmanager's `PostableAlerts`); an alert's own
    labels win over external ones of the same name."""
    now = notification.now
    external = dict(external_labels or {})
    return [
        {
            "labels": {**external, **alert.labels},
            "annotations": dict(alert.annotations),
            "startsAt": rfc3339(alert.starts_at),
            "endsAt": rfc3339(ends_at_for(alert, now, eval_interval)),
            "generatorURL": alert.generator_url,
        }
        for alert in notification.alerts
    ]


class AlertmanagerChannel:
    """One `alertmanager_configs` entry of one receiver: every URL gets every message.

    The message is `{"alerts": [...]}`, the list POSTed as it is.
    """

    integration = "alertmanager"

    def __init__(self, config: AlertmanagerForwardConfig, *, receiver: str, index: int,
                 session: aiohttp.ClientSession, clock: Clock, renderer: Renderer,
                 eval_interval: float = 0.0,
                 external_labels: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.external_labels = dict(external_labels or {})
        self.receiver = receiver
        self.index = index
        self.send_resolved = config.send_resolved
        self.eval_interval = eval_interval
        self._session = session
        self._clock = clock
        self._renderer = renderer
        self._http = HttpClientSettings(config.http_config)

    @property
    def rate_key(self) -> str:
        joined = "\0".join(self.config.alerts_endpoints())
        return "alertmanager:" + hashlib.sha256(joined.encode()).hexdigest()[:12]

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return ()

    def merge(self, messages: list[Message]) -> Message | None:
        return None

    def render(self, notification: Notification) -> Message:
        return {"alerts": postable_alerts(notification, self.eval_interval,
                                          self.external_labels)}

    async def deliver(self, message: Message) -> Delivery:
        http = self._http
        try:
            context = http.tls()
        except OSError as exc:  # a key or certificate that will not load
            return http.tls_failure(exc)
        headers = http.headers()
        outcomes = await asyncio.gather(*(
            post_json(self._session, url, message["alerts"], timeout=self.config.timeout,
                      headers=headers, ssl=context, server_hostname=http.server_name)
            for url in self.config.alerts_endpoints()))
        return combine(outcomes)


def combine(outcomes: list[HttpOutcome]) -> Delivery:
    """One Delivery for the answers of all Alertmanagers (in config order)."""
    failed = [(number, outcome) for number, outcome in enumerate(outcomes, 1)
              if not outcome.ok]
    detail = "; ".join(f"alertmanager {number} of {len(outcomes)}: "
                       f"{outcome.detail or outcome.reason}" for number, outcome in failed)
    if len(failed) < len(outcomes):
        return Delivery(ok=True, detail=detail)
    transient = [outcome for _, outcome in failed if outcome.transient]
    if transient:
        first = transient[0]
        return Delivery.transient(first.reason, detail, first.retry_after)
    return Delivery.permanent(failed[0][1].reason, detail)
