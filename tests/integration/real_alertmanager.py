"""A real Alertmanager for integration tests: start with a config, read alerts back, clean up.

Usage (the whole API):

    from real_alertmanager import alertmanager_binary, running_alertmanager

    binary = alertmanager_binary()        # skips the test, or fails it when
                                          # INFERWATCH_REQUIRE_INTEGRATION=1
    with running_alertmanager(binary, tmp_path / "am", config_text, port=port) as am:
        alerts = am.alerts()              # GET /api/v2/alerts (active, silenced, inhibited,
                                          # unprocessed)
        found = am.wait_for_alerts(lambda alerts: ..., timeout=30)

Alertmanager listens on loopback (a free port unless `port` is given), with clustering off
(`--cluster.listen-address=`) and its storage in its own directory; `/-/ready` is awaited
with a deadline and the process is killed in teardown whatever happened. Every wait is a poll
with a deadline; a timeout fails the test with the last answer and the tail of the log.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import pick_free_port, require_program

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
READY_TIMEOUT_S = 30.0
POLL_S = 0.1
HTTP_TIMEOUT_S = 10.0

Alerts = list[dict[str, Any]]


def alertmanager_binary(path: Path = ALERTMANAGER) -> Path:
    """`path` if it exists; otherwise skip the test (fail with INFERWATCH_REQUIRE_INTEGRATION=1)."""
    return require_program(path, "prometheus-alertmanager")


class RealAlertmanager:
    """A started Alertmanager: its base URL and the alerts it holds."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def alerts(self) -> Alerts:
        """Every alert it holds (GET /api/v2/alerts)."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts",
                                    timeout=HTTP_TIMEOUT_S) as response:
            alerts: Alerts = json.loads(response.read())
            return alerts

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_alerts(self, done: Callable[[Alerts], bool], what: str,
                        timeout: float = 30.0,
                        between: Callable[[], None] | None = None) -> Alerts:
        """Poll the alerts until `done(alerts)`; they are returned. `between` runs after each
        poll that was not done (to report progress elsewhere, for example)."""
        deadline = time.monotonic() + timeout
        alerts: Alerts = []
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"alertmanager exited ({self.process.returncode}) while waiting "
                            f"for {what}\n{self.log_tail()}")
            try:
                alerts = self.alerts()
            except (OSError, ValueError):
                alerts = []
            if done(alerts):
                return alerts
            if time.monotonic() >= deadline:
                pytest.fail(f"no {what} within {timeout:g}s; Alertmanager holds "
                            f"{json.dumps(alerts, indent=1)}\n{self.log_tail()}")
            if between is not None:
                between()
            time.sleep(POLL_S)


@contextmanager
def running_alertmanager(binary: Path, workdir: Path, config: str, *,
                         port: int | None = None) -> Iterator[RealAlertmanager]:
    """Alertmanager with `config` (YAML text) and its data under `workdir`; killed on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(config, encoding="utf-8")
    port = port or pick_free_port()
    log_path = workdir / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), f"--config.file={config_path}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    manager = RealAlertmanager(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited ({process.returncode}) before it was "
                            f"ready\n{manager.log_tail()}")
            try:
                with urllib.request.urlopen(manager.url + "/-/ready", timeout=2.0) as answer:
                    if answer.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass  # not listening yet
            if time.monotonic() >= deadline:
                pytest.fail(f"alertmanager not ready within {READY_TIMEOUT_S:g}s\n"
                            f"{manager.log_tail()}")
            time.sleep(POLL_S)
        yield manager
    finally:
        process.kill()
        process.wait(timeout=10)
