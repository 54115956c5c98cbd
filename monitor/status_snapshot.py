"""The daemon's side of the status page: `DaemonStatus.snapshot()` gathers a
`StatusSnapshot` (monitor/api/status_model.py) from the running parts.

It reads what the other endpoints read, so the page agrees with them: the rule groups as
`/api/v1/alerts` and `/api/v1/rules` see them (monitor/api/prom_rules.py's views and
`active_alerts`), the dispatcher's alerts and the silence store as `/api/v2/alerts` and
`/api/v2/silences` do (budget and SLO alerts only exist there), the budget tracker's exact
amounts, and the metric store's series for SLOs, sources and GPUs (what `/metrics` exports).

Each section is read on its own: one that fails is logged, left empty and named in the
snapshot's notes, and the rest of the page still renders.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from monitor import __version__
from monitor.api.prom_rules import AlertingRuleView, RuleGroupView, active_alerts
from monitor.api.status_model import (
    AlertOrigin,
    AlertRow,
    BudgetRow,
    DaemonRow,
    GpuRow,
    LabelPairs,
    RuleGroupRow,
    RuleRow,
    SilenceRow,
    SloRow,
    SourceRow,
    StatusSnapshot,
)
from monitor.cost.budgets import FORECAST_ALERT, SURGE_ALERT, THRESHOLD_ALERT, BudgetTracker, show
from monitor.metrics import families as fam
from monitor.metrics.store import CounterSeries, FamilySpec, GaugeSeries, LabelKey, MetricStore
from monitor.notify.model import NotifyAlert, fingerprint
from monitor.notify.service import NotifyService
from monitor.notify.silences import listing_order
from monitor.slo.model import LABEL_ID
from monitor.slo.service import SloService
from monitor.units import parse_duration

if TYPE_CHECKING:
    from monitor.daemon import Daemon

log = logging.getLogger(__name__)

BUDGET_ALERTS = frozenset({THRESHOLD_ALERT, FORECAST_ALERT, SURGE_ALERT})
# A page for people: past this many alerts (a label exploding into series, say) the rest are
# counted, not shown; the APIs list them all.
MAX_ALERTS_SHOWN = 300
_STATE_RANK = {"pending": 1, "firing": 2}
T = TypeVar("T")
# Alerts with their full label sets (the rows leave alertname out).
LabelledAlerts = list[tuple[AlertRow, Mapping[str, str]]]


def anchor(prefix: str, *parts: str) -> str:
    """A stable element id made only of [a-z0-9-], whatever the parts hold."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogateescape"),
                             digest_size=6).hexdigest()
    return f"{prefix}-{digest}"


def rule_anchor(group: RuleGroupView, index: int) -> str:
    return anchor("rule", group.file, group.name, str(index))


def _summary(annotations: Iterable[tuple[str, str]]) -> str:
    found = dict(annotations)
    return found.get("summary") or found.get("description") or ""


def _without_name(labels: Iterable[tuple[str, str]]) -> LabelPairs:
    return tuple(sorted((k, v) for k, v in labels if k not in ("alertname", "__name__")))


# -- rules --------------------------------------------------------------------------------------


def rule_groups(groups: Sequence[RuleGroupView]) -> tuple[RuleGroupRow, ...]:
    out = []
    for group in groups:
        rows = []
        healths = list(group.health)
        for index, rule in enumerate(group.rules):
            health = healths[index] if index < len(healths) else None
            row = RuleRow(
                name=rule.name, kind="recording", expr=rule.expr_text,
                anchor=rule_anchor(group, index), labels=tuple(rule.labels.items()),
                health=health.health if health is not None else "unknown",
                last_error=health.last_error if health is not None else "",
                last_evaluation=health.last_evaluation if health is not None else 0.0)
            if isinstance(rule, AlertingRuleView):
                alerts = active_alerts(rule)
                state = max((a.state.label for a in alerts),
                            key=lambda s: _STATE_RANK.get(s, 0), default="inactive")
                row = dataclasses.replace(
                    row, kind="alerting", for_s=rule.for_ms / 1000,
                    keep_firing_for_s=rule.keep_firing_for_ms / 1000,
                    annotations=tuple(rule.annotations.items()), state=state,
                    active=len(alerts))
            rows.append(row)
        out.append(RuleGroupRow(name=group.name, file=group.file,
                                interval_s=group.interval_ms / 1000, rules=tuple(rows),
                                last_evaluation=group.last_evaluation,
                                last_duration_s=group.last_duration_s))
    return tuple(out)


