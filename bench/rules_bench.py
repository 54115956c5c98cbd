"""The rules benchmark: 200 alerting rules over 1k/5k/20k series, query_range, bytes per sample.

For every dataset (bench/rules_data.py: inferwatch-like families, a sample every 15 s) this
loads a SeriesStore through `append`, and where `promtool` and `prometheus` are installed it
exports the very same samples as OpenMetrics, backfills them into TSDB blocks and starts a
Prometheus over them. Then, `--repeat` rounds, the order reversed every other round:

* group    `RuleGroup.evaluate` of the 200 rules (bench/rules_set.py), as the daemon runs it:
           engine, alert state, annotation templates, ALERTS samples written to a sink store;
* engine   `Engine.instant` of the 200 parsed expressions, nothing else;
* iw-http  the 200 expressions through inferwatch's own `/api/v1/query` (aiohttp, in-process);
* prom     the 200 expressions through Prometheus's `/api/v1/query`, same time parameter.

iw-http and prom are measured the same way (one keep-alive connection, request sent to body
read), so their ratio is the like-for-like one; group and engine show where time goes.
Before timing, every expression's answer from both APIs is compared (a difference is a warning).

The range dataset (1k series, 6 h 10 min) adds three dashboard queries over 6 h at 15 s steps
(1,441 points), by engine, inferwatch HTTP and Prometheus HTTP, and the memory per stored
sample (bench/rules_memory.py: tracemalloc while it loads, and the RSS delta, each in a fresh
interpreter). It is evaluated by the rules too: a
control row showing whether a longer history changes the cost of the same rules.

Ratios are inferwatch time / Prometheus time (1x = par, lower is better), or for scaling the
20k/1k time ratio divided by the series ratio (1x = linear). Nothing here is a test threshold.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import rules_data as rd
import rules_report
from procs import BENCH_DIR, run_timed
from report import medians
from rules_peers import (
    InferwatchApiServer,
    PrometheusServer,
    QueryClient,
    backfill,
    check_rules,
    chunk_bytes,
    compare,
    prometheus_binary,
    prometheus_version,
    promtool_binary,
    result_series,
)
from rules_set import RANGE_QUERIES, BenchRule, bench_rules, build_rule_group, rule_file_text

from monitor.promql.engine import Engine
from monitor.promql.parse import parse_expr
from monitor.tsdb.store import SeriesStore

DEFAULT_SIZES = (1_000, 5_000, 20_000)
QUICK_SIZES = (200, 1_000, 4_000)
DEFAULT_HISTORY_MIN = 75  # the longest rule window is 1 h; cost depends on windows, not history
DEFAULT_RANGE_SERIES = 1_000
QUICK_RANGE_SERIES = 200
RANGE_WINDOW_S = 6 * 3600
RANGE_STEP_S = 15
RANGE_MARGIN_S = 600  # history before the window, for the first steps' [5m] rates
DEFAULT_REPEAT = 3

CONTENDERS = ("group", "engine", "iw_http", "prom")


@dataclass(frozen=True)
class RulesConfig:
    sizes: tuple[int, ...]
    history_s: int
    range_series: int
    repeat: int
    seed: int
    prometheus: bool = True
    profile: int = 0


@dataclass
class DatasetRun:
    """What one dataset's measurements produced."""

    label: str
    shape: rd.Shape
    role: str  # "rules" or "range" (rules + range queries + memory)
    timings: dict[str, float] = field(default_factory=dict)  # load, export, promtool, startup
    samples: dict[str, list[float]] = field(default_factory=dict)
    per_template: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    alerts: int = 0
    checked: int = 0
    nonempty: int = 0
    mismatches: list[str] = field(default_factory=list)
    memory: dict[str, float] | None = None

    def record(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)

    def record_template(self, contender: str, totals: dict[str, float]) -> None:
        for template, seconds in totals.items():
            self.per_template.setdefault(contender, {}).setdefault(template, []).append(
                seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label, "role": self.role, "series": self.shape.series,
            "samples_per_series": self.shape.steps, "history_s": self.shape.history_s,
            "timings_s": self.timings, "samples": self.samples, "medians": medians(self.samples),
            "per_template_median_s": {c: medians(t) for c, t in self.per_template.items()},
            "alerts_active": self.alerts, "answers_compared": self.checked,
            "answers_nonempty": self.nonempty,
            "mismatches": self.mismatches, "memory": self.memory,
        }


@dataclass
class Peers:
    promtool: str | None
    prometheus: str | None
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.promtool is not None and self.prometheus is not None

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            print(f"WARNING: {message}", file=sys.stderr, flush=True)


# -- one dataset ------------------------------------------------------------------------------


def load_store(run: DatasetRun) -> SeriesStore:
    """A SeriesStore holding the dataset, filled through `append`."""
    gc.collect()
    store = rd.new_store()
    started = time.perf_counter()
    rd.load(run.shape, store)
    run.timings["load_s"] = time.perf_counter() - started
    return store


