"""The daemon's side of the cost ledger: journal the priced requests, take the writer's totals.

The ingest checkpoint calls `record` inside its transaction (the requests go into the journal
with the offsets that read them) and `recorded` after it commits. The ledger writer turns the
journal into ledger rows (`Ledger.convert`) and answers with a `LedgerUpdate`: `apply` sets
the cost series of the daemon's store to the totals the writer committed, and hands the spend
to the listeners (the budgets). The daemon never writes the cost families' rows itself.

Two writers:

* `LocalLedgerFeed` converts on the spot, on the caller's thread (tests, tools);
* `WorkerLedgerFeed` runs it in a process of its own (monitor/cost/writer.py), so pricing and
  the ledger's inserts use another core and never hold up the event loop: the daemon's way.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import CostConfig
from monitor.cost import journal
from monitor.cost.ledger import LEDGER_FAMILIES, Ledger, LedgerEntry, LedgerUpdate
from monitor.cost.pricing import PriceTable
from monitor.metrics.store import LabelKey, MetricFamily, MetricStore

log = logging.getLogger(__name__)

RESTART_DELAYS_S = (0.5, 2.0, 10.0, 30.0)  # a writer that keeps dying is restarted ever later
STOP_WAIT_S = 10.0  # on stop, the writer finishes its transaction; then it is terminated

EntryListener = Callable[[Sequence[LedgerEntry]], None]


class LedgerFeed:
    """The journal and the cost series of the daemon's store; subclasses run the writer."""

    def __init__(self, store: MetricStore) -> None:
        self._families: dict[str, MetricFamily] = {
            store.full_name(spec): store.register(spec) for spec in LEDGER_FAMILIES}
        self.owned_families = frozenset(self._families)
        self.listeners: list[EntryListener] = []
        # Called when the spend the listeners saw may have missed an update (a writer that
        # died between its commit and its answer): they read the state file again.
        self.resync_listeners: list[Callable[[], None]] = []

    def record(self, cursor: sqlite3.Cursor, pending: Sequence[journal.Pending]) -> None:
        """Inside the checkpoint's transaction."""
        journal.append(cursor, pending)

    def recorded(self) -> None:
        """The checkpoint that recorded requests has committed."""
        raise NotImplementedError

    def configure(self, prices: PriceTable, config: CostConfig) -> None:
        raise NotImplementedError

    def prune(self, now: float) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the writer; what it has not converted stays in the journal for the next run."""

    def apply(self, update: LedgerUpdate) -> None:
        self.take_totals(update.series)
        if update.entries:
            for listener in self.listeners:
                try:
                    listener(update.entries)
                except Exception:  # a budget defect must never fail the ledger
                    log.exception("cost listener failed")

    def take_totals(self, series: Sequence[tuple[str, LabelKey, float]]) -> None:
        for name, key, value in series:
            family = self._families.get(name)
            if family is not None:
                family.counter(key).value = value


class LocalLedgerFeed(LedgerFeed):
    """Converts the journal right after each checkpoint, in this process."""

    def __init__(self, store: MetricStore, ledger: Ledger) -> None:
        super().__init__(store)
        self.ledger = ledger
        self.take_totals(ledger.totals())

    def recorded(self) -> None:
        self.drain()

    def drain(self) -> bool:
        """Convert the whole journal; False if a commit failed (the rest waits for the next
        checkpoint)."""
        try:
            while (update := self.ledger.convert()) is not None:
                self.apply(update)
        except sqlite3.Error as exc:
            log.error("cost ledger: cannot convert the journal (retried at the next "
                      "checkpoint): %s", exc)
            return False
        return True

    def configure(self, prices: PriceTable, config: CostConfig) -> None:
        self.ledger.configure(prices, config)

    def prune(self, now: float) -> None:
        self.ledger.prune_and_log(now)


@dataclass(frozen=True)
class WriterSetup:
    """What the writer process needs to build its `Ledger` (sent pickled, once)."""

    state_directory: str
    prices: PriceTable
    config: CostConfig
    namespace: str
    series_limit: int
    user_label: bool
    restarted: bool


# -- the wire: length-prefixed pickles over a socketpair between this process and its child --

_HEADER = struct.Struct("!I")


def send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(body)) + body)


class FrameReader:
    """Splits received bytes into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self._buffer += data
        out = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + size
            if len(self._buffer) < end:
                break
            out.append(pickle.loads(self._buffer[_HEADER.size:end]))  # noqa: S301 - our child
            del self._buffer[:end]
        return out


