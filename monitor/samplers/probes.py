"""HTTP health probes (SPEC §4 `probes`): one GET per interval, as a blackbox exporter's
`http_2xx` module would send it.

Owns `ProbeSampler`, one per configured probe. It sets `probe_success` (1 when an answer with
an accepted status, `expect_status` or else any 2xx, came within the timeout),
`probe_duration_seconds` (monotonic, always set, at most about the timeout) and
`probe_http_status_code` (0 when no answer came; an answer whose body then stalls past the
timeout keeps its status but fails).

- The timeout covers everything: connecting, TLS, redirects, headers and reading the body.
  The body is read up to `MAX_BODY_BYTES` and discarded.
- Redirects are followed, up to 10 (11 requests), as the blackbox exporter does by default;
  the last answer's status decides. An 11th redirect is a failure with status code 0.
- `verify_tls: false` turns certificate checks off (`ssl=False`); otherwise the system's
  trust store and the host name are checked.
- With the default session (`probe_session`) every probe opens a fresh connection (no
  keep-alive), so it measures what a new client would meet and a restarted server is never
  judged by a dead pooled socket; proxy variables of the environment are not used, the probe
  goes to the target itself.
- At most one request per target is in flight. `sample()` is awaited by the runner, so
  ticks never overlap; a caller that calls it while a probe is running (a second task, an
  on-demand check) does not start another request: it waits for the running probe and
  shares its result. Those joined calls are counted in `joined_calls`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from monitor.clock import Clock
from monitor.config_models import ProbeConfig
from monitor.metrics.families import PROBE_DURATION, PROBE_STATUS_CODE, PROBE_SUCCESS
from monitor.metrics.store import MetricStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 10


class ProbeSampler:
    """One health endpoint, probed every `config.interval`.

    `session_factory` makes the aiohttp session the probe sends with (default:
    `probe_session`), called on first use inside the event loop; the sampler owns that
    session and `close()` releases it.
    """

    def __init__(self, config: ProbeConfig, *, store: MetricStore, clock: Clock,
                 session_factory: Callable[[], aiohttp.ClientSession] | None = None) -> None:
        self.config = config
        self._clock = clock
        self._session_factory = session_factory or probe_session
        self._session: aiohttp.ClientSession | None = None
        self._success = store.register(PROBE_SUCCESS)
        self._duration = store.register(PROBE_DURATION)
        self._status = store.register(PROBE_STATUS_CODE)
        self._key = self._success.key([config.name])
        self._in_flight: asyncio.Future[None] | None = None
        self._closed = False
        self.joined_calls = 0
        self.last_error: str | None = None  # why the last probe failed; None after a success

    @property
    def name(self) -> str:
        return f"probe:{self.config.name}"

    @property
    def interval_s(self) -> float:
        return self.config.interval

    async def sample(self) -> None:
        if self._closed:
            raise RuntimeError(f"probe {self.config.name} is closed")
        running = self._in_flight
        if running is not None:
            self.joined_calls += 1
            await asyncio.shield(running)
            return
        done = self._in_flight = asyncio.get_running_loop().create_future()
        try:
            await self._probe()
        finally:
            self._in_flight = None
            done.set_result(None)

    async def _probe(self) -> None:
        session = self._session_for_probe()
        status = 0
        error: str | None = None
        start = self._clock.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout):
                async with session.get(self.config.url, allow_redirects=True,
                                       # aiohttp counts the redirect it refuses
                                       max_redirects=MAX_REDIRECTS + 1,
                                       ssl=self.config.verify_tls) as response:
                    status = response.status
                    await _discard_body(response.content)
        except TimeoutError:
            error = f"no complete answer within {self.config.timeout:g}s"
        except aiohttp.TooManyRedirects:
            status, error = 0, f"more than {MAX_REDIRECTS} redirects"
        except aiohttp.ClientSSLError as exc:
            error = f"TLS failed: {exc}"
        except aiohttp.ClientConnectorError as exc:
            error = f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration = self._clock.monotonic() - start
        if error is None and not self.config.accepts_status(status):
            error = f"answered with status {status}"
        self._record(success=error is None, duration=duration, status=status, error=error)

    def _record(self, *, success: bool, duration: float, status: int,
                error: str | None) -> None:
        if not success and self.last_error is None:
            log.warning("probe %s of %s is failing: %s", self.config.name, self.config.url,
                        error)
        elif success and self.last_error is not None:
            log.info("probe %s of %s succeeds again", self.config.name, self.config.url)
        self.last_error = error
        self._success.set(self._key, 1 if success else 0)
        self._duration.set(self._key, max(duration, 0.0))
        self._status.set(self._key, status)

    def _session_for_probe(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._session_factory()
        return self._session

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def probe_session() -> aiohttp.ClientSession:
    """A session that opens a fresh connection per request and ignores proxy variables."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),  # the probe's own deadline rules
    )


async def _discard_body(content: aiohttp.StreamReader) -> None:
    remaining = MAX_BODY_BYTES
    while remaining > 0:
        chunk = await content.read(remaining)
        if not chunk:
            return
        remaining -= len(chunk)
