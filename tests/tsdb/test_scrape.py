"""The internal scrape (monitor/tsdb/scrape.py): the metric store sampled into the series store.

Series are stored under the names `/metrics` exposes (`_total`, `_bucket{le}`, `_count`,
`_sum`, gauges as they are; empty labels left out); a series that disappears gets a stale
marker; a counter or histogram born since the last scrape gets a 0 sample at the previous
scrape's time (not a restored one), so `increase()`/`rate()` see its first events. Time comes
from a FakeClock; every scrape is called by hand.
"""

from __future__ import annotations

import pytest

from monitor.clock import FakeClock
from monitor.metrics.store import CounterSeries, FamilySpec, Kind, MetricStore
from monitor.promql.engine import Engine
from monitor.promql.values import Labels, Sample, labels_from
from monitor.tsdb.scrape import InternalScraper
from monitor.tsdb.store import SeriesStore

REQUESTS = FamilySpec(name="requests", help="h", kind=Kind.COUNTER, labels=("model", "user"))
TEMPERATURE = FamilySpec(name="temperature_celsius", help="h", kind=Kind.GAUGE,
                         labels=("gpu",))
LATENCY = FamilySpec(name="latency_seconds", help="h", kind=Kind.HISTOGRAM,
                     labels=("model",), buckets=(0.1, 1.0, 2.5))
T0_S = 1_767_225_600.0
T0 = int(T0_S * 1000)


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


class Rig:
    def __init__(self, *, metrics: MetricStore | None = None, interval_s: float = 1.0) -> None:
        self.clock = FakeClock(T0_S)
        self.metrics = metrics or MetricStore()
        self.series = SeriesStore(retention_ms=3600 * 1000)
        self.scraper = InternalScraper(self.metrics, self.series, self.clock, interval_s)
        self.engine = Engine(self.series)

    def scrape_after(self, seconds: float) -> int:
        self.clock.advance(seconds)
        return self.scraper.scrape()

    @property
    def now(self) -> int:
        return int(self.clock.time() * 1000)

    def samples(self, name_labels: Labels) -> list[tuple[int, float]]:
        stored = self.series.series[name_labels]
        ts, vs = stored.window(0, 2**62)
        return list(zip(ts, vs, strict=True))

    def query(self, expr: str) -> dict[Labels, float]:
        value = self.engine.instant(expr, self.now)
        assert isinstance(value, list)
        return {s.labels: s.v for s in value if isinstance(s, Sample)}


def test_counters_gauges_and_histograms_are_stored_as_exposed() -> None:
    rig = Rig()
    requests = rig.metrics.register(REQUESTS)
    temperature = rig.metrics.register(TEMPERATURE)
    latency = rig.metrics.register(LATENCY)
    requests.inc(requests.key(("m1", "")), 3)  # an empty label value is left out
    temperature.set(temperature.key(("0",)), 71.5)
    latency.merge_histogram(latency.key(("m1",)), [1, 2, 0, 1], 6.5, 4)
    assert rig.scraper.scrape() > 0
    found = {s.labels: s.latest(T0, 0) for s in rig.series.series.values()}
    at = T0
    assert found[labels(__name__="inferwatch_requests_total", model="m1")] == (at, 3.0)
    assert found[labels(__name__="inferwatch_temperature_celsius", gpu="0")] == (at, 71.5)
    buckets = {le: found[labels(__name__="inferwatch_latency_seconds_bucket", model="m1",
                                le=le)] for le in ("0.1", "1", "2.5", "+Inf")}
    assert buckets == {"0.1": (at, 1.0), "1": (at, 3.0), "2.5": (at, 3.0), "+Inf": (at, 4.0)}
    assert found[labels(__name__="inferwatch_latency_seconds_count", model="m1")] == (at, 4.0)
    assert found[labels(__name__="inferwatch_latency_seconds_sum", model="m1")] == (at, 6.5)
    # The series count is a gauge of the scrape itself, so it is stored from the next one.
    first_count = len(rig.series)
    rig.scrape_after(1)
    assert rig.query("inferwatch_tsdb_series") == {
        labels(__name__="inferwatch_tsdb_series"): float(first_count)}
    assert rig.query("histogram_quantile(0.5, inferwatch_latency_seconds_bucket)") == {
        labels(model="m1"): pytest.approx(0.55)}


