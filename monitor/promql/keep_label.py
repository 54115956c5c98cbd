"""Rewriting an expression so that it keeps one label (a fleet's `instance`) all the way through.

Owns `keep_label`. A rule written for one daemon aggregates over everything it sees, and on
one host that is one host. A central Prometheus that scrapes many daemons adds `instance` to
every series; there the same `sum(...)` would merge the hosts, and an `on (budget)` match
would find several hosts' series on each side. Keeping the label everywhere gives, per
instance, what each daemon computes for itself:

- every aggregation over a series that carries the label keeps it: `by (...)` gets it added
  (a plain `sum(x)` becomes `sum by (instance) (x)`), `without (...)` gets it removed;
- every vector match between two sides that both carry it matches on it: `on (...)` gets it
  added, `ignoring (...)` gets it removed, and it leaves `group_left/right (...)`, where
  Prometheus refuses it beside `on`.

Whether an expression's result can carry the label is worked out bottom-up: scraped series
carry it, `vector()`, `time()` and numbers do not, a recorded series carries it when the rule
that records it does (`recorded`, from `carrying_records`), a one-to-one match with `on`
keeps only the `on` labels (as Prometheus's resultMetric does). A side that cannot carry the
label (built from `vector()`, the same on every host) must match every host's series: the
label is ignored and the host side becomes the "many" side (`sum(x) / vector(2)` becomes
`sum by (instance) (x) / ignoring (instance) group_left vector(2)`); Sloth's `... / on
(sloth_id) group_left slo:error_budget:ratio{...}` (a `vector()` record) is already that and
stays as it is. `scalar()` of a per-host sum is NaN once two hosts report: not fixable.

On a single daemon the label does not exist, so the rewritten expression gives exactly what
the original gives. What it cannot fix: `absent()` in a fleet still says "no host has it".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from monitor.promql import ast
from monitor.tsdb.store import EQUAL

INSTANCE = "instance"

# Functions whose result has no labels from their arguments (or has no arguments).
_LABELLESS = frozenset({"vector", "time", "pi", "scalar", "absent", "absent_over_time"})
_LABEL_WRITERS = frozenset({"label_replace", "label_join"})


@dataclass(frozen=True)
class Kept:
    """A rewritten expression and whether its result series may carry the label."""

    expr: ast.Expr
    carries: bool


def keep_label(expr: ast.Expr, label: str = INSTANCE,
               recorded: Mapping[str, bool] | None = None) -> Kept:
    """`expr` rewritten to keep `label`; `recorded` says, for each series name that a
    recording rule writes, whether it carries the label (names not in it are scraped)."""
    return _Rewriter(label, recorded or {}).rewrite(expr)


def carrying_records(rules: Iterable[tuple[str, ast.Expr, Mapping[str, str]]],
                     label: str = INSTANCE) -> dict[str, bool]:
    """For (record name, expression, rule labels) of every recording rule: whether the
    series it records carry `label` once rewritten. A fixed point, since records read
    records."""
    rules = list(rules)
    recorded = {name: False for name, _, _ in rules}
    changed = True
    while changed:
        changed = False
        for name, expr, labels in rules:
            if recorded[name]:
                continue
            if label in labels or keep_label(expr, label, recorded).carries:
                recorded[name] = changed = True
    return recorded


class _Rewriter:
    def __init__(self, label: str, recorded: Mapping[str, bool]) -> None:
        self.label = label
        self.recorded = recorded

    def rewrite(self, expr: ast.Expr) -> Kept:
        if isinstance(expr, ast.NumberLiteral | ast.StringLiteral):
            return Kept(expr, carries=False)
        if isinstance(expr, ast.VectorSelector):
            return Kept(expr, self._selector_carries(expr))
        if isinstance(expr, ast.MatrixSelector):
            return Kept(expr, self._selector_carries(expr.selector))
        if isinstance(expr, ast.SubqueryExpr | ast.UnaryExpr | ast.ParenExpr):
            inner = self.rewrite(expr.expr)
            return Kept(replace(expr, expr=inner.expr), inner.carries)
        if isinstance(expr, ast.Call):
            return self._call(expr)
        if isinstance(expr, ast.AggregateExpr):
            return self._aggregate(expr)
        return self._binary(expr)

    def _selector_carries(self, selector: ast.VectorSelector) -> bool:
        if any(m.name == self.label and m.op == EQUAL and m.value == ""
               for m in selector.matchers):
            return False  # selects only series without the label
        if selector.name is not None and selector.name in self.recorded:
            return self.recorded[selector.name]
        return True

    def _call(self, expr: ast.Call) -> Kept:
        args = [self.rewrite(arg) for arg in expr.args]
        new = replace(expr, args=tuple(k.expr for k in args))
        if expr.func in _LABELLESS:
            return Kept(new, carries=False)
        if expr.func in _LABEL_WRITERS and len(expr.args) > 1:
            target = ast.unwrap_parens(expr.args[1])
            if isinstance(target, ast.StringLiteral) and target.value == self.label:
                return Kept(new, carries=True)
        series_args = [k for k in args if ast.value_type(k.expr) in (ast.V, ast.M)]
        return Kept(new, bool(series_args) and series_args[0].carries)

    def _aggregate(self, expr: ast.AggregateExpr) -> Kept:
        inner = self.rewrite(expr.expr)
        param = self.rewrite(expr.param).expr if expr.param is not None else None
        grouping = expr.grouping
        if inner.carries:
            if expr.without:
                grouping = tuple(name for name in grouping if name != self.label)
            elif self.label not in grouping:
                grouping = (self.label, *grouping)
        new = replace(expr, expr=inner.expr, param=param, grouping=grouping)
        return Kept(new, inner.carries)

    def _binary(self, expr: ast.BinaryExpr) -> Kept:
        lhs, rhs = self.rewrite(expr.lhs), self.rewrite(expr.rhs)
        matching = expr.matching
        if matching is None:  # a scalar on one side (or both)
            vector_side = lhs if ast.value_type(lhs.expr) is ast.V else rhs
            carries = ast.value_type(vector_side.expr) is ast.V and vector_side.carries
            return Kept(replace(expr, lhs=lhs.expr, rhs=rhs.expr), carries)
        if lhs.carries != rhs.carries:
            matching = self._one_side_carries(expr.op, matching, lhs_carries=lhs.carries)
        elif lhs.carries and rhs.carries:
            labels = matching.labels
            if matching.on and self.label not in labels:
                labels = (self.label, *labels)
            elif not matching.on:
                labels = tuple(name for name in labels if name != self.label)
            include = tuple(name for name in matching.include if name != self.label)
            matching = replace(matching, labels=labels, include=include)
        new = replace(expr, lhs=lhs.expr, rhs=rhs.expr, matching=matching)
        return Kept(new, self._match_carries(expr.op, matching, lhs.carries, rhs.carries))

    def _one_side_carries(self, op: str, matching: ast.VectorMatching, *,
                          lhs_carries: bool) -> ast.VectorMatching:
        """Only one side has the label (the other is built from `vector()` and the like, the
        same for every host): it must match each host's series, so the label is ignored and
        the host side becomes the "many" side. `sum(x) / vector(2)` becomes
        `sum by (instance) (x) / ignoring (instance) group_left vector(2)`."""
        labels = matching.labels
        if not matching.on and self.label not in labels:
            labels = (*labels, self.label)
        if op in ("and", "or", "unless"):
            return replace(matching, labels=labels)
        card = ast.Cardinality.MANY_TO_ONE if lhs_carries else ast.Cardinality.ONE_TO_MANY
        # group_x labels are copied from the "one" side; if that was the host side, the other
        # side (now "one") has nothing of them to give.
        include = matching.include if matching.card is card else ()
        return replace(matching, card=card, labels=labels, include=include)

    def _match_carries(self, op: str, matching: ast.VectorMatching, lhs: bool,
                       rhs: bool) -> bool:
        if op in ("and", "unless"):
            return lhs
        if op == "or":
            return lhs or rhs
        if matching.card is ast.Cardinality.MANY_TO_ONE:
            return lhs or (rhs and self.label in matching.include)
        if matching.card is ast.Cardinality.ONE_TO_MANY:
            return rhs or (lhs and self.label in matching.include)
        if matching.on:  # one-to-one with on: the result keeps only the `on` labels
            return lhs and self.label in matching.labels
        return lhs and self.label not in matching.labels
