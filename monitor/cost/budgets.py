"""Budgets (SPEC §9): spend per period against a limit, the budget metrics, and three alerts.

Spend. A budget's spend is the sum of the ledger amounts (in cost.currency) of its current
period that match its `match`. `load` reads it from the daily roll-ups (`cost_daily`) and the
last 25 hours per minute from the `ledger` rows; from then on `add`, the ledger's listener,
adds each committed entry. An entry dated in an earlier period (a late line) is not counted
against the current period; it is in that period's roll-up, where reports find it. At a new
period the spend restarts from what `cost_daily` already holds for it.

Forecast. The projected spend at the end of the period (monitor/cost/forecast.py: the spend
so far plus the lower of a long and a short window's rate times the time left; the spend so
far until a tenth of the period has passed). `BudgetForecastExceeded` fires when it exceeds
the limit, at most once per period, and resolves when it falls below 95 % of the limit (or
the period ends).

Thresholds. `BudgetThresholdCrossed` fires once per configured threshold per period when
spent >= threshold x limit, stays active until the period ends, then resolves. Fired alerts
are kept in the `budget_alerts` table: after a restart they come back with their start time
and never fire twice in one period.

Surge. `SpendSurge` holds while the spend of the last hour exceeds 3 x the hourly average of
the up to 24 h before it (over the time there is data for) and is at least 1 % of the limit,
once there are 6 h of data before the last hour.

`evaluate` returns the active alerts, each with an end a few evaluation intervals ahead (as
Prometheus sends them, so an alert that is no longer sent resolves by itself), and, once, the
ones that just resolved with their end. Call `add` and `evaluate` from the thread that commits
the ledger (the event loop): neither locks.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from monitor.clock import Clock
from monitor.config import BudgetConfig, CostConfig
from monitor.cost.forecast import (
    DAY_S,
    HISTORY_KEY,
    HOUR_S,
    MINUTES_KEPT_S,
    BudgetSpend,
    Projection,
    project,
    read_history_since,
    read_spend,
)
from monitor.cost.ledger import LedgerEntry
from monitor.cost.money import EXACT, ZERO, money_text
from monitor.cost.periods import period_at
from monitor.metrics import families as fam
from monitor.metrics.store import LabelKey, MetricStore
from monitor.notify.channels.alertmanager import valid_until
from monitor.notify.model import NotifyAlert
from monitor.storage import StateStore

log = logging.getLogger(__name__)

THRESHOLD_ALERT = "BudgetThresholdCrossed"
FORECAST_ALERT = "BudgetForecastExceeded"
SURGE_ALERT = "SpendSurge"

FORECAST_RESOLVE_RATIO = Decimal("0.95")
SURGE_FACTOR = 3
SURGE_BASELINE_S = 24 * HOUR_S
SURGE_MIN_HISTORY_S = 6 * HOUR_S
SURGE_MIN_SHARE = Decimal("0.01")  # of the limit: pennies never page
ALERTS_KEPT_S = 40 * DAY_S  # ended rows of past periods, then pruned


def severity_of(threshold: Decimal) -> str:
    """The bundled rules' severities: reaching the limit pages, earlier thresholds ticket."""
    return "page" if threshold >= 1 else "ticket"


def show(amount: Decimal) -> str:
    """Money for people: cents from 1 up, six places below (a few-cent hourly spend)."""
    return money_text(round(amount, 2 if abs(amount) >= 1 else 6))


