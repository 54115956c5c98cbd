"""The SLO service (monitor/slo/service.py) over a real series store, engine and state file,
on a FakeClock: minute counts equal the counters' increases, a raw SLI, a gap counted as
neither good nor bad, a restart that neither double counts nor loses a minute, the page alert
fired and resolved through `notify_put`, and the SLO metrics."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.clock import FakeClock
from monitor.metrics.store import MetricStore
from monitor.notify.model import NotifyAlert
from monitor.promql.engine import Engine
from monitor.promql.values import labels_from
from monitor.slo.model import Slo
from monitor.slo.service import SloService
from monitor.slo.spec import parse_slo_file
from monitor.storage import StateStore
from monitor.tsdb.store import SeriesStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, minute 29_453_760
M0 = int(T0 // 60)
SPEC = textwrap.dedent("""\
    version: "prometheus/v1"
    service: "svc"
    labels:
      team: core
    slos:
      - name: "avail"
        objective: 99.9
        sli:
          events:
            error_query: sum(rate(req_total{status="error"}[{{.window}}]))
            total_query: sum(rate(req_total[{{.window}}]))
        alerting:
          name: SvcAvailability
          labels:
            category: availability
          page_alert:
            labels:
              severity: page
          ticket_alert:
            labels:
              severity: ticket
      - name: "quality"
        objective: 95
        sli:
          raw:
            error_ratio_query: avg_over_time(bad_ratio[{{.window}}])
        alerting:
          page_alert:
            disable: true
          ticket_alert:
            disable: true
