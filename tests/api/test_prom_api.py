"""The Prometheus HTTP API (SPEC §11) through a real aiohttp server on loopback.

Expected bodies are compared as bytes where Prometheus 2.42's own tests pin the text
(web/api/v1/api_test.go: TestRespond, TestParseTime, TestParseDuration), because Grafana and
other clients read these strings: sample values, timestamps and error messages.

Most handler tests run against `ScriptedEngine`, which returns what the test says, so they
do not depend on the PromQL engine; the tests at the end run the real engine over a real
series store, including the request Grafana sends for "Save & test".
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer

from monitor.api.prom import ApiLimits, add_prometheus_api
from monitor.api.prom_json import (
    format_exponent,
    format_plain,
    format_sample_value,
    json_number,
    json_string,
    rfc3339nano,
    sample_time,
)
from monitor.api.prom_params import (
    MAX_TIME_NS,
    MAX_TIME_TEXT,
    MIN_TIME_NS,
    MIN_TIME_TEXT,
    check_query_size,
    format_duration_ms,
    parse_duration,
    parse_time,
)
from monitor.api.prom_rules import RuleGroupView
from monitor.clock import FakeClock
from monitor.promql import ast
from monitor.promql.parse import parse_expr
from monitor.promql.values import Labels, Sample, Scalar, Series, String, Value, labels_from
from monitor.tsdb.store import SeriesStore

NOW_S = 1_767_225_600.0  # FakeClock's start, 2026-01-01T00:00:00Z
NOW_MS = int(NOW_S * 1000)
UP_API: Labels = labels_from({"__name__": "up", "job": "api", "instance": "a:1"})
UP_GPU: Labels = labels_from({"__name__": "up", "job": "gpu", "instance": "b:2"})
TOKENS: Labels = labels_from({"__name__": "tokens_total", "model": "m<1>", "job": "api"})


class EngineFailure(Exception):
    """An engine error as monitor.promql.engine raises them: the API error type in `kind`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class ScriptedEngine:
    """An engine that answers what the test scripts and records how it was called."""

    result: Value | Exception = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def _answer(self) -> Value:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def instant(self, expr: str | ast.Expr, t_ms: int) -> Value:
        self.calls.append(("instant", expr, t_ms))
        return self._answer()

    def range(self, expr: str | ast.Expr, start_ms: int, end_ms: int,
              step_ms: int) -> list[Series]:
        self.calls.append(("range", expr, start_ms, end_ms, step_ms))
        answer = self._answer()
        assert isinstance(answer, list)
        return [s for s in answer if isinstance(s, Series)]


def make_store() -> SeriesStore:
    store = SeriesStore(retention_ms=15 * 86_400_000)
    for i in range(20):  # every 15 s up to now
        t = NOW_MS - (19 - i) * 15_000
        store.append(UP_API, t, 1.0)
        store.append(TOKENS, t, float(i * 10))
    store.append(UP_GPU, NOW_MS - 3_600_000, 0.0)  # only an hour ago
    return store


Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(engine: Any = None, *, store: SeriesStore | None = None,
                   groups: Sequence[RuleGroupView] = (), limits: ApiLimits | None = None,
                   client_max_size: int = 1024**2) -> Client:
        app = web.Application(client_max_size=client_max_size)
        store = store if store is not None else make_store()
        add_prometheus_api(app, engine=engine if engine is not None else ScriptedEngine(),
                           series=store, rules=lambda: groups, clock=FakeClock(NOW_S),
                           limits=limits)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def body_of(response: Any) -> str:
    assert response.headers["Content-Type"] == "application/json"
    text: str = await response.text()
    return text


async def get(client: Client, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, params=params)
    return response.status, json.loads(await body_of(response))


def error(kind: str, message: str) -> dict[str, Any]:
    return {"status": "error", "errorType": kind, "error": message}


# -- formatting: TestRespond's cases and Go's float layouts ----------------------------------


