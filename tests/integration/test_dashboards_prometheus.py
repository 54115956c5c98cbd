"""Every panel query of every generated dashboard returns data, and the same data, from a real
Prometheus scraping the daemon and from the daemon's own query API.

One real `inferwatch run` (a subprocess) reads demo traffic (monitor/demo's workload, with a
latency spike, an error burst and a spend surge squeezed into half a minute, plus a few
malformed lines), samples the host, a watched process, a health probe and one GPU through the
real pynvml path on the fake libnvidia-ml.so.1 of tests/samplers (its memory climbs, an XID
error arrives), evaluates a rule file, tracks two budgets and the bundled SLO file, and sends
notifications to a receiver that takes them and one that cannot be reached. Its state file is
seeded with half an hour of SLO minutes, as a daemon that ran before would have (the SLO gauges
appear only at the first closed minute of a fresh daemon). A real Prometheus
(/usr/bin/prometheus) scrapes it every second.

Then each target expression is run as Grafana runs it (`$instance` at All = `.*`,
`$__rate_interval` = max(step + scrape interval, 4 x scrape interval) = 4s with a 1 s step and
a 1 s scrape interval, `$__range` = the test's range) through `/api/v1/query_range` of both.
Each must return at least one series with a finite value, and the two must agree:

- the same series, label sets compared without the `instance` and `job` labels that
  Prometheus's scrape adds (series that either side saw at fewer than MIN_POINTS steps, an
  alert pending for a moment, say, are exempt: a 1 s scrape can fall either side of them);
- per series, the mean or the median of the values at the steps where both have one within
  REL_TOL (25 %) of each other (or ABS_TOL of zero). They differ only because the two sample
  the same counters and gauges at different instants: the daemon's internal scrape and
  Prometheus's are both 1 s apart but out of phase, so each 4 s window holds the same events
  give or take one interval at either end (the mean over the range evens that out, even for
  bursty traffic such as the host's network counters), and a gauge sampled between two host
  or probe samples can read the old value in one store and the new in the other (one outlier
  only one store caught moves a mean, not the median). A wrong query, label, function or
  factor moves both. Panels of the machine's own network traffic (UNCONTROLLED), which this
  test does not make, are compared by their series alone.

The compared range is the steady phase after the eventful one, and `$__range` is its length,
so no window reaches back to a counter's first sample: the daemon's store starts a counter
born during its life at 0 (SPEC section 6, so that increase() sees its first events), while
Prometheus starts it at its first scraped value; a window holding that birth legitimately
differs. The steady phase writes no errors and so starts no new series.

Bounded throughout: every wait has a deadline; the daemon, Prometheus and the helper
processes are killed in teardown. Skips without prometheus or a C compiler unless
INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, http_request, integration_missing
from real_prometheus import RealPrometheus, prometheus_binary, running_prometheus, scrape_config

from monitor.clock import SystemClock
from monitor.demo.lines import DEFAULT_ERROR_RATE, Incident, IncidentKind
from monitor.demo.workload import DemoWorkload
from monitor.grafana import build_dashboards
from monitor.grafana.model import Panel, Target
from monitor.slo.service import last_closed_minute
from monitor.slo.spec import load_slo_files
from monitor.storage import StateStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samplers"))
from nvml_helpers import FakeGpu, FakeNvml, FakeNvmlUnavailable, build_fake_nvml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EVENTFUL_S = 24.0  # the incidents; every series is born in its first half
STEADY_S = 12.0  # steady traffic, no errors, no new series: the compared range
STEP_S = 1.0
SCRAPE_INTERVAL_S = 1.0
RATE_INTERVAL = f"{max(STEP_S + SCRAPE_INTERVAL_S, 4 * SCRAPE_INTERVAL_S):g}s"
MIN_POINTS = 3
REL_TOL = 0.25
ABS_TOL = 1e-9
WAIT_S = 30.0
POLL_S = 0.1
INCIDENTS = (Incident(IncidentKind.ERROR_BURST, 1.0, 5.0),
             Incident(IncidentKind.LATENCY_SPIKE, 6.0, 5.0),
             Incident(IncidentKind.SPEND_SURGE, 11.0, 8.0))
MALFORMED_AT_S = (2.0, 5.0, 8.0)
XID_AT_S = 4.0
RULES = """\
groups:
  - name: dashboard-test
    interval: 1s
    rules:
      - alert: TrafficSeen
        expr: sum(rate(inferwatch_requests_total[10s])) > 0
        for: 2s
        labels: {severity: info}