""")


def slos() -> list[Slo]:
    return list(parse_slo_file(SPEC, file="/slos/svc.yml").slos)


class Rig:
    """Counters `req_total{status}` growing linearly inside each minute, sampled every 15 s,
    and a gauge `bad_ratio`; one service ticking a second after each minute closes."""

    def __init__(self, tmp_path: Path, *, series: SeriesStore | None = None,
                 clock: FakeClock | None = None) -> None:
        self.tmp_path = tmp_path
        self.clock = clock or FakeClock(T0)
        self.series = series or SeriesStore(retention_ms=10**12)
        self.engine = Engine(self.series)
        self.metrics = MetricStore()
        self.state = StateStore(tmp_path / "state")
        self.sent: list[NotifyAlert] = []
        self.service = self.new_service()
        self.counts = {"ok": 0.0, "error": 0.0}
        self.minute = M0  # the last minute fed (its end is the clock's whole minute)

    def new_service(self) -> SloService:
        service = SloService(slos(), state=self.state, store=self.metrics, engine=self.engine,
                             clock=self.clock, notify_put=self.sent.extend)
        service.load()
        return service

    def restart(self) -> None:
        self.state.close()
        self.state = StateStore(self.tmp_path / "state")
        self.metrics = MetricStore()
        self.clock.advance(0.5)
        self.service = self.new_service()

    def feed(self, errors: float, ok: float, *, bad_ratio: float = 0.0,
             tick: bool = True) -> None:
        """One minute: `errors` and `ok` requests spread evenly over it, then a tick."""
        start = self.minute * 60
        for step in (15, 30, 45, 60):
            t_ms = (start + step) * 1000
            for status, per_minute in (("error", errors), ("ok", ok)):
                value = self.counts[status] + per_minute * step / 60
                self.series.append(labels_from({"__name__": "req_total", "status": status}),
                                   t_ms, value)
            self.series.append(labels_from({"__name__": "bad_ratio"}), t_ms, bad_ratio)
        self.counts["error"] += errors
        self.counts["ok"] += ok
        self.minute += 1
        self.silent(0, tick=tick)

    def silent(self, minutes: int, *, tick: bool = True) -> None:
        """`minutes` without samples; the clock ends a second past the minute."""
        self.minute += minutes
        self.clock.advance(self.minute * 60 + 1 - self.clock.time())
        if tick:
            self.service.tick()

    def rows(self, slo: str) -> dict[int, tuple[float, float]]:
        return {m: (e, t) for m, e, t in self.state.connection.execute(
            "SELECT minute, errors, total FROM slo_minutes WHERE slo = ?", (slo,))}

    def gauge(self, name: str, **labels: str) -> float | None:
        family = self.metrics.family(f"inferwatch_{name}")
        assert family is not None
        for key, series in family.series.items():
            if dict(key) == labels:
                return float(series.value)  # type: ignore[union-attr]
        return None


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_slo_ids() -> None:
    assert [s.id for s in slos()] == ["svc-avail", "svc-quality"]


def test_minute_counts_equal_the_counter_increases(rig: Rig) -> None:
    truth = {}
    for i in range(12):
        errors, ok = float(i % 3), 100.0 + 7 * i
        rig.feed(errors, ok)
        truth[rig.minute] = (errors, errors + ok)
    rows = rig.rows("svc-avail")
    assert sorted(rows) == sorted(truth)
    for minute, (errors, total) in truth.items():
        assert rows[minute] == pytest.approx((errors, total), rel=1e-9, abs=1e-9)
    state = rig.service.slos["svc-avail"].budget.evaluate(rig.minute)
    assert state.windows["1h"].total == pytest.approx(sum(t for _, t in truth.values()))
    assert state.windows["1h"].errors == pytest.approx(sum(e for e, _ in truth.values()))


def test_a_second_tick_in_the_same_minute_counts_nothing_twice(rig: Rig) -> None:
    rig.feed(1, 99)
    rig.service.tick()
    rig.service.tick()
    totals = rig.service.slos["svc-avail"].budget.buckets.totals(60)
    assert (totals.errors, totals.total) == pytest.approx((1, 100))


def test_a_raw_sli_records_its_ratio_with_a_total_of_one(rig: Rig) -> None:
    # Each ratio holds for two minutes: the second one's [1m] range sees it alone.
    for ratio in (0.1, 0.1, 0.3, 0.3):
        rig.feed(0, 10, bad_ratio=ratio)
    rows = rig.rows("svc-quality")
    assert len(rows) == 4
    assert rows[M0 + 2] == pytest.approx((0.1, 1))
    assert rows[M0 + 4] == pytest.approx((0.3, 1))
    ratios = [errors for errors, _ in rows.values()]
    assert rig.gauge("slo_sli_error_ratio", slo="svc-quality", window="5m") == \
        pytest.approx(sum(ratios) / 4)


def test_a_gap_is_neither_good_nor_bad(rig: Rig) -> None:
    for _ in range(10):
        rig.feed(1, 99)
    gap_start = rig.minute + 1
    rig.silent(60)  # the daemon (or the traffic's log) was silent for an hour
    for _ in range(10):
        rig.feed(3, 97)
    rows = rig.rows("svc-avail")
    assert len(rows) == 20
    assert not any(gap_start <= m < gap_start + 60 for m in rows)
    day = rig.service.slos["svc-avail"].budget.evaluate(rig.minute).windows["1d"]
    assert day.minutes_with_data == 20
    assert day.error_ratio == pytest.approx(40 / 2000)
    # The last hour holds the gap and the last ten minutes only.
    assert rig.gauge("slo_sli_error_ratio", slo="svc-avail", window="1h") == \
        pytest.approx(30 / 1000)


def pattern(i: int) -> tuple[float, float]:
    return float((i * 7) % 5), 50.0 + (i * 13) % 17


def test_a_restart_continues_without_double_counting(tmp_path: Path) -> None:
    straight = Rig(tmp_path / "a")
    for i in range(30):
        straight.feed(*pattern(i))
    restarted = Rig(tmp_path / "b")
    for i in range(30):
        restarted.feed(*pattern(i))
        if i in (9, 20):
            restarted.service.tick()  # a tick before the restart, twice for good measure
            restarted.restart()
    a_rows, b_rows = straight.rows("svc-avail"), restarted.rows("svc-avail")
    assert sorted(b_rows) == sorted(a_rows)
    assert [v for m in sorted(b_rows) for v in b_rows[m]] == \
        pytest.approx([v for m in sorted(a_rows) for v in a_rows[m]])
    a = straight.service.slos["svc-avail"].budget.evaluate(straight.minute)
    b = restarted.service.slos["svc-avail"].budget.evaluate(restarted.minute)
    for label, reading in a.windows.items():
        assert (b.windows[label].errors, b.windows[label].total,
                b.windows[label].minutes_with_data) == pytest.approx(
                    (reading.errors, reading.total, reading.minutes_with_data))
    assert restarted.gauge("slo_error_budget_remaining_ratio", slo="svc-avail") == \
        pytest.approx(straight.gauge("slo_error_budget_remaining_ratio", slo="svc-avail"))


def test_the_minutes_of_a_restart_gap_have_no_data(rig: Rig) -> None:
    for _ in range(5):
        rig.feed(0, 100)
    rig.silent(10, tick=False)
    rig.restart()  # after ten minutes down: the in-memory series store starts empty
    for _ in range(3):
        rig.feed(0, 100)
    assert len(rig.rows("svc-avail")) == 5 + 3


def page_alerts(sent: list[NotifyAlert]) -> list[NotifyAlert]:
    return [a for a in sent if a.labels.get("sloth_severity") == "page"]


def test_the_page_alert_fires_and_resolves_through_notify_put(rig: Rig) -> None:
    for _ in range(120):
        rig.feed(0, 1000)
    assert rig.sent == []
    fired_at = None
    for _ in range(70):  # 2 % errors: 20 x the 0.1 % budget
        rig.feed(20, 980)
        if fired_at is None and page_alerts(rig.sent):
            fired_at = rig.minute
    assert fired_at is not None
    # 5m above 1.44 % at once; the 1h ratio passes 1.44 % after 44 minutes of it.
    assert fired_at - (M0 + 120) == 44
    first = page_alerts(rig.sent)[0]
    assert first.labels == {
        "alertname": "SvcAvailability", "sloth_id": "svc-avail", "sloth_service": "svc",
        "sloth_slo": "avail", "sloth_severity": "page", "severity": "page",
        "category": "availability", "team": "core"}
    assert first.annotations["title"] == "(page) svc avail SLO error budget burn rate is too fast."
    assert first.starts_at == fired_at * 60
    assert first.ends_at is not None and first.ends_at > first.starts_at + 60
    rig.sent.clear()
    resolved = None
    for _ in range(60):
        rig.feed(0, 1000)
        ended = [a for a in page_alerts(rig.sent) if a.ends_at is not None
                 and a.ends_at <= rig.clock.time()]
        if ended:
            resolved = ended
            break
        rig.sent.clear()
    assert resolved is not None and len(resolved) == 1
    assert resolved[0].starts_at == fired_at * 60
    assert resolved[0].ends_at == rig.clock.time()
    assert resolved[0].fingerprint == first.fingerprint
    rig.sent.clear()
    rig.feed(0, 1000)
    assert page_alerts(rig.sent) == []


def test_an_active_alert_survives_a_restart_without_firing_again(rig: Rig) -> None:
    for _ in range(10):
        rig.feed(50, 950)  # 5 %: everything fires
    since = page_alerts(rig.sent)[0].starts_at
    rig.restart()
    rig.sent.clear()
    rig.feed(50, 950)
    (again,) = page_alerts(rig.sent)
    assert again.starts_at == since and again.ends_at is not None \
        and again.ends_at > rig.clock.time()


def test_the_slo_metrics(rig: Rig) -> None:
    for _ in range(10):
        rig.feed(1, 999)
    assert rig.gauge("slo_objective_ratio", slo="svc-avail") == pytest.approx(0.999)
    assert rig.gauge("slo_objective_ratio", slo="svc-quality") == pytest.approx(0.95)
    assert rig.gauge("slo_sli_error_ratio", slo="svc-avail", window="5m") == \
        pytest.approx(0.001)
    assert rig.gauge("slo_burn_rate", slo="svc-avail", window="30d") == pytest.approx(1.0)
    assert rig.gauge("slo_error_budget_remaining_ratio", slo="svc-avail") == \
        pytest.approx(0.0, abs=1e-9)
    assert rig.gauge("slo_error_budget_exhaustion_seconds", slo="svc-avail") == 0.0
    # No errors at all: the budget is never exhausted, and the series is absent.
    assert rig.gauge("slo_error_budget_exhaustion_seconds", slo="svc-quality") is None
    assert rig.gauge("slo_error_budget_remaining_ratio", slo="svc-quality") == 1.0


def test_a_removed_slo_resolves_its_alerts_and_drops_its_series(rig: Rig) -> None:
    for _ in range(10):
        rig.feed(50, 950)
    rig.sent.clear()
    rig.service.configure([s for s in slos() if s.id != "svc-avail"])
    rig.feed(0, 100)
    ended = [a for a in rig.sent if a.labels.get("sloth_id") == "svc-avail"]
    assert ended and all(a.ends_at is not None and a.ends_at <= rig.clock.time()
                         for a in ended)
    assert rig.gauge("slo_objective_ratio", slo="svc-avail") is None
    assert rig.state.connection.execute(
        "SELECT COUNT(*) FROM slo_alerts WHERE slo = 'svc-avail'").fetchone() == (0,)


def test_prune_keeps_the_window_and_three_days(rig: Rig) -> None:
    rig.feed(0, 10)
    rig.silent(34 * 1440, tick=False)
    assert rig.service.prune() == 2
    assert rig.rows("svc-avail") == {}


def test_a_reload_keeps_the_counts_of_an_slo_with_the_same_id(rig: Rig) -> None:
    for _ in range(5):
        rig.feed(1, 99)
    changed = [Slo(**{**vars(s), "objective": 99.0}) if s.id == "svc-avail" else s
               for s in slos()]
    rig.service.configure(changed)
    rig.feed(1, 99)
    totals = rig.service.slos["svc-avail"].budget.buckets.totals(60)
    assert (totals.errors, totals.total) == pytest.approx((6, 600))
    assert rig.gauge("slo_objective_ratio", slo="svc-avail") == pytest.approx(0.99)
