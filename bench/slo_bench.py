"""The SLO section (issue 7): the cost of one SLO evaluation tick, and SQLite bytes per SLO-month.

**Budget maths**: 20 `SloBudget`s (99.9 % over 30 d), each loaded with 30 days of minute
buckets (43,200 minutes, `buckets.load`), then one new minute's `add` + `evaluate` for all 20,
median `time.process_time()` of `--slo-ticks` ticks, at 10 and at 1,000,000 requests a minute
per SLO (0.05 % errors), the two sets ticked alternately. Their ratio should be ~1.0x: the cost
does not grow with the number of requests.

**Service tick**: `SloService.tick()` for one new minute, 20 SLOs (buckets holding 30 days),
over a `SeriesStore` of S series (`bench_requests_total{slo, status, instance}`, S/20 per SLO,
half of them `status="error"`), sampled every 15 s for the last 10 minutes and 4 more samples
a series before each tick. The peer, on the same minute and the same store, is the same 40
parsed PromQL queries run directly with `engine.instant`: the ratio is the service's own
overhead (buckets, maths, metrics, one SQLite transaction) over the queries it must run.

**SQLite per SLO-month**: a fresh `StateStore`, 43,200 minute rows of one SLO written with the
service's own `_record` (a day of minutes per transaction), `VACUUM`, page_count x page_size
less the same for the empty store; once with fractional counts (rate x 60, what the service
usually records) and once with whole ones. The peer: the same rows as integers in a minimal
`WITHOUT ROWID` table keyed by an integer SLO id and the minute.

    .venv/bin/python bench/slo_bench.py [--quick] [--slo-ticks N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import Ratio, format_ratios, ratio

from monitor.clock import FakeClock
from monitor.metrics.store import MetricStore
from monitor.promql.engine import Engine
from monitor.promql.values import labels_from
from monitor.slo.budget import SloBudget
from monitor.slo.model import Slo
from monitor.slo.service import SloService
from monitor.slo.spec import parse_slo_file
from monitor.storage import StateStore
from monitor.tsdb.store import SeriesStore

SLOS = 20
MONTH = 30 * 1440  # minutes in an SLO-month (the 30-day window)
T0_MINUTE = 29_453_760  # 2026-01-01T00:00:00Z
OBJECTIVE = 99.9
ERROR_SHARE = 0.0005  # half the 99.9 % budget: no burn-rate alert fires
TRAFFIC = (10, 1_000_000)  # requests a minute per SLO
SERIES = (500, 5_000)
HISTORY_MINUTES = 10
SCRAPE_S = 15
DEFAULT_TICKS = 1_000  # budget-maths ticks (below a day of minutes: no periodic re-sum)
QUICK_TICKS = 200
DEFAULT_SERVICE_TICKS = 60
QUICK_SERVICE_TICKS = 8
DAY = 1440


@dataclass(frozen=True)
class SloBenchConfig:
    ticks: int
    service_ticks: int


# -- 1. the budget maths alone ----------------------------------------------------------------


def month_rows(per_minute: int, end: int) -> list[tuple[int, float, float]]:
    """43,200 minutes ending at `end`: `per_minute` requests, ERROR_SHARE of them errors (a
    whole error every so many minutes when the traffic is too low for one a minute)."""
    every = max(1, round(1 / (per_minute * ERROR_SHARE)))
    errors = max(1.0, float(round(per_minute * ERROR_SHARE)))
    return [(m, errors if m % every == 0 else 0.0, float(per_minute))
            for m in range(end - MONTH + 1, end + 1)]


def budget_ticks(ticks: int) -> dict[str, Any]:
    end = T0_MINUTE
    sets: dict[int, list[SloBudget]] = {}
    for level in TRAFFIC:
        rows = month_rows(level, end)
        budgets = [SloBudget(objective_percent=OBJECTIVE) for _ in range(SLOS)]
        for budget in budgets:
            budget.buckets.load(rows, end)
        sets[level] = budgets
    cpu: dict[int, list[float]] = {level: [] for level in TRAFFIC}
    for i in range(1, ticks + 1):
        minute = end + i
        order = TRAFFIC if i % 2 else TRAFFIC[::-1]
        for level in order:
            every = max(1, round(1 / (level * ERROR_SHARE)))
            errors = max(1.0, float(round(level * ERROR_SHARE))) if minute % every == 0 else 0.0
            total = float(level)
            budgets = sets[level]
            start = time.process_time()
            for budget in budgets:
                budget.add(minute, errors, total)
                budget.evaluate(minute)
            cpu[level].append(time.process_time() - start)
    return {str(level): values for level, values in cpu.items()}


# -- 2. a full SloService tick ----------------------------------------------------------------


def slo_spec() -> list[Slo]:
    lines = ['version: "prometheus/v1"', 'service: "bench"', "slos:"]
    for i in range(SLOS):
        lines += [
            f'  - name: "slo-{i:02d}"',
            f"    objective: {OBJECTIVE}",
            "    sli:",
            "      events:",
            f'        error_query: sum(rate(bench_requests_total{{slo="{i}", '
            'status="error"}[{{.window}}]))',
            f'        total_query: sum(rate(bench_requests_total{{slo="{i}"}}'
            '[{{.window}}]))',
            "    alerting:",
            f"      name: Bench{i:02d}",
            "      page_alert:",
            "        labels:",
            "          severity: page",
            "      ticket_alert:",
            "        labels:",
            "          severity: ticket",
        ]
    return list(parse_slo_file("\n".join(lines) + "\n", file="/slos/bench.yml").slos)


class ServiceRig:
    """20 SLOs over `series` counters; the clock a second past each minute's end."""

    def __init__(self, series: int, scratch: Path) -> None:
        self.store = SeriesStore(retention_ms=3_600_000)
        self.engine = Engine(self.store)
        per_slo = series // SLOS
        self.labels = [labels_from({"__name__": "bench_requests_total", "slo": str(i),
                                    "status": "error" if k % 2 else "ok",
                                    "instance": f"host-{k // 2}"})
                       for i in range(SLOS) for k in range(per_slo)]
        self.rates = [(0.5 if k % 2 else 1000.0) / 60 for i in range(SLOS)
                      for k in range(per_slo)]
        self.minute = T0_MINUTE - HISTORY_MINUTES
        self.clock = FakeClock(self.minute * 60 + 1.0)
        self.state = StateStore(scratch)
        self.service = SloService(slo_spec(), state=self.state, store=MetricStore(),
                                  engine=self.engine, clock=self.clock)
        self.service.load()
        for _ in range(HISTORY_MINUTES):
            self.feed()
        # 30 days of minutes in every SLO's buckets, as a restart would load them.
        rows = month_rows(60_000, self.minute)
        for tracked in self.service.slos.values():
            tracked.budget.buckets.load(rows, self.minute)
        self.service.last_minute = self.minute
        self.service.tick()  # the first: nothing new, sets the metric series
        self.queries = [query for tracked in self.service.slos.values()
                        for _, query in tracked.queries]

    def feed(self) -> None:
        """One more minute of samples every 15 s; the clock a second past its end."""
        start = self.minute * 60
        for step in range(SCRAPE_S, 61, SCRAPE_S):
            t_s = start + step
            for labels, rate in zip(self.labels, self.rates, strict=True):
                self.store.append(labels, t_s * 1000, rate * t_s)
        self.minute += 1
        self.clock.advance(self.minute * 60 + 1 - self.clock.time())

    def tick_cpu(self) -> tuple[float, float]:
        start, wall = time.process_time(), time.perf_counter()
        self.service.tick()
        return time.process_time() - start, time.perf_counter() - wall

    def queries_cpu(self) -> float:
        t_ms = self.minute * 60_000
        start = time.process_time()
        for query in self.queries:
            self.engine.instant(query, t_ms)
        return time.process_time() - start


