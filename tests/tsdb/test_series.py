"""The series store: one series (monitor/tsdb/series.py) and the indexed store (store.py).

`MemSeries`: appends strictly in time order, chunks of CHUNK_SAMPLES, stale markers (ending a
series for instant selectors, dropped from range windows), trimming by whole chunks.
`SeriesStore`: the four matcher kinds with Prometheus's semantics (a matcher that matches ""
also matches series without the label; regexes fully anchored; RE2 syntax), label names and
values, trimming that removes emptied series from the index.

(The store's tests live here because tests/metrics/test_store.py already owns the module
name `test_store`, and test modules are not packages.)
"""

from __future__ import annotations

import math
import warnings

import pytest

from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.promql.values import STALE_NAN, Labels, is_stale_nan, labels_from
from monitor.tsdb.series import CHUNK_SAMPLES, MemSeries
from monitor.tsdb.store import (
    EQUAL,
    NOT_EQUAL,
    NOT_REGEX,
    REGEX,
    Matcher,
    SeriesStore,
)


def labels(**pairs: str) -> Labels:
    return labels_from(pairs)


def filled(n: int, step: int = 10, start: int = 0) -> MemSeries:
    series = MemSeries(labels(__name__="x"))
    for i in range(n):
        assert series.append(start + i * step, float(i))
    return series


# --- MemSeries: appending ---------------------------------------------------------------------


def test_appends_must_be_strictly_later_than_the_last() -> None:
    series = MemSeries(labels(__name__="x"))
    assert series.append(100, 1.0)
    assert not series.append(100, 2.0)  # same timestamp: refused, first value kept
    assert not series.append(99, 3.0)  # out of order: refused
    assert series.append(101, 4.0)
    assert len(series) == 2
    assert series.window(0, 1000) == ([100, 101], [1.0, 4.0])
    assert series.last_t == 101


def test_samples_are_chunked_and_windows_cross_chunk_boundaries() -> None:
    n = 2 * CHUNK_SAMPLES + 10
    series = filled(n)
    assert len(series.ts) == 3
    assert [len(chunk) for chunk in series.ts] == [CHUNK_SAMPLES, CHUNK_SAMPLES, 10]
    assert series.chunk_first == [0, CHUNK_SAMPLES * 10, 2 * CHUNK_SAMPLES * 10]
    assert len(series) == n
    # A window spanning all three chunks, bounds inclusive, boundaries not duplicated.
    lo, hi = (CHUNK_SAMPLES - 3) * 10, (2 * CHUNK_SAMPLES + 2) * 10
    ts, vs = series.window(lo, hi)
    assert ts == list(range(lo, hi + 1, 10))
    assert vs == [float(i) for i in range(CHUNK_SAMPLES - 3, 2 * CHUNK_SAMPLES + 3)]
    # Bounds between samples; exactly at a chunk's last and the next chunk's first sample.
    assert series.window(lo + 1, hi - 1)[0] == list(range(lo + 10, hi, 10))
    edge = (CHUNK_SAMPLES - 1) * 10
    assert series.window(edge, edge + 10)[0] == [edge, edge + 10]
    assert series.window(-100, -1) == ([], [])
    assert series.window(n * 10, n * 10 + 100) == ([], [])
    assert series.window(5, 5) == ([], [])


def test_latest_sees_the_last_sample_within_the_lookback() -> None:
    series = filled(2 * CHUNK_SAMPLES + 1)
    last_of_first_chunk = (CHUNK_SAMPLES - 1) * 10
    assert series.latest(last_of_first_chunk + 5, 100) == (
        last_of_first_chunk, float(CHUNK_SAMPLES - 1))
    assert series.latest(last_of_first_chunk + 10, 100) == (
        last_of_first_chunk + 10, float(CHUNK_SAMPLES))
    assert series.latest(-1, 100) is None  # before the first sample
    end = 2 * CHUNK_SAMPLES * 10
    assert series.latest(end + 100, 100) == (end, float(2 * CHUNK_SAMPLES))  # at ref-lookback
    assert series.latest(end + 101, 100) is None  # beyond the lookback
    assert MemSeries(labels(__name__="x")).latest(0, 100) is None


# --- MemSeries: staleness ----------------------------------------------------------------------


def test_a_stale_marker_ends_the_series_for_instant_selectors_and_windows() -> None:
    series = filled(3)  # 0, 10, 20
    assert series.append_stale(30)
    assert series.is_stale_now()
    assert series.latest(30, 1000) is None
    assert series.latest(35, 1000) is None
    assert series.latest(25, 1000) == (20, 2.0)  # before the marker
    assert series.window(0, 100) == ([0, 10, 20], [0.0, 1.0, 2.0])  # marker dropped
    assert not series.append_stale(40)  # already stale: one marker only
    assert len(series) == 4
    assert is_stale_nan(series.vs[0][3])
    assert series.append(50, 5.0)  # it comes back
    assert not series.is_stale_now()
    assert series.latest(50, 1000) == (50, 5.0)
    assert series.window(0, 100) == ([0, 10, 20, 50], [0.0, 1.0, 2.0, 5.0])