@pytest.mark.parametrize(("t_ms", "text"), [
    (0, "0"), (1, "0.001"), (10, "0.010"), (100, "0.100"), (1000, "1"), (1001, "1.001"),
    (1010, "1.010"), (1100, "1.100"), (12345678123456555, "12345678123456.555"),
    (-1, "-0.001"), (1435781451781, "1435781451.781"),
])
def test_sample_timestamps_as_prometheus_writes_them(t_ms: int, text: str) -> None:
    assert sample_time(t_ms) == text


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (20.0, "20"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (1.2345678e6, "1234567.8"), (1.2345678e-6, "0.0000012345678"),
    (1.2345678e-67, "1.2345678e-67"), (100.123, "100.123"), (1e21, "1e+21"),
    (1e20, "100000000000000000000"), (9.99e-7, "9.99e-07"), (-0.0, "-0"), (0.1, "0.1"),
    (1 / 3, "0.3333333333333333"), (2.5e16, "25000000000000000"), (-1.5, "-1.5"),
])
def test_sample_values_as_prometheus_writes_them(value: float, text: str) -> None:
    assert format_sample_value(value) == text


def test_scalars_alerts_and_numbers_use_their_own_float_layouts() -> None:
    assert format_plain(1e-7) == "0.0000001"  # Scalar.MarshalJSON: always 'f'
    assert format_plain(1e22) == "10000000000000000000000"
    assert format_exponent(1.0) == "1e+00"  # alert values: always 'e'
    assert format_exponent(0.0) == "0e+00"
    assert format_exponent(123.456) == "1.23456e+02"
    assert format_exponent(-2.5e-7) == "-2.5e-07"
    assert format_exponent(math.inf) == "+Inf"
    assert json_number(60.0) == "60"  # encoding/json
    assert json_number(0.5) == "0.5"
    assert json_number(1e-7) == "1e-7"
    assert json_number(1e21) == "1e+21"


def test_strings_are_escaped_as_go_escapes_them() -> None:
    assert json_string('<a href="x">&</a>') == (
        '"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e"')
    assert json_string("line\nnext\ttab\b\f\\b") == '"line\\nnext\\ttab\\u0008\\u000c\\\\b"'
    assert json_string("ünï\u2028") == '"ünï\\u2028"'


def test_times_as_rfc3339nano() -> None:
    assert rfc3339nano(0) == "1970-01-01T00:00:00Z"
    assert rfc3339nano(1_433_337_718_555_000_000) == "2015-06-03T13:21:58.555Z"
    assert rfc3339nano(-1) == "1969-12-31T23:59:59.999999999Z"
    # Prometheus's "unbounded" sentinels, as Go prints them and clients send them back.
    assert MIN_TIME_TEXT == "-292273086-05-16T16:47:06Z"
    assert MAX_TIME_TEXT == "292277025-08-18T07:12:54.999999999Z"


# -- parameters: TestParseTime, TestParseDuration ---------------------------------------------


@pytest.mark.parametrize(("text", "ns"), [
    ("123", 123 * 10**9), ("123.123", 123_123_000_000),
    ("2015-06-03T13:21:58.555Z", 1_433_337_718_555_000_000),
    ("2015-06-03T14:21:58.555+01:00", 1_433_337_718_555_000_000),
    ("1543578564.705", 1_543_578_564_705_000_000), ("-1.5", -1_500_000_000),
    ("1e3", 10**12), (MIN_TIME_TEXT, MIN_TIME_NS), (MAX_TIME_TEXT, MAX_TIME_NS),
    ("2015-06-03T13:21:58.123456789123Z", 1_433_337_718_123_456_789),
])
def test_parse_time(text: str, ns: int) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize("text", ["", "abc", "30s", "NaN", "Inf", "1e400", "1_000", " 12",
                                  "2015-06-03 13:21:58Z", "2015-13-03T13:21:58Z",
                                  "2015-02-29T13:21:58Z", "99999999999999999999"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="to a valid timestamp"):
        parse_time(text)


@pytest.mark.parametrize(("text", "ns"), [
    ("123", 123 * 10**9), ("123.333", 123_333_000_000), ("15s", 15 * 10**9),
    ("5m", 300 * 10**9), ("1h30m", 5400 * 10**9), ("0", 0), ("1d", 86400 * 10**9),
    ("100ms", 10**8), ("-5", -5 * 10**9),
])
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "abc", "2015-06-03T13:21:58.555Z", "-148966367200.372",
                                  "148966367200.372", "5m1h", "1.5h", "NaN", "300y"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="to a valid duration"):
        parse_duration(text)


def test_duration_formatting_and_query_size_checks() -> None:
    assert [format_duration_ms(ms) for ms in (0, 15 * 86_400_000, 90 * 86_400_000, 5_400_000,
                                              365 * 86_400_000)] == ["0s", "15d", "90d",
                                                                     "1h30m", "1y"]
    assert check_query_size('sum(rate(x{a=~"((((("}[5m])) # ((((', max_bytes=1000,
                            max_operators=4) is None
    assert check_query_size("+".join(["1"] * 10), max_bytes=1000, max_operators=4) is not None
    assert "too long" in str(check_query_size("x" * 11, max_bytes=10, max_operators=4))


