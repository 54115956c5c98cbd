"""One source's path from lines to metrics: decode, filter, map by schema, accumulate.

Updates are not applied to the metric store line by line. They accumulate in a `RequestBatch`
keyed by (service, model, user) and are applied at the checkpoint, in the same step that
commits the offsets which produced them; if that commit fails, the store's changes are undone
and the batch stays pending. `/metrics` therefore only ever shows committed counts: neither a
crash nor a full disk makes an exported counter go back (which Prometheus would read as a
reset and turn into a spike of `rate()`).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.clock import Clock
from monitor.goregexp import Regexp
from monitor.ingest.decoders import LineDecoder, decode_object
from monitor.ingest.events import (
    RequestEvent,
    may_hold_lone_surrogates,
    without_lone_surrogates,
)
from monitor.ingest.files import LineChunk
from monitor.ingest.schemas import MalformedLine, Schema, path_getter
from monitor.metrics import families as fam
from monitor.metrics.store import MetricFamily, MetricStore

log = logging.getLogger(__name__)

_MALFORMED_LOG_INTERVAL_S = 60.0


class RequestAccumulator:
    """Everything one batch learned about one (service, model, user)."""

    __slots__ = ("duration", "errors", "input_hist", "input_hit", "input_miss",
                 "input_unknown", "output", "reasoning", "success", "tps", "ttft")

    def __init__(self) -> None:
        self.success = 0
        self.errors: dict[str, int] = {}
        # Histograms as [bucket counts..., sum]: one list, one index per observation.
        self.duration = [0] * (len(fam.DURATION_BUCKETS) + 1) + [0.0]
        self.ttft = [0] * (len(fam.TTFT_BUCKETS) + 1) + [0.0]
        self.tps = [0] * (len(fam.TOKENS_PER_SECOND_BUCKETS) + 1) + [0.0]
        self.input_hist = [0] * (len(fam.INPUT_TOKEN_BUCKETS) + 1) + [0.0]
        self.input_hit = 0
        self.input_miss = 0
        self.input_unknown = 0
        self.output = 0
        self.reasoning = 0


class RequestBatch:
    """Accumulators for the events read since the last checkpoint."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], RequestAccumulator] = {}

    def add(
        self,
        event: RequestEvent,
        user_label: bool,
        # Bound once as defaults: this runs for every line, and global lookups add up.
        _bisect: Callable[[Sequence[float], float], int] = bisect_left,
        _duration_bounds: tuple[float, ...] = fam.DURATION_BUCKETS,
        _ttft_bounds: tuple[float, ...] = fam.TTFT_BUCKETS,
        _tps_bounds: tuple[float, ...] = fam.TOKENS_PER_SECOND_BUCKETS,
        _input_bounds: tuple[float, ...] = fam.INPUT_TOKEN_BUCKETS,
    ) -> None:
        key = (event.service, event.model, (event.user or "") if user_label else "")
        acc = self.by_key.get(key)
        if acc is None:
            acc = self.by_key[key] = RequestAccumulator()
        error_class = event.error_class
        if error_class is None:
            acc.success += 1
        else:
            acc.errors[error_class] = acc.errors.get(error_class, 0) + 1
        value = event.duration
        if value is not None:
            hist = acc.duration
            hist[_bisect(_duration_bounds, value)] += 1
            hist[-1] += value
        value = event.ttft
        if value is not None:
            hist = acc.ttft
            hist[_bisect(_ttft_bounds, value)] += 1
            hist[-1] += value
        value = event.throughput
        if value is not None and error_class is None:  # a failed request has no speed
            hist = acc.tps
            hist[_bisect(_tps_bounds, value)] += 1
            hist[-1] += value
        tokens = event.input_tokens
        if tokens is not None:
            hist = acc.input_hist
            hist[_bisect(_input_bounds, tokens)] += 1
            hist[-1] += tokens
        hit, miss = event.cache_hit_tokens, event.cache_miss_tokens
        if hit is not None or miss is not None:
            acc.input_hit += hit or 0
            acc.input_miss += miss or 0
        elif tokens is not None:
            acc.input_unknown += tokens
        tokens = event.output_tokens
        if tokens is not None:
            acc.output += tokens
        tokens = event.reasoning_tokens
        if tokens is not None:
            acc.reasoning += tokens