def test_every_scrape_appends_one_sample_per_series_and_a_clock_standing_still_none() -> None:
    rig = Rig()
    temperature = rig.metrics.register(TEMPERATURE)
    temperature.set(temperature.key(("0",)), 1.0)
    rig.scraper.scrape()
    assert rig.scraper.scrape() == 0  # same time: nothing
    temperature.set(temperature.key(("0",)), 2.0)
    rig.scrape_after(1)
    rig.scrape_after(1)
    assert rig.samples(labels(__name__="inferwatch_temperature_celsius", gpu="0")) == [
        (T0, 1.0), (T0 + 1000, 2.0), (T0 + 2000, 2.0)]


def test_a_series_that_disappears_gets_a_stale_marker() -> None:
    rig = Rig()
    temperature = rig.metrics.register(TEMPERATURE)
    key = temperature.key(("0",))
    temperature.set(key, 50.0)
    rig.scraper.scrape()
    temperature.remove(key)
    rig.scrape_after(1)
    stored = rig.series.series[labels(__name__="inferwatch_temperature_celsius", gpu="0")]
    assert stored.is_stale_now()
    assert stored.last_t == T0 + 1000
    assert rig.query("inferwatch_temperature_celsius") == {}  # not the 5-minute lookback
    rig.scrape_after(1)
    assert stored.last_t == T0 + 1000  # marked once
    temperature.set(key, 60.0)  # it comes back
    rig.scrape_after(1)
    assert rig.query("inferwatch_temperature_celsius") == {
        labels(__name__="inferwatch_temperature_celsius", gpu="0"): 60.0}


def test_a_histogram_that_disappears_marks_all_its_series_stale() -> None:
    rig = Rig()
    latency = rig.metrics.register(LATENCY)
    latency.merge_histogram(latency.key(("m1",)), [1, 0, 0, 0], 0.05, 1)
    rig.scraper.scrape()
    latency.remove(latency.key(("m1",)))
    rig.scrape_after(1)
    histogram_series = [s for labels_, s in rig.series.series.items()
                        if dict(labels_)["__name__"].startswith("inferwatch_latency")]
    assert len(histogram_series) == 6  # 4 buckets, count, sum
    assert all(s.is_stale_now() for s in histogram_series)


def test_a_counter_born_since_the_last_scrape_starts_with_a_zero_at_that_scrape() -> None:
    rig = Rig()
    requests = rig.metrics.register(REQUESTS)
    rig.scraper.scrape()  # T0: the counter does not exist yet
    rig.clock.advance(1)
    requests.inc(requests.key(("m1", "u1")), 5)
    rig.scraper.scrape()
    name = labels(__name__="inferwatch_requests_total", model="m1", user="u1")
    assert rig.samples(name) == [(T0, 0.0), (T0 + 1000, 5.0)]
    # increase() and rate() see the first five requests (a real Prometheus would see none).
    assert rig.query("increase(inferwatch_requests_total[1m])") == {
        labels(model="m1", user="u1"): 5.0}
    assert rig.query("rate(inferwatch_requests_total[1m])")[labels(model="m1", user="u1")] \
        == pytest.approx(5.0 / 60.0)
    requests.inc(requests.key(("m1", "u1")), 1)  # not a birth: no second zero
    rig.scrape_after(1)
    assert rig.samples(name) == [(T0, 0.0), (T0 + 1000, 5.0), (T0 + 2000, 6.0)]


def test_a_counter_born_before_the_first_scrape_starts_one_interval_earlier() -> None:
    rig = Rig(interval_s=15)
    requests = rig.metrics.register(REQUESTS)
    requests.inc(requests.key(("m1", "u1")), 2)
    rig.scraper.scrape()
    assert rig.samples(labels(__name__="inferwatch_requests_total", model="m1",
                              user="u1")) == [(T0 - 15_000, 0.0), (T0, 2.0)]


def test_a_histogram_born_since_the_last_scrape_starts_every_series_at_zero() -> None:
    rig = Rig()
    latency = rig.metrics.register(LATENCY)
    rig.scraper.scrape()
    rig.clock.advance(1)
    latency.merge_histogram(latency.key(("m1",)), [0, 3, 0, 0], 1.5, 3)
    rig.scraper.scrape()
    bucket = labels(__name__="inferwatch_latency_seconds_bucket", model="m1", le="1")
    count = labels(__name__="inferwatch_latency_seconds_count", model="m1")
    assert rig.samples(bucket) == [(T0, 0.0), (T0 + 1000, 3.0)]
    assert rig.samples(count) == [(T0, 0.0), (T0 + 1000, 3.0)]
    assert rig.query("increase(inferwatch_latency_seconds_count[1m])") == {
        labels(model="m1"): 3.0}


