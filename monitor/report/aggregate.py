"""What `inferwatch report` learns from the lines: decoding with the daemon's parsers and
accumulating, in memory that does not grow with the number of lines.

Per line: the schema's decoder from `monitor.ingest.decoders` (the daemon's fast path, which
falls back to the lenient parser of `schemas.py` exactly as ingestion does); a line it rejects
is counted as malformed with its reason (blank lines are counted apart, as the daemon does);
an unexpected exception in a parser costs that line, never the report. One rule more than the
daemon's: a timestamp before 1970 or from the year 3000 on (ISO 8601 allows years 1 to 9999)
is malformed here, as it is for epoch numbers, since the report counts by real hours and days.

What is kept, and its bound:
* per model (a line's `model`, the service name for `inference` lines without one): requests,
  errors by class, latency / time to first token / per-request throughput distributions
  (`Distribution`: exact count, sum, min, max, percentiles on a fixed grid) and token sums —
  for the first MAX_MODELS names; later names are pooled under `__overflow__`;
* a timeline of hourly bins (requests, errors by class, tokens, latency distribution). When it
  holds more than MAX_BINS bins, bins are merged in pairs (two hours, then four, ...);
* the SLOWEST requests with a latency (a min-heap: request id, model, time, status, class —
  never any text of the prompt or response; ids cut to MAX_ID_CHARS);
* a uniform sample of SAMPLE_SIZE requests, whose successful ones give the (input tokens,
  latency) pairs of the rank correlation (`trend.Reservoir`);
* the cost tally of `api_usage` lines (`costing.CostTally`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from monitor.ingest.events import RequestEvent
from monitor.ingest.schemas import MAX_EPOCH, MalformedLine
from monitor.report.costing import CostTally
from monitor.report.distribution import Distribution
from monitor.report.trend import Reservoir

LineDecoder = Callable[[bytes], RequestEvent]

MAX_MODELS = 200
OVERFLOW = "__overflow__"
BIN_SECONDS = 3600
MAX_BINS = 720
SLOWEST = 10
SAMPLE_SIZE = 10_000
MAX_ID_CHARS = 128
MAX_REASONS = 5  # malformed-line reasons kept per file (the first ones)


class ModelStats:
    """Everything learned about one model."""

    __slots__ = ("cache_hit", "cache_miss", "errors", "input_tokens", "latency",
                 "output_tokens", "reasoning_tokens", "requests", "throughput", "ttft")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.latency = Distribution()
        self.ttft = Distribution()
        self.throughput = Distribution()
        self.input_tokens = 0
        self.output_tokens = 0
        self.reasoning_tokens = 0
        self.cache_hit = 0
        self.cache_miss = 0

    def merge(self, other: ModelStats) -> None:
        self.requests += other.requests
        for error_class, count in other.errors.items():
            self.errors[error_class] = self.errors.get(error_class, 0) + count
        self.latency.merge(other.latency)
        self.ttft.merge(other.ttft)
        self.throughput.merge(other.throughput)
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cache_hit += other.cache_hit
        self.cache_miss += other.cache_miss

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class TimeBin:
    """One bin of the timeline."""

    __slots__ = ("errors", "input_tokens", "latency", "output_tokens", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.latency = Distribution()

    def merge(self, other: TimeBin) -> None:
        self.requests += other.requests
        for error_class, count in other.errors.items():
            self.errors[error_class] = self.errors.get(error_class, 0) + count
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.latency.merge(other.latency)


class Timeline:
    """Bins of `width` seconds aligned to the epoch; the width doubles while there are more
    than `max_bins` bins, so memory stays bounded whatever the span of the logs."""

    def __init__(self, width: int = BIN_SECONDS, max_bins: int = MAX_BINS) -> None:
        self.width = width
        self.max_bins = max_bins
        self.bins: dict[int, TimeBin] = {}  # start // width -> bin

    def _coarsen(self) -> None:
        merged: dict[int, TimeBin] = {}
        for key, time_bin in self.bins.items():
            target = merged.get(key // 2)
            if target is None:
                merged[key // 2] = time_bin
            else:
                target.merge(time_bin)
        self.bins = merged
        self.width *= 2

    def bin_for(self, t: float) -> TimeBin:
        key = int(t // self.width)
        found = self.bins.get(key)
        if found is None:
            self.bins[key] = found = TimeBin()
            if len(self.bins) > self.max_bins:
                while len(self.bins) > self.max_bins // 2:
                    self._coarsen()
                found = self.bins[int(t // self.width)]
        return found

    def ordered(self) -> list[tuple[float, TimeBin]]:
        """(start time, bin) in time order."""
        return [(key * self.width, self.bins[key]) for key in sorted(self.bins)]


@dataclass
class FileCounts:
    """What one file held."""

    path: str
    schema: str | None = None
    compression: str | None = None
    lines: int = 0
    parsed: int = 0
    malformed: int = 0
    oversized: int = 0
    blank: int = 0
    before_since: int = 0
    error: str | None = None
    reasons: list[str] = field(default_factory=list)

    def add(self, other: FileCounts) -> None:
        self.lines += other.lines
        self.parsed += other.parsed
        self.malformed += other.malformed
        self.oversized += other.oversized
        self.blank += other.blank
        self.before_since += other.before_since


@dataclass(order=True)
class SlowRequest:
    latency: float
    order: int  # later lines sort lower: on a tie the earlier request stays
    request_id: str | None = field(compare=False)
    model: str = field(compare=False)
    timestamp: float = field(compare=False)
    status: int | None = field(compare=False)
    error_class: str | None = field(compare=False)


class Aggregator:
    """Consumes decoded lines; read the results from its attributes.

    A chunk's events are aggregated column by column (list comprehensions, `Counter`, bulk
    `min`/`max`/`sum`) rather than one event at a time: in CPython that costs a fraction of
    the per-event attribute updates, and this is the loop every line goes through.
    """

    def __init__(self, *, cutoff: float | None, cost: CostTally) -> None:
        self.cutoff = cutoff if cutoff is not None else float("-inf")
        self.cost = cost
        self.models: dict[str, ModelStats] = {}
        self.timeline = Timeline()
        self.slowest: list[SlowRequest] = []
        self.sample: Reservoir[RequestEvent] = Reservoir(SAMPLE_SIZE)
        self.first = float("inf")
        self.last = float("-inf")
        self._order = 0

    def consume(self, lines: list[bytes], decode: LineDecoder, priced: bool,
                counts: FileCounts) -> None:
        """Decode and accumulate a chunk of lines of one file."""
        counts.lines += len(lines)
        events: list[RequestEvent] = []
        append = events.append
        for line in lines:
            try:
                append(decode(line))
            except MalformedLine as exc:
                self._reject(line, str(exc), counts)
            except Exception as exc:  # a parser bug costs one line, never the report
                self._reject(line, f"unexpected {type(exc).__name__} while parsing (a bug "
                                   f"in inferwatch, please report it): {exc}", counts)
        if not events:
            return
        stamps = [e.timestamp for e in events]
        if min(stamps) < 0.0 or max(stamps) >= MAX_EPOCH:
            kept = [e for e in events if 0.0 <= e.timestamp < MAX_EPOCH]
            counts.malformed += len(events) - len(kept)
            if len(counts.reasons) < MAX_REASONS:
                counts.reasons.append("timestamp: before 1970 or after 2999 (the report "
                                      "counts by hour and day of real dates)")
            events = kept
            stamps = [e.timestamp for e in events]
        cutoff = self.cutoff
        if stamps and min(stamps) < cutoff:
            kept = [e for e in events if e.timestamp >= cutoff]
            counts.before_since += len(events) - len(kept)
            events = kept
            stamps = [e.timestamp for e in events]
        if not events:
            return
        counts.parsed += len(events)
        self.add_events(events, stamps)
        if priced:
            self.cost.add(events)

    @staticmethod
    def _reject(line: bytes, reason: str, counts: FileCounts) -> None:
        if not line.strip():
            counts.blank += 1
            return
        counts.malformed += 1
        if len(counts.reasons) < MAX_REASONS:
            counts.reasons.append(reason)

    def add_events(self, events: list[RequestEvent], stamps: list[float]) -> None:
        """Accumulate events that passed the --since filter (`stamps`: their timestamps)."""
        first, last = min(stamps), max(stamps)
        self.first = min(self.first, first)
        self.last = max(self.last, last)
        width = self.timeline.width
        model = events[0].model
        models = [e.model for e in events]
        if models.count(model) == len(models) and int(first // width) == int(last // width):
            # The common case: one model, one timeline bin. Columns are built once for both.
            columns = _Columns(events)
            self._add_to_model(self._stats(model), events, columns)
            self._add_to_bin(self.timeline.bin_for(first), events, columns)
        elif int(first // width) == int(last // width):
            # Several models, one bin: the bin gets the models' columns and cells merged.
            merged = _Columns([])
            for name, group in _grouped(events, models).items():
                columns = _Columns(group)
                self._add_to_model(self._stats(name), group, columns)
                merged.merge(columns)
            self._add_to_bin(self.timeline.bin_for(first), events, merged)
        else:
            for name, group in _grouped(events, models).items():
                self._add_to_model(self._stats(name), group, _Columns(group))
            for key, group in _grouped(events, [int(t // width) for t in stamps]).items():
                self._add_to_bin(self.timeline.bin_for(key * width), group, _Columns(group))
        slowest = self.slowest
        threshold = slowest[0].latency if len(slowest) >= SLOWEST else -1.0
        for event in [e for e in events if e.duration is not None and e.duration > threshold]:
            self._note_slow(event)
        self.sample.offer_many(events)

    def _stats(self, model: str) -> ModelStats:
        stats = self.models.get(model)
        if stats is not None:
            return stats
        if len(self.models) >= MAX_MODELS:
            overflow = self.models.get(OVERFLOW)
            if overflow is not None:
                return overflow
            model = OVERFLOW
        stats = self.models[model] = ModelStats()
        return stats

    @staticmethod
    def _add_to_model(stats: ModelStats, events: list[RequestEvent], columns: _Columns) -> None:
        stats.requests += len(events)
        if columns.failed:
            _count_into(stats.errors, columns.failed)
        columns.cells = stats.latency.add_many(columns.latencies)
        stats.ttft.add_many([e.ttft for e in events if e.ttft is not None])
        # A failed request has no speed.
        stats.throughput.add_many([e.throughput for e in events
                                   if e.throughput is not None and e.error_class is None])
        stats.input_tokens += columns.input_tokens
        stats.output_tokens += columns.output_tokens
        stats.reasoning_tokens += sum([e.reasoning_tokens for e in events
                                       if e.reasoning_tokens])
        stats.cache_hit += sum([e.cache_hit_tokens for e in events if e.cache_hit_tokens])
        stats.cache_miss += sum([e.cache_miss_tokens for e in events if e.cache_miss_tokens])

    @staticmethod
    def _add_to_bin(time_bin: TimeBin, events: list[RequestEvent], columns: _Columns) -> None:
        time_bin.requests += len(events)
        if columns.failed:
            _count_into(time_bin.errors, columns.failed)
        if columns.cells is not None:
            time_bin.latency.add_cells(columns.latencies, columns.cells)
        elif columns.latencies:
            time_bin.latency.add_many(columns.latencies)
        time_bin.input_tokens += columns.input_tokens
        time_bin.output_tokens += columns.output_tokens

    def _note_slow(self, event: RequestEvent) -> None:
        duration = event.duration
        assert duration is not None
        if len(self.slowest) >= SLOWEST and duration <= self.slowest[0].latency:
            return
        self._order -= 1
        request_id = event.request_id
        if request_id is not None and len(request_id) > MAX_ID_CHARS:
            request_id = request_id[:MAX_ID_CHARS] + "…"
        entry = SlowRequest(duration, self._order, request_id, event.model, event.timestamp,
                            event.status, event.error_class)
        if len(self.slowest) < SLOWEST:
            heapq.heappush(self.slowest, entry)
        else:
            heapq.heapreplace(self.slowest, entry)

    # -- results --------------------------------------------------------------------------------

    def overall(self) -> ModelStats:
        total = ModelStats()
        for stats in self.models.values():
            total.merge(stats)
        return total

    def slowest_first(self) -> list[SlowRequest]:
        return sorted(self.slowest, reverse=True)

    def sample_pairs(self) -> dict[str, list[tuple[int, float]]]:
        """The (input tokens, latency) pairs of the successful requests in the sample, by
        model (prompt length and latency only compare within one model).

        The sample is drawn from all requests (so a chunk costs no filtering) and filtered
        here: a uniform sample of all requests, filtered, is a uniform sample of those kept.
        """
        pairs: dict[str, list[tuple[int, float]]] = {}
        for e in self.sample.items:
            if e.error_class is None and e.input_tokens is not None and e.duration is not None:
                pairs.setdefault(e.model, []).append((e.input_tokens, e.duration))
        return pairs


K = TypeVar("K")


class _Columns:
    """The columns of a group of events that both a model and a timeline bin need."""

    __slots__ = ("cells", "failed", "input_tokens", "latencies", "output_tokens")

    def __init__(self, events: list[RequestEvent]) -> None:
        self.failed = [e.error_class for e in events if e.error_class is not None]
        self.latencies = [e.duration for e in events if e.duration is not None]
        self.input_tokens = sum([e.input_tokens for e in events if e.input_tokens])
        self.output_tokens = sum([e.output_tokens for e in events if e.output_tokens])
        self.cells: Counter[int] | None = None  # the latencies' cells, once counted

    def merge(self, other: _Columns) -> None:
        """Add another group's columns (whose cells are counted) to these."""
        self.failed += other.failed
        self.latencies += other.latencies
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        if other.cells is not None:
            if self.cells is None:
                self.cells = Counter()
            self.cells.update(other.cells)


def _grouped(events: list[RequestEvent], keys: list[K]) -> dict[K, list[RequestEvent]]:
    """The events by key, in order. A few distinct keys (the usual case: two or three models,
    one or two hours in a chunk) take one comprehension each, cheaper than a loop."""
    distinct = set(keys)
    if len(distinct) <= 4:
        return {key: [e for e, k in zip(events, keys, strict=True) if k == key]
                for key in sorted(distinct, key=keys.index)}
    groups: dict[K, list[RequestEvent]] = {}
    for key, event in zip(keys, events, strict=True):
        group = groups.get(key)
        if group is None:
            groups[key] = [event]
        else:
            group.append(event)
    return groups


def _count_into(counts: dict[str, int], names: list[str]) -> None:
    for name, count in Counter(names).items():
        counts[name] = counts.get(name, 0) + count