def service_ticks(series: int, ticks: int, scratch: Path) -> dict[str, Any]:
    rig = ServiceRig(series, scratch)
    out: dict[str, list[float]] = {"tick_cpu_s": [], "tick_wall_s": [], "queries_cpu_s": []}
    for i in range(ticks):
        rig.feed()
        if i % 2 == 0:
            cpu, wall = rig.tick_cpu()
            queries = rig.queries_cpu()
        else:
            queries = rig.queries_cpu()
            cpu, wall = rig.tick_cpu()
        if rig.service.last_minute != rig.minute:
            raise RuntimeError(f"the service did not record minute {rig.minute}")
        out["tick_cpu_s"].append(cpu)
        out["tick_wall_s"].append(wall)
        out["queries_cpu_s"].append(queries)
    counted = rig.service.slos[next(iter(rig.service.slos))].budget.buckets.get(rig.minute)
    rig.state.close()
    per_slo = series // SLOS
    bad = per_slo // 2
    expected = (bad * 0.5, bad * 0.5 + (per_slo - bad) * 1000.0)  # the counters' increases
    if counted is None or any(abs(got - want) > 1e-6 * max(want, 1.0)
                              for got, want in zip(counted, expected, strict=True)):
        print(f"WARNING: {series} series: the last minute counted {counted}, not {expected}",
              file=sys.stderr)
    return {"series": series, "queries": len(rig.queries), "last_counts": counted, **out}


