"""The email channel (monitor/notify/channels/email.py) against real aiosmtpd servers.

STARTTLS with a self-signed certificate for `mail.test` (we dial 127.0.0.1, so the
certificate only verifies through `tls_config.server_name`) and AUTH PLAIN/LOGIN required;
implicit TLS with a client certificate; plain SMTP without STARTTLS. What the server got is
parsed back with the standard library and checked header by header and part by part.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from smtp_servers import (
    CertFiles,
    RecordingHandler,
    make_certificate,
    running_smtp,
    server_tls_context,
)

from monitor.clock import FakeClock
from monitor.config_notify import EmailConfig
from monitor.notify.channels.base import Message
from monitor.notify.channels.email import EmailChannel, build_mime, classify_smtp_error
from monitor.notify.model import Notification, NotifyAlert
from monitor.notify.render import Renderer

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
USER, PASSWORD = "alerts", "s3cret-pw"
TO = "运维 <ops@example.com>, oncall@example.com"
FROM = "Inferwatch <alerts@example.com>"


@dataclass(frozen=True)
class Certs:
    server: CertFiles
    client: CertFiles


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    return Certs(make_certificate(directory, "mail.test"),
                 make_certificate(directory, "client.test"))


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler(credentials={USER: PASSWORD})


@pytest.fixture
def starttls_port(certs: Certs, handler: RecordingHandler,
                  free_port: Callable[[], int]) -> Iterator[int]:
    port = free_port()
    with running_smtp(handler, port, starttls=server_tls_context(certs.server)):
        yield port


def notification(*, now: float = T0) -> Notification:
    alerts = (
        NotifyAlert({"alertname": "高延迟", "severity": "page", "instance": "gpu-1"},
                    {"summary": "p99 <b>above</b> 2s", "description": "first line\nsecond"},
                    starts_at=now - 300, generator_url="http://prom/graph?g0.expr=up"),
        NotifyAlert({"alertname": "高延迟", "severity": "page", "instance": "gpu-2"},
                    {"summary": "recovered"}, starts_at=now - 900, ends_at=now - 60),
    )
    return Notification("ops", '{}:{alertname="高延迟"}', {"alertname": "高延迟"}, alerts, now)


def config(port: int, certs: Certs | None = None, **extra: Any) -> EmailConfig:
    data: dict[str, Any] = {"to": TO, "from": FROM, "smarthost": f"127.0.0.1:{port}",
                            "hello": "inferwatch.test"}
    if certs is not None:
        data["tls_config"] = {"ca_file": str(certs.server.cert), "server_name": "mail.test"}
        data.update(auth_username=USER, auth_password=PASSWORD)
    return EmailConfig.model_validate({**data, **extra})


def channel(cfg: EmailConfig, *, clock: FakeClock | None = None) -> EmailChannel:
    return EmailChannel(cfg, receiver="ops", index=0, session=None, clock=clock or FakeClock(T0),
                        renderer=Renderer(timezone="Asia/Shanghai"), hostname="mon.test",
                        timeout=5.0)


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def headers(message: Message) -> dict[str, str]:
    return dict(message["headers"])


async def test_starttls_with_auth_plain_delivers_text_and_html(
        starttls_port: int, certs: Certs, handler: RecordingHandler) -> None:
    chan = channel(config(starttls_port, certs))
    message = chan.render(notification())
    delivery = await chan.deliver(message)

    assert delivery.ok, delivery
    [got] = handler.received
    assert got.tls and got.auth_mechanism == "PLAIN" and got.ehlo == "inferwatch.test"
    assert got.mail_from == "alerts@example.com"
    assert got.rcpt_tos == ["ops@example.com", "oncall@example.com"]

    mail = parsed(got.data)
    # Non-ASCII header text travels as RFC 2047 encoded words and decodes back exactly.
    raw_headers = got.data.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii() and b"=?utf-8?" in raw_headers
    assert mail["Subject"] == "[FIRING:1] 高延迟 (page)"
    assert mail["From"] == FROM
    assert [(a.display_name, a.addr_spec) for a in mail["To"].addresses] == \
        [("运维", "ops@example.com"), ("", "oncall@example.com")]
    assert mail["Message-Id"] == headers(message)["Message-Id"]
    assert mail["Message-Id"].startswith("<") and mail["Message-Id"].endswith("@mon.test>")
    date = parsedate_to_datetime(mail["Date"])
    assert date.timestamp() == T0 and date.utcoffset() is not None \
        and date.utcoffset().total_seconds() == 8 * 3600  # type: ignore[union-attr]

    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    plain, markup = text.get_content(), html.get_content()
    assert "FIRING | 1 firing | 1 resolved" in plain
    assert "p99 <b>above</b> 2s" in plain  # text is not escaped
    assert "p99 &lt;b&gt;above&lt;/b&gt; 2s" in markup and "<b>above" not in markup
    assert "2026-01-01 07:55:00 CST" in plain  # local time in the configured zone
    assert "gpu-2" in markup and "recovered" in markup


async def test_auth_login_when_the_server_offers_only_login(
        certs: Certs, handler: RecordingHandler, free_port: Callable[[], int]) -> None:
    port = free_port()
    with running_smtp(handler, port, starttls=server_tls_context(certs.server),
                      exclude_mechanisms=("PLAIN",)):
        chan = channel(config(port, certs))
        delivery = await chan.deliver(chan.render(notification()))
    assert delivery.ok, delivery
    assert handler.received[0].auth_mechanism == "LOGIN"


async def test_a_retry_sends_the_same_message_id_and_a_new_render_a_new_one(
        starttls_port: int, certs: Certs, handler: RecordingHandler) -> None:
    chan = channel(config(starttls_port, certs))
    message = chan.render(notification())
    assert (await chan.deliver(message)).ok
    assert (await chan.deliver(message)).ok

    first, second = (parsed(got.data) for got in handler.received)
    assert first["Message-Id"] == second["Message-Id"] == headers(message)["Message-Id"]
    assert first["Date"] == second["Date"]
    assert headers(chan.render(notification()))["Message-Id"] != first["Message-Id"]


async def test_wrong_password_is_a_permanent_smtp_535(
        starttls_port: int, certs: Certs, handler: RecordingHandler) -> None:
    chan = channel(config(starttls_port, certs, auth_password="wrong"))
    delivery = await chan.deliver(chan.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, False, "smtp_535")
    assert "wrong" not in delivery.detail
    assert handler.received == []


async def test_an_untrusted_certificate_is_a_permanent_tls_failure(
        starttls_port: int, certs: Certs, handler: RecordingHandler) -> None:
    no_ca = channel(config(starttls_port, certs, tls_config={"server_name": "mail.test"}))
    delivery = await no_ca.deliver(no_ca.render(notification()))
    assert (delivery.retry, delivery.reason) == (False, "tls")
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.detail

    # Trusted, but the certificate names mail.test and we dialled 127.0.0.1.
    wrong_name = channel(config(starttls_port, certs,
                                tls_config={"ca_file": str(certs.server.cert)}))
    delivery = await wrong_name.deliver(wrong_name.render(notification()))
    assert (delivery.retry, delivery.reason) == (False, "tls")

    skip = channel(config(starttls_port, certs, tls_config={"insecure_skip_verify": True}))
    assert (await skip.deliver(skip.render(notification()))).ok
    assert len(handler.received) == 1


async def test_implicit_tls_with_a_client_certificate(
        certs: Certs, free_port: Callable[[], int]) -> None:
    handler = RecordingHandler()
    port = free_port()
    context = server_tls_context(certs.server, client_ca=certs.client.cert)
    with running_smtp(handler, port, implicit_tls=context):
        cfg = config(port, force_implicit_tls=True, tls_config={
            "ca_file": str(certs.server.cert), "server_name": "mail.test",
            "cert_file": str(certs.client.cert), "key_file": str(certs.client.key)})
        assert cfg.implicit_tls
        chan = channel(cfg)
        delivery = await chan.deliver(chan.render(notification()))
    assert delivery.ok, delivery
    [got] = handler.received
    assert got.tls and got.client_cert_cn == "client.test"


async def test_require_tls_fails_permanently_without_starttls(
        free_port: Callable[[], int]) -> None:
    handler = RecordingHandler()
    port = free_port()
    with running_smtp(handler, port):
        strict = channel(config(port))
        delivery = await strict.deliver(strict.render(notification()))
        assert (delivery.retry, delivery.reason) == (False, "starttls_unsupported")
        assert handler.received == []

        relaxed = channel(config(port, require_tls=False))
        assert (await relaxed.deliver(relaxed.render(notification()))).ok
    [got] = handler.received
    assert not got.tls and got.auth_mechanism is None


@pytest.mark.parametrize(("rcpt_reply", "data_reply", "retry", "reason"), [
    (None, "451 4.3.0 Try again later", True, "smtp_451"),
    (None, "554 5.6.0 Message rejected", False, "smtp_554"),
    ("450 4.2.1 Mailbox busy", "250 OK", True, "smtp_450"),
    ("550 5.1.1 No such user", "250 OK", False, "smtp_550"),
])
async def test_smtp_replies_are_classified_by_their_class(
        rcpt_reply: str | None, data_reply: str, retry: bool, reason: str,
        free_port: Callable[[], int]) -> None:
    handler = RecordingHandler(rcpt_reply=rcpt_reply, data_reply=data_reply)
    port = free_port()
    with running_smtp(handler, port):
        chan = channel(config(port, require_tls=False))
        delivery = await chan.deliver(chan.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, retry, reason)


async def test_some_refused_recipients_do_not_make_a_retry(
        free_port: Callable[[], int]) -> None:
    handler = RecordingHandler(refuse=frozenset({"nobody@example.com"}))
    port = free_port()
    with running_smtp(handler, port):
        chan = channel(config(port, require_tls=False, to="ops@example.com, nobody@example.com"))
        delivery = await chan.deliver(chan.render(notification()))
    assert delivery.ok and "nobody@example.com (550)" in delivery.detail
    assert handler.received[0].rcpt_tos == ["ops@example.com"]


async def test_nobody_listening_is_a_transient_connection_failure(
        free_port: Callable[[], int]) -> None:
    chan = channel(config(free_port()))
    delivery = await chan.deliver(chan.render(notification()))
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "connection")


async def test_a_silent_server_is_a_transient_timeout(free_port: Callable[[], int]) -> None:
    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    port = free_port()
    server = await asyncio.start_server(say_nothing, "127.0.0.1", port)
    async with server:
        chan = EmailChannel(config(port), receiver="ops", index=0, session=None,
                            clock=FakeClock(T0), renderer=Renderer(), timeout=0.2)
        delivery = await asyncio.wait_for(chan.deliver(chan.render(notification())), 5)
    assert (delivery.ok, delivery.retry, delivery.reason) == (False, True, "timeout")


def test_custom_headers_override_the_defaults_and_stay_on_one_line() -> None:
    cfg = config(25, headers={"subject": "{{ status }}: {{ common_labels.severity }}\nBcc: x@y",
                              "To": "team@example.com", "X-Group": "{{ receiver }}"})
    message = channel(cfg).render(notification())
    got = headers(message)
    assert got["subject"] == "firing: page Bcc: x@y"
    assert got["To"] == "team@example.com"
    assert got["From"] == FROM and got["X-Group"] == "ops"
    assert "Subject" not in got
    # The envelope still goes to the configured `to`, as in Alertmanager.
    assert message["envelope_to"] == ["ops@example.com", "oncall@example.com"]
    mail = build_mime(message)
    assert mail["Subject"] == "firing: page Bcc: x@y" and mail["Bcc"] is None


def test_receiver_templates_replace_the_default_bodies() -> None:
    cfg = config(25, text="{{ alerts | length }} alerts",
                 html="<p>{{ alerts[0].annotations.summary }}</p>")
    message = channel(cfg).render(notification())
    assert message["text"] == "2 alerts"
    assert message["html"] == "<p>p99 &lt;b&gt;above&lt;/b&gt; 2s</p>"


def test_the_stored_message_holds_no_password(certs: Certs) -> None:
    message = channel(config(25, certs)).render(notification())
    assert PASSWORD not in repr(message)


def test_resolved_subject_and_rate_key() -> None:
    resolved = notification(now=T0 + 3600)
    resolved = Notification(resolved.receiver, resolved.group_key, resolved.group_labels,
                            tuple(NotifyAlert(a.labels, a.annotations, a.starts_at, T0)
                                  for a in resolved.alerts), resolved.now)
    chan = channel(config(25))
    assert headers(chan.render(resolved))["Subject"] == "[RESOLVED] 高延迟 (page)"
    assert chan.rate_key.startswith("email:") and "127.0.0.1" not in chan.rate_key
    assert chan.limits == () and chan.merge([{}]) is None and not chan.send_resolved


def test_unclassifiable_errors_are_transient() -> None:
    assert classify_smtp_error(OSError("boom")).retry


async def test_two_from_addresses_are_permanent() -> None:
    chan = channel(config(25, **{"from": "first@example.com, second@example.com"}))
    delivery = await chan.deliver(chan.render(notification()))
    assert (delivery.retry, delivery.reason) == (False, "address")


async def test_a_certificate_that_will_not_load_is_a_permanent_tls_failure(
        tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    chan = channel(config(25, tls_config={"ca_file": str(garbage)}))
    delivery = await chan.deliver(chan.render(notification()))
    assert (delivery.retry, delivery.reason) == (False, "tls")
