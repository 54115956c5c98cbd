"""The `email_configs` integration: a notification as a multipart/alternative email over SMTP.

What is decided at render time and stored in the outbox (so a retry sends the same mail):
the headers (Subject from `email.subject.j2`, From, To, Message-Id, Date and the receiver's
own `headers`, which may override the first three, as in Alertmanager), the envelope
addresses and both bodies (`email.txt.j2`, `email.html.j2` or the receiver's `text`/`html`).
The password and the TLS settings are read from the current config when sending.

TLS as Alertmanager does it: implicit TLS on port 465 or when `force_implicit_tls` says so,
otherwise STARTTLS when `require_tls` (the default; a server that does not offer it is a
permanent failure), otherwise plain SMTP. AUTH only when `auth_username` is set and the
server offers AUTH (aiosmtplib picks CRAM-MD5, PLAIN or LOGIN from what it offers).

Outcomes: 4xx replies, timeouts and connection errors are transient; 5xx replies (535 bad
credentials, 550, 554) and TLS failures are permanent. Reasons: "smtp_<code>", "timeout",
"connection", "tls", "starttls_unsupported", "address".
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import re
import secrets
import socket
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

import aiohttp
import aiosmtplib

from monitor.clock import Clock
from monitor.config_notify import EmailConfig
from monitor.notify.channels.base import Delivery, Message, RateLimit
from monitor.notify.channels.tls import client_tls_context
from monitor.notify.model import Notification
from monitor.notify.render import Renderer

SMTP_TIMEOUT_S = 30.0
QUIT_TIMEOUT_S = 5.0
_HEADER_BREAK = re.compile(r"[\r\n]+")


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _addresses(text: str) -> list[str]:
    return [address for _, address in getaddresses([text]) if address]


def _one_line(value: str) -> str:
    """A rendered header value on one line: a template's line breaks must not start new
    headers (header injection) or fail the send."""
    return _HEADER_BREAK.sub(" ", value).strip()


class EmailChannel:
    """One `email_configs` entry of one receiver."""

    integration = "email"

    def __init__(self, config: EmailConfig, *, receiver: str, index: int,
                 session: aiohttp.ClientSession | None, clock: Clock, renderer: Renderer,
                 hostname: str | None = None, timeout: float = SMTP_TIMEOUT_S) -> None:
        del session  # SMTP does not use the shared HTTP session
        self.config = config
        self.receiver = receiver
        self.index = index
        self.send_resolved = config.send_resolved
        self._clock = clock
        self._renderer = renderer
        self._hostname = hostname or socket.gethostname() or "localhost.localdomain"
        self._timeout = timeout
        self._tls: ssl.SSLContext | None = None

    @property
    def rate_key(self) -> str:
        return f"email:{_short_hash(self.config.smarthost, self.config.auth_username or '')}"

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return ()

    def merge(self, messages: list[Message]) -> Message | None:
        return None

    def render(self, notification: Notification) -> Message:
        """The whole email but its MIME framing; raises TemplateError on a bad template."""
        n = notification

        def text(template: str) -> str:
            return self._renderer.render(n, default="", override=template)

        # The receiver's `headers` win over the defaults, names compared without case.
        defaults = {"Subject": None, "From": self.config.from_, "To": self.config.to}
        custom = {name.lower(): (name, value) for name, value in self.config.headers.items()}
        headers: list[tuple[str, str]] = []
        for default_name, default in defaults.items():
            name, template = custom.pop(default_name.lower(), (default_name, default))
            value = text(template) if template is not None else \
                self._renderer.render(n, default="email.subject.j2")
            headers.append((name, _one_line(value)))
        headers += [(name, _one_line(text(value))) for name, value in custom.values()]
        given = {name.lower() for name, _ in headers}
        now = self._clock.time()
        if "message-id" not in given:
            headers.append(("Message-Id", self._new_message_id(now)))
        if "date" not in given:
            moment = datetime.fromtimestamp(now, self._renderer.zone)
            headers.append(("Date", format_datetime(moment)))
        return {
            "headers": [list(pair) for pair in headers],
            "envelope_from": _addresses(text(self.config.from_)),
            "envelope_to": _addresses(text(self.config.to)),
            "text": self._renderer.render(n, default="email.txt.j2", override=self.config.text),
            "html": self._renderer.render(n, default="email.html.j2",
                                          override=self.config.html, html=True),
        }

    def _new_message_id(self, now: float) -> str:
        return f"<{int(now * 1e9)}.{secrets.randbits(64)}@{self._hostname}>"

    async def deliver(self, message: Message) -> Delivery:
        senders, recipients = message["envelope_from"], message["envelope_to"]
        if len(senders) != 1 or not recipients:
            return Delivery.permanent("address", f"need exactly one 'from' address (got "
                                                 f"{len(senders)}) and at least one 'to'")
        try:
            context = self._tls_context()
        except OSError as exc:  # ssl.SSLError included: a key or certificate that will not load
            return Delivery.permanent("tls", f"tls_config: {exc}")
        try:
            mail = build_mime(message)
            async with asyncio.timeout(self._timeout):
                return await self._send(context, senders[0], recipients, mail)
        except (aiosmtplib.SMTPException, OSError) as exc:  # TimeoutError and SSLError too
            return classify_smtp_error(exc)
        except ValueError as exc:  # an address or header that cannot be sent as it is
            return Delivery.permanent("address", str(exc))

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = client_tls_context(self.config.tls_config)
        return self._tls

    async def _send(self, context: ssl.SSLContext, sender: str, recipients: list[str],
                    mail: EmailMessage) -> Delivery:
        config = self.config
        smtp = aiosmtplib.SMTP(hostname=config.smarthost_host, port=config.smarthost_port,
                               local_hostname=config.hello, timeout=self._timeout,
                               use_tls=config.implicit_tls, start_tls=False,
                               tls_context=context)
        await smtp.connect()
        try:
            delivery = await self._converse(smtp, context, sender, recipients, mail)
        except BaseException:
            smtp.close()  # a failed or hung conversation gets no polite QUIT
            raise
        try:
            await smtp.quit(timeout=min(self._timeout, QUIT_TIMEOUT_S))
        except aiosmtplib.SMTPException:  # the mail is already accepted (or refused)
            smtp.close()
        return delivery

    async def _converse(self, smtp: aiosmtplib.SMTP, context: ssl.SSLContext, sender: str,
                        recipients: list[str], mail: EmailMessage) -> Delivery:
        config = self.config
        await smtp.ehlo()
        if config.require_tls and not config.implicit_tls:
            if not smtp.supports_extension("starttls"):
                return Delivery.permanent(
                    "starttls_unsupported",
                    f"require_tls is set but {config.smarthost} does not offer STARTTLS")
            await smtp.starttls(tls_context=context)
            await smtp.ehlo()  # what the server offers may change once encrypted
        if config.auth_username is not None and smtp.supports_extension("auth"):
            password = config.auth_password.get_secret_value() \
                if config.auth_password is not None else ""
            await smtp.login(config.auth_username, password)
        refused, _ = await smtp.sendmail(sender, recipients, mail.as_bytes())
        if refused:
            # Some recipients took it: sending again would give them a second copy.
            return Delivery(ok=True, detail="refused by the server: " + ", ".join(
                f"{address} ({reply.code})" for address, reply in refused.items()))
        return Delivery.sent()


def build_mime(message: Message) -> EmailMessage:
    """The stored message as a MIME email: its headers, then the text and HTML
    alternatives (the preferred one last, RFC 2046 §5.1.4). Header values that are not
    ASCII are RFC 2047-encoded by the SMTP policy."""
    mail = EmailMessage(policy=email.policy.SMTP)
    for name, value in message["headers"]:
        mail[name] = value
    mail.set_content(message["text"], subtype="plain", charset="utf-8",
                     cte="quoted-printable")
    mail.add_alternative(message["html"], subtype="html", charset="utf-8",
                         cte="quoted-printable")
    return mail


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _reply(code: int, detail: str) -> Delivery:
    if 400 <= code < 500:
        return Delivery.transient(f"smtp_{code}", detail)
    if 500 <= code < 600:
        return Delivery.permanent(f"smtp_{code}", detail)
    return Delivery.transient("smtp", detail)


def classify_smtp_error(exc: BaseException) -> Delivery:
    """Transient or permanent, with a metric reason, for anything sending raised."""
    detail = f"{type(exc).__name__}: {exc}"
    links = _chain(exc)
    if any(isinstance(link, ssl.SSLEOFError | ssl.SSLZeroReturnError) for link in links):
        return Delivery.transient("connection", detail)  # the server hung up mid-handshake
    if any(isinstance(link, ssl.SSLError) for link in links):
        return Delivery.permanent("tls", detail)  # verification, protocol: config, not luck
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        transient = [code for code in codes if 400 <= code < 500]
        return _reply(transient[0] if transient else codes[0] if codes else 0, detail)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply(exc.code, detail)
    if isinstance(exc, TimeoutError):
        return Delivery.transient("timeout", detail)
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return Delivery.transient("connection", detail)
    return Delivery.transient("error", detail)
