"""`/metrics` output: the metric store through a `prometheus_client` custom Collector.

prometheus_client does the text and OpenMetrics encodings (escaping included); this module only
turns families into `Metric` objects. Empty label values are left out, as Prometheus treats an
empty label as an absent one.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from monitor.metrics.store import (
    CounterSeries,
    GaugeSeries,
    HistogramSeries,
    Kind,
    LabelKey,
    MetricFamily,
    MetricStore,
    format_bucket_bound,
)


def _labels(key: LabelKey) -> dict[str, str]:
    return {name: value for name, value in key if value != ""}


class StoreCollector(Collector):
    """Yields every family of a MetricStore; registered in an explicit registry."""

    def __init__(self, store: MetricStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        for family in self._store.families():
            if family.series:
                yield _to_metric(family)


def _to_metric(family: MetricFamily) -> Metric:
    spec = family.spec
    name = family.full_name
    metric = Metric(name, spec.help, spec.kind.value)
    # Sorted so the output is stable between scrapes (diffable, cache-friendly).
    for key, series in sorted(family.series.items()):
        labels = _labels(key)
        if spec.kind is Kind.COUNTER:
            assert isinstance(series, CounterSeries)
            metric.add_sample(f"{name}_total", labels, series.value)
        elif spec.kind is Kind.GAUGE:
            assert isinstance(series, GaugeSeries)
            metric.add_sample(name, labels, series.value)
        else:
            assert isinstance(series, HistogramSeries)
            bounds = [*spec.buckets, float("inf")]
            for bound, cumulative in zip(bounds, series.cumulative(), strict=True):
                metric.add_sample(
                    f"{name}_bucket", {**labels, "le": format_bucket_bound(bound)}, cumulative
                )
            metric.add_sample(f"{name}_count", labels, series.count)
            metric.add_sample(f"{name}_sum", labels, series.sum)
    return metric


class Exposition:
    """Renders the store for an HTTP Accept header."""

    def __init__(self, store: MetricStore) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(store))

    def render(self, accept_header: str | None) -> tuple[bytes, str]:
        """The body and its Content-Type: OpenMetrics when asked for, else text 0.0.4."""
        encoder, content_type = choose_encoder(accept_header or "")
        return encoder(self.registry), content_type
