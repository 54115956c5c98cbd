"""Time to page: an error line appended to a log → a webhook receiver has the notification.

Three contenders watch the same log file at the same time, in one run:

* inferwatch  `inferwatch run` at its defaults (1 s scrape and evaluation), the rule
  `increase(inferwatch_request_errors_total[1m]) > 0`, a route with `group_wait: 0s` and the
  default group_interval/repeat_interval, a webhook receiver;
* stack       mtail → Prometheus → Alertmanager at their defaults: 15 s scrape, 15 s
  evaluation, 30 s group_wait; the same rule on mtail's counter; Alertmanager's webhook;
* tuned       the same stack at 1 s scrape, 1 s evaluation, 0 s group_wait.

Every incident is a new model (`incident-07`) whose first error line is the incident, so each
pages through its own alert and group (`group_by: [alertname, model]`): incidents can follow
one another every 0.5 to 2.5 s (random, so they fall at every phase of the scrape and evaluation
ticks) without waiting for the previous alert to resolve. Before the incidents, one ordinary
line per incident model is written and the benchmark waits until every contender has seen it
(Prometheus: two samples of each series), so the counters exist at 0 and Prometheus's
increase() can see the first error. A steady 20 lines/s of other traffic runs throughout.

The time of an incident runs from just after its line was written (and flushed) to the
arrival of the first POST carrying a firing alert with its model, both on this process's
monotonic clock. Percentiles are nearest-rank over the incidents; an incident never paged
within the timeout counts as not paged and is left out of the percentiles (and reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from procs import BENCH_DIR, free_loopback_port, python_tool, stop_process

MTAIL_PROGRAM = BENCH_DIR / "page_mtail.mtail"
INCIDENT_GAP_S = (0.5, 2.5)
STEADY_EVERY_S = 0.05
READY_TIMEOUT_S = 60.0
PRIME_TIMEOUT_S = 120.0
PAGE_TIMEOUT_S = 150.0  # after the last incident; the default stack needs up to ~65 s
TARGET_P99_S = 1.0
_POLL_S = 0.1


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- the log and the receiver -----------------------------------------------------------------


class LogWriter:
    """Appends request lines in the `inference` schema, one write(2) each."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.serial = 0

    def write(self, model: str, *, error: bool) -> float:
        """Append one line; the monotonic time just after it was written."""
        self.serial += 1
        line: dict[str, Any] = {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "ERROR" if error else "INFO", "service": "bench", "model": model,
            "request_id": f"r-{self.serial}", "duration_ms": 120.5,
            "input_tokens": 100, "output_tokens": 200}
        if error:
            line["error"] = "CUDA out of memory"
        os.write(self.fd, (json.dumps(line) + "\n").encode())
        return time.monotonic()

    async def steady(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.write("steady", error=False)
            await asyncio.sleep(STEADY_EVERY_S)

    def close(self) -> None:
        os.close(self.fd)


class Receiver:
    """One webhook endpoint per contender (`/<name>`): the first firing POST per model."""

    def __init__(self) -> None:
        self.arrivals: dict[str, dict[str, float]] = {}
        self.port = free_loopback_port()
        self.arrived = asyncio.Event()  # set on every POST that brought a new model
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        seen = self.arrivals.setdefault(request.match_info["name"], {})
        try:
            body = await request.json()
            alerts = body["alerts"]
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400)
        for alert in alerts:
            model = alert.get("labels", {}).get("model")
            if alert.get("status") == "firing" and isinstance(model, str) and model not in seen:
                seen[model] = arrived
                self.arrived.set()
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# -- contenders -------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    title: str
    query_port: int  # where `/api/v1/query` answers: the daemon, or the Prometheus
    primed_query: str  # its result is the number of incident series seen (ready to page)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ready_urls: list[str] = field(default_factory=list)
    workdir: Path = Path()

    def spawn(self, argv: list[str], log_name: str) -> None:
        with (self.workdir / log_name).open("wb") as log:
            self.processes.append(subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir))

    def exited(self) -> str | None:
        for process in self.processes:
            if process.poll() is not None:
                return f"{process.args[0]} exited with {process.returncode}"  # type: ignore[index]
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU time of its processes so far, from /proc/<pid>/stat."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout_s=15.0)