# -- /api/v1/query ---------------------------------------------------------------------------


async def test_vector_result_is_byte_exact(make_client: MakeClient) -> None:
    engine = ScriptedEngine([Sample(UP_API, 1435781451781, 1.0), Sample(TOKENS, 1435781451781,
                                                                        math.nan)])
    client = await make_client(engine)
    response = await client.get("/api/v1/query",
                                params={"query": "up", "time": "1435781451.781"})
    assert response.status == 200
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"vector","result":['
        '{"metric":{"__name__":"up","instance":"a:1","job":"api"},'
        '"value":[1435781451.781,"1"]},'
        '{"metric":{"__name__":"tokens_total","job":"api","model":"m\\u003c1\\u003e"},'
        '"value":[1435781451.781,"NaN"]}]}}')
    assert engine.calls[0][2] == 1435781451781
    assert isinstance(engine.calls[0][1], ast.VectorSelector)


async def test_matrix_scalar_and_string_results(make_client: MakeClient) -> None:
    engine = ScriptedEngine([Series(UP_API, [1000, 2010], [math.inf, -1e-7])])
    client = await make_client(engine)
    response = await client.get("/api/v1/query", params={"query": "up[5m]", "time": "3"})
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"matrix","result":['
        '{"metric":{"__name__":"up","instance":"a:1","job":"api"},'
        '"values":[[1,"+Inf"],[2.010,"-1e-07"]]}]}}')
    engine.result = Scalar(2010, 1e-7)
    response = await client.get("/api/v1/query", params={"query": "1e-7", "time": "2.01"})
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"scalar","result":[2.01,"0.0000001"]}}')
    engine.result = String(3000, "a<b")
    response = await client.get("/api/v1/query", params={"query": '"a<b"', "time": "3"})
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"string","result":[3,"a\\u003cb"]}}')


async def test_empty_results_keep_the_expression_type(make_client: MakeClient) -> None:
    client = await make_client(ScriptedEngine([]))
    _, vector = await get(client, "/api/v1/query", query="up")
    _, matrix = await get(client, "/api/v1/query", query="up[5m]")
    assert vector["data"] == {"resultType": "vector", "result": []}
    assert matrix["data"] == {"resultType": "matrix", "result": []}


