"""The report section (issue 9): `inferwatch report` lines/s over a 1M-line log, beside a bare
parse loop measured in the same run.

Over the generated `inference` log the ingest section also uses (bench/data/, 1,000,000 lines
of ~550 bytes by default), each in its own process, `--repeat` rounds in alternating order:

* bare      bench/bare_loop.py: `orjson.loads` + a bisect histogram in a plain loop — the
            floor for any Python reading this log (its loop time, and its whole process);
* decoders  the daemon's line decoder (`FAST_DECODERS`, what the report must use) over the
            report's own chunked reader, every event dropped: what parsing alone costs;
* report    `analyse()` in-process, imports excluded (the loop, the aggregation and the
            document), and `inferwatch report --format json` as a whole process.

Then the same for the `api_usage` log of the cost section (300,000 lines): report (priced as
the ledger prices) against the decoders alone (the bare loop cannot read that schema).
Ratios are lines/s of the report over lines/s of the peer: higher is better, 1.0 would be
"as fast as the peer". The report's counts are checked against the generator's truth.

    .venv/bin/python bench/report_bench.py [--quick] [--report-log-lines N] [--repeat N]
                                           [--profile N] [--json PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from cost_data import ensure_api_dataset
from dataset import ensure_dataset, warm_page_cache
from procs import BENCH_DIR, run_timed
from report import Ratio, format_absolutes, format_ratios, medians, ratio

from monitor.cost.pricing import PriceTable
from monitor.metrics.families import DURATION_BUCKETS

DEFAULT_LINES = 1_000_000
QUICK_LINES = 100_000
DEFAULT_API_LINES = 300_000
QUICK_API_LINES = 30_000
DEFAULT_REPEAT = 3
DEFAULT_SEED = 20260101


@dataclass(frozen=True)
class ReportBenchConfig:
    lines: int
    api_lines: int
    repeat: int
    seed: int
    profile: int = 0


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def record(self, **values: float) -> None:
        for name, value in values.items():
            self.values.setdefault(name, []).append(value)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            print(f"WARNING: {message}", file=sys.stderr)


# -- what runs inside a contender's process -----------------------------------------------------


def inner_decoders(path: str, schema: str) -> dict[str, Any]:
    """The daemon's decoder over every line, nothing kept; (seconds, lines, malformed)."""
    from monitor.ingest.decoders import FAST_DECODERS  # noqa: PLC0415 - timed apart
    from monitor.ingest.schemas import MalformedLine  # noqa: PLC0415
    from monitor.report.reading import open_log, read_chunks  # noqa: PLC0415

    decode = FAST_DECODERS[schema]
    started = time.perf_counter()
    lines = malformed = 0
    opened = open_log(path)
    try:
        for chunk in read_chunks(opened.stream):
            lines += len(chunk.lines)
            for line in chunk.lines:
                try:
                    decode(line)
                except MalformedLine:
                    malformed += 1
    finally:
        opened.close()
    return {"loop_s": time.perf_counter() - started, "lines": lines, "malformed": malformed}


def inner_report(path: str) -> dict[str, Any]:
    """`analyse()` on the file, imports and the price table already loaded."""
    from monitor.cost.pricing import PriceTable  # noqa: PLC0415
    from monitor.report.command import analyse  # noqa: PLC0415

    prices = PriceTable.load()
    started = time.perf_counter()
    doc = analyse([path], prices=prices)
    return {"loop_s": time.perf_counter() - started, "requests": doc["requests"],
            "tokens": doc["tokens"], "lines": doc["lines"],
            "cost": doc["cost"]["total"] if doc["cost"] else None}


# -- the contenders -----------------------------------------------------------------------------


def _inner(samples: Samples, name: str, *args: str) -> dict[str, Any]:
    done = run_timed([sys.executable, str(BENCH_DIR / "report_bench.py"), "--inner", *args])
    if done.returncode != 0:
        raise RuntimeError(f"{name} exited with {done.returncode}: {done.stderr.strip()}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _check(samples: Samples, who: str, got: dict[str, Any], success: int, error: int,
           input_tokens: int, output_tokens: int) -> None:
    requests = got["requests"]
    found = (requests["success"], requests["error"], got["tokens"]["input"],
             got["tokens"]["output"])
    if found != (success, error, input_tokens, output_tokens):
        samples.warn(f"{who}: (success, error, input, output) {found} differ from the truth "
                     f"{(success, error, input_tokens, output_tokens)}")