def test_a_real_nan_is_a_value_not_a_stale_marker() -> None:
    series = MemSeries(labels(__name__="x"))
    series.append(0, math.nan)
    found = series.latest(0, 100)
    assert found is not None
    assert math.isnan(found[1])
    assert series.window(0, 0)[0] == [0]
    assert not series.is_stale_now()


def test_a_stale_marker_that_is_not_later_is_refused() -> None:
    series = filled(2)  # 0, 10
    assert not series.append_stale(10)
    assert not series.is_stale_now()
    assert series.latest(10, 100) == (10, 1.0)


def test_stale_markers_across_chunks_are_dropped_from_windows() -> None:
    series = MemSeries(labels(__name__="x"))
    t = 0
    for i in range(CHUNK_SAMPLES + 5):
        if i in (3, CHUNK_SAMPLES + 1):
            assert series.append_stale(t)
        else:
            series.append(t, 1.0)
        t += 10
    ts, _ = series.window(0, t)
    assert len(ts) == CHUNK_SAMPLES + 3
    assert 30 not in ts
    assert (CHUNK_SAMPLES + 1) * 10 not in ts


# --- MemSeries: trimming -------------------------------------------------------------------------


def test_trim_drops_whole_chunks_that_end_before_mint() -> None:
    series = filled(2 * CHUNK_SAMPLES + 10)
    series.append_stale(2 * CHUNK_SAMPLES * 10 + 1000)
    first_chunk_end = (CHUNK_SAMPLES - 1) * 10
    assert series.trim(first_chunk_end) == 0  # the chunk ends at mint: kept
    assert series.trim(first_chunk_end + 1) == CHUNK_SAMPLES
    assert series.chunk_first[0] == CHUNK_SAMPLES * 10
    assert series.window(0, 10**9)[0][0] == CHUNK_SAMPLES * 10  # partial chunks stay whole
    assert series.is_stale_now()
    assert series.trim(10**9) == CHUNK_SAMPLES + 11
    assert series.empty()
    assert series.stale == set()
    assert series.latest(10**9, 10**9) is None
    assert series.window(0, 10**9) == ([], [])
    assert not series.append(0, 1.0)  # the series' time still only moves forward
    assert series.append(10**9, 1.0)
    assert len(series) == 1


# --- SeriesStore: matchers ----------------------------------------------------------------------

SERIES = [
    labels(__name__="up", job="api", env="prod"),
    labels(__name__="up", job="api", env="dev"),
    labels(__name__="up", job="apiserver", env="prod"),
    labels(__name__="up", job="db"),
    labels(__name__="down", job="api", env="prod"),
]


@pytest.fixture
def store() -> SeriesStore:
    store = SeriesStore(retention_ms=1000)
    for i, series in enumerate(SERIES):
        store.append(series, 100, float(i))
    return store


def select(store: SeriesStore, *matchers: tuple[str, str, str]) -> list[Labels]:
    return [s.labels for s in store.select(Matcher.of(*m) for m in matchers)]


def test_each_matcher_kind(store: SeriesStore) -> None:
    up = ("__name__", EQUAL, "up")
    assert select(store, up, ("job", EQUAL, "api")) == sorted([SERIES[0], SERIES[1]])
    assert select(store, up, ("job", NOT_EQUAL, "api")) == sorted([SERIES[2], SERIES[3]])
    assert select(store, up, ("job", REGEX, "api.*")) == sorted(SERIES[:3])
    assert select(store, up, ("job", NOT_REGEX, "api.*")) == [SERIES[3]]
    assert select(store, ("job", EQUAL, "api")) == sorted([SERIES[0], SERIES[1], SERIES[4]])


def test_selected_series_are_sorted_by_labels(store: SeriesStore) -> None:
    found = select(store, ("job", REGEX, ".+"))
    assert found == sorted(SERIES)


def test_a_matcher_that_matches_empty_also_matches_a_missing_label(store: SeriesStore) -> None:
    up = ("__name__", EQUAL, "up")
    assert select(store, up, ("env", EQUAL, "")) == [SERIES[3]]
    assert select(store, up, ("env", NOT_EQUAL, "")) == sorted([SERIES[0], SERIES[1],
                                                                SERIES[2]])
    assert select(store, up, ("env", REGEX, "dev|")) == sorted([SERIES[1], SERIES[3]])
    assert select(store, up, ("env", NOT_REGEX, "prod")) == sorted([SERIES[1], SERIES[3]])
    assert select(store, up, ("env", REGEX, ".*")) == sorted(SERIES[:4])
    assert select(store, up, ("nosuchlabel", EQUAL, "")) == sorted(SERIES[:4])
    assert select(store, up, ("nosuchlabel", EQUAL, "x")) == []
    assert select(store, up, ("nosuchlabel", NOT_EQUAL, "x")) == sorted(SERIES[:4])


