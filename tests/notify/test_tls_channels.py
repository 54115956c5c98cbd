"""`http_config.tls_config` in the webhook and Alertmanager-forwarding channels, against a
real HTTPS aiohttp server on 127.0.0.1.

The server's certificate is self-signed for "inferwatch-test.local" only, so each check
really happens: it is not trusted by default, it does not match 127.0.0.1 without
`server_name`, and the server can demand a client certificate signed by the client's CA.
The server records the SNI name each handshake asked for, so `server_name` is seen on the
wire and not only in the verification.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from smtp_servers import CertFiles, common_name, make_certificate, server_tls_context

from monitor.clock import FakeClock
from monitor.config_notify import AlertmanagerForwardConfig, TlsConfig, WebhookConfig
from monitor.notify.channels import tls as tls_module
from monitor.notify.channels.alertmanager import AlertmanagerChannel
from monitor.notify.channels.http import post_json
from monitor.notify.channels.tls import http_tls_context
from monitor.notify.channels.webhook import WebhookChannel
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SERVER_NAME = "inferwatch-test.local"
CLIENT_NAME = "client.test"
TIMEOUT = "3s"  # every delivery here is on loopback: a hang fails fast


@dataclass(frozen=True)
class Certs:
    server: CertFiles
    client: CertFiles


@dataclass
class HttpsServer:
    """What the HTTPS endpoint saw: bodies by path, SNI names, client certificate names."""

    base: str = ""
    bodies: dict[str, list[Any]] = field(default_factory=dict)
    sni: list[str | None] = field(default_factory=list)
    client_names: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.setdefault(request.path, []).append(orjson.loads(await request.read()))
        ssl_object = request.transport.get_extra_info("ssl_object") \
            if request.transport is not None else None
        self.client_names.append(
            common_name(ssl_object.getpeercert() if ssl_object is not None else None))
        return web.Response(text="ok")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("https-certs")
    return Certs(make_certificate(directory, SERVER_NAME),
                 make_certificate(directory, CLIENT_NAME))


@contextlib.asynccontextmanager
async def serving_https(context: ssl.SSLContext) -> AsyncIterator[HttpsServer]:
    server = HttpsServer()

    def record_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        server.sni.append(name)

    context.sni_callback = record_sni
    app = web.Application()
    app.router.add_post("/{path:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        server.base = f"https://127.0.0.1:{runner.addresses[0][1]}"
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def https(certs: Certs) -> AsyncIterator[HttpsServer]:
    async with serving_https(server_tls_context(certs.server)) as server:
        yield server


@pytest.fixture
async def mtls(certs: Certs) -> AsyncIterator[HttpsServer]:
    """A server that refuses any client without a certificate from the client CA."""
    context = server_tls_context(certs.server, client_ca=certs.client.cert)
    context.verify_mode = ssl.CERT_REQUIRED
    async with serving_https(context) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def webhook(session: aiohttp.ClientSession, url: str,
            tls_config: dict[str, Any] | None = None) -> WebhookChannel:
    config = WebhookConfig.model_validate(
        {"url": url + "/hook", "timeout": TIMEOUT,
         "http_config": {"tls_config": tls_config or {}}})
    return WebhookChannel(config, receiver="ops", index=0, session=session,
                          clock=FakeClock(T0), renderer=Renderer())


def forwarder(session: aiohttp.ClientSession, url: str,
              tls_config: dict[str, Any] | None = None) -> AlertmanagerChannel:
    config = AlertmanagerForwardConfig.model_validate(
        {"urls": [url], "timeout": TIMEOUT, "http_config": {"tls_config": tls_config or {}}})
    return AlertmanagerChannel(config, receiver="central", index=0, session=session,
                               clock=FakeClock(T0), renderer=Renderer())


def notification() -> Notification:
    alert = NotifyAlert({"alertname": "CertCheck", "host": "gpu-1"}, {"summary": "tls"},
                        starts_at=T0 - 60)
    return Notification("ops", "{}:{}", {"alertname": "CertCheck"}, (alert,), T0)


def trusted(certs: Certs, **extra: Any) -> dict[str, Any]:
    return {"ca_file": str(certs.server.cert), "server_name": SERVER_NAME, **extra}


def with_client_cert(certs: Certs) -> dict[str, Any]:
    return trusted(certs, cert_file=str(certs.client.cert), key_file=str(certs.client.key))


def test_a_tls_config_left_at_its_defaults_keeps_aiohttps_own_verification() -> None:
    assert http_tls_context(TlsConfig()) is None
    assert http_tls_context(TlsConfig(insecure_skip_verify=False)) is None
    assert http_tls_context(TlsConfig(insecure_skip_verify=True)) is not None


async def test_post_json_passes_the_context_and_the_server_name_to_aiohttp(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession) -> None:
    # A plain context (not tls.py's): the name must reach the handshake through aiohttp.
    context = ssl.create_default_context(cafile=str(certs.server.cert))
    url = https.base + "/plain"
    outcome = await post_json(session, url, {"n": 1}, timeout=3.0, ssl=context,
                              server_hostname=SERVER_NAME)
    assert outcome.ok, outcome
    mismatch = await post_json(session, url, {"n": 2}, timeout=3.0, ssl=context)
    assert (mismatch.error, mismatch.transient) == ("tls_error", True)
    untrusted = await post_json(session, url, {"n": 3}, timeout=3.0,
                                server_hostname=SERVER_NAME)
    assert untrusted.error == "tls_error"
    assert https.bodies == {"/plain": [{"n": 1}]}
    assert https.sni == [SERVER_NAME, None, SERVER_NAME]


async def test_default_tls_config_does_not_trust_a_self_signed_server(
        https: HttpsServer, session: aiohttp.ClientSession) -> None:
    channel = webhook(session, https.base)
    delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "tls_error")
    assert "127.0.0.1" in delivery.detail
    assert https.bodies == {}


async def test_ca_file_and_server_name_deliver(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession) -> None:
    channel = webhook(session, https.base, trusted(certs))
    message = channel.render(notification())
    delivery = await channel.deliver(message)
    assert delivery.ok, delivery
    assert https.bodies == {"/hook": [message]}
    assert https.sni == [SERVER_NAME]  # the configured name, not the URL's 127.0.0.1


async def test_ca_file_without_server_name_fails_on_the_host_name(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession) -> None:
    channel = webhook(session, https.base, {"ca_file": str(certs.server.cert)})
    delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "tls_error")
    assert https.bodies == {}


async def test_insecure_skip_verify_delivers_to_an_untrusted_server(
        https: HttpsServer, session: aiohttp.ClientSession) -> None:
    channel = webhook(session, https.base, {"insecure_skip_verify": True})
    delivery = await channel.deliver(channel.render(notification()))
    assert delivery.ok, delivery
    assert len(https.bodies["/hook"]) == 1


async def test_a_server_that_demands_a_client_certificate(
        mtls: HttpsServer, certs: Certs, session: aiohttp.ClientSession) -> None:
    without = webhook(session, mtls.base, trusted(certs))
    delivery = await without.deliver(without.render(notification()))
    # Under TLS 1.3 the server judges the client's certificate after the handshake, so the
    # client sees only a connection reset; under TLS 1.2 it is a handshake alert.
    assert (delivery.ok, delivery.retry) == (False, True), delivery
    assert delivery.reason in {"connection_error", "tls_error"}
    assert mtls.bodies == {}

    with_cert = webhook(session, mtls.base, with_client_cert(certs))
    delivery = await with_cert.deliver(with_cert.render(notification()))
    assert delivery.ok, delivery
    assert len(mtls.bodies["/hook"]) == 1
    assert mtls.client_names == [CLIENT_NAME]


async def test_a_key_that_will_not_load_is_a_permanent_tls_failure(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    garbage = tmp_path / "client.key"
    garbage.write_text("not a key\n")
    channel = webhook(session, https.base,
                      trusted(certs, cert_file=str(certs.client.cert), key_file=str(garbage)))
    delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, False, "tls")
    assert delivery.detail.startswith(
        f"http_config.tls_config will not load (ca_file {certs.server.cert}, "
        f"cert_file {certs.client.cert}, key_file {garbage}): "), delivery.detail
    assert https.bodies == {} and https.sni == []  # nothing was dialled


async def test_the_context_is_built_once_per_channel(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ssl.SSLContext | None] = []
    real = tls_module.http_tls_context

    def counting(config: TlsConfig) -> ssl.SSLContext | None:
        built.append(real(config))
        return built[-1]

    monkeypatch.setattr(tls_module, "http_tls_context", counting)
    channel = webhook(session, https.base, trusted(certs))
    assert (await channel.deliver(channel.render(notification()))).ok
    assert (await channel.deliver(channel.render(notification()))).ok
    assert len(built) == 1 and built[0] is not None
    assert len(https.bodies["/hook"]) == 2
    # A default tls_config (aiohttp's own verification) is decided once too.
    plain = webhook(session, https.base)
    for _ in range(2):
        assert not (await plain.deliver(plain.render(notification()))).ok
    assert len(built) == 2 and built[1] is None


async def test_alertmanager_forwarding_honours_tls_config(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession) -> None:
    untrusted = forwarder(session, https.base)
    delivery = await untrusted.deliver(untrusted.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "tls_error")
    assert "alertmanager 1 of 1" in delivery.detail

    channel = forwarder(session, https.base, trusted(certs))
    message = channel.render(notification())
    delivery = await channel.deliver(message)
    assert delivery.ok and delivery.detail == "", delivery
    assert https.bodies == {"/api/v2/alerts": [message["alerts"]]}
    assert https.sni[-1] == SERVER_NAME  # the untrusted attempt sent none: IPs get no SNI


async def test_alertmanager_forwarding_with_a_client_certificate(
        mtls: HttpsServer, certs: Certs, session: aiohttp.ClientSession) -> None:
    channel = forwarder(session, mtls.base, with_client_cert(certs))
    assert (await channel.deliver(channel.render(notification()))).ok
    assert mtls.client_names == [CLIENT_NAME]


async def test_alertmanager_forwarding_with_a_bad_key_is_permanent(
        https: HttpsServer, certs: Certs, session: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    garbage = tmp_path / "client.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    channel = forwarder(session, https.base,
                        trusted(certs, cert_file=str(certs.client.cert), key_file=str(garbage)))
    delivery = await channel.deliver(channel.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, False, "tls")
    assert "tls_config" in delivery.detail
    assert https.bodies == {}
