"""The samplers section (issue 6): CPU of one sampling tick, and of the idle daemon.

**One tick**: the median `time.process_time()` (every thread of the measuring process) of
`--sampler-ticks` ticks of each component, one warm-up tick first, 50 ms apart (a tick every
5 s finds cold caches; back-to-back ticks would cost about half):

* host       `HostSampler(HostConfig())` over the real psutil;
* gpu        bench/gpu_bench.py: `GpuSampler.sample()` over 8 fake GPUs (the tests' fake
             libnvidia-ml, built with gcc; n/a without it), in its own child process;
* processes  `ProcessSampler` with 5 watches on 5 sleeping `python -c` children: the steady
             state (known PIDs read, no scan); beside it, the scan a missing watch costs;
* probes     three `ProbeSampler`s, `asyncio.gather`ed, against `python -m http.server` in
             another process (so the server's CPU is not counted).

Host, processes and probes run in a fresh interpreter (`--tick-child`), away from the other
sections' heaps and threads. CPU / default interval is each one's share of a core.

The peer is node_exporter on a loopback port: CPU per scrape of /metrics, from the summed
`/proc/<pid>/task/*/schedstat` run times (ns; /proc/<pid>/stat counts 10 ms ticks) between
the starts of two scrapes, with its default collectors and with the five that cover the host
sampler's families; node_exporter CPU / host tick CPU, higher is better for inferwatch.

**Idle**: `inferwatch run` at the default intervals with nothing to read (no sources, rules,
probes or processes; gpu auto); 5 s after `/-/ready`, its CPU (/proc/<pid>/stat) over
`--sampler-idle-window` s against the issue's 1 % of a core, and node_exporter's over the
same window, scraped every 5 s (the host sampler's cadence).

    .venv/bin/python bench/samplers_bench.py [--quick] [--sampler-ticks N]
        [--sampler-idle-window S] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from daemon_peer import _get, _wait_ready
from gpu_bench import measure_gpu_sample_cpu
from idle import _cpu_seconds
from procs import BENCH_DIR, free_loopback_port, python_tool, run_timed, stop_process
from report import Ratio, format_ratios, ratio

from monitor.clock import SystemClock
from monitor.config import HostConfig
from monitor.config_models import GpuConfig, ProbeConfig, ProcessConfig
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.samplers.host import HostSampler
from monitor.samplers.probes import ProbeSampler
from monitor.samplers.processes import DEFAULT_RESCAN_INTERVAL_S, ProcessSampler

DEFAULT_TICKS = 100
QUICK_TICKS = 20
DEFAULT_IDLE_WINDOW_S = 60.0
QUICK_IDLE_WINDOW_S = 10.0
SETTLE_S = 5.0  # after /-/ready, before the idle window
TARGET_CORE_SHARE = 0.01
GPUS = 8
PROCESSES = 5
PROBES = 3
TICK_GAP_S = 0.05  # between ticks: caches as cold as a tick every few seconds finds them
WARM_SCRAPES = 3
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
HOST_COLLECTORS = ("cpu", "loadavg", "meminfo", "filesystem", "netdev")
HOST_INTERVAL_S = float(HostConfig().interval)
GPU_INTERVAL_S = float(GpuConfig().interval)
PROBE_INTERVAL_S = float(ProbeConfig.model_fields["interval"].default)
NODE_SCRAPE_INTERVAL_S = HOST_INTERVAL_S


@dataclass(frozen=True)
class SamplersBenchConfig:
    ticks: int
    idle_window_s: float


# -- one tick, in a fresh interpreter ---------------------------------------------------------


async def _tick_cpu(tick: Callable[[], Awaitable[None]], runs: int) -> list[float]:
    cpu: list[float] = []
    for _ in range(runs):
        await asyncio.sleep(TICK_GAP_S)
        start = time.process_time()
        await tick()
        cpu.append(time.process_time() - start)
    return cpu


async def host_ticks(runs: int) -> dict[str, Any]:
    store = MetricStore()
    sampler = HostSampler(HostConfig(), store=store)
    await sampler.sample()  # the first has no CPU reading to compare with
    cpu = await _tick_cpu(sampler.sample, runs)
    await sampler.close()
    return {"cpu_s": cpu,
            "filesystems": len(store.register(fam.HOST_FILESYSTEM_SIZE).series),
            "nics": len(store.register(fam.HOST_NETWORK_RECEIVE).series)}


@contextlib.contextmanager
def sleepers(count: int) -> Iterator[list[str]]:
    """`count` sleeping children, each with a unique mark in its command line."""
    tag = uuid.uuid4().hex[:12]
    marks = [f"inferwatch-bench-{index}-{tag}" for index in range(count)]
    children = [subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(600) # {mark}"])
                for mark in marks]
    try:
        yield marks
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


def _all_up(store: MetricStore, spec: fam.FamilySpec, expected: int) -> bool:
    values = [getattr(s, "value", 0.0) for s in store.register(spec).series.values()]
    return len(values) == expected and all(value == 1 for value in values)


async def process_ticks(runs: int) -> dict[str, Any]:
    with sleepers(PROCESSES) as marks:
        configs = [ProcessConfig(name=f"bench-{i}", match=mark) for i, mark in enumerate(marks)]
        store = MetricStore()
        steady = ProcessSampler(configs, store=store, interval_s=HOST_INTERVAL_S)
        await steady.sample()  # the first sample scans and finds them
        if not _all_up(store, fam.PROCESS_UP, PROCESSES):
            raise RuntimeError("the process sampler did not find its 5 sleeping children")
        cpu = await _tick_cpu(steady.sample, runs)
        await steady.close()
        # A watch with no process makes every sample scan, at most once per rescan interval;
        # with the interval at 0, every tick pays for the scan.
        missing = ProcessConfig(name="bench-missing", match=f"{marks[0]}-never")
        scanning = ProcessSampler([*configs, missing], store=MetricStore(),
                                  interval_s=HOST_INTERVAL_S, rescan_interval_s=0.0)
        scan_cpu = await _tick_cpu(scanning.sample, runs)
        await scanning.close()
    host_processes = sum(1 for name in os.listdir("/proc") if name.isdigit())
    return {"cpu_s": cpu, "scan_cpu_s": scan_cpu, "host_processes": host_processes}


def _wait_answering(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Until `url` answers 200; the last error once `process` exits or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:g} s")
        time.sleep(0.05)


@contextlib.contextmanager
def health_server() -> Iterator[str]:
    """`python -m http.server` on a loopback port serving a `health` file; its URL."""
    with tempfile.TemporaryDirectory(prefix="inferwatch-probe-bench-") as root:
        (Path(root) / "health").write_text("ok\n")
        port = free_loopback_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
             "--directory", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/health"
        try:
            _wait_answering(url, server)
            yield url
        finally:
            stop_process(server)


async def probe_ticks(runs: int, url: str) -> dict[str, Any]:
    store = MetricStore()
    probes = [ProbeSampler(ProbeConfig(name=f"bench-{i}", url=url),
                           store=store, clock=SystemClock()) for i in range(PROBES)]

    async def tick() -> None:
        await asyncio.gather(*(probe.sample() for probe in probes))

    try:
        await tick()
        if not _all_up(store, fam.PROBE_SUCCESS, PROBES):
            raise RuntimeError(f"the probes of {url} did not succeed")
        cpu = await _tick_cpu(tick, runs)
        if not _all_up(store, fam.PROBE_SUCCESS, PROBES):
            raise RuntimeError(f"a probe of {url} failed during the run")
    finally:
        for probe in probes:
            await probe.close()
    return {"cpu_s": cpu}


async def all_ticks(runs: int) -> dict[str, Any]:
    with health_server() as url:
        return {"host": await host_ticks(runs), "processes": await process_ticks(runs),
                "probes": await probe_ticks(runs, url)}


def ticks_in_child(runs: int) -> dict[str, Any]:
    done = run_timed([sys.executable, str(BENCH_DIR / "samplers_bench.py"), "--tick-child",
                      "--sampler-ticks", str(runs)], timeout_s=300.0)
    if done.returncode != 0:
        raise RuntimeError(f"the tick child exited with {done.returncode}: "
                           f"{done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- node_exporter ----------------------------------------------------------------------------


def node_exporter_binary() -> str | None:
    for candidate in (shutil.which("prometheus-node-exporter"), shutil.which("node_exporter"),
                      NODE_EXPORTER):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class NodeExporter:
    """A running node_exporter on a loopback port; its CPU from /proc."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def scrape(self) -> int:
        status, body = _get(self.url)
        if status != 200:
            raise RuntimeError(f"node_exporter answered {status}")
        return len(body)

    def cpu_s(self) -> float:
        return _cpu_seconds(self.process.pid)

    def run_time_ns(self) -> int:
        """Summed on-CPU time of its threads (schedstat: nanoseconds, not 10 ms ticks)."""
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it just ended
                total += int((task / "schedstat").read_text().split()[0])
        return total


