"""The daemon's lifecycle, in process: a real StateStore, real log files, a real HTTP listener.

Start → ready after the first catch-up, with `/metrics` equal to what was written; stop
commits, and a second daemon on the same state restores the counters and reads only what is
new; reloads (invalid kept, sources added and removed, token replaced); sd_notify over a real
AF_UNIX datagram socket (READY, RELOADING + MONOTONIC_USEC, STOPPING, WATCHDOG); and the
start-up failures that must be loud: an address in use, a damaged state file.

Every wait is a bounded poll with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor import __version__
from monitor.clock import FakeClock
from monitor.config import load_config
from monitor.daemon import Daemon, RunState
from monitor.demo.lines import GeneratedLine
from monitor.demo.workload import generate_lines
from monitor.errors import StartupError, StateError
from monitor.ingest.checkpoint import CheckpointWriter
from monitor.ingest.watch import Changes
from monitor.sdnotify import SystemdNotifier

POLL_S = 0.02
WAIT_S = 15.0
STATE_FILE = "inferwatch.db"


# --- helpers -------------------------------------------------------------------------------


async def until(condition: Callable[[], Awaitable[bool]], what: str,
                timeout: float = WAIT_S) -> None:
    """Poll `condition` every 20 ms until it holds; fail naming `what` after `timeout`."""
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(POLL_S)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


async def fetch(daemon: Daemon, path: str, *, method: str = "GET",
                headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(
            method, daemon.listen_url + path, headers=dict(headers or {}),
            timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, await response.text()


def append(path: Path, lines: list[GeneratedLine]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(b"".join(line.data for line in lines))


def state_fds(state_dir: Path) -> list[str]:
    """Descriptors of this process open on the state file (or its -wal/-shm)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(state_dir / STATE_FILE)):
            found.append(target)
    return found


class Layout:
    """A test's files: config, state directory and the two sources' logs."""

    def __init__(self, root: Path, port: int, write_config: Callable[..., Path],
                 fast_ingest: dict[str, str]) -> None:
        self.root = root
        self.port = port
        self.state = root / "state"
        self.config_path = root / "inferwatch.yml"
        self.logs = {"inference": root / "logs" / "inference" / "deepseek-r1.log",
                     "api": root / "logs" / "api" / "usage.jsonl"}
        self._write_config = write_config
        self._fast_ingest = fast_ingest

    def source(self, name: str) -> dict[str, Any]:
        schema = "inference" if name == "inference" else "api_usage"
        return {"name": name, "paths": [str(self.logs[name])], "schema": schema}

    def write(self, sources: list[str], **extra: Any) -> Path:
        data: dict[str, Any] = {
            "server": {"listen": f"127.0.0.1:{self.port}", **extra.pop("server", {})},
            "storage": {"path": str(self.state)},
            "ingest": self._fast_ingest,
            "host": {"enabled": False},
            "gpu": {"enabled": False},
            "sources": [self.source(name) for name in sources],
            **extra,
        }
        return self._write_config(self.config_path, data)


@pytest.fixture
def layout(tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
           fast_ingest: dict[str, str]) -> Layout:
    return Layout(tmp_path, free_port(), write_config, fast_ingest)


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    """Daemons a test started; whatever happened, each is stopped in teardown."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.stop()


class NotifyListener:
    """The service manager's end of sd_notify: a bound, non-blocking datagram socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(65536).decode("utf-8"))
            except BlockingIOError:
                return self.received

    def take(self) -> list[str]:
        messages = list(self.drain())
        self.received.clear()
        return messages

    async def wait_for(self, predicate: Callable[[str], bool], what: str) -> str:
        found: list[str] = []

        async def seen() -> bool:
            found.extend(m for m in self.drain() if predicate(m))
            return bool(found)

        await until(seen, what)
        return found[0]


@pytest.fixture
def notify_listener() -> Iterator[NotifyListener]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="iw-notify-", dir="/tmp")
    listener = NotifyListener(os.path.join(directory, "notify.sock"))
    try:
        yield listener
    finally:
        listener.sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def make_daemon(layout: Layout, daemons: list[Daemon], *,
                notify_env: Mapping[str, str] | None = None, **kwargs: Any) -> Daemon:
    config = load_config(layout.config_path)
    daemon = Daemon(config, config_path=layout.config_path,
                    notifier=SystemdNotifier(environ=dict(notify_env or {})), **kwargs)
    daemons.append(daemon)
    return daemon