def inferwatch_contender(workdir: Path, log: Path, receiver: Receiver) -> Contender:
    port = free_loopback_port()
    rules = workdir / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "page", "rules": [{
        "alert": "ErrorSeen", "expr": "increase(inferwatch_request_errors_total[1m]) > 0"}]}]}))
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(workdir / "state")},
        "rule_files": [str(rules)],
        "sources": [{"name": "inference", "paths": [str(log)], "schema": "inference"}],
        "notify": {
            "route": {"receiver": "sink", "group_by": ["alertname", "model"],
                      "group_wait": "0s"},
            "receivers": [{"name": "sink", "webhook_configs": [
                {"url": receiver.url("inferwatch"), "send_resolved": False}]}]},
    }
    path = workdir / "inferwatch.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    contender = Contender(
        "inferwatch", "inferwatch (1 s scrape + eval, group_wait 0 s)", port,
        'count(inferwatch_requests_total{model=~"incident-.*"})', workdir=workdir)
    contender.spawn([*python_tool("inferwatch"), "run", "--config", str(path)], "daemon.log")
    contender.ready_urls.append(f"http://127.0.0.1:{port}/-/ready")
    return contender


def stack_contender(name: str, title: str, workdir: Path, log: Path, receiver: Receiver, *,
                    scrape: str, evaluation: str, group_wait: str | None,
                    binaries: dict[str, str]) -> Contender:
    mtail_port, prom_port, am_port = (free_loopback_port() for _ in range(3))
    progs = workdir / "progs"
    progs.mkdir()
    shutil.copy(MTAIL_PROGRAM, progs / MTAIL_PROGRAM.name)
    route: dict[str, Any] = {"receiver": "sink", "group_by": ["alertname", "model"]}
    if group_wait is not None:
        route["group_wait"] = group_wait
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": route,
        "receivers": [{"name": "sink", "webhook_configs": [
            {"url": receiver.url(name), "send_resolved": False}]}]}))
    (workdir / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "page", "rules": [{
        "alert": "ErrorSeen", "expr": "increase(request_errors_total[1m]) > 0"}]}]}))
    (workdir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": scrape, "evaluation_interval": evaluation},
        "rule_files": [str(workdir / "rules.yml")],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "mtail", "static_configs": [
            {"targets": [f"127.0.0.1:{mtail_port}"]}]}]}))
    contender = Contender(
        name, title, prom_port,
        'count(count_over_time(request_errors_total{model=~"incident-.*"}[5m]) >= 2)',
        workdir=workdir)
    contender.spawn([binaries["alertmanager"], f"--config.file={workdir / 'alertmanager.yml'}",
                     f"--storage.path={workdir / 'am-data'}",
                     f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                     "--log.level=warn"], "alertmanager.log")
    contender.spawn([binaries["mtail"], "--progs", str(progs), "--logs", str(log),
                     "--address", "127.0.0.1", "--port", str(mtail_port), "--logtostderr"],
                    "mtail.log")
    contender.spawn([binaries["prometheus"], f"--config.file={workdir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={workdir / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                    "prometheus.log")
    contender.ready_urls += [f"http://127.0.0.1:{am_port}/-/ready",
                             f"http://127.0.0.1:{mtail_port}/metrics",
                             f"http://127.0.0.1:{prom_port}/-/ready"]
    return contender


def stack_binaries() -> dict[str, str] | None:
    found = {"mtail": shutil.which("mtail"), "prometheus": shutil.which("prometheus"),
             "alertmanager": shutil.which("prometheus-alertmanager")
             or shutil.which("alertmanager")}
    if any(path is None for path in found.values()):
        return None
    return {name: path for name, path in found.items() if path is not None}


# -- the run ----------------------------------------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def wait_ready(session: aiohttp.ClientSession, contender: Contender) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    for url in contender.ready_urls:
        while await _get(session, url) != 200:
            problem = contender.exited()
            if problem is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{contender.name}: {url} never ready "
                                   f"({problem or 'timeout'}); logs in {contender.workdir}")
            await asyncio.sleep(_POLL_S)


async def primed_count(session: aiohttp.ClientSession, contender: Contender) -> int:
    url = f"http://127.0.0.1:{contender.query_port}/api/v1/query"
    try:
        async with session.get(url, params={"query": contender.primed_query}) as response:
            body = await response.json()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return 0
    result = body.get("data", {}).get("result", [])
    return int(float(result[0]["value"][1])) if result else 0


@dataclass(frozen=True)
class PageResult:
    name: str
    title: str
    latencies: list[float]
    missed: int
    cpu_s: float  # CPU time of its processes from ready to the last page

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "cpu_s": self.cpu_s,
                "paged": len(self.latencies),
                "missed": self.missed, "p50_s": nearest_rank(self.latencies, 0.5),
                "p99_s": nearest_rank(self.latencies, 0.99),
                "max_s": max(self.latencies, default=None), "latencies_s": self.latencies}


