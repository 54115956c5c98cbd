"""The alerts of the local rule groups as the dispatcher takes them, shaped as Prometheus
sends alerts to Alertmanager: firing alerts start at `fired_at` and carry an end four resend
intervals ahead (so an alert whose rule stops being evaluated resolves by itself), resolved
ones end at `resolved_at`; pending ones are not sent."""

from __future__ import annotations

from monitor.alerting.groups import RuleGroup
from monitor.alerting.rules import AlertState
from monitor.notify.channels.alertmanager import valid_until
from monitor.notify.model import NotifyAlert


def alerts_of(group: RuleGroup, t_ms: int, generator_url: str = "") -> list[NotifyAlert]:
    now = t_ms / 1000.0
    lapses_at = valid_until(now, group.interval_ms / 1000.0)
    out: list[NotifyAlert] = []
    for rule in group.alerting_rules():
        for alert in rule.active.values():
            if alert.state is AlertState.PENDING or alert.fired_at is None:
                continue
            ends = alert.resolved_at / 1000.0 if alert.resolved_at is not None \
                else lapses_at
            out.append(NotifyAlert(dict(alert.labels), dict(alert.annotations),
                                   alert.fired_at / 1000.0, ends, generator_url))
    return out