async def test_time_defaults_to_now_and_accepts_rfc3339(make_client: MakeClient) -> None:
    engine = ScriptedEngine([])
    client = await make_client(engine)
    await get(client, "/api/v1/query", query="up")
    await get(client, "/api/v1/query", query="up", time="2015-06-03T13:21:58.555Z")
    await get(client, "/api/v1/query", query="up", time=MIN_TIME_TEXT)
    assert [call[2] for call in engine.calls] == [NOW_MS, 1433337718555, MIN_TIME_NS // 10**6]


async def test_query_as_post_form(make_client: MakeClient) -> None:
    engine = ScriptedEngine(Scalar(1000, 2.0))
    client = await make_client(engine)
    response = await client.post("/api/v1/query?time=99",
                                 data={"query": "1+1", "time": "1", "stats": "all"})
    assert response.status == 200
    assert json.loads(await body_of(response))["data"]["result"] == [1, "2"]
    assert engine.calls[0][2] == 1000  # the body's value wins over the URL's, as in Go


async def test_query_errors(make_client: MakeClient) -> None:
    engine = ScriptedEngine()
    client = await make_client(engine)
    status, body = await get(client, "/api/v1/query", query="up +")
    assert (status, body) == (400, error("bad_data",
                                         'invalid parameter "query": parse error: '
                                         'invalid promql query'))
    status, body = await get(client, "/api/v1/query", query="up", time="yesterday")
    assert (status, body) == (400, error(
        "bad_data", "invalid parameter \"time\": Invalid time value for 'time': "
                    'cannot parse "yesterday" to a valid timestamp'))
    status, body = await get(client, "/api/v1/query", query="up", timeout="soon")
    assert (status, body) == (400, error(
        "bad_data", 'invalid parameter "timeout": cannot parse "soon" to a valid duration'))
    for kind, status_code in (("execution", 422), ("timeout", 503), ("bad_data", 400)):
        engine.result = EngineFailure(kind, f"it failed: {kind}")
        status, body = await get(client, "/api/v1/query", query="up")
        assert (status, body) == (status_code, error(kind, f"it failed: {kind}"))
    assert engine.calls  # the engine saw the queries that parsed


async def test_an_unexpected_failure_is_internal_without_a_traceback(
        make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client(ScriptedEngine(ZeroDivisionError("secret detail")))
    response = await client.get("/api/v1/query", params={"query": "up"})
    text = await body_of(response)
    assert response.status == 500
    assert json.loads(text) == error("internal", "internal error while serving the request")
    assert "secret" not in text and "Traceback" not in text
    assert "ZeroDivisionError" in caplog.text  # but the log has it


# -- /api/v1/query_range ---------------------------------------------------------------------


async def test_query_range_passes_milliseconds_and_returns_a_matrix(
        make_client: MakeClient) -> None:
    engine = ScriptedEngine([Series(UP_API, [1000, 16000], [1.0, 2.5])])
    client = await make_client(engine)
    response = await client.post("/api/v1/query_range", data={
        "query": "up", "start": "1", "end": "1970-01-01T01:00:00.555+00:30", "step": "15s"})
    assert response.status == 200
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"matrix","result":['
        '{"metric":{"__name__":"up","instance":"a:1","job":"api"},'
        '"values":[[1,"1"],[16,"2.5"]]}]}}')
    assert engine.calls[0][2:] == (1000, 1_800_555, 15000)


@pytest.mark.parametrize(("params", "message"), [
    ({"start": "x", "end": "2", "step": "1"},
     'invalid parameter "start": cannot parse "x" to a valid timestamp'),
    ({"end": "2", "step": "1"},
     'invalid parameter "start": cannot parse "" to a valid timestamp'),
    ({"start": "2", "end": "1", "step": "1"},
     'invalid parameter "end": end timestamp must not be before start time'),
    ({"start": "1", "end": "2", "step": "often"},
     'invalid parameter "step": cannot parse "often" to a valid duration'),
    ({"start": "1", "end": "2", "step": "0"},
     'invalid parameter "step": zero or negative query resolution step widths are not '
     "accepted. Try a positive integer"),
    ({"start": "1", "end": "2", "step": "-1"},
     'invalid parameter "step": zero or negative query resolution step widths are not '
     "accepted. Try a positive integer"),
    ({"start": "0", "end": "11001", "step": "1"},
     "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
     "query resolution (?step=XX)"),
    ({"start": MIN_TIME_TEXT, "end": MAX_TIME_TEXT, "step": "1d"},
     "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
     "query resolution (?step=XX)"),
    ({"start": "1", "end": "2", "step": "1", "query": "up[5m]"},
     'invalid expression type "range vector" for range query, must be Scalar or instant '
     "Vector"),
    ({"start": "1", "end": "2", "step": "1", "query": '"text"'},
     'invalid expression type "string" for range query, must be Scalar or instant Vector'),
    ({"start": "1", "end": "2", "step": "1", "query": "sum("},
     "parse error: unclosed left parenthesis"),
])
async def test_query_range_validation(make_client: MakeClient, params: dict[str, str],
                                      message: str) -> None:
    engine = ScriptedEngine()
    client = await make_client(engine)
    status, body = await get(client, "/api/v1/query_range", **{"query": "up", **params})
    assert (status, body) == (400, error("bad_data", message))
    assert not engine.calls


async def test_query_range_accepts_exactly_11000_points(make_client: MakeClient) -> None:
    engine = ScriptedEngine([])
    client = await make_client(engine)
    status, _ = await get(client, "/api/v1/query_range", query="up", start="0", end="11000",
                          step="1")
    assert status == 200
    status, _ = await get(client, "/api/v1/query_range", query="up", start="0", end="2",
                          step="0.0001")
    assert status == 400  # 20,000 steps
    # A step under a millisecond is 0 ms to the engine, which would never advance: 1 ms.
    status, _ = await get(client, "/api/v1/query_range", query="up", start="1", end="1.001",
                          step="0.0001")
    assert status == 200
    assert engine.calls[-1][2:] == (1000, 1001, 1)


# -- /api/v1/series, /labels, /label/<name>/values -------------------------------------------


async def test_series(make_client: MakeClient) -> None:
    client = await make_client()
    status, body = await get(client, "/api/v1/series", **{"match[]": "up"})
    assert status == 200
    assert body == {"status": "success", "data": [
        {"__name__": "up", "instance": "a:1", "job": "api"},
        {"__name__": "up", "instance": "b:2", "job": "gpu"}]}
    response = await client.post("/api/v1/series", data=[
        ("match[]", 'up{job="gpu"}'), ("match[]", '{job="api"}'),
        ("start", str(NOW_S - 600)), ("end", str(NOW_S))])
    assert await body_of(response) == (
        '{"status":"success","data":[{"__name__":"tokens_total","job":"api",'
        '"model":"m\\u003c1\\u003e"},{"__name__":"up","instance":"a:1","job":"api"}]}')
    status, body = await get(client, "/api/v1/series", **{"match[]": "nothing_here"})
    assert body == {"status": "success", "data": []}


@pytest.mark.parametrize(("params", "message"), [
    ({}, "no match[] parameter provided"),
    ({"match[]": "up + 1"},
     'invalid parameter "match[]": parse error: "up + 1" is not a series selector'),
    ({"match[]": "up offset 5m"},
     'invalid parameter "match[]": parse error: "up offset 5m" is not a series selector'),
    ({"match[]": '{job=~".*"}'},
     'invalid parameter "match[]": parse error: vector selector must contain at least one '
     "non-empty matcher"),
    ({"match[]": "up", "start": "later"},
     "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"later\" "
     "to a valid timestamp"),
])
async def test_series_errors(make_client: MakeClient, params: dict[str, str],
                             message: str) -> None:
    client = await make_client()
    assert await get(client, "/api/v1/series", **params) == (400, error("bad_data", message))


async def test_labels_and_label_values(make_client: MakeClient) -> None:
    client = await make_client()
    assert await get(client, "/api/v1/labels") == (200, {
        "status": "success", "data": ["__name__", "instance", "job", "model"]})
    _, body = await get(client, "/api/v1/labels", **{"match[]": "up"})
    assert body["data"] == ["__name__", "instance", "job"]
    _, body = await get(client, "/api/v1/labels", start=str(NOW_S - 600))
    assert body["data"] == ["__name__", "instance", "job", "model"]
    _, body = await get(client, "/api/v1/label/job/values")
    assert body["data"] == ["api", "gpu"]
    _, body = await get(client, "/api/v1/label/__name__/values")
    assert body["data"] == ["tokens_total", "up"]
    _, body = await get(client, "/api/v1/label/job/values", start=str(NOW_S - 600))
    assert body["data"] == ["api"]
    _, body = await get(client, "/api/v1/label/job/values", **{"match[]": 'up{job="gpu"}'})
    assert body["data"] == ["gpu"]
    _, body = await get(client, "/api/v1/label/missing/values")
    assert body["data"] == []
    response = await client.post("/api/v1/labels", data={"match[]": "tokens_total"})
    assert json.loads(await body_of(response))["data"] == ["__name__", "job", "model"]


async def test_label_names_are_validated(make_client: MakeClient) -> None:
    client = await make_client()
    for name, quoted in (("foo-bar", '"foo-bar"'), ("0abc", '"0abc"'),
                         ("%C3%BC", '"ü"'), ("-" * 300, '"' + "-" * 100 + '..."')):
        status, body = await get(client, f"/api/v1/label/{name}/values")
        assert (status, body) == (400, error("bad_data", f"invalid label name: {quoted}"))
    status, body = await get(client, "/api/v1/labels", **{"match[]": "1"})
    assert (status, body) == (400, error("bad_data",
                                         'parse error: "1" is not a series selector'))


# -- hostile input ---------------------------------------------------------------------------


async def test_oversized_and_overnested_queries_are_refused(make_client: MakeClient) -> None:
    engine = ScriptedEngine()
    client = await make_client(engine)
    response = await client.post("/api/v1/query", data={"query": "x" * (64 * 1024 + 1)})
    body = json.loads(await body_of(response))
    assert response.status == 400
    assert body["error"] == ('invalid parameter "query": query is too long: 65537 bytes, '
                             "at most 65536 are accepted")
    # Thousands of chained operators would overflow the native parser's stack (a crash).
    for query in ("+".join(["1"] * 20_000), "(" * 20_000 + "1" + ")" * 20_000,
                  " or ".join(["up"] * 5000), "-" * 30_000 + "1"):
        response = await client.post("/api/v1/query", data={"query": query})
        body = json.loads(await body_of(response))
        assert response.status == 400
        assert body["error"] == ('invalid parameter "query": query is too complex: more than '
                                 "256 operators and brackets are not accepted")
    assert not engine.calls


async def test_hostile_parameters(make_client: MakeClient) -> None:
    client = await make_client(limits=ApiLimits(max_match_params=3), client_max_size=4096)
    status, body = await get(client, "/api/v1/series", **{"match[]": "up + " + "x" * 5000})
    assert status == 400 and len(body["error"]) < 200  # the input is not echoed in full
    response = await client.get("/api/v1/series?" + "&".join(["match[]=up"] * 4))
    assert response.status == 400
    assert json.loads(await body_of(response))["error"] == (
        'invalid parameter "match[]": too many match[] parameters: 4, at most 3 are accepted')
    response = await client.post("/api/v1/query", data={"query": "up" * 5000})
    assert response.status == 400
    assert json.loads(await body_of(response)) == error(
        "bad_data", "error parsing form values: request body too large")
    form = FormData()
    form.add_field("query", b"up", filename="q.txt")  # a file is not a form value
    response = await client.post("/api/v1/query", data=form)
    assert json.loads(await body_of(response))["error"].startswith(
        'invalid parameter "query": parse error')
    response = await client.get("/api/v1/query?query=%ff%fe&time=%ff")
    text = await body_of(response)
    assert response.status == 400 and json.loads(text)["errorType"] == "bad_data"
    for value in ("1e999", "NaN", "-Inf", "99999999999999999999"):
        status, body = await get(client, "/api/v1/query", query="up", time=value)
        assert status == 400 and "to a valid timestamp" in body["error"]
    status, body = await get(client, "/api/v1/rules", type="bogus")
    assert (status, body) == (400, error("bad_data",
                                         'invalid parameter "type": not supported value '
                                         '"bogus"'))


# -- /api/v1/rules, /api/v1/alerts -----------------------------------------------------------


class _State:
    def __init__(self, label: str) -> None:
        self.label = label


@dataclass
class StubAlert:
    labels: Labels
    annotations: Labels
    state: _State
    active_at: int
    value: float
    resolved_at: int | None = None
    keep_firing_since: int | None = None


@dataclass
class StubAlertingRule:
    name: str
    expr_text: str
    for_ms: int
    keep_firing_for_ms: int
    labels: dict[str, str]
    annotations: dict[str, str]
    active: dict[Labels, StubAlert]


@dataclass
class StubRecordingRule:
    name: str
    expr_text: str
    labels: dict[str, str]


@dataclass
class StubHealth:
    health: str = "unknown"
    last_error: str = ""
    last_evaluation: float = 0.0
    duration_s: float = 0.0


@dataclass
class StubGroup:
    name: str
    file: str
    interval_ms: int
    limit: int
    rules: Sequence[StubAlertingRule | StubRecordingRule]
    health: list[StubHealth]
    last_evaluation: float = 0.0
    last_duration_s: float = 0.0


def _groups() -> list[StubGroup]:
    firing = StubAlert(labels_from({"alertname": "Down", "job": "api", "severity": "page"}),
                       (("summary", "api <down>"),), _State("firing"), 1_433_337_718_555, 1.0,
                       keep_firing_since=1_433_337_778_000)
    pending = StubAlert(labels_from({"alertname": "Down", "job": "gpu", "severity": "page"}),
                        (("summary", ""),), _State("pending"), 1_433_337_700_000, 0.25)
    resolved = StubAlert(labels_from({"alertname": "Down", "job": "old"}), (),
                         _State("inactive"), 1_433_330_000_000, 0.0, resolved_at=1)
    alerting = StubAlertingRule(
        "Down", "up == 0", 300_000, 60_000, {"severity": "page"}, {"summary": "{{ $labels.job }}"},
        {a.labels: a for a in (pending, resolved, firing)})
    recording = StubRecordingRule("job:up:sum", "sum by (job) (up)", {})
    labelled = StubRecordingRule("job:up:avg", "avg by (job) (up)", {"team": "infra"})
    return [StubGroup("inferwatch", "/etc/inferwatch/rules.yml", 60_000, 0,
                      [alerting, recording, labelled],
                      [StubHealth("ok", "", 1_433_337_718.555, 0.0005),
                       StubHealth("err", "many-to-many matching not allowed", 1_433_337_718.555,
                                  1e-7),
                       StubHealth()],
                      last_evaluation=1_433_337_718.555, last_duration_s=0.25),
            StubGroup("empty", "other.yml", 15_500, 10, [], [])]


EXPECTED_FIRING = (
    '{"labels":{"alertname":"Down","job":"api","severity":"page"},'
    '"annotations":{"summary":"api \\u003cdown\\u003e"},"state":"firing",'
    '"activeAt":"2015-06-03T13:21:58.555Z","keepFiringSince":"2015-06-03T13:22:58Z",'
    '"value":"1e+00"}')
EXPECTED_PENDING = (
    '{"labels":{"alertname":"Down","job":"gpu","severity":"page"},'
    '"annotations":{"summary":""},"state":"pending","activeAt":"2015-06-03T13:21:40Z",'
    '"value":"2.5e-01"}')


async def test_rules_json_is_prometheus_shaped(make_client: MakeClient) -> None:
    client = await make_client(groups=_groups())
    response = await client.get("/api/v1/rules")
    assert response.status == 200
    assert await body_of(response) == (
        '{"status":"success","data":{"groups":[{"name":"inferwatch",'
        '"file":"/etc/inferwatch/rules.yml","rules":['
        '{"state":"firing","name":"Down","query":"up == 0","duration":300,"keepFiringFor":60,'
        '"labels":{"severity":"page"},"annotations":{"summary":"{{ $labels.job }}"},'
        f'"alerts":[{EXPECTED_FIRING},{EXPECTED_PENDING}],"health":"ok",'
        '"evaluationTime":0.0005,"lastEvaluation":"2015-06-03T13:21:58.555Z",'
        '"type":"alerting"},'
        '{"name":"job:up:sum","query":"sum by (job) (up)","health":"err",'
        '"lastError":"many-to-many matching not allowed","evaluationTime":1e-7,'
        '"lastEvaluation":"2015-06-03T13:21:58.555Z","type":"recording"},'
        '{"name":"job:up:avg","query":"avg by (job) (up)","labels":{"team":"infra"},'
        '"health":"unknown","evaluationTime":0,"lastEvaluation":"0001-01-01T00:00:00Z",'
        '"type":"recording"}],'
        '"interval":60,"limit":0,"evaluationTime":0.25,'
        '"lastEvaluation":"2015-06-03T13:21:58.555Z"},'
        '{"name":"empty","file":"other.yml","rules":[],"interval":15.5,"limit":10,'
        '"evaluationTime":0,"lastEvaluation":"0001-01-01T00:00:00Z"}]}}')


async def test_rules_type_filter(make_client: MakeClient) -> None:
    client = await make_client(groups=_groups())
    _, alert_only = await get(client, "/api/v1/rules", type="ALERT")
    _, record_only = await get(client, "/api/v1/rules", type="record")
    assert [r["type"] for r in alert_only["data"]["groups"][0]["rules"]] == ["alerting"]
    assert [r["name"] for r in record_only["data"]["groups"][0]["rules"]] == [
        "job:up:sum", "job:up:avg"]
    assert len(alert_only["data"]["groups"]) == 2  # groups stay, emptied


async def test_alerts_lists_unresolved_alerts(make_client: MakeClient) -> None:
    client = await make_client(groups=_groups())
    response = await client.get("/api/v1/alerts")
    assert await body_of(response) == (
        f'{{"status":"success","data":{{"alerts":[{EXPECTED_FIRING},{EXPECTED_PENDING}]}}}}')
    client = await make_client()
    assert await get(client, "/api/v1/alerts") == (200, {"status": "success",
                                                         "data": {"alerts": []}})


# -- what Grafana probes ---------------------------------------------------------------------


async def test_status_metadata_and_exemplars(make_client: MakeClient) -> None:
    client = await make_client()
    _, build = await get(client, "/api/v1/status/buildinfo")
    assert build["data"]["version"] == "2.42.0"
    assert set(build["data"]) == {"version", "revision", "branch", "buildUser", "buildDate",
                                  "goVersion"}
    _, runtime = await get(client, "/api/v1/status/runtimeinfo")
    assert runtime["data"]["startTime"] == "2026-01-01T00:00:00Z"
    assert runtime["data"]["storageRetention"] == "15d"
    assert await get(client, "/api/v1/metadata") == (200, {"status": "success", "data": {}})
    assert (await get(client, "/api/v1/metadata", limit="x"))[0] == 400
    assert await get(client, "/api/v1/query_exemplars", query="up", start="1", end="2") == (
        200, {"status": "success", "data": []})
    response = await client.get("/api/v1/query_exemplars", params={"query": "1 + 1"})
    assert response.status == 204  # no selectors: no data, as Prometheus answers
    status, body = await get(client, "/api/v1/query_exemplars", query="up", start="2", end="1")
    assert (status, body) == (400, error("bad_data",
                                         "end timestamp must not be before start timestamp"))


# -- the real engine over a real store -------------------------------------------------------


@pytest.fixture
def real_engine() -> Any:
    engine_module = pytest.importorskip("monitor.promql.engine")
    return engine_module.Engine(make_store())


async def test_grafana_test_connection(make_client: MakeClient, real_engine: Any) -> None:
    client = await make_client(real_engine, store=real_engine.store)
    # What Grafana's Prometheus data source sends on "Save & test".
    response = await client.get(f"/api/v1/query?query=1+%2B+1&time={NOW_S:.3f}")
    assert response.status == 200
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"scalar","result":[1767225600,"2"]}}')