@dataclass
class Fired:
    """An alert of the current period (or an active surge)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    started_at: float
    ended_at: float | None = None

    def alert(self, ends_at: float) -> NotifyAlert:
        return NotifyAlert(self.labels, self.annotations, self.started_at, ends_at)


@dataclass
class BudgetState(BudgetSpend):
    """One budget in its current period: its spend, its alerts, its metric series."""

    thresholds: dict[str, Fired] = field(default_factory=dict)
    forecast_alert: Fired | None = None
    surge: Fired | None = None
    forecast: Decimal = ZERO
    keys: tuple[LabelKey, ...] = ()


class BudgetTracker:
    """The budgets of `cost.budgets`: their spend, metrics and alerts."""

    def __init__(self, config: CostConfig, *, state: StateStore, store: MetricStore,
                 clock: Clock, evaluation_interval: float = 0.0) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.state = state
        self.clock = clock
        self.evaluation_interval = evaluation_interval
        self.budgets: dict[str, BudgetState] = {}
        self.history_since = clock.time()
        self._spent = store.register(fam.BUDGET_SPENT)
        self._limit = store.register(fam.BUDGET_LIMIT)
        self._ratio = store.register(fam.BUDGET_SPENT_RATIO)
        self._forecast = store.register(fam.BUDGET_FORECAST)
        self._resolved: list[NotifyAlert] = []

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read every budget's spend and fired alerts from the state file (at start)."""
        now = self.clock.time()
        self.history_since = self._load_history_since(now)
        for budget in self.config.budgets:
            self.budgets[budget.name] = self._load_budget(budget, now)
        self._resolve_orphans(now)

    def _load_history_since(self, now: float) -> float:
        with self.state.transaction() as cursor:
            cursor.execute("INSERT OR IGNORE INTO cost_meta (key, value) VALUES (?, ?)",
                           (HISTORY_KEY, repr(now)))
        return read_history_since(self.state.connection, now)

    def _load_budget(self, budget: BudgetConfig, now: float) -> BudgetState:
        state = BudgetState(budget, period_at(budget.period, now, self.zone))
        read_spend(self.state.connection, state, currency=self.config.currency,
                   zone=self.zone, now=now)
        self._load_alerts(state)
        state.keys = (self._spent.key((budget.name, self.config.currency)),
                      self._limit.key((budget.name, self.config.currency)),
                      self._ratio.key((budget.name,)),
                      self._forecast.key((budget.name, self.config.currency)))
        return state

    def _load_alerts(self, state: BudgetState) -> None:
        """The alerts that fired in the state's period, from the table."""
        state.thresholds, state.forecast_alert = {}, None
        for name, key, started, ended, labels, texts in self.state.connection.execute(
                "SELECT alertname, key, started_at, ended_at, labels, annotations FROM "
                "budget_alerts WHERE budget = ? AND period = ?",
                (state.config.name, state.period.label)):
            fired = Fired(json.loads(labels), json.loads(texts), started, ended)
            if name == THRESHOLD_ALERT:
                state.thresholds[key] = fired
            elif name == FORECAST_ALERT:
                state.forecast_alert = fired

    def _resolve_orphans(self, now: float) -> None:
        """Alerts left active in the table for a period that has passed, a budget no longer
        configured or a threshold no longer listed: resolve them now."""
        current = {name: (s.period.label, {str(t) for t in s.config.thresholds})
                   for name, s in self.budgets.items()}
        rows = self.state.connection.execute(
            "SELECT budget, alertname, period, key, period_end, started_at, labels, "
            "annotations FROM budget_alerts WHERE ended_at IS NULL").fetchall()
        ended = []
        for budget, name, period, key, period_end, started, labels, texts in rows:
            here = current.get(budget)
            if here is not None and here[0] == period and (
                    name != THRESHOLD_ALERT or key in here[1]):
                continue
            end = min(period_end, now)
            self._resolved.append(NotifyAlert(json.loads(labels), json.loads(texts),
                                              started, end))
            ended.append((end, budget, name, period, key))
        self._write("UPDATE budget_alerts SET ended_at = ? WHERE budget = ? AND alertname = ? "
                    "AND period = ? AND key = ?", ended)
        self._write("DELETE FROM budget_alerts WHERE ended_at IS NOT NULL AND period_end < ?",
                    [(now - ALERTS_KEPT_S,)])

    def reload_spend(self) -> None:
        """Read every budget's spend from the state file again (the ledger writer restarted,
        and its last commit may not have reached `add`)."""
        now = self.clock.time()
        for state in self.budgets.values():
            read_spend(self.state.connection, state, currency=self.config.currency,
                       zone=self.zone, now=now)

    # -- reload -----------------------------------------------------------------------------

    def configure(self, config: CostConfig) -> None:
        """A reload: removed budgets drop their series and resolve their alerts; new or
        changed ones are read again. The time zone changes only at the next start, as the
        ledger's roll-ups do."""
        now = self.clock.time()
        if config.timezone != self.config.timezone:
            config = config.model_copy(update={"timezone": self.config.timezone})
        reload_all = config.currency != self.config.currency
        self.config = config
        wanted = {b.name: b for b in config.budgets}
        for name in list(self.budgets):
            old = self.budgets[name]
            if not reload_all and wanted.get(name) == old.config:
                continue
            del self.budgets[name]
            self._drop_series(old)
            if name not in wanted:
                self._resolve_all(old, now)
                continue
            if old.surge is not None:  # the match may have changed: judge it afresh
                self._resolved.append(old.surge.alert(now))
        for budget in config.budgets:
            if budget.name not in self.budgets:
                self.budgets[budget.name] = self._load_budget(budget, now)
        self._resolve_orphans(now)

    def _drop_series(self, state: BudgetState) -> None:
        for family, key in zip((self._spent, self._limit, self._ratio, self._forecast),
                               state.keys, strict=False):
            family.remove(key)

    def _resolve_all(self, state: BudgetState, now: float) -> None:
        fired = [*state.thresholds.values(), state.forecast_alert, state.surge]
        for alert in fired:
            if alert is not None and alert.ended_at is None:
                self._resolved.append(alert.alert(now))
        self._write("UPDATE budget_alerts SET ended_at = ? WHERE budget = ? "
                    "AND ended_at IS NULL", [(now, state.config.name)])

    # -- spend ------------------------------------------------------------------------------

    def add(self, entries: Sequence[LedgerEntry]) -> None:
        """The ledger listener: committed entries, amounts in cost.currency."""
        for entry in entries:
            self.history_since = min(self.history_since, entry.t)
            for state in self.budgets.values():
                if state.matches(entry.source, entry.model, entry.user):
                    state.add(entry.t, entry.amount, self.zone)

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> list[NotifyAlert]:
        """Roll periods over, update the metrics, and return the alerts to put."""
        now = self.clock.time() if now is None else now
        lapses = valid_until(now, self.evaluation_interval)
        out: list[NotifyAlert] = []
        for state in self.budgets.values():
            try:
                out.extend(self._evaluate_budget(state, now, lapses))
            except Exception:  # one budget's defect must not stop the others
                log.exception("budget %s: evaluation failed", state.config.name)
        out.extend(self._resolved)
        self._resolved = []
        return out

    def _evaluate_budget(self, state: BudgetState, now: float,
                         lapses: float) -> list[NotifyAlert]:
        out: list[NotifyAlert] = []
        if now not in state.period:
            out.extend(self._roll_over(state, now))
        state.minutes.prune(now - MINUTES_KEPT_S)
        budget, limit = state.config, state.config.limit
        projection = project(state, now, self.history_since, self.zone)
        state.forecast = projection.forecast
        spent_key, limit_key, ratio_key, forecast_key = state.keys
        self._spent.set(spent_key, float(state.spent))
        self._limit.set(limit_key, float(limit))
        self._ratio.set(ratio_key, float(EXACT.divide(state.spent, limit)))
        self._forecast.set(forecast_key, float(projection.forecast))

        for threshold in budget.thresholds:
            text = str(threshold)
            fired = state.thresholds.get(text)
            crossed = state.spent >= threshold * limit
            if fired is None and crossed:
                fired = state.thresholds[text] = self._fire(
                    state, THRESHOLD_ALERT, text, now=now,
                    labels={"threshold": text, "severity": severity_of(threshold)},
                    annotations=self._threshold_text(state, threshold))
            elif fired is not None and fired.ended_at is None and not crossed:
                # Only a reload (a higher limit, a narrower match) lowers the ratio.
                del state.thresholds[text]
                self._write("DELETE FROM budget_alerts WHERE budget = ? AND alertname = ? "
                            "AND period = ? AND key = ?",
                            [(budget.name, THRESHOLD_ALERT, state.period.label, text)])
                out.append(fired.alert(now))
                continue
            if fired is not None and fired.ended_at is None:
                out.append(fired.alert(lapses))

        alert = state.forecast_alert
        if alert is None and projection.projected and projection.forecast > limit:
            alert = state.forecast_alert = self._fire(
                state, FORECAST_ALERT, "", now=now, labels={"severity": "ticket"},
                annotations=self._forecast_text(state, projection, now))
        elif alert is not None and alert.ended_at is None \
                and projection.forecast < FORECAST_RESOLVE_RATIO * limit:
            self._end(state, alert, FORECAST_ALERT, "", now)
            out.append(alert.alert(now))
        if alert is not None and alert.ended_at is None:
            out.append(alert.alert(lapses))

        surge = self._surge_text(state, now)
        if surge is not None:
            if state.surge is None:
                state.surge = Fired({"alertname": SURGE_ALERT, "budget": budget.name,
                                     "severity": "ticket"}, surge, now)
            state.surge.annotations = surge  # the latest hour, as a rule's $value would be
            out.append(state.surge.alert(lapses))
        elif state.surge is not None:
            out.append(state.surge.alert(now))
            state.surge = None
        return out

    def _roll_over(self, state: BudgetState, now: float) -> list[NotifyAlert]:
        old = state.period
        end = old.end if now >= old.end else now
        out = []
        for name, key, fired in [*((THRESHOLD_ALERT, k, f) for k, f in state.thresholds.items()),
                                 (FORECAST_ALERT, "", state.forecast_alert)]:
            if fired is not None and fired.ended_at is None:
                self._end(state, fired, name, key, end)
                out.append(fired.alert(end))
        read_spend(self.state.connection, state, currency=self.config.currency, zone=self.zone,
                   now=now, minutes=False)
        self._load_alerts(state)
        self._write("DELETE FROM budget_alerts WHERE ended_at IS NOT NULL AND period_end < ?",
                    [(now - ALERTS_KEPT_S,)])
        return out

    def _fire(self, state: BudgetState, name: str, key: str, *, now: float,
              labels: Mapping[str, str], annotations: dict[str, str]) -> Fired:
        fired = Fired({"alertname": name, "budget": state.config.name, **labels},
                      annotations, now)
        self._write("INSERT OR REPLACE INTO budget_alerts (budget, alertname, period, key, "
                    "period_end, started_at, ended_at, labels, annotations) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    [(state.config.name, name, state.period.label, key, state.period.end, now,
                      json.dumps(fired.labels, sort_keys=True),
                      json.dumps(annotations, sort_keys=True))])
        return fired

    def _end(self, state: BudgetState, fired: Fired, name: str, key: str, t: float) -> None:
        fired.ended_at = t
        self._write("UPDATE budget_alerts SET ended_at = ? WHERE budget = ? AND alertname = ? "
                    "AND period = ? AND key = ?",
                    [(t, state.config.name, name, state.period.label, key)])

    def _write(self, sql: str, rows: Iterable[tuple[object, ...]]) -> None:
        """A write to the alert table; a failure is logged, and the alert goes out anyway
        (after a restart it may then fire again)."""
        rows = list(rows)
        if not rows:
            return
        try:
            with self.state.transaction() as cursor:
                cursor.executemany(sql, rows)
        except sqlite3.Error as exc:
            log.error("budgets: cannot record budget alerts in the state file: %s", exc)

    # -- alert texts ------------------------------------------------------------------------

    def _period_text(self, state: BudgetState) -> str:
        period = state.period
        end = datetime.fromtimestamp(period.end, self.zone).isoformat()
        return f"{period.kind} {period.label} (until {end})"

    def _threshold_text(self, state: BudgetState, threshold: Decimal) -> dict[str, str]:
        c, limit = self.config.currency, state.config.limit
        name = state.config.name
        percent = money_text(threshold * 100)
        return {
            "summary": f"Budget {name} has spent {percent}% of its limit: "
                       f"{show(state.spent)} of {show(limit)} {c}",
            "description": f"Budget {name} has spent {show(state.spent)} {c} of its "
                           f"{show(limit)} {c} limit in {self._period_text(state)}, crossing "
                           f"its {threshold} threshold ({show(threshold * limit)} {c}). "
                           "The alert stays active until the period ends.",
        }

    def _forecast_text(self, state: BudgetState, projection: Projection,
                       now: float) -> dict[str, str]:
        c, limit, name = self.config.currency, state.config.limit, state.config.name
        hours = (state.period.end - now) / HOUR_S
        return {
            "summary": f"Budget {name} is projected to spend {show(projection.forecast)} {c} "
                       f"by the end of its period, over its {show(limit)} {c} limit",
            "description": f"Budget {name} has spent {show(state.spent)} {c} in "
                           f"{self._period_text(state)}; at the recent rate of "
                           f"{show(projection.rate_per_hour)} {c} per hour for the remaining "
                           f"{hours:.1f} h it reaches {show(projection.forecast)} {c}, over "
                           f"the {show(limit)} {c} limit.",
        }

    def _surge_text(self, state: BudgetState, now: float) -> dict[str, str] | None:
        """The annotations of a surge, or None when there is none."""
        hour_ago = now - HOUR_S
        if hour_ago - self.history_since < SURGE_MIN_HISTORY_S:
            return None
        c, limit, name = self.config.currency, state.config.limit, state.config.name
        last = state.minutes.total(hour_ago, now)
        if last < SURGE_MIN_SHARE * limit:
            return None
        base_start = max(self.history_since, hour_ago - SURGE_BASELINE_S)
        base_hours = Decimal(repr((hour_ago - base_start) / HOUR_S))
        baseline = state.minutes.total(base_start, hour_ago)
        if last * base_hours <= SURGE_FACTOR * baseline:
            return None
        average = baseline / base_hours
        return {
            "summary": f"Spend of budget {name} surged to {show(last)} {c} in the last hour",
            "description": f"Budget {name} spent {show(last)} {c} in the last hour, more than "
                           f"{SURGE_FACTOR} times its hourly average of {show(average)} {c} "
                           f"over the {float(base_hours):.0f} h before (its limit is "
                           f"{show(limit)} {c} per {state.config.period}).",
        }


