"""systemd's service notification protocol (sd_notify(3)), without a third-party package.

`SystemdNotifier` sends datagrams such as ``READY=1`` to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract-namespace name written with a leading ``@``) and
reads the watchdog interval from ``$WATCHDOG_USEC``/``$WATCHDOG_PID``. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a no-op that returns False. A failed send is logged once at
warning level and never raised: losing a notification must not stop the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

_log = logging.getLogger(__name__)


def _monotonic_usec() -> int:
    # CLOCK_MONOTONIC in µs, the clock systemd compares MONOTONIC_USEC= against; a protocol
    # field, not a timestamp, so it does not come from monitor.clock.
    return time.monotonic_ns() // 1000


def _one_line(text: str) -> str:
    # Each assignment is one line of the datagram; a newline would start a new field.
    return " ".join(text.splitlines())


class SystemdNotifier:
    """Tells systemd about readiness, reloads, shutdown, status text and watchdog liveness."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
        getpid: Callable[[], int] = os.getpid,
    ) -> None:
        env = os.environ if environ is None else environ
        self._socket_name = env.get("NOTIFY_SOCKET", "")
        self._address = self._parse_address(self._socket_name)
        self._watchdog_usec = self._parse_watchdog(env, getpid())
        self._monotonic_usec = monotonic_usec
        self._warned = False

    @staticmethod
    def _parse_address(value: str) -> str | None:
        if value.startswith("@") and len(value) > 1:
            return "\0" + value[1:]
        if value.startswith("/"):
            return value
        if value:
            _log.warning("NOTIFY_SOCKET=%r is not a path or @name; notifications disabled", value)
        return None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str], pid: int) -> int | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid is not None:
            try:
                if int(watchdog_pid) != pid:
                    return None  # the watchdog is meant for another process (e.g. our parent)
            except ValueError:
                return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments as one datagram; True when it was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                _log.warning("sd_notify to %s failed: %s", self._socket_name, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify("READY=1", *self._status(status))

    def reloading(self, monotonic_usec: int | None = None, status: str | None = None) -> bool:
        """A reload has begun; follow with `ready()` when it is done."""
        usec = self._monotonic_usec() if monotonic_usec is None else monotonic_usec
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1", *self._status(status))

    def status(self, text: str) -> bool:
        """Free-form status line shown by ``systemctl status``."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """Keep-alive ping; due every `watchdog_interval()` seconds."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog is armed."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        return () if text is None else (f"STATUS={_one_line(text)}",)
