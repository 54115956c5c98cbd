"""Recommendations: what to change, each tied to what the report found and carrying the
numbers that triggered it (`evidence`), so a reader can check the reasoning.

- `long_prompts`: for some model, Spearman's rho between input tokens and latency of its
  successful requests is at least 0.5 over at least 30 sampled requests -> trim context, cap
  the prompt length (the model with the highest rho is named);
- `rate_limit`: rate-limit errors are at least 1 % of requests, or at least 100 -> backoff
  with jitter honouring Retry-After, or a higher tier;
- `low_cache_hit`: the cache hit ratio is under 20 % over at least 100,000 input tokens with a
  known split -> a stable prompt prefix;
- `oom`: any out-of-memory error -> lower max new tokens, batch size or concurrency;
- `timeouts`: timeout errors are at least 1 % of requests -> client timeouts above the p99
  latency, shorter outputs;
- `cost_rising`: the daily cost trend is `rising` -> a daily budget (limit: 1.2x the highest
  day, rounded up to two significant digits);
- `unpriced`: api_usage requests of models without a price -> a price file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from statistics import median
from typing import Any

LONG_PROMPT_RHO = 0.5
LONG_PROMPT_MIN_SAMPLE = 30
RATE_LIMIT_SHARE = 0.01
RATE_LIMIT_COUNT = 100
LOW_CACHE_RATIO = 0.2
LOW_CACHE_MIN_TOKENS = 100_000
TIMEOUT_SHARE = 0.01
BUDGET_HEADROOM = Decimal("1.2")

Document = dict[str, Any]


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _peak_bin(document: Document, error_class: str) -> tuple[int, str | None]:
    """The largest count of `error_class` in one timeline bin, and that bin's start."""
    best, start = 0, None
    for time_bin in document["timeline"]["bins"]:
        count = time_bin["errors_by_class"].get(error_class, 0)
        if count > best:
            best, start = count, time_bin["start"]
    return best, start


def _bin_label(document: Document) -> str:
    seconds = document["timeline"]["bin_seconds"]
    return "hour" if seconds == 3600 else f"{seconds // 3600} h bin"


