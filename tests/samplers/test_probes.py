"""ProbeSampler (monitor/samplers/probes.py) against real aiohttp servers on 127.0.0.1: fine,
500, slow, down, expected statuses, redirects, a stalled body, TLS with a self-signed
certificate, concurrent calls sharing one request, and the session released on close."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.clock import SystemClock
from monitor.config_models import ProbeConfig
from monitor.metrics import families as fam
from monitor.metrics.store import FamilySpec, GaugeSeries, MetricStore
from monitor.samplers.probes import MAX_BODY_BYTES, ProbeSampler, probe_session

TIMEOUT_S = 0.5
WAIT_S = 10.0  # the longest any handler holds a request; teardown releases them sooner


@dataclass
class Target:
    """The server's side: requests seen per path, and a gate the slow handlers wait on."""

    base: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ok", self.ok)
        app.router.add_get("/created", self.status(201))
        app.router.add_get("/fail", self.status(500))
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/gated", self.gated)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/big", self.big)
        app.router.add_get("/redirect", self.redirect("/ok"))
        app.router.add_get("/loop", self.redirect("/loop"))
        return app

    def count(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1

    async def ok(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.Response(text="ok")

    def status(self, code: int) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            self.count(request)
            return web.Response(status=code, text="status")
        return handler

    def redirect(self, location: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            self.count(request)
            raise web.HTTPFound(location)
        return handler

    async def slow(self, request: web.Request) -> web.Response:
        self.count(request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), WAIT_S)
        return web.Response(text="late")

    async def gated(self, request: web.Request) -> web.Response:
        self.count(request)
        self.arrived.set()
        await asyncio.wait_for(self.release.wait(), WAIT_S)
        return web.Response(text="ok")

    async def stall(self, request: web.Request) -> web.StreamResponse:
        """Headers and a first chunk at once, the rest never (within the probe's timeout)."""
        self.count(request)
        response = web.StreamResponse(status=200)
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"x" * 10)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), WAIT_S)
        return response

    async def big(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.Response(body=b"x" * (16 * MAX_BODY_BYTES))


@contextlib.asynccontextmanager
async def serving(context: ssl.SSLContext | None = None) -> AsyncIterator[Target]:
    target = Target()
    runner = web.AppRunner(target.app(), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    scheme = "https" if context is not None else "http"
    target.base = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield target
    finally:
        target.release.set()
        await runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with serving() as server:
        yield server


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("probe-tls")
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=probe-test.local",
         "-addext", "subjectAltName=DNS:probe-test.local",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture
async def tls_target(certificate: tuple[Path, Path]) -> AsyncIterator[Target]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    async with serving(context) as server:
        yield server


class Probe:
    """One ProbeSampler and the store it writes."""

    def __init__(self, url: str, **config: Any) -> None:
        self.store = MetricStore()
        self.config = ProbeConfig.model_validate(
            {"name": "health", "url": url, "interval": "10s",
             "timeout": f"{TIMEOUT_S * 1000:g}ms", **config})
        self.sessions: list[aiohttp.ClientSession] = []
        self.sampler = ProbeSampler(self.config, store=self.store, clock=SystemClock(),
                                    session_factory=self._session)

    def _session(self) -> aiohttp.ClientSession:
        session = probe_session()
        self.sessions.append(session)
        return session

    async def run(self) -> None:
        await asyncio.wait_for(self.sampler.sample(), WAIT_S)

    def get(self, spec: FamilySpec) -> float | None:
        family = self.store.register(spec)
        series = family.series.get(family.key(["health"]))
        if series is None:
            return None
        assert isinstance(series, GaugeSeries)
        return series.value

    @property
    def success(self) -> float | None:
        return self.get(fam.PROBE_SUCCESS)

    @property
    def status(self) -> float | None:
        return self.get(fam.PROBE_STATUS_CODE)

    @property
    def duration(self) -> float:
        duration = self.get(fam.PROBE_DURATION)
        assert duration is not None
        return duration


@pytest.fixture
async def probe() -> AsyncIterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(url: str, **config: Any) -> Probe:
        made.append(Probe(url, **config))
        return made[-1]

    yield make
    for each in made:
        await each.sampler.close()


async def test_a_healthy_endpoint(target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/ok")
    await health.run()
    assert health.success == 1
    assert health.status == 200
    assert 0 < health.duration < TIMEOUT_S
    assert health.sampler.last_error is None
    await health.run()
    assert target.hits["/ok"] == 2  # one request per sample, none held back


async def test_a_server_error_fails(target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/fail")
    await health.run()
    assert health.success == 0
    assert health.status == 500
    assert health.sampler.last_error == "answered with status 500"


async def test_a_slow_endpoint_times_out(target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/slow")
    await health.run()
    assert health.success == 0
    assert health.status == 0
    assert health.duration >= TIMEOUT_S * 0.9


async def test_a_body_that_stalls_after_the_headers_fails(
        target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/stall")
    await health.run()
    assert health.success == 0
    assert health.status == 200  # an answer came; it did not finish in time
    assert health.duration >= TIMEOUT_S * 0.9


async def test_a_closed_port_is_refused(
        probe: Callable[..., Probe], free_port: Callable[[], int]) -> None:
    health = probe(f"http://127.0.0.1:{free_port()}/health")
    await health.run()
    assert health.success == 0
    assert health.status == 0
    assert health.duration < TIMEOUT_S
    assert health.sampler.last_error is not None
    assert "cannot connect" in health.sampler.last_error


async def test_any_2xx_passes_by_default(target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/created")
    await health.run()
    assert health.success == 1
    assert health.status == 201


async def test_expect_status_lists_the_accepted_codes(
        target: Target, probe: Callable[..., Probe]) -> None:
    expects_500 = probe(target.base + "/fail", expect_status=[500, 503])
    await expects_500.run()
    assert expects_500.success == 1
    strict = probe(target.base + "/created", expect_status=[200])
    await strict.run()
    assert strict.success == 0
    assert strict.status == 201


async def test_redirects_are_followed_and_the_last_answer_decides(
        target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/redirect")
    await health.run()
    assert health.success == 1
    assert health.status == 200
    assert target.hits == {"/redirect": 1, "/ok": 1}


async def test_a_redirect_loop_fails(target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/loop")
    await health.run()
    assert health.success == 0
    assert health.status == 0
    assert target.hits["/loop"] == 11  # the first request and ten redirects followed


async def test_a_large_body_is_read_up_to_the_cap_only(
        target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/big")
    await health.run()
    assert health.success == 1
    assert health.status == 200


async def test_an_untrusted_certificate_fails_unless_verification_is_off(
        tls_target: Target, probe: Callable[..., Probe]) -> None:
    verifying = probe(tls_target.base + "/ok")
    await verifying.run()
    assert verifying.success == 0
    assert verifying.status == 0
    assert verifying.sampler.last_error is not None
    assert "TLS" in verifying.sampler.last_error
    trusting = probe(tls_target.base + "/ok", verify_tls=False)
    await trusting.run()
    assert trusting.success == 1
    assert trusting.status == 200
    assert tls_target.hits == {"/ok": 1}


async def test_concurrent_samples_share_one_request(
        target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/gated")
    calls = [asyncio.create_task(health.run()) for _ in range(5)]
    await asyncio.wait_for(target.arrived.wait(), WAIT_S)
    await asyncio.sleep(0)  # let every call reach the sampler before the answer comes
    target.release.set()
    await asyncio.wait_for(asyncio.gather(*calls), WAIT_S)
    assert target.hits == {"/gated": 1}
    assert health.sampler.joined_calls == 4
    assert health.success == 1


async def test_close_releases_the_session(target: Target, probe: Callable[..., Probe]) -> None:
    health = probe(target.base + "/ok")
    await health.run()
    assert len(health.sessions) == 1
    assert not health.sessions[0].closed
    await health.sampler.close()
    assert health.sessions[0].closed
    with pytest.raises(RuntimeError, match="closed"):
        await health.sampler.sample()
