"""`make bench`: inferwatch's ingest throughput against its peers, and its memory bound.

Over one generated `inference` log (300k lines of ~550 bytes by default, kept in bench/data/):

* mtail     `mtail --one_shot` with bench/ingest_mtail.mtail (whole process);
* bare      bench/bare_loop.py, orjson + bisect in a plain loop (whole process, and its loop);
* daemon    `inferwatch run` from a cold start until `/-/ready` (whole process);
* catchup   bench/catchup.py, `IngestService` in-process until ready (the catch-up alone).

Each is run `--repeat` times, the order reversed on every other round to spread the noise of a
shared machine, and the medians are compared as ratios: the figures are only meaningful against
peers measured in the same run, so they are reported, never asserted. Every contender's counts
are checked against the generator's truth (a mismatch is a warning). Then the daemon ingests a
1M-line file and its resident memory is compared with the 300k run's.

Last, the idle cost: CPU share of a daemon watching 1,000 quiet files, inotify and polling.

Then the rules section (bench/rules_bench.py): 200 alerting rules over 1k/5k/20k series,
query_range over 6 h, bytes per stored sample, beside a real Prometheus over the same samples;
the page section (bench/page_bench.py): time from an error line to a webhook page; the cost
section (bench/cost_bench.py): api_usage ingest with the cost ledger on against the inference
catch-up, and `cost report` over a year of ledger against a raw SQLite SUM; and the
samplers section (bench/samplers_bench.py): CPU of one sampling tick (host, 8 fake GPUs,
5 processes, 3 probes) and of the idle daemon over 60 s, beside node_exporter; and last the
slo section (bench/slo_bench.py): one SLO tick with 20 SLOs over 30 days of minutes at two
traffic levels and over 500 / 5,000 series beside its queries alone, and SQLite bytes per
SLO-month beside a minimal integer table; and the scrape section (bench/scrape_bench.py):
`/metrics` render time and size at 5k series beside prometheus_client's own metrics, in
process and over HTTP, and a real Prometheus's `scrape_duration_seconds` of the daemon beside
node_exporter's, scraped every 1 s for 30 s, with each target's samples per scrape; and the
report section (bench/report_bench.py): `inferwatch report` lines/s over a 1M-line log beside
the bare orjson loop and the daemon's decoders alone, and over an api_usage log.

Flags: --only ingest|rules|page|cost|samplers|slo|scrape|report, --lines, --rss-lines, --repeat,
--seed, --quick, --no-rss, --no-idle, --profile N, --json PATH; for the rules section --rule-series,
--rule-history, --range-series, --no-prometheus; for the cost section --api-lines,
--report-rows; for the samplers section --sampler-ticks, --sampler-idle-window; for the slo
section --slo-ticks; for the scrape section --scrape-series, --scrape-renders,
--scrape-window; for the report section --report-log-lines.
Exits 0 whatever the figures; 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregate import Aggregate, differences
from cost_bench import CostBenchConfig, run_cost
from cost_bench import add_arguments as add_cost_arguments
from cost_bench import config_from as cost_config_from
from daemon_peer import run_daemon
from dataset import Dataset, ensure_dataset, warm_page_cache
from idle import IdleRun, measure_idle
from mtail_peer import mtail_binary, mtail_version, prepare, run_mtail
from page_bench import run_page
from procs import BENCH_DIR, free_loopback_port, run_timed
from report import Ratio, format_absolutes, format_ratios, medians, ratio
from report_bench import ReportBenchConfig, run_report_bench
from report_bench import add_arguments as add_report_arguments
from report_bench import config_from as report_config_from
from rules_bench import RulesConfig, config_from, run_rules
from rules_bench import add_arguments as add_rules_arguments
from samplers_bench import SamplersBenchConfig, run_samplers
from samplers_bench import add_arguments as add_samplers_arguments
from samplers_bench import config_from as samplers_config_from
from scrape_bench import ScrapeBenchConfig, run_scrape
from scrape_bench import add_arguments as add_scrape_arguments
from scrape_bench import config_from as scrape_config_from
from slo_bench import SloBenchConfig, run_slo
from slo_bench import add_arguments as add_slo_arguments
from slo_bench import config_from as slo_config_from

from monitor.metrics.families import DURATION_BUCKETS

DEFAULT_LINES = 300_000
DEFAULT_RSS_LINES = 1_000_000
DEFAULT_REPEAT = 3
DEFAULT_SEED = 20260101
DEFAULT_INCIDENTS = 20
QUICK_LINES = 30_000
QUICK_RSS_LINES = 100_000
TARGET_VS_MTAIL = 3.0
TARGET_VS_BARE = 0.5
RSS_BOUND = 1.5  # "bounded": the bigger file may cost a little more, never in proportion
IDLE_GUIDE = 0.05  # "a few percent of a core" for 1,000 quiet files
IDLE_WINDOW_S = 10.0


@dataclass
class Bench:
    """What one benchmark run knows and has measured so far."""

    data: Dataset
    scratch: Path
    mtail: str | None
    samples: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _runs: int = 0

    def record(self, **values: float) -> None:
        for name, value in values.items():
            self.samples.setdefault(name, []).append(value)

    def check(self, who: str, got: Aggregate, truth: Aggregate | None = None) -> None:
        for problem in differences(truth or self.data.truth, got):
            self.warn(f"{who}: counts differ from the truth: {problem}")

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            print(f"WARNING: {message}", file=sys.stderr)

    def workdir(self, what: str) -> Path:
        self._runs += 1
        path = self.scratch / f"{self._runs:02d}-{what}"
        path.mkdir(parents=True)
        return path


# -- the contenders ---------------------------------------------------------------------------


def measure_mtail(bench: Bench) -> None:
    if bench.mtail is None:
        return
    workdir = bench.workdir("mtail")
    warning = prepare(workdir, DURATION_BUCKETS)
    if warning:
        bench.warn(warning)
    run = run_mtail(bench.mtail, bench.data.path, workdir, len(DURATION_BUCKETS))
    bench.check("mtail", run.result)
    bench.record(mtail_s=run.wall_s)


def measure_bare(bench: Bench) -> None:
    buckets = ",".join(repr(b) for b in DURATION_BUCKETS)
    done = run_timed([sys.executable, str(BENCH_DIR / "bare_loop.py"), str(bench.data.path),
                      "--buckets", buckets])
    if done.returncode != 0:
        raise RuntimeError(f"bare loop exited with {done.returncode}: {done.stderr.strip()}")
    out = json.loads(done.stdout)
    bench.check("bare loop", Aggregate.from_json(out))
    bench.record(bare_s=done.wall_s, bare_loop_s=float(out["loop_s"]))


def measure_daemon(bench: Bench) -> None:
    run = run_daemon(bench.data.path, bench.workdir("daemon"), free_loopback_port())
    bench.check("inferwatch run", run.result)
    if run.exit_code != 0:
        bench.warn(f"inferwatch run exited with {run.exit_code} on SIGTERM")
    bench.record(daemon_s=run.wall_s, daemon_rss_kib=run.rss_kib, daemon_hwm_kib=run.hwm_kib)


def measure_catchup(bench: Bench) -> None:
    done = run_timed([sys.executable, str(BENCH_DIR / "catchup.py"), str(bench.data.path),
                      str(bench.workdir("catchup"))])
    if done.returncode != 0:
        raise RuntimeError(f"catch-up exited with {done.returncode}: {done.stderr.strip()}")
    out = json.loads(done.stdout)
    bench.check("in-process catch-up", Aggregate.from_json(out["result"]))
    bench.record(catchup_ready_s=float(out["ready_s"]), catchup_read_s=float(out["read_s"]))


CONTENDERS: tuple[tuple[str, Callable[[Bench], None]], ...] = (
    ("mtail", measure_mtail),
    ("bare", measure_bare),
    ("daemon", measure_daemon),
    ("catchup", measure_catchup),
)


def measure_all(bench: Bench, repeat: int) -> None:
    for round_index in range(repeat):
        order = CONTENDERS if round_index % 2 == 0 else CONTENDERS[::-1]
        print(f"round {round_index + 1}/{repeat}: {' -> '.join(name for name, _ in order)}",
              flush=True)
        for _, measure in order:
            measure(bench)


def measure_rss(bench: Bench, big: Dataset) -> dict[str, Any]:
    """The daemon over the big file: memory at ready, beside the median of the small runs."""
    warm_page_cache(big.path)
    run = run_daemon(big.path, bench.workdir("daemon-rss"), free_loopback_port())
    bench.check(f"inferwatch run ({big.lines} lines)", run.result, big.truth)
    small = medians({k: bench.samples.get(k, []) for k in ("daemon_rss_kib", "daemon_hwm_kib")})
    return {"lines": big.lines, "wall_s": run.wall_s, "rss_kib": run.rss_kib,
            "hwm_kib": run.hwm_kib, "small_lines": bench.data.lines,
            "small_rss_kib": small.get("daemon_rss_kib"),
            "small_hwm_kib": small.get("daemon_hwm_kib")}


# -- reporting --------------------------------------------------------------------------------


def _pair(a_name: str, a: float | None, b_name: str, b: float | None, unit: str = "s") -> str:
    def show(value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{value / 1024:.0f} MiB" if unit == "KiB" else f"{value:.2f} s"

    return f"{a_name} {show(a)} vs {b_name} {show(b)}"


def build_ratios(med: dict[str, float], rss: dict[str, Any] | None) -> list[Ratio]:
    g = med.get
    items = [
        ratio("inferwatch run vs mtail (process)", g("mtail_s"), g("daemon_s"), TARGET_VS_MTAIL,
              _pair("mtail", g("mtail_s"), "inferwatch", g("daemon_s"))),
        ratio("inferwatch run vs bare loop (process)", g("bare_s"), g("daemon_s"),
              TARGET_VS_BARE, _pair("bare", g("bare_s"), "inferwatch", g("daemon_s"))),
        ratio("catch-up vs bare loop (in-process)", g("bare_loop_s"), g("catchup_ready_s"),
              TARGET_VS_BARE,
              _pair("bare loop", g("bare_loop_s"), "catch-up", g("catchup_ready_s"))),
        ratio("  read to EOF only (before commit)", g("bare_loop_s"), g("catchup_read_s"), None,
              _pair("bare loop", g("bare_loop_s"), "read", g("catchup_read_s"))),
        ratio("catch-up vs mtail (in-process)", g("mtail_s"), g("catchup_ready_s"), None,
              _pair("mtail", g("mtail_s"), "catch-up", g("catchup_ready_s"))),
    ]
    if rss is not None:
        items.append(ratio(
            f"RSS at ready, {rss['lines'] // 1000}k / {rss['small_lines'] // 1000}k lines",
            rss["rss_kib"], rss["small_rss_kib"], RSS_BOUND,
            _pair(f"{rss['lines'] // 1000}k", rss["rss_kib"], f"{rss['small_lines'] // 1000}k",
                  rss["small_rss_kib"], "KiB"),
            higher_is_better=False))
        items.append(ratio(
            "  peak RSS (VmHWM), same files", rss["hwm_kib"], rss["small_hwm_kib"], RSS_BOUND,
            _pair(f"{rss['lines'] // 1000}k", rss["hwm_kib"], f"{rss['small_lines'] // 1000}k",
                  rss["small_hwm_kib"], "KiB"),
            higher_is_better=False))
    return items


def absolute_rows(bench: Bench, med: dict[str, float]) -> list[tuple[str, float, int, int, int]]:
    names = {
        "mtail_s": "mtail --one_shot (process)",
        "bare_s": "bare orjson loop (process)",
        "bare_loop_s": "bare orjson loop (loop only)",
        "daemon_s": "inferwatch run -> /-/ready (process)",
        "catchup_ready_s": "IngestService catch-up -> ready",
        "catchup_read_s": "IngestService catch-up -> read to EOF",
    }
    return [(label, med[key], len(bench.samples[key]), bench.data.lines, bench.data.size)
            for key, label in names.items() if key in med]


def print_idle(runs: Sequence[IdleRun]) -> None:
    print("\nidle cost, 1,000 quiet files under one glob (share of one core, guide <= "
          f"{IDLE_GUIDE:.0%}):")
    for run in runs:
        mode = "inotify + 1 s rescan" if run.inotify else "polling every 250 ms"
        verdict = "ok" if run.core_share <= IDLE_GUIDE else "ABOVE"
        print(f"  {mode:<24} {run.core_share:6.1%}  {verdict}   ({run.cpu_s:.2f} s CPU in "
              f"{run.window_s:.1f} s)")


def print_summary(bench: Bench, ratios: Sequence[Ratio], med: dict[str, float],
                  rss: dict[str, Any] | None) -> None:
    print(f"\ninferwatch ingest benchmark: {bench.data.lines:,} inference lines, "
          f"{bench.data.size / 1e6:.0f} MB, {bench.data.size / bench.data.lines:.0f} B/line, "
          f"{os.cpu_count()} CPUs; medians of {len(bench.samples.get('daemon_s', []))}")
    print()
    print(format_ratios(ratios))
    print()
    print(format_absolutes(absolute_rows(bench, med)))
    if rss is not None:
        print(f"\nmemory at /-/ready: {rss['small_lines']:,} lines RSS "
              f"{(rss['small_rss_kib'] or 0) / 1024:.0f} MiB (peak "
              f"{(rss['small_hwm_kib'] or 0) / 1024:.0f} MiB); {rss['lines']:,} lines RSS "
              f"{rss['rss_kib'] / 1024:.0f} MiB (peak {rss['hwm_kib'] / 1024:.0f} MiB), "
              f"ready in {rss['wall_s']:.2f} s")
    if any(r.verdict == "BELOW" for r in ratios):
        print("\nbelow target: `bench/run.py --profile 25` prints where the catch-up spends "
              "its time")
    if bench.warnings:
        print(f"\n{len(bench.warnings)} warning(s):")
        for warning in bench.warnings:
            print(f"  - {warning}")
    else:
        print("\nall contenders' counts equal the truth")


def ingest_document(bench: Bench, ratios: Sequence[Ratio], med: dict[str, float],
                    rss: dict[str, Any] | None, idle: Sequence[IdleRun]) -> dict[str, Any]:
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "mtail": mtail_version(bench.mtail) if bench.mtail else None},
        "data": {"path": str(bench.data.path), "lines": bench.data.lines,
                 "bytes": bench.data.size, "seed": bench.data.seed},
        "samples": bench.samples,
        "medians": med,
        "ratios": [r.to_json() for r in ratios],
        "rss": rss,
        "idle": [{"inotify": r.inotify, "files": r.files, "window_s": r.window_s,
                  "cpu_s": r.cpu_s, "core_share": r.core_share} for r in idle],
        "warnings": bench.warnings,
    }


def profile_catchup(data: Dataset, scratch: Path, top: int) -> None:
    print(f"\ncProfile of the in-process catch-up ({data.lines:,} lines), top {top} by "
          "own time:", flush=True)
    done = run_timed([sys.executable, str(BENCH_DIR / "catchup.py"), str(data.path),
                      str(scratch / "profile"), "--profile", str(top)])
    print(done.stderr)


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None
               ) -> tuple[argparse.Namespace, RulesConfig, CostBenchConfig, SamplersBenchConfig,
                          SloBenchConfig, ScrapeBenchConfig, ReportBenchConfig]:
    parser = argparse.ArgumentParser(
        description="Ingest throughput of inferwatch vs mtail and a bare orjson loop, and "
                    "its memory after a large catch-up; then rule evaluation and query_range "
                    "beside a real Prometheus; time to page; the cost ledger's price at "
                    "ingest and `cost report` over a year; the CPU of a sampling tick and of "
                    "the idle daemon; the cost of an SLO tick and SQLite bytes per SLO-month; "
                    "the cost of a /metrics scrape at 5k series beside node_exporter's. "
                    "Figures are ratios within one run.")
    parser.add_argument("--only", choices=("ingest", "rules", "page", "cost", "samplers", "slo",
                                           "scrape", "report"),
                        help="run one section (default: all eight: ingest, rules, page, cost, "
                             "samplers, slo, scrape, report)")
    parser.add_argument("--incidents", type=int, default=DEFAULT_INCIDENTS,
                        help="incidents in the time-to-page section (default %(default)s)")
    parser.add_argument("--lines", type=int, help=f"lines in the timed log "
                        f"(default {DEFAULT_LINES:,}; --quick {QUICK_LINES:,})")
    parser.add_argument("--rss-lines", type=int, help=f"lines in the memory run's log "
                        f"(default {DEFAULT_RSS_LINES:,}; --quick {QUICK_RSS_LINES:,})")
    parser.add_argument("--repeat", type=int, help=f"rounds of every timed measurement "
                        f"(default {DEFAULT_REPEAT}; --quick 1)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="generator seed (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: small files, one round")
    parser.add_argument("--no-rss", action="store_true", help="skip the memory run")
    parser.add_argument("--no-idle", action="store_true",
                        help="skip the idle-cost run (1,000 quiet files)")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="afterwards, cProfile one catch-up (and the largest rule "
                             "evaluation and slowest range query) and print the top N functions")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    add_rules_arguments(parser)
    add_cost_arguments(parser)
    add_samplers_arguments(parser)
    add_slo_arguments(parser)
    add_scrape_arguments(parser)
    add_report_arguments(parser)
    args = parser.parse_args(argv)
    defaults = ((QUICK_LINES, QUICK_RSS_LINES, 1) if args.quick
                else (DEFAULT_LINES, DEFAULT_RSS_LINES, DEFAULT_REPEAT))
    for name, default in zip(("lines", "rss_lines", "repeat"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if min(args.lines, args.rss_lines, args.repeat, args.incidents) <= 0:
        parser.error("--lines, --rss-lines, --repeat and --incidents must be positive")
    return (args, config_from(args, parser), cost_config_from(args, parser),
            samplers_config_from(args, parser), slo_config_from(args, parser),
            scrape_config_from(args, parser), report_config_from(args, parser))


def run_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """The ingest section; its JSON document."""
    data = ensure_dataset(args.lines, args.seed)
    big = None if args.no_rss else ensure_dataset(args.rss_lines, args.seed)
    with tempfile.TemporaryDirectory(prefix="inferwatch-bench-") as scratch:
        bench = Bench(data=data, scratch=Path(scratch), mtail=mtail_binary())
        if bench.mtail is None:
            bench.warn("mtail not found on PATH: its ratios are n/a")
        warm_page_cache(data.path)
        measure_all(bench, args.repeat)
        rss = None if big is None else measure_rss(bench, big)
        med = medians(bench.samples)
        ratios = build_ratios(med, rss)
        print_summary(bench, ratios, med, rss)
        idle: list[IdleRun] = []
        if not args.no_idle:
            window = 3.0 if args.quick else IDLE_WINDOW_S
            idle = [measure_idle(Path(scratch) / f"idle-{mode}", inotify=mode, window_s=window)
                    for mode in (True, False)]
            print_idle(idle)
        if args.profile:
            profile_catchup(data, Path(scratch), args.profile)
        return ingest_document(bench, ratios, med, rss, idle)


def main(argv: Sequence[str] | None = None) -> int:
    args, rules_config, cost_config, samplers_config, slo_config, scrape_config, \
        report_config = parse_args(argv)
    document: dict[str, Any] = {}
    if args.only in (None, "ingest"):
        document.update(run_ingest(args))
    if args.only in (None, "rules"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        with tempfile.TemporaryDirectory(prefix="inferwatch-rules-bench-") as scratch:
            document["rules"] = run_rules(rules_config, Path(scratch))
    if args.only in (None, "page"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        with tempfile.TemporaryDirectory(prefix="inferwatch-page-bench-") as scratch:
            document["page"] = run_page(Path(scratch), incidents=args.incidents,
                                        seed=args.seed, stacks=not args.no_prometheus)
    if args.only in (None, "cost"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        with tempfile.TemporaryDirectory(prefix="inferwatch-cost-bench-") as scratch:
            document["cost"] = run_cost(cost_config, Path(scratch))
    if args.only in (None, "samplers"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        with tempfile.TemporaryDirectory(prefix="inferwatch-samplers-bench-") as scratch:
            document["samplers"] = run_samplers(samplers_config, Path(scratch))
    if args.only in (None, "slo"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        with tempfile.TemporaryDirectory(prefix="inferwatch-slo-bench-") as scratch:
            document["slo"] = run_slo(slo_config, Path(scratch))
    if args.only in (None, "scrape"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        with tempfile.TemporaryDirectory(prefix="inferwatch-scrape-bench-") as scratch:
            document["scrape"] = run_scrape(scrape_config, Path(scratch))
    if args.only in (None, "report"):
        if args.only is None:
            print("\n" + "=" * 100 + "\n")
        document["report"] = run_report_bench(report_config)
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