# -- 3. SQLite bytes per SLO-month ------------------------------------------------------------


def _file_bytes(conn: sqlite3.Connection) -> int:
    conn.execute("VACUUM")
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(pages) * int(size)


def state_bytes(scratch: Path, rows: list[tuple[int, float, float]], slo_id: str) -> int:
    """Bytes the rows add to a fresh state file, written through `SloService._record`."""
    empty_state = StateStore(scratch / "empty")
    empty = _file_bytes(empty_state.connection)
    empty_state.close()
    state = StateStore(scratch / "full")
    service = SloService([], state=state, store=MetricStore(), engine=Engine(SeriesStore(1)),
                         clock=FakeClock(rows[0][0] * 60.0))
    for start in range(0, len(rows), DAY):
        day = rows[start:start + DAY]
        service._record({slo_id: day}, day[-1][0])  # the service's own write, a day at a time
    (count,) = state.connection.execute("SELECT count(*) FROM slo_minutes").fetchone()
    if count != len(rows):
        raise RuntimeError(f"slo_minutes holds {count} rows, not {len(rows)}")
    full = _file_bytes(state.connection)
    state.close()
    return full - empty


def minimal_bytes(scratch: Path, rows: list[tuple[int, float, float]]) -> int:
    path = scratch / "minimal.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE m (slo INTEGER NOT NULL, minute INTEGER NOT NULL, "
                 "errors INTEGER NOT NULL, total INTEGER NOT NULL, "
                 "PRIMARY KEY (slo, minute)) WITHOUT ROWID")
    empty = _file_bytes(conn)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO m VALUES (1, ?, ?, ?)",
                     [(m, round(e), round(t)) for m, e, t in rows])
    conn.execute("COMMIT")
    full = _file_bytes(conn)
    conn.close()
    return full - empty


def sqlite_sizes(scratch: Path, slo_id: str) -> dict[str, int]:
    end = T0_MINUTE
    whole = month_rows(60_000, end)
    # What rate x 60 usually gives: Prometheus's extrapolated increase, fractional.
    fractional = [(m, e * 1.0137 + (m % 7) / 3, t * 1.0213 + (m % 13) / 7) for m, e, t in whole]
    sizes = {}
    for name, rows in (("fractional", fractional), ("whole", whole)):
        folder = scratch / name
        folder.mkdir(parents=True)
        sizes[name] = state_bytes(folder, rows, slo_id)
    peer = scratch / "peer"
    peer.mkdir(parents=True)
    sizes["minimal"] = minimal_bytes(peer, whole)
    return sizes


# -- the section ------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value * 1e3:.3f} ms"