def _long_prompts(document: Document,
                  samples: Mapping[str, Sequence[tuple[int, float]]]) -> Document | None:
    """The model whose latency follows its prompt length most closely, if any does."""
    candidates = [(entry["spearman"], entry["model"]) for entry in
                  document["correlation"]["by_model"]
                  if entry["spearman"] is not None and entry["spearman"] >= LONG_PROMPT_RHO
                  and entry["sample_size"] >= LONG_PROMPT_MIN_SAMPLE]
    if not candidates:
        return None
    rho, model = max(candidates)
    ordered = sorted(samples[model])
    quarter = max(1, len(ordered) // 4)
    short, long_ = ordered[:quarter], ordered[-quarter:]
    evidence = {
        "model": model, "spearman": rho, "sample_size": len(ordered),
        "median_input_tokens_shortest_quarter": median(t for t, _ in short),
        "median_input_tokens_longest_quarter": median(t for t, _ in long_),
        "median_latency_seconds_shortest_quarter": median(s for _, s in short),
        "median_latency_seconds_longest_quarter": median(s for _, s in long_),
    }
    return {
        "id": "long_prompts",
        "title": "Long prompts drive latency",
        "detail": (
            f"The latency of {model} rises with prompt length (Spearman's rho {rho:.2f} over "
            f"{len(ordered):,} successful requests): its longest quarter of prompts (median "
            f"{evidence['median_input_tokens_longest_quarter']:,.0f} input tokens) took a "
            f"median {evidence['median_latency_seconds_longest_quarter']:.2f} s against "
            f"{evidence['median_latency_seconds_shortest_quarter']:.2f} s for the shortest "
            "quarter. Trim retrieved context and history, summarise long conversations, and "
            "cap the prompt length."),
        "evidence": evidence,
    }


def _rate_limit(document: Document) -> Document | None:
    total = document["requests"]["total"]
    count = document["errors"]["by_class"].get("rate_limit", 0)
    if not count or (count < RATE_LIMIT_COUNT and count < RATE_LIMIT_SHARE * total):
        return None
    peak, peak_start = _peak_bin(document, "rate_limit")
    share = count / total
    return {
        "id": "rate_limit",
        "title": "Rate limits are being hit",
        "detail": (
            f"{count:,} requests ({_percent(share)}) failed with a rate limit, up to "
            f"{peak:,} in one {_bin_label(document)} (from {peak_start}). Retry with "
            "exponential backoff and jitter, honouring Retry-After, smooth bursts with a "
            "client-side queue, or ask the provider for a higher rate tier."),
        "evidence": {"rate_limit_errors": count, "share_of_requests": share,
                     "peak_in_one_bin": peak, "peak_bin_start": peak_start},
    }


def _low_cache(document: Document) -> Document | None:
    tokens = document["tokens"]
    known = tokens["cache_hit"] + tokens["cache_miss"]
    ratio = tokens["cache_hit_ratio"]
    if ratio is None or known < LOW_CACHE_MIN_TOKENS or ratio >= LOW_CACHE_RATIO:
        return None
    return {
        "id": "low_cache_hit",
        "title": "Few prompt tokens hit the cache",
        "detail": (
            f"Only {_percent(ratio)} of {known:,} input tokens were cache hits. Providers "
            "cache the longest repeated prefix: put the system prompt, tool definitions and "
            "few-shot examples first and keep them byte-identical between requests, and "
            "the variable part (the user's question, retrieved text) last."),
        "evidence": {"cache_hit_ratio": ratio, "cache_hit_tokens": tokens["cache_hit"],
                     "cache_miss_tokens": tokens["cache_miss"]},
    }


def _oom(document: Document) -> Document | None:
    count = document["errors"]["by_class"].get("oom", 0)
    if not count:
        return None
    by_model = {m["model"]: m["errors_by_class"]["oom"] for m in document["models"]
                if m["errors_by_class"].get("oom")}
    share = count / document["requests"]["total"]
    return {
        "id": "oom",
        "title": "The model server runs out of memory",
        "detail": (
            f"{count:,} requests ({_percent(share)}) failed out of memory "
            f"({', '.join(f'{model}: {n:,}' for model, n in by_model.items())}). Lower the "
            "maximum new tokens per request and the batch size or concurrency (e.g. vLLM "
            "--max-num-seqs, --max-model-len), or leave more GPU memory for the KV cache."),
        "evidence": {"oom_errors": count, "share_of_requests": share, "by_model": by_model},
    }


def _timeouts(document: Document) -> Document | None:
    total = document["requests"]["total"]
    count = document["errors"]["by_class"].get("timeout", 0)
    if not count or count < TIMEOUT_SHARE * total:
        return None
    p99 = document["latency_seconds"]["p99"]
    return {
        "id": "timeouts",
        "title": "Requests time out",
        "detail": (
            f"{count:,} requests ({_percent(count / total)}) timed out; the p99 latency is "
            f"{p99:.2f} s. Set client and proxy timeouts above the p99 latency, cap the "
            "output length, and stream responses so slow generations still deliver."),
        "evidence": {"timeout_errors": count, "share_of_requests": count / total,
                     "latency_p99_seconds": p99},
    }


def _two_digits_up(amount: Decimal) -> Decimal:
    """`amount` rounded up to two significant digits (1234 -> 1300, 0.0123 -> 0.013)."""
    if amount <= 0:
        return Decimal(0)
    exponent = amount.adjusted() - 1
    return amount.scaleb(-exponent).to_integral_value(ROUND_CEILING).scaleb(exponent)


def _cost_rising(document: Document) -> Document | None:
    cost = document["cost"]
    if cost is None or cost["trend"]["direction"] != "rising":
        return None
    trend = cost["trend"]
    days = cost["days"][-trend["days"]:]
    highest = max(Decimal(day["amount"]) for day in days)
    limit = _two_digits_up(highest * BUDGET_HEADROOM)
    currency = cost["currency"]
    return {
        "id": "cost_rising",
        "title": "Spend is rising",
        "detail": (
            f"Daily cost rises by about {trend['slope_per_day']:.4g} {currency} a day "
            f"({_percent(trend['relative_slope'])} of the mean {trend['mean_per_day']:.4g} "
            f"{currency} a day, Theil-Sen over {trend['days']} days); the highest day cost "
            f"{highest.normalize():f} {currency}. Set a budget so a surge pages someone: "
            f"cost.budgets: [{{name: daily, period: day, limit: {limit:f}}}]."),
        "evidence": {"slope_per_day": trend["slope_per_day"],
                     "mean_per_day": trend["mean_per_day"],
                     "relative_slope": trend["relative_slope"], "days": trend["days"],
                     "highest_day": f"{highest.normalize():f}",
                     "suggested_daily_limit": f"{limit:f}"},
    }


def _unpriced(document: Document) -> Document | None:
    cost = document["cost"]
    if cost is None or not cost["unpriced_requests"]:
        return None
    models = cost["unpriced_by_model"]
    return {
        "id": "unpriced",
        "title": "Some requests have no price",
        "detail": (
            f"{cost['unpriced_requests']:,} api_usage requests are of models without a price "
            f"at their time ({', '.join(list(models)[:5])}"
            f"{', ...' if len(models) > 5 else ''}); their cost is not in the totals. Add "
            "them in a price file listed in cost.pricing_files and pass --config."),
        "evidence": {"unpriced_requests": cost["unpriced_requests"], "by_model": models},
    }


def recommendations(document: Document,
                    samples: Mapping[str, Sequence[tuple[int, float]]]) -> list[Document]:
    """The recommendations that apply, in a fixed order; `samples` are the sampled (input
    tokens, latency) pairs of successful requests by model."""
    found = [_long_prompts(document, samples), _rate_limit(document), _low_cache(document),
             _oom(document), _timeouts(document), _cost_rising(document), _unpriced(document)]
    return [item for item in found if item is not None]
