"""The scrape section (issue 8): what it costs to scrape the daemon's `/metrics` at 5k series.

**Render, in process.** `api_usage` lines for as many models as it takes (each model gives
about 65 series: request and token counters, four histograms) go through the daemon's own
`SourcePipeline` into a `MetricStore`, as ingest fills it, until the exposition holds
`--scrape-series` samples (5,000). Then the median over `--scrape-renders` renders of
`Exposition.render` (text 0.0.4 and OpenMetrics) and the body's size, plain and gzipped. The
peer: prometheus_client's own Counter/Histogram objects holding the same label sets and
counts, rendered by `generate_latest` (what a Python exporter written the usual way costs).

**Render, over HTTP.** The same store behind the daemon's aiohttp application (`create_app`),
and the peer registry behind prometheus_client's `start_http_server`, both on loopback in this
process; the median time of a GET /metrics over a keep-alive connection.

**Scraped by Prometheus.** `inferwatch run` over a log of the same lines (its host, self and
request series together) and `prometheus-node-exporter` (default collectors), both on
loopback ports, scraped by one real Prometheus every 1 s for `--scrape-window` s (30). The
medians of each target's `scrape_duration_seconds`, their ratio, and each target's
`scrape_samples_scraped`, so that the ratio is read against the number of series behind it.

Nothing is asserted: the figures are ratios against peers measured in the same run.

    .venv/bin/python bench/scrape_bench.py [--quick] [--scrape-series N]
        [--scrape-renders N] [--scrape-window S] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import http.client
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web
from daemon_peer import _wait_ready
from procs import free_loopback_port, python_tool, stop_process
from report import format_ratios, ratio
from rules_peers import PrometheusServer, QueryClient, prometheus_binary
from samplers_bench import node_exporter, node_exporter_binary

from monitor.api.app import TokenHolder, create_app
from monitor.clock import SystemClock
from monitor.ingest.decoders import FAST_DECODERS
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import parse_api_usage
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import CounterSeries, HistogramSeries, Kind, MetricStore

DEFAULT_SERIES = 5000
DEFAULT_RENDERS = 50
QUICK_RENDERS = 10
DEFAULT_WINDOW_S = 30.0
QUICK_WINDOW_S = 10.0
LINES_PER_MODEL = 40
SEED = 8
SOURCE = "api"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
RAMP_S = 3.0  # scrapes before the window, while both targets' first scrapes settle


@dataclass(frozen=True)
class ScrapeBenchConfig:
    series: int
    renders: int
    window_s: float


# -- the data ---------------------------------------------------------------------------------


def api_lines(models: int, seed: int = SEED) -> list[bytes]:
    """`LINES_PER_MODEL` api_usage lines per model: latencies over the duration buckets,
    one failed request in seven."""
    rng = random.Random(seed)
    lines = []
    start = time.time() - 3600
    for index in range(models * LINES_PER_MODEL):
        failed = index % 7 == 0
        prompt = rng.randint(10, 20_000)
        hit = rng.randint(0, prompt // 2)
        record: dict[str, Any] = {
            "timestamp": start + index * 0.01, "request_id": f"bench-{index}",
            "model": f"model-{index % models:03d}", "user_id": f"u-{index % 5}",
            "status": 500 if failed else 200, "duration_ms": rng.lognormvariate(8, 1.2),
            "usage": {"prompt_tokens": prompt, "completion_tokens": rng.randint(50, 2000),
                      "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": prompt - hit,
                      "completion_tokens_details": {"reasoning_tokens": rng.randint(0, 50)}}}
        if failed:
            record["error"] = {"type": "server_error", "message": "upstream failed"}
        lines.append(orjson.dumps(record) + b"\n")
    return lines


def filled_store(lines: list[bytes]) -> MetricStore:
    """A store filled as the daemon's ingest fills it: one pipeline, one checkpoint."""
    store = MetricStore()
    pipeline = SourcePipeline(name=SOURCE, schema=parse_api_usage,
                              fast_decoder=FAST_DECODERS["api_usage"], store=store,
                              clock=SystemClock())
    pipeline.process(LineChunk([line.rstrip(b"\n") for line in lines], 0, 0), "bench")
    pipeline.apply()
    return store


