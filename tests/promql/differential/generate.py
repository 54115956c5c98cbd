"""Regenerate the differential suite from `cases.py`, with promtool as the oracle.

    .venv/bin/python tests/promql/differential/generate.py [--promtool PATH] [--runs N]

1. Writes one promtool test file holding every (expression, eval_time) of `cases.py`, each
   expecting a sample that cannot exist, runs `promtool test rules` on it N times (in
   parallel) and reads promtool's own answer from the "got:" line of each failure (or its
   "err:" text). Several runs, because promtool creates the input series in Go map order, so
   the order in which an aggregation meets its input changes between runs (see README.md).
2. Sorts every check into one of:
   - `suite/NN_<area>.yml`: answers that are exact and reproducible; plain promtool test
     files that `promtool test rules` passes.
   - `suite/tolerant/NN_<area>.yml`: answers holding a NaN (promtool 2.42 compares with
     reflect.DeepEqual, where NaN != NaN, so it can never pass them) or coming out of a float
     accumulation whose order promtool randomises (sum, avg, stddev, stdvar; written rounded
     to a 40-bit mantissa, as no single exact answer exists): promtool is checked on
     them with the comparison of `inferwatch test rules` (relative 1e-9, NaN equals NaN).
   - `errors.yml` `errors:`: what promtool rejects or fails to evaluate, with its message
     (label sets and series lists blanked out: which series it names varies between runs).
   - `errors.yml` `nondeterministic:`: topk/bottomk with a tie at the cut (Prometheus keeps
     whichever series it meets first) and any other answer whose label sets change between
     runs. No expectation can be written for these.
3. Re-checks what it wrote against promtool (oracle_checks.py), and prints counts and timings.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cases
import oracle_checks
import promtool_oracle as po

HERE = Path(__file__).resolve().parent
SUITE = HERE / "suite"
TOLERANT = SUITE / "tolerant"
ERRORS = HERE / "errors.yml"

# Float accumulations over the series of a vector: their result depends on the order of the
# input series, which promtool randomises. (`sum_over_time` & co. run in time order.)
ORDER_SENSITIVE = re.compile(r"\b(?:sum|avg|stddev|stdvar)\s*(?:\(|by\b|without\b)")
# Mantissa bits kept of the answers of order-sensitive expressions (float64 has 53).
ROUND_BITS = 40
TOPK = re.compile(r"^(?P<op>topk|bottomk)(?: (?P<g1>by|without) \((?P<n1>[^)]*)\) )?"
                  r"\((?P<k>.+?), (?P<arg>.+?)\)(?: (?P<g2>by|without) \((?P<n2>[^)]*)\))?$")

Key = tuple[str, int]


def ask_promtool(promtool: Path, wanted: Sequence[Key], runs: int) -> list[list[po.Failure]]:
    """promtool's answer for every (expr, time_ms), in order, from each of `runs` runs."""
    checks = [po.Check(expr, t, (po.sentinel_sample(),)) for expr, t in wanted]
    text = po.render_test_file(header=["generate.py: asking promtool"], group_name="ask",
                               interval=cases.INTERVAL,
                               evaluation_interval=cases.EVALUATION_INTERVAL,
                               input_series=cases.INPUT_SERIES, checks=checks)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ask.yml"
        path.write_text(text, encoding="utf-8")
        with ThreadPoolExecutor(max_workers=runs) as pool:
            procs = list(pool.map(lambda _: po.run_promtool([path], promtool), range(runs)))
    results = []
    for proc in procs:
        failures = po.parse_failures(proc.stderr)
        if len(failures) != len(wanted):
            raise SystemExit(f"promtool reported {len(failures)} failures for {len(wanted)} "
                             f"tests (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        for failure, (expr, t) in zip(failures, wanted, strict=True):
            if (failure.expr, failure.time_ms) != (expr, t):
                raise SystemExit(f"promtool's report is out of step: expected {expr!r} at "
                                 f"{po.format_duration(t)}, read {failure.expr!r} at "
                                 f"{po.format_duration(failure.time_ms)}")
        results.append(failures)
    return results


def topk_aux(expr: str) -> list[str]:
    """The expressions whose answers tell whether a topk/bottomk has a tie at its cut."""
    m = TOPK.match(expr)
    if m is None:
        return []
    k_expr = m.group("k")
    return [m.group("arg")] + ([] if re.fullmatch(r"[0-9.]+", k_expr) else [k_expr])


def topk_tie(expr: str, t: int, answers: dict[Key, po.Failure]) -> str | None:
    """Why `expr` at `t` has no single answer (a tie at the cut), or None."""
    m = TOPK.match(expr)
    if m is None:
        return None
    op, k_expr, arg = m.group("op", "k", "arg")
    grouping, names = m.group("g1", "n1") if m.group("g1") else m.group("g2", "n2")
    if re.fullmatch(r"[0-9.]+", k_expr):
        k_value = float(k_expr)
    else:
        k_answer = answers[k_expr, t].got
        if not k_answer:
            return None
        k_value = k_answer[0].value
    arg_answer = answers[arg, t].got
    if arg_answer is None or math.isnan(k_value) or k_value < 1:
        return None
    k = int(k_value)
    listed = {n.strip() for n in (names or "").split(",") if n.strip()}
    groups: dict[tuple[tuple[str, str], ...], list[float]] = defaultdict(list)
    for s in arg_answer:
        if grouping == "by":
            key = tuple((n, v) for n, v in s.labels if n in listed)
        elif grouping == "without":
            key = tuple((n, v) for n, v in s.labels if n not in listed and n != "__name__")
        else:
            key = ()
        groups[key].append(s.value)
    for values in groups.values():
        if len(values) <= k:
            continue
        # topk ranks NaN below everything, bottomk above everything.
        nan_rank = -math.inf if op == "topk" else math.inf
        ranked = sorted(values, key=lambda v: nan_rank if math.isnan(v) else v,
                        reverse=op == "topk")
        a, b = ranked[k - 1], ranked[k]
        if a == b or (math.isnan(a) and math.isnan(b)):
            return (f"{op} tie at the cut (k={k}, value {a}): Prometheus keeps the series it "
                    "meets first, and promtool's series order is random")
    return None


def header(area: cases.Area, tolerant: bool) -> list[str]:
    lines = [
        "Generated by tests/promql/differential/generate.py from cases.py: do not edit.",
        f"Area: {area.name} ({area.about}).",
        "Every exp_samples is promtool 2.42's own answer (`promtool test rules` output).",
        "Sample order is not checked (promtool sorts both sides by labels).",
    ]
    if tolerant:
        lines += [
            "Every answer here holds a NaN (promtool 2.42 compares with reflect.DeepEqual, where",
            "NaN != NaN, so it reports such a test as failed with identical exp and got) or",
            "comes from a sum/avg/stddev/stdvar whose last bits depend on the order promtool",
            "happens to create the input series in (those values are written rounded to a",
            "40-bit mantissa). test_differential.py checks promtool on them with the",
            "comparison of `inferwatch test rules`: relative 1e-9, NaN equals NaN.",
        ]
    return lines


def sentinel_check(answer: po.Failure) -> po.Check:
    assert answer.got is not None
    return po.Check(
        cases.SENTINEL_EXPR, answer.time_ms, answer.got,
        comment="Sentinel: promtool only loads input samples up to the largest eval_time of a\n"
                "test group, so this test makes every file see all of the input series.")


class Sorted:
    def __init__(self) -> None:
        self.strict: dict[str, list[po.Check]] = defaultdict(list)
        self.tolerant: dict[str, list[po.Check]] = defaultdict(list)
        self.errors: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        self.nondeterministic: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        self.unstable_caught: list[str] = []


def rounded(samples: tuple[po.Sample, ...]) -> tuple[po.Sample, ...]:
    """Values with the mantissa rounded to ROUND_BITS bits (relative change < 1e-12, well
    inside the 1e-9 tolerance). Binary, not decimal: an exact answer such as 10048.90234375
    stays as it is, where decimal rounding would put it on a tie that noise flips."""
    out = []
    for s in samples:
        v = s.value
        if math.isfinite(v):
            mantissa, exponent = math.frexp(v)
            with contextlib.suppress(OverflowError):  # near float64's maximum: keep it
                v = math.ldexp(round(mantissa * 2**ROUND_BITS) / 2**ROUND_BITS, exponent)
        out.append(po.Sample(s.labels, v, s.text))
    return tuple(out)


def classify(runs: list[dict[Key, po.Failure]]) -> Sorted:
    first = runs[0]
    out = Sorted()
    for area in cases.AREAS:
        for expr in area.exprs:
            for t in map(po.parse_duration, area.times):
                answers = [run[expr, t] for run in runs]
                a = answers[0]
                if a.error is not None:
                    texts = {po.normalise_error(x.error or f"no error: {x.got_text}")
                             for x in answers}
                    if len(texts) > 1:
                        out.nondeterministic[area.name, expr,
                                             "promtool errs only in some runs"].append(t)
                    else:
                        out.errors[area.name, expr, texts.pop()].append(t)
                    continue
                assert a.got is not None
                tie = topk_tie(expr, t, first)
                if tie is None and not all(x.got is not None and po.samples_match(a.got, x.got)
                                           for x in answers):
                    tie = ("promtool's answers differ between runs beyond relative 1e-9 "
                           "(they depend on the order it meets the series in)")
                if tie is not None:
                    out.nondeterministic[area.name, expr, tie].append(t)
                    continue
                varies = len({x.got_text for x in answers}) > 1
                if varies and not ORDER_SENSITIVE.search(expr):
                    out.unstable_caught.append(f"{expr!r} at {po.format_duration(t)}")
                if ORDER_SENSITIVE.search(expr) or varies:
                    # No single exact answer exists: write it rounded, so that regenerating
                    # does not rewrite it with other last bits.
                    out.tolerant[area.name].append(po.Check(expr, t, rounded(a.got)))
                elif po.has_nan(a.got):
                    out.tolerant[area.name].append(po.Check(expr, t, a.got))
                else:
                    out.strict[area.name].append(po.Check(expr, t, a.got))
    return out


def write_suite(result: Sorted, sentinel: po.Failure) -> tuple[list[Path], list[Path]]:
    for old in [*SUITE.glob("*.yml"), *TOLERANT.glob("*.yml")]:
        old.unlink()
    TOLERANT.mkdir(parents=True, exist_ok=True)
    strict_files: list[Path] = []
    tolerant_files: list[Path] = []
    for index, area in enumerate(cases.AREAS, start=1):
        for checks, directory, out in ((result.strict[area.name], SUITE, strict_files),
                                       (result.tolerant[area.name], TOLERANT, tolerant_files)):
            if not checks:
                continue
            path = directory / f"{index:02d}_{area.name}.yml"
            path.write_text(po.render_test_file(
                header=header(area, directory is TOLERANT), group_name=area.name,
                interval=cases.INTERVAL, evaluation_interval=cases.EVALUATION_INTERVAL,
                input_series=cases.INPUT_SERIES, checks=[*checks, sentinel_check(sentinel)]),
                encoding="utf-8")
            out.append(path)
    lines = [
        "# Generated by tests/promql/differential/generate.py from cases.py: do not edit.",
        "# The input series are cases.py's. Checks that cannot be promtool expectations:",
        "# errors: (expression, eval_time) pairs that promtool 2.42 rejects (parse errors) or",
        "#   fails to evaluate, with promtool's message (a promtool test of them can never",
        "#   pass). Label sets and series lists in a message are blanked out ({…}, […]):",
        "#   which series a matching error names varies between promtool runs.",
        "# nondeterministic: pairs whose answer Prometheus leaves to the order it meets the",
        "#   input series in, which promtool randomises.",
    ]
    for section, entries, field in (("errors", result.errors, "error"),
                                    ("nondeterministic", result.nondeterministic, "reason")):
        lines.append(f"{section}:" if entries else f"{section}: []")
        for (area_name, expr, text), times in entries.items():
            lines += [f"  - area: {area_name}", f"    expr: {po.yaml_str(expr)}",
                      f"    eval_times: [{', '.join(map(po.format_duration, times))}]",
                      f"    {field}: {po.yaml_str(text)}"]
    ERRORS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return strict_files, tolerant_files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--promtool", type=Path, default=po.PROMTOOL)
    parser.add_argument("--runs", type=int, default=16,
                        help="promtool runs compared to find order-dependent answers")
    args = parser.parse_args(argv)
    started = time.monotonic()

    all_checks = cases.all_checks()
    wanted: dict[Key, None] = {}
    for _, expr, t in all_checks:
        wanted[expr, po.parse_duration(t)] = None
    for _, expr, t in all_checks:
        for aux in topk_aux(expr):
            wanted.setdefault((aux, po.parse_duration(t)), None)
    sentinel_key = (cases.SENTINEL_EXPR, po.parse_duration(cases.SENTINEL_TIME))
    wanted[sentinel_key] = None
    keys = list(wanted)
    runs = [{(f.expr, f.time_ms): f for f in failures}
            for failures in ask_promtool(args.promtool, keys, args.runs)]
    asked = time.monotonic()
    result = classify(runs)
    strict_files, tolerant_files = write_suite(result, runs[0][sentinel_key])

    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for found in pool.map(lambda p: oracle_checks.promtool_passes(p, args.promtool),
                              strict_files):
            problems += found
        for found in pool.map(
                lambda p: oracle_checks.promtool_agrees_within_tolerance(p, args.promtool),
                tolerant_files):
            problems += found
    problems += oracle_checks.promtool_gives_recorded_errors(ERRORS, cases, args.promtool)
    done = time.monotonic()
    if problems:
        print("the generated suite does not check out against promtool:", *problems,
              sep="\n  ", file=sys.stderr)
        return 1

    n_strict = sum(map(len, result.strict.values()))
    n_tolerant = sum(map(len, result.tolerant.values()))
    n_nan = sum(po.has_nan(c.samples or ()) for cs in result.tolerant.values() for c in cs)
    n_errors = sum(map(len, result.errors.values()))
    n_nondet = sum(map(len, result.nondeterministic.values()))
    exprs = {expr for _, expr, _ in all_checks}
    print(f"{len(exprs)} expressions in {len(cases.AREAS)} areas, {len(all_checks)} "
          f"(expression, eval_time) checks:")
    print(f"  {n_strict} exact in suite/ ({len(strict_files)} files)")
    print(f"  {n_tolerant} in suite/tolerant/ ({len(tolerant_files)} files; {n_nan} with NaN)")
    print(f"  {n_errors} promtool errors and {n_nondet} nondeterministic in errors.yml")
    for line in result.unstable_caught:
        print(f"  note: answer varied between runs, moved to suite/tolerant/: {line}")
    print(f"promtool answered {len(keys)} queries x {args.runs} runs in {asked - started:.1f}s; "
          f"written and re-verified in {done - asked:.1f}s; total {done - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
