"""Budgets (monitor/cost/budgets.py) over a real state file and the real ledger.

Requests go through the real `Ledger` (priced, written in a transaction, then `committed`,
which calls the tracker's `add` as its listener); a "restart" is a new ledger and tracker over
the same file. Every model costs 0.01 CNY per output token, so `charge("1.5")` is a request of
150 output tokens. Time is a FakeClock starting at 2026-01-10 00:00 UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.clock import FakeClock
from monitor.config import CostConfig
from monitor.cost.budgets import (
    FORECAST_ALERT,
    SURGE_ALERT,
    THRESHOLD_ALERT,
    BudgetTracker,
)
from monitor.cost.feed import LocalLedgerFeed
from monitor.cost.forecast import forecast_at
from monitor.cost.ledger import Ledger, LedgerEntry
from monitor.cost.pricing import PriceTable
from monitor.ingest.events import RequestEvent
from monitor.metrics.store import GaugeSeries, MetricStore
from monitor.notify.model import NotifyAlert
from monitor.storage import StateStore

T0 = datetime(2026, 1, 10, tzinfo=UTC).timestamp()  # a Saturday
HOUR = 3600.0
DAY = 86_400.0

PRICES = """\
models:
  - match_regex: "."
    prices:
      - effective_from: 2020-01-01T00:00:00Z
        currency: CNY
        input_cache_hit: 0
        input_cache_miss: 0
        output: 10000
