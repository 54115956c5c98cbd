"""The Prometheus HTTP API over the local series store, so Grafana (or promtool, or a script)
can use the daemon itself as a Prometheus data source (SPEC §11).

Endpoints, parameters, validations, error types, HTTP statuses and JSON are Prometheus
2.42's (web/api/v1/api.go): `/api/v1/query`, `/query_range`, `/series`, `/labels`,
`/label/<name>/values`, `/rules`, `/alerts`, and the probes Grafana makes (`/status/buildinfo`,
`/status/runtimeinfo`, `/metadata`, `/query_exemplars`).

Hostile input is bounded before it costs anything: PromQL text by size and by its number of
operators and brackets (the parser recurses once per nesting level), `match[]` by count; error
messages quote at most the start of a bad value. Anything unexpected becomes an `internal`
error without a traceback in the response.

The engine's errors carry Prometheus's error type in `.kind` (`execution`, `timeout`,
`bad_data`); parse errors are `PromQLParseError`.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from multidict import MultiDict

from monitor import __version__
from monitor.api.prom_json import (
    BAD_DATA,
    HTTP_STATUS,
    INTERNAL,
    ApiError,
    encode,
    epoch_seconds_time,
    failure,
    labels_json,
    matrix_json,
    query_data,
    scalar_json,
    string_json,
    success,
    vector_json,
)
from monitor.api.prom_params import (
    LABEL_NAME,
    MAX_INT64,
    MAX_TIME_NS,
    MIN_TIME_NS,
    NS_PER_MS,
    check_query_size,
    format_duration_ms,
    invalid_param,
    ms_of,
    parse_duration,
    parse_time,
    quote,
    read_params,
)
from monitor.api.prom_rules import RuleGroupView, alerts_json, rules_json
from monitor.clock import Clock
from monitor.promql import ast
from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.promql.values import Sample, Scalar, Series, String, Value
from monitor.tsdb.series import MemSeries
from monitor.tsdb.store import Matcher, SeriesStore

log = logging.getLogger(__name__)

MAX_POINTS = 11_000  # Prometheus's per-series cap on a range query's steps
PROMETHEUS_VERSION = "2.42.0"  # the API this emulates; Grafana enables features by it


class QueryEngine(Protocol):
    """What the API needs from the PromQL engine (monitor.promql.engine.Engine)."""

    def instant(self, expr: str | ast.Expr, t_ms: int) -> Value: ...

    def range(self, expr: str | ast.Expr, start_ms: int, end_ms: int,
              step_ms: int) -> list[Series]: ...


@dataclass(frozen=True, kw_only=True)
class ApiLimits:
    """Bounds on what one request may ask for."""

    max_query_bytes: int = 64 * 1024
    # Operators and brackets in one PromQL text: the parser and the evaluator recurse once
    # per level, and a few thousand levels overflow the native parser's stack.
    max_query_operators: int = 256
    max_match_params: int = 256


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(method: Callable[[PrometheusApi, web.Request], Awaitable[web.StreamResponse]],
         ) -> Callable[[PrometheusApi, web.Request], Awaitable[web.StreamResponse]]:
    """ApiError → Prometheus's error envelope; anything unexpected → `internal`, logged."""
    async def wrapped(self: PrometheusApi, request: web.Request) -> web.StreamResponse:
        try:
            return await method(self, request)
        except ApiError as exc:
            return failure(exc.kind, exc.message)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return failure(INTERNAL, "internal error while serving the request")
    return wrapped


def _query_error(exc: Exception) -> ApiError | None:
    """The API error for an engine failure; None for one that is not the engine's."""
    if isinstance(exc, RecursionError):
        return ApiError(BAD_DATA, "query is nested too deeply")
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind in HTTP_STATUS:
        return ApiError(kind, str(exc))
    return None


def _selectors(node: ast.Expr) -> Iterable[ast.VectorSelector]:
    if isinstance(node, ast.VectorSelector):
        yield node
    for child in ast.children(node):
        yield from _selectors(child)


