"""PromQL values: labels, samples, instant vectors, range windows, matrices, scalars, strings.

Labels are a tuple of (name, value) pairs sorted by name, `__name__` included: hashable, cheap
to compare, and the same representation the series store uses. Timestamps are milliseconds
since the epoch (ints), as in Prometheus; values are floats.

A *stale marker* is a sample whose value is Prometheus's special NaN (0x7ff0000000000002):
it ends a series for the lookback of instant selectors and is dropped from range windows.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import msgspec

Labels = tuple[tuple[str, str], ...]
METRIC_NAME = "__name__"
EMPTY_LABELS: Labels = ()

STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale_nan(value: float) -> bool:
    """Whether `value` is Prometheus's staleness marker (not just any NaN)."""
    return value != value and struct.pack("<d", value) == _STALE_BYTES  # noqa: PLR0124


_STALE_BYTES = struct.pack("<d", STALE_NAN)


def labels_from(mapping: Mapping[str, str]) -> Labels:
    """Labels from a mapping; empty values are dropped (an empty label is an absent one)."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def label_value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def metric_name(labels: Labels) -> str:
    return label_value(labels, METRIC_NAME)


def without_name(labels: Labels) -> Labels:
    if labels and labels[0][0] == METRIC_NAME:  # "__name__" sorts first among valid names
        return labels[1:]
    return tuple(pair for pair in labels if pair[0] != METRIC_NAME)


def with_label(labels: Labels, name: str, value: str) -> Labels:
    """`labels` with `name` set to `value` (removed when `value` is empty)."""
    kept = [pair for pair in labels if pair[0] != name]
    if value != "":
        kept.append((name, value))
        kept.sort()
    return tuple(kept)


# Aggregations and vector matching project the same label sets at every step of a range
# query: a bounded cache turns most projections into one lookup.
@lru_cache(maxsize=1 << 16)
def _keep_only(labels: Labels, names: tuple[str, ...]) -> Labels:
    return tuple(pair for pair in labels if pair[0] in names)


@lru_cache(maxsize=1 << 16)
def _drop(labels: Labels, names: tuple[str, ...]) -> Labels:
    return tuple(pair for pair in labels if pair[0] not in names)


def keep_only(labels: Labels, names: Iterable[str]) -> Labels:
    return _keep_only(labels, names if isinstance(names, tuple) else tuple(names))


def drop(labels: Labels, names: Iterable[str]) -> Labels:
    return _drop(labels, names if isinstance(names, tuple) else tuple(names))


def format_labels(labels: Labels) -> str:
    """`name{a="b"}` as Prometheus prints a metric (for errors and test output)."""
    name = metric_name(labels)
    inner = ", ".join(f'{k}="{_escape(v)}"' for k, v in labels if k != METRIC_NAME)
    return f"{name}{{{inner}}}" if inner or not name else name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One value of one series at one time: an element of an instant vector.

    A frozen msgspec Struct without GC tracking: built by the hundred thousand in a range
    query, it costs a seventh of a frozen dataclass; it holds only immutable values.
    """

    labels: Labels
    t: int
    v: float


Vector = list[Sample]


@dataclass(slots=True)
class Series:
    """A series with points: an element of a matrix (a range query's or range selector's
    result). `ts` and `vs` have the same length."""

    labels: Labels
    ts: list[int]
    vs: list[float]


Matrix = list[Series]


class Scalar(msgspec.Struct, frozen=True, gc=False):
    t: int
    v: float


class String(msgspec.Struct, frozen=True, gc=False):
    t: int
    v: str


Value = Vector | Matrix | Scalar | String
