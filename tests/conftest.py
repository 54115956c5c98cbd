"""Shared fixtures for tests that run the daemon for real.

- `free_port`: a loopback port nobody listens on (asked from the kernel, then released).
- `write_config`: a config dict written as a YAML file.
- `fast_ingest`: ingest intervals short enough for tests (100 ms checkpoints and rescans).
- `spawn_daemon`: `inferwatch run` as a subprocess; every process it starts is SIGKILLed in
  teardown if it is still alive, whatever the test did.
- `run_cli`: one `inferwatch ...` command to completion, with a timeout.
- `parse_exposition`: a `/metrics` body (text 0.0.4) as {(sample name, labels): value}.
- `integration_missing`, `require_program`, `promtool`: a program an integration test needs,
  or a skip (a failure under INFERWATCH_REQUIRE_INTEGRATION=1, which .ci/run sets).
- `truth`: what a test wrote (generated lines plus deliberate bad lines), in the same shape,
  to compare with what the daemon exports.

Every wait here is a bounded polling loop with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from monitor.demo.lines import GeneratedLine

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

FAST_INGEST: Mapping[str, str] = {
    "checkpoint_interval": "100ms",
    "rescan_interval": "100ms",
    "poll_interval": "50ms",
    "rotate_wait": "2s",
}
POLL_S = 0.02
# Variables of the service manager and of the operator's shell that would change what a
# daemon started by a test does (sd_notify, default paths, log format).
_FOREIGN_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INFERWATCH_CONFIG",
                "JOURNAL_STREAM", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "LISTEN_FDS")
# The request families and line counts that the exactly-once tests compare with the truth.
COMPARED_FAMILIES = ("requests_total", "request_errors_total", "input_tokens_total",
                     "output_tokens_total", "reasoning_tokens_total", "log_lines_total")


PROMTOOL = Path("/usr/bin/promtool")


def integration_missing(message: str) -> NoReturn:
    """Skip the test for something it needs that is missing; under
    INFERWATCH_REQUIRE_INTEGRATION=1 (CI) fail it instead."""
    if os.environ.get("INFERWATCH_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{message} and INFERWATCH_REQUIRE_INTEGRATION=1")
    pytest.skip(message)


def require_program(program: str | Path, package: str | None = None) -> Path:
    """An absolute path if that file exists, a bare name if it is on PATH; otherwise
    `integration_missing`, naming the Debian package that provides it."""
    found = (str(program) if Path(program).is_file() else None) if Path(program).is_absolute() \
        else shutil.which(str(program))
    if found is None:
        integration_missing(f"{program} not found"
                            + (f" (Debian package `{package}`)" if package else ""))
    return Path(found)


@pytest.fixture
def promtool() -> Path:
    return require_program(PROMTOOL, "prometheus")


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def free_port() -> Callable[[], int]:
    return pick_free_port


@pytest.fixture
def fast_ingest() -> dict[str, str]:
    return dict(FAST_INGEST)


def _write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def write_config() -> Callable[[Path, Mapping[str, Any]], Path]:
    return _write_config


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# --- HTTP --------------------------------------------------------------------------------


@dataclass
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: str


def http_request(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                 timeout: float = 5.0) -> HttpResult:
    """One request; HTTP error statuses are results, connection failures raise OSError."""
    request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(response.status, dict(response.headers.items()),
                              response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        return HttpResult(exc.code, dict(exc.headers.items()), body)


# --- parsing and the truth ---------------------------------------------------------------


def _parse_exposition(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


@pytest.fixture
def parse_exposition() -> Callable[[str], Samples]:
    return _parse_exposition


def compared(samples: Samples, namespace: str = "inferwatch") -> Samples:
    """The samples of COMPARED_FAMILIES, without the namespace prefix and without zeros."""
    prefix = f"{namespace}_"
    out: Samples = {}
    for (name, labels), value in samples.items():
        short = name.removeprefix(prefix)
        if short in COMPARED_FAMILIES and value != 0:
            out[short, labels] = value
    return out


def diff(actual: Samples, expected: Samples) -> str:
    """A readable list of the samples that differ (empty when equal)."""
    lines = []
    for key in sorted(set(actual) | set(expected), key=repr):
        got, want = actual.get(key, 0.0), expected.get(key, 0.0)
        if got != want:
            labels = ",".join(f"{k}={v}" for k, v in sorted(key[1]))
            lines.append(f"{key[0]}{{{labels}}}: exported {got}, written {want}")
    return "\n".join(lines)


class TrafficTruth:
    """What was written to each source, as the daemon's exported samples should show it."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, frozenset[tuple[str, str]]]] = Counter()
        self.lines: Counter[str] = Counter()

    def add(self, source: str, line: GeneratedLine, *, service: str | None = None) -> None:
        """One generated line read by `source` (`service`: the source's service label)."""
        base = {"source": source, "model": line.model}
        if line.schema == "inference":
            base["service"] = service or line.model
        elif service:
            base["service"] = service

        def bump(family: str, amount: int, **labels: str) -> None:
            if amount:
                self.counts[family, frozenset({**base, **labels}.items())] += amount

        bump("requests_total", 1, status="error" if line.is_error else "success")
        if line.error_class is not None:
            bump("request_errors_total", 1, **{"class": line.error_class})
        if line.cache_hit_tokens is None or line.cache_miss_tokens is None:
            bump("input_tokens_total", line.input_tokens, cache="unknown")
        else:
            bump("input_tokens_total", line.cache_hit_tokens, cache="hit")
            bump("input_tokens_total", line.cache_miss_tokens, cache="miss")
        bump("output_tokens_total", line.output_tokens)
        # Flat gateway lines report no reasoning split, so the daemon cannot count it.
        if b'"reasoning_tokens"' in line.data:
            bump("reasoning_tokens_total", line.reasoning_tokens)
        self.add_result(source, "parsed")

    def add_all(self, source: str, lines: Iterable[GeneratedLine], *,
                service: str | None = None) -> None:
        for line in lines:
            self.add(source, line, service=service)

    def add_result(self, source: str, result: str, amount: int = 1) -> None:
        """Lines counted in log_lines_total{result} (malformed, oversized, ...)."""
        self.counts["log_lines_total", frozenset({"source": source, "result": result}.items())] \
            += amount
        self.lines[source] += amount

    def samples(self) -> Samples:
        return {key: float(value) for key, value in self.counts.items() if value}