async def scrape(daemon: Daemon, parse: Callable[[str], Any]) -> Any:
    status, body = await fetch(daemon, "/metrics")
    assert status == 200
    return parse(body)


async def wait_ready(daemon: Daemon) -> None:
    async def ready() -> bool:
        return (await fetch(daemon, "/-/ready"))[0] == 200
    await until(ready, "/-/ready to answer 200")


async def wait_counts(daemon: Daemon, parse: Callable[[str], Any],
                      compare: Callable[[Any, Any], str], expected: Any) -> None:
    """Until the exported counters equal `expected`; the difference if they never do."""
    deadline = time.monotonic() + WAIT_S
    while difference := compare(await scrape(daemon, parse), expected):
        if time.monotonic() > deadline:
            pytest.fail(f"exported counters never equalled the truth:\n{difference}")
        await asyncio.sleep(POLL_S)


# --- start, readiness, restart -------------------------------------------------------------


async def test_ready_after_catch_up_with_counters_equal_to_truth(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    inference = list(generate_lines(400, "inference", seed=11, error_rate=0.2))
    api = list(generate_lines(300, "api_usage", seed=12, error_rate=0.2))
    append(layout.logs["inference"], inference)
    append(layout.logs["api"], api)
    truth.add_all("inference", inference)
    truth.add_all("api", api)
    layout.write(["inference", "api"])
    daemon = make_daemon(layout, daemons)
    assert not daemon.is_ready()
    assert daemon.sources_catching_up() == ["(starting)"]
    await daemon.start()
    # start() returns once the server listens; the first catch-up has not happened yet.
    assert daemon.state is RunState.RUNNING
    assert not daemon.is_ready()
    assert daemon.sources_catching_up() == ["api", "inference"]
    assert (await fetch(daemon, "/-/healthy"))[0] == 200
    await wait_ready(daemon)
    # Ready means the first catch-up is committed: every pre-existing line is counted, now.
    assert compare_samples(await scrape(daemon, parse_exposition), truth.samples()) == ""
    samples = await scrape(daemon, parse_exposition)
    assert samples["inferwatch_build_info", frozenset({("version", __version__)})] == 1


async def test_stop_commits_and_restart_restores_without_rereading(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    inference = list(generate_lines(300, "inference", seed=21))
    api = list(generate_lines(300, "api_usage", seed=22))
    append(layout.logs["inference"], inference)
    append(layout.logs["api"], api)
    truth.add_all("inference", inference)
    truth.add_all("api", api)
    layout.write(["inference", "api"])

    first = make_daemon(layout, daemons)
    await first.start()
    await wait_ready(first)
    assert compare_samples(await scrape(first, parse_exposition), truth.samples()) == ""
    await first.stop()
    assert first.state is RunState.STOPPED

    second = make_daemon(layout, daemons)
    await second.start()
    # Restored at start-up, before any reading: the counters continue, not restart from 0.
    assert compare_samples(await scrape(second, parse_exposition), truth.samples()) == ""
    await wait_ready(second)
    assert compare_samples(await scrape(second, parse_exposition), truth.samples()) == ""

    more_inference = list(generate_lines(50, "inference", seed=23))
    more_api = list(generate_lines(70, "api_usage", seed=24))
    append(layout.logs["inference"], more_inference)
    append(layout.logs["api"], more_api)
    truth.add_all("inference", more_inference)
    truth.add_all("api", more_api)
    await wait_counts(second, parse_exposition, compare_samples, truth.samples())


async def test_run_returns_0_and_logs_stopped_on_request_stop(
        layout: Layout, daemons: list[Daemon], caplog: pytest.LogCaptureFixture) -> None:
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons)
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    task = asyncio.create_task(daemon.run())

    async def running() -> bool:
        return daemon.state is RunState.RUNNING
    await until(running, "the daemon to run")
    await wait_ready(daemon)
    daemon.request_stop()
    assert await asyncio.wait_for(task, WAIT_S) == 0
    assert daemon.state is RunState.STOPPED
    assert any(r.getMessage() == "inferwatch stopped" for r in caplog.records)


class ExplodingWatcher:
    """A change watcher whose first wait raises: ingestion crashes."""

    def watch(self, directories: set[str]) -> None:
        del directories

    async def wait(self, max_wait: float) -> Changes:
        raise RuntimeError("injected watcher failure")

    def close(self) -> None:
        return None


async def test_ingestion_crash_ends_run_with_status_1_and_logs_crashed(
        layout: Layout, daemons: list[Daemon], caplog: pytest.LogCaptureFixture) -> None:
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons, watcher_factory=lambda _: ExplodingWatcher())
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    assert await asyncio.wait_for(daemon.run(), WAIT_S) == 1
    assert daemon.state is RunState.CRASHED
    messages = [r.getMessage() for r in caplog.records]
    assert "ingestion crashed" in messages
    assert "inferwatch crashed" in messages
    assert state_fds(layout.state) == []


