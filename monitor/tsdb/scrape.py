"""The internal scrape: the metric store sampled into the series store every scrape_interval.

Each exported series becomes the samples Prometheus would store from `/metrics`: `<name>_total`
for counters, `<name>` for gauges, `_bucket{le}`/`_count`/`_sum` for histograms, empty labels
left out. So a rule evaluated here and the same rule evaluated by a Prometheus scraping
`/metrics` see the same series.

Two things a real scrape cannot do, done here:
- a series that disappears gets a stale marker at the next scrape, as Prometheus writes one;
- a counter (or histogram) *born* since the last scrape gets a 0 sample at the previous
  scrape's time, so `increase()` and `rate()` see its first events. (A restored counter is not
  born: like a restarted exporter's, its first sample is its current value.)

Between the regular scrapes, a *prompt* scrape (`changed_only`) records only the series whose
value moved, so that rules can see new data at once without every series paying a sample.
"""

from __future__ import annotations

from collections.abc import Iterator

from monitor.clock import Clock
from monitor.metrics import families as fam
from monitor.metrics.store import (
    CounterSeries,
    GaugeSeries,
    HistogramSeries,
    Kind,
    LabelKey,
    MetricFamily,
    MetricStore,
    Series,
    format_bucket_bound,
)
from monitor.promql.values import METRIC_NAME, Labels
from monitor.tsdb.series import MemSeries
from monitor.tsdb.store import SeriesStore

SeriesId = tuple[str, LabelKey]


def stored_labels(family: MetricFamily, key: LabelKey, suffix: str = "",
                  le: str | None = None) -> Labels:
    """The label set a sample of this series is stored (and exposed) under."""
    pairs = [(name, value) for name, value in key if value != ""]
    pairs.append((METRIC_NAME, family.full_name + suffix))
    if le is not None:
        pairs.append(("le", le))
    return tuple(sorted(pairs))


def sample_values(series: Series) -> list[float]:
    """Values in the order of `_targets`: buckets (cumulative), count, sum for histograms."""
    if isinstance(series, HistogramSeries):
        return [*map(float, series.cumulative()), float(series.count), series.sum]
    assert isinstance(series, CounterSeries | GaugeSeries)
    return [series.value]


class InternalScraper:
    """Samples a MetricStore into a SeriesStore."""

    def __init__(self, metrics: MetricStore, series: SeriesStore, clock: Clock,
                 interval_s: float) -> None:
        self.metrics = metrics
        self.series = series
        self.clock = clock
        self.interval_ms = round(interval_s * 1000)
        metrics.track_births = True
        self._targets: dict[SeriesId, list[MemSeries]] = {}
        self._generation = series.generation
        self._last_t: int | None = None
        self._tsdb_series = metrics.register(fam.TSDB_SERIES)

    def scrape(self, *, changed_only: bool = False) -> int:
        """One scrape at the clock's time; the number of samples appended. `changed_only`
        skips the series whose last sample already holds their value."""
        t = int(self.clock.time() * 1000)
        if self._last_t is not None and t <= self._last_t:
            return 0  # the clock did not move on (or went back): nothing new to record
        born = {(family.full_name, key) for family, key in self.metrics.take_births()
                if family.spec.kind is not Kind.GAUGE}
        if self._generation != self.series.generation:
            # Retention removed series (e.g. after the clock leapt past it): the cached
            # targets may be orphans the store no longer knows; look them up afresh.
            self._targets.clear()
            self._generation = self.series.generation
        birth_t = self._last_t if self._last_t is not None else t - self.interval_ms
        appended = 0
        seen: set[SeriesId] = set()
        for family, key, series in self._all_series():
            ident = (family.full_name, key)
            seen.add(ident)
            targets = self._targets.get(ident)
            if targets is None:
                targets = self._targets[ident] = self._make_targets(family, key)
            if ident in born:
                for target in targets:
                    if target.last_t < birth_t:
                        target.append(birth_t, 0.0)
            for target, value in zip(targets, sample_values(series), strict=True):
                if changed_only and target.holds(value):
                    continue
                appended += target.append(t, value)
        for ident in set(self._targets) - seen:
            for target in self._targets.pop(ident):
                target.append_stale(t)
        self._last_t = t
        self._tsdb_series.set(self._tsdb_series.key(()), float(len(self.series)))
        return appended

    def _all_series(self) -> Iterator[tuple[MetricFamily, LabelKey, Series]]:
        for family in self.metrics.families():
            for key, series in list(family.series.items()):
                yield family, key, series

    def _make_targets(self, family: MetricFamily, key: LabelKey) -> list[MemSeries]:
        spec = family.spec
        if spec.kind is Kind.COUNTER:
            names = [stored_labels(family, key, "_total")]
        elif spec.kind is Kind.GAUGE:
            names = [stored_labels(family, key)]
        else:
            names = [stored_labels(family, key, "_bucket", format_bucket_bound(bound))
                     for bound in (*spec.buckets, float("inf"))]
            names += [stored_labels(family, key, "_count"), stored_labels(family, key, "_sum")]
        return [self.series.get_or_create(labels) for labels in names]