"""


class Rig:
    def __init__(self, directory: Path, budgets: Sequence[dict[str, Any]], *,
                 timezone: str = "UTC", start: float = T0) -> None:
        self.directory = directory
        price_file = directory / "prices.yml"
        price_file.write_text(PRICES)
        self.table = PriceTable.load([str(price_file)], bundled=False)
        self.config = CostConfig.model_validate(
            {"currency": "CNY", "timezone": timezone, "budgets": list(budgets)})
        self.clock = FakeClock(start)
        self.start()

    def start(self) -> None:
        self.state = StateStore(self.directory / "state")
        self.store = MetricStore()
        self.ledger = Ledger(state=self.state, prices=self.table, config=self.config)
        self.feed = LocalLedgerFeed(self.store, self.ledger)
        self.tracker = BudgetTracker(self.config, state=self.state, store=self.store,
                                     clock=self.clock)
        self.tracker.load()
        self.charged: list[LedgerEntry] = []
        self.feed.listeners.append(self.charged.extend)
        self.feed.listeners.append(self.tracker.add)

    def restart(self) -> None:
        self.state.close()
        self.start()

    @property
    def now(self) -> float:
        return self.clock.time()

    def charge(self, amount: str, *, t: float | None = None, model: str = "chat",
               user: str = "", source: str = "api") -> None:
        tokens = Decimal(amount) * 100
        assert tokens == int(tokens)
        event = RequestEvent(
            timestamp=self.now if t is None else t, duration=1.0, ttft=None, service="",
            model=model, request_id=None, user=user or None, status=200, error_class=None,
            input_tokens=0, output_tokens=int(tokens), reasoning_tokens=None,
            cache_hit_tokens=None, cache_miss_tokens=None, throughput=None,
            reported_cost=None)
        with self.state.transaction() as cursor:
            self.feed.record(cursor, [(source, None, [event])])
        self.charged.clear()
        self.feed.recorded()
        assert [e.amount for e in self.charged] == [Decimal(amount)]

    def evaluate(self) -> list[NotifyAlert]:
        return self.tracker.evaluate(self.now)

    def gauge(self, name: str, **labels: str) -> float:
        family = self.store.family(f"inferwatch_{name}")
        assert family is not None
        series = family.series[family.key(tuple(labels.values()))]
        assert isinstance(series, GaugeSeries)
        return series.value

    def has_series(self, name: str) -> bool:
        family = self.store.family(f"inferwatch_{name}")
        return family is not None and bool(family.series)


def firing(alerts: Iterable[NotifyAlert], now: float,
           name: str | None = None) -> list[NotifyAlert]:
    return [a for a in alerts if not a.resolved_at(now) and name in (None, a.name)]


def resolved(alerts: Iterable[NotifyAlert], now: float,
             name: str | None = None) -> list[NotifyAlert]:
    return [a for a in alerts if a.resolved_at(now) and name in (None, a.name)]


def thresholds(alerts: Iterable[NotifyAlert]) -> list[str]:
    return [a.labels["threshold"] for a in alerts if a.name == THRESHOLD_ALERT]


DAILY = {"name": "daily", "period": "day", "limit": 100}


# --- thresholds --------------------------------------------------------------------------------


def test_thresholds_fire_once_each_in_order(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    rig.clock.advance(HOUR)
    rig.charge("40")
    assert rig.evaluate() == []
    rig.clock.advance(60)
    rig.charge("10")  # 50: exactly the first threshold
    alerts = rig.evaluate()
    assert thresholds(firing(alerts, rig.now)) == ["0.5"]
    (half,) = alerts
    assert half.labels == {"alertname": THRESHOLD_ALERT, "budget": "daily", "threshold": "0.5",
                           "severity": "ticket"}
    assert half.starts_at == rig.now and half.ends_at is not None and half.ends_at > rig.now
    assert "50 of 100 CNY" in half.annotations["summary"]
    assert "50 CNY" in half.annotations["description"]
    assert "day 2026-01-10" in half.annotations["description"]
    started = rig.now

    rig.clock.advance(60)
    rig.charge("60")  # 110: crosses 0.8 and 1.0 at once
    alerts = rig.evaluate()
    assert thresholds(firing(alerts, rig.now)) == ["0.5", "0.8", "1.0"]
    by_threshold = {a.labels["threshold"]: a for a in alerts}
    assert by_threshold["0.5"].starts_at == started
    assert by_threshold["0.8"].starts_at == by_threshold["1.0"].starts_at == rig.now
    assert by_threshold["1.0"].labels["severity"] == "page"
    assert by_threshold["0.8"].labels["severity"] == "ticket"

    # Still active, re-sent with a later end, never a second start.
    rig.clock.advance(600)
    rig.charge("5")
    again = rig.evaluate()
    assert thresholds(firing(again, rig.now)) == ["0.5", "0.8", "1.0"]
    assert {a.labels["threshold"]: a.starts_at for a in again} == \
        {k: a.starts_at for k, a in by_threshold.items()}
    assert all(a.ends_at is not None and a.ends_at > rig.now + 60 for a in again)
    rows = rig.state.connection.execute("SELECT count(*) FROM budget_alerts").fetchone()
    assert rows == (3,)


def test_a_restart_neither_refires_nor_forgets_thresholds(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    rig.clock.advance(HOUR)
    rig.charge("85")
    before = {a.labels["threshold"]: (a.starts_at, dict(a.annotations)) for a in rig.evaluate()}
    assert set(before) == {"0.5", "0.8"}

    rig.clock.advance(HOUR)
    rig.restart()
    after = rig.evaluate()
    assert {a.labels["threshold"]: (a.starts_at, dict(a.annotations)) for a in after} == before
    assert not resolved(after, rig.now)
    assert rig.gauge("budget_spent", budget="daily", currency="CNY") == 85.0

    rig.charge("15")
    crossed = rig.evaluate()
    assert thresholds(firing(crossed, rig.now)) == ["0.5", "0.8", "1.0"]
    assert {a.labels["threshold"]: a.starts_at for a in crossed} == {
        "0.5": before["0.5"][0], "0.8": before["0.8"][0], "1.0": rig.now}


def test_a_new_period_resolves_them_and_fires_them_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    rig.clock.advance(20 * HOUR)
    rig.charge("90")
    assert thresholds(rig.evaluate()) == ["0.5", "0.8"]

    rig.clock.advance(5 * HOUR)  # 01:00 on the 11th
    midnight = T0 + DAY
    rolled = rig.evaluate()
    assert thresholds(resolved(rolled, rig.now)) == ["0.5", "0.8"]
    # The forecast (a late burst with 4 hours left) and the surge (from nothing) end too.
    assert {(a.name, a.ends_at) for a in rolled} == {
        (THRESHOLD_ALERT, midnight), (FORECAST_ALERT, midnight), (SURGE_ALERT, rig.now)}
    assert firing(rolled, rig.now) == []
    assert rig.gauge("budget_spent", budget="daily", currency="CNY") == 0.0
    assert rig.evaluate() == []

    rig.charge("55")
    new = rig.evaluate()
    assert thresholds(firing(new, rig.now)) == ["0.5"]
    assert new[0].starts_at == rig.now


def test_a_restart_after_the_period_ended_resolves_what_was_left_firing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    rig.clock.advance(23 * HOUR)
    rig.charge("120")
    started = {a.labels["threshold"]: a.starts_at for a in rig.evaluate()
               if a.name == THRESHOLD_ALERT}
    rig.state.close()
    rig.clock.advance(2 * DAY)  # down over two midnights
    rig.start()
    alerts = [a for a in rig.evaluate() if a.name == THRESHOLD_ALERT]
    assert thresholds(resolved(alerts, rig.now)) == ["0.5", "0.8", "1.0"]
    assert {a.labels["threshold"]: a.starts_at for a in alerts} == started
    assert {a.ends_at for a in alerts} == {T0 + DAY}
    assert rig.evaluate() == []


def test_thresholds_as_configured(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [{"name": "b", "period": "day", "limit": "50",
                          "thresholds": ["0.25", "1", "1.5"]}])
    rig.clock.advance(HOUR)
    rig.charge("80")
    alerts = rig.evaluate()
    assert [(a.labels["threshold"], a.labels["severity"]) for a in alerts] == [
        ("0.25", "ticket"), ("1", "page"), ("1.5", "page")]


# --- forecast ----------------------------------------------------------------------------------


History = list[tuple[float, list[NotifyAlert]]]


def run_until(rig: Rig, end: float, step: float, spend: Callable[[float], str | None]) -> History:
    """Advance to `end` in `step`s, charging spend(t) (an amount or None) before each evaluation;
    the evaluations."""
    out: History = []
    while rig.now + step <= end + 1e-6:
        rig.clock.advance(step)
        amount = spend(rig.now)
        if amount is not None:
            rig.charge(amount)
        out.append((rig.now, rig.evaluate()))
    return out


def first_firing(history: Sequence[tuple[float, list[NotifyAlert]]], name: str) -> float | None:
    return next((t for t, alerts in history if firing(alerts, t, name)), None)


def test_a_steady_burn_that_will_exceed_fires_after_the_first_tenth(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    # 1 every 12 minutes: 5 per hour, 120 by the end of the day.
    history = run_until(rig, T0 + 4 * HOUR, 720, lambda t: "1")
    fired = first_firing(history, FORECAST_ALERT)
    assert fired == T0 + 2.4 * HOUR  # 10 % of the day
    for t, alerts in history:
        if t < fired:
            assert not firing(alerts, t, FORECAST_ALERT)
    at = dict(history)[fired]
    (alert,) = firing(at, fired, FORECAST_ALERT)
    assert alert.labels == {"alertname": FORECAST_ALERT, "budget": "daily",
                            "severity": "ticket"}
    assert alert.starts_at == fired
    assert "120 CNY" in alert.annotations["summary"]
    assert "100 CNY" in alert.annotations["summary"]
    assert "5 CNY per hour" in alert.annotations["description"]
    # Before the guard the forecast is what was spent; after it the projection.
    assert rig.gauge("budget_forecast", budget="daily", currency="CNY") == pytest.approx(120)


def test_the_forecast_is_the_spend_so_far_before_the_guard(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    run_until(rig, T0 + 2 * HOUR, 720, lambda t: "1")
    assert rig.gauge("budget_forecast", budget="daily", currency="CNY") == 10.0


def test_a_burst_in_the_first_minutes_does_not_fire(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    history = run_until(rig, T0 + 23 * HOUR, 600,
                        lambda t: "60" if t == T0 + 600 else None)
    assert first_firing(history, FORECAST_ALERT) is None
    assert thresholds(firing(history[-1][1], rig.now)) == ["0.5"]
    assert rig.gauge("budget_forecast", budget="daily", currency="CNY") == 60.0


def test_a_quiet_start_followed_by_heavy_spend_fires(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    # Nothing for 6 hours, then 10 per hour: the limit is reached at 16:00.
    history = run_until(rig, T0 + 16 * HOUR, 720,
                        lambda t: "2" if t > T0 + 6 * HOUR else None)
    fired = first_firing(history, FORECAST_ALERT)
    assert fired is not None
    assert T0 + 7 * HOUR < fired < T0 + 12 * HOUR
    spent_then = sum(2 for t, _ in history if T0 + 6 * HOUR < t <= fired)
    assert spent_then < 50  # well before the limit


def test_forecast_hysteresis_and_once_per_period(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    run_until(rig, T0 + 2.4 * HOUR, 720, lambda t: "1")
    assert firing(rig.evaluate(), rig.now, FORECAST_ALERT)
    # The burn stops: the short window drains and the forecast falls.
    seen_in_band = False
    resolved_at = None
    for _ in range(90):
        rig.clock.advance(60)
        alerts = rig.evaluate()
        forecast = rig.gauge("budget_forecast", budget="daily", currency="CNY")
        active = bool(firing(alerts, rig.now, FORECAST_ALERT))
        if forecast >= 95:
            assert active, forecast
            seen_in_band = seen_in_band or forecast < 100
        else:
            (gone,) = resolved(alerts, rig.now, FORECAST_ALERT)
            assert gone.ends_at == rig.now
            resolved_at = rig.now
            break
    assert seen_in_band and resolved_at is not None
    assert rig.evaluate() == []
    # Heavy spend again: over the limit projected, but it already fired this period.
    history = run_until(rig, T0 + 8 * HOUR, 720, lambda t: "2")
    assert rig.gauge("budget_forecast", budget="daily", currency="CNY") > 100
    assert first_firing(history, FORECAST_ALERT) is None
    # ... and a restart does not forget that.
    rig.restart()
    assert not firing(rig.evaluate(), rig.now, FORECAST_ALERT)


def test_an_active_forecast_alert_survives_a_restart_and_ends_with_the_period(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    run_until(rig, T0 + 3 * HOUR, 720, lambda t: "1")
    (alert,) = firing(rig.evaluate(), rig.now, FORECAST_ALERT)
    rig.restart()
    (again,) = firing(rig.evaluate(), rig.now, FORECAST_ALERT)
    assert again.starts_at == alert.starts_at and again.annotations == alert.annotations
    rig.clock.advance(DAY)
    (ended,) = resolved(rig.evaluate(), rig.now, FORECAST_ALERT)
    assert ended.ends_at == T0 + DAY


def test_a_monthly_forecast_uses_days_of_history(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [{"name": "monthly", "period": "month", "limit": 3000}],
              start=datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    # 5 per hour all month would be 3720.
    history = run_until(rig, rig.now + 4 * DAY, HOUR, lambda t: "5")
    fired = first_firing(history, FORECAST_ALERT)
    assert fired is not None and fired >= rig.now - 4 * DAY + 3.1 * DAY
    assert rig.gauge("budget_forecast", budget="monthly", currency="CNY") == \
        pytest.approx(3720)


# --- surge -------------------------------------------------------------------------------------

MONTHLY = {"name": "monthly", "period": "month", "limit": 3000}


def steady_then(rig: Rig, hours: float, surge_per_12min: str) -> History:
    """`hours` of 5 per hour, then one hour of `surge_per_12min` every 12 minutes."""
    run_until(rig, rig.now + hours * HOUR, 720, lambda t: "1")
    return run_until(rig, rig.now + HOUR, 720, lambda t: surge_per_12min)


def test_a_tenfold_hour_after_a_steady_day_surges_and_then_resolves(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [MONTHLY])
    history = steady_then(rig, 24, "10")  # 50 in the last hour against 5 per hour
    assert first_firing(history, SURGE_ALERT) is not None
    (alert,) = firing(history[-1][1], rig.now, SURGE_ALERT)
    assert alert.labels == {"alertname": SURGE_ALERT, "budget": "monthly",
                            "severity": "ticket"}
    assert "50 CNY in the last hour" in alert.annotations["summary"]
    assert "hourly average of 5 CNY" in alert.annotations["description"]
    started = alert.starts_at
    # Back to normal: once the last hour no longer holds more than 3x the average, resolved.
    later = run_until(rig, rig.now + 2 * HOUR, 720, lambda t: "1")
    ends = [a for t, alerts in later for a in resolved(alerts, t, SURGE_ALERT)]
    assert len(ends) == 1 and ends[0].starts_at == started
    assert not firing(later[-1][1], rig.now, SURGE_ALERT)


def test_no_surge_with_less_than_six_hours_of_history(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [MONTHLY])
    history = steady_then(rig, 4.8, "10")
    assert first_firing(history, SURGE_ALERT) is None
    (tmp_path / "more").mkdir()
    history = steady_then(Rig(tmp_path / "more", [MONTHLY]), 6.2, "10")
    assert first_firing(history, SURGE_ALERT) is not None


def test_pennies_never_surge(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [{"name": "big", "period": "month", "limit": 10_000}])
    history = steady_then(rig, 24, "10")  # 50 in the hour: under 1 % of 10000
    assert first_firing(history, SURGE_ALERT) is None


def test_a_surge_counts_only_matching_spend(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [{**MONTHLY, "match": {"model": "chat"}},
                         {**MONTHLY, "name": "other", "match": {"model": "reasoner"}}])
    run_until(rig, rig.now + 24 * HOUR, 720, lambda t: "1")
    for _ in range(5):
        rig.clock.advance(720)
        rig.charge("10", model="reasoner")
    alerts = rig.evaluate()
    assert [a.labels["budget"] for a in firing(alerts, rig.now, SURGE_ALERT)] == ["other"]


# --- spend, matching, metrics ------------------------------------------------------------------


def test_budgets_match_model_user_and_source(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [
        {"name": "all", "period": "day", "limit": 1000},
        {"name": "chat", "period": "day", "limit": 1000, "match": {"model": "chat"}},
        {"name": "alice", "period": "day", "limit": 1000, "match": {"user": "alice"}},
        {"name": "gateway", "period": "week", "limit": 1000, "match": {"source": "gateway"}},
        {"name": "alice-chat-gw", "period": "month", "limit": 1000,
         "match": {"user": "alice", "model": "chat", "source": "gateway"}},
    ])
    rig.clock.advance(HOUR)
    rig.charge("1", model="chat", user="alice", source="api")
    rig.charge("2", model="reasoner", user="alice", source="gateway")
    rig.charge("4", model="chat", user="bob", source="gateway")
    rig.charge("8", model="chat", user="alice", source="gateway")
    rig.charge("16", model="reasoner", user="", source="api")
    rig.evaluate()
    spent = {name: rig.gauge("budget_spent", budget=name, currency="CNY")
             for name in ("all", "chat", "alice", "gateway", "alice-chat-gw")}
    assert spent == {"all": 31, "chat": 13, "alice": 11, "gateway": 14, "alice-chat-gw": 8}
    rig.restart()  # the same from the roll-ups
    rig.evaluate()
    assert {name: rig.gauge("budget_spent", budget=name, currency="CNY")
            for name in spent} == spent


def test_metrics_values(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [{"name": "third", "period": "day", "limit": 30}])
    rig.clock.advance(HOUR)
    rig.charge("3.33")
    rig.charge("6.67")
    rig.evaluate()
    assert rig.gauge("budget_spent", budget="third", currency="CNY") == 10.0
    assert rig.gauge("budget_limit", budget="third", currency="CNY") == 30.0
    assert rig.gauge("budget_spent_ratio", budget="third") == float(Fraction(1, 3))
    assert rig.gauge("budget_forecast", budget="third", currency="CNY") == 10.0


def test_entries_of_a_previous_period_do_not_count(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY, {"name": "monthly", "period": "month", "limit": 1000}])
    rig.clock.advance(DAY + HOUR)  # the 11th
    rig.charge("7")
    rig.charge("30", t=T0 + 23 * HOUR)  # a late line of the 10th
    rig.evaluate()
    assert rig.gauge("budget_spent", budget="daily", currency="CNY") == 7.0
    assert rig.gauge("budget_spent", budget="monthly", currency="CNY") == 37.0
    rig.restart()
    rig.evaluate()
    assert rig.gauge("budget_spent", budget="daily", currency="CNY") == 7.0
    assert rig.gauge("budget_spent", budget="monthly", currency="CNY") == 37.0
    (row,) = rig.state.connection.execute(
        "SELECT amount FROM cost_daily WHERE day = '2026-01-10'").fetchall()
    assert row == ("30",)


def test_days_follow_the_configured_time_zone(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY], timezone="Asia/Shanghai", start=T0 + 15 * HOUR)
    rig.charge("10", t=T0 + 15.5 * HOUR)  # 23:30 on the 10th in Shanghai
    rig.clock.advance(HOUR)  # 00:00 on the 11th there
    rig.charge("20")
    rig.evaluate()
    assert rig.gauge("budget_spent", budget="daily", currency="CNY") == 20.0
    rig.restart()
    rig.evaluate()
    assert rig.gauge("budget_spent", budget="daily", currency="CNY") == 20.0


def test_spend_is_exact(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    rig.clock.advance(HOUR)
    for _ in range(10):
        rig.charge("0.01")
    rig.evaluate()
    assert rig.tracker.budgets["daily"].spent == Decimal("0.10")


# --- reload ------------------------------------------------------------------------------------


def test_reload_drops_removed_budgets_and_loads_new_ones(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY, {"name": "gone", "period": "day", "limit": 10}])
    rig.clock.advance(HOUR)
    rig.charge("9")
    alerts = rig.evaluate()
    assert [a.labels["budget"] for a in alerts] == ["gone", "gone"]  # 0.5 and 0.8
    config = CostConfig.model_validate({"currency": "CNY", "timezone": "UTC", "budgets": [
        DAILY, {"name": "new", "period": "week", "limit": 12}]})
    rig.tracker.configure(config)
    rig.clock.advance(60)
    alerts = rig.evaluate()
    assert sorted((a.labels["budget"], a.labels["threshold"]) for a in
                  resolved(alerts, rig.now)) == [("gone", "0.5"), ("gone", "0.8")]
    assert {a.ends_at for a in resolved(alerts, rig.now)} == {rig.now - 60}
    assert [(a.labels["budget"], a.labels["threshold"]) for a in firing(alerts, rig.now)
            if a.name == THRESHOLD_ALERT] == [("new", "0.5")]
    assert rig.gauge("budget_spent", budget="new", currency="CNY") == 9.0
    family = rig.store.family("inferwatch_budget_spent")
    assert family is not None
    assert {dict(k)["budget"] for k in family.series} == {"daily", "new"}
    ratio = rig.store.family("inferwatch_budget_spent_ratio")
    assert ratio is not None and {dict(k)["budget"] for k in ratio.series} == {"daily", "new"}
    # A restart with the budget still gone does not resolve it a second time.
    rig.config = config
    rig.restart()
    assert resolved(rig.evaluate(), rig.now) == []


def test_a_raised_limit_on_reload_lowers_the_thresholds(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY])
    rig.clock.advance(HOUR)
    rig.charge("85")
    assert thresholds(rig.evaluate()) == ["0.5", "0.8"]
    rig.tracker.configure(CostConfig.model_validate(
        {"currency": "CNY", "timezone": "UTC", "budgets": [{**DAILY, "limit": 150}]}))
    alerts = rig.evaluate()
    assert thresholds(firing(alerts, rig.now)) == ["0.5"]
    assert thresholds(resolved(alerts, rig.now)) == ["0.8"]
    assert rig.gauge("budget_limit", budget="daily", currency="CNY") == 150.0


def test_forecast_at_gives_the_daemons_forecast_from_the_state_file(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [DAILY, {"name": "monthly", "period": "month", "limit": 3000}])
    run_until(rig, T0 + 5 * HOUR, 720, lambda t: "1" if t < T0 + 4.5 * HOUR else None)
    for budget in rig.config.budgets:
        offline = forecast_at(rig.state.connection, budget, currency="CNY",
                              zone=ZoneInfo("UTC"), now=rig.now)
        assert offline == rig.tracker.budgets[budget.name].forecast
        assert float(offline) == rig.gauge("budget_forecast", budget=budget.name,
                                           currency="CNY")
    assert rig.tracker.budgets["daily"].forecast > rig.tracker.budgets["daily"].spent
