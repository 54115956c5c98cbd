"""Evaluating PromQL over the series store, with Prometheus 2.42's semantics.

Every expression is evaluated at one timestamp at a time (`_Query.eval(node, t)`); a range
query evaluates its expression at each step. What is expensive across steps is shared within
one query: each selector's series are selected once, and a subquery's inner expression is
evaluated once per inner timestamp however many outer steps need it.

Semantics carried over from Prometheus 2.42: an instant selector takes the latest sample in
[t - 5m, t] (lookback) unless it is a stale marker; a range selector takes [t - range, t],
stale markers dropped; `offset` shifts the reference time back; `@` replaces the evaluation time
(start() and end() are the query's); a subquery evaluates its expression at the multiples of its
step inside [t - range, t]; functions of a range drop the metric name except last_over_time;
any step whose result holds two equal label sets is an error.

The number of samples a query holds at once is bounded (`max_samples`), so a query that would
return a million points is refused with Prometheus's error instead of exhausting memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from monitor.promql import ast
from monitor.promql.aggregations import AggregationError, aggregate
from monitor.promql.binops import (
    BinaryOpError,
    scalar_binop,
    set_binop,
    vector_binop,
    vector_scalar_binop,
)
from monitor.promql.functions import (
    INSTANT_FUNCTIONS,
    RANGE_FUNCTIONS,
    CallInput,
    FunctionError,
    RangeInput,
    absent_labels,
)
from monitor.promql.parse import parse_expr
from monitor.promql.values import (
    Labels,
    Matrix,
    Sample,
    Scalar,
    Series,
    String,
    Value,
    Vector,
    without_name,
)
from monitor.tsdb.series import MemSeries
from monitor.tsdb.store import SeriesStore

DEFAULT_LOOKBACK_MS = 5 * 60 * 1000
DEFAULT_MAX_SAMPLES = 500_000
DEFAULT_TIMEOUT_S = 120.0


class QueryError(Exception):
    """A query that cannot be evaluated; `kind` is the Prometheus API error type."""

    kind = "execution"


class TooManySamplesError(QueryError):
    def __init__(self) -> None:
        super().__init__(
            "query processing would load too many samples into memory in query execution")


class QueryTimeoutError(QueryError):
    kind = "timeout"

    def __init__(self) -> None:
        super().__init__("query timed out in expression evaluation")


class BadQueryError(QueryError):
    kind = "bad_data"


@dataclass
class _Query:
    """One evaluation: its time range, shared selections and sample accounting."""

    store: SeriesStore
    start: int
    end: int
    lookback: int
    subquery_step: int
    max_samples: int
    deadline: float
    steps: range = range(0)  # a range query's steps, in order (lazy: may be 11,000 long)
    held: int = 0  # samples kept for the whole query: results, subquery steps
    step_samples: int = 0  # samples loaded for the current step, released after it
    selections: dict[int, list[MemSeries]] = field(default_factory=dict)
    subquery_values: dict[tuple[int, int], Vector] = field(default_factory=dict)
    blocks: dict[int, _Block] = field(default_factory=dict)

    def load(self, samples: int) -> None:
        """Samples read for the step being evaluated (freed when it is done)."""
        self.step_samples += samples
        self._check()

    def hold(self, samples: int) -> None:
        """Samples kept until the query ends."""
        self.held += samples
        self._check()

    def next_step(self) -> None:
        self.step_samples = 0

    def release(self, samples: int) -> None:
        self.held -= samples

    def _check(self) -> None:
        if self.held + self.step_samples > self.max_samples:
            raise TooManySamplesError
        if time.monotonic() > self.deadline:
            raise QueryTimeoutError

    # -- dispatch ----------------------------------------------------------------------------

    def eval(self, node: ast.Expr, t: int) -> Value:
        if isinstance(node, ast.NumberLiteral):
            return Scalar(t, node.value)
        if isinstance(node, ast.StringLiteral):
            return String(t, node.value)
        if isinstance(node, ast.ParenExpr):
            return self.eval(node.expr, t)
        if isinstance(node, ast.VectorSelector):
            return self.vector_selector(node, t)
        if isinstance(node, ast.MatrixSelector):
            return self.matrix_selector(node, t)
        if isinstance(node, ast.SubqueryExpr):
            return self.subquery(node, t)
        if isinstance(node, ast.UnaryExpr):
            return self.negate(node, t)
        if isinstance(node, ast.BinaryExpr):
            return self.binary(node, t)
        if isinstance(node, ast.AggregateExpr):
            return self.aggregation(node, t)
        return self.call(node, t)

    def scalar(self, node: ast.Expr, t: int) -> float:
        value = self.eval(node, t)
        assert isinstance(value, Scalar)
        return value.v

    def vector(self, node: ast.Expr, t: int) -> Vector:
        value = self.eval(node, t)
        assert isinstance(value, list)
        return value  # type: ignore[return-value]

    # -- selectors ---------------------------------------------------------------------------

    def _series(self, node: ast.VectorSelector) -> list[MemSeries]:
        found = self.selections.get(id(node))
        if found is None:
            found = self.selections[id(node)] = self.store.select(node.matchers)
        return found

    def reference(self, at: ast.At | None, offset_ms: int, t: int) -> int:
        if at is None:
            base = t
        elif at.kind is ast.AtKind.START:
            base = self.start
        elif at.kind is ast.AtKind.END:
            base = self.end
        else:
            base = at.t_ms
        return base - offset_ms

    def vector_selector(self, node: ast.VectorSelector, t: int) -> Vector:
        ref = self.reference(node.at, node.offset_ms, t)
        out: Vector = []
        for stored in self._series(node):
            found = stored.latest(ref, self.lookback)
            if found is not None:
                out.append(Sample(stored.labels, found[0], found[1]))
        self.load(len(out))
        return out

    def matrix_selector(self, node: ast.MatrixSelector, t: int) -> Matrix:
        selector = node.selector
        ref = self.reference(selector.at, selector.offset_ms, t)
        out: Matrix = []
        loaded = 0
        for stored in self._series(selector):
            ts, vs = stored.window(ref - node.range_ms, ref)
            if ts:
                out.append(Series(stored.labels, ts, vs))
                loaded += len(ts)
        self.load(loaded)
        return out

    def subquery(self, node: ast.SubqueryExpr, t: int) -> Matrix:
        ref = self.reference(node.at, node.offset_ms, t)
        step = node.step_ms or self.subquery_step
        first = step * ((ref - node.range_ms) // step)
        if first < ref - node.range_ms:
            first += step
        by_labels: dict[Labels, Series] = {}
        for inner_t in range(first, ref + 1, step):
            for sample in self._subquery_step(node, inner_t):
                series = by_labels.get(sample.labels)
                if series is None:
                    series = by_labels[sample.labels] = Series(sample.labels, [], [])
                series.ts.append(inner_t)
                series.vs.append(sample.v)
        return list(by_labels.values())

    def _subquery_step(self, node: ast.SubqueryExpr, inner_t: int) -> Vector:
        """The inner expression at `inner_t`, computed once per query."""
        key = (id(node), inner_t)
        found = self.subquery_values.get(key)
        if found is None:
            value = self.eval(node.expr, inner_t)
            if isinstance(value, Scalar):
                found = [Sample((), inner_t, value.v)]
            else:
                found = [Sample(s.labels, inner_t, s.v) for s in _vec(value)]
            self.subquery_values[key] = found
            self.hold(len(found))
        return found

    # -- operators ---------------------------------------------------------------------------

    def negate(self, node: ast.UnaryExpr, t: int) -> Value:
        value = self.eval(node.expr, t)
        if isinstance(value, Scalar):
            return Scalar(t, -value.v)
        assert isinstance(value, list)
        return _unique([Sample(without_name(s.labels), t, -s.v)
                        for s in value if isinstance(s, Sample)])

    def binary(self, node: ast.BinaryExpr, t: int) -> Value:
        lhs, rhs = self.eval(node.lhs, t), self.eval(node.rhs, t)
        try:
            if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
                return Scalar(t, scalar_binop(node.op, lhs.v, rhs.v))
            if isinstance(rhs, Scalar):
                assert isinstance(lhs, list)
                return _unique(vector_scalar_binop(node.op, _vec(lhs), rhs.v, swap=False,
                                                   return_bool=node.return_bool, t=t))
            if isinstance(lhs, Scalar):
                return _unique(vector_scalar_binop(node.op, _vec(rhs), lhs.v, swap=True,
                                                   return_bool=node.return_bool, t=t))
            assert node.matching is not None
            if node.op in ast.SET_OPERATORS:
                return _unique(set_binop(node.op, _vec(lhs), _vec(rhs), node.matching))
            return _unique(vector_binop(node.op, _vec(lhs), _vec(rhs), node.matching,
                                        return_bool=node.return_bool, t=t))
        except BinaryOpError as exc:
            raise QueryError(str(exc)) from None

    def aggregation(self, node: ast.AggregateExpr, t: int) -> Vector:
        param: float | str | None = None
        if node.param is not None:
            value = self.eval(node.param, t)
            param = value.v if isinstance(value, Scalar | String) else None
        try:
            result = aggregate(node.op, self.vector(node.expr, t), grouping=node.grouping,
                               without=node.without, param=param, t_ms=t)
        except AggregationError as exc:
            raise QueryError(str(exc)) from None
        return _unique(result)

    # -- functions ---------------------------------------------------------------------------

    def call(self, node: ast.Call, t: int) -> Value:
        matrix_index = next((i for i, arg in enumerate(node.args) if ast.value_type(
            ast.unwrap_parens(arg)) is ast.ValueType.MATRIX), None)
        try:
            if matrix_index is not None:
                return self._range_call(node, matrix_index, t)
            if node.func == "timestamp":
                argument = ast.unwrap_parens(node.args[0])
                if isinstance(argument, ast.VectorSelector):
                    # The one function that sees a selector's sample times.
                    samples = self.vector_selector(argument, t)
                    return INSTANT_FUNCTIONS["timestamp"](CallInput([samples], node, t))
                # Anything else (`a and b`, `sort(a)`) is a computed vector: its samples
                # are at the evaluation time even where they came from a selector unchanged.
                computed = [Sample(s.labels, t, s.v) for s in _vec(self.eval(argument, t))]
                return INSTANT_FUNCTIONS["timestamp"](CallInput([computed], node, t))
            args = [self._instant_arg(arg, t) for arg in node.args]
            result = INSTANT_FUNCTIONS[node.func](CallInput(args, node, t))
        except FunctionError as exc:
            raise QueryError(str(exc)) from None
        return result if isinstance(result, Scalar) else _unique(result)

    def _instant_arg(self, node: ast.Expr, t: int) -> Vector | Scalar | String:
        value = self.eval(node, t)
        return value if isinstance(value, Scalar | String) else _vec(value)

    def _range_call(self, node: ast.Call, matrix_index: int, t: int) -> Vector:
        argument = ast.unwrap_parens(node.args[matrix_index])
        if (isinstance(argument, ast.MatrixSelector) and t in self.steps
                and node.func != "absent_over_time"):
            return self._block_range_call(node, argument, matrix_index, t)
        windows = self.eval(argument, t)
        assert isinstance(windows, list)
        params = tuple(self.scalar(arg, t) for i, arg in enumerate(node.args)
                       if i != matrix_index)
        if isinstance(argument, ast.MatrixSelector):
            selector = argument.selector
            range_ms, at, offset = argument.range_ms, selector.at, selector.offset_ms
        else:
            assert isinstance(argument, ast.SubqueryExpr)
            range_ms, at, offset = argument.range_ms, argument.at, argument.offset_ms
        end = self.reference(at, offset, t)
        if node.func == "absent_over_time":
            if any(isinstance(s, Series) and s.ts for s in windows):
                return []
            return [Sample(absent_labels(node.args[0]), t, 1.0)]
        function = RANGE_FUNCTIONS[node.func]
        keep_name = node.func == "last_over_time"
        out: Vector = []
        for series in windows:
            assert isinstance(series, Series)
            value = function(RangeInput(series.ts, series.vs, end - range_ms, end, params, t))
            if value is not None:
                labels = series.labels if keep_name else without_name(series.labels)
                out.append(Sample(labels, t, value))
        return _unique(out)


    def _block_range_call(self, node: ast.Call, argument: ast.MatrixSelector,
                          matrix_index: int, t: int) -> Vector:
        """A range function over a selector, for a range query: computed for a block of
        steps at once, sliding each series' window forward instead of looking it up anew
        at every step. Equal to the per-step result; memory is bounded by the block."""
        block = self.blocks.get(id(node))
        if block is not None and t in block.results:
            return block.results[t]
        first = self.steps.index(t)
        times = self.steps[first:first + BLOCK_STEPS]
        selector = argument.selector
        range_ms = argument.range_ms
        refs = [self.reference(selector.at, selector.offset_ms, step) for step in times]
        params = [tuple(self.scalar(arg, step) for i, arg in enumerate(node.args)
                        if i != matrix_index) for step in times]
        results: dict[int, Vector] = {step: [] for step in times}
        function = RANGE_FUNCTIONS[node.func]
        keep_name = node.func == "last_over_time"
        per_step = [0] * len(times)
        # Windows far apart (a step longer than the range): read each one on its own rather
        # than everything between the first and the last.
        gaps = max(refs) - min(refs) + range_ms > len(times) * range_ms
        for stored in self._series(selector):
            labels = stored.labels if keep_name else without_name(stored.labels)
            if gaps:
                for i, (step, ref, step_params) in enumerate(zip(times, refs, params,
                                                                 strict=True)):
                    ts, vs = stored.window(ref - range_ms, ref)
                    if ts:
                        per_step[i] += len(ts)
                        value = function(RangeInput(ts, vs, ref - range_ms, ref,
                                                    step_params, step))
                        if value is not None:
                            results[step].append(Sample(labels, step, value))
                continue
            ts, vs = stored.window(min(refs) - range_ms, max(refs))
            if not ts:
                continue
            lo = hi = 0
            n = len(ts)
            for i, (step, ref, step_params) in enumerate(zip(times, refs, params,
                                                             strict=True)):
                while hi < n and ts[hi] <= ref:
                    hi += 1
                mint = ref - range_ms
                while lo < hi and ts[lo] < mint:
                    lo += 1
                if lo < hi:
                    per_step[i] += hi - lo
                    value = function(RangeInput(ts[lo:hi], vs[lo:hi], mint, ref,
                                                step_params, step))
                    if value is not None:
                        results[step].append(Sample(labels, step, value))
        # Counted as Prometheus counts them: the samples one step's windows hold.
        self.load(max(per_step))
        for vector in results.values():
            _unique(vector)
        if block is not None:
            self.release(block.samples)
        kept = sum(len(v) for v in results.values())
        self.blocks[id(node)] = _Block(results, kept)
        self.hold(kept)
        return results[t]


@dataclass
class _Block:
    """One range function's results for a block of consecutive range-query steps."""

    results: dict[int, Vector]
    samples: int


