"""MetricStore: series caps and the overflow series, dirty tracking, births, restore."""

from __future__ import annotations

import pytest

from monitor.metrics import families as fam
from monitor.metrics.store import (
    MAX_LABEL_VALUE_CHARS,
    OVERFLOW_VALUE,
    CounterSeries,
    FamilySpec,
    GaugeSeries,
    HistogramSeries,
    Kind,
    LabelKey,
    MetricStore,
    format_bucket_bound,
)

OVERFLOW_KEY = (("source", OVERFLOW_VALUE), ("service", OVERFLOW_VALUE),
                ("model", OVERFLOW_VALUE), ("status", OVERFLOW_VALUE))


def request_key(
    store: MetricStore, model: str, extra: tuple[tuple[str, str], ...] = ()
) -> LabelKey:
    return store.register(fam.REQUESTS).key(("src", "svc", model, "success"), extra)


def dropped(store: MetricStore, family: str) -> float:
    found = store.family("inferwatch_series_dropped")
    assert found is not None
    series = found.series.get((("family", family),))
    return series.value if isinstance(series, CounterSeries) else 0.0


def test_series_cap_sends_new_label_sets_to_one_overflow_series() -> None:
    store = MetricStore(series_limit=3)
    requests = store.register(fam.REQUESTS)
    for i in range(5):
        requests.inc(request_key(store, f"m{i}"), i + 1)
    assert len(requests.series) == 4  # the cap, plus the one overflow series
    overflow = requests.series[OVERFLOW_KEY]
    assert isinstance(overflow, CounterSeries)
    assert overflow.value == 4 + 5
    assert dropped(store, "inferwatch_requests") == 2

    requests.inc(request_key(store, "m0"))  # an existing series still takes its updates
    assert requests.counter(request_key(store, "m0")).value == 2
    requests.inc(request_key(store, "m9"), 10)
    assert overflow.value == 19
    assert dropped(store, "inferwatch_requests") == 3
    assert len(requests.series) == 4


def test_overflow_ignores_extra_labels_and_marks_the_overflow_series_dirty() -> None:
    store = MetricStore(series_limit=1)
    requests = store.register(fam.REQUESTS)
    requests.inc(request_key(store, "a"))
    store.take_dirty()
    requests.inc(request_key(store, "b", (("user", "u1"),)))
    dirty = {(family.full_name, key) for family, key, _ in store.take_dirty()}
    assert dirty == {("inferwatch_requests", OVERFLOW_KEY),
                     ("inferwatch_series_dropped", (("family", "inferwatch_requests"),))}


def test_histogram_overflow_keeps_a_histogram() -> None:
    store = MetricStore(series_limit=1)
    durations = store.register(fam.REQUEST_DURATION)
    counts = [0] * (len(fam.DURATION_BUCKETS) + 1)
    counts[3] = 2
    durations.merge_histogram(durations.key(("s", "a", "a")), counts, 0.4, 2)
    durations.merge_histogram(durations.key(("s", "b", "b")), counts, 0.4, 2)
    overflow = durations.series[tuple((n, OVERFLOW_VALUE) for n in fam.REQUEST_LABELS)]
    assert isinstance(overflow, HistogramSeries)
    assert (overflow.counts[3], overflow.count, overflow.sum) == (2, 2, 0.4)


def test_long_label_values_are_bounded() -> None:
    store = MetricStore()
    key = request_key(store, "m" * 10_000)
    assert dict(key)["model"] == "m" * MAX_LABEL_VALUE_CHARS


def test_key_orders_declared_labels_then_extra_labels_by_name() -> None:
    store = MetricStore()
    key = request_key(store, "m", (("zone", "z"), ("app", "a")))
    assert [name for name, _ in key] == ["source", "service", "model", "status", "app", "zone"]
    with pytest.raises(ValueError, match="expected 4 label values"):
        store.register(fam.REQUESTS).key(("only", "three", "values"))


def test_counters_never_go_down() -> None:
    store = MetricStore()
    requests = store.register(fam.REQUESTS)
    with pytest.raises(ValueError, match="only go up"):
        requests.inc(request_key(store, "m"), -1)


def test_gauges_are_not_persistent() -> None:
    store = MetricStore()
    lag = store.register(fam.LOG_LAG_BYTES)
    lag.set(lag.key(("src",)), 42)
    assert store.take_dirty() == []


def test_mirrored_counters_take_the_sources_total_and_are_neither_persisted_nor_born() -> None:
    store = MetricStore()
    store.track_births = True
    received = store.register(fam.HOST_NETWORK_RECEIVE)
    key = received.key(("eth0",))
    received.set_total(key, 1_000_000.0)
    received.set_total(key, 1_500_000.0)
    assert received.counter(key).value == 1_500_000.0
    assert store.take_dirty() == []  # the kernel keeps this total, not the state file
    assert store.take_births() == []  # no 0 sample: it did not start at 0 here
    requests = store.register(fam.REQUESTS)
    with pytest.raises(AssertionError):
        requests.set_total(request_key(store, "m"), 5.0)  # a counted counter only goes up


def test_only_counters_can_be_non_persistent() -> None:
    with pytest.raises(ValueError, match="only counters"):
        FamilySpec(name="g", help="h", kind=Kind.GAUGE, persistent=False)


