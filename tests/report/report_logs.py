"""Logs for the `inferwatch report` tests, and a plain reference computation over them.

The reference is deliberately independent of `monitor/report`: it reads each line with the
standard library's `json` (costs with `parse_float=Decimal`, so they are the digits written),
keeps every value in a list, sorts, and applies the documented definitions literally —
percentiles by `math.frexp` rounding and a `Fraction` ceiling, prices typed in by hand from
the bundled table — so an error in the report's streaming, grid or pricing shows up as a
difference.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from monitor.demo.lines import GeneratedLine, generate_line

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: deepseek-chat/reasoner at CNY 0.2/2/3
# The bundled table's CNY row for both DeepSeek models from 2025-09-29 to 2026-04-24.
PRICES = {"deepseek-chat": (Decimal("0.2"), Decimal("2"), Decimal("3")),
          "deepseek-reasoner": (Decimal("0.2"), Decimal("2"), Decimal("3"))}


def generated(schema: str, count: int, seed: int, *, start: float = START,
              spacing_s: float = 7.0, error_rate: float = 0.05) -> list[GeneratedLine]:
    rng = random.Random(seed)
    return [generate_line(schema, rng, start + i * spacing_s, error_rate=error_rate)  # type: ignore[arg-type]
            for i in range(count)]


def grid(value: float) -> float:
    """The documented rounding: v = m·2^e, j = ⌊256·m⌋, midpoint (j + ½)·2^(e-8); values
    below 2^-1022 (subnormal: no latency is) count as 0."""
    if value < 2.0**-1022:
        return 0.0
    mantissa, exponent = math.frexp(value)
    j = math.floor(256 * mantissa)
    return (j + 0.5) * 2.0 ** (exponent - 8)


def percentile(values: Sequence[float], percent: int) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(percent * len(ordered), 100)))
    return min(max(grid(ordered[rank - 1]), ordered[0]), ordered[-1])


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "min": None, "avg": None, "p50": None, "p95": None, "p99": None,
                "max": None}
    return {"count": len(values), "min": min(values), "avg": math.fsum(values) / len(values),
            "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values)}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Reference:
    """Everything the report should say about the lines given to `add`."""

    cutoff: float = float("-inf")
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ttft: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    throughput: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: Counter[str] = field(default_factory=Counter)
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    tokens: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    hours: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    cost_days: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    reported: Decimal = Decimal(0)
    reported_lines: int = 0
    slow: list[tuple[float, str]] = field(default_factory=list)
    pairs: list[tuple[float, float]] = field(default_factory=list)
    before_since: int = 0

    def add(self, line: GeneratedLine) -> None:
        obj = json.loads(line.data)
        exact = json.loads(line.data, parse_float=Decimal)
        t = epoch(obj["timestamp"])
        if t < self.cutoff:
            self.before_since += 1
            return
        model = line.model
        failed = line.error_class is not None
        self.requests[model] += 1
        hour = int(t // 3600)
        self.hours[hour]["requests"] += 1
        if failed:
            self.errors[model][line.error_class or ""] += 1
            self.hours[hour]["errors"] += 1
            self.hours[hour][line.error_class or ""] += 1
        seconds = obj["duration_ms"] / 1000.0 if "duration_ms" in obj else obj["response_time"]
        self.latency[model].append(seconds)
        self.slow.append((seconds, obj["request_id"]))
        if line.schema == "inference":
            if "ttft_ms" in obj:
                self.ttft[model].append(obj["ttft_ms"] / 1000.0)
            if not failed:
                self.throughput[model].append(obj["throughput_tps"])
                self.pairs.append((obj["input_tokens"], seconds))
            tokens_in, tokens_out = obj["input_tokens"], obj["output_tokens"]
        else:
            usage = obj.get("usage")
            if usage is not None:
                tokens_in, tokens_out = usage["prompt_tokens"], usage["completion_tokens"]
                hit = usage.get("prompt_cache_hit_tokens", 0)
                miss = usage.get("prompt_cache_miss_tokens", tokens_in - hit)
                self.tokens[model]["cache_hit"] += hit
                self.tokens[model]["cache_miss"] += miss
                self.tokens[model]["reasoning"] += usage.get(
                    "completion_tokens_details", {}).get("reasoning_tokens", 0)
            else:
                tokens_in = obj.get("request_tokens", 0)
                tokens_out = obj.get("response_tokens", 0)
                hit, miss = 0, tokens_in
            if not failed:
                self.throughput[model].append(tokens_out / seconds)
                self.pairs.append((tokens_in, seconds))
            hit_price, miss_price, out_price = PRICES[model]
            day = datetime.fromtimestamp(t, UTC).date().isoformat()
            self.cost_days[day] += (hit * hit_price + miss * miss_price
                                    + tokens_out * out_price) / Decimal(10**6)
            if "cost" in exact:
                self.reported += exact["cost"]
                self.reported_lines += 1
        self.tokens[model]["input"] += tokens_in
        self.tokens[model]["output"] += tokens_out
        self.hours[hour]["input"] += tokens_in
        self.hours[hour]["output"] += tokens_out

    def add_all(self, lines: Iterable[GeneratedLine]) -> None:
        for line in lines:
            self.add(line)

    def all_values(self, what: dict[str, list[float]]) -> list[float]:
        return [value for values in what.values() for value in values]


def average_ranks(values: Sequence[float]) -> list[float]:
    ordered = sorted(values)
    first: dict[float, int] = {}
    count: Counter[float] = Counter(values)
    for index, value in enumerate(ordered):
        first.setdefault(value, index + 1)
    return [first[v] + (count[v] - 1) / 2 for v in values]


def spearman(pairs: Sequence[tuple[float, float]]) -> float:
    xs = average_ranks([x for x, _ in pairs])
    ys = average_ranks([y for _, y in pairs])
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))


def theil_sen(values: Sequence[float]) -> float:
    slopes = sorted((values[j] - values[i]) / (j - i)
                    for i in range(len(values)) for j in range(i + 1, len(values)))
    middle = len(slopes) // 2
    return slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2


def write(path: Path, chunks: Iterable[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return path
