"""Rule groups: evaluating a group's rules in order and writing what they produce.

Within a group, rules run one after another at the same timestamp and each one's output is
appended to the series store before the next runs, so a recording rule's result is visible to
the rules after it (as in Prometheus). A series a rule produced last time and not this time
gets a stale marker. A failing rule is logged and counted and never stops the group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitor.alerting.rules import AlertingRule, Rule, RuleError
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.promql.engine import QueryError
from monitor.promql.values import Labels, Vector
from monitor.tsdb.store import SeriesStore

log = logging.getLogger(__name__)


@dataclass
class RuleHealth:
    """What the API reports for a rule: health, last error, last evaluation."""

    health: str = "unknown"  # ok | err | unknown, as Prometheus
    last_error: str = ""
    last_evaluation: float = 0.0  # epoch seconds of the last evaluation
    duration_s: float = 0.0


@dataclass
class RuleGroup:
    """A group of rules from one file, evaluated every `interval_ms`."""

    name: str
    file: str
    interval_ms: int
    limit: int
    rules: Sequence[Rule]
    health: list[RuleHealth] = field(default_factory=list)
    last_evaluation: float = 0.0
    last_duration_s: float = 0.0
    # Per rule, the series it wrote at its last evaluation (for stale markers).
    produced: list[set[Labels]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.health = [RuleHealth() for _ in self.rules]
        self.produced = [set() for _ in self.rules]

    @property
    def key(self) -> str:
        return f"{self.file};{self.name}"

    def alerting_rules(self) -> list[AlertingRule]:
        return [rule for rule in self.rules if isinstance(rule, AlertingRule)]

    def identities(self) -> list[str]:
        """Per rule, what identifies it across reloads and restarts (see `rule_identity`)."""
        seen: dict[str, int] = {}
        out = []
        for rule in self.rules:
            base = rule_identity(rule)
            occurrence = seen.get(base, 0)
            seen[base] = occurrence + 1
            out.append(rule_identity(rule, occurrence))
        return out

    def evaluate(self, t: int, query: Callable[..., object], series: SeriesStore,
                 on_failure: Callable[[RuleGroup, Rule, Exception], None]) -> None:
        """Evaluate every rule at `t` (ms), appending their outputs to `series`."""
        started = time.perf_counter()
        for index, rule in enumerate(self.rules):
            rule_started = time.perf_counter()
            health = self.health[index]
            health.last_evaluation = t / 1000.0
            try:
                produced: Vector = rule.eval(t, query, self.limit)  # type: ignore[arg-type]
            except Exception as exc:
                if not isinstance(exc, QueryError | RuleError):
                    # A defect, not a bad rule: say so loudly, then go on with the group.
                    log.exception("rule %r in group %r failed unexpectedly", rule.name,
                                  self.name)
                health.health, health.last_error = "err", str(exc) or type(exc).__name__
                health.duration_s = time.perf_counter() - rule_started
                on_failure(self, rule, exc)
                continue
            current = set()
            for sample in produced:
                series.append(sample.labels, t, sample.v)
                current.add(sample.labels)
            mark_stale(series, self.produced[index] - current, t)
            self.produced[index] = current
            health.health, health.last_error = "ok", ""
            health.duration_s = time.perf_counter() - rule_started
        self.last_evaluation = t / 1000.0
        self.last_duration_s = time.perf_counter() - started


def rule_identity(rule: Rule, occurrence: int = 0) -> str:
    """Kind, name, static labels, and the rule's position among rules of its group equal in
    all three (Prometheus allows those): what carries a rule's state across reloads."""
    kind = "alert" if isinstance(rule, AlertingRule) else "record"
    return f"{kind}|{rule.name}|{sorted(rule.labels.items())!r}|{occurrence}"


def mark_stale(series: SeriesStore, labels: set[Labels], t: int) -> None:
    """Stale markers at `t` for series a rule no longer writes."""
    for gone in labels:
        stored = series.series.get(gone)
        if stored is not None:
            stored.append_stale(t)


class RuleMetrics:
    """`rule_evaluation_failures_total{group}`, `rule_group_last_duration_seconds{group}` and
    `alerts{alertname,state}`."""

    def __init__(self, store: MetricStore) -> None:
        self.failures = store.register(fam.RULE_EVALUATION_FAILURES)
        self.durations = store.register(fam.RULE_GROUP_LAST_DURATION)
        self.alerts = store.register(fam.ALERTS)

    def failed(self, group: RuleGroup) -> None:
        self.failures.inc(self.failures.key((group.name,)))

    def evaluated(self, group: RuleGroup) -> None:
        self.durations.set(self.durations.key((group.name,)), group.last_duration_s)
        # From 0, as Prometheus's own counter: a healthy group shows 0, not "no data".
        self.failures.get(self.failures.key((group.name,)))

    def alert_counts(self, groups: Sequence[RuleGroup]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for group in groups:
            for rule in group.alerting_rules():
                for alert in rule.active.values():
                    if alert.state.label != "inactive":
                        name_state = (rule.name, alert.state.label)
                        counts[name_state] = counts.get(name_state, 0) + 1
        wanted = {self.alerts.key(name_state): count for name_state, count in counts.items()}
        for stale in set(self.alerts.series) - set(wanted):
            self.alerts.remove(stale)
        for key, count in wanted.items():
            self.alerts.set(key, float(count))


def describe_failure(group: RuleGroup, rule: Rule, exc: Exception) -> str:
    kind = "alerting" if isinstance(rule, AlertingRule) else "recording"
    return f"group {group.name!r} ({group.file}), {kind} rule {rule.name!r}: {exc}"
