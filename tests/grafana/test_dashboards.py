"""The generated Grafana dashboards: committed copies current, queries well-formed, thresholds
equal to the bundled rules', output deterministic, and `inferwatch export dashboards`.

Whether every query returns data, and the same data from Prometheus and from the daemon, is
tests/integration/test_dashboards_prometheus.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.grafana import (
    BUILDERS,
    REGENERATE,
    build_dashboards,
    rendered,
    stale_dashboards,
    write_dashboards,
)
from monitor.grafana.model import Dashboard, Panel, Target
from monitor.grafana.thresholds import BUNDLED_THRESHOLDS, rule_thresholds
from monitor.metrics import families as fam
from monitor.metrics.store import DROPPED_SPEC, FamilySpec, Kind
from monitor.promql import ast
from monitor.promql.parse import parse_expr
from monitor.tsdb.store import REGEX

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "dashboards"
# What Grafana puts in for its variables, for parsing only.
SUBSTITUTES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def exported_names(namespace: str = "inferwatch") -> set[str]:
    """Every sample name the daemon's families expose on /metrics."""
    specs = [v for v in vars(fam).values() if isinstance(v, FamilySpec)] + [DROPPED_SPEC]
    names = set()
    for spec in specs:
        base = f"{namespace}_{spec.name}"
        if spec.kind is Kind.COUNTER:
            names.add(base + "_total")
        elif spec.kind is Kind.HISTOGRAM:
            names.update(base + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(base)
    return names


def substituted(expr: str) -> str:
    for variable, value in SUBSTITUTES.items():
        expr = expr.replace(variable, value)
    return expr


def selectors(expr: ast.Expr) -> Iterator[ast.VectorSelector]:
    if isinstance(expr, ast.VectorSelector):
        yield expr
        return
    if isinstance(expr, ast.MatrixSelector):
        yield expr.selector
        return
    children: tuple[Any, ...] = ()
    if isinstance(expr, ast.BinaryExpr):
        children = (expr.lhs, expr.rhs)
    elif isinstance(expr, ast.Call):
        children = expr.args
    elif isinstance(expr, ast.AggregateExpr | ast.ParenExpr | ast.UnaryExpr | ast.SubqueryExpr):
        children = (expr.expr,)
    for child in children:
        yield from selectors(child)


def all_targets() -> list[tuple[str, Panel, Target]]:
    return [(name, panel, target) for name, dashboard in build_dashboards().items()
            for panel, target in dashboard.targets()]


def test_committed_dashboards_are_what_the_generator_writes() -> None:
    stale = stale_dashboards(DASHBOARDS_DIR)
    assert not stale, (f"dashboards/ is out of date ({', '.join(stale)}): regenerate with "
                       f"`{REGENERATE}` (or `.venv/bin/python -m monitor export dashboards "
                       f"--out dashboards`) and commit the result")


def test_rendering_is_deterministic_and_valid_json() -> None:
    first, second = rendered(), rendered()
    assert first == second
    for text in first.values():
        assert text.endswith("}\n")
        assert json.loads(text)


def test_five_dashboards_with_stable_unique_uids_and_ids() -> None:
    documents = {name: json.loads(text) for name, text in rendered().items()}
    assert list(documents) == ["llm-service.json", "cost.json", "gpu-host.json", "slos.json",
                               "inferwatch.json"]
    uids = [doc["uid"] for doc in documents.values()]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"inferwatch-[a-z-]+", uid) for uid in uids)
    for doc in documents.values():
        ids = [panel["id"] for panel in doc["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for panel in doc["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24


def test_every_dashboard_has_the_datasource_and_instance_variables() -> None:
    for text in rendered().values():
        doc = json.loads(text)
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        instance = variables["instance"]
        assert instance["type"] == "query"
        assert instance["includeAll"] is True
        # `.*` also matches the empty label: the daemon's own series have no instance.
        assert instance["allValue"] == ".*"
        assert instance["definition"] == "label_values(inferwatch_build_info, instance)"
        for panel in doc["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize(("dashboard", "panel", "target"), all_targets(),
                         ids=lambda v: getattr(v, "title", None) or getattr(v, "expr", v)[:40])
def test_every_query_parses_filters_on_instance_and_reads_exported_series(
        dashboard: str, panel: Panel, target: Target) -> None:
    tree = parse_expr(substituted(target.expr))
    found = list(selectors(tree))
    assert found, f"{panel.title}: no selector"
    known = exported_names()
    for selector in found:
        matchers = {(m.name, m.op, m.value) for m in selector.matchers}
        assert ("instance", REGEX, "$instance") in matchers, \
            f"{panel.title}: {selector.name} does not filter on $instance"
        assert selector.name in known, f"{panel.title}: {selector.name} is not exported"


def test_panel_thresholds_are_the_bundled_rules_thresholds() -> None:
    from_rules = rule_thresholds(sorted((REPO / "rules").glob("*.yml")))
    for alert, values in BUNDLED_THRESHOLDS.items():
        assert from_rules.get(alert) == values, (
            f"{alert}: rules/ compares with {from_rules.get(alert)}, the dashboards draw "
            f"{values}; update BUNDLED_THRESHOLDS in monitor/grafana/thresholds.py and "
            f"regenerate with `{REGENERATE}`")


def test_threshold_lines_appear_in_the_dashboards() -> None:
    by_title = {panel.title: panel for dashboard in build_dashboards().values()
                for panel in dashboard.panels()}
    steps = {title: [s.value for s in panel.thresholds] for title, panel in by_title.items()}
    assert 15.0 in steps["p95 latency by model"]
    assert 0.05 in steps["Error ratio by class"]
    assert 0.9 in steps["GPU memory used"]
    assert steps["Budget spent"][1:] == [0.8, 1.0]
    assert 50 * 1024 * 1024 in steps["Ingest lag"]
    assert {14.4, 6.0, 3.0, 1.0} <= set(steps["Burn rate by window"])


def test_export_dashboards_cli_writes_the_files(
        tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    out = tmp_path / "out"
    done = run_cli("export", "dashboards", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(BUILDERS)
    assert stale_dashboards(out) == []
    assert done.stdout.split() == [str(out / name) for name in BUILDERS]


def test_export_dashboards_onto_a_file_is_a_usage_error(
        tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    done = run_cli("export", "dashboards", "--out", str(target))
    assert done.returncode == 2
    assert "not a directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_stale_dashboards_names_changed_missing_and_extra_files(tmp_path: Path) -> None:
    write_dashboards(tmp_path)
    assert stale_dashboards(tmp_path) == []
    (tmp_path / "cost.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "slos.json").unlink()
    (tmp_path / "old.json").write_text("{}\n", encoding="utf-8")
    assert stale_dashboards(tmp_path) == ["cost.json", "slos.json", "old.json"]


def test_dashboard_rejects_a_panel_without_targets() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        Panel("empty", "stat", ())
    assert isinstance(next(iter(build_dashboards().values())), Dashboard)
