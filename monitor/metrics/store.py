"""The metric store: families of counters, gauges and histograms with bounded label sets.

A series is identified by a `LabelKey`, a tuple of (name, value) pairs in a canonical order
(the family's declared labels first, then any extra labels in name order). Values are plain
Python numbers in slotted objects; there is no per-sample allocation on update.

Every family has a series cap. Once a family holds `series_limit` series, updates for new label
sets go to one series whose label values are all `__overflow__`, and the diversion is counted
in `<ns>_series_dropped_total{family}`. That keeps hostile or unbounded label values (a model
name from a log line) from exhausting memory.

Counter and histogram series are *persistent*: the checkpoint writes the ones marked dirty and
start-up restores them, so counters are continuous across restarts. A checkpoint applies its
batch inside `begin_changes()` (so do the ledger writer and the notification outbox, with the
rows they commit); if the state file refuses the commit, `undo_changes()` puts every touched
series back, so the store never shows counts that were not committed. Series
created at run time (not restored) can be recorded as births (`track_births`), so the series
store can give them a 0 sample at birth.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

LabelKey = tuple[tuple[str, str], ...]
OVERFLOW_VALUE = "__overflow__"
MAX_LABEL_VALUE_CHARS = 256


class Kind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, kw_only=True)
class FamilySpec:
    """A family's declaration. `name` excludes the namespace and, for counters, the `_total`."""

    name: str
    help: str
    kind: Kind
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    # False for a counter that mirrors one kept elsewhere (a NIC's bytes, a GPU's energy): it
    # is set with `set_total`, never persisted or restored, and not "born" at 0.
    persistent: bool = True

    def __post_init__(self) -> None:
        if not self.persistent and self.kind is not Kind.COUNTER:
            raise ValueError(f"{self.name}: only counters can be non-persistent")
        if self.kind is Kind.HISTOGRAM:
            if not self.buckets or list(self.buckets) != sorted(set(self.buckets)):
                raise ValueError(f"{self.name}: histogram buckets must be sorted and unique")
            if math.isinf(self.buckets[-1]):
                raise ValueError(f"{self.name}: +Inf is implicit, leave it out of buckets")
        elif self.buckets:
            raise ValueError(f"{self.name}: only histograms have buckets")


class CounterSeries:
    __slots__ = ("value",)

    def __init__(self, value: float = 0.0) -> None:
        self.value = value


class GaugeSeries:
    __slots__ = ("value",)

    def __init__(self, value: float = 0.0) -> None:
        self.value = value


class HistogramSeries:
    """Non-cumulative bucket counts (the last slot is +Inf), their sum and count."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.counts = [0] * (n_buckets + 1)
        self.sum = 0.0
        self.count = 0

    def cumulative(self) -> list[int]:
        running = 0
        out = []
        for c in self.counts:
            running += c
            out.append(running)
        return out


Series = CounterSeries | GaugeSeries | HistogramSeries


def format_bucket_bound(bound: float) -> str:
    """An `le` value as Go clients print it (`10`, `0.25`, `+Inf`), so queries match."""
    if math.isinf(bound):
        return "+Inf" if bound > 0 else "-Inf"
    text = repr(float(bound))
    return text[:-2] if text.endswith(".0") else text


# A decoded str holds a surrogate only when it was lone: JSON and YAML decoders join pairs.
_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (encodable as UTF-8)."""
    return _SURROGATE.sub("\ufffd", text)


def clean_label_value(value: str) -> str:
    """Bound a label value taken from outside, and make it encodable: a lone surrogate (from
    a JSON or YAML `\\ud800` escape) becomes U+FFFD, or no exposition, state row or page could
    carry it. Escaping itself happens at exposition."""
    if len(value) > MAX_LABEL_VALUE_CHARS:
        value = value[:MAX_LABEL_VALUE_CHARS]
    return value if value.isascii() else without_surrogates(value)