BLOCK_STEPS = 64
_TOO_DEEP = "query too complex: nested too deeply to evaluate"


def _vec(value: Value) -> Vector:
    assert isinstance(value, list)
    return value  # type: ignore[return-value]


def _unique(vector: Vector) -> Vector:
    if len(vector) > 1 and len({s.labels for s in vector}) != len(vector):
        raise QueryError("vector cannot contain metrics with the same labelset")
    return vector


class Engine:
    """Runs PromQL queries against a SeriesStore."""

    def __init__(self, store: SeriesStore, *, lookback_ms: int = DEFAULT_LOOKBACK_MS,
                 max_samples: int = DEFAULT_MAX_SAMPLES, timeout_s: float = DEFAULT_TIMEOUT_S,
                 subquery_step_ms: int = 60_000) -> None:
        self.store = store
        self.lookback_ms = lookback_ms
        self.max_samples = max_samples
        self.timeout_s = timeout_s
        self.subquery_step_ms = subquery_step_ms

    def _query(self, start: int, end: int) -> _Query:
        return _Query(self.store, start, end, self.lookback_ms, self.subquery_step_ms,
                      self.max_samples, time.monotonic() + self.timeout_s)

    def instant(self, expr: str | ast.Expr, t_ms: int) -> Value:
        """The value of `expr` at `t_ms`: a Vector (samples stamped `t_ms`), a Scalar, a
        String, or a Matrix for a range selector or subquery."""
        node = parse_expr(expr) if isinstance(expr, str) else expr
        query = self._query(t_ms, t_ms)
        try:
            value = query.eval(node, t_ms)
        except RecursionError:
            raise BadQueryError(_TOO_DEEP) from None
        if isinstance(value, list) and value and isinstance(value[0], Sample):
            return [Sample(s.labels, t_ms, s.v) for s in value if isinstance(s, Sample)]
        return value

    def range(self, expr: str | ast.Expr, start_ms: int, end_ms: int, step_ms: int) -> Matrix:
        """`expr` at every step from start to end: a Matrix, series sorted by labels."""
        node = parse_expr(expr) if isinstance(expr, str) else expr
        kind = ast.value_type(node)
        if kind not in (ast.ValueType.SCALAR, ast.ValueType.VECTOR):
            name = "range vector" if kind is ast.ValueType.MATRIX else kind.value
            raise BadQueryError(f'invalid expression type "{name}" for range query, '
                                f"must be Scalar or instant Vector")
        if step_ms <= 0:
            raise BadQueryError("zero or negative query resolution step widths are not "
                                "accepted. Try a positive integer")
        query = self._query(start_ms, end_ms)
        query.steps = range(start_ms, end_ms + 1, step_ms)
        series: dict[Labels, Series] = {}
        for t in query.steps:
            query.next_step()
            try:
                value = query.eval(node, t)
            except RecursionError:
                raise BadQueryError(_TOO_DEEP) from None
            samples = [Sample((), t, value.v)] if isinstance(value, Scalar) else _vec(value)
            for sample in samples:
                found = series.get(sample.labels)
                if found is None:
                    found = series[sample.labels] = Series(sample.labels, [], [])
                found.ts.append(t)
                found.vs.append(sample.v)
            query.next_step()  # the step's own samples are released; its result is kept
            query.hold(len(samples))
        return sorted(series.values(), key=lambda s: s.labels)
