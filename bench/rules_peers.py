"""The rules benchmark's HTTP contenders: a real Prometheus, and inferwatch's own query API.

* `backfill`: `promtool tsdb create-blocks-from openmetrics` turns the exported samples into
  TSDB blocks (one block: `--max-block-duration=24h`, a flag promtool 2.42 hides from --help).
* `PrometheusServer`: `prometheus` over those blocks on a free loopback port, no scrape
  targets, compaction off (min = max block duration), so nothing runs beside the queries.
* `InferwatchApiServer`: the daemon's `/api/v1/query*` handlers (`add_prometheus_api`) over the
  benchmark's SeriesStore, served by aiohttp from a thread of this process.
* `QueryClient`: one keep-alive HTTP connection; a query is timed from sending the request to
  having read the whole body, the same way for both servers.
* `compare`: whether two API answers hold the same series and values.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from procs import free_loopback_port, stop_process

from monitor.api.prom import add_prometheus_api
from monitor.clock import SystemClock
from monitor.promql.engine import Engine
from monitor.tsdb.store import SeriesStore

READY_TIMEOUT_S = 60.0


def promtool_binary() -> str | None:
    return shutil.which("promtool")


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def prometheus_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else "?"


def check_rules(promtool: str, rule_file: Path) -> str | None:
    """`promtool check rules`: None when Prometheus accepts the file, else its complaint."""
    done = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True,
                          text=True, check=False)
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()


def backfill(promtool: str, openmetrics: Path, tsdb: Path) -> float:
    """Blocks from an OpenMetrics file; the seconds promtool took."""
    argv = [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet",
            "--max-block-duration=24h", str(openmetrics), str(tsdb)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0 and "max-block-duration" in done.stderr:  # an older promtool
        argv.remove("--max-block-duration=24h")
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from openmetrics failed: "
                           f"{(done.stdout + done.stderr).strip()[-2000:]}")
    return time.perf_counter() - started


def chunk_bytes(tsdb: Path) -> int:
    """Bytes of the blocks' chunk files (XOR-compressed samples, index excluded)."""
    return sum(path.stat().st_size for path in tsdb.glob("*/chunks/*") if path.is_file())


def _seconds(value: float) -> str:
    """Epoch seconds to the millisecond (`%g` would keep only six digits)."""
    return f"{value:.3f}"


class QueryClient:
    """Prometheus API queries over one keep-alive connection."""

    def __init__(self, port: int, timeout_s: float = 600.0) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)

    def close(self) -> None:
        self.connection.close()

    def post(self, path: str, params: dict[str, str]) -> bytes:
        body = urlencode(params)
        self.connection.request("POST", path, body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {data[:500]!r}")
        return data

    def query(self, expr: str, t_s: float) -> bytes:
        return self.post("/api/v1/query", {"query": expr, "time": _seconds(t_s)})

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> bytes:
        return self.post("/api/v1/query_range", {"query": expr, "start": _seconds(start_s),
                                                 "end": _seconds(end_s),
                                                 "step": _seconds(step_s)})

    def get(self, path: str) -> int:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        response.read()
        return response.status


class PrometheusServer:
    """A Prometheus over existing blocks, for queries only (or scraping what `config`, a
    prometheus.yml text, lists); stopped on exit."""

    def __init__(self, binary: str, tsdb: Path, workdir: Path,
                 config: str | None = None) -> None:
        self.binary = binary
        self.tsdb = tsdb
        self.workdir = workdir
        self.config = config or "global:\n  evaluation_interval: 1m\nscrape_configs: []\n"
        self.port = free_loopback_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    def __enter__(self) -> PrometheusServer:
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config)
        log = (self.workdir / "prometheus.log").open("wb")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.tsdb}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=100y",
             "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h",
             "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        self.startup_s = time.perf_counter() - started
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            client = QueryClient(self.port, timeout_s=2.0)
            try:
                if client.get("/-/ready") == 200:
                    return
            except OSError:
                pass
            finally:
                client.close()
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready after {READY_TIMEOUT_S:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s=15.0)
            self.process = None


class InferwatchApiServer:
    """inferwatch's Prometheus-compatible API over `store`, served from a background thread."""

    def __init__(self, store: SeriesStore) -> None:
        self.store = store
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="inferwatch-api",
                                        daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> InferwatchApiServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        app = web.Application()
        add_prometheus_api(app, engine=Engine(self.store), series=self.store,
                           rules=list, clock=SystemClock())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


# -- comparing answers ------------------------------------------------------------------------


def _points(body: bytes) -> tuple[str, dict[tuple[tuple[str, str], ...], Any]]:
    document = json.loads(body)
    if document.get("status") != "success":
        return "error", {(): document.get("error")}
    data = document["data"]
    kind = data["resultType"]
    if kind in ("scalar", "string"):
        return kind, {(): data["result"]}
    out: dict[tuple[tuple[str, str], ...], Any] = {}
    for item in data["result"]:
        key = tuple(sorted(item["metric"].items()))
        out[key] = [item["value"]] if kind == "vector" else item["values"]
    return kind, out


def result_series(body: bytes) -> int:
    """How many series (or scalars) an API answer holds."""
    return len(_points(body)[1])


def _same_value(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def compare(ours: bytes, theirs: bytes) -> str | None:
    """None when both answers hold the same series, timestamps and values (relative 1e-9:
    sums may add in another order); else the first difference."""
    kind_a, a = _points(ours)
    kind_b, b = _points(theirs)
    if kind_a != kind_b:
        return f"result type {kind_a} vs {kind_b} ({a if kind_a == 'error' else b})"
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        return (f"{len(a)} vs {len(b)} series; only inferwatch: {only_a[:2]}; only "
                f"Prometheus: {only_b[:2]}")
    for key, found in a.items():
        points, other = found, b[key]
        if kind_a in ("scalar", "string"):
            points, other = [found], [other]
        if len(points) != len(other):
            return f"{dict(key)}: {len(points)} vs {len(other)} points"
        for (t1, v1), (t2, v2) in zip(points, other, strict=True):
            if float(t1) != float(t2) or not _same_value(v1, v2):
                return f"{dict(key)}: {v1}@{t1} vs {v2}@{t2}"
    return None