def test_register_is_idempotent_and_refuses_a_different_declaration() -> None:
    store = MetricStore()
    assert store.register(fam.REQUESTS) is store.register(fam.REQUESTS)
    clash = FamilySpec(name="requests", help="other", kind=Kind.COUNTER, labels=("x",))
    with pytest.raises(ValueError, match="different declaration"):
        store.register(clash)


def test_histogram_spec_validation() -> None:
    with pytest.raises(ValueError, match="sorted"):
        FamilySpec(name="h", help="h", kind=Kind.HISTOGRAM, buckets=(2.0, 1.0))
    with pytest.raises(ValueError, match="Inf"):
        FamilySpec(name="h", help="h", kind=Kind.HISTOGRAM, buckets=(1.0, float("inf")))
    with pytest.raises(ValueError, match="only histograms"):
        FamilySpec(name="c", help="c", kind=Kind.COUNTER, buckets=(1.0,))


# -- births and restore ----------------------------------------------------------------------


def restored_counter(value: float) -> CounterSeries:
    return CounterSeries(value)


def test_restore_before_registration_is_applied_when_the_family_registers() -> None:
    store = MetricStore()
    key = (("source", "s"), ("service", "v"), ("model", "m"), ("status", "success"))
    store.restore("inferwatch_requests", key, restored_counter(41))
    requests = store.register(fam.REQUESTS)
    requests.inc(key)
    assert requests.counter(key).value == 42
    assert store.take_births() == []


def test_restore_after_registration() -> None:
    store = MetricStore()
    requests = store.register(fam.REQUESTS)
    key = request_key(store, "m")
    store.restore("inferwatch_requests", key, restored_counter(7))
    assert requests.counter(key).value == 7
    assert store.take_births() == []
    assert store.take_dirty() == []  # restoring is not a change to write back


def test_take_births_lists_new_series_once_and_excludes_restored_ones() -> None:
    store = MetricStore()
    store.track_births = True
    requests = store.register(fam.REQUESTS)
    old, new = request_key(store, "old"), request_key(store, "new")
    store.restore("inferwatch_requests", old, restored_counter(3))
    requests.inc(old)
    requests.inc(new)
    requests.inc(new)
    assert [(f.full_name, k) for f, k in store.take_births()] == [("inferwatch_requests", new)]
    assert store.take_births() == []


def test_births_are_not_recorded_until_someone_takes_them() -> None:
    store = MetricStore()
    requests = store.register(fam.REQUESTS)
    requests.inc(request_key(store, "new"))
    assert store.take_births() == []


def test_undo_changes_restores_values_removes_created_series_and_births() -> None:
    store = MetricStore(series_limit=2)
    store.track_births = True
    requests = store.register(fam.REQUESTS)
    durations = store.register(fam.REQUEST_DURATION)
    old = request_key(store, "old")
    requests.inc(old, 5)
    hist_key = (("source", "s"), ("service", "v"), ("model", "m"))
    counts = [1] + [0] * len(fam.DURATION_BUCKETS)
    durations.merge_histogram(hist_key, counts, 0.01, 1)
    store.take_births()
    store.take_dirty()

    store.begin_changes()
    requests.inc(old, 2)
    requests.inc(request_key(store, "new"))
    requests.inc(request_key(store, "third"))  # over the cap: overflow + series_dropped
    durations.merge_histogram(hist_key, counts, 0.02, 1)
    store.undo_changes()

    assert requests.counter(old).value == 5
    assert set(requests.series) == {old}
    hist = durations.histogram(hist_key)
    assert (hist.count, hist.sum, hist.counts[0]) == (1, 0.01, 1)
    dropped = store.family("inferwatch_series_dropped")
    assert dropped is not None
    assert dropped.series == {}
    assert store.take_births() == []
    assert store.take_dirty() == []


@pytest.mark.parametrize("series", [
    GaugeSeries(1.0),
    HistogramSeries(3),  # the family has 21 buckets: an older layout
], ids=["wrong kind", "other buckets"])
def test_restored_rows_that_no_longer_fit_their_family_are_dropped(series: object) -> None:
    store = MetricStore()
    key = (("source", "s"), ("service", "v"), ("model", "m"))
    store.restore("inferwatch_request_duration_seconds", key, series)  # type: ignore[arg-type]
    durations = store.register(fam.REQUEST_DURATION)
    assert key not in durations.series


def test_restored_histogram_keeps_its_counts() -> None:
    store = MetricStore()
    key = (("source", "s"), ("service", "v"), ("model", "m"))
    series = HistogramSeries(len(fam.DURATION_BUCKETS))
    series.counts[0], series.count, series.sum = 5, 5, 0.1
    store.restore("inferwatch_request_duration_seconds", key, series)
    durations = store.register(fam.REQUEST_DURATION)
    assert durations.histogram(key).cumulative()[-1] == 5


@pytest.mark.parametrize(("bound", "text"), [
    (10.0, "10"), (0.025, "0.025"), (1.0, "1"), (7.5, "7.5"), (600.0, "600"),
    (16384.0, "16384"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
])
def test_bucket_bounds_print_like_the_go_client(bound: float, text: str) -> None:
    assert format_bucket_bound(bound) == text