def _has_samples(series: MemSeries, mint: int, maxt: int) -> bool:
    """Whether `series` has a sample (stale markers count, as in the TSDB) in [mint, maxt]."""
    for first, last, ts in zip(series.chunk_first, series.chunk_last, series.ts, strict=True):
        if last < mint:
            continue
        if first > maxt:
            return False
        index = bisect_left(ts, mint)
        return index < len(ts) and ts[index] <= maxt
    return False


class PrometheusApi:
    """The handlers; one instance per application."""

    def __init__(self, *, engine: QueryEngine, series: SeriesStore,
                 rules: Callable[[], Sequence[RuleGroupView]], clock: Clock,
                 limits: ApiLimits) -> None:
        self.engine = engine
        self.store = series
        self.rule_groups = rules
        self.clock = clock
        self.limits = limits
        self.started_s = clock.time()

    def register(self, router: web.UrlDispatcher) -> None:
        both = ("GET", "POST")
        routes: list[tuple[Sequence[str], str, Handler]] = [
            (both, "/api/v1/query", self.query),
            (both, "/api/v1/query_range", self.query_range),
            (both, "/api/v1/query_exemplars", self.query_exemplars),
            (both, "/api/v1/series", self.series),
            (both, "/api/v1/labels", self.labels),
            (("GET",), "/api/v1/label/{name}/values", self.label_values),
            (("GET",), "/api/v1/rules", self.rules),
            (("GET",), "/api/v1/alerts", self.alerts),
            (("GET",), "/api/v1/metadata", self.metadata),
            (("GET",), "/api/v1/status/buildinfo", self.buildinfo),
            (("GET",), "/api/v1/status/runtimeinfo", self.runtimeinfo),
        ]
        for methods, path, handler in routes:
            for method in methods:
                router.add_route(method, path, handler)

    # -- parameters --------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return int(self.clock.time() * 1000) * NS_PER_MS

    @staticmethod
    def _time(params: MultiDict[str], name: str, default: int) -> int:
        """parseTimeParam: the default when absent or empty."""
        text = params.get(name, "")
        if text == "":
            return default
        try:
            return parse_time(text)
        except ValueError as exc:
            raise invalid_param(name, f"Invalid time value for '{name}': {exc}") from None

    @staticmethod
    def _timeout(params: MultiDict[str]) -> None:
        # Validated as Prometheus validates it; the engine's own timeout bounds the query.
        text = params.get("timeout", "")
        if text:
            try:
                parse_duration(text)
            except ValueError as exc:
                raise invalid_param("timeout", str(exc)) from None

    def _parse(self, text: str, *, param: str | None) -> ast.Expr:
        """Parse PromQL; errors prefixed `invalid parameter "<param>": ` when `param` is set."""
        def refuse(message: str) -> ApiError:
            return invalid_param(param, message) if param else ApiError(BAD_DATA, message)

        problem = check_query_size(text, max_bytes=self.limits.max_query_bytes,
                                   max_operators=self.limits.max_query_operators)
        if problem is not None:
            raise refuse(problem)
        try:
            return parse_expr(text)
        except PromQLParseError as exc:
            raise refuse(str(exc)) from None
        except RecursionError:
            raise refuse("query is nested too deeply") from None

    def _matcher_sets(self, texts: Sequence[str]) -> list[tuple[Matcher, ...]]:
        """parseMatchersParam: each `match[]` must be a series selector with a matcher that
        does not match the empty string."""
        if len(texts) > self.limits.max_match_params:
            raise ValueError(f"too many match[] parameters: {len(texts)}, at most "
                             f"{self.limits.max_match_params} are accepted")
        sets = []
        for text in texts:
            try:
                node = self._parse(text, param=None)
            except ApiError as exc:
                raise ValueError(exc.message) from None
            if not isinstance(node, ast.VectorSelector) or node.offset_ms or node.at:
                raise ValueError(f"parse error: {quote(text)} is not a series selector")
            if all(m.matches_empty for m in node.matchers):
                raise ValueError("match[] must contain at least one non-empty matcher")
            sets.append(node.matchers)
        return sets

    def _select(self, params: MultiDict[str], *, start: int, end: int,
                matcher_error: Callable[[str], ApiError]) -> list[MemSeries] | None:
        """The series `match[]` selects with samples in [start, end] (ns); None when there
        is neither a `match[]` nor a time range (everything)."""
        try:
            sets = self._matcher_sets(params.getall("match[]", []))
        except ValueError as exc:
            raise matcher_error(str(exc)) from None
        if not sets and start == MIN_TIME_NS and end == MAX_TIME_NS:
            return None
        found: dict[tuple[tuple[str, str], ...], MemSeries] = {}
        for matchers in sets or [()]:
            for stored in self.store.select(matchers):
                found.setdefault(stored.labels, stored)
        mint, maxt = ms_of(start), ms_of(end)
        return [found[labels] for labels in sorted(found)
                if _has_samples(found[labels], mint, maxt)]

    # -- queries -----------------------------------------------------------------------------

    def _run(self, run: Callable[[], Value]) -> Value:
        try:
            return run()
        except Exception as exc:
            error = _query_error(exc)
            if error is None:
                raise
            raise error from None

    @_api
    async def query(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        t_ms = ms_of(self._time(params, "time", self._now_ns()))
        self._timeout(params)
        node = self._parse(params.get("query", ""), param="query")
        value = self._run(lambda: self.engine.instant(node, t_ms))
        if isinstance(value, Scalar):
            return success(query_data("scalar", scalar_json(value)))
        if isinstance(value, String):
            return success(query_data("string", string_json(value)))
        samples = [s for s in value if isinstance(s, Sample)]
        series = [s for s in value if isinstance(s, Series)]
        if series or (not samples and ast.value_type(node) is ast.ValueType.MATRIX):
            return success(query_data("matrix", matrix_json(series)))
        return success(query_data("vector", vector_json(samples)))

    @_api
    async def query_range(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        bounds = []
        for name in ("start", "end"):
            try:
                bounds.append(parse_time(params.get(name, "")))
            except ValueError as exc:
                raise invalid_param(name, str(exc)) from None
        start, end = bounds
        if end < start:
            raise invalid_param("end", "end timestamp must not be before start time")
        try:
            step = parse_duration(params.get("step", ""))
        except ValueError as exc:
            raise invalid_param("step", str(exc)) from None
        if step <= 0:
            raise invalid_param("step", "zero or negative query resolution step widths are "
                                        "not accepted. Try a positive integer")
        if min(end - start, MAX_INT64) // step > MAX_POINTS:  # Go's Duration saturates
            raise ApiError(BAD_DATA, "exceeded maximum resolution of 11,000 points per "
                                     "timeseries. Try decreasing the query resolution "
                                     "(?step=XX)")
        self._timeout(params)
        node = self._parse(params.get("query", ""), param=None)
        kind = ast.value_type(node)
        if kind not in (ast.ValueType.SCALAR, ast.ValueType.VECTOR):
            name = "range vector" if kind is ast.ValueType.MATRIX else kind.value
            raise ApiError(BAD_DATA, f'invalid expression type "{name}" for range query, '
                                     f"must be Scalar or instant Vector")
        # Sub-millisecond steps truncate to 0 ms, which would never advance.
        step_ms = max(step // NS_PER_MS, 1)
        start_ms, end_ms = ms_of(start), ms_of(end)
        value = self._run(lambda: self.engine.range(node, start_ms, end_ms, step_ms))
        assert isinstance(value, list)
        matrix = [s for s in value if isinstance(s, Series)]
        return success(query_data("matrix", matrix_json(matrix)))

    @_api
    async def query_exemplars(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        start = self._time(params, "start", MIN_TIME_NS)
        end = self._time(params, "end", MAX_TIME_NS)
        if end < start:
            raise ApiError(BAD_DATA, "end timestamp must not be before start timestamp")
        node = self._parse(params.get("query", ""), param=None)
        if next(iter(_selectors(node)), None) is None:
            return web.Response(status=204)
        return success("[]")  # the store keeps no exemplars

    # -- metadata ----------------------------------------------------------------------------

    @_api
    async def series(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        if not params.getall("match[]", []):
            raise ApiError(BAD_DATA, "no match[] parameter provided")
        start = self._time(params, "start", MIN_TIME_NS)
        end = self._time(params, "end", MAX_TIME_NS)
        found = self._select(params, start=start, end=end,
                             matcher_error=lambda m: invalid_param("match[]", m))
        assert found is not None
        return success("[" + ",".join(labels_json(s.labels) for s in found) + "]")

    @_api
    async def labels(self, request: web.Request) -> web.StreamResponse:
        params = await read_params(request)
        start = self._time(params, "start", MIN_TIME_NS)
        end = self._time(params, "end", MAX_TIME_NS)
        found = self._select(params, start=start, end=end,
                             matcher_error=lambda m: ApiError(BAD_DATA, m))
        return success(encode(self.store.label_names(found)))

    @_api
    async def label_values(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not LABEL_NAME.fullmatch(name):
            raise ApiError(BAD_DATA, f"invalid label name: {quote(name)}")
        params = await read_params(request)
        start = self._time(params, "start", MIN_TIME_NS)
        end = self._time(params, "end", MAX_TIME_NS)
        found = self._select(params, start=start, end=end,
                             matcher_error=lambda m: ApiError(BAD_DATA, m))
        return success(encode(self.store.label_values(name, found)))

    @_api
    async def metadata(self, request: web.Request) -> web.StreamResponse:
        limit = request.query.get("limit", "")
        if limit:
            try:
                int(limit)
            except ValueError:
                raise ApiError(BAD_DATA, "limit must be a number") from None
        return success("{}")  # no scraped targets, so no target metadata

    # -- rules and alerts --------------------------------------------------------------------

    @_api
    async def rules(self, request: web.Request) -> web.StreamResponse:
        kind = request.query.get("type", "").lower()
        if kind not in ("", "alert", "record"):
            raise invalid_param("type", f"not supported value {quote(kind)}")
        return success(rules_json(self.rule_groups(), alerting=kind in ("", "alert"),
                                  recording=kind in ("", "record")))

    @_api
    async def alerts(self, request: web.Request) -> web.StreamResponse:
        return success(alerts_json(self.rule_groups()))

    # -- status ------------------------------------------------------------------------------

    @_api
    async def buildinfo(self, request: web.Request) -> web.StreamResponse:
        return success(encode({
            "version": PROMETHEUS_VERSION,
            "revision": f"inferwatch {__version__}",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }))

    @_api
    async def runtimeinfo(self, request: web.Request) -> web.StreamResponse:
        started = epoch_seconds_time(self.started_s)
        return success(encode({
            "startTime": started,
            "CWD": "",
            "reloadConfigSuccess": True,
            "lastConfigTime": started,
            "corruptionCount": 0,
            "goroutineCount": 0,
            "GOMAXPROCS": os.cpu_count() or 1,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": format_duration_ms(self.store.retention_ms),
        }))


def add_prometheus_api(app: web.Application, *, engine: QueryEngine, series: SeriesStore,
                       rules: Callable[[], Sequence[RuleGroupView]], clock: Clock,
                       limits: ApiLimits | None = None) -> PrometheusApi:
    """Serve the Prometheus API from `app`; `rules` gives the current rule groups (they are
    replaced on reload)."""
    api = PrometheusApi(engine=engine, series=series, rules=rules, clock=clock,
                        limits=limits or ApiLimits())
    api.register(app.router)
    return api