def sample_count(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def store_with_series(target: int) -> tuple[MetricStore, list[bytes]]:
    """The smallest number of models whose store renders at least `target` samples."""
    base = sample_count(Exposition(filled_store(api_lines(1))).render(None)[0])
    per_model = sample_count(Exposition(filled_store(api_lines(2))).render(None)[0]) - base
    if per_model <= 0:
        raise RuntimeError("a second model added no series: the generated lines are not "
                           "counted (malformed?)")
    models = max(1, 1 + math.ceil((target - base) / per_model))
    lines = api_lines(models)
    return filled_store(lines), lines


# -- the peer: prometheus_client's own metric objects -----------------------------------------


def native_registry(store: MetricStore) -> Any:
    """prometheus_client Counter/Gauge/Histogram objects with the store's label sets and
    counts (a histogram's buckets re-observed at their bounds)."""
    from prometheus_client import (  # noqa: PLC0415
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        disable_created_metrics,
    )

    disable_created_metrics()  # the daemon exports no `_created` samples either
    registry = CollectorRegistry(auto_describe=False)
    for family in store.families():
        if not family.series:
            continue
        first = next(iter(family.series))
        names = [name for name, value in first if value != ""]
        spec, full = family.spec, family.full_name
        if spec.kind is Kind.COUNTER:
            metric: Any = Counter(full, spec.help, names, registry=registry)
        elif spec.kind is Kind.GAUGE:
            metric = Gauge(full, spec.help, names, registry=registry)
        else:
            metric = Histogram(full, spec.help, names, registry=registry, buckets=spec.buckets)
        for key, series in family.series.items():
            labels = {name: value for name, value in key if value != ""}
            if sorted(labels) != sorted(names):
                continue  # other label names than the family's first series: left out
            child = metric.labels(**labels)
            if isinstance(series, HistogramSeries):
                previous = 0
                bounds = [*spec.buckets, spec.buckets[-1] * 2]
                for bound, cumulative in zip(bounds, series.cumulative(), strict=True):
                    for _ in range(cumulative - previous):
                        child.observe(bound)
                    previous = cumulative
            elif isinstance(series, CounterSeries):
                child.inc(series.value)
            else:
                child.set(series.value)
    return registry


# -- rendering --------------------------------------------------------------------------------


def median_s(action: Callable[[], object], runs: int) -> float:
    action()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def render_figures(store: MetricStore, native: Any, runs: int) -> dict[str, Any]:
    from prometheus_client import generate_latest  # noqa: PLC0415
    from prometheus_client.openmetrics.exposition import (  # noqa: PLC0415
        generate_latest as generate_openmetrics,
    )

    exposition = Exposition(store)
    text, _ = exposition.render(None)
    openmetrics, _ = exposition.render(OPENMETRICS)
    openmetrics_latest: Callable[[Any], bytes] = generate_openmetrics
    native_text = generate_latest(native)
    return {
        "samples": sample_count(text), "native_samples": sample_count(native_text),
        "text_bytes": len(text), "text_gzip_bytes": len(gzip.compress(text)),
        "openmetrics_bytes": len(openmetrics), "native_text_bytes": len(native_text),
        "text_s": median_s(lambda: exposition.render(None), runs),
        "openmetrics_s": median_s(lambda: exposition.render(OPENMETRICS), runs),
        "native_text_s": median_s(lambda: generate_latest(native), runs),
        "native_openmetrics_s": median_s(lambda: openmetrics_latest(native), runs),
    }


class StoreServer:
    """The daemon's aiohttp application over `store`, on loopback, in a background thread."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> StoreServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        app = create_app(exposition=Exposition(self.store), control=_AlwaysReady(),
                         token=TokenHolder())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()


class _AlwaysReady:
    def is_ready(self) -> bool:
        return True

    def sources_catching_up(self) -> list[str]:
        return []

    async def reload(self) -> str | None:
        return "not a daemon"


@contextlib.contextmanager
def native_server(registry: Any) -> Iterator[int]:
    from prometheus_client import start_http_server  # noqa: PLC0415

    port = free_loopback_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def get_median_s(port: int, runs: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get() -> None:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /metrics answered {response.status}")

    try:
        return median_s(get, runs)
    finally:
        connection.close()


# -- scraped by a real Prometheus -------------------------------------------------------------


@contextlib.contextmanager
def running_daemon(lines: list[bytes], workdir: Path) -> Iterator[str]:
    """`inferwatch run` over a log of `lines`, ready; its host:port."""
    (workdir / "logs").mkdir(parents=True)
    (workdir / "logs" / "usage.jsonl").write_bytes(b"".join(lines))
    port = free_loopback_port()
    config = {"server": {"listen": f"127.0.0.1:{port}"},
              "storage": {"path": str(workdir / "state")},
              "sources": [{"name": SOURCE, "paths": [str(workdir / "logs" / "*.jsonl")],
                           "schema": "api_usage"}]}
    (workdir / "inferwatch.yml").write_text(yaml.safe_dump(config))
    argv = [*python_tool("inferwatch"), "run", "--config", str(workdir / "inferwatch.yml")]
    with (workdir / "daemon.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=workdir)
        try:
            _wait_ready(process, f"http://127.0.0.1:{port}", time.perf_counter())
            yield f"127.0.0.1:{port}"
        finally:
            stop_process(process)


def _values(client: QueryClient, expr: str, start: float, end: float) -> dict[str, list[float]]:
    body = json.loads(client.query_range(expr, start, end, 1.0))
    return {series["metric"].get("job", "?"): [float(v) for _, v in series["values"]]
            for series in body["data"]["result"]}


def prometheus_scrapes(lines: list[bytes], workdir: Path, window_s: float,
                       warn: Callable[[str], None]) -> dict[str, Any] | None:
    binary, node_binary = prometheus_binary(), node_exporter_binary()
    if binary is None:
        warn("prometheus not found on PATH: the scrape-duration ratio is n/a")
        return None
    if node_binary is None:
        warn("node_exporter not found: the scrape-duration ratio has no peer")
    workdir.mkdir(parents=True)
    with running_daemon(lines, workdir / "daemon") as daemon, \
            node_exporter(node_binary, workdir / "node") as node:
        jobs = [{"job_name": "inferwatch", "static_configs": [{"targets": [daemon]}]}]
        if node is not None:
            jobs.append({"job_name": "node", "static_configs": [
                {"targets": [node.url.removeprefix("http://").removesuffix("/metrics")]}]})
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                  "scrape_configs": jobs}
        (workdir / "prometheus").mkdir()
        with PrometheusServer(binary, workdir / "tsdb", workdir / "prometheus",
                              yaml.safe_dump(config)) as server:
            time.sleep(RAMP_S)
            start = time.time()
            time.sleep(window_s)
            end = time.time()
            client = QueryClient(server.port)
            try:
                durations = _values(client, "scrape_duration_seconds", start, end)
                samples = _values(client, "scrape_samples_scraped", start, end)
                up = _values(client, "up", start, end)
            finally:
                client.close()
    return {"window_s": window_s, "durations_s": durations,
            "samples": {job: statistics.median(v) for job, v in samples.items() if v},
            "up": {job: statistics.median(v) for job, v in up.items() if v}}


# -- the section ------------------------------------------------------------------------------


def per_k(seconds: float | None, samples: float | None) -> float | None:
    """Seconds per 1,000 samples."""
    return None if seconds is None or not samples else seconds / samples * 1000


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.2f} ms"


def run_scrape(config: ScrapeBenchConfig, scratch: Path) -> dict[str, Any]:
    """The whole section, printed; its JSON document."""
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        print(f"WARNING: {message}", file=sys.stderr)

    print(f"scrape: filling a metric store to {config.series:,} series through the ingest "
          "pipeline", flush=True)
    store, lines = store_with_series(config.series)
    native = native_registry(store)
    print(f"scrape: {config.renders} renders each, in process and over HTTP", flush=True)
    render = render_figures(store, native, config.renders)
    with StoreServer(store) as ours, native_server(native) as native_port:
        render["http_s"] = get_median_s(ours.port, config.renders)
        render["native_http_s"] = get_median_s(native_port, config.renders)
    print(f"scrape: Prometheus scraping inferwatch run and node_exporter every 1 s for "
          f"{config.window_s:g} s", flush=True)
    scraped = prometheus_scrapes(lines, scratch / "prometheus", config.window_s, warn)

    medians = {}
    if scraped is not None:
        medians = {job: statistics.median(v) for job, v in scraped["durations_s"].items() if v}
        if scraped["up"].get("inferwatch") != 1 or scraped["up"].get("node", 1) != 1:
            warn(f"a target was not up through the window: {scraped['up']}")
    samples = (scraped or {}).get("samples", {})
    ours_s, node_s = medians.get("inferwatch"), medians.get("node")
    ours_n, node_n = samples.get("inferwatch"), samples.get("node")
    r = render
    ratios = [
        ratio("/metrics render vs prometheus_client (text)", r["native_text_s"], r["text_s"],
              None, f"prometheus_client {_ms(r['native_text_s'])} vs inferwatch "
                    f"{_ms(r['text_s'])}"),
        ratio("  OpenMetrics", r["native_openmetrics_s"], r["openmetrics_s"], None,
              f"prometheus_client {_ms(r['native_openmetrics_s'])} vs inferwatch "
              f"{_ms(r['openmetrics_s'])}"),
        ratio("GET /metrics vs prometheus_client's server", r["native_http_s"], r["http_s"],
              None, f"prometheus_client {_ms(r['native_http_s'])} vs inferwatch "
                    f"{_ms(r['http_s'])}"),
        ratio("scrape_duration_seconds vs node_exporter", node_s, ours_s, None,
              f"node_exporter {_ms(node_s)} ({node_n or 0:.0f} samples) vs inferwatch "
              f"{_ms(ours_s)} ({ours_n or 0:.0f} samples)"),
        ratio("  per 1,000 samples scraped", per_k(node_s, node_n), per_k(ours_s, ours_n),
              None, f"node_exporter {_ms(per_k(node_s, node_n))} vs inferwatch "
                    f"{_ms(per_k(ours_s, ours_n))}"),
    ]
    print(f"\n/metrics with {r['samples']:,} samples ({len(lines) // LINES_PER_MODEL} models "
          f"through the ingest pipeline): text {r['text_bytes'] / 1024:.0f} KiB "
          f"({r['text_gzip_bytes'] / 1024:.0f} KiB gzipped), OpenMetrics "
          f"{r['openmetrics_bytes'] / 1024:.0f} KiB; render {_ms(r['text_s'])} text, "
          f"{_ms(r['openmetrics_s'])} OpenMetrics, GET over loopback {_ms(r['http_s'])}")
    print(f"peer registry: {r['native_samples']:,} samples, "
          f"{r['native_text_bytes'] / 1024:.0f} KiB text\n")
    print(format_ratios(ratios))
    print("  (higher is better for inferwatch: the peer's time / inferwatch's)")
    if warnings:
        print(f"\n{len(warnings)} warning(s):")
        for message in warnings:
            print(f"  - {message}")
    return {"render": render, "prometheus": scraped, "scrape_duration_medians_s": medians,
            "ratios": [item.to_json() for item in ratios], "warnings": warnings}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scrape benchmark")
    group.add_argument("--scrape-series", type=int, metavar="N",
                       help=f"samples in the filled store (default {DEFAULT_SERIES:,})")
    group.add_argument("--scrape-renders", type=int, metavar="N",
                       help=f"renders and GETs per contender (default {DEFAULT_RENDERS}; "
                            f"--quick {QUICK_RENDERS})")
    group.add_argument("--scrape-window", type=float, metavar="S",
                       help=f"seconds Prometheus scrapes both targets (default "
                            f"{DEFAULT_WINDOW_S:g}; --quick {QUICK_WINDOW_S:g})")


def config_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ScrapeBenchConfig:
    quick = bool(args.quick)
    config = ScrapeBenchConfig(
        series=args.scrape_series or DEFAULT_SERIES,
        renders=args.scrape_renders or (QUICK_RENDERS if quick else DEFAULT_RENDERS),
        window_s=args.scrape_window or (QUICK_WINDOW_S if quick else DEFAULT_WINDOW_S))
    if min(config.series, config.renders, config.window_s) <= 0:
        parser.error("--scrape-series, --scrape-renders and --scrape-window must be positive")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="/metrics render time and size at 5k series beside prometheus_client, "
                    "and Prometheus's scrape_duration_seconds of the daemon beside "
                    "node_exporter's. Figures are ratios within one run.")
    parser.add_argument("--quick", action="store_true", help="fewer renders, a shorter window")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from(args, parser)
    with tempfile.TemporaryDirectory(prefix="inferwatch-scrape-bench-") as scratch:
        document = run_scrape(config, Path(scratch))
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