"""


# --- helpers around the daemon -------------------------------------------------------------


class Sink(BaseHTTPRequestHandler):
    """A webhook receiver that takes every POST, and a health endpoint for the probe."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def watched_process() -> Iterator[tuple[str, int]]:
    marker = f"inferwatch-dashboard-test-{os.getpid()}-{random.getrandbits(32):08x}"
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(300)  # {marker}"],
                             stdin=subprocess.DEVNULL)
    try:
        yield marker, child.pid
    finally:
        child.kill()
        child.wait(timeout=10)


@pytest.fixture
def fake_nvml_dir(tmp_path: Path) -> Path:
    try:
        build_fake_nvml(tmp_path / "nvml")
    except FakeNvmlUnavailable as exc:
        integration_missing(str(exc))
    return tmp_path / "nvml"


def seed_slo_minutes(state_dir: Path, slo_file: Path, now: float) -> None:
    """Half an hour of minute counts, as a daemon that ran before would have left them."""
    slos = [slo for spec in load_slo_files([str(slo_file)]) for slo in spec.slos]
    last = last_closed_minute(now)
    store = StateStore(state_dir)
    try:
        with store.transaction() as cursor:
            for index, slo in enumerate(slos):
                errors = 1.0 if index == 0 else 40.0
                cursor.executemany(
                    "INSERT INTO slo_minutes (slo, minute, errors, total) VALUES (?, ?, ?, ?)",
                    [(slo.id, minute, errors, 2000.0) for minute in range(last - 30, last + 1)])
            cursor.execute("INSERT OR REPLACE INTO slo_meta (key, value) VALUES (?, ?)",
                           ("last_minute", last))
    finally:
        store.close()


def config(tmp_path: Path, port: int, sink: str, marker: str) -> dict[str, Any]:
    logs = tmp_path / "logs"
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    closed = f"http://127.0.0.1:{pick_closed_port()}/hook"
    return {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "scrape_interval": "1s",
        "evaluation_interval": "1s",
        "ingest": {"checkpoint_interval": "200ms", "rescan_interval": "500ms",
                   "poll_interval": "100ms"},
        "sources": [
            {"name": "inference", "paths": [str(logs / "inference" / "*.log")],
             "schema": "inference", "labels": {"service": "deepseek-r1"},
             "gpu_hourly_cost": "20"},
            {"name": "api", "paths": [str(logs / "api" / "*.jsonl")], "schema": "api_usage"},
        ],
        "host": {"interval": "1s"},
        "gpu": {"enabled": True, "interval": "1s"},
        "processes": [{"name": "model-server", "match": marker}],
        "probes": [{"name": "model-health", "url": f"{sink}/health", "interval": "1s",
                    "timeout": "500ms"}],
        "rule_files": [str(rules)],
        "slo_files": [str(REPO / "rules" / "slos" / "inference.yml")],
        "cost": {"currency": "CNY", "budgets": [
            {"name": "daily", "period": "day", "limit": "2"},
            {"name": "monthly", "period": "month", "limit": "40"}]},
        "notify": {
            "route": {"receiver": "team", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "2s", "repeat_interval": "1h"},
            # One webhook takes the notifications, the other cannot be reached.
            "receivers": [{"name": "team", "webhook_configs": [{"url": f"{sink}/hook"},
                                                               {"url": closed}]}],
        },
    }


def pick_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def gpu_script(path: Path, child_pid: int) -> FakeNvml:
    nvml = FakeNvml(path=path, gpus=[FakeGpu(
        name="NVIDIA H100 80GB HBM3", uuid="GPU-0a1b2c3d-0000-1111-2222-333344445555",
        mem_total=80 * 2**30, mem_used=40 * 2**30, util=55, mem_util=30, temp=62,
        power_mw=310_000, energy_mj=5_000_000, procs=[(child_pid, 38 * 2**30)])])
    nvml.write()
    return nvml


