"""`inferwatch demo`: synthetic traffic with scripted incidents, watched by a real daemon.

The daemon runs on embedded defaults with its state in `<dir>/state` (kept between runs, so
a second demo shows counters continuing), the workload writes and rotates logs under
`<dir>/logs`, and at the end the demo prints what was written beside what was ingested,
counted from the daemon's own metric store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from pathlib import Path

from monitor.clock import SystemClock
from monitor.config import Config, default_config
from monitor.daemon import Daemon
from monitor.demo.lines import default_incident_schedule
from monitor.demo.workload import DemoWorkload, WorkloadStats
from monitor.metrics import families as fam
from monitor.metrics.store import CounterSeries, MetricStore

SOURCE_OF_SCHEMA = {"inference": "inference", "api_usage": "api"}
_CATCH_UP_TIMEOUT_S = 10.0


def demo_config(directory: Path, listen: str) -> Config:
    logs = directory / "logs"
    return default_config(
        server={"listen": listen},
        storage={"path": str(directory / "state")},
        sources=[
            {"name": "inference", "paths": [str(logs / "inference" / "*.log")],
             "schema": "inference", "labels": {"service": "deepseek-r1"}},
            {"name": "api", "paths": [str(logs / "api" / "*.jsonl")], "schema": "api_usage"},
        ],
    )


def requests_by_source(store: MetricStore) -> Counter[tuple[str, str]]:
    """(source, status) → requests, from the store the daemon exports."""
    family = store.family(store.full_name(fam.REQUESTS))
    totals: Counter[tuple[str, str]] = Counter()
    if family is None:
        return totals
    for key, series in family.series.items():
        labels = dict(key)
        if isinstance(series, CounterSeries):
            totals[labels["source"], labels["status"]] += int(series.value)
    return totals


def _print_summary(stats: WorkloadStats, before: Counter[tuple[str, str]],
                   after: Counter[tuple[str, str]]) -> bool:
    print("\nwritten vs ingested (this run):")
    consistent = True
    for schema, source in SOURCE_OF_SCHEMA.items():
        written = {status: sum(n for (s, _, st), n in stats.requests.items()
                               if s == schema and st == status)
                   for status in ("success", "error")}
        ingested = {status: after[source, status] - before[source, status]
                    for status in ("success", "error")}
        same = written == ingested
        consistent &= same
        print(f"  {source:<10} written {written['success']:>6} ok {written['error']:>5} errors"
              f"   ingested {ingested['success']:>6} ok {ingested['error']:>5} errors"
              f"   {'exact' if same else 'MISMATCH'}")
    seen = ", ".join(sorted(stats.incidents_seen)) or "none"
    print(f"  incidents played: {seen}; rotations: {dict(stats.rotations)}")
    return consistent


async def run_demo(*, directory: Path, duration: float, listen: str) -> int:
    """`directory` must be absolute (the CLI resolves it)."""
    config = demo_config(directory, listen)
    clock = SystemClock()
    workload = DemoWorkload(directory / "logs", clock, random.Random(),  # noqa: S311 - synthetic traffic
                            incidents=default_incident_schedule(duration))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Daemon(config, clock=clock) as daemon:
            base = daemon.listen_url
            print(f"inferwatch demo: logs in {directory / 'logs'}, state in "
                  f"{directory / 'state'}")
            print(f"  metrics     {base}/metrics")
            print(f"  health      {base}/-/healthy   ready: {base}/-/ready")
            print(f"  running for {duration:.0f}s (Ctrl-C stops early); incidents: "
                  + ", ".join(f"{i.kind} at {i.start_s:.0f}s" for i in workload.incidents))
            before = requests_by_source(daemon.store)
            writer = asyncio.create_task(workload.run(stop))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            stop.set()
            await writer
            workload.close()
            await _wait_for_catch_up(daemon)
            consistent = _print_summary(workload.stats, before,
                                        requests_by_source(daemon.store))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0 if consistent else 1


async def _wait_for_catch_up(daemon: Daemon) -> None:
    """Until every written line is read and committed (bounded)."""
    deadline = daemon.clock.monotonic() + _CATCH_UP_TIMEOUT_S
    ingest = daemon.ingest
    assert ingest is not None
    while daemon.clock.monotonic() < deadline:
        lag = sum(rt.tailer.lag_bytes() + rt.pipeline.pending_lines
                  for rt in ingest.runtimes.values())
        if lag == 0 and not daemon.store.dirty:
            return
        await asyncio.sleep(0.2)