def measure_memory(shape: rd.Shape) -> dict[str, float]:
    """Bytes per sample, from two fresh interpreters: tracemalloc, and the RSS delta."""
    found: dict[str, float] = {}
    for trace in (True, False):
        argv = [sys.executable, str(BENCH_DIR / "rules_memory.py"), "--series",
                str(shape.series), "--history-s", str(shape.history_s), "--seed",
                str(shape.seed)]
        done = run_timed([*argv, "--trace"] if trace else argv)
        if done.returncode != 0:
            raise RuntimeError(f"rules_memory.py exited with {done.returncode}: "
                               f"{done.stderr.strip()[-1000:]}")
        found.update(json.loads(done.stdout))
    return found


def _timed_queries(rules: Sequence[BenchRule], ask: Callable[[BenchRule], object],
                   ) -> tuple[float, dict[str, float]]:
    per_template: dict[str, float] = {}
    started = time.perf_counter()
    for rule in rules:
        begun = time.perf_counter()
        ask(rule)
        per_template[rule.template] = per_template.get(rule.template, 0.0) \
            + time.perf_counter() - begun
    return time.perf_counter() - started, per_template


def measure_rules(run: DatasetRun, store: SeriesStore, rule_text: str, rules: Sequence[BenchRule],
                  iw: QueryClient, prom: QueryClient | None, repeat: int, peers: Peers) -> None:
    engine = Engine(store)
    parsed = {rule.name: parse_expr(rule.expr) for rule in rules}
    t_ms = run.shape.end_ms
    t_s = t_ms / 1000

    # Untimed warm-up: lazy imports and template caches, then the check pass, which also
    # warms both servers.
    build_rule_group(rule_text).evaluate(t_ms, engine.instant, rd.new_store(),
                                         lambda *_: None)
    if prom is not None:
        for rule in rules:
            ours, theirs = iw.query(rule.expr, t_s), prom.query(rule.expr, t_s)
            problem = compare(ours, theirs)
            run.checked += 1
            run.nonempty += result_series(theirs) > 0
            if problem is not None:
                run.mismatches.append(f"{rule.name}: {problem}")

    def group() -> None:
        fresh = build_rule_group(rule_text)
        sink = rd.new_store()
        failures: list[str] = []
        started = time.perf_counter()
        fresh.evaluate(t_ms, engine.instant, sink,
                       lambda _g, rule, exc: failures.append(f"{rule.name}: {exc}"))
        run.record("group", time.perf_counter() - started)
        totals: dict[str, float] = {}
        for rule, health in zip(rules, fresh.health, strict=True):
            totals[rule.template] = totals.get(rule.template, 0.0) + health.duration_s
        run.record_template("group", totals)
        run.alerts = sum(len(r.active) for r in fresh.alerting_rules())
        for failure in failures:
            peers.warn(f"{run.label}: rule failed: {failure}")

    def timed(name: str, ask: Callable[[BenchRule], object]) -> Callable[[], None]:
        def measure() -> None:
            total, per_template = _timed_queries(rules, ask)
            run.record(name, total)
            run.record_template(name, per_template)
        return measure

    contenders: dict[str, Callable[[], None]] = {
        "group": group,
        "engine": timed("engine", lambda r: engine.instant(parsed[r.name], t_ms)),
        "iw_http": timed("iw_http", lambda r: iw.query(r.expr, t_s)),
    }
    if prom is not None:
        contenders["prom"] = timed("prom", lambda r: prom.query(r.expr, t_s))
    for round_index in range(repeat):
        order = list(contenders.values())
        for measure in order if round_index % 2 == 0 else order[::-1]:
            measure()


def measure_range(run: DatasetRun, store: SeriesStore, iw: QueryClient, prom: QueryClient | None,
                  repeat: int) -> None:
    engine = Engine(store)
    end_ms = run.shape.end_ms
    start_ms = end_ms - RANGE_WINDOW_S * 1000
    for name, expr in RANGE_QUERIES:
        node = parse_expr(expr)
        contenders: list[tuple[str, Callable[[], object]]] = [
            ("engine", partial(engine.range, node, start_ms, end_ms, RANGE_STEP_S * 1000)),
            ("iw_http", partial(iw.query_range, expr, start_ms / 1000, end_ms / 1000,
                                RANGE_STEP_S)),
        ]
        if prom is not None:
            contenders.append(("prom", partial(prom.query_range, expr, start_ms / 1000,
                                               end_ms / 1000, RANGE_STEP_S)))
        answers: dict[str, object] = {}
        for round_index in range(repeat):
            order = contenders if round_index % 2 == 0 else contenders[::-1]
            for contender, ask in order:
                started = time.perf_counter()
                answer = ask()
                run.record(f"range:{name}:{contender}", time.perf_counter() - started)
                answers.setdefault(contender, answer)
        if "prom" in answers:
            iw_body, prom_body = answers["iw_http"], answers["prom"]
            assert isinstance(iw_body, bytes) and isinstance(prom_body, bytes)
            problem = compare(iw_body, prom_body)
            run.checked += 1
            run.nonempty += result_series(prom_body) > 0
            if problem is not None:
                run.mismatches.append(f"query_range {name!r}: {problem}")