@contextlib.contextmanager
def node_exporter(binary: str | None, workdir: Path,
                  collectors: Sequence[str] | None = None) -> Iterator[NodeExporter | None]:
    """node_exporter on a free loopback port (None without a binary), stopped after."""
    if binary is None:
        yield None
        return
    port = free_loopback_port()
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}"]
    if collectors is not None:
        argv += ["--collector.disable-defaults", *(f"--collector.{c}" for c in collectors)]
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "node_exporter.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=workdir)
        node = NodeExporter(process, f"http://127.0.0.1:{port}/metrics")
        try:
            _wait_answering(node.url, process)
            yield node
        finally:
            stop_process(process)


def scrape_cpu(node: NodeExporter | None, runs: int) -> dict[str, Any] | None:
    """Per-scrape CPU (start of one scrape to the start of the next), and the /proc mean."""
    if node is None:
        return None
    for _ in range(WARM_SCRAPES):
        node.scrape()
    time.sleep(TICK_GAP_S)
    started_ns, started_s = node.run_time_ns(), node.cpu_s()
    marks = [started_ns]
    size = 0
    for _ in range(runs):
        size = node.scrape()
        time.sleep(TICK_GAP_S)
        marks.append(node.run_time_ns())
    per = [(b - a) / 1e9 for a, b in itertools.pairwise(marks)]
    return {"cpu_s": per, "mean_s": (node.cpu_s() - started_s) / runs, "bytes": size}


