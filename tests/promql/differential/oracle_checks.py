"""Checks of the generated suite against promtool, shared by generate.py and the pytest.

`spec` parameters are the `cases` module (input series, intervals, sentinel); it is passed in
rather than imported so the pytest can load cases.py under a name of its own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import promtool_oracle as po
import yaml

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def suite_tests(path: Path, spec: Any) -> list[tuple[str, int]]:
    """(expr, time_ms) of every promql_expr_test in a suite file, sentinel excluded."""
    doc = load_yaml(path)
    out = []
    for group in doc["tests"]:
        for test in group["promql_expr_test"]:
            key = (test["expr"], po.parse_duration(str(test["eval_time"])))
            if key != (spec.SENTINEL_EXPR, po.parse_duration(spec.SENTINEL_TIME)):
                out.append(key)
    return out


def error_entries(path: Path) -> list[tuple[str, int, str]]:
    """(expr, time_ms, error) of every entry of errors.yml's `errors:`."""
    return [(e["expr"], po.parse_duration(str(t)), e["error"])
            for e in load_yaml(path)["errors"] for t in e["eval_times"]]


def nondeterministic_entries(path: Path) -> list[tuple[str, int, str]]:
    """(expr, time_ms, reason) of every entry of errors.yml's `nondeterministic:`."""
    return [(e["expr"], po.parse_duration(str(t)), e["reason"])
            for e in load_yaml(path)["nondeterministic"] for t in e["eval_times"]]


def promtool_passes(path: Path, promtool: Path = po.PROMTOOL) -> list[str]:
    proc = po.run_promtool([path], promtool)
    if proc.returncode == 0 and "SUCCESS" in proc.stdout:
        return []
    return [f"{path.name}: promtool exit {proc.returncode}:\n{proc.stderr[-4000:]}"]


def promtool_agrees_within_tolerance(path: Path, promtool: Path = po.PROMTOOL) -> list[str]:
    """promtool's answers to a suite/tolerant file equal the expectations under the rules of
    `inferwatch test rules`: same label sets, values within relative 1e-9, NaN equal to NaN.

    promtool itself compares exactly (NaN never equal), so it may report these tests failed.
    """
    proc = po.run_promtool([path], promtool)
    if proc.returncode == 0 and "SUCCESS" in proc.stdout:
        return []
    try:
        failures = po.parse_failures(proc.stderr)
    except ValueError as e:
        return [f"{path.name}: {e}"]
    if not failures:
        return [f"{path.name}: promtool exit {proc.returncode}:\n{proc.stderr[-4000:]}"]
    problems = []
    for f in failures:
        where = f"{path.name}: {f.expr!r} at {po.format_duration(f.time_ms)}"
        if f.error is not None:
            problems.append(f"{where}: error {f.error}")
            continue
        assert f.exp_text is not None and f.got is not None
        if not po.samples_match(po.parse_samples(f.exp_text), f.got):
            problems.append(f"{where}:\n  exp: {f.exp_text}\n  got: {f.got_text}")
    return problems


def promtool_gives_recorded_errors(errors_path: Path, spec: Any,
                                   promtool: Path = po.PROMTOOL) -> list[str]:
    """Each (expr, eval_time) of errors.yml still fails in promtool with the same message
    (compared with the series it names blanked out: see `po.normalise_error`)."""
    entries = error_entries(errors_path)
    if not entries:
        return []
    text = po.render_test_file(
        header=["oracle_checks.py: errors.yml"], group_name="errors", interval=spec.INTERVAL,
        evaluation_interval=spec.EVALUATION_INTERVAL, input_series=spec.INPUT_SERIES,
        checks=[po.Check(expr, t, (po.sentinel_sample(),)) for expr, t, _ in entries]
        + [po.Check(spec.SENTINEL_EXPR, po.parse_duration(spec.SENTINEL_TIME),
                    (po.sentinel_sample(),))])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "errors.yml"
        path.write_text(text, encoding="utf-8")
        proc = po.run_promtool([path], promtool)
    try:
        failures = po.parse_failures(proc.stderr)[:-1]
    except ValueError as e:
        return [f"errors.yml: {e}"]
    if len(failures) != len(entries):
        return [f"errors.yml: promtool reported {len(failures)} failures for "
                f"{len(entries)} entries"]
    problems = []
    for f, (expr, t, error) in zip(failures, entries, strict=True):
        if ((f.expr, f.time_ms) != (expr, t) or f.error is None
                or po.normalise_error(f.error) != po.normalise_error(error)):
            got = f.error if f.error is not None else f"no error, got {f.got_text}"
            problems.append(f"errors.yml: {expr!r} at {po.format_duration(t)}: recorded "
                            f"{error!r}, promtool now says {got!r}")
    return problems