def backfill_prometheus(run: DatasetRun, store: SeriesStore, peers: Peers,
                        workdir: Path) -> Path | None:
    """The dataset exported as OpenMetrics and backfilled into blocks: their directory, or
    None (with a warning) when promtool fails."""
    assert peers.promtool is not None
    openmetrics = workdir / "samples.om"
    started = time.perf_counter()
    written = rd.export_openmetrics(store, openmetrics)
    run.timings["export_s"] = time.perf_counter() - started
    run.timings["openmetrics_bytes"] = openmetrics.stat().st_size
    if written != run.shape.samples:
        peers.warn(f"{run.label}: exported {written:,} samples, expected "
                   f"{run.shape.samples:,}")
    tsdb = workdir / "tsdb"
    try:
        run.timings["promtool_s"] = backfill(peers.promtool, openmetrics, tsdb)
    except RuntimeError as exc:
        peers.warn(f"{run.label}: no Prometheus peer: {exc}")
        return None
    finally:
        openmetrics.unlink()
    run.timings["prometheus_chunk_bytes"] = chunk_bytes(tsdb)
    return tsdb


def measure_dataset(run: DatasetRun, config: RulesConfig, peers: Peers, scratch: Path,
                    rule_text: str, rules: Sequence[BenchRule]) -> None:
    print(f"{run.label}: {run.shape.describe()}, {run.shape.samples:,} samples", flush=True)
    if run.role == "range":
        run.memory = measure_memory(run.shape)
    store = load_store(run)
    workdir = scratch / run.label
    workdir.mkdir(parents=True)
    try:
        with contextlib.ExitStack() as stack:
            prom: QueryClient | None = None
            tsdb = backfill_prometheus(run, store, peers, workdir) \
                if config.prometheus and peers.usable else None
            if tsdb is not None:
                assert peers.prometheus is not None
                try:
                    server = stack.enter_context(
                        PrometheusServer(peers.prometheus, tsdb, workdir))
                except (RuntimeError, OSError) as exc:
                    peers.warn(f"{run.label}: no Prometheus peer: {exc}")
                else:
                    run.timings["prometheus_startup_s"] = server.startup_s
                    prom = QueryClient(server.port)
                    stack.callback(prom.close)
            api = stack.enter_context(InferwatchApiServer(store))
            iw = QueryClient(api.port)
            stack.callback(iw.close)
            measure_rules(run, store, rule_text, rules, iw, prom, config.repeat, peers)
            if run.role == "range":
                measure_range(run, store, iw, prom, config.repeat)
        for mismatch in run.mismatches:
            peers.warn(f"{run.label}: inferwatch and Prometheus differ: {mismatch}")
    finally:  # Prometheus is stopped by now (the ExitStack), whatever happened
        shutil.rmtree(workdir, ignore_errors=True)
        del store
        gc.collect()


# -- profiling --------------------------------------------------------------------------------


def _top(profiler: cProfile.Profile, title: str, top: int) -> str:
    out = io.StringIO()
    out.write(f"{title}; top {top} by own time:\n")
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def profile_group(shape: rd.Shape, rule_text: str, top: int) -> str:
    """cProfile of one RuleGroup.evaluate of the 200 rules over `shape`."""
    store = rd.new_store()
    rd.load(shape, store)
    engine = Engine(store)
    group = build_rule_group(rule_text)
    profiler = cProfile.Profile()
    profiler.runcall(group.evaluate, shape.end_ms, engine.instant, rd.new_store(),
                     lambda *_: None)
    return _top(profiler, f"cProfile of RuleGroup.evaluate, 200 rules, {shape.describe()}", top)


def profile_range(shape: rd.Shape, top: int) -> str:
    """cProfile of the slowest dashboard query (the p95 histogram_quantile) over 6 h."""
    store = rd.new_store()
    rd.load(shape, store)
    name, expr = RANGE_QUERIES[1]
    end = shape.end_ms
    profiler = cProfile.Profile()
    profiler.runcall(Engine(store).range, expr, end - RANGE_WINDOW_S * 1000, end,
                     RANGE_STEP_S * 1000)
    return _top(profiler, f"cProfile of query_range {name!r}, 6 h at 15 s, "
                          f"{shape.series:,} series", top)


# -- the whole section ------------------------------------------------------------------------