def _rounds(repeat: int, contenders: Sequence[tuple[str, Callable[[], None]]],
            what: str) -> None:
    for index in range(repeat):
        order = contenders if index % 2 == 0 else contenders[::-1]
        print(f"{what} round {index + 1}/{repeat}: {' -> '.join(name for name, _ in order)}",
              flush=True)
        for _, measure in order:
            measure()


def measure_inference(config: ReportBenchConfig, samples: Samples) -> dict[str, Any]:
    data = ensure_dataset(config.lines, config.seed)
    warm_page_cache(data.path)
    path = str(data.path)
    truth = data.truth

    def bare() -> None:
        done = run_timed([sys.executable, str(BENCH_DIR / "bare_loop.py"), path, "--buckets",
                          ",".join(repr(b) for b in DURATION_BUCKETS)])
        if done.returncode != 0:
            raise RuntimeError(f"bare loop exited with {done.returncode}: {done.stderr}")
        samples.record(bare_s=done.wall_s, bare_loop_s=float(json.loads(done.stdout)["loop_s"]))

    def decoders() -> None:
        out = _inner(samples, "decoder loop", "decoders", path, "inference")
        samples.record(decoders_loop_s=out["loop_s"])

    def report_inner() -> None:
        out = _inner(samples, "report (in-process)", "report", path)
        _check(samples, "report", out, truth.success, truth.error, truth.input_tokens,
               truth.output_tokens)
        samples.record(report_loop_s=out["loop_s"])

    def report_command() -> None:
        done = run_timed([sys.executable, "-m", "monitor", "report", "--logs", path,
                          "--format", "json"])
        if done.returncode != 0:
            raise RuntimeError(f"inferwatch report exited with {done.returncode}: "
                               f"{done.stderr.strip()}")
        _check(samples, "inferwatch report", json.loads(done.stdout), truth.success,
               truth.error, truth.input_tokens, truth.output_tokens)
        samples.record(report_s=done.wall_s)

    _rounds(config.repeat, [("bare", bare), ("decoders", decoders), ("report", report_inner),
                            ("command", report_command)], "inference")
    return {"lines": data.lines, "bytes": data.size}


def measure_api(config: ReportBenchConfig, samples: Samples) -> dict[str, Any]:
    data = ensure_api_dataset(config.api_lines, config.seed)
    warm_page_cache(data.path)
    path = str(data.path)

    def decoders() -> None:
        out = _inner(samples, "decoder loop", "decoders", path, "api_usage")
        samples.record(api_decoders_loop_s=out["loop_s"])

    def report_inner() -> None:
        out = _inner(samples, "report (in-process)", "report", path)
        truth = data.truth
        _check(samples, "report (api_usage)", out, truth.success, truth.error,
               truth.input_tokens, truth.output_tokens)
        if data.request_ids == data.distinct_ids:  # no repeated id: every line is charged
            expected = data.reference_spend(PriceTable.load())
            if expected is not None and Decimal(out["cost"]) != expected:
                samples.warn(f"report (api_usage): cost {out['cost']} differs from the "
                             f"generator's exact spend {expected}")
        samples.record(api_report_loop_s=out["loop_s"])

    _rounds(config.repeat, [("decoders", decoders), ("report", report_inner)], "api_usage")
    return {"lines": data.lines, "bytes": data.path.stat().st_size}


