"""The self-hosted cost per million output tokens (monitor/cost/self_hosted.py), from a real
series store and engine: what an hour of output tokens cost at the source's GPU price."""

from __future__ import annotations

from decimal import Decimal

import pytest

from monitor.clock import FakeClock
from monitor.config import default_config
from monitor.cost.self_hosted import SelfHostedCost
from monitor.metrics.store import GaugeSeries, MetricStore
from monitor.promql.engine import Engine
from monitor.promql.values import labels_from
from monitor.tsdb.store import SeriesStore

T0 = 1_767_225_600.0


def sources() -> tuple[object, ...]:
    return default_config(sources=[
        {"name": "local", "paths": ["/x/*.log"], "schema": "inference",
         "gpu_hourly_cost": Decimal("2.5")},
        {"name": "api", "paths": ["/y/*.log"], "schema": "api_usage"},
        {"name": "idle", "paths": ["/z/*.log"], "schema": "inference",
         "gpu_hourly_cost": Decimal("1")},
    ]).sources


def test_cost_per_million_tokens_from_the_last_hour_of_output() -> None:
    clock = FakeClock(T0 + 3600)
    series = SeriesStore(retention_ms=7200 * 1000)
    labels = labels_from({"__name__": "inferwatch_output_tokens_total", "source": "local"})
    idle = labels_from({"__name__": "inferwatch_output_tokens_total", "source": "idle"})
    for minute in range(61):  # 10,000 tokens a minute: 600,000 in the hour
        series.append(labels, int((T0 + minute * 60) * 1000), 10_000.0 * minute)
        series.append(idle, int((T0 + minute * 60) * 1000), 5.0)
    store = MetricStore()
    cost = SelfHostedCost(engine=Engine(series), store=store, clock=clock)
    cost.update(sources(), "CNY")  # type: ignore[arg-type]
    family = store.family("inferwatch_self_hosted_cost_per_million_tokens")
    assert family is not None
    values = {key: s.value for key, s in family.series.items() if isinstance(s, GaugeSeries)}
    # 2.5 CNY an hour for 0.6M tokens; "idle" made no tokens (no value, not infinity); the
    # API source has no GPU price.
    assert values == {(("source", "local"), ("currency", "CNY")): pytest.approx(2.5 / 0.6)}

    clock.advance(7200)  # nothing in the last hour any more: the series goes away
    cost.update(sources(), "CNY")  # type: ignore[arg-type]
    assert family.series == {}
