"""`inferwatch notify test RECEIVER`: one made-up firing alert rendered and delivered
through every integration of a receiver, directly (not through a daemon's outbox), with
each integration's outcome on its own line."""

from __future__ import annotations

import aiohttp

from monitor.clock import SystemClock
from monitor.config import Config
from monitor.errors import ConfigError
from monitor.notify.channels.registry import build_channels
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer


async def send_test(config: Config, receiver_name: str) -> list[tuple[str, bool]]:
    try:
        receiver = config.notify.receiver_by_name(receiver_name)
    except KeyError:
        known = ", ".join(r.name for r in config.notify.receivers) or "none configured"
        raise ConfigError(f"no receiver named {receiver_name!r} (receivers: {known})") \
            from None
    clock = SystemClock()
    now = clock.time()
    alert = NotifyAlert({"alertname": "InferwatchTestNotification", "severity": "info",
                         "instance": "inferwatch"},
                        {"summary": "A test notification from inferwatch notify test",
                         "description": "If you can read this, the receiver works."},
                        now, now + 300)
    notification = Notification(receiver.name, "{}:{alertname=\"InferwatchTestNotification\"}",
                                {"alertname": "InferwatchTestNotification"}, (alert,), now)
    results: list[tuple[str, bool]] = []
    async with aiohttp.ClientSession(trust_env=True) as session:
        channels = build_channels(config.notify, session=session, clock=clock,
                                  renderer=Renderer(timezone=config.cost.timezone),
                                  external_labels=config.external_labels)
        for cid, channel in sorted(channels.items()):
            if cid.receiver != receiver.name:
                continue
            where = f"{cid.integration}[{cid.index}]"
            try:
                delivery = await channel.deliver(channel.render(notification))
            except Exception as exc:  # report, whatever went wrong, and go on
                results.append((f"{where}: FAILED ({type(exc).__name__}: {exc})", False))
                continue
            if delivery.ok:
                results.append((f"{where}: sent", True))
            else:
                kind = "retryable" if delivery.retry else "permanent"
                results.append((f"{where}: FAILED ({kind}: {delivery.reason} "
                                f"{delivery.detail})".rstrip(), False))
    if not results:
        results.append((f"receiver {receiver.name!r} has no integrations", False))
    return results
