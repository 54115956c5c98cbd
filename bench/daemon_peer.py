"""inferwatch as a contender: `inferwatch run` from a cold start, timed until `/-/ready`.

A cold start is a fresh state directory, so the daemon reads the whole file before it calls
itself ready (readiness comes after the first catch-up has been committed). The clock starts
just before the process is spawned and stops at the first `/-/ready` that answers 200, polled
every 10 ms: Python start-up, imports, the state file, the HTTP server and the catch-up
together. Memory is read from /proc at that moment, before `/metrics` is fetched and checked.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from aggregate import Aggregate, aggregate_from_exposition
from procs import memory_kib, python_tool, stop_process

from monitor.metrics.families import DURATION_BUCKETS

NAMESPACE = "inferwatch"
POLL_INTERVAL_S = 0.010
READY_TIMEOUT_S = 600.0
_HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DaemonRun:
    wall_s: float
    rss_kib: int
    hwm_kib: int
    result: Aggregate
    exit_code: int


def write_config(workdir: Path, log: Path, port: int) -> Path:
    """A config for one `inference` source over `log`, state under `workdir`.

    Checkpointing stays on, at the defaults spelled out (every 1 s or 10,000 lines).
    """
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(workdir / "state")},
        "ingest": {"checkpoint_interval": "1s", "checkpoint_lines": 10000},
        "sources": [{"name": "inference", "paths": [str(log)], "schema": "inference",
                     "start_at": "beginning"}],
    }
    path = workdir / "inferwatch.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_exposition(text: str) -> Aggregate:
    """The benchmark aggregate out of the daemon's `/metrics` text."""
    return aggregate_from_exposition(
        text,
        requests=f"{NAMESPACE}_requests_total",
        input_tokens=f"{NAMESPACE}_input_tokens_total",
        output_tokens=f"{NAMESPACE}_output_tokens_total",
        duration=f"{NAMESPACE}_request_duration_seconds",
        n_buckets=len(DURATION_BUCKETS),
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT_S) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _wait_ready(process: subprocess.Popen[bytes], base: str, started: float) -> float:
    """Seconds from `started` to the first 200 from /-/ready."""
    url = f"{base}/-/ready"
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if process.poll() is not None:
            raise RuntimeError(f"inferwatch exited with {process.returncode} before ready")
        try:
            status, _ = _get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            status = 0  # not listening yet
        if status == 200:
            return time.perf_counter() - started
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"inferwatch not ready within {READY_TIMEOUT_S:.0f} s")


def run_daemon(log: Path, workdir: Path, port: int) -> DaemonRun:
    """Start `inferwatch run` on a fresh state directory over `log`; stop it when checked."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir, log, port)
    argv = [*python_tool("inferwatch"), "run", "--config", str(config)]
    base = f"http://127.0.0.1:{port}"
    with (workdir / "daemon.log").open("wb") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=errors, stderr=errors, cwd=workdir)
        try:
            wall_s = _wait_ready(process, base, started)
            memory = memory_kib(process.pid)
            status, body = _get(f"{base}/metrics")
            if status != 200:
                raise RuntimeError(f"GET /metrics answered {status}")
        finally:
            exit_code = stop_process(process)
    return DaemonRun(wall_s, memory["VmRSS"], memory["VmHWM"],
                     read_exposition(body.decode()), exit_code)