# -- the idle daemon --------------------------------------------------------------------------


def measure_idle_daemon(workdir: Path, window_s: float,
                        node: NodeExporter | None) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    config = {"server": {"listen": f"127.0.0.1:{port}"},
              "storage": {"path": str(workdir / "state")}}
    config_path = workdir / "inferwatch.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    base = f"http://127.0.0.1:{port}"
    argv = [*python_tool("inferwatch"), "run", "--config", str(config_path)]
    with (workdir / "daemon.log").open("wb") as errors:
        process = subprocess.Popen(argv, stdout=errors, stderr=errors, cwd=workdir)
        try:
            _wait_ready(process, base, time.perf_counter())
            time.sleep(SETTLE_S)
            daemon0 = _cpu_seconds(process.pid)
            node0 = node.cpu_s() if node is not None else 0.0
            started = time.monotonic()
            end = started + window_s
            scrapes = 0
            while (now := time.monotonic()) < end:
                if node is not None and now >= started + scrapes * NODE_SCRAPE_INTERVAL_S:
                    node.scrape()
                    scrapes += 1
                next_at = started + scrapes * NODE_SCRAPE_INTERVAL_S if node is not None else end
                time.sleep(max(0.0, min(next_at, end) - time.monotonic()))
            daemon_cpu = _cpu_seconds(process.pid) - daemon0
            node_cpu = node.cpu_s() - node0 if node is not None else None
            window = time.monotonic() - started
            threads = len(list(Path(f"/proc/{process.pid}/task").iterdir()))
            status, body = _get(f"{base}/metrics")
        finally:
            exit_code = stop_process(process)
    text = body.decode() if status == 200 else ""
    return {"window_s": window, "cpu_s": daemon_cpu, "core_share": daemon_cpu / window,
            "node_cpu_s": node_cpu, "node_scrapes": scrapes if node is not None else 0,
            "threads": threads, "exit_code": exit_code,
            "host_sampled": f"inferwatch_{fam.HOST_MEMORY_TOTAL.name} " in text,
            "gpu_on": f"inferwatch_{fam.GPU_UP.name}{{" in text}


# -- the section ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1e3:.3f} ms"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3%}"


def _verdict(share: float | None) -> str:
    if share is None:
        return "n/a"
    return f"target < {TARGET_CORE_SHARE:.0%}: {'met' if share < TARGET_CORE_SHARE else 'NOT met'}"


