"""The HTTP application (SPEC §11) through a real aiohttp server on loopback.

`/metrics` in both encodings, `/-/healthy`, `/-/ready`, `POST /-/reload`, and the bearer
token: `/metrics` and `/-/healthy` stay open, everything else needs `Authorization: Bearer`,
and a token replaced at run time (a reload) takes effect on the next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from monitor.api.app import TokenHolder, create_app
from monitor.metrics import families as fam
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
ODD_VALUE = 'quote " backslash \\ newline \n end'
TOKEN = "s3cret-token"
PROTECTED = [("GET", "/-/ready"), ("POST", "/-/reload")]
OPEN = ["/metrics", "/-/healthy"]


class FakeControl:
    """The daemon as the endpoints see it, scripted by the test."""

    def __init__(self) -> None:
        self.ready = False
        self.catching_up = ["api", "inference"]
        self.reload_error: str | None = None
        self.reloads = 0

    def is_ready(self) -> bool:
        return self.ready

    def sources_catching_up(self) -> list[str]:
        return list(self.catching_up)

    async def reload(self) -> str | None:
        self.reloads += 1
        return self.reload_error


def _store() -> MetricStore:
    store = MetricStore("inferwatch")
    requests = store.register(fam.REQUESTS)
    requests.inc(requests.key(("api", "", "deepseek-chat", "success")), 41)
    requests.inc(requests.key(("api", "", "deepseek-chat", "error")), 2)
    requests.inc(requests.key(("inference", "svc", ODD_VALUE, "success")), 3)
    duration = store.register(fam.REQUEST_DURATION)
    key = duration.key(("api", "", "deepseek-chat"))
    counts = [0] * (len(fam.DURATION_BUCKETS) + 1)
    counts[3], counts[-1] = 2, 1
    duration.merge_histogram(key, counts, 1000.5, 3)
    lag = store.register(fam.LOG_LAG_BYTES)
    lag.set(lag.key(("api",)), 0.0)
    return store


Client = TestClient
MakeClient = Callable[[TokenHolder], Awaitable[Client]]


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def make_client(control: FakeControl) -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(token: TokenHolder) -> Client:
        app = create_app(exposition=Exposition(_store()), control=control, token=token)
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client(TokenHolder(None))


# --- /metrics ------------------------------------------------------------------------------


async def test_metrics_is_text_format_by_default(client: Client) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    body = await response.text()
    assert "# EOF" not in body
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_families(body) for s in f.samples}
    assert samples["inferwatch_requests_total", (
        ("model", "deepseek-chat"), ("source", "api"), ("status", "success"))] == 41
    # Empty label values are left out; odd values survive escaping.
    assert samples["inferwatch_requests_total", (
        ("model", ODD_VALUE), ("service", "svc"), ("source", "inference"),
        ("status", "success"))] == 3
    assert samples["inferwatch_request_duration_seconds_bucket", (
        ("le", "0.25"), ("model", "deepseek-chat"), ("source", "api"))] == 2
    assert samples["inferwatch_request_duration_seconds_bucket", (
        ("le", "+Inf"), ("model", "deepseek-chat"), ("source", "api"))] == 3
    assert samples["inferwatch_request_duration_seconds_count", (
        ("model", "deepseek-chat"), ("source", "api"))] == 3
    assert samples["inferwatch_log_lag_bytes", (("source", "api"),)] == 0


async def test_metrics_is_gzipped_when_the_scraper_asks(client: Client) -> None:
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert await zipped.text() == await plain.text()  # the client inflates it


@pytest.mark.parametrize("accept", ["text/plain", "*/*", "application/json"])
async def test_metrics_other_accept_headers_get_text(client: Client, accept: str) -> None:
    response = await client.get("/metrics", headers={"Accept": accept})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_metrics_openmetrics_when_asked(client: Client) -> None:
    response = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(
        "application/openmetrics-text; version=1.0.0")
    body = await response.text()
    assert body.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(body)}
    requests = families["inferwatch_requests"]
    assert requests.type == "counter"
    values = {tuple(sorted(s.labels.items())): s.value
              for s in requests.samples if s.name == "inferwatch_requests_total"}
    assert values[("model", "deepseek-chat"), ("source", "api"), ("status", "error")] == 2
    assert values[("model", ODD_VALUE), ("service", "svc"), ("source", "inference"),
                  ("status", "success")] == 3
    assert families["inferwatch_request_duration_seconds"].type == "histogram"
    assert families["inferwatch_log_lag_bytes"].type == "gauge"


# --- /-/healthy, /-/ready, /-/reload -------------------------------------------------------


async def test_healthy(client: Client) -> None:
    response = await client.get("/-/healthy")
    assert response.status == 200
    assert "Healthy" in await response.text()


async def test_ready_names_sources_catching_up_then_200(client: Client,
                                                        control: FakeControl) -> None:
    response = await client.get("/-/ready")
    assert response.status == 503
    text = await response.text()
    assert "api" in text
    assert "inference" in text
    control.catching_up = ["inference"]
    text = await (await client.get("/-/ready")).text()
    assert "inference" in text
    assert "api" not in text
    control.ready, control.catching_up = True, []
    response = await client.get("/-/ready")
    assert response.status == 200
    assert "Ready" in await response.text()


async def test_reload_ok(client: Client, control: FakeControl) -> None:
    response = await client.post("/-/reload")
    assert response.status == 200
    assert control.reloads == 1


async def test_reload_failure_is_500_with_the_error(client: Client,
                                                    control: FakeControl) -> None:
    control.reload_error = "inferwatch.yml:7: sources[0].schema: must be one of inference"
    response = await client.post("/-/reload")
    assert response.status == 500
    assert control.reload_error in await response.text()
    assert control.reloads == 1


async def test_reload_needs_post(client: Client, control: FakeControl) -> None:
    response = await client.get("/-/reload")
    assert response.status == 405
    assert control.reloads == 0


# --- bearer token --------------------------------------------------------------------------


@pytest.mark.parametrize("path", OPEN)
async def test_open_endpoints_need_no_token(make_client: MakeClient, path: str) -> None:
    client = await make_client(TokenHolder(TOKEN))
    assert (await client.get(path)).status == 200
    # A wrong token on an open endpoint is ignored, not refused.
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 200


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("authorization", [
    None,
    "Bearer wrong",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    "Bearer ",
    TOKEN,
    f"Basic {TOKEN}",
    f"bearer{TOKEN}",
])
async def test_protected_endpoints_refuse_missing_or_wrong_token(
        make_client: MakeClient, control: FakeControl, method: str, path: str,
        authorization: str | None) -> None:
    control.ready = True
    client = await make_client(TokenHolder(TOKEN))
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.request(method, path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert control.reloads == 0  # refused before the handler ran


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_endpoints_accept_the_token(make_client: MakeClient,
                                                    control: FakeControl, method: str,
                                                    path: str) -> None:
    control.ready = True
    client = await make_client(TokenHolder(TOKEN))
    response = await client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200


async def test_unknown_paths_are_protected_too(make_client: MakeClient) -> None:
    client = await make_client(TokenHolder(TOKEN))
    assert (await client.get("/api/v1/query")).status == 401
    response = await client.get("/api/v1/query", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 404


async def test_token_replaced_at_runtime_takes_effect(make_client: MakeClient,
                                                      control: FakeControl) -> None:
    control.ready = True
    holder = TokenHolder(TOKEN)
    client = await make_client(holder)
    old, new = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer rotated-2"}
    assert (await client.get("/-/ready", headers=old)).status == 200
    holder.token = "rotated-2"
    assert (await client.get("/-/ready", headers=old)).status == 401
    assert (await client.get("/-/ready", headers=new)).status == 200
    assert (await client.get("/metrics")).status == 200
    holder.token = None  # authentication switched off by a reload
    assert (await client.get("/-/ready")).status == 200
    holder.token = TOKEN  # and on again
    assert (await client.get("/-/ready")).status == 401


async def test_no_token_configured_means_everything_open(client: Client,
                                                         control: FakeControl) -> None:
    control.ready = True
    assert (await client.get("/-/ready")).status == 200
    assert (await client.post("/-/reload")).status == 200


async def raw_request(client: Client, request: bytes) -> tuple[int, bytes]:
    """Bytes on the wire as no HTTP client would send them; the status and the whole reply."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line = reply.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), reply