def rule_alerts(groups: Sequence[RuleGroupView]) -> LabelledAlerts:
    """The rules' pending and firing alerts (as `/api/v1/alerts` lists them), each with its
    full label set."""
    out: LabelledAlerts = []
    for group in groups:
        for index, rule in enumerate(group.rules):
            if not isinstance(rule, AlertingRuleView):
                continue
            for alert in active_alerts(rule):
                state = alert.state.label
                if state not in ("firing", "pending"):
                    continue
                labels = dict(alert.labels)
                out.append((AlertRow(
                    name=labels.get("alertname", rule.name),
                    state="firing" if state == "firing" else "pending",
                    labels=_without_name(alert.labels), active_since=alert.active_at / 1000,
                    value=alert.value, summary=_summary(alert.annotations), origin="rule",
                    link=f"/rules#{rule_anchor(group, index)}"), labels))
    return out


# -- alerts, silences -----------------------------------------------------------------------


def dispatcher_alert(alert: NotifyAlert, *, budget_links: Mapping[str, str],
                     slo_links: Mapping[str, str], rule_links: Mapping[str, str]) -> AlertRow:
    """A firing alert that only the dispatcher holds: a budget's, an SLO's, or one of a rule
    no longer loaded that is lapsing."""
    labels = alert.labels
    origin: AlertOrigin
    if alert.name in BUDGET_ALERTS and labels.get("budget") in budget_links:
        origin, link = "budget", budget_links[labels["budget"]]
    elif labels.get(LABEL_ID) in slo_links:
        origin, link = "slo", slo_links[labels[LABEL_ID]]
    elif alert.name in rule_links:
        origin, link = "rule", rule_links[alert.name]
    else:
        origin, link = "other", ""
    return AlertRow(name=alert.name, state="firing", labels=_without_name(labels.items()),
                    active_since=alert.starts_at, value=None,
                    summary=_summary(alert.annotations.items()), origin=origin, link=link)


def _silence_rows(notify: NotifyService, now: float) -> tuple[SilenceRow, ...]:
    shown = [s for s in notify.silences.silences.values() if s.state(now) != "expired"]
    shown.sort(key=lambda s: listing_order(s, now))
    return tuple(SilenceRow(id=s.id, state=s.state(now), matchers=tuple(str(m) for m in s.matchers),
                            starts_at=s.starts_at, ends_at=s.ends_at, comment=s.comment,
                            created_by=s.created_by) for s in shown)


# -- the metric store ---------------------------------------------------------------------------


def _values(store: MetricStore, spec: FamilySpec) -> dict[LabelKey, float]:
    family = store.family(store.full_name(spec))
    if family is None:
        return {}
    return {key: series.value for key, series in list(family.series.items())
            if isinstance(series, CounterSeries | GaugeSeries)}


