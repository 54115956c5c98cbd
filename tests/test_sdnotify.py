"""SystemdNotifier against real AF_UNIX datagram sockets (a path and an abstract name)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.sdnotify import SystemdNotifier


class Listener:
    """A service manager's end of the protocol: a bound, non-blocking datagram socket."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def messages(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode("utf-8"))
            except BlockingIOError:
                return out


def _bind(address: str, notify_socket: str) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    try:
        yield Listener(sock, notify_socket)
    finally:
        sock.close()


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    path = str(tmp_path / "notify.sock")
    yield from _bind(path, path)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"inferwatch-test-{uuid.uuid4().hex}"
    yield from _bind("\0" + name, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest) -> Listener:
    fixture = "path_listener" if request.param == "path" else "abstract_listener"
    result: Listener = request.getfixturevalue(fixture)
    return result


def _notifier(listener: Listener, **env: str) -> SystemdNotifier:
    return SystemdNotifier({"NOTIFY_SOCKET": listener.notify_socket, **env})


def test_lifecycle_messages_arrive_exactly(listener: Listener) -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": listener.notify_socket}, monotonic_usec=lambda: 123_456_789
    )
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.ready("serving 3 sources")
    assert notifier.reloading()
    assert notifier.reloading(42, status="reloading config")
    assert notifier.status("line one\nline two")
    assert notifier.watchdog()
    assert notifier.stopping("draining outbox")
    assert listener.messages() == [
        "READY=1",
        "READY=1\nSTATUS=serving 3 sources",
        "RELOADING=1\nMONOTONIC_USEC=123456789",
        "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=reloading config",
        "STATUS=line one line two",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=draining outbox",
    ]


def test_default_monotonic_usec_is_clock_monotonic(path_listener: Listener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert _notifier(path_listener).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    (message,) = path_listener.messages()
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=")
    assert before <= int(second.removeprefix("MONOTONIC_USEC=")) <= after


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
    ],
)
def test_watchdog_interval(
    path_listener: Listener, env: dict[str, str], expected: float | None
) -> None:
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": path_listener.notify_socket, **env}, getpid=lambda: 4242
    )
    assert notifier.watchdog_interval() == expected


def test_watchdog_pid_defaults_to_this_process(path_listener: Listener) -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert _notifier(path_listener, **env).watchdog_interval() == 1.0


def test_watchdog_interval_needs_a_socket() -> None:
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "relative/notify.sock", "@"])
def test_without_a_usable_notify_socket_every_call_is_a_no_op(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("no socket may be opened")

    monkeypatch.setattr(socket, "socket", no_socket)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": value} if value else {})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.reloading()
    assert not notifier.stopping()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert notifier.watchdog_interval() is None


def test_reads_os_environ_by_default(
    path_listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_listener.notify_socket)
    assert SystemdNotifier().ready()
    assert path_listener.messages() == ["READY=1"]


def test_vanished_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready()
    listener.close()
    path.unlink()

    with caplog.at_level(logging.WARNING, logger="monitor.sdnotify"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()


def test_abstract_socket_with_no_listener_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": f"@inferwatch-absent-{uuid.uuid4().hex}"})
    with caplog.at_level(logging.WARNING, logger="monitor.sdnotify"):
        assert not notifier.ready()
        assert not notifier.ready()
    assert len(caplog.records) == 1