def test_a_new_gauge_gets_no_zero_sample() -> None:
    rig = Rig()
    temperature = rig.metrics.register(TEMPERATURE)
    rig.scraper.scrape()
    rig.clock.advance(1)
    temperature.set(temperature.key(("0",)), 70.0)
    rig.scraper.scrape()
    assert rig.samples(labels(__name__="inferwatch_temperature_celsius", gpu="0")) == [
        (T0 + 1000, 70.0)]


def test_a_restored_counter_is_not_born() -> None:
    metrics = MetricStore()
    metrics.restore("inferwatch_requests", (("model", "m1"), ("user", "u1")),
                    CounterSeries(40.0))
    rig = Rig(metrics=metrics)
    requests = rig.metrics.register(REQUESTS)  # receives the restored series
    rig.scraper.scrape()
    rig.clock.advance(1)
    requests.inc(requests.key(("m1", "u1")), 2)
    rig.scraper.scrape()
    # Like a restarted exporter: its first sample is its value, no 0 before it.
    assert rig.samples(labels(__name__="inferwatch_requests_total", model="m1",
                              user="u1")) == [(T0, 40.0), (T0 + 1000, 42.0)]


def test_a_counter_that_comes_back_after_going_stale_starts_from_zero() -> None:
    rig = Rig()
    requests = rig.metrics.register(REQUESTS)
    key = requests.key(("m1", "u1"))
    requests.inc(key, 3)
    rig.scraper.scrape()
    requests.remove(key)
    rig.scrape_after(1)  # stale at T0 + 1 s
    rig.scrape_after(1)
    rig.clock.advance(1)
    requests.inc(key, 4)  # born again
    rig.scraper.scrape()
    name = labels(__name__="inferwatch_requests_total", model="m1", user="u1")
    assert rig.samples(name) == [(T0 - 1000, 0.0), (T0, 3.0), (T0 + 2000, 0.0),
                                 (T0 + 3000, 4.0)]


def test_a_series_scraped_again_after_a_gap_longer_than_retention_is_visible() -> None:
    rig = Rig()
    temperature = rig.metrics.register(TEMPERATURE)
    temperature.set(temperature.key(("0",)), 5.0)
    rig.scraper.scrape()
    rig.clock.advance(2 * 3600)  # suspended for twice the retention
    rig.series.trim(rig.now)  # the trim job runs first on resume
    rig.scrape_after(1)
    rig.scrape_after(1)
    assert rig.query("inferwatch_temperature_celsius") == {
        labels(__name__="inferwatch_temperature_celsius", gpu="0"): 5.0}


def test_a_prompt_scrape_records_only_the_series_whose_value_moved() -> None:
    rig = Rig()
    temperature = rig.metrics.register(TEMPERATURE)
    requests = rig.metrics.register(REQUESTS)
    temperature.set(temperature.key(("0",)), 50.0)
    requests.inc(requests.key(("m1", "")), 1)
    rig.scraper.scrape()
    rig.scrape_after(1)
    rig.scrape_after(1)  # the scraper's own gauge (inferwatch_tsdb_series) holds still now
    requests.inc(requests.key(("m1", "")), 1)
    rig.clock.advance(0.3)
    assert rig.scraper.scrape(changed_only=True) == 1
    assert rig.samples(labels(__name__="inferwatch_requests_total", model="m1")) == [
        (T0 - 1000, 0.0), (T0, 1.0), (T0 + 1000, 1.0), (T0 + 2000, 1.0), (T0 + 2300, 2.0)]
    assert rig.samples(labels(__name__="inferwatch_temperature_celsius", gpu="0")) == [
        (T0, 50.0), (T0 + 1000, 50.0), (T0 + 2000, 50.0)]
    rig.scrape_after(0.7)  # the regular scrape records everything again
    assert rig.samples(labels(__name__="inferwatch_temperature_celsius", gpu="0"))[-1] == (
        T0 + 3000, 50.0)


def test_a_prompt_scrape_still_marks_gone_series_stale_and_zeroes_new_counters() -> None:
    rig = Rig()
    temperature = rig.metrics.register(TEMPERATURE)
    requests = rig.metrics.register(REQUESTS)
    temperature.set(temperature.key(("0",)), 50.0)
    rig.scraper.scrape()
    temperature.remove(temperature.key(("0",)))
    requests.inc(requests.key(("m1", "")), 3)
    rig.clock.advance(0.25)
    rig.scraper.scrape(changed_only=True)
    assert rig.series.series[
        labels(__name__="inferwatch_temperature_celsius", gpu="0")].is_stale_now()
    assert rig.samples(labels(__name__="inferwatch_requests_total", model="m1")) == [
        (T0, 0.0), (T0 + 250, 3.0)]
    assert rig.query("increase(inferwatch_requests_total[1m])") != {}
