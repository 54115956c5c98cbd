"""Channels built from the `notify` config: one per integration entry of each receiver."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import aiohttp

from monitor.clock import Clock
from monitor.config_notify import NotifyConfig
from monitor.notify.channels.base import Channel
from monitor.notify.outbox import ChannelId
from monitor.notify.render import Renderer

# integration name -> (module, class); each class takes (config, *, receiver, index, session,
# clock, renderer), and the Alertmanager one the external labels too.
CHANNEL_CLASSES = {
    "dingtalk": ("monitor.notify.channels.dingtalk", "DingtalkChannel"),
    "wecom": ("monitor.notify.channels.wecom", "WecomChannel"),
    "feishu": ("monitor.notify.channels.feishu", "FeishuChannel"),
    "email": ("monitor.notify.channels.email", "EmailChannel"),
    "webhook": ("monitor.notify.channels.webhook", "WebhookChannel"),
    "alertmanager": ("monitor.notify.channels.alertmanager", "AlertmanagerChannel"),
}


def channel_class(integration: str) -> Any:
    module, name = CHANNEL_CLASSES[integration]
    return getattr(importlib.import_module(module), name)


def build_channels(config: NotifyConfig, *, session: aiohttp.ClientSession, clock: Clock,
                   renderer: Renderer, external_labels: Mapping[str, str] | None = None,
                   ) -> dict[ChannelId, Channel]:
    channels: dict[ChannelId, Channel] = {}
    for receiver in config.receivers:
        for index, (integration, entry) in enumerate(receiver.integrations()):
            extra = ({"external_labels": dict(external_labels or {})}
                     if integration == "alertmanager" else {})
            channels[ChannelId(receiver.name, integration, index)] = channel_class(integration)(
                entry, receiver=receiver.name, index=index, session=session, clock=clock,
                renderer=renderer, **extra)
    return channels