@dataclass
class MetricFamily:
    """One family and its series. Created through `MetricStore.register`."""

    spec: FamilySpec
    full_name: str
    series_limit: int
    series: dict[LabelKey, Series] = field(default_factory=dict)
    _store: MetricStore | None = field(default=None, repr=False)

    def key(self, values: Sequence[str], extra: Iterable[tuple[str, str]] = ()) -> LabelKey:
        """The canonical key for values of the declared labels plus extra (name, value) pairs."""
        if len(values) != len(self.spec.labels):
            raise ValueError(
                f"{self.full_name}: expected {len(self.spec.labels)} label values, "
                f"got {len(values)}"
            )
        pairs = tuple(zip(self.spec.labels, map(clean_label_value, values), strict=True))
        extra_pairs = tuple(sorted((n, clean_label_value(v)) for n, v in extra))
        return pairs + extra_pairs

    def get(self, key: LabelKey) -> Series:
        """The series for `key`, created if new, or the overflow series once at the cap."""
        return self._locate(key)[1]

    def locate(self, key: LabelKey) -> tuple[LabelKey, Series]:
        """(the key the series is stored under, the series), as `get` finds or creates it."""
        return self._locate(key)

    def _locate(self, key: LabelKey) -> tuple[LabelKey, Series]:
        """(the key the series is stored under, the series): `key`, or the overflow key."""
        found = self.series.get(key)
        if found is not None:
            return key, found
        if len(self.series) >= self.series_limit:
            return self._overflow()
        created = self.series[key] = self._new_series()
        if self._store is not None:
            self._store.note_created(self, key)
        return key, created

    def counter(self, key: LabelKey) -> CounterSeries:
        assert self.spec.kind is Kind.COUNTER
        series = self.get(key)
        assert isinstance(series, CounterSeries)
        return series

    def gauge(self, key: LabelKey) -> GaugeSeries:
        assert self.spec.kind is Kind.GAUGE
        series = self.get(key)
        assert isinstance(series, GaugeSeries)
        return series

    def histogram(self, key: LabelKey) -> HistogramSeries:
        assert self.spec.kind is Kind.HISTOGRAM
        series = self.get(key)
        assert isinstance(series, HistogramSeries)
        return series

    def inc(self, key: LabelKey, amount: float = 1.0) -> None:
        assert self.spec.kind is Kind.COUNTER
        if amount < 0:
            raise ValueError(f"{self.full_name}: counters only go up (got {amount})")
        stored, series = self._locate(key)
        assert isinstance(series, CounterSeries)
        self._before_change(stored, series)
        series.value += amount

    def merge_histogram(
        self, key: LabelKey, counts: Sequence[int], total: float, count: int
    ) -> None:
        """Add pre-bucketed observations (non-cumulative counts, +Inf last)."""
        assert self.spec.kind is Kind.HISTOGRAM
        stored, series = self._locate(key)
        assert isinstance(series, HistogramSeries)
        if len(counts) != len(series.counts):
            raise ValueError(f"{self.full_name}: expected {len(series.counts)} bucket counts")
        self._before_change(stored, series)
        for i, c in enumerate(counts):
            series.counts[i] += c
        series.sum += total
        series.count += count

    def set_total(self, key: LabelKey, value: float) -> None:
        """A mirrored (non-persistent) counter takes the source's current total."""
        assert self.spec.kind is Kind.COUNTER and not self.spec.persistent
        self.counter(key).value = value

    def _before_change(self, stored: LabelKey, series: Series) -> None:
        if self._store is not None and self.spec.persistent:
            self._store.note_change(self, stored, series)

    def set(self, key: LabelKey, value: float) -> None:
        self.gauge(key).value = value

    def remove(self, key: LabelKey) -> None:
        self.series.pop(key, None)

    def overflow_key(self) -> LabelKey:
        return tuple((name, OVERFLOW_VALUE) for name in self.spec.labels)

    def _overflow(self) -> tuple[LabelKey, Series]:
        if self._store is not None:
            self._store.count_dropped(self.full_name)
        key = self.overflow_key()
        found = self.series.get(key)
        if found is None:
            # The overflow series itself may exceed the cap by one; that bound is what matters.
            found = self.series[key] = self._new_series()
            if self._store is not None:
                self._store.note_created(self, key)
        return key, found

    def _new_series(self) -> Series:
        if self.spec.kind is Kind.COUNTER:
            return CounterSeries()
        if self.spec.kind is Kind.GAUGE:
            return GaugeSeries()
        return HistogramSeries(len(self.spec.buckets))


DROPPED_SPEC = FamilySpec(
    name="series_dropped",
    help="Updates diverted to a family's __overflow__ series because it reached its series cap.",
    kind=Kind.COUNTER,
    labels=("family",),
)


SeriesId = tuple[str, LabelKey]


@dataclass
class _Changes:
    """What a checkpoint's apply did, to undo it if the commit fails."""

    dirty_before: set[SeriesId]
    births_before: int
    created: list[tuple[MetricFamily, LabelKey]] = field(default_factory=list)
    previous: dict[SeriesId, tuple[Series, float, list[int], int]] = field(default_factory=dict)


