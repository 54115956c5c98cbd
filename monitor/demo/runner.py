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

from monitor.alerting.groups import RuleGroup
from monitor.alerting.rules import AlertState
from monitor.clock import SystemClock
from monitor.config import Config, default_config
from monitor.daemon import Daemon
from monitor.demo.lines import default_incident_schedule
from monitor.demo.workload import DemoWorkload, WorkloadStats
from monitor.metrics import families as fam
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.promql.values import Labels

SOURCE_OF_SCHEMA = {"inference": "inference", "api_usage": "api"}
_CATCH_UP_TIMEOUT_S = 10.0


DEMO_RULES = Path(__file__).with_name("rules.yml")


def demo_config(directory: Path, listen: str) -> Config:
    logs = directory / "logs"
    return default_config(
        server={"listen": listen},
        storage={"path": str(directory / "state")},
        rule_files=[str(DEMO_RULES)],
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


class AlertTimeline:
    """Records when each alert started firing and resolved, from the rule manager."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.events: list[tuple[float, str, str, str]] = []  # (offset s, name, what, summary)
        self._firing: set[tuple[str, Labels]] = set()

    def __call__(self, group: RuleGroup, t: int) -> None:
        for rule in group.alerting_rules():
            for labels, alert in rule.active.items():
                key = (rule.name, labels)
                summary = dict(alert.annotations).get("summary", "")
                if alert.state is AlertState.FIRING and key not in self._firing:
                    self._firing.add(key)
                    self.events.append((t / 1000 - self.started, rule.name, "fired", summary))
                elif alert.state is AlertState.INACTIVE and key in self._firing:
                    self._firing.discard(key)
                    self.events.append((t / 1000 - self.started, rule.name, "resolved", ""))

    def print(self) -> None:
        print("\nwhat fired (alerts are evaluated, not yet sent):")
        if not self.events:
            print("  nothing (a demo shorter than a few minutes ends before the incidents)")
        for offset, name, what, summary in self.events:
            detail = f": {summary}" if summary else ""
            print(f"  {offset:6.0f}s  {name:<18} {what}{detail}")


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
            print(f"  alerts      {base}/api/v1/alerts   query: {base}/api/v1/query?query=up")
            print(f"  running for {duration:.0f}s (Ctrl-C stops early); incidents: "
                  + ", ".join(f"{i.kind} at {i.start_s:.0f}s" for i in workload.incidents))
            before = requests_by_source(daemon.store)
            timeline = AlertTimeline(clock.time())
            assert daemon.rules is not None
            daemon.rules.listeners.append(timeline)
            writer = asyncio.create_task(workload.run(stop))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            stop.set()
            await writer
            workload.close()
            await _wait_for_catch_up(daemon)
            consistent = _print_summary(workload.stats, before,
                                        requests_by_source(daemon.store))
            timeline.print()
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
