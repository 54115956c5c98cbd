"""Recording and alerting rules: one evaluation of a rule, as Prometheus 2.42 does it.

An alerting rule keeps its active alerts by label set. Each evaluation: every result sample
becomes an alert (labels: the sample's without `__name__`, plus the rule's labels expanded as
templates, plus `alertname`); new ones start pending; a pending alert fires once it has been
active for `for`; an alert no longer in the result resolves, unless it was firing and
`keep_firing_for` has not run out; a resolved alert is kept for 15 minutes so its resolution
can be notified. The evaluation's output is the `ALERTS` and `ALERTS_FOR_STATE` samples.

Times are milliseconds since the epoch, as in the series store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from monitor.alerting.templates import expand_alert_template
from monitor.promql import ast
from monitor.promql.values import (
    METRIC_NAME,
    Labels,
    Sample,
    Scalar,
    Value,
    Vector,
    labels_from,
    without_name,
)

RESOLVED_RETENTION_MS = 15 * 60 * 1000
ALERT_NAME = "alertname"
ALERT_STATE = "alertstate"

QueryFunc = Callable[[ast.Expr, int], Value]


class RuleError(Exception):
    """A rule evaluation that failed; the message is what Prometheus would report."""


class AlertState(IntEnum):
    INACTIVE = 0
    PENDING = 1
    FIRING = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class Alert:
    labels: Labels
    annotations: Labels
    state: AlertState
    active_at: int
    value: float
    fired_at: int | None = None
    resolved_at: int | None = None
    keep_firing_since: int | None = None


def template_query(engine_instant: Callable[[str, int], Value]) -> TemplateQuery:
    """A template `query` function over an engine: a scalar becomes one unlabelled sample."""
    def query(expr: str, at_s: float) -> Vector:
        return result_vector(engine_instant(expr, round(at_s * 1000)))
    return query


def result_vector(value: Value) -> Vector:
    """A rule's query result as a vector (a scalar becomes one sample without labels)."""
    if isinstance(value, Scalar):
        return [Sample((), value.t, value.v)]
    if isinstance(value, list) and all(isinstance(s, Sample) for s in value):
        return value  # type: ignore[return-value]
    raise RuleError("rule result is not a vector or scalar")


TemplateQuery = Callable[[str, float], Iterable[Sample]]


@dataclass
class TemplateContext:
    """What alert templates see beyond the alert: external labels and URL, and the engine for
    `{{ query "..." }}` (expression, evaluation time in seconds)."""

    external_labels: Mapping[str, str]
    external_url: str
    query: TemplateQuery | None = None


class RecordingRule:
    def __init__(self, name: str, expr: ast.Expr, expr_text: str,
                 labels: Mapping[str, str]) -> None:
        self.name = name
        self.expr = expr
        self.expr_text = expr_text
        self.labels = dict(labels)

    def eval(self, t: int, query: QueryFunc, limit: int) -> Vector:
        out: Vector = []
        seen: set[Labels] = set()
        for sample in result_vector(query(self.expr, t)):
            pairs = dict(sample.labels)
            pairs[METRIC_NAME] = self.name
            pairs.update(self.labels)
            labels = labels_from(pairs)
            if labels in seen:
                raise RuleError("vector contains metrics with the same labelset after "
                                "applying rule labels")
            seen.add(labels)
            out.append(Sample(labels, t, sample.v))
        if 0 < limit < len(out):
            raise RuleError(f"exceeded limit of {limit} with {len(out)} series")
        return out


class AlertingRule:
    def __init__(self, name: str, expr: ast.Expr, expr_text: str, *, for_ms: int,
                 keep_firing_for_ms: int, labels: Mapping[str, str],
                 annotations: Mapping[str, str], templates: TemplateContext) -> None:
        self.name = name
        self.expr = expr
        self.expr_text = expr_text
        self.for_ms = for_ms
        self.keep_firing_for_ms = keep_firing_for_ms
        self.labels = dict(sorted(labels.items()))
        self.annotations = dict(sorted(annotations.items()))
        self.templates = templates
        self.active: dict[Labels, Alert] = {}

    def state(self) -> AlertState:
        return max((a.state for a in self.active.values()), default=AlertState.INACTIVE)

    def _expand(self, text: str, labels: Mapping[str, str], value: float, t: int) -> str:
        return expand_alert_template(
            text, name=self.name, labels=labels, value=value,
            external_labels=self.templates.external_labels,
            external_url=self.templates.external_url, timestamp=t / 1000.0,
            query_func=self.templates.query)

    def _alerts_of(self, result: Vector, t: int) -> dict[Labels, Alert]:
        alerts: dict[Labels, Alert] = {}
        for sample in result:
            template_labels = dict(sample.labels)
            pairs = dict(without_name(sample.labels))
            for name, text in self.labels.items():
                pairs[name] = self._expand(text, template_labels, sample.v, t)
            pairs[ALERT_NAME] = self.name
            # Annotations keep empty values (only labels treat empty as absent).
            annotations = tuple(
                (name, self._expand(text, template_labels, sample.v, t))
                for name, text in self.annotations.items())
            labels = labels_from(pairs)
            if labels in alerts:
                raise RuleError("vector contains metrics with the same labelset after "
                                "applying alert labels")
            alerts[labels] = Alert(labels, annotations, AlertState.PENDING, t, sample.v)
        return alerts

    def eval(self, t: int, query: QueryFunc, limit: int) -> Vector:
        alerts = self._alerts_of(result_vector(query(self.expr, t)), t)
        for labels, alert in alerts.items():
            existing = self.active.get(labels)
            if existing is not None and existing.state is not AlertState.INACTIVE:
                existing.value = alert.value
                existing.annotations = alert.annotations
            else:
                self.active[labels] = alert
        out: Vector = []
        live = 0
        for labels, alert in list(self.active.items()):
            if labels not in alerts:
                keep_firing = False
                if alert.state is AlertState.FIRING and self.keep_firing_for_ms > 0:
                    if alert.keep_firing_since is None:
                        alert.keep_firing_since = t
                    keep_firing = t - alert.keep_firing_since < self.keep_firing_for_ms
                if alert.state is AlertState.PENDING or (
                        alert.resolved_at is not None
                        and t - alert.resolved_at > RESOLVED_RETENTION_MS):
                    del self.active[labels]
                if alert.state is not AlertState.INACTIVE and not keep_firing:
                    alert.state = AlertState.INACTIVE
                    alert.resolved_at = t
                if not keep_firing:
                    continue
            else:
                alert.keep_firing_since = None
            live += 1
            if alert.state is AlertState.PENDING and t - alert.active_at >= self.for_ms:
                alert.state = AlertState.FIRING
                alert.fired_at = t
            out.append(Sample(self._series_labels(alert, "ALERTS", with_state=True), t, 1.0))
            out.append(Sample(self._series_labels(alert, "ALERTS_FOR_STATE"), t,
                              float(alert.active_at // 1000)))
        if 0 < limit < live:
            self.active = {}
            raise RuleError(f"exceeded limit of {limit} with {live} alerts")
        return out

    def _series_labels(self, alert: Alert, name: str, *, with_state: bool = False) -> Labels:
        # As Prometheus: the rule's labels as written, then the alert's (expanded) labels over
        # them, so a label whose template expanded to "" shows its raw text here.
        pairs = {**self.labels, **dict(alert.labels)}
        pairs[METRIC_NAME] = name
        if with_state:
            pairs[ALERT_STATE] = alert.state.label
        return labels_from(pairs)


Rule = RecordingRule | AlertingRule