async def drive(directory: Path, nvml: FakeNvml, duration: float, *, eventful: bool,
                seed: int) -> int:
    """The demo workload for `duration` s while the GPU's memory climbs; an eventful run has
    the incidents, the malformed lines and an XID error, a steady one no errors at all (so it
    starts no new series). Returns the requests written."""
    clock = SystemClock()
    workload = DemoWorkload(directory, clock, random.Random(seed),
                            incidents=INCIDENTS if eventful else (),
                            error_rate=DEFAULT_ERROR_RATE if eventful else 0.0)
    stop = asyncio.Event()
    writer = asyncio.create_task(workload.run(stop))
    started = clock.monotonic()
    malformed = list(MALFORMED_AT_S) if eventful else []
    while (elapsed := clock.monotonic() - started) < duration:
        gpu = nvml.gpus[0]
        gpu.mem_used = min(int(gpu.mem_total * 0.97), gpu.mem_used + 2**29)
        gpu.util = 40 + int(elapsed * 7) % 50
        gpu.temp = 60 + int(elapsed) % 25
        gpu.energy_mj += 150_000
        if eventful and elapsed >= XID_AT_S and not nvml.xids:
            nvml.xids.append((0, 79))
        nvml.write()
        if malformed and elapsed >= malformed[0]:
            with (directory / "api" / "usage.jsonl").open("ab") as log:
                log.write(b'{"timestamp": "not json\n')
            malformed.pop(0)
        await asyncio.sleep(0.5)
    stop.set()
    await writer
    workload.close()
    return sum(workload.stats.requests.values())


# --- running the queries -------------------------------------------------------------------


def grafana_expr(expr: str, range_s: float) -> str:
    """The expression as Grafana sends it: variables replaced as described above."""
    for variable, value in (("$__rate_interval", RATE_INTERVAL), ("$__range", f"{range_s:.0f}s"),
                            ("$__interval", f"{STEP_S:g}s"), ("$instance", ".*")):
        expr = expr.replace(variable, value)
    return expr


Series = dict[frozenset[tuple[str, str]], dict[float, float]]


def normalised(result: list[dict[str, Any]]) -> Series:
    out: Series = {}
    for item in result:
        labels = frozenset((k, v) for k, v in item["metric"].items()
                           if k not in ("instance", "job"))
        assert labels not in out, f"two series with labels {sorted(labels)} once instance " \
                                  "and job are dropped"
        out[labels] = {float(t): float(v) for t, v in item["values"]}
    return out


def daemon_range(daemon: DaemonProcess, expr: str, start: float, end: float) -> list[Any]:
    query = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                    "step": f"{STEP_S:g}"})
    response = http_request(daemon.url(f"/api/v1/query_range?{query}"), timeout=30)
    document = json.loads(response.body)
    assert response.status == 200 and document["status"] == "success", (expr, response.body)
    return list(document["data"]["result"])


def finite_points(series: Series) -> int:
    return sum(1 for values in series.values() for v in values.values() if math.isfinite(v))


# Counters of traffic this test does not make (the machine's own network): in 4 s windows
# sampled out of phase, a burst from another process lands in one store's window and not the
# other's, and their means were seen 50 % apart. Their panels must return the same series,
# with data; their values are left out of the comparison.
UNCONTROLLED = ("host_network_receive_bytes", "host_network_transmit_bytes")


def disagreement(prom: Series, own: Series, *, values: bool = True) -> list[str]:
    """What does not agree, as readable lines (empty when they agree)."""
    problems = []
    for labels in sorted(set(prom) | set(own), key=sorted):
        ours, theirs = own.get(labels), prom.get(labels)
        if ours is None or theirs is None:
            present = ours if ours is not None else theirs
            assert present is not None
            if sum(map(math.isfinite, present.values())) >= MIN_POINTS:
                where = "the daemon" if ours is not None else "Prometheus"
                problems.append(f"{dict(labels)}: only {where} has it ({len(present)} points)")
            continue
        common = [t for t in ours if t in theirs
                  and math.isfinite(ours[t]) and math.isfinite(theirs[t])]
        if not common or not values:
            continue
        pairs = [(statistic([ours[t] for t in common]), statistic([theirs[t] for t in common]))
                 for statistic in (statistics.fmean, statistics.median)]
        if not any(math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) for a, b in pairs):
            (mean_ours, mean_theirs), (mid_ours, mid_theirs) = pairs
            problems.append(f"{dict(labels)}: mean {mean_ours:.6g} vs {mean_theirs:.6g}, "
                            f"median {mid_ours:.6g} vs {mid_theirs:.6g} (daemon vs "
                            f"Prometheus, {len(common)} steps)")
    return problems


def all_targets() -> list[tuple[str, Panel, Target]]:
    return [(dashboard.title, panel, target) for dashboard in build_dashboards().values()
            for panel, target in dashboard.targets()]


def wait_until(what: str, probe: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g}s")
        time.sleep(POLL_S)


def requests_counted(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "inferwatch_requests_total")


# --- the test ------------------------------------------------------------------------------