class WorkerLedgerFeed(LedgerFeed):
    """Runs the ledger writer as a child process, started when there is work for it.

    Requests are handed over through the state file (the journal), so the wire carries only
    small messages: "wake" (there are journal rows, numbered), "configure", "prune", "stop"
    one way; the writer's totals, its updates and "drained" (the journal was empty after that
    wake) the other. A writer that dies is restarted after a delay; its last commit may not
    have been answered, so the restarted one's totals replace the store's and the listeners
    are asked to read the state file again.
    """

    def __init__(self, store: MetricStore, *, state_directory: Path, prices: PriceTable,
                 config: CostConfig, user_label: bool = False) -> None:
        super().__init__(store)
        self.state_directory = state_directory
        self.prices = prices
        self.config = config
        self.namespace = store.namespace
        self.series_limit = store.series_limit
        self.user_label = user_label
        self.process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader = FrameReader()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakes = 0  # the number of the latest wake asked for
        self._wake_sent = 0  # the latest wake sent to the running writer
        self._drained = 0  # the latest wake the writer has answered "drained" to
        self._started_once = False
        self.ready = False  # the running writer has opened the ledger and sent its totals
        self._deaths = 0
        self._restart: asyncio.TimerHandle | None = None
        self._closing = False
        self.restarts = 0

    # -- the checkpoint's side --------------------------------------------------------------

    def recorded(self) -> None:
        self._wakes += 1
        if self._sock is None:
            self.start_ahead()
            return
        self._send_wake()

    def start_ahead(self) -> None:
        """Start the writer unless it runs or waits to be restarted: at daemon start when a
        priced source is configured, so its start-up (a Python process importing the ledger,
        a third of a second) is over before the first checkpoint has requests for it."""
        if self._sock is None and self._restart is None and not self._closing:
            try:
                self.start()
            except OSError as exc:  # never the checkpoint's problem: the journal waits
                self._schedule_restart(f"cannot start ({exc})")

    def start(self) -> None:
        """Start the writer (on the running event loop) unless it runs."""
        self._loop = asyncio.get_running_loop()
        if self._sock is not None or self._closing:
            return
        parent, child = socket.socketpair()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [sys.executable, "-m", "monitor.cost.writer", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        self._sock = parent
        self._reader = FrameReader()
        setup = WriterSetup(str(self.state_directory), self.prices, self.config,
                            self.namespace, self.series_limit, self.user_label,
                            restarted=self._started_once)
        self._started_once = True
        send(parent, ("setup", setup))
        self._wake_sent = 0
        self._loop.add_reader(parent.fileno(), self._readable)
        log.info("cost ledger writer started (pid %d)", self.process.pid)
        self._send_wake()

    def _send_wake(self) -> None:
        # At most one wake in flight: the writer converts until the journal is empty anyway.
        if self._sock is not None and not self._closing and self._wake_sent <= self._drained:
            self._wake_sent = self._wakes
            self._send(("wake", self._wakes))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._sock is None:
            return
        try:
            send(self._sock, message)
        except OSError as exc:  # it died: the reader sees the end and restarts it
            log.debug("cost ledger writer: cannot send %s: %s", message[0], exc)

    @property
    def started(self) -> bool:
        """Whether a writer has been started or tried (it may have died since)."""
        return self._started_once or self._restart is not None

    def describe(self, journal_rows: int) -> str:
        """One line for the status page: the process, and the journal rows it has yet to
        convert (each a checkpoint's requests)."""
        if self.process is None:
            state = "waiting to restart" if self._restart is not None else "not running"
        else:
            state = f"writer pid {self.process.pid}" + ("" if self.ready else ", starting")
        restarts = f", restarted {self.restarts}x" if self.restarts else ""
        return f"{state}{restarts}; {journal_rows} journal row(s) to convert"

    @property
    def drained(self) -> bool:
        """Whether every recorded request has been converted (and its update applied)."""
        return self._drained >= self._wakes

    # -- the writer's answers ---------------------------------------------------------------

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended()
            return
        for message in self._reader.feed(data):
            self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "totals":
            self.ready = True
            self.take_totals(message[1])
            if message[2]:  # a restarted writer: an update may have been lost with the last
                for listener in self.resync_listeners:
                    try:
                        listener()
                    except Exception:
                        log.exception("cost resync listener failed")
        elif kind == "update":
            self._deaths = 0
            self.apply(message[1])
        elif kind == "drained":
            self._drained = max(self._drained, message[1])
            if self._wakes > self._drained:
                self._send_wake()

    def _ended(self) -> None:
        assert self._loop is not None and self._sock is not None
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        self.ready = False
        code = self._reap()
        if not self._closing:
            self._schedule_restart(f"exited (status {code})")

    def _schedule_restart(self, why: str) -> None:
        assert self._loop is not None
        delay = RESTART_DELAYS_S[min(self._deaths, len(RESTART_DELAYS_S) - 1)]
        self._deaths += 1
        log.error("cost ledger writer %s; starting it again in %.1f s (the journal keeps what "
                  "it had not converted)", why, delay)
        self._restart = self._loop.call_later(delay, self._restart_now)

    def _restart_now(self) -> None:
        self._restart = None
        self.restarts += 1
        try:
            self.start()
        except OSError as exc:
            self._schedule_restart(f"cannot start ({exc})")

    def _reap(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        try:
            return process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    # -- control ----------------------------------------------------------------------------

    def configure(self, prices: PriceTable, config: CostConfig) -> None:
        if config.timezone != self.config.timezone:
            config = config.model_copy(update={"timezone": self.config.timezone})
        self.prices, self.config = prices, config
        self._send(("configure", prices, config))

    def prune(self, now: float) -> None:
        self._send(("prune", now))

    def close(self) -> None:
        """Ask the writer to stop after its current transaction; wait for it, then end it."""
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        if self._sock is None:
            return
        assert self._loop is not None
        self._send(("stop",))
        self._loop.remove_reader(self._sock.fileno())
        process = self.process
        if process is not None:
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                log.warning("cost ledger writer did not stop in %.0f s; terminating it (the "
                            "journal keeps what it had not converted)", STOP_WAIT_S)
                process.terminate()
        # Its last answers: the totals it committed before stopping.
        self._sock.setblocking(True)
        self._sock.settimeout(1.0)
        try:
            while data := self._sock.recv(1 << 20):
                for message in self._reader.feed(data):
                    self._handle(message)
        except OSError:
            pass
        self._sock.close()
        self._sock = None
        self._reap()