async def test_a_failed_final_commit_ends_run_with_status_1_and_logs_crashed(
        layout: Layout, daemons: list[Daemon], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    append(layout.logs["inference"], list(generate_lines(20, "inference", seed=91)))
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons)
    failing = False
    real_commit = CheckpointWriter.commit

    def commit(self: CheckpointWriter, work: Any, **options: Any) -> bool | None:
        return False if failing else real_commit(self, work, **options)

    monkeypatch.setattr(CheckpointWriter, "commit", commit)
    caplog.set_level(logging.INFO, logger="monitor")
    task = asyncio.create_task(daemon.run())

    async def running() -> bool:
        return daemon.state is RunState.RUNNING
    await until(running, "the daemon to run")
    await wait_ready(daemon)
    failing = True  # the disk fills up: the last commit, at the stop, fails
    daemon.request_stop()
    assert await asyncio.wait_for(task, WAIT_S) == 1
    assert daemon.state is RunState.CRASHED
    messages = [r.getMessage() for r in caplog.records]
    assert "inferwatch crashed" in messages
    assert "inferwatch stopped" not in messages
    assert state_fds(layout.state) == []


async def test_a_partial_last_line_does_not_hold_back_readiness(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    lines = list(generate_lines(51, "inference", seed=71))
    append(layout.logs["inference"], lines[:50])
    with layout.logs["inference"].open("ab") as f:
        f.write(lines[50].data[:40])  # a writer caught mid-line
    truth.add_all("inference", lines[:50])
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    await wait_ready(daemon)
    assert compare_samples(await scrape(daemon, parse_exposition), truth.samples()) == ""
    with layout.logs["inference"].open("ab") as f:
        f.write(lines[50].data[40:])  # the line completes: counted once, whole
    truth.add("inference", lines[50])
    await wait_counts(daemon, parse_exposition, compare_samples, truth.samples())


# --- reload --------------------------------------------------------------------------------


async def test_reload_with_invalid_config_keeps_the_running_one(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    await wait_ready(daemon)
    running = daemon.config
    layout.config_path.write_text(
        layout.config_path.read_text().replace("schema: inference", "schema: inferenz"))
    error = await daemon.reload()
    assert error is not None
    assert str(layout.config_path) in error
    assert "sources[0].schema" in error
    assert daemon.config is running
    assert daemon.state is RunState.RUNNING
    status, body = await fetch(daemon, "/-/reload", method="POST")
    assert status == 500
    assert "sources[0].schema" in body
    # Still ingesting with the old configuration.
    lines = list(generate_lines(40, "inference", seed=31))
    append(layout.logs["inference"], lines)
    truth.add_all("inference", lines)
    await wait_counts(daemon, parse_exposition, compare_samples, truth.samples())


async def test_reload_without_a_config_file_says_so(layout: Layout,
                                                    daemons: list[Daemon]) -> None:
    layout.write(["inference"])
    daemon = Daemon(load_config(layout.config_path), notifier=SystemdNotifier(environ={}))
    daemons.append(daemon)
    await daemon.start()
    error = await daemon.reload()
    assert error is not None
    assert "no configuration file" in error


async def test_reload_adding_a_source_starts_reading_it(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    inference = list(generate_lines(100, "inference", seed=41))
    api = list(generate_lines(150, "api_usage", seed=42))
    append(layout.logs["inference"], inference)
    append(layout.logs["api"], api)
    truth.add_all("inference", inference)
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    await wait_ready(daemon)
    assert compare_samples(await scrape(daemon, parse_exposition), truth.samples()) == ""

    layout.write(["inference", "api"])
    assert await daemon.reload() is None
    truth.add_all("api", api)
    await wait_counts(daemon, parse_exposition, compare_samples, truth.samples())
    await wait_ready(daemon)
    assert [s.name for s in daemon.config.sources] == ["inference", "api"]


async def test_reload_removing_a_source_keeps_its_offsets(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    api = list(generate_lines(200, "api_usage", seed=51))
    append(layout.logs["api"], api)
    truth.add_all("api", api)
    layout.write(["inference", "api"])
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    await wait_ready(daemon)
    assert compare_samples(await scrape(daemon, parse_exposition), truth.samples()) == ""

    layout.write(["inference"])
    assert await daemon.reload() is None
    assert daemon.ingest is not None
    ingest = daemon.ingest

    async def api_gone() -> bool:
        return "api" not in ingest.runtimes
    await until(api_gone, "the api source to be closed")
    samples = await scrape(daemon, parse_exposition)
    assert not any(name.endswith(("log_lag_bytes", "log_files")) and ("source", "api") in labels
                   for name, labels in samples)
    # Lines written while the source is gone wait for it; its counters stay as they were.
    later = list(generate_lines(60, "api_usage", seed=52))
    append(layout.logs["api"], later)
    inference = list(generate_lines(30, "inference", seed=53))
    append(layout.logs["inference"], inference)
    truth.add_all("inference", inference)
    await wait_counts(daemon, parse_exposition, compare_samples, truth.samples())

    layout.write(["inference", "api"])
    assert await daemon.reload() is None
    truth.add_all("api", later)  # read once: from the saved offset, not the beginning
    await wait_counts(daemon, parse_exposition, compare_samples, truth.samples())
    await wait_ready(daemon)
    assert compare_samples(await scrape(daemon, parse_exposition), truth.samples()) == ""


async def test_reload_changing_a_source_resumes_from_its_offsets(
        layout: Layout, daemons: list[Daemon], truth: Any, parse_exposition: Any,
        compare_samples: Any) -> None:
    lines = list(generate_lines(120, "inference", seed=81))
    append(layout.logs["inference"], lines)
    truth.add_all("inference", lines)
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    await wait_ready(daemon)
    assert compare_samples(await scrape(daemon, parse_exposition), truth.samples()) == ""

    text = layout.config_path.read_text()
    layout.config_path.write_text(text.replace(
        "schema: inference", "schema: inference\n  labels:\n    service: deepseek-r1"))
    assert await daemon.reload() is None
    later = list(generate_lines(30, "inference", seed=82))
    append(layout.logs["inference"], later)
    # The old series keep what they counted; only the new lines carry the new label.
    truth.add_all("inference", later, service="deepseek-r1")
    await wait_counts(daemon, parse_exposition, compare_samples, truth.samples())


async def test_reload_replaces_the_bearer_token(layout: Layout, daemons: list[Daemon]) -> None:
    token_file = layout.root / "token"
    token_file.write_text("first-token\n")
    layout.write(["inference"], server={"bearer_token_file": str(token_file)})
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    first = {"Authorization": "Bearer first-token"}
    second = {"Authorization": "Bearer second-token"}
    assert (await fetch(daemon, "/-/healthy"))[0] == 200
    assert (await fetch(daemon, "/-/ready"))[0] == 401
    assert (await fetch(daemon, "/-/ready", headers=first))[0] in (200, 503)

    token_file.write_text("second-token\n")  # rotated in place, then a reload
    assert await daemon.reload() is None
    assert (await fetch(daemon, "/-/ready", headers=first))[0] == 401
    assert (await fetch(daemon, "/-/ready", headers=second))[0] in (200, 503)
    assert (await fetch(daemon, "/-/reload", method="POST", headers=second))[0] == 200
    assert (await fetch(daemon, "/metrics"))[0] == 200

    token_file.unlink()  # an unreadable secret fails the reload; the running token stays
    error = await daemon.reload()
    assert error is not None
    assert str(token_file) in error
    assert (await fetch(daemon, "/-/ready", headers=second))[0] in (200, 503)
    assert (await fetch(daemon, "/-/ready", headers=first))[0] == 401


async def test_reload_cannot_drop_the_token_of_a_daemon_listening_beyond_loopback(
        layout: Layout, daemons: list[Daemon]) -> None:
    token_file = layout.root / "token"
    token_file.write_text("kept-token\n")
    layout.write(["inference"], server={"listen": f"0.0.0.0:{layout.port}",
                                        "bearer_token_file": str(token_file)})
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    token = {"Authorization": "Bearer kept-token"}
    assert (await fetch(daemon, "/-/ready"))[0] == 401

    # Valid on its own (loopback needs no token), but the socket stays on 0.0.0.0 until a
    # restart: applying it would open the daemon to the network without authentication.
    layout.write(["inference"])
    error = await daemon.reload()
    assert error is not None
    assert f"0.0.0.0:{layout.port}" in error
    assert "bearer token" in error
    assert daemon.state is RunState.RUNNING
    assert daemon.config.server.listen == f"0.0.0.0:{layout.port}"
    assert (await fetch(daemon, "/-/ready"))[0] == 401
    assert (await fetch(daemon, "/-/ready", headers=token))[0] in (200, 503)
    status, body = await fetch(daemon, "/-/reload", method="POST", headers=token)
    assert status == 500
    assert "bearer token" in body
    assert (await fetch(daemon, "/-/ready"))[0] == 401


async def test_unexpected_error_in_the_config_loader_keeps_the_daemon_running(
        layout: Layout, daemons: list[Daemon], notify_listener: NotifyListener,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken_loader(path: Path) -> Any:
        raise RuntimeError(f"injected loader bug reading {path}")

    layout.write(["inference"])
    daemon = make_daemon(layout, daemons, config_loader=broken_loader,
                         notify_env={"NOTIFY_SOCKET": notify_listener.path})
    await daemon.start()
    running = daemon.config
    notify_listener.take()
    caplog.set_level(logging.ERROR, logger="monitor.daemon")
    error = await daemon.reload()
    assert error is not None
    assert "RuntimeError" in error
    assert "injected loader bug" in error
    assert daemon.state is RunState.RUNNING
    assert daemon.config is running
    assert [m.split("\n")[0] for m in notify_listener.take()] == ["RELOADING=1", "READY=1"]
    assert any(r.exc_info for r in caplog.records)  # a bug: logged with its traceback
    assert (await fetch(daemon, "/-/healthy"))[0] == 200
    status, _ = await fetch(daemon, "/-/reload", method="POST")
    assert status == 500
    assert daemon.state is RunState.RUNNING


# --- sd_notify and the watchdog --------------------------------------------------------------


async def test_sd_notify_ready_reloading_stopping(layout: Layout, daemons: list[Daemon],
                                                  notify_listener: NotifyListener) -> None:
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons, notify_env={"NOTIFY_SOCKET": notify_listener.path})
    assert notify_listener.take() == []
    await daemon.start()
    messages = notify_listener.take()
    assert len(messages) == 1
    assert messages[0].split("\n")[0] == "READY=1"
    assert f"STATUS=listening on {daemon.listen_url}" in messages[0].split("\n")

    before = time.monotonic_ns() // 1000
    assert await daemon.reload() is None
    after = time.monotonic_ns() // 1000
    messages = notify_listener.take()
    assert len(messages) == 2, messages
    reloading, ready = (m.split("\n") for m in messages)
    assert reloading[0] == "RELOADING=1"
    usec = [f for f in reloading if f.startswith("MONOTONIC_USEC=")]
    assert len(usec) == 1
    assert before <= int(usec[0].removeprefix("MONOTONIC_USEC=")) <= after
    assert ready[0] == "READY=1"

    # A failed reload also ends with READY=1 (systemd would otherwise wait for it).
    layout.config_path.write_text("sources: [\n")
    assert await daemon.reload() is not None
    messages = notify_listener.take()
    assert [m.split("\n")[0] for m in messages] == ["RELOADING=1", "READY=1"]

    await daemon.stop()
    messages = notify_listener.take()
    assert [m.split("\n")[0] for m in messages] == ["STOPPING=1"]


async def test_watchdog_pings_while_ingestion_runs(layout: Layout, daemons: list[Daemon],
                                                   notify_listener: NotifyListener) -> None:
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons, notify_env={
        "NOTIFY_SOCKET": notify_listener.path, "WATCHDOG_USEC": "200000",
        "WATCHDOG_PID": str(os.getpid())})
    await daemon.start()
    notify_listener.take()
    for _ in range(3):  # repeatedly, not just once
        await notify_listener.wait_for(lambda m: m == "WATCHDOG=1", "a WATCHDOG=1 ping")
        notify_listener.received.clear()


async def test_no_watchdog_pings_when_meant_for_another_process(
        layout: Layout, daemons: list[Daemon], notify_listener: NotifyListener) -> None:
    layout.write(["inference"])
    daemon = make_daemon(layout, daemons, notify_env={
        "NOTIFY_SOCKET": notify_listener.path, "WATCHDOG_USEC": "200000",
        "WATCHDOG_PID": str(os.getpid() + 1)})
    await daemon.start()
    assert daemon.notifier.watchdog_interval() is None


class HangingWatcher:
    """A change watcher that never returns: the ingestion loop is wedged."""

    def watch(self, directories: set[str]) -> None:
        del directories

    async def wait(self, max_wait: float) -> Changes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def close(self) -> None:
        return None


async def test_watchdog_withheld_while_ingestion_is_wedged(
        layout: Layout, daemons: list[Daemon], notify_listener: NotifyListener,
        caplog: pytest.LogCaptureFixture) -> None:
    layout.write(["inference"])
    clock = FakeClock()
    daemon = make_daemon(layout, daemons, clock=clock,
                         watcher_factory=lambda _: HangingWatcher(),
                         notify_env={"NOTIFY_SOCKET": notify_listener.path,
                                     "WATCHDOG_USEC": "200000"})
    caplog.set_level(logging.ERROR, logger="monitor.daemon")
    await daemon.start()

    async def first_cycle_done() -> bool:  # ready is set in the cycle that last ticks
        return daemon.is_ready()
    await until(first_cycle_done, "the first ingest cycle")
    await notify_listener.wait_for(lambda m: m == "WATCHDOG=1", "a first WATCHDOG=1 ping")
    notify_listener.take()
    clock.advance(3600)  # the loop has not ticked for an hour (of the daemon's clock)

    async def withheld_twice() -> bool:
        return sum("withholding the watchdog ping" in r.getMessage()
                   for r in caplog.records) >= 2
    await until(withheld_twice, "the watchdog ping to be withheld twice")
    assert "WATCHDOG=1" not in notify_listener.take()


async def test_listens_on_ipv6_loopback(layout: Layout, daemons: list[Daemon]) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    layout.write(["inference"], server={"listen": f"[::1]:{layout.port}"})
    daemon = make_daemon(layout, daemons)
    await daemon.start()
    assert daemon.listen_url == f"http://[::1]:{layout.port}"
    assert (await fetch(daemon, "/-/healthy"))[0] == 200


# --- start-up failures ---------------------------------------------------------------------


async def test_address_in_use_is_a_startup_error_and_closes_the_state_file(
        layout: Layout, daemons: list[Daemon]) -> None:
    layout.write(["inference"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", layout.port))
        squatter.listen()
        daemon = make_daemon(layout, daemons)
        with pytest.raises(StartupError) as raised:
            await daemon.start()
    message = str(raised.value)
    assert f"cannot listen on 127.0.0.1:{layout.port}" in message
    assert "in use" in message
    assert "\n" not in message
    assert raised.value.exit_code == 1
    assert state_fds(layout.state) == []
    assert (layout.state / STATE_FILE).exists()  # created, consistent, closed


@pytest.mark.parametrize("content", [b"", b"\0" * 8192, b"not a database at all\n" * 200],
                         ids=["empty", "nul-filled", "garbage"])
async def test_damaged_state_file_refuses_to_start(layout: Layout, daemons: list[Daemon],
                                                   content: bytes) -> None:
    append(layout.logs["inference"], list(generate_lines(20, "inference", seed=61)))
    layout.write(["inference"])
    layout.state.mkdir(parents=True)
    (layout.state / STATE_FILE).write_bytes(content)
    daemon = make_daemon(layout, daemons)
    with pytest.raises(StateError) as raised:
        await daemon.start()
    message = str(raised.value)
    assert str(layout.state / STATE_FILE) in message
    assert "move" in message
    assert "\n" not in message
    assert raised.value.exit_code == 1
    assert (layout.state / STATE_FILE).read_bytes() == content  # never replaced by a fresh one
    assert daemon.ingest is None  # nothing was read
    assert state_fds(layout.state) == []
    with pytest.raises(OSError):  # nothing listens
        socket.create_connection(("127.0.0.1", layout.port), timeout=1).close()
