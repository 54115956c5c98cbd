"""The report as one JSON-ready document: the `--format json` output, and what the text and
HTML renderings are drawn from, so all three always say the same thing.

Keys are stable (REPORT_VERSION changes if one ever has to change meaning). Counts, ratios,
seconds and tokens are JSON numbers; amounts of money are exact decimal strings; times are
RFC 3339 in UTC with milliseconds; a figure that cannot be computed (no values) is null.
The layout is listed in the README ("Offline reports").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from monitor.cost.money import money_text
from monitor.ingest.events import ERROR_CLASSES
from monitor.report.aggregate import Aggregator, FileCounts, ModelStats, TimeBin
from monitor.report.costing import CostTally
from monitor.report.distribution import MAX_RELATIVE_ERROR
from monitor.report.recommend import recommendations
from monitor.report.trend import FLAT_FRACTION, TREND_DAYS, cost_trend, spearman
from monitor.units import format_duration

REPORT_VERSION = 1

Document = dict[str, Any]


def iso(t: float) -> str:
    """RFC 3339 UTC with milliseconds: 2026-01-18T06:07:46.123Z."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _tokens(stats: ModelStats) -> dict[str, Any]:
    known = stats.cache_hit + stats.cache_miss
    return {"input": stats.input_tokens, "output": stats.output_tokens,
            "reasoning": stats.reasoning_tokens, "cache_hit": stats.cache_hit,
            "cache_miss": stats.cache_miss, "cache_hit_ratio": ratio(stats.cache_hit, known)}


def _requests(stats: ModelStats) -> dict[str, Any]:
    errors = stats.error_count
    return {"total": stats.requests, "success": stats.requests - errors, "error": errors,
            "success_ratio": ratio(stats.requests - errors, stats.requests),
            "error_ratio": ratio(errors, stats.requests)}


def _errors_by_class(errors: dict[str, int]) -> dict[str, int]:
    """Every class that occurred, in SPEC order."""
    return {name: errors[name] for name in ERROR_CLASSES if errors.get(name)}


def _model(name: str, stats: ModelStats) -> Document:
    return {"model": name, "requests": _requests(stats),
            "errors_by_class": _errors_by_class(stats.errors),
            "latency_seconds": stats.latency.summary(),
            "ttft_seconds": stats.ttft.summary(),
            "throughput_tokens_per_second": stats.throughput.summary(),
            "tokens": _tokens(stats)}


def _bin(start: float, time_bin: TimeBin) -> Document:
    found = time_bin.latency.percentiles()
    return {"start": iso(start), "requests": time_bin.requests,
            "errors": sum(time_bin.errors.values()),
            "errors_by_class": _errors_by_class(time_bin.errors),
            "input_tokens": time_bin.input_tokens, "output_tokens": time_bin.output_tokens,
            "latency_seconds": ({f"p{p}": found[p] for p in (50, 95, 99)} if found else None)}


def _file(counts: FileCounts) -> Document:
    return {"path": counts.path, "schema": counts.schema, "compression": counts.compression,
            "lines": counts.lines + counts.oversized, "parsed": counts.parsed,
            "malformed": counts.malformed,
            "oversized": counts.oversized, "blank": counts.blank,
            "before_since": counts.before_since, "error": counts.error,
            "malformed_reasons": counts.reasons}


