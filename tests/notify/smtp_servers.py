"""Real SMTP servers (aiosmtpd) for the email channel tests, and the certificates they use.

- `make_certificate`: a self-signed EC certificate from `openssl req` (the venv has no
  `cryptography`), valid for one DNS name only, so host-name checks really happen.
- `RecordingHandler`: keeps what each delivery looked like on the server side (envelope,
  raw bytes, TLS, AUTH mechanism, EHLO name) and can answer RCPT/DATA with a scripted reply.
- `running_smtp`: an aiosmtpd Controller (its own thread and loop) as a context manager, in
  one of three shapes: STARTTLS offered and required with AUTH required after it, implicit
  TLS from the first byte (optionally demanding a client certificate), or plain SMTP that
  offers neither STARTTLS nor AUTH.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

OPENSSL_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def make_certificate(directory: Path, dns_name: str) -> CertFiles:
    """A self-signed certificate (its own CA) for `dns_name`, with its key."""
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(directory / f"{dns_name}.crt", directory / f"{dns_name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={dns_name}",
         "-addext", f"subjectAltName=DNS:{dns_name}",
         "-keyout", str(files.key), "-out", str(files.cert)],
        check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)
    return files


def server_tls_context(server: CertFiles, *, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(server.cert), str(server.key))
    if client_ca is not None:
        # OPTIONAL, not REQUIRED: the Controller's own start-up probe has no certificate.
        # Tests read the certificate a client presented from `Received.client_cert_cn`.
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    ehlo: str | None
    auth_mechanism: str | None
    client_cert_cn: str | None


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that keeps every message; `rcpt_reply`/`data_reply` script
    failures (e.g. "550 5.1.1 no such user", "451 4.3.0 try again later")."""

    rcpt_reply: str | None = None
    refuse: frozenset[str] = frozenset()  # addresses answered "550 5.1.1 No such user"
    data_reply: str = "250 OK"
    credentials: Mapping[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    auth_mechanisms: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply.startswith("250"):
            ssl_object = server.transport.get_extra_info("ssl_object")
            self.received.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content,
                session.ssl is not None or ssl_object is not None, session.host_name,
                self.auth_mechanisms[-1] if session.authenticated else None,
                common_name(ssl_object.getpeercert() if ssl_object is not None else None)))
        return self.data_reply

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        self.auth_mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and \
            self.credentials.get(auth_data.login.decode()) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 itself


def common_name(peercert: Any) -> str | None:
    """The subject CN of a certificate as `SSLObject.getpeercert()` gives it; None if absent."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


@contextmanager
def running_smtp(handler: RecordingHandler, port: int, *,
                 starttls: ssl.SSLContext | None = None,
                 implicit_tls: ssl.SSLContext | None = None,
                 exclude_mechanisms: tuple[str, ...] = ()) -> Iterator[Controller]:
    """An SMTP server on 127.0.0.1:`port` until the block ends. With `starttls`, STARTTLS
    is required before anything else and AUTH (checked against `handler.credentials`)
    after it."""
    options: dict[str, Any] = {"ready_timeout": 5.0}
    if starttls is not None:
        options.update(tls_context=starttls, require_starttls=True, auth_required=True,
                       authenticator=handler.authenticate,
                       auth_exclude_mechanism=list(exclude_mechanisms))
    if implicit_tls is not None:
        options.update(ssl_context=implicit_tls)
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