def series_label(series: int) -> str:
    return f"{series / 1000:g}k" if series >= 1000 else str(series)


def run_rules(config: RulesConfig, scratch: Path) -> dict[str, Any]:
    """Measure everything, print the report; the JSON document of the results."""
    rules = bench_rules()
    rule_text = rule_file_text(rules)
    peers = Peers(promtool_binary(), prometheus_binary())
    if not config.prometheus:
        peers.promtool = peers.prometheus = None
    elif not peers.usable:
        peers.warn("promtool or prometheus not found on PATH: Prometheus ratios are n/a")
    if peers.promtool is not None:
        rule_file = scratch / "bench-rules.yml"
        rule_file.write_text(rule_text)
        problem = check_rules(peers.promtool, rule_file)
        if problem is not None:
            peers.warn(f"promtool check rules refuses the benchmark's rules: {problem}")
    runs = []
    for n in config.sizes:
        shape = rd.shape_for(n, config.history_s, config.seed)
        runs.append(DatasetRun(series_label(shape.series), shape, "rules"))
    range_shape = rd.shape_for(config.range_series, RANGE_WINDOW_S + RANGE_MARGIN_S,
                               config.seed)
    runs.append(DatasetRun(f"{series_label(range_shape.series)}-6h", range_shape, "range"))
    for run in runs:
        measure_dataset(run, config, peers, scratch, rule_text, rules)
    version = prometheus_version(peers.prometheus) if peers.prometheus else None
    document = rules_report.build(runs, version=version, repeat=config.repeat,
                                  warnings=peers.warnings)
    document["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}
    document["config"] = {"sizes": list(config.sizes), "history_s": config.history_s,
                          "range_series": config.range_series, "repeat": config.repeat,
                          "seed": config.seed, "rules": len(rules),
                          "range_window_s": RANGE_WINDOW_S, "range_step_s": RANGE_STEP_S}
    rules_report.print_report(document)
    if config.profile:
        biggest = max((r for r in runs if r.role == "rules"), key=lambda r: r.shape.series)
        print(f"\n{profile_group(biggest.shape, rule_text, config.profile)}", flush=True)
        print(profile_range(range_shape, config.profile))
    return document


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("rules benchmark")
    group.add_argument("--rule-series", metavar="N,N,...",
                       help="series counts of the rule datasets (default "
                            f"{','.join(map(str, DEFAULT_SIZES))}; --quick "
                            f"{','.join(map(str, QUICK_SIZES))}); 100 series per instance")
    group.add_argument("--rule-history", type=float, metavar="MINUTES",
                       default=DEFAULT_HISTORY_MIN,
                       help="history of the rule datasets, minutes (default %(default)s)")
    group.add_argument("--range-series", type=int, metavar="N",
                       help=f"series of the query_range/memory dataset (default "
                            f"{DEFAULT_RANGE_SERIES}; --quick {QUICK_RANGE_SERIES})")
    group.add_argument("--no-prometheus", action="store_true",
                       help="skip the Prometheus peer (no export, no promtool)")


def config_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RulesConfig:
    if args.rule_series:
        try:
            sizes = tuple(int(part) for part in args.rule_series.split(","))
        except ValueError:
            parser.error("--rule-series takes comma-separated integers")
    else:
        sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    range_series = args.range_series or (QUICK_RANGE_SERIES if args.quick
                                         else DEFAULT_RANGE_SERIES)
    repeat = args.repeat or (1 if args.quick else DEFAULT_REPEAT)
    if min(*sizes, range_series, repeat) <= 0 or args.rule_history <= 0:
        parser.error("--rule-series, --rule-history, --range-series and --repeat must be "
                     "positive")
    if args.rule_history * 60 < 3600 + 300:
        print("note: --rule-history under 65 minutes leaves the 1 h rules short of data",
              file=sys.stderr)
    return RulesConfig(sizes=sizes, history_s=round(args.rule_history * 60),
                       range_series=range_series, repeat=repeat, seed=args.seed,
                       prometheus=not args.no_prometheus, profile=args.profile)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Rule evaluation, query_range and bytes per sample of inferwatch, beside "
                    "a Prometheus over the same samples. Figures are ratios within one run.")
    parser.add_argument("--quick", action="store_true", help="small datasets, one round")
    parser.add_argument("--repeat", type=int, help=f"rounds (default {DEFAULT_REPEAT}; "
                                                   "--quick 1)")
    parser.add_argument("--seed", type=int, default=20260101, help="generator seed")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="afterwards, cProfile the largest evaluation and the slowest "
                             "range query, top N functions")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from(args, parser)
    with tempfile.TemporaryDirectory(prefix="inferwatch-rules-bench-") as scratch:
        document = run_rules(config, Path(scratch))
    if args.json is not None:
        args.json.write_text(json.dumps({"rules": document}, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