@dataclass
class LineCounts:
    parsed: int = 0
    malformed: int = 0
    oversized: int = 0
    filtered: int = 0


LineFilter = Callable[[dict[str, Any]], bool]


def build_filter(include: Mapping[str, Regexp],
                 exclude: Mapping[str, Regexp]) -> LineFilter | None:
    """A predicate keeping lines whose fields match every `include` regex and no `exclude`."""
    if not include and not exclude:
        return None
    wanted = [(path_getter(p), rx) for p, rx in include.items()]
    unwanted = [(path_getter(p), rx) for p, rx in exclude.items()]

    def keep(obj: dict[str, Any]) -> bool:
        for get, rx in wanted:
            value = get(obj)
            if value is None or rx.search(str(value)) is None:
                return False
        for get, rx in unwanted:
            value = get(obj)
            if value is not None and rx.search(str(value)) is not None:
                return False
        return True

    return keep


class SourcePipeline:
    """Turns one source's line chunks into a pending batch, applied at each checkpoint."""

    def __init__(
        self,
        *,
        name: str,
        schema: Schema,
        store: MetricStore,
        fast_decoder: LineDecoder | None = None,
        clock: Clock,
        static_labels: Mapping[str, str] | None = None,
        line_filter: LineFilter | None = None,
        user_label: bool = False,
        priced: bool = False,
    ) -> None:
        self.name = name
        self.schema = schema
        # The typed decoder decides most lines without a dict. A filter needs the dict, so a
        # filtered source decodes twice: the dict for the filter, the typed event after it.
        self._fast_decoder = fast_decoder
        self.clock = clock
        self.line_filter = line_filter
        self.user_label = user_label
        labels = dict(static_labels or {})
        self._service_override = labels.pop("service", None)
        self.model_override = labels.pop("model", None)
        # The requests of a priced source, kept for the ledger until the next checkpoint.
        self.priced_events: list[RequestEvent] | None = [] if priced else None
        self._extra: Sequence[tuple[str, str]] = tuple(sorted(labels.items()))
        self.batch = RequestBatch()
        self.counts = LineCounts()
        self.pending_lines = 0
        self._families = {spec.name: store.register(spec)
                          for spec in (*fam.REQUEST_FAMILIES, fam.LOG_LINES)}
        self._blank_lines = 0
        self._last_malformed_log = float("-inf")
        self._malformed_since_log = 0

    def process(self, chunk: LineChunk, where: str) -> int:
        """Decode and accumulate one chunk; returns the number of lines it held."""
        counts = self.counts
        before = counts.malformed + counts.filtered
        counts.oversized += chunk.oversized
        if self._fast_decoder is not None and self.line_filter is None:
            self._process_fast(chunk.lines, self._fast_decoder, where)
        else:
            self._process_objects(chunk.lines, where)
        lines = len(chunk.lines)
        counts.parsed += lines - (counts.malformed + counts.filtered - before) - (
            self._blank_lines)
        self._blank_lines = 0
        handled = lines + chunk.oversized
        self.pending_lines += handled
        return handled

    def _process_fast(self, lines: list[bytes], decode: LineDecoder, where: str) -> None:
        add = self.batch.add
        user_label = self.user_label
        keep = None if self.priced_events is None else self.priced_events.append
        for line in lines:
            try:
                event = decode(line)
            except MalformedLine as exc:
                self._reject(line, where, str(exc))
                continue
            except Exception as exc:  # a parser bug must cost one line, never the loop
                self._parser_bug(where, exc)
                continue
            if b"\\u" in line and may_hold_lone_surrogates(line):
                event = without_lone_surrogates(event)
            add(event, user_label)
            if keep is not None:
                keep(event)

    def _process_objects(self, lines: list[bytes], where: str) -> None:
        add = self.batch.add
        user_label = self.user_label
        schema = self.schema
        typed = self._fast_decoder
        line_filter = self.line_filter
        counts = self.counts
        keep = None if self.priced_events is None else self.priced_events.append
        for line in lines:
            try:
                obj = decode_object(line)
                if line_filter is not None and not line_filter(obj):
                    counts.filtered += 1
                    continue
                event = typed(line) if typed is not None else schema(obj)
            except MalformedLine as exc:
                self._reject(line, where, str(exc))
                continue
            except Exception as exc:  # a parser bug must cost one line, never the loop
                self._parser_bug(where, exc)
                continue
            if b"\\u" in line and may_hold_lone_surrogates(line):
                event = without_lone_surrogates(event)
            add(event, user_label)
            if keep is not None:
                keep(event)

    def _parser_bug(self, where: str, exc: Exception) -> None:
        self._malformed(where, f"unexpected {type(exc).__name__} while parsing (a bug in "
                               f"inferwatch, please report it): {exc}")

    def _reject(self, line: bytes, where: str, reason: str) -> None:
        if line.strip():
            self._malformed(where, reason)
        else:
            self._blank_lines += 1  # blank lines are not requests, nor mistakes

    def _malformed(self, where: str, reason: str) -> None:
        """Count a bad line; log the reason at most once a minute per source (never content)."""
        self.counts.malformed += 1
        self._malformed_since_log += 1
        now = self.clock.monotonic()
        if now - self._last_malformed_log >= _MALFORMED_LOG_INTERVAL_S:
            log.warning("source %s: skipped %d malformed line(s); latest in %s: %s",
                        self.name, self._malformed_since_log, where, reason)
            self._last_malformed_log = now
            self._malformed_since_log = 0

    def apply(self) -> None:
        """Add the pending batch and line counts to the metric store (at a checkpoint, inside
        the store's change tracking); `clear()` once the commit has succeeded."""
        families = self._families
        for (service, model, user), acc in self.batch.by_key.items():
            values = (self.name, self._service_override or service,
                      self.model_override or model)
            extra = (*self._extra, ("user", user)) if self.user_label and user else self._extra
            self._apply_one(families, values, extra, acc)
        lines = families[fam.LOG_LINES.name]
        for result in ("parsed", "malformed", "oversized", "filtered"):
            amount = getattr(self.counts, result)
            if amount:
                lines.inc(lines.key((self.name, result)), amount)

    def clear(self) -> None:
        """The applied batch is committed: start the next one."""
        self.batch = RequestBatch()
        self.counts = LineCounts()
        self.pending_lines = 0
        if self.priced_events is not None:
            self.priced_events = []

    @staticmethod
    def _apply_one(families: dict[str, MetricFamily], values: tuple[str, str, str],
                   extra: Sequence[tuple[str, str]], acc: RequestAccumulator) -> None:
        requests = families[fam.REQUESTS.name]
        if acc.success:
            requests.inc(requests.key((*values, "success"), extra), acc.success)
        if acc.errors:
            requests.inc(requests.key((*values, "error"), extra), sum(acc.errors.values()))
            errors = families[fam.REQUEST_ERRORS.name]
            for error_class, count in acc.errors.items():
                errors.inc(errors.key((*values, error_class), extra), count)
        for spec, hist in ((fam.REQUEST_DURATION, acc.duration),
                           (fam.TIME_TO_FIRST_TOKEN, acc.ttft),
                           (fam.OUTPUT_TOKENS_PER_SECOND, acc.tps),
                           (fam.REQUEST_INPUT_TOKENS, acc.input_hist)):
            counts = [int(c) for c in hist[:-1]]
            observed = sum(counts)
            if observed:
                family = families[spec.name]
                family.merge_histogram(family.key(values, extra), counts, hist[-1], observed)
        inputs = families[fam.INPUT_TOKENS.name]
        for cache, amount in (("hit", acc.input_hit), ("miss", acc.input_miss),
                              ("unknown", acc.input_unknown)):
            if amount:
                inputs.inc(inputs.key((*values, cache), extra), amount)
        for spec, amount in ((fam.OUTPUT_TOKENS, acc.output),
                             (fam.REASONING_TOKENS, acc.reasoning)):
            if amount:
                family = families[spec.name]
                family.inc(family.key(values, extra), amount)