@pytest.mark.parametrize("credentials", [
    b"Bearer sekr\xe9t",  # Latin-1, not UTF-8
    b"Bearer \xff\xfe",
    b"Bearer " + TOKEN.encode() + b"\xe9",
    b"\xc3(earer " + TOKEN.encode(),
])
async def test_undecodable_authorization_bytes_are_401_not_500(
        make_client: MakeClient, control: FakeControl, caplog: pytest.LogCaptureFixture,
        credentials: bytes) -> None:
    control.ready = True
    client = await make_client(TokenHolder(TOKEN))
    caplog.set_level(logging.DEBUG)
    status, reply = await raw_request(
        client,
        b"GET /-/ready HTTP/1.1\r\nHost: localhost\r\nAuthorization: " + credentials
        + b"\r\nConnection: close\r\n\r\n")
    assert status == 401, reply
    assert b"WWW-Authenticate: Bearer" in reply
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("authorization", [
    f"bearer {TOKEN}",
    f"BEARER {TOKEN}",
    f"Bearer   {TOKEN}",
    f"Bearer {TOKEN}   ",
    f"  Bearer {TOKEN}",
])
async def test_the_scheme_is_case_insensitive_and_spaces_around_the_token_are_allowed(
        make_client: MakeClient, control: FakeControl, authorization: str) -> None:
    control.ready = True
    client = await make_client(TokenHolder(TOKEN))
    response = await client.get("/-/ready", headers={"Authorization": authorization})
    assert response.status == 200