def _by(values: Mapping[LabelKey, float], *names: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for key, value in values.items():
        labels = dict(key)
        out[tuple(labels.get(name, "") for name in names)] = value
    return out


def _window_order(window: str) -> tuple[float, str]:
    try:
        return parse_duration(window), window
    except ValueError:
        return math.inf, window


def slo_rows(slos: SloService, store: MetricStore,
             alerts: LabelledAlerts) -> tuple[SloRow, ...]:
    remaining = _by(_values(store, fam.SLO_BUDGET_REMAINING), "slo")
    exhaustion = _by(_values(store, fam.SLO_EXHAUSTION), "slo")
    burn = _by(_values(store, fam.SLO_BURN_RATE), "slo", "window")
    out = []
    for slo_id, tracked in slos.slos.items():
        slo = tracked.slo
        rates = sorted(((window, rate) for (sid, window), rate in burn.items() if sid == slo_id),
                       key=lambda item: _window_order(item[0]))
        firing = sorted({row.name for row, labels in alerts if labels.get(LABEL_ID) == slo_id})
        out.append(SloRow(id=slo_id, anchor=anchor("slo", slo_id), service=slo.service,
                          name=slo.name, objective_ratio=slo.objective_ratio,
                          time_window_s=slo.time_window_s,
                          remaining_ratio=remaining.get((slo_id,)),
                          burn_rates=tuple(rates), exhaustion_s=exhaustion.get((slo_id,)),
                          firing=tuple(firing)))
    return tuple(out)


def budget_rows(budgets: BudgetTracker,
                alerts: LabelledAlerts) -> tuple[BudgetRow, ...]:
    out = []
    for name, state in budgets.budgets.items():
        limit = state.config.limit
        # The forecast is never below the spend so far; before the first evaluation it is
        # not computed yet.
        forecast = max(state.forecast, state.spent)
        firing = sorted({row.name for row, labels in alerts
                         if row.origin == "budget" and labels.get("budget") == name})
        out.append(BudgetRow(
            name=name, anchor=anchor("budget", name), period=state.config.period,
            period_label=state.period.label, period_end=state.period.end,
            currency=budgets.config.currency, spent=float(state.spent), limit=float(limit),
            forecast=float(forecast), thresholds=tuple(float(t) for t in state.config.thresholds),
            spent_text=show(state.spent), limit_text=show(limit), forecast_text=show(forecast),
            firing=tuple(firing)))
    return tuple(out)


def source_rows(daemon: Daemon) -> tuple[SourceRow, ...]:
    if daemon.ingest is None:
        return ()
    store = daemon.store
    lag = _by(_values(store, fam.LOG_LAG_BYTES), "source")
    files = _by(_values(store, fam.LOG_FILES), "source")
    lines = _by(_values(store, fam.LOG_LINES), "source", "result")
    errors = _by(_values(store, fam.LOG_READ_ERRORS), "source")
    out = []
    for name, runtime in sorted(daemon.ingest.runtimes.items()):
        out.append(SourceRow(
            name=name, schema=runtime.config.log_schema, ready=runtime.ready,
            lag_bytes=lag.get((name,)), files=files.get((name,)),
            parsed=lines.get((name, "parsed"), 0.0), malformed=lines.get((name, "malformed"), 0.0),
            oversized=lines.get((name, "oversized"), 0.0),
            filtered=lines.get((name, "filtered"), 0.0), read_errors=errors.get((name,), 0.0)))
    return tuple(out)


def gpu_rows(store: MetricStore) -> tuple[GpuRow, ...]:
    """One row per (gpu, uuid) any GPU family reports, by index."""
    families = {spec.name: _by(_values(store, spec), "gpu", "uuid") for spec in (
        fam.GPU_UP, fam.GPU_UTILIZATION, fam.GPU_MEMORY_USED, fam.GPU_MEMORY_TOTAL,
        fam.GPU_TEMPERATURE, fam.GPU_POWER)}
    info = _by(_values(store, fam.GPU_INFO), "gpu", "uuid", "name", "driver_version")
    names = {(gpu, uuid): (name, driver) for gpu, uuid, name, driver in info}
    devices: set[tuple[str, str]] = set(names)
    for values in families.values():
        devices.update((gpu, uuid) for gpu, uuid in values)

    def order(device: tuple[str, str]) -> tuple[int, str, str]:
        gpu, uuid = device
        # isdigit() also holds for "²", which int() refuses; so does a 5000-digit string.
        plain = gpu.isascii() and gpu.isdigit() and len(gpu) <= 9
        return (int(gpu) if plain else 1 << 30, gpu, uuid)

    out = []
    for device in sorted(devices, key=order):
        up = families[fam.GPU_UP.name].get(device)
        name, driver = names.get(device, ("", ""))
        out.append(GpuRow(
            gpu=device[0], uuid=device[1], name=name, driver_version=driver,
            up=None if up is None or math.isnan(up) else up >= 1,
            utilization_ratio=families[fam.GPU_UTILIZATION.name].get(device),
            memory_used_bytes=families[fam.GPU_MEMORY_USED.name].get(device),
            memory_total_bytes=families[fam.GPU_MEMORY_TOTAL.name].get(device),
            temperature_celsius=families[fam.GPU_TEMPERATURE.name].get(device),
            power_watts=families[fam.GPU_POWER.name].get(device)))
    return tuple(out)


# -- the snapshot -------------------------------------------------------------------------------


class DaemonStatus:
    """Implements monitor.api.status_model.StatusSource over a started `Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.started_at = daemon.clock.time()
        self._started_monotonic = daemon.clock.monotonic()

    def snapshot(self) -> StatusSnapshot:
        daemon = self.daemon
        now = daemon.clock.time()
        notes: list[str] = []

        def section(name: str, read: Callable[[], T], empty: T) -> T:
            try:
                return read()
            except Exception as exc:  # one unreadable section must not take the page down
                log.warning("status page: cannot read %s", name, exc_info=True)
                notes.append(f"{name}: {type(exc).__name__}: {exc}")
                return empty

        groups: Sequence[RuleGroupView] = daemon.rules.groups if daemon.rules else []
        rule_rows: tuple[RuleGroupRow, ...] = section("rules", lambda: rule_groups(groups), ())
        alerts = section("rule alerts", lambda: rule_alerts(groups), LabelledAlerts())
        budgets = daemon.budgets
        slos = daemon.slos
        budget_links = {name: f"/#{anchor('budget', name)}"
                        for name in (budgets.budgets if budgets is not None else {})}
        slo_links = {slo_id: f"/#{anchor('slo', slo_id)}"
                     for slo_id in (slos.slos if slos is not None else {})}
        rule_links = {rule.name: f"/rules#{rule.anchor}" for group in reversed(rule_rows)
                      for rule in reversed(group.rules) if rule.kind == "alerting"}
        silences: tuple[SilenceRow, ...] = ()
        notify = daemon.notify
        if notify is not None:
            def others() -> LabelledAlerts:
                assert notify is not None
                known = {fingerprint(labels) for _, labels in alerts}
                return [(dispatcher_alert(alert, budget_links=budget_links,
                                          slo_links=slo_links, rule_links=rule_links),
                         alert.labels)
                        for alert in list(notify.dispatcher.alerts.values())
                        if not alert.resolved_at(now) and alert.fingerprint not in known]

            alerts = alerts + section("budget and SLO alerts", others, LabelledAlerts())
            silences = section("silences", lambda: _silence_rows(notify, now), ())
        alerts.sort(key=lambda item: (-_STATE_RANK[item[0].state], item[0].name,
                                      item[0].labels))
        shown = alerts[:MAX_ALERTS_SHOWN]
        if notify is not None:
            shown = section("silences of alerts",
                            lambda: [(self._suppression(row, labels, now), labels)
                                     for row, labels in shown], shown)
        budget_list: tuple[BudgetRow, ...] = () if budgets is None else section(
            "budgets", lambda: budget_rows(budgets, alerts), ())
        slo_list: tuple[SloRow, ...] = () if slos is None else section(
            "SLOs", lambda: slo_rows(slos, daemon.store, alerts), ())
        daemon_row = section("daemon", lambda: self._daemon_row(now), DaemonRow(
            version=__version__, state="unknown", started_at=self.started_at,
            uptime_s=math.nan, ready=False))
        return StatusSnapshot(
            taken_at=now, timezone=daemon.config.cost.timezone, daemon=daemon_row,
            alerts=tuple(row for row, _ in shown), alerts_left_out=len(alerts) - len(shown),
            rule_groups=rule_rows, silences=silences,
            budgets=budget_list, slos=slo_list,
            sources=section("sources", lambda: source_rows(daemon), ()),
            gpus=section("GPUs", lambda: gpu_rows(daemon.store), ()),
            notes=tuple(notes))

    def _suppression(self, row: AlertRow, labels: Mapping[str, str], now: float) -> AlertRow:
        """Whether a silence or an inhibition mutes it, decided as `/api/v2/alerts` does."""
        notify = self.daemon.notify
        if notify is None:
            return row
        silenced_by = tuple(notify.silences.mutes(labels, now))
        dispatcher = notify.dispatcher
        inhibited = bool(dispatcher.inhibitor.inhibited_by(labels,
                                                           dispatcher.alerts.values(), now))
        if not silenced_by and not inhibited:
            return row
        return dataclasses.replace(row, silenced_by=silenced_by, inhibited=inhibited)

    def _daemon_row(self, now: float) -> DaemonRow:
        daemon = self.daemon
        ready = daemon.is_ready()
        return DaemonRow(version=__version__, state=daemon.state.value,
                         started_at=self.started_at,
                         uptime_s=daemon.clock.monotonic() - self._started_monotonic,
                         ready=ready,
                         catching_up=() if ready else tuple(daemon.sources_catching_up()),
                         listen_url=daemon.listen_url,
                         ledger_writer=daemon.ledger_writer_status())