def build_ratios(med: dict[str, float]) -> list[Ratio]:
    g = med.get
    return [
        ratio("report loop vs bare orjson loop (lines/s)", g("bare_loop_s"), g("report_loop_s"),
              None, f"{g('report_loop_s', 0):.2f} s vs {g('bare_loop_s', 0):.2f} s"),
        ratio("report loop vs the daemon's decoders alone", g("decoders_loop_s"),
              g("report_loop_s"), None,
              f"{g('report_loop_s', 0):.2f} s vs {g('decoders_loop_s', 0):.2f} s"),
        ratio("`inferwatch report` vs bare loop, whole processes", g("bare_s"), g("report_s"),
              None, f"{g('report_s', 0):.2f} s vs {g('bare_s', 0):.2f} s"),
        ratio("api_usage: report loop (priced) vs decoders alone", g("api_decoders_loop_s"),
              g("api_report_loop_s"), None,
              f"{g('api_report_loop_s', 0):.2f} s vs {g('api_decoders_loop_s', 0):.2f} s"),
    ]


def profile_report(path: str, top: int) -> None:
    from monitor.report.command import analyse  # noqa: PLC0415

    print(f"\ncProfile of analyse() over {path}, top {top} by own time:", flush=True)
    profiler = cProfile.Profile()
    profiler.runcall(analyse, [path])
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def run_report_bench(config: ReportBenchConfig) -> dict[str, Any]:
    """The whole section, printed; its JSON document."""
    samples = Samples()
    inference = measure_inference(config, samples)
    api = measure_api(config, samples)
    med = medians(samples.values)
    ratios = build_ratios(med)
    print(f"\n`inferwatch report` over {inference['lines']:,} inference lines "
          f"({inference['bytes'] / 1e6:.0f} MB) and {api['lines']:,} api_usage lines, "
          f"medians of {config.repeat}:\n")
    rows = [(what, med[key], len(samples.values[key]), n_lines, n_bytes)
            for key, what, n_lines, n_bytes in (
                ("bare_loop_s", "bare orjson loop (loop only)", inference["lines"],
                 inference["bytes"]),
                ("decoders_loop_s", "daemon decoders alone (loop only)", inference["lines"],
                 inference["bytes"]),
                ("report_loop_s", "report, in-process (no imports)", inference["lines"],
                 inference["bytes"]),
                ("bare_s", "bare loop, whole process", inference["lines"], inference["bytes"]),
                ("report_s", "inferwatch report, whole process", inference["lines"],
                 inference["bytes"]),
                ("api_decoders_loop_s", "api_usage: decoders alone", api["lines"],
                 api["bytes"]),
                ("api_report_loop_s", "api_usage: report, in-process", api["lines"],
                 api["bytes"]))
            if key in med]
    print(format_absolutes(rows))
    print()
    print(format_ratios(ratios))
    if samples.warnings:
        print(f"\n{len(samples.warnings)} warning(s):")
        for warning in samples.warnings:
            print(f"  - {warning}")
    else:
        print("\nthe report's request and token counts equal the generator's truth")
    if config.profile:
        profile_report(str(ensure_dataset(config.lines, config.seed).path), config.profile)
    return {"inference": inference, "api_usage": api, "samples": samples.values,
            "ratios": [r.to_json() for r in ratios], "warnings": samples.warnings}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("report benchmark")
    group.add_argument("--report-log-lines", type=int, metavar="N",
                       help=f"lines in the inference log of the report section (default "
                            f"{DEFAULT_LINES:,}; --quick {QUICK_LINES:,})")


def config_from(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> ReportBenchConfig:
    quick = bool(args.quick)
    config = ReportBenchConfig(
        lines=args.report_log_lines or (QUICK_LINES if quick else DEFAULT_LINES),
        api_lines=QUICK_API_LINES if quick else DEFAULT_API_LINES,
        repeat=args.repeat or (1 if quick else DEFAULT_REPEAT), seed=args.seed,
        profile=args.profile)
    if min(config.lines, config.repeat) <= 0:
        parser.error("--report-log-lines and --repeat must be positive")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--inner"]:  # one contender, in this fresh process
        what, *rest = argv[1:]
        out = inner_decoders(*rest) if what == "decoders" else inner_report(*rest)
        print(json.dumps(out))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small files, once")
    parser.add_argument("--repeat", type=int, help=f"rounds (default {DEFAULT_REPEAT})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="afterwards, cProfile one report and print the top N functions")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    document = run_report_bench(config_from(args, parser))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