@pytest.fixture
def truth() -> TrafficTruth:
    return TrafficTruth()


@pytest.fixture
def compare_samples() -> Callable[[Samples, Samples], str]:
    """`diff(compared(exported), expected)`: empty when the exported counters equal the truth."""
    def compare(exported: Samples, expected: Samples) -> str:
        return diff(compared(exported), expected)
    return compare


# --- the daemon as a subprocess ----------------------------------------------------------


def inferwatch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", *args]


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`python -m monitor ARGS` to completion (killed after `timeout` s), output captured."""
    def run(*args: str, timeout: float = 60.0, cwd: Path | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(inferwatch_argv(*args), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd or tmp_path, env=clean_env(**(env or {})),
                              stdin=subprocess.DEVNULL, check=False)
    return run


class DaemonProcess:
    """One `inferwatch run` process; its stdout and stderr go to a log file."""

    def __init__(self, config_path: Path, port: int, log_path: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.env = clean_env(**(env or {}))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                inferwatch_argv("run", "--config", str(self.config_path)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                cwd=self.config_path.parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, headers: Mapping[str, str] | None = None,
            method: str = "GET") -> HttpResult:
        return http_request(self.url(path), method=method, headers=headers)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until /-/ready answers 200; fails early (with the log) if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                pytest.fail(f"daemon exited with {self.process and self.process.returncode} "
                            f"before it was ready:\n{self.log_text()}")
            try:
                if self.get("/-/ready").status == 200:
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                pytest.fail(f"daemon not ready within {timeout} s:\n{self.log_text()}")
            time.sleep(POLL_S)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not logged within {timeout} s:\n{self.log_text()}")
            time.sleep(POLL_S)

    def samples(self) -> Samples:
        response = self.get("/metrics")
        assert response.status == 200, response.body
        return _parse_exposition(response.body)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and the exit status (SIGKILL and a failure if it does not exit in time)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            pytest.fail(f"daemon ignored SIGTERM for {timeout} s:\n{self.log_text()}")


@pytest.fixture
def spawn_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start `inferwatch run --config PATH` (listening on `port`); killed in teardown."""
    started: list[DaemonProcess] = []

    def spawn(config_path: Path, port: int, *, env: Mapping[str, str] | None = None,
              log_name: str = "daemon.log") -> DaemonProcess:
        daemon = DaemonProcess(config_path, port, tmp_path / log_name, env)
        started.append(daemon)
        return daemon.start()

    yield spawn
    for daemon in started:
        daemon.kill()