def test_regex_matchers_are_fully_anchored(store: SeriesStore) -> None:
    up = ("__name__", EQUAL, "up")
    assert select(store, up, ("job", REGEX, "api")) == sorted([SERIES[0], SERIES[1]])
    assert select(store, up, ("job", REGEX, "pi")) == []
    assert select(store, up, ("job", REGEX, "api|db")) == sorted([SERIES[0], SERIES[1],
                                                                  SERIES[3]])
    assert select(store, up, ("job", REGEX, "a|apiserver")) == [SERIES[2]]
    assert select(store, up, ("job", NOT_REGEX, "api")) == sorted([SERIES[2], SERIES[3]])
    assert select(store, ("__name__", REGEX, "u")) == []


def test_an_unknown_matcher_operator_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown matcher operator"):
        Matcher.of("a", "==", "b")


def regex_store(*values: str) -> SeriesStore:
    store = SeriesStore(retention_ms=1000)
    for value in values:
        store.append(labels(__name__="x", a=value), 0, 1.0)
    return store


def test_dot_does_not_match_a_newline_as_in_prometheus_2() -> None:
    store = regex_store("a\nb", "7")
    assert [s.labels for s in store.select([Matcher.of("a", REGEX, ".*")])] == [
        labels(__name__="x", a="7")]


def test_posix_character_classes_match_as_in_re2() -> None:
    store = regex_store("7", "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        found = store.select([Matcher.of("a", REGEX, "[[:digit:]]+")])
    assert [s.labels for s in found] == [labels(__name__="x", a="7")]


@pytest.mark.parametrize("regex", ["\\\\p{L}", "\\\\d\\\\z"])
def test_re2_only_syntax_is_evaluated_or_refused_by_name(regex: str) -> None:
    try:
        parse_expr(f'x{{a=~"{regex}"}}')
    except PromQLParseError:
        return  # refused with a message: acceptable
    # Accepted: then it must not have been silently changed (nothing to check further here).


# --- SeriesStore: labels and trimming -----------------------------------------------------


def test_label_names_and_values(store: SeriesStore) -> None:
    assert store.label_names() == ["__name__", "env", "job"]
    assert store.label_values("job") == ["api", "apiserver", "db"]
    assert store.label_values("nosuch") == []
    subset = store.select([Matcher.of("job", EQUAL, "db")])
    assert store.label_names(subset) == ["__name__", "job"]
    assert store.label_values("env", subset) == []
    assert store.label_values("__name__", store.select([Matcher.of("env", EQUAL, "prod")])) \
        == ["down", "up"]


def test_trim_removes_series_left_empty_from_the_index() -> None:
    store = SeriesStore(retention_ms=1000)
    old = labels(__name__="old", only_old="yes", job="a")
    kept = labels(__name__="kept", job="a")
    store.append(old, 0, 1.0)
    store.append(kept, 0, 1.0)
    store.append(kept, 5000, 2.0)
    assert store.trim(5000) == 1  # mint 4000: old's only chunk ended at 0
    assert old not in store.series
    assert kept in store.series  # its chunk ends at 5000: kept whole, older sample too
    assert len(store) == 1
    assert list(store.samples()) == [2]
    assert store.label_names() == ["__name__", "job"]
    assert store.label_values("__name__") == ["kept"]
    assert store.select([Matcher.of("only_old", EQUAL, "yes")]) == []
    assert [s.labels for s in store.select([Matcher.of("job", EQUAL, "a")])] == [kept]
    # The name can be used again: a new, empty series.
    store.append(old, 6000, 3.0)
    assert store.series[old].window(0, 10**6) == ([6000], [3.0])
    assert store.label_values("only_old") == ["yes"]


def test_get_or_create_returns_the_same_series() -> None:
    store = SeriesStore(retention_ms=1000)
    first = store.get_or_create(labels(__name__="x"))
    assert store.get_or_create(labels(__name__="x")) is first
    assert store.append(labels(__name__="x"), 1, 1.0)
    assert not store.append(labels(__name__="x"), 1, 2.0)


def test_a_stale_nan_value_stored_directly_is_only_a_value() -> None:
    # Only append_stale records a marker; the value itself is not inspected.
    series = MemSeries(labels(__name__="x"))
    series.append(0, STALE_NAN)
    assert series.latest(0, 10) is not None
