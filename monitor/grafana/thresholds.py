"""The alert thresholds the dashboards draw, and how to read them out of rule files.

A panel's threshold line sits where the bundled rule (rules/*.yml) fires, so what turns red
on a dashboard is what pages. The numbers live in `BUNDLED_THRESHOLDS` because the package
must generate the dashboards without the repository's `rules/` directory beside it (an
installed wheel has no copy); `rule_thresholds()` reads the same numbers out of rule files
by parsing each alert's PromQL, and the test suite checks that the two agree, so editing a
threshold in rules/ without regenerating the dashboards fails the tests.

The SLO panels take their burn-rate factors from the SLO code itself (`slo_burn_factors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import yaml

from monitor.promql import ast
from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.slo.model import BUDGET_ALERT_THRESHOLD, alert_windows

COMPARISONS: Final = frozenset({">", "<", ">=", "<=", "==", "!="})

# alert name -> the constants its expression compares with, in the order the file has them
# (BudgetThresholdCrossed is two rules: 80 % and 100 % of the budget).
BUNDLED_THRESHOLDS: Final[Mapping[str, tuple[float, ...]]] = {
    "HighLatencyP95": (15.0,),
    "HighErrorRatio": (0.05,),
    "SlowGeneration": (10.0,),
    "LongPrompts": (8192.0,),
    "TimeToFirstTokenHigh": (5.0,),
    "HostCpuHigh": (0.8,),
    "HostMemoryHigh": (0.85,),
    "HostDiskFull": (0.9,),
    "HealthProbeSlow": (1.0, 1.0),
    "GpuMemoryHigh": (0.9,),
    "GpuTemperatureHigh": (85.0,),
    "BudgetThresholdCrossed": (0.8, 1.0),
    "IngestLagging": (50.0 * 1024 * 1024,),
    "MalformedLines": (0.01,),
    "NotificationQueueBacklog": (100.0,),
}


def threshold(alert: str, index: int = 0) -> float:
    """The `index`-th constant the bundled alert `alert` compares with."""
    return BUNDLED_THRESHOLDS[alert][index]


def _constant(expr: ast.Expr) -> float | None:
    """The value of a constant expression (numbers and arithmetic), else None."""
    if isinstance(expr, ast.NumberLiteral):
        return expr.value
    if isinstance(expr, ast.ParenExpr):
        return _constant(expr.expr)
    if isinstance(expr, ast.UnaryExpr):
        inner = _constant(expr.expr)
        return None if inner is None else -inner
    if isinstance(expr, ast.BinaryExpr) and expr.op in ("+", "-", "*", "/"):
        lhs, rhs = _constant(expr.lhs), _constant(expr.rhs)
        if lhs is None or rhs is None or (expr.op == "/" and rhs == 0):
            return None
        return {"+": lhs + rhs, "-": lhs - rhs, "*": lhs * rhs,
                "/": lhs / rhs if rhs else 0.0}[expr.op]
    return None


def _children(expr: ast.Expr) -> Iterable[ast.Expr]:
    if isinstance(expr, ast.BinaryExpr):
        return (expr.lhs, expr.rhs)
    if isinstance(expr, ast.Call):
        return expr.args
    if isinstance(expr, ast.AggregateExpr):
        return (expr.expr,)
    if isinstance(expr, ast.ParenExpr | ast.UnaryExpr | ast.SubqueryExpr):
        return (expr.expr,)
    return ()


def comparison_constants(expr: ast.Expr) -> list[float]:
    """The constants compared with anywhere in `expr`, outermost and leftmost first."""
    found: list[float] = []
    if isinstance(expr, ast.BinaryExpr) and expr.op in COMPARISONS:
        for side in (expr.rhs, expr.lhs):
            value = _constant(side)
            if value is not None:
                found.append(value)
                break
    for child in _children(expr):
        found.extend(comparison_constants(child))
    return found


def rule_thresholds(paths: Iterable[Path]) -> dict[str, tuple[float, ...]]:
    """alert name -> the constants its rules compare with, read from Prometheus rule files.

    Files or rules that do not parse are skipped: this reads thresholds, it does not
    validate (`inferwatch check rules` does).
    """
    out: dict[str, list[float]] = {}
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        groups = document.get("groups") if isinstance(document, dict) else None
        for group in groups if isinstance(groups, list) else ():
            rules = group.get("rules") if isinstance(group, dict) else None
            for rule in rules if isinstance(rules, list) else ():
                if not isinstance(rule, dict) or not isinstance(rule.get("alert"), str):
                    continue
                try:
                    expr = parse_expr(str(rule.get("expr", "")))
                except PromQLParseError:
                    continue
                out.setdefault(rule["alert"], []).extend(comparison_constants(expr))
    return {name: tuple(values) for name, values in out.items() if values}


def slo_burn_factors(period_days: int = 30) -> dict[str, float]:
    """The multiwindow alerts' burn-rate factors for an SLO period (14.4, 6, 3, 1 for 30 d)."""
    windows = alert_windows(period_days * 86400)
    return {"page (1h/5m)": windows.page_quick.factor,
            "page (6h/30m)": windows.page_slow.factor,
            "ticket (1d/2h)": windows.ticket_quick.factor,
            "ticket (3d/6h)": windows.ticket_slow.factor}


HALF_BUDGET_REMAINING: Final = BUDGET_ALERT_THRESHOLD
