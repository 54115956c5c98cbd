"""The `webhook_configs` integration: Alertmanager's webhook payload, version 4, POSTed as JSON.

The payload is Alertmanager's `webhook.Message` (notify/webhook/webhook.go: the template
`Data` of template/template.go plus version, groupKey and truncatedAlerts), field for field,
so a receiver written for Alertmanager reads ours unchanged. It is built at render time and
stored; the URL, credentials and `http_config.tls_config` are read from the current config
when sending (the TLS context is built on the first send and kept for the channel's life).

Outcomes (as Alertmanager's Retrier): 2xx sent; 5xx, 408, 429, timeouts, connection and
TLS handshake errors transient; any other status permanent, and so is a `tls_config` whose
certificate or key will not load (reason "tls").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from monitor.clock import Clock
from monitor.config_notify import WebhookConfig
from monitor.notify.channels.base import Delivery, Message, RateLimit
from monitor.notify.channels.http import post_json
from monitor.notify.channels.tls import HttpClientSettings
from monitor.notify.model import Notification, rfc3339
from monitor.notify.render import Renderer

WEBHOOK_VERSION = "4"
_REGEXP_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def go_quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta, which Alertmanager applies to the receiver name in `Data`."""
    return _REGEXP_SPECIAL.sub(r"\\\1", text)


def webhook_payload(notification: Notification, *, max_alerts: int,
                    external_url: str) -> dict[str, Any]:
    """Alertmanager's webhook v4 message for `notification`, at most `max_alerts` alerts
    (0: all) with the rest counted in truncatedAlerts. Keys in Go's encoding order."""
    n = notification.limited(max_alerts)

    def kv(pairs: Mapping[str, str]) -> dict[str, str]:
        return dict(sorted(pairs.items()))  # Go writes map keys sorted

    return {
        "receiver": go_quote_meta(n.receiver),
        "status": n.status,
        "alerts": [
            {
                "status": alert.status_at(n.now),
                "labels": kv(alert.labels),
                "annotations": kv(alert.annotations),
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": rfc3339(alert.ends_at),
                "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
            }
            for alert in n.alerts
        ],
        "groupLabels": kv(n.group_labels),
        "commonLabels": kv(n.common_labels),
        "commonAnnotations": kv(n.common_annotations),
        "externalURL": n.external_url or external_url,
        "version": WEBHOOK_VERSION,
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated,
    }


class WebhookChannel:
    """One `webhook_configs` entry of one receiver. The message is the payload itself."""

    integration = "webhook"

    def __init__(self, config: WebhookConfig, *, receiver: str, index: int,
                 session: aiohttp.ClientSession, clock: Clock, renderer: Renderer) -> None:
        self.config = config
        self.receiver = receiver
        self.index = index
        self.send_resolved = config.send_resolved
        self._session = session
        self._clock = clock
        self._renderer = renderer
        self._http = HttpClientSettings(config.http_config)

    def _url(self) -> str:
        assert self.config.url is not None  # required by WebhookConfig
        return self.config.url.get_secret_value()

    @property
    def rate_key(self) -> str:
        return "webhook:" + hashlib.sha256(self._url().encode()).hexdigest()[:12]

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return ()

    def merge(self, messages: list[Message]) -> Message | None:
        return None

    def render(self, notification: Notification) -> Message:
        return webhook_payload(notification, max_alerts=self.config.max_alerts,
                               external_url=self._renderer.external_url)

    async def deliver(self, message: Message) -> Delivery:
        http = self._http
        try:
            context = http.tls()
        except OSError as exc:  # a key or certificate that will not load
            return http.tls_failure(exc)
        outcome = await post_json(self._session, self._url(), message,
                                  timeout=self.config.timeout, headers=http.headers(),
                                  ssl=context, server_hostname=http.server_name)
        return Delivery.sent() if outcome.ok else outcome.failure()
