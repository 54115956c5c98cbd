"""Idle cost: the daemon watching 1,000 quiet files under one glob.

The files are read once (a line each), then nothing changes; the daemon's CPU time over a
quiet window, divided by the window, is the share of a core that watching costs. Measured
with inotify (directory watches plus a 1 s safety-net rescan) and with polling (every
250 ms), each against the same files. CPU time comes from /proc/<pid>/stat (utime + stime).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from daemon_peer import POLL_INTERVAL_S, _get
from procs import free_loopback_port, python_tool, stop_process

FILES = 1000
_LINE = b'{"timestamp": 1767225600, "duration_ms": 5}\n'
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class IdleRun:
    inotify: bool
    files: int
    window_s: float
    cpu_s: float

    @property
    def core_share(self) -> float:
        return self.cpu_s / self.window_s


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def _make_files(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (directory / f"worker-{index:04d}.log").write_bytes(_LINE)


def measure_idle(workdir: Path, *, inotify: bool, window_s: float, files: int = FILES) -> IdleRun:
    logs = workdir / "logs"
    _make_files(logs, files)
    port = free_loopback_port()
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(workdir / "state")},
        "ingest": {"inotify": inotify},
        "sources": [{"name": "workers", "paths": [str(logs / "*.log")], "schema": "inference"}],
    }
    config_path = workdir / "inferwatch.yml"
    config_path.write_text(yaml.safe_dump(config))
    argv = [*python_tool("inferwatch"), "run", "--config", str(config_path)]
    with (workdir / "daemon.log").open("wb") as errors:
        process = subprocess.Popen(argv, stdout=errors, stderr=errors, cwd=workdir)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if _get(f"http://127.0.0.1:{port}/-/ready")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(POLL_INTERVAL_S)
            time.sleep(2.0)  # let the catch-up's last checkpoint settle
            before, started = _cpu_seconds(process.pid), time.monotonic()
            time.sleep(window_s)
            cpu_s = _cpu_seconds(process.pid) - before
            window = time.monotonic() - started
        finally:
            stop_process(process)
    return IdleRun(inotify, files, window, cpu_s)
