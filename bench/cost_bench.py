"""The cost section (issue 5): ingest with the cost ledger on, and `cost report` over a year.

**Ingest.** Three in-process catch-ups, each in its own fresh interpreter, `--repeat` rounds,
the order reversed every other round, medians:

* inference   bench/catchup.py over the ingest section's `inference` log (no ledger: that
              schema is not priced) — the peer;
* api         bench/cost_catchup.py over an `api_usage` log of `--api-lines`, ledger=None;
* api+ledger  the same with the ledger the daemon builds: each checkpoint journals the
              requests in the offsets' transaction, and the ledger writer process prices them
              and writes their rows, roll-ups and counters (monitor/cost/feed.py).

The ratios are lines/s against lines/s (target >= 0.7), twice for api+ledger: until ready
(every line read and committed, the journal included: ingestion's throughput) and until the
writer has converted the whole journal (the ledger's). api vs api+ledger shows what the
ledger itself costs. After every api+ledger run the ledger must hold one row per line (less repeated
request ids), no unpriced request, and a total equal to the spend computed here, exactly, from
the generator's own token counts with `request_cost` (bench/cost_data.py); the daily roll-ups
must add up to the same. Any difference is a printed warning.

**Reports.** A state file holding a year of history (bench/cost_data.py: daily roll-ups for
400 days, ledger rows for the last 35) and three `run_report` calls, as `inferwatch cost
report` makes them: the current month (the default), `--period day`, and `--from <365 days
ago, 12:00> --to <now>`; the peer is the naive way, a raw `SELECT SUM(CAST(amount AS REAL))`
over the month's ledger rows. Each report's total is first checked against the exact spend the
builder recorded. The year report is also timed as a process (`inferwatch cost report
--format json`, spawn to exit), the figure a user waits for; the issue's guide is under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from aggregate import Aggregate, differences
from cost_data import (
    CURRENCY,
    LEDGER_DAYS,
    ROLLUP_DAYS,
    TIMEZONE,
    ApiDataset,
    YearState,
    ensure_api_dataset,
    ensure_year_state,
)
from dataset import Dataset, ensure_dataset, warm_page_cache
from procs import BENCH_DIR, python_tool, run_timed
from report import Ratio, format_absolutes, format_ratios, medians, ratio

from monitor.config import Config, load_config
from monitor.cost import ledger_rows
from monitor.cost.pricing import PriceTable
from monitor.cost.report import run_report
from monitor.storage import STATE_FILE_NAME

DEFAULT_LINES = 300_000
QUICK_LINES = 30_000
DEFAULT_API_LINES = 300_000
QUICK_API_LINES = 30_000
DEFAULT_REPORT_ROWS = 3_000_000
QUICK_REPORT_ROWS = 300_000
DEFAULT_REPEAT = 3
TARGET_LEDGER_VS_INFERENCE = 0.7
YEAR_REPORT_GUIDE_S = 1.0
SUM_REL_TOLERANCE = 1e-9  # the raw float SUM against the exact total


@dataclass(frozen=True)
class CostBenchConfig:
    lines: int  # of the inference peer's log
    api_lines: int
    report_rows: int
    repeat: int
    seed: int
    profile: int = 0


@dataclass
class Samples:
    """Timings by name, and the warnings of this section."""

    values: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def record(self, **values: float) -> None:
        for name, value in values.items():
            self.values.setdefault(name, []).append(value)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            print(f"WARNING: {message}", file=sys.stderr)


def _rounds(repeat: int, contenders: Sequence[tuple[str, Callable[[], None]]],
            what: str) -> None:
    for index in range(repeat):
        order = contenders if index % 2 == 0 else contenders[::-1]
        print(f"{what} round {index + 1}/{repeat}: {' -> '.join(name for name, _ in order)}",
              flush=True)
        for _, measure in order:
            measure()


# -- ingest ----------------------------------------------------------------------------------


@dataclass
class IngestRun:
    inference: Dataset
    api: ApiDataset
    reference: Decimal | None  # exact spend of the api log, or None when a model is unpriced
    scratch: Path
    samples: Samples
    _runs: int = 0

    def workdir(self, what: str) -> Path:
        self._runs += 1
        return self.scratch / f"{self._runs:02d}-{what}"

    def check(self, who: str, got: Aggregate, truth: Aggregate) -> None:
        for problem in differences(truth, got):
            self.samples.warn(f"{who}: counts differ from the truth: {problem}")

    def catchup(self, script: str, log: Path, what: str, *extra: str) -> dict[str, Any]:
        done = run_timed([sys.executable, str(BENCH_DIR / script), str(log),
                          str(self.workdir(what)), *extra])
        if done.returncode != 0:
            raise RuntimeError(f"{script} exited with {done.returncode}: {done.stderr.strip()}")
        out: dict[str, Any] = json.loads(done.stdout)
        return out

    def measure_inference(self) -> None:
        out = self.catchup("catchup.py", self.inference.path, "inference")
        self.check("inference catch-up", Aggregate.from_json(out["result"]),
                   self.inference.truth)
        self.samples.record(inference_ready_s=out["ready_s"], inference_read_s=out["read_s"])

    def measure_api(self) -> None:
        out = self.catchup("cost_catchup.py", self.api.path, "api", "--no-ledger")
        self.check("api_usage catch-up", Aggregate.from_json(out["result"]), self.api.truth)
        self.samples.record(api_ready_s=out["ready_s"], api_read_s=out["read_s"])

    def measure_ledger(self) -> None:
        out = self.catchup("cost_catchup.py", self.api.path, "api-ledger")
        self.check("api_usage+ledger catch-up", Aggregate.from_json(out["result"]),
                   self.api.truth)
        self.check_ledger(out["ledger"])
        self.samples.record(ledger_ready_s=out["ready_s"], ledger_read_s=out["read_s"],
                            ledger_converted_s=out["converted_s"])

    def check_ledger(self, got: dict[str, Any]) -> None:
        api, warn = self.api, self.samples.warn
        expected = {"rows": api.expected_rows, "with_id": api.expected_rows,
                    "daily_requests": api.expected_rows,
                    "unpriced": 0 if self.reference is not None else None}
        for name, want in expected.items():
            if want is not None and got[name] != want:
                warn(f"ledger: {name} is {got[name]:,}, expected {want:,} "
                     f"({api.lines:,} lines, {api.request_ids - api.distinct_ids} repeated ids)")
        total, daily = Decimal(got["total"]), Decimal(got["daily_total"])
        if self.reference is not None and total != self.reference:
            warn(f"ledger: total {total} {CURRENCY} differs from the reference "
                 f"{self.reference} (difference {total - self.reference})")
        if daily != total:
            warn(f"ledger: daily roll-ups total {daily}, ledger rows {total}")


def ingest_ratios(run: IngestRun, med: dict[str, float]) -> list[Ratio]:
    inf_lines, api_lines = run.inference.lines, run.api.lines

    def rate(key: str, lines: int) -> float | None:
        seconds = med.get(key)
        return None if seconds is None else lines / seconds

    def show(name: str, key: str, lines: int) -> str:
        seconds = med.get(key)
        return f"{name} n/a" if seconds is None else (
            f"{name} {seconds:.2f} s ({lines / seconds / 1000:,.0f}k lines/s)")

    inference = show("inference", "inference_ready_s", inf_lines)
    return [
        ratio("api_usage+ledger vs inference (lines/s)", rate("ledger_ready_s", api_lines),
              rate("inference_ready_s", inf_lines), TARGET_LEDGER_VS_INFERENCE,
              f"{show('api+ledger', 'ledger_ready_s', api_lines)} vs {inference}"),
        ratio("  ... until the ledger writer has converted it all",
              rate("ledger_converted_s", api_lines), rate("inference_ready_s", inf_lines),
              TARGET_LEDGER_VS_INFERENCE,
              f"{show('api+ledger', 'ledger_converted_s', api_lines)} vs {inference}"),
        ratio("  read to EOF only (before commit)", rate("ledger_read_s", api_lines),
              rate("inference_read_s", inf_lines), None,
              f"{show('api+ledger', 'ledger_read_s', api_lines)} vs "
              f"{show('inference', 'inference_read_s', inf_lines)}"),
        ratio("api_usage, no ledger vs inference (lines/s)", rate("api_ready_s", api_lines),
              rate("inference_ready_s", inf_lines), None,
              f"{show('api', 'api_ready_s', api_lines)} vs {inference}"),
        ratio("api_usage+ledger vs api_usage, no ledger", rate("ledger_ready_s", api_lines),
              rate("api_ready_s", api_lines), None,
              f"{show('api+ledger', 'ledger_ready_s', api_lines)} vs "
              f"{show('api', 'api_ready_s', api_lines)}"),
    ]


def measure_ingest(config: CostBenchConfig, scratch: Path, samples: Samples
                   ) -> dict[str, Any]:
    inference = ensure_dataset(config.lines, config.seed)
    api = ensure_api_dataset(config.api_lines, config.seed)
    run = IngestRun(inference, api, api.reference_spend(PriceTable.load()), scratch, samples)
    if run.reference is None:
        samples.warn("a model of the api_usage log has no price in the bundled table: the "
                     "total is not checked")
    for path in (inference.path, api.path):
        warm_page_cache(path)
    _rounds(config.repeat, (("inference", run.measure_inference), ("api", run.measure_api),
                            ("api+ledger", run.measure_ledger)), "ingest")
    med = medians({k: v for k, v in samples.values.items() if k.endswith("_s")})
    ratios = ingest_ratios(run, med)
    print(f"\ncost ledger at ingest: {api.lines:,} api_usage lines ({api.size / 1e6:.0f} MB, "
          f"{api.size / api.lines:.0f} B/line) vs {inference.lines:,} inference lines "
          f"({inference.size / 1e6:.0f} MB, {inference.size / inference.lines:.0f} B/line); "
          f"{os.cpu_count()} CPUs; medians of {config.repeat}\n")
    print(format_ratios(ratios))
    print()
    names = (("inference_ready_s", "inference catch-up -> ready", inference),
             ("api_ready_s", "api_usage catch-up, no ledger -> ready", api),
             ("ledger_ready_s", "api_usage catch-up + ledger -> ready", api),
             ("ledger_read_s", "api_usage catch-up + ledger -> read to EOF", api),
             ("ledger_converted_s", "api_usage catch-up + ledger -> journal converted", api))
    print(format_absolutes([(label, med[key], len(samples.values[key]), data.lines, data.size)
                            for key, label, data in names if key in med]))
    reference = "not checked" if run.reference is None else f"{run.reference} {CURRENCY}"
    print(f"\nledger check after each api+ledger run: {api.expected_rows:,} rows expected "
          f"({api.lines:,} lines, all with a request id, "
          f"{api.request_ids - api.distinct_ids} repeated); exact total {reference} "
          "(request_cost over the generator's token counts)")
    return {"api": {"path": str(api.path), "lines": api.lines, "bytes": api.size,
                    "expected_rows": api.expected_rows,
                    "reference": None if run.reference is None else str(run.reference)},
            "inference": {"path": str(inference.path), "lines": inference.lines,
                          "bytes": inference.size},
            "medians": med, "ratios": [r.to_json() for r in ratios]}


# -- reports ---------------------------------------------------------------------------------


def _iso_local(t: float) -> str:
    assert TIMEZONE == "UTC"
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat()


@dataclass
class ReportRun:
    state: YearState
    config: Config
    config_path: Path
    samples: Samples

    def reports(self) -> dict[str, dict[str, str | None]]:
        """name -> run_report's period/start/end, as the CLI's flags would give them."""
        return {"month": {"period": None, "start": None, "end": None},
                "day": {"period": "day", "start": None, "end": None},
                "year": {"period": None, "start": self.state.year_from,
                         "end": _iso_local(self.state.now)}}

    def report(self, name: str, output: str = "table") -> str:
        args = self.reports()[name]
        return run_report(self.config, period=args["period"], start=args["start"],
                          end=args["end"], by="model", output=output, now=self.state.now)

    def timed(self, name: str) -> Callable[[], None]:
        def measure() -> None:
            started = time.perf_counter()
            self.report(name)
            self.samples.record(**{f"report_{name}_s": time.perf_counter() - started})
        return measure

    def raw_month_sum(self) -> float:
        uri = (self.state.directory / STATE_FILE_NAME).resolve().as_uri()
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True)
        try:
            ids = ledger_rows.id_range(connection, self.state.month_start, self.state.now)
            sums = [] if ids is None else connection.execute(
                "SELECT amount_places, SUM(CAST(amount_units AS REAL)) FROM ledger_rows "
                "WHERE id BETWEEN ? AND ? AND t >= ? AND t < ? GROUP BY amount_places",
                (*ids, self.state.month_start, self.state.now)).fetchall()
        finally:
            connection.close()
        return float(sum(total / 10**places for places, total in sums))

    def measure_raw(self) -> None:
        started = time.perf_counter()
        self.raw_month_sum()
        self.samples.record(raw_month_s=time.perf_counter() - started)

    def cli_argv(self) -> list[str]:
        args = self.reports()["year"]
        return [*python_tool("inferwatch"), "cost", "report", "--config",
                str(self.config_path), "--from", str(args["start"]), "--to", str(args["end"]),
                "--format", "json"]

    def measure_cli(self) -> None:
        done = run_timed(self.cli_argv())
        if done.returncode != 0:
            self.samples.warn(f"inferwatch cost report exited with {done.returncode}: "
                              f"{done.stderr.strip()[-300:]}")
            return
        self.check_total("year (process)", json.loads(done.stdout)["total"], "year")
        self.samples.record(cli_year_s=done.wall_s)

    def check_total(self, who: str, got: str, truth_name: str) -> None:
        want = Decimal(self.state.truth[truth_name])
        if Decimal(got) != want:
            self.samples.warn(f"cost report {who}: total {got}, expected {want}")

    def check(self) -> None:
        for name in self.reports():
            self.check_total(name, json.loads(self.report(name, "json"))["total"], name)
        raw, want = self.raw_month_sum(), float(self.state.truth["month"])
        if abs(raw - want) > SUM_REL_TOLERANCE * abs(want):
            self.samples.warn(f"raw SUM over the month's rows is {raw!r}, expected {want!r}")


def write_report_config(scratch: Path, state: YearState) -> Path:
    path = scratch / "cost-report.yml"
    path.write_text(yaml.safe_dump({
        "storage": {"path": str(state.directory)},
        "cost": {"currency": CURRENCY, "timezone": TIMEZONE},
    }, sort_keys=False))
    return path


def report_ratios(med: dict[str, float]) -> list[Ratio]:
    raw = med.get("raw_month_s")

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.1f} ms"

    items = []
    for name, label in (("month", "month (default)"), ("day", "--period day"),
                        ("year", "--from <365 d ago 12:00> --to now")):
        report = med.get(f"report_{name}_s")
        items.append(ratio(f"raw month SUM vs report, {label}", raw, report, None,
                           f"raw SUM {ms(raw)} vs report {ms(report)}"))
    return items


def measure_reports(config: CostBenchConfig, scratch: Path, samples: Samples
                    ) -> dict[str, Any]:
    state = ensure_year_state(config.report_rows, config.seed)
    path = write_report_config(scratch, state)
    run = ReportRun(state, load_config(path), path, samples)
    warm_page_cache(state.directory / STATE_FILE_NAME)
    run.check()
    _rounds(config.repeat, (("month", run.timed("month")), ("day", run.timed("day")),
                            ("year", run.timed("year")), ("raw SUM", run.measure_raw),
                            ("year as a process", run.measure_cli)), "report")
    med = medians({k: v for k, v in samples.values.items()
                   if k.startswith(("report_", "raw_", "cli_"))})
    ratios = report_ratios(med)
    now = datetime.fromtimestamp(state.now, UTC).isoformat()
    per_day = state.rows / LEDGER_DAYS
    print(f"\ncost report over a year: {state.rows:,} ledger rows over the last {LEDGER_DAYS} "
          f"days ({per_day:,.0f} a day) + {state.rollups:,} daily roll-ups over {ROLLUP_DAYS} "
          f"days, {state.size / 1e6:.0f} MB; now = {now}, cost.timezone {TIMEZONE}; medians "
          f"of {config.repeat}\n")
    print(format_ratios(ratios))
    year = med.get("report_year_s")
    process = med.get("cli_year_s")
    if year is not None:
        verdict = "yes" if year < YEAR_REPORT_GUIDE_S else "NO"
        print(f"\nyear report (--from {state.year_from} --to now): {year * 1000:.1f} ms "
              f"in-process, under {YEAR_REPORT_GUIDE_S:g} s: {verdict}")
    if process is not None:
        verdict = "yes" if process < YEAR_REPORT_GUIDE_S else "NO"
        print(f"  as a process (`inferwatch cost report --format json`, spawn to exit): "
              f"{process * 1000:.0f} ms, under {YEAR_REPORT_GUIDE_S:g} s: {verdict}")
    return {"state": {"path": str(state.directory), "rows": state.rows, "bytes": state.size,
                      "rollups": state.rollups, "now": now, "truth": state.truth},
            "medians": med, "ratios": [r.to_json() for r in ratios]}


# -- entry points ----------------------------------------------------------------------------


def profile_ledger(config: CostBenchConfig, scratch: Path) -> None:
    api = ensure_api_dataset(config.api_lines, config.seed)
    print(f"\ncProfile of the api_usage+ledger catch-up ({api.lines:,} lines), top "
          f"{config.profile} by own time:", flush=True)
    done = run_timed([sys.executable, str(BENCH_DIR / "cost_catchup.py"), str(api.path),
                      str(scratch / "profile"), "--profile", str(config.profile)])
    print(done.stderr)


def run_cost(config: CostBenchConfig, scratch: Path) -> dict[str, Any]:
    """The whole section, printed; its JSON document."""
    samples = Samples()
    document = {"ingest": measure_ingest(config, scratch, samples)}
    print("\n" + "-" * 100)
    document["report"] = measure_reports(config, scratch, samples)
    if samples.warnings:
        print(f"\n{len(samples.warnings)} warning(s):")
        for warning in samples.warnings:
            print(f"  - {warning}")
    else:
        print("\nall counts, ledger totals and report totals equal the truth")
    if config.profile:
        profile_ledger(config, scratch)
    return {**document, "samples": samples.values, "warnings": samples.warnings}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cost benchmark")
    group.add_argument("--api-lines", type=int, metavar="N",
                       help=f"lines in the api_usage log (default {DEFAULT_API_LINES:,}; "
                            f"--quick {QUICK_API_LINES:,})")
    group.add_argument("--report-rows", type=int, metavar="N",
                       help=f"ledger rows of the year state, over its last {LEDGER_DAYS} days "
                            f"(default {DEFAULT_REPORT_ROWS:,}; --quick {QUICK_REPORT_ROWS:,})")


def config_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> CostBenchConfig:
    quick = bool(args.quick)
    config = CostBenchConfig(
        lines=args.lines or (QUICK_LINES if quick else DEFAULT_LINES),
        api_lines=args.api_lines or (QUICK_API_LINES if quick else DEFAULT_API_LINES),
        report_rows=args.report_rows or (QUICK_REPORT_ROWS if quick else DEFAULT_REPORT_ROWS),
        repeat=args.repeat or (1 if quick else DEFAULT_REPEAT), seed=args.seed,
        profile=args.profile)
    if min(config.lines, config.api_lines, config.report_rows, config.repeat) <= 0:
        parser.error("--lines, --api-lines, --report-rows and --repeat must be positive")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ingest throughput with the cost ledger on, and `cost report` over a "
                    "year of ledger. Figures are ratios within one run.")
    parser.add_argument("--quick", action="store_true", help="small files, one round")
    parser.add_argument("--lines", type=int, help=f"lines in the inference peer's log "
                        f"(default {DEFAULT_LINES:,}; --quick {QUICK_LINES:,})")
    parser.add_argument("--repeat", type=int, help=f"rounds (default {DEFAULT_REPEAT}; "
                                                   "--quick 1)")
    parser.add_argument("--seed", type=int, default=20260101, help="generator seed")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="afterwards, cProfile one api_usage+ledger catch-up, top N")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from(args, parser)
    with tempfile.TemporaryDirectory(prefix="inferwatch-cost-bench-") as scratch:
        document = run_cost(config, Path(scratch))
    if args.json is not None:
        args.json.write_text(json.dumps({"cost": document}, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