def print_ticks(rows: Sequence[tuple[str, float | None, float]], runs: int,
                scan: tuple[float, int]) -> tuple[float, float]:
    print(f"\ninferwatch sampling: CPU of one tick, component by component (median of {runs} "
          f"ticks, time.process_time; {os.cpu_count()} CPUs)\n")
    width = max(len(name) for name, _, _ in rows) + 2
    print(f"{'component':<{width}}  {'CPU per tick':>12}  {'interval':>8}  share of a core")
    print("-" * (width + 44))
    total = share = 0.0
    for name, cpu, interval in rows:
        part = None if cpu is None else cpu / interval
        print(f"{name:<{width}}  {_ms(cpu):>12}  {interval:>6g} s  {_share(part):>10}")
        total += cpu or 0.0
        share += part or 0.0
    label = "CPU per tick" + (" (GPU n/a)" if any(c is None for _, c, _ in rows) else "")
    print(f"{label:<{width}}  {_ms(total):>12}  {'':>8}  {_share(share):>10}   "
          f"{_verdict(share)}")
    print(f"  + a process scan, when a watch is missing (at most every "
          f"{DEFAULT_RESCAN_INTERVAL_S:g} s; {scan[1]} processes on this host): "
          f"{_ms(scan[0])}")
    return total, share


def print_idle(idle: dict[str, Any]) -> None:
    gpu = "on" if idle["gpu_on"] else "off (no NVML)"
    print(f"\nidle: `inferwatch run`, default intervals (host {HOST_INTERVAL_S:g} s, gpu auto: "
          f"{gpu}, internal scrape and rule evaluation 1 s), no sources, rules, probes or "
          f"processes; {SETTLE_S:g} s after /-/ready")
    print(f"  inferwatch     {_share(idle['core_share']):>8} of a core  ({idle['cpu_s']:.2f} s "
          f"CPU in {idle['window_s']:.1f} s, {idle['threads']} threads)   "
          f"{_verdict(idle['core_share'])}")
    if idle["node_cpu_s"] is not None:
        print(f"  node_exporter  {_share(idle['node_cpu_s'] / idle['window_s']):>8} of a core  "
              f"({idle['node_cpu_s']:.2f} s CPU, scraped {idle['node_scrapes']} times, every "
              f"{NODE_SCRAPE_INTERVAL_S:g} s, same window)")


def build_ratios(host: list[float], node: dict[str, Any] | None,
                 node_host: dict[str, Any] | None, idle: dict[str, Any]) -> list[Ratio]:
    def against_host(name: str, scrape: float | None, tick: float) -> Ratio:
        return ratio(name, scrape, tick, None, f"node_exporter {_ms(scrape)} vs host tick "
                                               f"{_ms(tick)}")

    host_median = statistics.median(host)
    idle_node = idle["node_cpu_s"]
    return [
        against_host("inferwatch host tick vs node_exporter scrape",
                     node and statistics.median(node["cpu_s"]), host_median),
        against_host("  means (node_exporter's GC included)", node and node["mean_s"],
                     statistics.fmean(host)),
        against_host(f"  node_exporter, {len(HOST_COLLECTORS)} host collectors only",
                     node_host and statistics.median(node_host["cpu_s"]), host_median),
        ratio(f"inferwatch idle vs node_exporter scraped every {NODE_SCRAPE_INTERVAL_S:g} s",
              idle_node, idle["cpu_s"], None,
              f"node_exporter {'n/a' if idle_node is None else f'{idle_node:.2f} s'} vs "
              f"inferwatch {idle['cpu_s']:.2f} s CPU in {idle['window_s']:.0f} s"),
    ]


def _gpu_cpu(runs: int, warn: Callable[[str], None]) -> float | None:
    if shutil.which("gcc") is None:
        warn("gcc not found: the fake libnvidia-ml cannot be built, GPU tick n/a")
        return None
    try:
        return measure_gpu_sample_cpu(GPUS, runs)
    except Exception as exc:  # one missing contender must not lose the others
        warn(f"GPU tick failed, n/a: {exc}")
        return None


