"""`inferwatch report` over a 2 GiB log stays within bounded memory (marked `slow`).

The log is a FIFO fed by a thread of this test, so nothing is written to disk: 4,096 lines of
512 KiB (a long `prompt_truncated`, as a chatty inference server writes) plus two oversized
3 MiB lines, 2 GiB and 6 MiB in all. The report runs as its own process, which prints its
own peak resident memory (VmHWM of /proc/self/status) when the command returns; it must stay
under 200 MiB — the file is ten times that. (Not `ru_maxrss` from wait4: a child started by
vfork inherits the high-water mark of the parent it borrowed memory from, so after a long test
session it reads as the test runner's size.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import clean_env
from report_logs import START

from monitor.report.document import iso

LINES = 4096
PAD_BYTES = 512 * 1024
OVERSIZED = 2
RSS_BOUND_BYTES = 200 * 1024 * 1024
DEADLINE_S = 240.0
# The report command in the child, then its own peak RSS on stderr.
CHILD = """
import sys
from monitor.cli import main
code = main(["report", "--logs", sys.argv[1], "--format", "json"])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
sys.stderr.write(f"VmHWM_KiB={peak}\\n")
sys.exit(code)
"""
F_SETPIPE_SZ = 1031  # Linux fcntl: a 1 MiB pipe buffer means fewer wake-ups per GiB


def _feed(fifo: Path, failures: list[BaseException]) -> None:
    pad = b"x" * PAD_BYTES
    try:
        with fifo.open("wb", buffering=0) as out:
            with contextlib.suppress(OSError):
                fcntl.fcntl(out.fileno(), F_SETPIPE_SZ, 1 << 20)
            for i in range(LINES):
                head = (f'{{"timestamp": "{iso(START + i)}", "service": "big", '
                        f'"request_id": "r{i}", "duration_ms": {100 + i % 900}.5, '
                        f'"input_tokens": {i % 5000}, "output_tokens": 10, '
                        f'"prompt_truncated": "').encode()
                out.write(head + pad + b'"}\n')
                if i % 2000 == 1000:
                    out.write(b'{"prompt_truncated": "' + b"y" * (3 << 20) + b'"}\n')
    except BaseException as exc:  # reported by the test, not swallowed
        failures.append(exc)


@pytest.mark.slow
def test_two_gibibyte_log_in_bounded_memory(tmp_path: Path) -> None:
    fifo = tmp_path / "huge.log"
    os.mkfifo(fifo)
    failures: list[BaseException] = []
    writer = threading.Thread(target=_feed, args=(fifo, failures), daemon=True)
    writer.start()
    out_path, err_path = tmp_path / "report.json", tmp_path / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(fifo)],
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=clean_env())
    killer = threading.Timer(DEADLINE_S, process.kill)
    killer.start()
    try:
        process.wait()
    finally:
        killer.cancel()
    writer.join(timeout=30)
    assert process.returncode == 0, err_path.read_text()
    assert not failures and not writer.is_alive()

    doc = json.loads(out_path.read_text())
    assert doc["lines"]["parsed"] == LINES
    assert doc["lines"]["oversized"] == OVERSIZED
    assert doc["requests"]["total"] == LINES
    assert doc["latency_seconds"]["max"] == 0.9995
    [peak_line] = [line for line in err_path.read_text().splitlines()
                   if line.startswith("VmHWM_KiB=")]
    peak = int(peak_line.partition("=")[2]) * 1024
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak / 2**20:.0f} MiB for a 2 GiB log"
