"""The ledger writer process: `python -m monitor.cost.writer FD`, started by the daemon.

It reads its `WriterSetup` from the socket FD, opens the state file, builds the `Ledger`,
answers with its cost totals, and then converts the journal whenever it is woken, answering
each commit with its `LedgerUpdate` and "drained" once the journal is empty. It leaves at
"stop" (after its current transaction) or when the daemon's end of the socket closes. A
commit that fails is retried after a pause; the rows stay in the journal meanwhile.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from monitor.cost.feed import FrameReader, WriterSetup, send
from monitor.cost.ledger import Ledger
from monitor.logsetup import configure_logging
from monitor.storage import StateStore

log = logging.getLogger("monitor.cost.writer")

RETRY_DELAYS_S = (0.2, 1.0, 5.0, 30.0)


class Writer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.inbox: list[tuple[Any, ...]] = []
        self.ledger: Ledger | None = None
        self.wake = 0  # the latest wake received
        self.stopping = False
        self.failures = 0

    def receive(self, block: bool) -> bool:
        """Read what has arrived into the inbox; False once the daemon's end is closed."""
        try:
            data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.inbox.extend(self.reader.feed(data))
        return True

    def handle(self) -> None:
        messages, self.inbox = self.inbox, []
        for message in messages:
            kind = message[0]
            if kind == "setup":
                self.start(message[1])
            elif kind == "wake":
                self.wake = max(self.wake, message[1])
            elif kind == "configure" and self.ledger is not None:
                self.ledger.configure(message[1], message[2])
            elif kind == "prune" and self.ledger is not None:
                try:
                    self.ledger.prune_and_log(message[1])
                except sqlite3.Error as exc:
                    log.error("cannot prune the cost ledger (retried in an hour): %s", exc)
            elif kind == "stop":
                self.stopping = True

    def start(self, setup: WriterSetup) -> None:
        state = StateStore(Path(setup.state_directory))
        self.ledger = Ledger(state=state, prices=setup.prices, config=setup.config,
                             namespace=setup.namespace, series_limit=setup.series_limit,
                             user_label=setup.user_label)
        send(self.sock, ("totals", self.ledger.totals(), setup.restarted))

    def convert_all(self) -> None:
        """Convert until the journal is empty (answering "drained" for the latest wake), a
        stop arrives, or a commit fails (then pause)."""
        assert self.ledger is not None
        while not self.stopping:
            answered = self.wake  # every wake received so far precedes the next query
            try:
                update = self.ledger.convert()
            except sqlite3.Error as exc:
                delay = RETRY_DELAYS_S[min(self.failures, len(RETRY_DELAYS_S) - 1)]
                self.failures += 1
                log.error("cost ledger: cannot convert the journal (retrying in %.1f s; the "
                          "rows stay in the journal): %s", delay, exc)
                time.sleep(delay)
                return
            self.failures = 0
            if update is None:
                send(self.sock, ("drained", answered))
                return
            send(self.sock, ("update", update))
            if not self.receive(block=False):
                self.stopping = True
            self.handle()

    def run(self) -> None:
        while not self.stopping:
            if not self.receive(block=self.ledger is None or self.wake == 0):
                return
            self.handle()
            if self.ledger is not None and self.wake and not self.stopping:
                self.convert_all()
                if self.failures == 0:
                    self.wake = 0


def main(argv: list[str]) -> int:
    configure_logging()
    sock = socket.socket(fileno=int(argv[1]))
    try:
        Writer(sock).run()
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the daemon is gone; the journal keeps the rest
    except Exception:
        log.exception("cost ledger writer failed")
        return 1
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