async def measure(scratch: Path, incidents: int, seed: int, *, stacks: bool) -> list[PageResult]:
    receiver = Receiver()
    await receiver.start()
    log_path = scratch / "logs" / "inference.log"
    writer = LogWriter(log_path)
    models = [f"incident-{i:02d}" for i in range(incidents)]
    writer.write("steady", error=False)  # mtail follows only files there when it starts
    contenders: list[Contender] = []
    stop_steady = asyncio.Event()
    steady = asyncio.create_task(writer.steady(stop_steady))
    try:
        (scratch / "inferwatch").mkdir()
        contenders.append(inferwatch_contender(scratch / "inferwatch", log_path, receiver))
        binaries = stack_binaries() if stacks else None
        if binaries is not None:
            for name, title, scrape, evaluation, wait in (
                    ("stack", "mtail→Prometheus→Alertmanager, defaults (15 s/15 s/30 s)",
                     "15s", "15s", None),
                    ("tuned", "mtail→Prometheus→Alertmanager, tuned (1 s/1 s/0 s)",
                     "1s", "1s", "0s")):
                (scratch / name).mkdir()
                contenders.append(stack_contender(
                    name, title, scratch / name, log_path, receiver, scrape=scrape,
                    evaluation=evaluation, group_wait=wait, binaries=binaries))
        elif stacks:
            print("  mtail, prometheus or alertmanager not on PATH: inferwatch alone")
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for contender in contenders:
                await wait_ready(session, contender)
            # After start-up: mtail reads a file that existed when it started from its end.
            for model in models:
                writer.write(model, error=False)
            deadline = time.monotonic() + PRIME_TIMEOUT_S
            for contender in contenders:
                while await primed_count(session, contender) < incidents:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{contender.name} never saw the incident models; "
                                           f"logs in {contender.workdir}")
                    await asyncio.sleep(_POLL_S)
            print(f"  all {len(contenders)} contender(s) ready; {incidents} incidents follow",
                  flush=True)
            cpu_before = {c.name: c.cpu_seconds() for c in contenders}
            window_start = time.monotonic()
            rng = random.Random(seed)
            written: dict[str, float] = {}
            for model in models:
                await asyncio.sleep(rng.uniform(*INCIDENT_GAP_S))
                written[model] = writer.write(model, error=True)
            deadline = time.monotonic() + PAGE_TIMEOUT_S
            while any(len(receiver.arrivals.get(c.name, {}).keys() & written.keys()) < incidents
                      for c in contenders):
                receiver.arrived.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(receiver.arrived.wait(), remaining)
            cpu = {c.name: c.cpu_seconds() - cpu_before[c.name] for c in contenders}
            window_s = time.monotonic() - window_start
    finally:
        stop_steady.set()
        await steady
        writer.close()
        for contender in contenders:
            contender.stop()
        await receiver.stop()
    results = []
    for contender in contenders:
        arrived = receiver.arrivals.get(contender.name, {})
        latencies = [arrived[m] - written[m] for m in models if m in arrived]
        results.append(PageResult(contender.name, contender.title, latencies,
                                  incidents - len(latencies), cpu[contender.name]))
    print(f"  CPU seconds from the first incident until every contender paged ({window_s:.0f} s, "
          f"{1 / STEADY_EVERY_S:.0f} lines/s besides): "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items()), flush=True)
    return results


def _seconds(value: float | None) -> str:
    return "    n/a" if value is None else f"{value:6.2f}s"


def report(results: Sequence[PageResult], incidents: int) -> list[str]:
    lines = [f"time to page: error line written -> webhook POST received, {incidents} "
             "incidents, one log, one run (nearest-rank percentiles)",
             f"  {'contender':<58} {'p50':>7} {'p99':>7} {'max':>7}  paged"]
    for result in results:
        s = result.summary()
        lines.append(f"  {result.title:<58} {_seconds(s['p50_s'])} {_seconds(s['p99_s'])} "
                     f"{_seconds(s['max_s'])}  {s['paged']}/{incidents}")
    ours = results[0].summary()
    for peer in results[1:]:
        theirs = peer.summary()
        for q in ("p50_s", "p99_s"):
            if ours[q] and theirs[q]:
                lines.append(f"  {peer.name} {q[:3]} / inferwatch {q[:3]}: "
                             f"{theirs[q] / ours[q]:.1f}x (higher is better for inferwatch)")
    if ours["p99_s"] is not None:
        verdict = "met" if ours["p99_s"] <= TARGET_P99_S and not ours["missed"] else "NOT met"
        lines.append(f"  target: inferwatch p99 <= {TARGET_P99_S:g} s at its defaults: {verdict}")
    return lines


def run_page(scratch: Path, *, incidents: int, seed: int, stacks: bool) -> dict[str, Any]:
    """Measure, print the report; the JSON document of the results."""
    results = asyncio.run(measure(scratch, incidents, seed, stacks=stacks))
    print("\n".join(report(results, incidents)), flush=True)
    return {"incidents": incidents, "seed": seed,
            "contenders": [result.summary() for result in results]}