class MetricStore:
    """All families of one daemon, under one namespace."""

    def __init__(self, namespace: str = "inferwatch", series_limit: int = 10_000) -> None:
        self.namespace = namespace
        self.series_limit = series_limit
        self.track_births = False  # set by the consumer of take_births
        self._families: dict[str, MetricFamily] = {}
        self._births: list[tuple[MetricFamily, LabelKey]] = []
        self._pending_restore: dict[str, list[tuple[LabelKey, Series]]] = {}
        self._changes: _Changes | None = None
        self.dirty: set[SeriesId] = set()
        self._dropped = self.register(DROPPED_SPEC)

    def full_name(self, spec: FamilySpec) -> str:
        return f"{self.namespace}_{spec.name}"

    def register(self, spec: FamilySpec) -> MetricFamily:
        """Add a family, or return the existing one when declared identically."""
        name = self.full_name(spec)
        existing = self._families.get(name)
        if existing is not None:
            if existing.spec != spec:
                raise ValueError(f"{name} is already registered with a different declaration")
            return existing
        family = MetricFamily(spec=spec, full_name=name, series_limit=self.series_limit,
                              _store=self)
        self._families[name] = family
        for key, series in self._pending_restore.pop(name, []):
            self._restore_into(family, key, series)
        return family

    def family(self, full_name: str) -> MetricFamily | None:
        return self._families.get(full_name)

    def families(self) -> Iterator[MetricFamily]:
        return iter(list(self._families.values()))

    # -- change tracking --------------------------------------------------------------------

    def note_created(self, family: MetricFamily, key: LabelKey) -> None:
        if self._changes is not None:
            self._changes.created.append((family, key))
        if family.spec.kind is Kind.GAUGE or not family.spec.persistent:
            return
        if self.track_births:
            self._births.append((family, key))
        self.dirty.add((family.full_name, key))

    def note_change(self, family: MetricFamily, key: LabelKey, series: Series) -> None:
        """Called before a persistent series changes: marks it dirty, remembers its value."""
        ident = (family.full_name, key)
        self.dirty.add(ident)
        changes = self._changes
        if changes is None or ident in changes.previous:
            return
        if isinstance(series, HistogramSeries):
            changes.previous[ident] = (series, series.sum, list(series.counts), series.count)
        elif isinstance(series, CounterSeries):
            changes.previous[ident] = (series, series.value, [], 0)

    def begin_changes(self) -> None:
        """Start recording changes so that `undo_changes` can take them back."""
        self._changes = _Changes(dirty_before=set(self.dirty), births_before=len(self._births))

    def keep_changes(self) -> None:
        self._changes = None

    def undo_changes(self) -> None:
        """Put every series touched since `begin_changes` back as it was."""
        changes, self._changes = self._changes, None
        if changes is None:
            return
        for series, number, counts, count in changes.previous.values():
            if isinstance(series, HistogramSeries):
                series.sum, series.counts, series.count = number, counts, count
            elif isinstance(series, CounterSeries):
                series.value = number
        for family, key in reversed(changes.created):
            family.series.pop(key, None)
        del self._births[changes.births_before:]
        self.dirty = changes.dirty_before

    def take_births(self) -> list[tuple[MetricFamily, LabelKey]]:
        """Series created since the last call while `track_births` is on (restored ones
        excluded): the series store's hook for writing a 0 sample at birth, so `increase()`
        sees a counter's first events."""
        births, self._births = self._births, []
        return births

    def count_dropped(self, family_name: str) -> None:
        # One series per family at most, so this family is exempt from the cap it reports on
        # (going through get() would recurse once it reached the cap itself).
        key: LabelKey = (("family", family_name),)
        series = self._dropped.series.get(key)
        if series is None:
            series = self._dropped.series[key] = CounterSeries()
            self.note_created(self._dropped, key)
        assert isinstance(series, CounterSeries)
        self.note_change(self._dropped, key, series)
        series.value += 1

    def take_dirty(self) -> list[tuple[MetricFamily, LabelKey, Series]]:
        """Persistent series changed since the last call, for the checkpoint to write."""
        out = []
        for name, key in self.dirty:
            family = self._families.get(name)
            if family is None:
                continue
            series = family.series.get(key)
            if series is not None:
                out.append((family, key, series))
        self.dirty = set()
        return out

    def restore(self, full_name: str, key: LabelKey, series: Series) -> None:
        """Put back a persisted series without recording a birth. A family not registered yet
        receives it when it registers; a row that no longer fits its family (another kind,
        other buckets: an older version's) is dropped then."""
        family = self._families.get(full_name)
        if family is None:
            self._pending_restore.setdefault(full_name, []).append((key, series))
        else:
            self._restore_into(family, key, series)

    @staticmethod
    def _restore_into(family: MetricFamily, key: LabelKey, series: Series) -> None:
        kind = family.spec.kind
        fits_counter = kind is Kind.COUNTER and isinstance(series, CounterSeries)
        fits_histogram = (
            kind is Kind.HISTOGRAM
            and isinstance(series, HistogramSeries)
            and len(series.counts) == len(family.spec.buckets) + 1
        )
        if fits_counter or fits_histogram:
            family.series[key] = series
