"""The rule manager: loading rule files, scheduling groups, reloads and alert-state persistence.

Each group is evaluated at the multiples of its interval (the group's `interval`, else the
global evaluation_interval), at that exact timestamp. (Prometheus offsets each group by a hash
of its name; here all groups of one interval evaluate at the same instants.)
An evaluation that runs past the next tick skips the ticks it missed (counted) rather than
piling up. Between ticks, `evaluate_promptly` evaluates groups at once when new data has
arrived (see monitor/alerting/prompt.py); a tick never evaluates a group at or before a time it
was already evaluated at. On reload, alerts carry over to the rule with the same name and
labels in the same group; at start-up they come back from the state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
from collections.abc import Callable, Iterable, Sequence

from monitor.alerting.groups import RuleGroup, RuleMetrics, describe_failure, mark_stale
from monitor.alerting.rulefmt import RuleGroupSpec, load_rule_file
from monitor.alerting.rules import AlertingRule, RecordingRule, Rule, TemplateContext
from monitor.alerting.state import (
    STATE_KEPT_MS,
    AlertStateStore,
    Snapshot,
    rule_key,
    snapshot,
)
from monitor.alerting.templates import check_template
from monitor.clock import Clock
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.promql.engine import Engine
from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.promql.values import Labels, Value
from monitor.tsdb.store import SeriesStore

log = logging.getLogger(__name__)

SAVE_IDLE_EVERY_MS = 10_000  # the last evaluation time is saved at least this often

GroupListener = Callable[[RuleGroup, int], None]


def check_expr(text: str) -> str | None:
    try:
        parse_expr(text)
    except PromQLParseError as exc:
        return str(exc)
    return None


def load_groups(patterns: Iterable[str], *, default_interval_ms: int,
                templates: TemplateContext) -> list[RuleGroup]:
    """Rule groups from every file the globs match; ConfigError naming file:line on error."""
    groups: list[RuleGroup] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):  # noqa: PTH207 - absolute str globs from config
            specs = load_rule_file(path, expr_checker=check_expr,
                                   template_checker=check_template)
            groups.extend(build_group(spec, default_interval_ms, templates) for spec in specs)
    return groups


def build_group(spec: RuleGroupSpec, default_interval_ms: int,
                templates: TemplateContext) -> RuleGroup:
    rules: list[Rule] = []
    for node in spec.rules:
        expr = parse_expr(node.expr)
        if node.kind == "record":
            rules.append(RecordingRule(node.name, expr, node.expr, node.labels))
        else:
            rules.append(AlertingRule(
                node.name, expr, node.expr, for_ms=round(node.for_ * 1000),
                keep_firing_for_ms=round(node.keep_firing_for * 1000), labels=node.labels,
                annotations=node.annotations, templates=templates))
    interval = round(spec.interval * 1000) if spec.interval else default_interval_ms
    return RuleGroup(spec.name, spec.file, interval, spec.limit, rules)


class RuleManager:
    """Owns the running rule groups."""

    def __init__(self, *, engine: Engine, series: SeriesStore, metrics: MetricStore,
                 clock: Clock, state: AlertStateStore | None = None) -> None:
        self.engine = engine
        self.series = series
        self.clock = clock
        self.state = state
        self.metrics = RuleMetrics(metrics)
        self._missed = metrics.register(fam.RULE_GROUP_MISSED)
        self.groups: list[RuleGroup] = []
        self.listeners: list[GroupListener] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._saved: dict[str, Snapshot] = {}
        self._saved_at: dict[str, int] = {}
        self._evaluated_at: dict[str, int] = {}
        self._pending_stale: set[Labels] = set()
        self._running = False

    # -- loading -------------------------------------------------------------------------------

    def replace(self, groups: Sequence[RuleGroup], *, restore: bool = False) -> None:
        """Use these groups. A rule keeps what it had (alerts, the series it wrote) when a rule
        of the same identity was in the same group before; at start-up (`restore`) alerts come
        back from the state file instead. Series of rules and groups that are gone get stale
        markers now, as Prometheus writes them on reload."""
        old = {(g.key, ident): (g, index) for g in self.groups
               for index, ident in enumerate(g.identities())}
        now = int(self.clock.time() * 1000)
        keys: set[str] = set()
        for group in groups:
            down_at = self.state.last_eval(group.key) if restore and self.state else None
            for index, ident in enumerate(group.identities()):
                rule = group.rules[index]
                previous = old.pop((group.key, ident), None)
                if previous is not None:
                    old_group, old_index = previous
                    group.produced[index] = old_group.produced[old_index]
                    old_rule = old_group.rules[old_index]
                    if isinstance(rule, AlertingRule) and isinstance(old_rule, AlertingRule):
                        rule.active = old_rule.active
                if not isinstance(rule, AlertingRule):
                    continue
                key = rule_key(group.key, ident)
                keys.add(key)
                if previous is None and restore and self.state is not None:
                    restored = self.state.restore(key, rule, down_at=down_at, now=now)
                    if restored:
                        log.info("restored %d alert(s) of %s", restored, rule.name)
                self._saved[key] = snapshot(rule)
        for old_group, old_index in old.values():
            self._pending_stale |= old_group.produced[old_index]
        if self.state is not None:
            if restore:
                self.state.forget_older_than(now - STATE_KEPT_MS)
            else:
                self.state.forget_except(keys)
        self.groups = list(groups)
        if self._running:
            self._restart_tasks()

    # -- evaluation ----------------------------------------------------------------------------

    def query(self, expr: object, t: int) -> Value:
        return self.engine.instant(expr, t)  # type: ignore[arg-type]

    def evaluate(self, group: RuleGroup, t: int) -> None:
        group.evaluate(t, self.query, self.series, self._failed)
        if self._pending_stale:
            # Series of rules a reload removed, marked stale at the next evaluation as
            # Prometheus does (unless a rule now writes them again).
            self._pending_stale -= set().union(*group.produced)
            mark_stale(self.series, self._pending_stale, t)
            self._pending_stale = set()
        self.metrics.evaluated(group)
        self.metrics.alert_counts(self.groups)
        self._evaluated_at[group.key] = t
        self._persist(group, t)
        for listener in self.listeners:
            listener(group, t)

    def evaluate_promptly(self, t: int, min_gap_ms: int, cost_factor: float) -> int:
        """Evaluate at `t` every group last evaluated at least `min_gap_ms` ago, and at least
        `cost_factor` times its last evaluation's duration ago (so evaluating on every new
        datum never costs a group more than 1/cost_factor of a core); how many ran."""
        ran = 0
        for group in self.groups:
            last = self._evaluated_at.get(group.key)
            if last is not None:
                gap = max(min_gap_ms, cost_factor * group.last_duration_s * 1000.0)
                if t - last < gap:
                    continue
            self._evaluate_guarded(group, t)
            ran += 1
        return ran

    def _evaluate_guarded(self, group: RuleGroup, t: int) -> None:
        if t <= self._evaluated_at.get(group.key, -(2**63)):
            return  # already evaluated at (or after) this time
        try:
            self.evaluate(group, t)
        except Exception:  # a bug here must cost one evaluation, never the group's loop
            log.exception("unexpected error evaluating rule group %s", group.name)
            self.metrics.failed(group)

    def _failed(self, group: RuleGroup, rule: Rule, exc: Exception) -> None:
        self.metrics.failed(group)
        log.warning("rule evaluation failed: %s", describe_failure(group, rule, exc))

    def _persist(self, group: RuleGroup, t: int) -> None:
        if self.state is None:
            return
        changed = []
        for rule, ident in zip(group.rules, group.identities(), strict=True):
            if not isinstance(rule, AlertingRule):
                continue
            key = rule_key(group.key, ident)
            current = snapshot(rule)
            if current != self._saved.get(key):
                changed.append((key, rule, current))
        if not changed and t - self._saved_at.get(group.key, 0) < SAVE_IDLE_EVERY_MS:
            return
        try:
            self.state.save(group.key, t, [(key, rule) for key, rule, _ in changed])
        except Exception as exc:  # a full disk must not stop rule evaluation
            log.error("cannot save alert state of group %s: %s", group.name, exc)
            return
        for key, _, current in changed:
            self._saved[key] = current
        self._saved_at[group.key] = t

    # -- scheduling ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._running = True
        self._restart_tasks()
        try:
            await stop.wait()
        finally:
            self._running = False
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks.clear()
            self.flush()

    def flush(self) -> None:
        """Save every group's last evaluation time (at shutdown), so the next start knows
        exactly how long the rules were not evaluated."""
        if self.state is None:
            return
        for group in self.groups:
            t = self._evaluated_at.get(group.key)
            if t is not None and t > self._saved_at.get(group.key, 0):
                try:
                    self.state.save(group.key, t, [])
                except Exception as exc:
                    log.error("cannot save the last evaluation of group %s: %s",
                              group.name, exc)
                    continue
                self._saved_at[group.key] = t

    def _restart_tasks(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks = {group.key: asyncio.create_task(self._loop(group), name=group.key)
                       for group in self.groups}

    async def _loop(self, group: RuleGroup) -> None:
        interval = group.interval_ms
        next_t = (int(self.clock.time() * 1000) // interval + 1) * interval
        while True:
            now = int(self.clock.time() * 1000)
            if next_t - now > interval:
                # The wall clock stepped back: realign instead of waiting for it to catch up.
                next_t = (now // interval + 1) * interval
            await asyncio.sleep(max(0.0, (next_t - now) / 1000.0))
            self._evaluate_guarded(group, next_t)
            next_t += interval
            now = int(self.clock.time() * 1000)
            if now >= next_t:
                missed = (now - next_t) // interval + 1
                self._missed.inc(self._missed.key((group.name,)), missed)
                next_t += missed * interval
