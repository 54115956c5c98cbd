"""Counter and histogram series in the state file's `counters` table: written by whoever
commits their changes (the ingest checkpoint, the ledger writer, the notification outbox),
read back at start."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable

import orjson

from monitor.errors import StateError
from monitor.metrics.store import (
    CounterSeries,
    HistogramSeries,
    LabelKey,
    MetricFamily,
    MetricStore,
    Series,
)
from monitor.storage import StateStore, remedy


def encode_labels(key: LabelKey) -> str:
    return orjson.dumps([list(pair) for pair in key]).decode()


def decode_labels(text: str) -> LabelKey:
    return tuple((str(name), str(value)) for name, value in orjson.loads(text))


def restore_counters(state: StateStore, store: MetricStore,
                     families: Collection[str] | None = None) -> int:
    """Load the persisted counter and histogram series (of `families`, by full name, or all)
    into the store."""
    rows = state.connection.execute("SELECT family, labels, kind, value, buckets FROM counters")
    restored = 0
    for family, labels, kind, value, buckets in rows:
        if families is not None and family not in families:
            continue
        try:
            series = _decode_series(kind, value, buckets)
            key = decode_labels(labels)
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise StateError(
                f"state file {state.path} holds an unreadable counter row for {family} "
                f"({exc}). {remedy(state.path)}"
            ) from exc
        store.restore(family, key, series)
        restored += 1
    return restored


def _decode_series(kind: str, value: float, buckets: str | None) -> Series:
    if kind == "counter":
        return CounterSeries(float(value))
    if buckets is None:
        raise ValueError("a histogram row without buckets")
    counts = [int(c) for c in orjson.loads(buckets)]
    if not counts or any(c < 0 for c in counts):
        raise ValueError("histogram buckets must be non-negative counts")
    series = HistogramSeries(len(counts) - 1)
    series.counts = counts
    series.count = sum(counts)
    series.sum = float(value)
    return series


def write_counter_rows(cursor: sqlite3.Cursor,
                       dirty: Iterable[tuple[MetricFamily, LabelKey, Series]]) -> None:
    """Inside the caller's transaction: the current value of each series."""
    rows: list[tuple[str, str, str, float, str | None]] = []
    for family, key, series in dirty:
        if isinstance(series, CounterSeries):
            rows.append((family.full_name, encode_labels(key), "counter", series.value, None))
        elif isinstance(series, HistogramSeries):
            rows.append((family.full_name, encode_labels(key), "histogram", series.sum,
                         orjson.dumps(series.counts).decode()))
    cursor.executemany(
        "INSERT INTO counters (family, labels, kind, value, buckets) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (family, labels) DO UPDATE SET kind = excluded.kind, "
        "value = excluded.value, buckets = excluded.buckets",
        rows,
    )