def _number(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


def _cost(tally: CostTally) -> Document:
    daily = tally.daily()
    whole = [tally.is_whole(name) for name, _ in daily]
    trend = cost_trend([Fraction(day.amount) for (_, day), is_whole in zip(daily, whole,
                                                                          strict=True)
                        if is_whole])
    reported, reported_requests = tally.reported_total()
    return {
        "currency": tally.config.currency,
        "timezone": tally.config.timezone,
        "requests": tally.requests,
        "priced_requests": tally.requests - tally.unpriced,
        "unpriced_requests": tally.unpriced,
        "duplicate_requests": tally.duplicates,
        "total": money_text(tally.total()),
        "reported_total": money_text(reported) if reported_requests else None,
        "reported_requests": reported_requests,
        "by_model": {model: money_text(amount) for model, amount in
                     sorted(tally.by_model.items(), key=lambda item: (-item[1], item[0]))},
        "unpriced_by_model": dict(sorted(tally.unpriced_by_model.items())),
        "earlier": (None if tally.earlier is None else
                    {"requests": tally.earlier.requests,
                     "amount": money_text(tally.earlier.amount)}),
        "days": [{"day": name, "whole": is_whole, "requests": day.requests,
                  "unpriced": day.unpriced, "amount": money_text(day.amount),
                  "reported": money_text(day.reported) if day.reported_requests else None}
                 for (name, day), is_whole in zip(daily, whole, strict=True)],
        "trend": {"direction": trend.direction, "method": "theil-sen", "days": trend.days,
                  "slope_per_day": _number(trend.slope_per_day),
                  "mean_per_day": _number(trend.mean_per_day),
                  "relative_slope": _number(trend.relative_slope),
                  "intercept": _number(trend.intercept),
                  "flat_within": float(FLAT_FRACTION), "window_days": TREND_DAYS},
        "problems": list(tally.priced_errors),
    }


def _correlation(samples: dict[str, list[tuple[int, float]]], seen: int) -> Document:
    """Spearman's rho between input tokens and latency, over all sampled successful requests
    and per model (the per-model figures are the ones that mean something: models differ)."""
    pairs = [(float(tokens), latency) for group in samples.values() for tokens, latency in group]
    return {"input_tokens_latency_spearman": spearman(pairs),
            "sample_size": len(pairs), "requests_considered": seen,
            "by_model": [{"model": model, "spearman": spearman(
                [(float(tokens), latency) for tokens, latency in group]),
                          "sample_size": len(group)}
                         for model, group in sorted(samples.items())]}


def build_document(*, aggregator: Aggregator, files: Sequence[FileCounts],
                   warnings: Sequence[str], generated_at: float,
                   since: float | None) -> Document:
    """The whole report (see the module docstring)."""
    overall = aggregator.overall()
    samples = aggregator.sample_pairs()
    lines = FileCounts(path="")
    for counts in files:
        lines.add(counts)
    first, last = aggregator.first, aggregator.last
    seen = overall.requests > 0
    hours = max((last - first) / 3600.0, 1.0) if seen else None
    document: Document = {
        "report_version": REPORT_VERSION,
        "generated_at": iso(generated_at),
        "since": (None if since is None else
                  {"duration": format_duration(since), "from": iso(generated_at - since)}),
        "range": {"first": iso(first) if seen else None, "last": iso(last) if seen else None,
                  "hours": (last - first) / 3600.0 if seen else None},
        "percentile_grid_relative_error": MAX_RELATIVE_ERROR,
        "files": [_file(counts) for counts in files],
        "warnings": list(warnings),
        "lines": {"total": lines.lines + lines.oversized, "parsed": lines.parsed,
                  "malformed": lines.malformed, "oversized": lines.oversized,
                  "blank": lines.blank, "before_since": lines.before_since},
        "requests": _requests(overall),
        "latency_seconds": overall.latency.summary(),
        "ttft_seconds": overall.ttft.summary(),
        "throughput_tokens_per_second": overall.throughput.summary(),
        "tokens": _tokens(overall),
        "rates": {
            "hours": hours,
            "requests_per_hour": overall.requests / hours if hours else None,
            "input_tokens_per_hour": overall.input_tokens / hours if hours else None,
            "output_tokens_per_hour": overall.output_tokens / hours if hours else None,
        },
        "errors": {"total": overall.error_count,
                   "by_class": _errors_by_class(overall.errors)},
        "models": [_model(name, stats) for name, stats in
                   sorted(aggregator.models.items(), key=lambda kv: (-kv[1].requests, kv[0]))],
        "timeline": {"bin_seconds": aggregator.timeline.width,
                     "bins": [_bin(start, b) for start, b in aggregator.timeline.ordered()]},
        "cost": _cost(aggregator.cost) if aggregator.cost.requests else None,
        "slowest": [{"request_id": slow.request_id, "model": slow.model,
                     "timestamp": iso(slow.timestamp), "latency_seconds": slow.latency,
                     "status": slow.status, "error_class": slow.error_class}
                    for slow in aggregator.slowest_first()],
        "correlation": _correlation(samples, aggregator.sample.seen),
    }
    document["recommendations"] = recommendations(document, samples)
    return document


def money(text: str | None) -> Decimal | None:
    """A money string of the document back as a Decimal (for renderers)."""
    return None if text is None else Decimal(text)