def run_slo(config: SloBenchConfig, scratch: Path) -> dict[str, Any]:
    """The whole section, printed; its JSON document."""
    print(f"slo: {SLOS} budgets x {MONTH:,} minutes at {TRAFFIC[0]:,} and {TRAFFIC[1]:,} "
          f"requests/minute, {config.ticks} ticks", flush=True)
    maths = budget_ticks(config.ticks)
    low, high = (statistics.median(maths[str(level)]) for level in TRAFFIC)
    service: dict[int, dict[str, Any]] = {}
    for series in SERIES:
        print(f"slo: SloService.tick over {series:,} series, {config.service_ticks} ticks",
              flush=True)
        folder = scratch / f"service-{series}"
        service[series] = service_ticks(series, config.service_ticks, folder)
    print("slo: SQLite bytes per SLO-month", flush=True)
    slo_id = slo_spec()[0].id
    sizes = sqlite_sizes(scratch / "sqlite", slo_id)

    print(f"\none SLO tick, {SLOS} SLOs, 30 days of minute buckets each (CPU, "
          f"time.process_time, medians):")
    print(f"  budget maths, add + evaluate x {SLOS}: {_ms(low)} at {TRAFFIC[0]:,} req/min, "
          f"{_ms(high)} at {TRAFFIC[1]:,} req/min ({config.ticks} ticks)")
    med: dict[str, float] = {"maths_low_s": low, "maths_high_s": high}
    for series, run in service.items():
        tick = statistics.median(run["tick_cpu_s"])
        wall = statistics.median(run["tick_wall_s"])
        queries = statistics.median(run["queries_cpu_s"])
        med |= {f"tick_{series}_s": tick, f"tick_wall_{series}_s": wall,
                f"queries_{series}_s": queries}
        print(f"  SloService.tick over {series:,} series: {_ms(tick)} CPU ({_ms(wall)} wall); "
              f"its {run['queries']} queries alone {_ms(queries)} "
              f"({run['series'] // SLOS} series a total query, {len(run['tick_cpu_s'])} ticks)")
    print(f"\nSQLite per SLO-month ({MONTH:,} minute rows, after VACUUM, beyond an empty file):")
    per_row = {name: value / MONTH for name, value in sizes.items()}
    print(f"  state file, fractional counts {sizes['fractional'] / 1024:,.0f} KiB "
          f"({per_row['fractional']:.1f} B/minute); whole counts "
          f"{sizes['whole'] / 1024:,.0f} KiB ({per_row['whole']:.1f} B/minute); minimal "
          f"integer table {sizes['minimal'] / 1024:,.0f} KiB ({per_row['minimal']:.1f} "
          f"B/minute)")

    ratios: list[Ratio] = [
        ratio(f"budget maths, {TRAFFIC[1]:,} / {TRAFFIC[0]:,} req/min", high, low, None,
              f"{_ms(high)} vs {_ms(low)}", higher_is_better=False),
    ]
    for series in SERIES:
        tick, queries = med[f"tick_{series}_s"], med[f"queries_{series}_s"]
        ratios.append(ratio(f"SloService.tick / its queries alone, {series:,} series", tick,
                            queries, None, f"{_ms(tick)} vs {_ms(queries)}",
                            higher_is_better=False))
    for name in ("fractional", "whole"):
        ratios.append(ratio(f"SQLite bytes/SLO-month, {name} / minimal integer table",
                            sizes[name], sizes["minimal"], None,
                            f"{sizes[name] / 1024:,.0f} KiB vs "
                            f"{sizes['minimal'] / 1024:,.0f} KiB", higher_is_better=False))
    print()
    print(format_ratios(ratios))
    print("  (lower is better for inferwatch; the first should be ~1.0x: a tick's cost does "
          "not grow with requests)")
    return {"budget_ticks": maths, "service": {str(k): v for k, v in service.items()},
            "sqlite_bytes": sizes, "medians": med, "ratios": [r.to_json() for r in ratios]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("slo benchmark")
    group.add_argument("--slo-ticks", type=int, metavar="N",
                       help=f"budget-maths ticks per traffic level (default {DEFAULT_TICKS}; "
                            f"--quick {QUICK_TICKS}); SloService ticks are N / 16, at least "
                            f"{QUICK_SERVICE_TICKS}")


def config_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SloBenchConfig:
    quick = bool(args.quick)
    ticks = args.slo_ticks or (QUICK_TICKS if quick else DEFAULT_TICKS)
    if ticks <= 0:
        parser.error("--slo-ticks must be positive")
    if ticks >= DAY:
        parser.error(f"--slo-ticks must be below {DAY} (a day of minutes)")
    service = (QUICK_SERVICE_TICKS if quick and not args.slo_ticks
               else DEFAULT_SERVICE_TICKS if not args.slo_ticks
               else max(QUICK_SERVICE_TICKS, ticks // 16))
    return SloBenchConfig(ticks=ticks, service_ticks=service)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost of one SLO evaluation tick (20 SLOs, 30 days of minutes) at two "
                    "traffic levels and over 500 / 5,000 series, and SQLite bytes per "
                    "SLO-month. Figures are ratios within one run.")
    parser.add_argument("--quick", action="store_true", help="fewer ticks")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from(args, parser)
    with tempfile.TemporaryDirectory(prefix="inferwatch-slo-bench-") as scratch:
        document = run_slo(config, Path(scratch))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
