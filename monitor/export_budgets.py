"""The budget rules of `export rules`: the bundled `rules/cost.yml` made to say, for the
configured `cost.budgets`, what the daemon's own budget alerts say (monitor/cost/budgets.py).

The bundled file cannot know the budgets, so it alerts at 0.8 and 1.0 for every budget and
judges a surge per currency over all spend. With budgets configured, the cost group becomes:

- `BudgetThresholdCrossed` once per configured threshold of each budget, with the daemon's
  labels (`threshold` as the config writes it, `severity` page from 1 up, else ticket);
- the bundled 0.8 / 1.0 rules kept for budgets the config does not name
  (`budget!="..."` for each configured one), so hosts with other budgets still alert;
- `BudgetForecastExceeded` as bundled (it is per budget already);
- `SpendSurge` per budget over the `cost_total` series its `match` selects (`model`,
  `source`; `cost_total` has no `user` label, so a budget matched by user has no surge rule),
  with the daemon's label `budget`, instead of the bundled per-currency one.

The `budget_*` and `cost_total` series are the ones /metrics exposes (SPEC §6): budget_spent,
budget_limit and budget_forecast by {budget, currency}, budget_spent_ratio by {budget}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from monitor.alerting.rulefmt import RuleGroupSpec, RuleNode
from monitor.config import BudgetConfig, CostConfig
from monitor.cost.budgets import (
    SURGE_ALERT,
    SURGE_FACTOR,
    SURGE_MIN_SHARE,
    THRESHOLD_ALERT,
    severity_of,
)
from monitor.promql import ast
from monitor.promql.goconv import format_float_g, go_quote
from monitor.promql.parse import parse_expr
from monitor.promql.printer import to_promql
from monitor.tsdb.store import NOT_EQUAL, Matcher


def budget_groups(bundled: Sequence[RuleGroupSpec], cost: CostConfig,
                  namespace: str) -> list[RuleGroupSpec]:
    """The bundled cost groups (metric names already in `namespace`) for `cost.budgets`;
    unchanged when no budget is configured."""
    if not cost.budgets:
        return list(bundled)
    return [replace(group, rules=tuple(_rules(group.rules, cost, namespace)))
            for group in bundled]


def _rules(bundled: Sequence[RuleNode], cost: CostConfig, namespace: str) -> list[RuleNode]:
    out: list[RuleNode] = []
    thresholds_done = surge_done = False
    for rule in bundled:
        if rule.kind == "alert" and rule.name == THRESHOLD_ALERT:
            if not thresholds_done:
                out.extend(_threshold_rule(rule, budget, threshold, namespace)
                           for budget in cost.budgets for threshold in budget.thresholds)
                thresholds_done = True
            out.append(_for_other_budgets(rule, cost.budgets, namespace))
        elif rule.kind == "alert" and rule.name == SURGE_ALERT:
            if not surge_done:
                out.extend(_surge_rule(rule, budget, cost.currency, namespace)
                           for budget in cost.budgets if budget.match.user is None)
                surge_done = True
        else:
            out.append(rule)
    return out


def _threshold_rule(template: RuleNode, budget: BudgetConfig, threshold: Decimal,
                    namespace: str) -> RuleNode:
    selector = f"{namespace}_budget_spent_ratio{{budget={go_quote(budget.name)}}}"
    text = str(threshold)  # the daemon's `threshold` label: the config's decimal as written
    expr = (f'label_replace({selector} >= {format_float_g(float(threshold))}, "threshold", '
            f'{go_quote(text)}, "", "")')
    annotations = {
        **template.annotations,
        "description": "Budget {{ $labels.budget }} has spent {{ $value | humanizePercentage }} "
                       f"of its limit in its current period, crossing its {text} threshold. "
                       "The alert stays active until the period ends.",
    }
    # `budget` and `threshold` are static labels too (the expression gives both), so that
    # promtool's lint does not take the rules of one severity for duplicates.
    labels = {"severity": severity_of(threshold), "budget": budget.name, "threshold": text}
    return RuleNode("alert", THRESHOLD_ALERT, expr, labels=labels, annotations=annotations)


def _for_other_budgets(rule: RuleNode, budgets: Sequence[BudgetConfig],
                       namespace: str) -> RuleNode:
    ratio = f"{namespace}_budget_spent_ratio"
    others = tuple(Matcher.of("budget", NOT_EQUAL, b.name) for b in budgets)

    def exclude(selector: ast.VectorSelector) -> ast.VectorSelector:
        if selector.name != ratio:
            return selector
        return replace(selector, matchers=selector.matchers + others)

    expr = ast.map_selectors(parse_expr(rule.expr), exclude)
    threshold = _threshold_label(expr)
    labels = rule.labels if threshold is None else {**rule.labels, "threshold": threshold}
    return replace(rule, expr=to_promql(expr), labels=labels)


def _threshold_label(expr: ast.Expr) -> str | None:
    """The `threshold` that a bundled rule's label_replace sets, if it is one."""
    expr = ast.unwrap_parens(expr)
    if isinstance(expr, ast.Call) and expr.func == "label_replace":
        target, value = (ast.unwrap_parens(arg) for arg in expr.args[1:3])
        if isinstance(target, ast.StringLiteral) and target.value == "threshold" \
                and isinstance(value, ast.StringLiteral):
            return value.value
    return None


def _surge_rule(template: RuleNode, budget: BudgetConfig, currency: str,
                namespace: str) -> RuleNode:
    matchers = {"currency": currency}
    if budget.match.model is not None:
        matchers["model"] = budget.match.model
    if budget.match.source is not None:
        matchers["source"] = budget.match.source
    selector = (f"{namespace}_cost_total{{"
                + ", ".join(f"{k}={go_quote(v)}" for k, v in sorted(matchers.items())) + "}")
    by = "sum by (instance, currency)"
    last_hour = f"{by} (increase({selector}[1h]))"
    floor = format_float_g(float(SURGE_MIN_SHARE * budget.limit))
    expr = (f"{last_hour}\n  > {SURGE_FACTOR} * {by} (increase({selector}[1d] offset 1h)) / 24\n"
            f"and on (instance, currency)\n{last_hour} >= {floor}\n"
            f"and on (instance, currency)\n{by} ({selector} offset 7h)")
    return RuleNode("alert", SURGE_ALERT, expr, template.for_, template.keep_firing_for,
                    labels={**template.labels, "budget": budget.name},
                    annotations=dict(template.annotations))
