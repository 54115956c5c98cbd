"""mtail as a peer: `mtail --one_shot` over the log with bench/ingest_mtail.mtail.

One-shot mode still starts mtail's HTTP listener, so it is pointed at an ephemeral loopback
port (`--address 127.0.0.1 --port 0`); glog goes to stderr (`--logtostderr`) and the process
runs in a scratch directory with TMPDIR set to it, so nothing is written elsewhere. The time
is the whole process, start to exit; the result is its Prometheus-format dump.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aggregate import Aggregate, aggregate_from_exposition
from procs import BENCH_DIR, run_timed

PROGRAM = BENCH_DIR / "ingest_mtail.mtail"
_BUCKETS_LINE = re.compile(r"^(histogram request_duration_seconds buckets )(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class MtailRun:
    wall_s: float
    result: Aggregate


def mtail_binary() -> str | None:
    return shutil.which("mtail")


def mtail_version(binary: str) -> str:
    done = run_timed([binary, "--version"], timeout_s=30)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def program_text(buckets: Sequence[float], program: Path = PROGRAM) -> tuple[str, str | None]:
    """The program with the histogram on `buckets`; a warning when the file had other bounds."""
    text = program.read_text()
    match = _BUCKETS_LINE.search(text)
    if match is None:
        raise ValueError(f"{program}: no `histogram request_duration_seconds buckets` line")
    declared = tuple(float(b) for b in match.group(2).split(","))
    if declared == tuple(buckets):
        return text, None
    wanted = ", ".join(repr(float(b)) for b in buckets)
    fixed = _BUCKETS_LINE.sub(lambda m: m.group(1) + wanted, text, count=1)
    return fixed, (f"{program.name} declares buckets {declared}, the daemon uses "
                   f"{tuple(buckets)}: running with the daemon's")


def prepare(workdir: Path, buckets: Sequence[float]) -> str | None:
    """Write the program into `workdir/progs`; the bucket warning, if any."""
    progs = workdir / "progs"
    progs.mkdir(parents=True, exist_ok=True)
    text, warning = program_text(buckets)
    (progs / PROGRAM.name).write_text(text)
    return warning


def run_mtail(binary: str, log: Path, workdir: Path, n_buckets: int) -> MtailRun:
    """One `--one_shot` pass over `log`, timed as a whole process."""
    argv = [binary, "--one_shot", "--one_shot_format", "prometheus",
            "--progs", str(workdir / "progs"), "--logs", str(log),
            "--address", "127.0.0.1", "--port", "0", "--logtostderr",
            "--emit_prog_label=false"]
    env = {**os.environ, "TMPDIR": str(workdir)}
    done = run_timed(argv, cwd=workdir, env=env)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"mtail exited with {done.returncode}:\n{tail}")
    result = aggregate_from_exposition(
        done.stdout, requests="requests_total", input_tokens="input_tokens_total",
        output_tokens="output_tokens_total", duration="request_duration_seconds",
        n_buckets=n_buckets)
    return MtailRun(done.wall_s, result)
