"""`/api/v1/rules` and `/api/v1/alerts`: what the API reads from rule groups, and the JSON
Prometheus 2.42 writes for them (web/api/v1/api.go `RuleGroup`, `AlertingRule`,
`RecordingRule`, `Alert`).

The API sees rules through the protocols below rather than the alerting package's classes, so
it depends on nothing but the fields it prints and is tested with plain stand-ins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from monitor.api.prom_json import (
    JSONValue,
    RawJSON,
    encode,
    epoch_ms_time,
    epoch_seconds_time,
    format_exponent,
    labels_json,
)
from monitor.promql.values import Labels

_STATE_RANK = {"inactive": 0, "pending": 1, "firing": 2}


class AlertStateView(Protocol):
    @property
    def label(self) -> str:
        """`inactive`, `pending` or `firing`."""


class AlertView(Protocol):
    @property
    def labels(self) -> Labels: ...

    @property
    def annotations(self) -> Labels: ...

    @property
    def state(self) -> AlertStateView: ...

    @property
    def active_at(self) -> int:
        """Milliseconds since the epoch."""

    @property
    def value(self) -> float: ...

    @property
    def resolved_at(self) -> int | None: ...

    @property
    def keep_firing_since(self) -> int | None: ...


class RecordingRuleView(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def expr_text(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


@runtime_checkable
class AlertingRuleView(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def expr_text(self) -> str: ...

    @property
    def for_ms(self) -> int: ...

    @property
    def keep_firing_for_ms(self) -> int: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def annotations(self) -> Mapping[str, str]: ...

    @property
    def active(self) -> Mapping[Labels, AlertView]: ...


class RuleHealthView(Protocol):
    @property
    def health(self) -> str:
        """`ok`, `err` or `unknown`."""

    @property
    def last_error(self) -> str: ...

    @property
    def last_evaluation(self) -> float:
        """Epoch seconds; 0 if never evaluated."""

    @property
    def duration_s(self) -> float: ...


class RuleGroupView(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def file(self) -> str: ...

    @property
    def interval_ms(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def rules(self) -> Sequence[AlertingRuleView | RecordingRuleView]: ...

    @property
    def health(self) -> Sequence[RuleHealthView]:
        """One entry per rule, in the same order."""

    @property
    def last_evaluation(self) -> float:
        """Epoch seconds; 0 if never evaluated."""

    @property
    def last_duration_s(self) -> float: ...


def active_alerts(rule: AlertingRuleView) -> list[AlertView]:
    """The rule's alerts that are not resolved (Prometheus's ActiveAlerts), by labels."""
    alerts = [alert for alert in rule.active.values() if alert.resolved_at is None]
    alerts.sort(key=lambda alert: alert.labels)
    return alerts


def alert_json(alert: AlertView) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {
        "labels": RawJSON(labels_json(alert.labels)),
        "annotations": RawJSON(labels_json(alert.annotations)),
        "state": alert.state.label,
        "activeAt": epoch_ms_time(alert.active_at),
    }
    if alert.keep_firing_since is not None:
        out["keepFiringSince"] = epoch_ms_time(alert.keep_firing_since)
    out["value"] = format_exponent(alert.value)
    return out


def alerts_json(groups: Iterable[RuleGroupView]) -> str:
    alerts: list[JSONValue] = [
        alert_json(alert)
        for group in groups
        for rule in group.rules if isinstance(rule, AlertingRuleView)
        for alert in active_alerts(rule)
    ]
    return encode({"alerts": alerts})


def _rule_state(rule: AlertingRuleView) -> str:
    states = [alert.state.label for alert in rule.active.values()]
    return max(states, key=lambda state: _STATE_RANK.get(state, 0), default="inactive")


def _alerting_rule(rule: AlertingRuleView, health: RuleHealthView) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {
        "state": _rule_state(rule),
        "name": rule.name,
        "query": rule.expr_text,
        "duration": rule.for_ms / 1000,
        "keepFiringFor": rule.keep_firing_for_ms / 1000,
        "labels": RawJSON(labels_json(rule.labels.items())),
        "annotations": RawJSON(labels_json(rule.annotations.items())),
        "alerts": [alert_json(alert) for alert in active_alerts(rule)],
        "health": health.health,
    }
    return _finish(out, health, "alerting")


def _recording_rule(rule: RecordingRuleView, health: RuleHealthView) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {"name": rule.name, "query": rule.expr_text}
    if rule.labels:  # `labels,omitempty` for recording rules only
        out["labels"] = RawJSON(labels_json(rule.labels.items()))
    out["health"] = health.health
    return _finish(out, health, "recording")


def _finish(out: dict[str, JSONValue], health: RuleHealthView,
            kind: str) -> dict[str, JSONValue]:
    if health.last_error:
        out["lastError"] = health.last_error
    out["evaluationTime"] = health.duration_s
    out["lastEvaluation"] = epoch_seconds_time(health.last_evaluation)
    out["type"] = kind
    return out


class _UnknownHealth:
    health = "unknown"
    last_error = ""
    last_evaluation = 0.0
    duration_s = 0.0


def rules_json(groups: Iterable[RuleGroupView], *, alerting: bool, recording: bool) -> str:
    """`{"groups": [...]}`; a group whose rules are all filtered out is still listed."""
    out: list[JSONValue] = []
    for group in groups:
        rules: list[JSONValue] = []
        healths: Sequence[RuleHealthView] = group.health
        for index, rule in enumerate(group.rules):
            health = healths[index] if index < len(healths) else _UnknownHealth()
            if isinstance(rule, AlertingRuleView):
                if alerting:
                    rules.append(_alerting_rule(rule, health))
            elif recording:
                rules.append(_recording_rule(rule, health))
        out.append({
            "name": group.name,
            "file": group.file,
            "rules": rules,
            "interval": group.interval_ms / 1000,
            "limit": group.limit,
            "evaluationTime": group.last_duration_s,
            "lastEvaluation": epoch_seconds_time(group.last_evaluation),
        })
    return encode({"groups": out})