async def test_real_engine_instant_and_range_queries(make_client: MakeClient,
                                                     real_engine: Any) -> None:
    client = await make_client(real_engine, store=real_engine.store)
    _, body = await get(client, "/api/v1/query", query="up", time=str(NOW_S))
    assert body["data"] == {"resultType": "vector", "result": [
        {"metric": {"__name__": "up", "instance": "a:1", "job": "api"},
         "value": [NOW_S, "1"]}]}
    _, body = await get(client, "/api/v1/query", query='tokens_total[30s]', time=str(NOW_S))
    assert body["data"]["resultType"] == "matrix"
    assert body["data"]["result"][0]["values"] == [[NOW_S - 30, "170"], [NOW_S - 15, "180"],
                                                   [NOW_S, "190"]]
    response = await client.post("/api/v1/query_range", data={
        "query": "sum by (job) (tokens_total)", "start": str(NOW_S - 30), "end": str(NOW_S),
        "step": "15"})
    assert await body_of(response) == (
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"api"},'
        '"values":[[1767225570,"170"],[1767225585,"180"],[1767225600,"190"]]}]}}')
    _, body = await get(client, "/api/v1/query", query="nothing_here", time=str(NOW_S))
    assert body["data"] == {"resultType": "vector", "result": []}
    status, body = await get(client, "/api/v1/query", query='label_replace(up, "x", "$1", '
                                                            '"job", "(")', time=str(NOW_S))
    assert status in (400, 422) and body["status"] == "error"


