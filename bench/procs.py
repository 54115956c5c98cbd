"""Running contenders as processes: whole-process wall time, captured output, /proc memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent


@dataclass(frozen=True)
class Finished:
    """A process run to completion: how long it took and what it said."""

    wall_s: float
    returncode: int
    stdout: str
    stderr: str


def run_timed(argv: Sequence[str], *, cwd: Path | None = None,
              env: Mapping[str, str] | None = None, timeout_s: float = 600.0) -> Finished:
    """Spawn `argv` and wait for it; wall time from just before spawn to its exit."""
    started = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=None if env is None else dict(env),
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    return Finished(time.perf_counter() - started, done.returncode, done.stdout, done.stderr)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a live process, in KiB, from /proc/<pid>/status."""
    wanted = {"VmRSS", "VmHWM"}
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[key] = int(value.split()[0])
    return found


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def python_tool(name: str) -> list[str]:
    """The console script `name` next to this interpreter (the venv's), else `-m monitor`."""
    script = Path(sys.executable).parent / name
    if script.exists() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "monitor"]
