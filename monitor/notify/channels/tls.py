"""Client TLS contexts from a Prometheus-style `tls_config`, for every channel that dials out.

`client_tls_context` builds the context email uses for SMTP and the HTTP channels (webhook,
Alertmanager forwarding) pass to aiohttp. `http_tls_context` is the HTTP channels' entry:
a `tls_config` left at its defaults gives None, so aiohttp keeps its own default
verification (system CAs, host name from the URL) exactly as before `tls_config` existed.
The HTTP channels also hand `server_name` to aiohttp as `server_hostname`, aiohttp's own way
of naming the peer; the context applies the same name, so the two always agree.

Building a context reads the CA, certificate and key files; one that will not load raises
`ssl.SSLError` (an `OSError`), which each channel turns into a permanent "tls" failure.
"""

from __future__ import annotations

import ssl

from monitor import __version__
from monitor.config_notify import HttpClientConfig, TlsConfig
from monitor.notify.channels.base import Delivery

USER_AGENT = f"inferwatch/{__version__}"


class _ServerNameContext(ssl.SSLContext):
    """A client context that presents and verifies `server_name` whatever host it dials.

    aiosmtplib passes its own host name to the handshake for implicit TLS and takes no
    override, so the configured `tls_config.server_name` is applied here instead.
    """

    server_name: str | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side,
                                self.server_name or server_hostname, session)


def client_tls_context(config: TlsConfig) -> ssl.SSLContext:
    """An SSL client context from Prometheus-style `tls_config`; ssl.SSLError on bad files."""
    context = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = config.server_name
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if config.cert_file is not None and config.key_file is not None:
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def http_tls_context(config: TlsConfig) -> ssl.SSLContext | None:
    """The context an HTTP channel passes to aiohttp; None when `config` sets nothing."""
    if config == TlsConfig():
        return None
    return client_tls_context(config)


def load_failure(config: TlsConfig, exc: OSError, *, key: str) -> Delivery:
    """The permanent "tls" failure for `config` (at config `key`) whose files will not load.

    OpenSSL's own message ("[SSL] PEM lib") does not say which file it choked on, so every
    file the config names is listed."""
    files = ", ".join(f"{name} {path}" for name, path in (
        ("ca_file", config.ca_file), ("cert_file", config.cert_file),
        ("key_file", config.key_file)) if path is not None)
    return Delivery.permanent("tls", f"{key} will not load ({files}): {exc}")


class HttpClientSettings:
    """A receiver's `http_config` as each request uses it: its headers, and its TLS context,
    built on the first send and kept for the channel's life (a reload builds new channels)."""

    def __init__(self, config: HttpClientConfig) -> None:
        self.config = config
        self._context: ssl.SSLContext | None = None
        self._built = False

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        authorization = self.config.authorization_header()
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    @property
    def server_name(self) -> str | None:
        return self.config.tls_config.server_name

    def tls(self) -> ssl.SSLContext | None:
        """None for aiohttp's default verification; OSError (ssl.SSLError included) when a
        certificate or key will not load."""
        if not self._built:
            self._context = http_tls_context(self.config.tls_config)
            self._built = True
        return self._context

    def tls_failure(self, exc: OSError) -> Delivery:
        return load_failure(self.config.tls_config, exc, key="http_config.tls_config")