async def test_real_rule_groups(make_client: MakeClient, real_engine: Any) -> None:
    rules_module = pytest.importorskip("monitor.alerting.rules")
    groups_module = pytest.importorskip("monitor.alerting.groups")
    store = real_engine.store
    alerting = rules_module.AlertingRule(
        "GpuDown", parse_expr("up == 0"), "up == 0", for_ms=0, keep_firing_for_ms=0,
        labels={"severity": "page"}, annotations={"summary": "{{ $labels.job }} is down"},
        templates=rules_module.TemplateContext({}, ""))
    recording = rules_module.RecordingRule("job:up:sum", parse_expr("sum by (job) (up)"),
                                           "sum by (job) (up)", {})
    group = groups_module.RuleGroup("host", "rules.yml", 60_000, 0, [alerting, recording])
    at = NOW_MS - 3_600_000
    group.evaluate(at, real_engine.instant, store, lambda *_: None)
    client = await make_client(real_engine, store=store, groups=[group])
    _, body = await get(client, "/api/v1/alerts")
    assert body["data"]["alerts"] == [{
        "labels": {"alertname": "GpuDown", "instance": "b:2", "job": "gpu", "severity": "page"},
        "annotations": {"summary": "gpu is down"}, "state": "firing",
        "activeAt": "2025-12-31T23:00:00Z", "value": "0e+00"}]
    _, body = await get(client, "/api/v1/rules")
    (listed,) = body["data"]["groups"]
    assert [(r["name"], r["health"], r["type"]) for r in listed["rules"]] == [
        ("GpuDown", "ok", "alerting"), ("job:up:sum", "ok", "recording")]
    assert listed["rules"][0]["state"] == "firing"
    assert listed["lastEvaluation"] == "2025-12-31T23:00:00Z"
    assert listed["interval"] == 60
