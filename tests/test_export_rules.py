"""`inferwatch export rules`: one directory of Prometheus rule files (configured, bundled,
budget and SLO rules) that promtool and the daemon's own loader both accept, and in which every
aggregation and match keeps `instance`, so that a central Prometheus scraping several daemons
alerts per host.

tests/fixtures/export_rules/fleet_test.yml runs the export of a rich config against series of
two and three hosts, under `inferwatch test rules` and `promtool test rules`: an incident on
one host fires that host's alert only. The promtool checks skip without /usr/bin/promtool
unless INFERWATCH_REQUIRE_INTEGRATION=1, then fail.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROMTOOL, require_program

from monitor.cli import main
from monitor.promql import ast
from monitor.promql.keep_label import carrying_records, keep_label
from monitor.promql.parse import parse_expr
from monitor.promql.printer import to_promql

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "export_rules"
BUDGETS = [
    {"name": "daily", "period": "day", "limit": 100},
    {"name": "chat", "period": "month", "limit": 2000, "thresholds": [0.9, 1.2],
     "match": {"model": "deepseek-chat"}},
]


def run_promtool(*args: str) -> None:
    done = subprocess.run([str(require_program(PROMTOOL, "prometheus")), *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def export(tmp_path: Path, write_config: Callable[..., Path], settings: dict[str, Any],
           capsys: pytest.CaptureFixture[str]) -> list[Path]:
    config = write_config(tmp_path / "inferwatch.yml", settings)
    out = tmp_path / "export"
    assert main(["export", "rules", "--config", str(config), "--out", str(out)]) == 0
    return [Path(line) for line in capsys.readouterr().out.split()]


def rules_of(path: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def fleet_settings(tmp_path: Path) -> dict[str, Any]:
    return {"rule_files": [str(FIXTURES / "runbook.yml")],
            "slo_files": [str(ROOT / "rules" / "slos" / "inference.yml")],
            "cost": {"budgets": BUDGETS}}


@pytest.mark.integration
def test_export_of_a_rich_config_keeps_instance_and_passes_both_checkers(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    # A configured copy of the bundled host rules (same group name) replaces the bundled file.
    copies = tmp_path / "etc"
    copies.mkdir()
    shutil.copyfile(ROOT / "rules" / "host.yml", copies / "host.yml")
    settings = fleet_settings(tmp_path)
    settings["rule_files"] += [str(ROOT / "monitor" / "demo" / "rules.yml"),
                               str(copies / "*.yml")]
    written = export(tmp_path, write_config, settings, capsys)
    out = tmp_path / "export"
    assert [p.name for p in written] == ["runbook.yml", "rules.yml", "host.yml", "requests.yml",
                                         "gpu.yml", "inferwatch.yml", "cost.yml", "slos.yml"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".inferwatch-export", *(p.name for p in written)])
    # Files that already keep `instance` are copied as they are, comments included.
    for name in ("host.yml", "requests.yml", "gpu.yml", "inferwatch.yml"):
        assert (out / name).read_bytes() == (ROOT / "rules" / name).read_bytes(), name
    # The runbook's `sum(...) by (le)` and the SLI sums now keep instance.
    [high_latency, high_load] = rules_of(out / "runbook.yml")
    assert "sum by (instance, le)" in high_latency["expr"]
    assert high_load["expr"] == "rate(inferwatch_requests_total[1m]) > 1000"
    assert "sum by (instance) (rate(inferwatch_requests_total" in (out / "slos.yml").read_text()

    # Nothing is left to keep: rewriting any exported expression again changes nothing.
    every = [rule for path in written for rule in rules_of(path)]
    recorded = carrying_records((r["record"], parse_expr(r["expr"]), r.get("labels") or {})
                                for r in every if "record" in r)
    for rule in every:
        expr = parse_expr(rule["expr"])
        assert keep_label(expr, recorded=recorded).expr == expr, rule["expr"]

    # One threshold rule per configured budget and threshold, the bundled two for the others.
    thresholds = [(r["labels"].get("budget"), r["labels"]["threshold"])
                  for r in rules_of(out / "cost.yml") if r["alert"] == "BudgetThresholdCrossed"]
    assert thresholds == [("daily", "0.5"), ("daily", "0.8"), ("daily", "1.0"), ("chat", "0.9"),
                          ("chat", "1.2"), (None, "0.8"), (None, "1.0")]
    surges = [r for r in rules_of(out / "cost.yml") if r["alert"] == "SpendSurge"]
    assert [r["labels"]["budget"] for r in surges] == ["daily", "chat"]
    assert 'model="deepseek-chat"' in surges[1]["expr"]

    assert main(["check", "rules", *map(str, written)]) == 0
    run_promtool("check", "rules", *map(str, written))


def test_an_incident_on_one_host_fires_that_hosts_alert_only(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path, write_config, fleet_settings(tmp_path), capsys)
    test_file = tmp_path / "fleet_test.yml"
    shutil.copyfile(FIXTURES / "fleet_test.yml", test_file)
    assert main(["test", "rules", str(test_file)]) == 0, capsys.readouterr().out


@pytest.mark.integration
def test_promtool_agrees_that_an_incident_fires_that_hosts_alert_only(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    export(tmp_path, write_config, fleet_settings(tmp_path), capsys)
    test_file = tmp_path / "fleet_test.yml"
    shutil.copyfile(FIXTURES / "fleet_test.yml", test_file)
    run_promtool("test", "rules", str(test_file))


def _selector_names(expr: ast.Expr) -> list[str]:
    names: list[str] = []

    def note(selector: ast.VectorSelector) -> ast.VectorSelector:
        names.append(selector.name or "")
        return selector

    ast.map_selectors(expr, note)
    return names


@pytest.mark.integration
def test_bundled_rules_are_written_in_the_configured_namespace(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    written = export(tmp_path, write_config,
                     {"namespace": "deepseek", "cost": {"budgets": BUDGETS}}, capsys)
    assert [p.name for p in written] == ["requests.yml", "host.yml", "gpu.yml",
                                         "inferwatch.yml", "cost.yml"]
    names = {name for path in written for rule in rules_of(path)
             for name in _selector_names(parse_expr(rule["expr"]))}
    assert "deepseek_requests_total" in names
    assert "deepseek_budget_spent_ratio" in names
    assert not {name for name in names if name.startswith("inferwatch_")}
    assert main(["check", "rules", *map(str, written)]) == 0
    run_promtool("check", "rules", *map(str, written))


def test_a_bad_configured_rule_file_is_a_config_error_naming_it(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(\n")
    config = write_config(tmp_path / "inferwatch.yml", {"rule_files": [str(bad)]})
    assert main(["export", "rules", "--config", str(config),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:5: " in err
    assert "could not parse expression" in err
    assert not (tmp_path / "out").exists()


def test_a_file_the_last_export_wrote_and_this_one_does_not_is_deleted(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    first = export(tmp_path, write_config, {"rule_files": [str(FIXTURES / "runbook.yml")]},
                   capsys)
    out = tmp_path / "export"
    assert out / "runbook.yml" in first
    (out / "mine.yml").write_text("groups: []\n")  # the operator's own file
    second = export(tmp_path, write_config, {}, capsys)
    assert out / "runbook.yml" not in second
    assert not (out / "runbook.yml").exists()
    assert (out / "mine.yml").read_text() == "groups: []\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".inferwatch-export", "mine.yml", *(p.name for p in second)])


def test_export_refuses_a_file_as_the_output_directory(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "inferwatch.yml", {})
    (tmp_path / "taken").write_text("x")
    assert main(["export", "rules", "--config", str(config),
                 "--out", str(tmp_path / "taken")]) == 2
    assert "is not a directory" in capsys.readouterr().err


# Sides built from vector() are the same on every host: each host's series must match them.
VECTOR_SIDES = ["sum(x) / vector(2) > 3", "sum(x) or vector(0)",
                "vector(1) * on () group_left sum(x)"]


@pytest.mark.integration
def test_a_vector_side_matches_every_hosts_series_under_both_checkers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [{"record": f"r{i}", "expr": to_promql(keep_label(parse_expr(text)).expr)}
               for i, text in enumerate(VECTOR_SIDES)]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "g", "rules": records}]}))
    per_host = [{"labels": '{name}{{instance="a"}}', "value": 10},
                {"labels": '{name}{{instance="b"}}', "value": 4}]

    def expect(name: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {"expr": name, "eval_time": "2m", "exp_samples": [
            {"labels": s["labels"].format(name=name), "value": s["value"]} for s in samples]}

    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": 'x{instance="a"}', "values": "10x5"},
                         {"series": 'x{instance="b"}', "values": "4x5"}],
        "promql_expr_test": [
            expect("r0", [{"labels": '{name}{{instance="a"}}', "value": 5}]),
            expect("r1", per_host), expect("r2", per_host)]}]}
    test_file = tmp_path / "test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    assert main(["test", "rules", str(test_file)]) == 0, capsys.readouterr().out
    run_promtool("test", "rules", str(test_file))