def test_every_panel_query_returns_the_same_data_from_prometheus_and_the_daemon(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        spawn_daemon: Callable[..., DaemonProcess], sink: str,
        watched_process: tuple[str, int], fake_nvml_dir: Path) -> None:
    binary = prometheus_binary()
    marker, child_pid = watched_process
    nvml = gpu_script(tmp_path / "nvml.script", child_pid)
    for sub in ("inference", "api"):
        (tmp_path / "logs" / sub).mkdir(parents=True)
    seed_slo_minutes(tmp_path / "state", REPO / "rules" / "slos" / "inference.yml", time.time())
    port = free_port()
    path = write_config(tmp_path / "inferwatch.yml", config(tmp_path, port, sink, marker))
    daemon = spawn_daemon(path, port, env={"LD_LIBRARY_PATH": str(fake_nvml_dir),
                                           "FAKE_NVML_SCRIPT": str(nvml.path)})
    daemon.wait_ready(timeout=WAIT_S)
    with running_prometheus(binary, tmp_path / "prometheus",
                            scrape_config({"inferwatch": [f"127.0.0.1:{port}"]})) as prom:
        prom.wait_for_targets_up(1, timeout=WAIT_S)
        written = asyncio.run(drive(tmp_path / "logs", nvml, EVENTFUL_S, eventful=True,
                                    seed=8))
        start = time.time()
        written += asyncio.run(drive(tmp_path / "logs", nvml, STEADY_S, eventful=False,
                                     seed=9))
        wait_until("catch-up", lambda: requests_counted(daemon.samples()) == written)
        # Both stores hold the final counts once Prometheus has scraped them.
        wait_until("final scrape", lambda: _prom_total(prom) == written)
        end = time.time() + STEP_S
        check_instance_variable(prom, daemon, port, start, end)
        check_every_target(prom, daemon, start, end)


def check_instance_variable(prom: RealPrometheus, daemon: DaemonProcess, port: int,
                            start: float, end: float) -> None:
    """`label_values(inferwatch_build_info, instance)` as Grafana asks it (the label values
    endpoint with match[], or the series endpoint): the scraped target on Prometheus, nothing
    on the daemon (its series have no instance, so the variable stays at All = `.*`)."""
    instance = f"127.0.0.1:{port}"
    match = [("match[]", "inferwatch_build_info"), ("start", f"{start:.0f}"),
             ("end", f"{end:.0f}")]
    assert prom.get_json("/api/v1/label/instance/values", match) == [instance]
    query = urllib.parse.urlencode(match)
    for path in ("/api/v1/label/instance/values", "/api/v1/series"):
        response = http_request(daemon.url(f"{path}?{query}"))
        document = json.loads(response.body)
        assert response.status == 200 and document["status"] == "success", response.body
        found = document["data"]
        assert found == [] if path.endswith("values") else \
            [s for s in found if "instance" in s] == [] and found
    # One host picked: Grafana sends the value regex-escaped, inside a PromQL string.
    escaped = re.escape(instance).replace("\\", "\\\\")
    picked = grafana_expr(build_dashboards()["llm-service.json"].targets()[0][1].expr,
                          end - start).replace('instance=~".*"',
                                               f'instance=~"{escaped}"')
    assert finite_points(normalised(prom.query_range(picked, start, end, STEP_S)))


def _prom_total(prom: RealPrometheus) -> float:
    result = prom.query("sum(inferwatch_requests_total)")
    return float(result[0]["value"][1]) if result else -1.0


def check_every_target(prom: RealPrometheus, daemon: DaemonProcess, start: float,
                       end: float) -> None:
    empty, differing = [], []
    for dashboard, panel, target in all_targets():
        expr = grafana_expr(target.expr, end - start)
        name = f"{dashboard} / {panel.title} / {target.legend or expr[:60]}"
        theirs = normalised(prom.query_range(expr, start, end, STEP_S))
        ours = normalised(daemon_range(daemon, expr, start, end))
        if not finite_points(theirs) or not finite_points(ours):
            empty.append(f"{name}: {finite_points(ours)} finite values from the daemon, "
                         f"{finite_points(theirs)} from Prometheus\n    {expr}")
            continue
        problems = disagreement(theirs, ours,
                                values=not any(name in expr for name in UNCONTROLLED))
        if problems:
            differing.append(f"{name}:\n    " + "\n    ".join(problems))
    report = "\n".join([*(f"EMPTY {e}" for e in empty), *(f"DIFFER {d}" for d in differing)])
    assert not report, report
