"""The daemon's status snapshot from its parts (monitor/status_snapshot.py): rule groups seen
through the API's views, GPUs and sources from the metric store (partial, NaN, absent),
dispatcher-only alerts linked to their budget or SLO, stable anchors, and a section that
cannot be read becoming a note instead of an error. The live daemon is in
tests/test_daemon_status_page.py."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from status_page_checks import SCRIPT, assert_no_injected_markup

from monitor.api.status import render_status
from monitor.clock import FakeClock
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.notify.model import NotifyAlert
from monitor.promql.values import Labels
from monitor.status_snapshot import (
    MAX_ALERTS_SHOWN,
    DaemonStatus,
    anchor,
    dispatcher_alert,
    gpu_rows,
    rule_alerts,
    rule_groups,
)

# -- stand-ins for the views of monitor/api/prom_rules.py ---------------------------------------


@dataclass
class State:
    label: str


@dataclass
class Alert:
    labels: Labels
    state: State
    active_at: int
    value: float
    annotations: Labels = ()
    resolved_at: int | None = None
    keep_firing_since: int | None = None


@dataclass
class AlertingRule:
    name: str
    expr_text: str
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    active: Mapping[Labels, Alert] = field(default_factory=dict)


@dataclass
class RecordingRule:
    name: str
    expr_text: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Health:
    health: str = "ok"
    last_error: str = ""
    last_evaluation: float = 1.0
    duration_s: float = 0.001


@dataclass
class Group:
    name: str
    file: str
    rules: Sequence[AlertingRule | RecordingRule]
    health: Sequence[Health]
    interval_ms: int = 15_000
    limit: int = 0
    last_evaluation: float = 1.0
    last_duration_s: float = 0.002


def _alert(name: str, state: str, value: float, **labels: str) -> Alert:
    pairs = tuple(sorted({"alertname": name, **labels}.items()))
    return Alert(labels=pairs, state=State(state), active_at=1_000_000, value=value,
                 annotations=(("summary", f"{name} is {value}"),))


def test_rule_groups_and_their_alerts_link_to_stable_anchors() -> None:
    firing = _alert("Hot", "firing", 2.5, service=SCRIPT)
    pending = _alert("Hot", "pending", 1.0, service="b")
    resolved = _alert("Hot", "inactive", 0.0, service="c")
    resolved.resolved_at = 2_000_000
    hot = AlertingRule("Hot", "x > 1", for_ms=60_000, labels={"severity": "page"},
                       active={a.labels: a for a in (firing, pending, resolved)})
    group = Group("g", "/rules/a.yml", [RecordingRule("r:sum", "sum(x)"), hot],
                  [Health(), Health("err", "boom")])
    rows = rule_groups([group])
    assert [r.kind for r in rows[0].rules] == ["recording", "alerting"]
    record, alerting = rows[0].rules
    assert alerting.state == "firing" and alerting.active == 2 and alerting.for_s == 60.0
    assert alerting.health == "err" and alerting.last_error == "boom"
    assert re.fullmatch(r"rule-[0-9a-f]{12}", alerting.anchor)
    assert record.anchor != alerting.anchor
    assert rule_groups([group])[0].rules[1].anchor == alerting.anchor  # stable

    alerts = rule_alerts([group])
    assert [(row.state, row.value) for row, _ in alerts] == [("firing", 2.5), ("pending", 1.0)]
    row, labels = alerts[0]
    assert row.name == "Hot" and row.labels == (("service", SCRIPT),)
    assert labels["alertname"] == "Hot" and row.summary == "Hot is 2.5"
    assert row.link == f"/rules#{alerting.anchor}" and row.active_since == 1000.0


def test_a_group_with_fewer_health_entries_than_rules_reads_as_unknown() -> None:
    group = Group("g", "f", [RecordingRule("a", "1"), RecordingRule("b", "2")], [Health()])
    assert [r.health for r in rule_groups([group])[0].rules] == ["ok", "unknown"]


def test_dispatcher_alerts_link_to_their_budget_or_slo() -> None:
    links = {"budget_links": {"daily": "/#budget-1"}, "slo_links": {"svc-avail": "/#slo-1"},
             "rule_links": {"Gone": "/rules#rule-1"}}
    budget = dispatcher_alert(NotifyAlert({"alertname": "BudgetThresholdCrossed",
                                           "budget": "daily", "threshold": "0.5"},
                                          {"summary": "half"}, 100.0), **links)
    assert (budget.origin, budget.link, budget.summary) == ("budget", "/#budget-1", "half")
    assert budget.labels == (("budget", "daily"), ("threshold", "0.5"))
    slo = dispatcher_alert(NotifyAlert({"alertname": "SvcHighErrorRate",
                                        "sloth_id": "svc-avail"}, {}, 100.0), **links)
    assert (slo.origin, slo.link, slo.value) == ("slo", "/#slo-1", None)
    lapsing = dispatcher_alert(NotifyAlert({"alertname": "Gone"}, {}, 100.0), **links)
    assert (lapsing.origin, lapsing.link) == ("rule", "/rules#rule-1")
    unknown = dispatcher_alert(NotifyAlert({"alertname": "BudgetThresholdCrossed",
                                            "budget": "removed"}, {}, 100.0), **links)
    assert (unknown.origin, unknown.link) == ("other", "")


def test_anchors_are_ids_whatever_the_name() -> None:
    for name in (SCRIPT, "", "a b", "日本"):
        assert re.fullmatch(r"budget-[0-9a-f]{12}", anchor("budget", name))
    assert anchor("budget", "a") != anchor("budget", "b")


def test_gpus_from_partial_and_odd_series() -> None:
    store = MetricStore()
    assert gpu_rows(store) == ()
    info = store.register(fam.GPU_INFO)
    info.set(info.key(("0", "GPU-a", f"H100 {SCRIPT}", "550")), 1.0)
    up = store.register(fam.GPU_UP)
    up.set(up.key(("0", "GPU-a")), 1.0)
    up.set(up.key(("10", "GPU-c")), 0.0)  # lost: no info, no other series
    util = store.register(fam.GPU_UTILIZATION)
    util.set(util.key(("0", "GPU-a")), math.nan)
    used, total = store.register(fam.GPU_MEMORY_USED), store.register(fam.GPU_MEMORY_TOTAL)
    used.set(used.key(("0", "GPU-a")), 8.0)
    total.set(total.key(("0", "GPU-a")), 16.0)
    temperature = store.register(fam.GPU_TEMPERATURE)
    temperature.set(temperature.key(("2", "GPU-b")), 70.0)
    rows = gpu_rows(store)
    assert [(r.gpu, r.uuid) for r in rows] == [("0", "GPU-a"), ("2", "GPU-b"), ("10", "GPU-c")]
    first, second, third = rows
    assert first.name == f"H100 {SCRIPT}" and first.up is True and first.driver_version == "550"
    assert math.isnan(first.utilization_ratio or 0.0) and first.memory_used_bytes == 8.0
    assert second.up is None and second.name == "" and second.temperature_celsius == 70.0
    assert third.up is False and third.memory_total_bytes is None


class _BrokenIngest:
    @property
    def runtimes(self) -> dict[str, Any]:
        raise RuntimeError("the tailers are gone")


def _stand_in_daemon(store: MetricStore, ingest: object) -> Any:
    clock = FakeClock()
    return SimpleNamespace(
        clock=clock, store=store, rules=None, notify=None, budgets=None, slos=None,
        ingest=ingest, config=SimpleNamespace(cost=SimpleNamespace(timezone="UTC")),
        state=SimpleNamespace(value="running"), listen_url="http://127.0.0.1:1",
        is_ready=lambda: False, sources_catching_up=lambda: ["inference"],
        ledger_writer_status=lambda: "")


def test_a_section_that_fails_is_a_note_and_the_rest_still_renders() -> None:
    store = MetricStore()
    up = store.register(fam.GPU_UP)
    up.set(up.key(("0", "GPU-a")), 1.0)
    daemon = _stand_in_daemon(store, _BrokenIngest())
    status = DaemonStatus(daemon)
    daemon.clock.advance(90)
    snapshot = status.snapshot()
    assert snapshot.sources == ()
    assert snapshot.notes == ("sources: RuntimeError: the tailers are gone",)
    assert len(snapshot.gpus) == 1 and snapshot.daemon.uptime_s == 90.0
    assert snapshot.daemon.catching_up == ("inference",) and not snapshot.daemon.ready
    html = render_status(snapshot)
    assert_no_injected_markup(html)
    assert "the tailers are gone" in html and "GPU 0" in html


def test_a_daemon_with_nothing_configured_renders_its_empty_states() -> None:
    snapshot = DaemonStatus(_stand_in_daemon(MetricStore(), None)).snapshot()
    assert (snapshot.alerts, snapshot.rule_groups, snapshot.budgets, snapshot.slos,
            snapshot.sources, snapshot.gpus, snapshot.notes) == ((),) * 7
    assert "No alert is firing." in render_status(snapshot)


def test_past_the_cap_alerts_are_counted_not_shown() -> None:
    many = {a.labels: a for a in (_alert("Many", "firing" if i % 2 else "pending", float(i),
                                         series=str(i)) for i in range(MAX_ALERTS_SHOWN + 7))}
    group = Group("g", "f", [AlertingRule("Many", "x", active=many)], [Health()])
    daemon = _stand_in_daemon(MetricStore(), None)
    daemon.rules = SimpleNamespace(groups=[group])
    snapshot = DaemonStatus(daemon).snapshot()
    assert len(snapshot.alerts) == MAX_ALERTS_SHOWN and snapshot.alerts_left_out == 7
    assert snapshot.alerts[0].state == "firing" and snapshot.alerts[-1].state == "pending"
    html = render_status(snapshot)
    assert "7 more alerts not shown" in html
    assert html.count('id="alert-Many"') == 1


def test_gpu_indexes_that_are_not_plain_numbers_sort_last() -> None:
    # "²".isdigit() holds but int("²") raises, and int() refuses more than 4300 digits: either
    # once emptied the whole GPU section.
    store = MetricStore()
    up = store.register(fam.GPU_UP)
    for gpu in ("²", "9" * 5000, "1"):
        up.set(up.key((gpu, "GPU-x")), 1.0)
    gpus = [r.gpu for r in gpu_rows(store)]  # the store may cut the long value
    assert gpus[0] == "1" and gpus[1].startswith("9" * 100) and gpus[2] == "²"
