"""The aiohttp application: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`.

Everything but `/metrics` and `/-/healthy` requires the bearer token when one is configured
(SPEC §11); the token is compared in constant time and can change on reload.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from monitor.metrics.exposition import Exposition

UNAUTHENTICATED_PATHS = frozenset({"/metrics", "/-/healthy"})


class DaemonControl(Protocol):
    """What the lifecycle endpoints need from the daemon."""

    def is_ready(self) -> bool: ...

    def sources_catching_up(self) -> list[str]: ...

    async def reload(self) -> str | None:
        """Reload the configuration; None on success, else why it was kept."""


@dataclass
class TokenHolder:
    """The current bearer token (None: no authentication), replaced on reload."""

    token: str | None = None

    def allows(self, header: str | None) -> bool:
        if self.token is None:
            return True
        if header is None:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":  # RFC 7235: the scheme is case-insensitive
            return False
        # aiohttp hands undecodable header bytes over as surrogates; they must compare,
        # not raise.
        offered = credentials.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(offered, self.token.encode("utf-8", "surrogateescape"))


EXPOSITION_KEY = web.AppKey("exposition", Exposition)
CONTROL_KEY: web.AppKey[DaemonControl] = web.AppKey("control")
TOKEN_KEY = web.AppKey("token", TokenHolder)


@web.middleware
async def bearer_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path not in UNAUTHENTICATED_PATHS and not request.app[TOKEN_KEY].allows(
        request.headers.get("Authorization")
    ):
        raise web.HTTPUnauthorized(
            text="Unauthorized: a valid bearer token is required\n",
            headers={"WWW-Authenticate": 'Bearer realm="inferwatch"'},
        )
    return await handler(request)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[EXPOSITION_KEY].render(request.headers.get("Accept"))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    # Prometheus asks for gzip: a 5k-series page shrinks ~20x (aiohttp negotiates the coding
    # from Accept-Encoding and compresses large bodies in its executor, off the loop).
    response.enable_compression()
    return response


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="inferwatch is Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    readiness = request.app[CONTROL_KEY]
    if readiness.is_ready():
        return web.Response(text="inferwatch is Ready.\n")
    pending = ", ".join(readiness.sources_catching_up())
    return web.Response(status=503, text=f"Service Unavailable: catching up on {pending}\n")


async def reload(request: web.Request) -> web.Response:
    error = await request.app[CONTROL_KEY].reload()
    if error is not None:
        return web.Response(status=500, text=f"failed to reload config: {error}\n")
    return web.Response(text="OK\n")


def create_app(
    *,
    exposition: Exposition,
    control: DaemonControl,
    token: TokenHolder,
) -> web.Application:
    app = web.Application(middlewares=[bearer_auth])
    app[EXPOSITION_KEY] = exposition
    app[CONTROL_KEY] = control
    app[TOKEN_KEY] = token
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    return app