def run_samplers(config: SamplersBenchConfig, scratch: Path) -> dict[str, Any]:
    """The whole section, printed; its JSON document."""
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        print(f"WARNING: {message}", file=sys.stderr)

    runs = config.ticks
    print(f"samplers: {runs} ticks of host, processes and probes (fresh interpreter)",
          flush=True)
    ticks = ticks_in_child(runs)
    print(f"samplers: {runs} GPU samples over {GPUS} fake GPUs", flush=True)
    gpu = _gpu_cpu(runs, warn)
    binary = node_exporter_binary()
    if binary is None:
        warn("node_exporter not found: its ratios are n/a")
    with node_exporter(binary, scratch / "node") as running:
        print(f"samplers: {runs} node_exporter scrapes, default collectors, then "
              f"{', '.join(HOST_COLLECTORS)} only", flush=True)
        node = scrape_cpu(running, runs)
        with node_exporter(binary, scratch / "node-host", HOST_COLLECTORS) as host_only:
            node_host = scrape_cpu(host_only, runs)
        print(f"samplers: idle daemon, {SETTLE_S:g} s settle + {config.idle_window_s:g} s "
              "window", flush=True)
        idle = measure_idle_daemon(scratch / "idle", config.idle_window_s, running)
    if idle["exit_code"] != 0:
        warn(f"inferwatch run exited with {idle['exit_code']} on SIGTERM")
    if not idle["host_sampled"]:
        warn("the idle daemon's /metrics has no host series: was the host sampler on?")

    host = ticks["host"]
    med = {"host": statistics.median(host["cpu_s"]), "gpu": gpu,
           "processes": statistics.median(ticks["processes"]["cpu_s"]),
           "probes": statistics.median(ticks["probes"]["cpu_s"]),
           "process_scan": statistics.median(ticks["processes"]["scan_cpu_s"])}
    fs, nics = host["filesystems"], host["nics"]
    rows = [
        (f"host: psutil, {fs} filesystem{'s' * (fs != 1)}, {nics} NIC{'s' * (nics != 1)}, "
         "self", med["host"], HOST_INTERVAL_S),
        (f"gpu: {GPUS} fake GPUs, 2 processes each", gpu, GPU_INTERVAL_S),
        (f"processes: {PROCESSES} watched, steady (no scan)", med["processes"], HOST_INTERVAL_S),
        (f"probes: {PROBES} HTTP GETs, gathered", med["probes"], PROBE_INTERVAL_S),
    ]
    total, share = print_ticks(rows, runs, (med["process_scan"],
                                            int(ticks["processes"]["host_processes"])))
    ratios = build_ratios(host["cpu_s"], node, node_host, idle)
    print()
    print(format_ratios(ratios))
    if node is not None:
        print(f"  (node_exporter /metrics: {node['bytes'] / 1024:.0f} KiB with its defaults, "
              f"{(node_host or {}).get('bytes', 0) / 1024:.0f} KiB with the host collectors; "
              "higher is better for inferwatch)")
    print_idle(idle)
    if warnings:
        print(f"\n{len(warnings)} warning(s):")
        for message in warnings:
            print(f"  - {message}")
    return {"ticks": {**ticks, "gpu_median_s": gpu}, "medians": med,
            "tick_cpu_s": total, "tick_core_share": share,
            "node_exporter": {"default": node, "host_collectors": node_host},
            "idle": idle, "ratios": [r.to_json() for r in ratios], "warnings": warnings}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("samplers benchmark")
    group.add_argument("--sampler-ticks", type=int, metavar="N",
                       help=f"ticks per sampler, and node_exporter scrapes (default "
                            f"{DEFAULT_TICKS}; --quick {QUICK_TICKS})")
    group.add_argument("--sampler-idle-window", type=float, metavar="S",
                       help=f"seconds of the idle daemon's window (default "
                            f"{DEFAULT_IDLE_WINDOW_S:g}; --quick {QUICK_IDLE_WINDOW_S:g})")


def config_from(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> SamplersBenchConfig:
    quick = bool(args.quick)
    config = SamplersBenchConfig(
        ticks=args.sampler_ticks or (QUICK_TICKS if quick else DEFAULT_TICKS),
        idle_window_s=args.sampler_idle_window or (QUICK_IDLE_WINDOW_S if quick
                                                   else DEFAULT_IDLE_WINDOW_S))
    if config.ticks <= 0 or config.idle_window_s <= 0:
        parser.error("--sampler-ticks and --sampler-idle-window must be positive")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="CPU of one sampling tick (host, 8 fake GPUs, 5 processes, 3 probes) and "
                    "of the idle daemon, beside node_exporter. Figures are ratios within one "
                    "run.")
    parser.add_argument("--quick", action="store_true", help="fewer ticks, a 10 s window")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--tick-child", action="store_true", help=argparse.SUPPRESS)
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from(args, parser)
    if args.tick_child:
        print(json.dumps(asyncio.run(all_ticks(config.ticks))))
        return 0
    with tempfile.TemporaryDirectory(prefix="inferwatch-samplers-bench-") as scratch:
        document = run_samplers(config, Path(scratch))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
