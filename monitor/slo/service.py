"""The SLOs inside the daemon (SPEC §8): minute counts from the local series, kept in SQLite,
the SLO metrics of SPEC §6, and the burn-rate and half-spent alerts handed to notification.

Once a minute `tick` records every closed minute since the last one recorded. Minute k covers
(60(k-1), 60k] seconds (monitor/slo/minutes.py) and is closed once the clock is past 60k: the
scrapes stamped inside it have all run (they run on the same event loop). Its counts come from
the SLI's queries with `{{.window}}` = `1m`, evaluated at 60k:

- events SLI: errors = (error query) x 60 and total = (total query) x 60. The bundled queries
  are `rate(...[1m])` sums, per-second rates, so the counts are rate x 60: Prometheus's
  extrapolated increase over the minute, which may be fractional. No total (no series, or NaN)
  means no data for that minute, not zero traffic; an empty error query beside a total means
  no errors (the `or ... * 0` idiom of the bundled spec, made robust here).
- raw SLI: (error ratio, 1), so a window's ratio is the mean of its minutes' ratios.

Catching up after a gap (the daemon was down) goes back at most as far as the in-memory series
store can hold samples: neither before this process started nor beyond its retention. Minutes
without samples have no row: they count as neither good nor bad.

Exactly once across restarts: each tick writes its minutes' rows and the "last minute recorded"
marker in one transaction, and only then adds them to the buckets; a restart loads the rows
and resumes after the marker. Active alerts are kept in `slo_alerts` with the minute they
fired, so a restart neither fires them again nor forgets to resolve them.

Alerts go out as the exported Prometheus rules would send them (monitor/slo/export.py): labels
are the SLO's labels and IDs, the rule's labels (`sloth_severity` ...) and `alertname`;
annotations are expanded as alert templates. An active alert is re-sent every tick with an end a
few minutes ahead (so it lapses by itself if the daemon stops sending), a resolved one once with
its end now. budget.py's `half_spent` is the spec's `budget` alert.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from monitor.alerting.templates import expand_alert_template
from monitor.clock import Clock
from monitor.metrics import families as fam
from monitor.metrics.store import LabelKey, MetricFamily, MetricStore
from monitor.notify.channels.alertmanager import valid_until
from monitor.notify.model import NotifyAlert
from monitor.promql import ast
from monitor.promql.engine import Engine, QueryError
from monitor.promql.parse import parse_expr
from monitor.promql.values import Sample, Scalar
from monitor.slo.budget import ALERT_KINDS, AlertKind, AlertWindows, SloBudget, SloState
from monitor.slo.model import AlertKind as RuleKind
from monitor.slo.model import AlertRule, SliEvents, Slo, render_window
from monitor.storage import StateStore

log = logging.getLogger(__name__)

TICK_EVERY_S: Final = 60.0
PRUNE_MARGIN_MINUTES: Final = 3 * 1440  # rows kept beyond the SLO's time window
MARKER_KEY: Final = "last_minute"
RULE_KIND: Final[Mapping[AlertKind, RuleKind]] = {
    "page": "page", "ticket": "ticket", "half_spent": "budget"}

NotifyPut = Callable[[list[NotifyAlert]], None]
Counts = tuple[float, float]


@dataclass
class _Tracked:
    """One configured SLO: its parsed queries, budget, alert rules and metric series."""

    slo: Slo
    budget: SloBudget
    queries: tuple[tuple[str, ast.Expr], ...]  # the 1m queries, text and parsed
    rules: dict[AlertKind, AlertRule]
    keys: dict[tuple[str, LabelKey], MetricFamily] = field(default_factory=dict)
    annotations: dict[AlertKind, dict[str, str]] = field(default_factory=dict)


def _parsed(slo: Slo) -> tuple[tuple[str, ast.Expr], ...]:
    templates = ((slo.sli.error_query, slo.sli.total_query) if isinstance(slo.sli, SliEvents)
                 else (slo.sli.error_ratio_template,))
    texts = [render_window(template, "1m") for template in templates]
    return tuple((text, parse_expr(text)) for text in texts)


def _rules(slo: Slo) -> dict[AlertKind, AlertRule]:
    rules: dict[AlertKind, AlertRule] = {}
    for kind in ALERT_KINDS:
        rule = slo.alert_rule(RULE_KIND[kind])
        if rule is not None and rule.name:
            rules[kind] = rule
    return rules


def last_closed_minute(now_s: float) -> int:
    """The latest minute k whose interval (60(k-1), 60k] lies entirely before `now_s`."""
    return math.ceil(now_s / 60) - 1


class SloService:
    """The configured SLOs: `load` at start, `tick` once a minute, `configure` on reload."""

    def __init__(self, slos: Sequence[Slo], *, state: StateStore, store: MetricStore,
                 engine: Engine, clock: Clock, notify_put: NotifyPut | None = None) -> None:
        self.state = state
        self.engine = engine
        self.clock = clock
        self.notify_put = notify_put
        # The series store is in memory: it holds nothing from before this process started.
        self.started_minute = last_closed_minute(clock.time()) + 1
        self.last_minute: int | None = None
        self.slos: dict[str, _Tracked] = {}
        self._objective = store.register(fam.SLO_OBJECTIVE)
        self._remaining = store.register(fam.SLO_BUDGET_REMAINING)
        self._burn = store.register(fam.SLO_BURN_RATE)
        self._ratio = store.register(fam.SLO_SLI_ERROR_RATIO)
        self._exhaustion = store.register(fam.SLO_EXHAUSTION)
        self._pending: list[NotifyAlert] = []
        self._initial = list(slos)

    # -- loading and reloading ------------------------------------------------------------------

    def load(self) -> None:
        """Read the marker, every SLO's minute rows and active alerts (at start)."""
        row = self.state.connection.execute(
            "SELECT value FROM slo_meta WHERE key = ?", (MARKER_KEY,)).fetchone()
        self.last_minute = None if row is None else int(row[0])
        self.configure(self._initial)

    def configure(self, slos: Sequence[Slo]) -> None:
        """Apply a new list of SLOs: one with the same ID keeps its counts and alerts; a
        removed one drops its series and resolves its alerts."""
        now = self.clock.time()
        old, self.slos = self.slos, {}
        for slo in slos:
            previous = old.pop(slo.id, None)
            if previous is not None and previous.slo == slo:
                self.slos[slo.id] = previous
                continue
            tracked = self._track(slo, previous)
            self.slos[slo.id] = tracked
            if previous is not None:
                self._drop_series(previous)
                for kind, alert in previous.budget.alerts.active.items():
                    if kind not in tracked.rules:
                        self._pending.append(self._alert(previous, kind, alert.since,
                                                         None, ends_at=now))
        for gone in old.values():
            self._drop_series(gone)
            for kind, alert in gone.budget.alerts.active.items():
                self._pending.append(self._alert(gone, kind, alert.since, None, ends_at=now))
        self._write_alerts()

    def _track(self, slo: Slo, previous: _Tracked | None) -> _Tracked:
        rules = _rules(slo)
        budget = SloBudget(objective_percent=slo.objective,
                           windows=AlertWindows.for_period(slo.time_window_s // 60),
                           alerts=rules)
        tracked = _Tracked(slo, budget, _parsed(slo), rules)
        if previous is not None:
            now = previous.budget.buckets.now
            if now is not None:
                budget.buckets.load(previous.budget.buckets.items(), now)
            since: dict[str, int] = {k: a.since for k, a in
                                     previous.budget.alerts.active.items()}
        else:
            if self.last_minute is not None:
                rows = self.state.connection.execute(
                    "SELECT minute, errors, total FROM slo_minutes WHERE slo = ? AND minute > ? "
                    "AND minute <= ? ORDER BY minute",
                    (slo.id, self.last_minute - budget.buckets.capacity, self.last_minute))
                budget.buckets.load(rows, self.last_minute)
            since = dict(self.state.connection.execute(
                "SELECT kind, since FROM slo_alerts WHERE slo = ?", (slo.id,)).fetchall())
        for kind in rules:
            if kind in since:
                budget.alerts.restore(kind, int(since[kind]))
        return tracked

    def _drop_series(self, tracked: _Tracked) -> None:
        for (_, key), family in tracked.keys.items():
            family.remove(key)
        tracked.keys.clear()

    # -- the minute tick ------------------------------------------------------------------------

    def tick(self) -> None:
        """Record the closed minutes, evaluate every SLO, set the metrics, put the alerts."""
        now = self.clock.time()
        last = last_closed_minute(now)
        first = max(self.started_minute,
                    last - self.engine.store.retention_ms // 60_000 + 1,
                    (self.last_minute + 1) if self.last_minute is not None else last)
        counts: dict[str, list[tuple[int, float, float]]] = {}
        for minute in range(first, last + 1):
            results: dict[str, float | None] = {}  # SLOs sharing a query (a total) run it once
            for slo_id, tracked in self.slos.items():
                found = self._minute(tracked, minute, results)
                if found is not None:
                    counts.setdefault(slo_id, []).append((minute, *found))
        if self.last_minute is None or last > self.last_minute:
            try:
                self._record(counts, last)
            except sqlite3.Error as exc:
                log.error("SLOs: cannot record minutes up to %d (retried next minute): %s",
                          last, exc)
                return
            self.last_minute = last
            for slo_id, rows in counts.items():
                for minute, errors, total in rows:
                    self.slos[slo_id].budget.add(minute, errors, total)
        lapses = valid_until(now, TICK_EVERY_S)
        out, self._pending = self._pending, []
        for tracked in self.slos.values():
            try:
                out.extend(self._evaluate(tracked, self.last_minute, now, lapses))
            except Exception:  # one SLO's defect must not stop the others
                log.exception("SLO %s: evaluation failed", tracked.slo.id)
        self._write_alerts()
        if out and self.notify_put is not None:
            self.notify_put(out)

    def _minute(self, tracked: _Tracked, minute: int,
                results: dict[str, float | None]) -> Counts | None:
        """The minute's (errors, total), or None for no data."""
        t_ms = minute * 60_000
        try:
            values = []
            for text, query in tracked.queries:
                if text not in results:
                    results[text] = self._value(query, t_ms)
                values.append(results[text])
        except (QueryError, TypeError, ValueError) as exc:
            log.warning("SLO %s: minute %d: query failed, counted as no data: %s",
                        tracked.slo.id, minute, exc)
            return None
        if len(values) == 1:
            ratio = values[0]
            return None if ratio is None else (max(ratio, 0.0), 1.0)
        errors, total = values
        if total is None:
            return None
        return max(errors or 0.0, 0.0) * 60, max(total, 0.0) * 60

    def _value(self, query: ast.Expr, t_ms: int) -> float | None:
        """The sum of an instant query's values; None when empty or not a number."""
        result = self.engine.instant(query, t_ms)
        if isinstance(result, Scalar):
            values = [result.v]
        elif isinstance(result, list) and all(isinstance(s, Sample) for s in result):
            values = [s.v for s in result if isinstance(s, Sample)]
        else:
            raise TypeError("the SLI query gives a range vector or a string, not a vector")
        total = math.fsum(values) if values else math.nan
        return None if math.isnan(total) or math.isinf(total) else total

    def _record(self, counts: Mapping[str, list[tuple[int, float, float]]], last: int) -> None:
        with self.state.transaction() as cursor:
            cursor.executemany(
                "INSERT OR REPLACE INTO slo_minutes (slo, minute, errors, total) "
                "VALUES (?, ?, ?, ?)",
                [(slo_id, *row) for slo_id, rows in counts.items() for row in rows])
            cursor.execute("INSERT OR REPLACE INTO slo_meta (key, value) VALUES (?, ?)",
                           (MARKER_KEY, last))

    def _evaluate(self, tracked: _Tracked, minute: int | None, now: float,
                  lapses: float) -> list[NotifyAlert]:
        budget = tracked.budget
        if minute is None or (budget.buckets.now is not None and minute < budget.buckets.now):
            return []
        before = budget.alerts.active
        state = budget.evaluate(minute)
        self._set_metrics(tracked, state)
        out = []
        for kind in state.resolved:
            out.append(self._alert(tracked, kind, before[kind].since, state, ends_at=now))
            tracked.annotations.pop(kind, None)
        for kind, alert in state.alerts.items():
            out.append(self._alert(tracked, kind, alert.since, state, ends_at=lapses))
        return out

    def _set_metrics(self, tracked: _Tracked, state: SloState) -> None:
        slo_id = tracked.slo.id
        self._set(tracked, self._objective, (slo_id,), state.objective_ratio)
        self._set(tracked, self._remaining, (slo_id,), state.remaining_ratio)
        self._set(tracked, self._exhaustion, (slo_id,), None if state.exhaustion_minutes is None
                  else state.exhaustion_minutes * 60)
        for label, reading in state.windows.items():
            self._set(tracked, self._burn, (slo_id, label), reading.burn_rate)
            self._set(tracked, self._ratio, (slo_id, label), reading.error_ratio)

    @staticmethod
    def _set(tracked: _Tracked, family: MetricFamily, values: tuple[str, ...],
             value: float | None) -> None:
        key = family.key(values)
        if value is None:
            if tracked.keys.pop((family.full_name, key), None) is not None:
                family.remove(key)
            return
        family.set(key, value)
        tracked.keys[family.full_name, key] = family

    # -- alerts ---------------------------------------------------------------------------------

    def _alert(self, tracked: _Tracked, kind: AlertKind, since: int, state: SloState | None,
               *, ends_at: float) -> NotifyAlert:
        rule = tracked.rules.get(kind) or tracked.slo.alert_rule(RULE_KIND[kind])
        name = rule.name if rule is not None else kind
        labels = {**tracked.slo.labels, **tracked.slo.id_labels(),
                  **(rule.labels if rule is not None else {}), "alertname": name}
        annotations = tracked.annotations.get(kind)
        if annotations is None:
            value = self._alert_value(tracked, kind, state)
            annotations = {key: expand_alert_template(text, name=name, labels=labels,
                                                      value=value, timestamp=self.clock.time())
                           for key, text in (rule.annotations if rule is not None else {}).items()}
            tracked.annotations[kind] = annotations
        return NotifyAlert(labels, annotations, since * 60.0, ends_at)

    @staticmethod
    def _alert_value(tracked: _Tracked, kind: AlertKind, state: SloState | None) -> float:
        """What the exported rule's expression would give: the remaining budget for the
        half-spent alert, the short window's error ratio of the first pair that holds."""
        if state is None:
            return math.nan
        if kind == "half_spent":
            return math.nan if state.remaining_ratio is None else state.remaining_ratio
        active = state.alerts.get(kind)
        windows = tracked.budget.windows
        for pair in windows.pairs:
            if active is not None and pair.name in active.pairs:
                for reading in state.windows.values():
                    if reading.minutes == pair.short_minutes and reading.error_ratio is not None:
                        return reading.error_ratio
        return math.nan

    def _write_alerts(self) -> None:
        """The active alerts of every SLO, as the table keeps them (replaced when changed)."""
        wanted = {(slo_id, kind, alert.since) for slo_id, tracked in self.slos.items()
                  for kind, alert in tracked.budget.alerts.active.items()}
        try:
            stored = set(self.state.connection.execute(
                "SELECT slo, kind, since FROM slo_alerts").fetchall())
            if stored == wanted:
                return
            with self.state.transaction() as cursor:
                cursor.executemany("DELETE FROM slo_alerts WHERE slo = ? AND kind = ?",
                                   [(slo, kind) for slo, kind, _ in stored - wanted])
                cursor.executemany("INSERT OR REPLACE INTO slo_alerts (slo, kind, since) "
                                   "VALUES (?, ?, ?)", sorted(wanted - stored))
        except sqlite3.Error as exc:
            log.error("SLOs: cannot record the active alerts (after a restart they may fire "
                      "again): %s", exc)

    # -- pruning --------------------------------------------------------------------------------

    def prune(self) -> int:
        """Delete minute rows older than each SLO's time window plus three days (rows of SLOs
        no longer configured after 30 + 3 days); returns how many went."""
        now = last_closed_minute(self.clock.time())
        rows = [(slo_id, now - t.slo.time_window_s // 60 - PRUNE_MARGIN_MINUTES)
                for slo_id, t in self.slos.items()]
        default_cutoff = now - 30 * 1440 - PRUNE_MARGIN_MINUTES
        with self.state.transaction() as cursor:
            cursor.executemany("DELETE FROM slo_minutes WHERE slo = ? AND minute < ?", rows)
            deleted = max(cursor.rowcount, 0)
            ids = list(self.slos)
            marks = ", ".join("?" * len(ids))
            cursor.execute(f"DELETE FROM slo_minutes WHERE slo NOT IN ({marks}) "  # noqa: S608
                           "AND minute < ?", (*ids, default_cutoff))
            deleted += max(cursor.rowcount, 0)
        return deleted
