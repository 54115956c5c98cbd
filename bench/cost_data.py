"""The cost section's inputs under bench/data/: an `api_usage` log, and a year of ledger.

**The api_usage log** (`api_usage-<lines>-s<seed>.log`) is written once by the demo workload's
generator (`generate_lines(n, "api_usage", seed)`: DeepSeek-style gateway lines, 10 % in the flat
shape without a cache split, 3 % failures; timestamps from 2026-01-01T00:00Z every 10 ms) and
kept beside `….truth.json`: the line count, the request ids (every line has one; the sidecar
counts the distinct ones, so duplicates would show), the benchmark aggregate, and the tokens
the generator says each line carries, summed per (model, second). The reference spend is
computed from those sums at check time with `request_cost` and the bundled price table, so
the sidecar never holds a price: cost is linear in the token counts, and a price row or a
discount window never starts inside a second, so the sums price exactly as the lines would.

**A year of ledger** (`cost-state-<rows>-s<seed>/`, a state directory) is built with
`StateStore` (the daemon's own schema and migrations) and filled in one transaction:

* `ledger` rows (`rows` of them, default 3M) spread evenly over the 35 days before NOW, from
  local midnight: the part a `cost.ledger_retention` of about a month keeps;
* `cost_daily` roll-ups for 400 days x 30 (model, user) pairs: the last 35 days are the exact
  sums of those rows, the older days synthetic at the same daily volume.

NOW is fixed (2026-11-20T15:00Z, cost.timezone UTC), so the month to date holds 19 whole days
and 15 h, and every run reads the same rows. The sidecar `cost-state-….json` records the exact
spend each timed report must print (month, day, and the year range).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aggregate import Aggregate
from dataset import DATA_DIR, truth_path

from monitor.cost import ledger_rows
from monitor.cost.pricing import PriceTable, convert, request_cost
from monitor.demo.lines import GeneratedLine
from monitor.demo.workload import BENCH_START_TIME, generate_lines
from monitor.metrics.families import DURATION_BUCKETS
from monitor.storage import STATE_FILE_NAME, StateStore

_API_FORMAT_VERSION = 1
_STATE_FORMAT_VERSION = 2  # 2: schema v9 (ledger rows, keys, spans)
_CHUNK_BYTES = 1 << 20
API_SPACING_S = 0.01  # generate_lines' default: 100 lines per second of event time
API_SOURCE = "api"

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC).timestamp()
TIMEZONE = "UTC"
CURRENCY = "CNY"
LEDGER_DAYS = 35
ROLLUP_DAYS = 400  # cost.ledger_retention's default; roll-ups are kept forever anyway
YEAR_FROM_HOUR = 12
# (model, CNY per 1M tokens x 100 for cache hit, cache miss, output) x 10 users = 30 pairs.
_MODELS = (("deepseek-chat", 20, 200, 300), ("deepseek-reasoner", 20, 200, 300),
           ("qwen-plus", 16, 80, 200))
_USERS = tuple(f"team-{i:02d}" for i in range(10))
_UNIT = 10 ** 8  # amounts are built as integers of 1e-8 CNY
_PLACES = 8  # ... and stored as those integers, with 8 decimal places
_INSERT_CHUNK = 100_000


# -- the api_usage log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiDataset:
    """The generated api_usage log and what its generator said about it."""

    path: Path
    lines: int
    seed: int
    size: int
    truth: Aggregate
    request_ids: int  # lines carrying a request id
    distinct_ids: int
    tokens: list[tuple[str, int, int, int, int]]  # (model, second, hit, miss, output) sums

    @property
    def expected_rows(self) -> int:
        """One ledger row per line, less the repeats of a request id (charged once)."""
        return self.lines - (self.request_ids - self.distinct_ids)

    def reference_spend(self, prices: PriceTable, currency: str = CURRENCY) -> Decimal | None:
        """The exact spend of every line in `currency`, priced from the generator's token
        counts; None when a model has no price (the ledger then reports it unpriced)."""
        total = Decimal(0)
        for model, second, hit, miss, output in self.tokens:
            price = prices.price_at(model, float(second), currency=currency)
            if price is None:
                return None
            amount = convert(request_cost(price, float(second), input_tokens=hit + miss,
                                          cache_hit_tokens=hit, cache_miss_tokens=miss,
                                          output_tokens=output),
                             price.currency, currency, {})
            if amount is None:
                return None
            total += amount
        return total


def api_log_path(lines: int, seed: int, directory: Path = DATA_DIR) -> Path:
    return directory / f"api_usage-{lines}-s{seed}.log"


def _record(truth: Aggregate, line: GeneratedLine) -> None:
    """Count one line as inferwatch's metrics would: a flat line gives its duration as
    `response_time` in seconds rounded to the millisecond."""
    truth.success += not line.is_error
    truth.error += line.is_error
    truth.input_tokens += line.input_tokens
    truth.output_tokens += line.output_tokens
    seconds = line.duration_ms / 1000.0
    if line.reported_cost is not None:
        seconds = round(seconds, 3)
    truth.duration_buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
    truth.duration_sum += seconds


def _write_api(path: Path, lines: Iterator[GeneratedLine]) -> dict[str, Any]:
    truth = Aggregate(duration_buckets=[0] * (len(DURATION_BUCKETS) + 1))
    ids: set[str] = set()
    with_id = 0
    tokens: dict[tuple[str, int], list[int]] = {}
    size = 0
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        chunk: list[bytes] = []
        pending = 0
        for index, line in enumerate(lines):
            _record(truth, line)
            request_id = orjson.loads(line.data).get("request_id")
            if request_id:
                with_id += 1
                ids.add(request_id)
            # The line's time as written (milliseconds), whole second: what prices it.
            second = int(round((BENCH_START_TIME + index * API_SPACING_S) * 1000) // 1000)
            hit = line.cache_hit_tokens or 0
            miss = line.input_tokens - hit if line.cache_miss_tokens is None else \
                line.cache_miss_tokens
            sums = tokens.setdefault((line.model, second), [0, 0, 0])
            sums[0] += hit
            sums[1] += miss
            sums[2] += line.output_tokens
            chunk.append(line.data)
            pending += len(line.data)
            if pending >= _CHUNK_BYTES:
                out.write(b"".join(chunk))
                size, chunk, pending = size + pending, [], 0
        out.write(b"".join(chunk))
        size += pending
    partial.replace(path)
    return {"size": size, "truth": truth.to_json(), "request_ids": with_id,
            "distinct_ids": len(ids),
            "tokens": [[model, second, *sums] for (model, second), sums in tokens.items()]}


def ensure_api_dataset(lines: int, seed: int, directory: Path = DATA_DIR) -> ApiDataset:
    """The `lines`-line api_usage file of `seed`: reused when its sidecar matches."""
    path = api_log_path(lines, seed, directory)
    wanted = {"version": _API_FORMAT_VERSION, "lines": lines, "seed": seed,
              "buckets": list(DURATION_BUCKETS)}
    try:
        meta = json.loads(truth_path(path).read_text())
        reuse = all(meta.get(k) == v for k, v in wanted.items()) and (
            meta.get("size") == path.stat().st_size)
    except (OSError, ValueError):
        reuse = False
    if reuse:
        print(f"data: reusing {path} ({meta['size'] / 1e6:.0f} MB)")
    else:
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        meta = {**wanted, **_write_api(path, generate_lines(
            lines, "api_usage", seed, start_time=BENCH_START_TIME, spacing_s=API_SPACING_S))}
        truth_path(path).write_text(json.dumps(meta) + "\n")
        print(f"data: generated {path.name}: {lines} lines, {meta['size'] / 1e6:.0f} MB, "
              f"{meta['size'] / lines:.0f} B/line in {time.perf_counter() - started:.1f} s")
    return ApiDataset(path, lines, seed, int(meta["size"]), Aggregate.from_json(meta["truth"]),
                      int(meta["request_ids"]), int(meta["distinct_ids"]),
                      [(str(m), int(s), int(h), int(mi), int(o)) for m, s, h, mi, o in
                       meta["tokens"]])


# -- a year of ledger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class YearState:
    """A state directory holding a year of cost history, and the spend each report must show."""

    directory: Path
    rows: int
    size: int
    rollups: int
    now: float
    year_from: str  # the --from of the year report: local, no offset, as a user types it
    month_start: float
    day_start: float
    truth: dict[str, str]  # report name -> exact total (plain decimal text)


def state_directory(rows: int, seed: int, directory: Path = DATA_DIR) -> Path:
    return directory / f"cost-state-{rows}-s{seed}"


def _money(units: int) -> str:
    whole, fraction = divmod(units, _UNIT)
    return f"{whole}.{fraction:08d}".rstrip("0").rstrip(".")


def _day(index: int, first: date) -> str:
    return (first + timedelta(days=index)).isoformat()


def _ledger_rows(rng: random.Random, rows: int, start: float,
                 daily: dict[tuple[int, int], list[int]]) -> Iterator[list[tuple[Any, ...]]]:
    """`rows` ledger rows evenly over [start, NOW) in chunks, summing them into `daily`
    ((day index, pair) -> requests, amount units, hit, miss, input, output)."""
    pairs = len(_MODELS) * len(_USERS)
    step = (NOW - start) / rows
    # A few heavy users, a long tail: pair weights fall off like 1/(k+1).
    weights = [1.0 / (k + 1) for k in range(pairs)]
    for base in range(0, rows, _INSERT_CHUNK):
        count = min(_INSERT_CHUNK, rows - base)
        chosen = rng.choices(range(pairs), weights, k=count)
        chunk = []
        for offset, pair in enumerate(chosen):
            t = start + (base + offset + rng.random()) * step
            bits = rng.getrandbits(128)
            _, p_hit, p_miss, p_out = _MODELS[pair % len(_MODELS)]
            hit = (bits & 0xFFF) // 64 * 64
            miss = 8 + ((bits >> 12) & 0x7FF)
            output = 1 + ((bits >> 23) & 0x7FF)
            units = hit * p_hit + miss * p_miss + output * p_out
            chunk.append((t, pair + 1, f"{bits:032x}", hit + miss, hit, miss, output, 0, units,
                          _PLACES, None))
            sums = daily.setdefault((int((t - start) // 86_400), pair), [0] * 6)
            sums[0] += 1
            sums[1] += units
            sums[2] += hit
            sums[3] += miss
            sums[4] += hit + miss
            sums[5] += output
        yield chunk


def _older_rollups(rng: random.Random, rows: int, days: int
                   ) -> dict[tuple[int, int], list[int]]:
    """Synthetic roll-ups for `days` days before the ledger's first, at the same volume:
    (negative day index, pair) -> the same six sums as `_ledger_rows`."""
    pairs = len(_MODELS) * len(_USERS)
    weight_sum = sum(1.0 / (k + 1) for k in range(pairs))
    per_day = rows / LEDGER_DAYS
    older: dict[tuple[int, int], list[int]] = {}
    for day in range(-days, 0):
        for pair in range(pairs):
            requests = max(1, round(per_day / (pair + 1) / weight_sum * rng.uniform(0.7, 1.3)))
            _, p_hit, p_miss, p_out = _MODELS[pair % len(_MODELS)]
            hit, miss, output = requests * 2016, requests * 1031, requests * 1024
            older[(day, pair)] = [requests, hit * p_hit + miss * p_miss + output * p_out,
                                  hit, miss, hit + miss, output]
    return older


def _build_state(target: Path, rows: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    now_day = datetime.fromtimestamp(NOW, UTC).date()
    first_day = now_day - timedelta(days=LEDGER_DAYS)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp()
    daily: dict[tuple[int, int], list[int]] = {}
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    state = StateStore(partial)
    try:
        state.connection.execute("PRAGMA synchronous = OFF")  # a bench build, redone if torn
        with state.transaction() as cursor:
            pairs = len(_MODELS) * len(_USERS)
            cursor.executemany(  # key id = pair + 1, as _ledger_rows writes them
                "INSERT INTO ledger_keys (id, source, model, user, currency) "
                "VALUES (?, ?, ?, ?, ?)",
                [(pair + 1, API_SOURCE, _MODELS[pair % len(_MODELS)][0],
                  _USERS[pair // len(_MODELS)], CURRENCY) for pair in range(pairs)])
            for chunk in _ledger_rows(rng, rows, start, daily):
                after = ledger_rows.last_id(cursor)
                cursor.executemany(
                    "INSERT INTO ledger_rows (t, key_id, request_id, input_tokens, "
                    "cache_hit_tokens, cache_miss_tokens, output_tokens, reasoning_tokens, "
                    "amount_units, amount_places, reported) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
                ledger_rows.add_span(cursor, after)  # a span per chunk, as per conversion
            daily.update(_older_rollups(rng, rows, ROLLUP_DAYS - LEDGER_DAYS))
            cursor.executemany(
                "INSERT INTO cost_daily (day, source, model, user, currency, requests, "
                "unpriced, amount, reported, cache_hit_tokens, cache_miss_tokens, "
                "input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, 0, ?, '0', ?, ?, ?, ?)",
                [(_day(day, first_day), API_SOURCE, _MODELS[pair % len(_MODELS)][0],
                  _USERS[pair // len(_MODELS)], CURRENCY, sums[0], _money(sums[1]), *sums[2:])
                 for (day, pair), sums in sorted(daily.items())])
            cursor.execute("INSERT OR REPLACE INTO cost_meta (key, value) VALUES "
                           "('timezone', ?)", (TIMEZONE,))
        state.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        state.close()
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    # Exact totals of the timed reports, from the same integers.
    today = LEDGER_DAYS  # the day index of NOW
    year_from_day = (now_day - timedelta(days=365) - first_day).days
    assert year_from_day < 0, "the year range must start before the ledger rows"
    month_day = (now_day.replace(day=1) - first_day).days
    assert month_day >= 0, "the month to date must lie within the ledger rows"
    truth = {"month": sum(s[1] for (d, _), s in daily.items() if month_day <= d <= today),
             "day": sum(s[1] for (d, _), s in daily.items() if d == today),
             "year": sum(s[1] for (d, _), s in daily.items() if year_from_day < d <= today)}
    year_from = datetime.combine(now_day - timedelta(days=365), datetime.min.time())
    return {"rollups": len(daily), "truth": {k: _money(v) for k, v in truth.items()},
            "year_from": year_from.replace(hour=YEAR_FROM_HOUR).isoformat(),
            "month_start": start + month_day * 86_400, "day_start": start + today * 86_400}


def ensure_year_state(rows: int, seed: int, directory: Path = DATA_DIR) -> YearState:
    """The state directory of `rows` ledger rows: reused when its sidecar matches."""
    target = state_directory(rows, seed, directory)
    sidecar = target.with_suffix(".json")
    wanted = {"version": _STATE_FORMAT_VERSION, "rows": rows, "seed": seed, "now": NOW,
              "ledger_days": LEDGER_DAYS, "rollup_days": ROLLUP_DAYS}
    database = target / STATE_FILE_NAME
    try:
        meta = json.loads(sidecar.read_text())
        reuse = all(meta.get(k) == v for k, v in wanted.items()) and (
            meta.get("size") == database.stat().st_size)
    except (OSError, ValueError):
        reuse = False
    if reuse:
        print(f"data: reusing {target} ({meta['size'] / 1e6:.0f} MB)")
    else:
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        meta = {**wanted, **_build_state(target, rows, seed)}
        meta["size"] = database.stat().st_size
        sidecar.write_text(json.dumps(meta, indent=1) + "\n")
        print(f"data: built {target.name}: {rows:,} ledger rows over {LEDGER_DAYS} days, "
              f"{meta['rollups']:,} daily roll-ups, {meta['size'] / 1e6:.0f} MB in "
              f"{time.perf_counter() - started:.1f} s")
    return YearState(target, rows, int(meta["size"]), int(meta["rollups"]), NOW,
                     str(meta["year_from"]), float(meta["month_start"]),
                     float(meta["day_start"]), dict(meta["truth"]))

