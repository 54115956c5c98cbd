"""`inferwatch demo`: synthetic traffic with scripted incidents, watched by a real daemon.

The daemon runs on embedded defaults with its state in `<dir>/state` (kept between runs, so
a second demo shows counters continuing), the workload writes and rotates logs under
`<dir>/logs`, and its alerts go through the real notification pipeline (route, group,
outbox, webhook) to a `WebhookSink` on loopback, which prints each delivery as it arrives.
At the end the demo prints what was written beside what was ingested (counted from the
daemon's own metric store), what fired, and what was delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from monitor.alerting.groups import RuleGroup
from monitor.alerting.rules import AlertState
from monitor.clock import Clock, SystemClock
from monitor.config import Config, default_config
from monitor.daemon import Daemon
from monitor.demo.gpu import SimulatedGpuSampler
from monitor.demo.lines import Incident, default_incident_schedule
from monitor.demo.sink import SinkNotification, WebhookSink
from monitor.demo.workload import DemoWorkload, WorkloadStats
from monitor.metrics import families as fam
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.promql.values import Labels
from monitor.samplers.base import Sampler

SOURCE_OF_SCHEMA = {"inference": "inference", "api_usage": "api"}
_CATCH_UP_TIMEOUT_S = 10.0
SINK_RECEIVER: Final = "demo-sink"
GROUP_WAIT_S: Final = 1.0
GROUP_INTERVAL_S: Final = 5.0
# A flush is at most a group interval away; the rest covers the outbox's first attempt.
DELIVERY_TIMEOUT_S: Final = GROUP_INTERVAL_S + 2.0


DEMO_RULES = Path(__file__).with_name("rules.yml")


def demo_config(directory: Path, listen: str, sink_url: str) -> Config:
    """Embedded defaults plus the demo's sources, rules, one receiver (the sink at
    `sink_url`, grouped by alert name with short waits so a demo of minutes shows it all) and
    a daily budget its API traffic (about 0.012 CNY a second at the bundled prices) crosses
    within the first minutes of a day's first demo."""
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
        notify={
            "route": {"receiver": SINK_RECEIVER, "group_by": ["alertname"],
                      "group_wait": f"{GROUP_WAIT_S:g}s",
                      "group_interval": f"{GROUP_INTERVAL_S:g}s", "repeat_interval": "24h"},
            "receivers": [{"name": SINK_RECEIVER, "webhook_configs": [
                {"url": sink_url, "send_resolved": True}]}],
        },
        cost={"currency": "CNY", "budgets": [
            {"name": "demo-daily", "period": "day", "limit": "2", "thresholds": ["0.5", "1.0"]}]},
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
        print("\nwhat fired (as the rules evaluated it):")
        if not self.events:
            print("  nothing (a demo shorter than a few minutes ends before the incidents)")
        for offset, name, what, summary in self.events:
            detail = f": {summary}" if summary else ""
            print(f"  {offset:6.0f}s  {name:<18} {what}{detail}")


_DELIVERED_AS: Final = {"fired": "firing", "resolved": "resolved"}


def undelivered(events: Sequence[tuple[float, str, str, str]],
                notifications: Sequence[SinkNotification]) -> list[tuple[float, str, str]]:
    """The (offset, alert name, fired|resolved) events of an `AlertTimeline` that no
    notification answered: each event is paired, in order, with the first unused
    notification that arrived after it and carries that alert in the matching state."""
    used: set[int] = set()
    missing: list[tuple[float, str, str]] = []
    for offset, name, what, _summary in sorted(events):
        wanted = _DELIVERED_AS[what]
        match = next((i for i, n in enumerate(notifications)
                      if i not in used and n.offset_s >= offset - 1.0
                      and any(a.name == name and a.status == wanted for a in n.alerts)), None)
        if match is None:
            missing.append((offset, name, what))
        else:
            used.add(match)
    return missing


def _print_deliveries(timeline: AlertTimeline, sink: WebhookSink) -> None:
    print(f"\nwhat was delivered (to the webhook receiver {SINK_RECEIVER!r} at {sink.url}):")
    if not sink.notifications:
        print("  nothing")
    for notification in sink.notifications:
        print(notification.line())
    if sink.rejected:
        print(f"  {sink.rejected} request(s) the sink could not read were answered 400")
    missing = undelivered(timeline.events, sink.notifications)
    for offset, name, what in missing:
        print(f"  NOT DELIVERED: {name} {what} at {offset:.0f}s, and no notification for it "
              f"had reached the sink {DELIVERY_TIMEOUT_S:g}s after the traffic stopped")
    if timeline.events and not missing:
        print("  every alert that fired or resolved was delivered")


def written_by_source(stats: WorkloadStats) -> Counter[tuple[str, str]]:
    """(source, status) → requests the workload wrote, keyed as `requests_by_source`."""
    totals: Counter[tuple[str, str]] = Counter()
    for (schema, _model, status), n in stats.requests.items():
        totals[SOURCE_OF_SCHEMA[schema], status] += n
    return totals


def ingested_since(before: Counter[tuple[str, str]],
                   after: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter({key: after[key] - before[key] for key in after.keys() | before.keys()})


def _print_summary(stats: WorkloadStats, written: Counter[tuple[str, str]],
                   ingested: Counter[tuple[str, str]]) -> bool:
    print("\nwritten vs ingested (this run):")
    consistent = True
    for source in SOURCE_OF_SCHEMA.values():
        out = {status: written[source, status] for status in ("success", "error")}
        got = {status: ingested[source, status] for status in ("success", "error")}
        same = out == got
        consistent &= same
        print(f"  {source:<10} written {out['success']:>6} ok {out['error']:>5} errors"
              f"   ingested {got['success']:>6} ok {got['error']:>5} errors"
              f"   {'exact' if same else 'MISMATCH'}")
    seen = ", ".join(sorted(stats.incidents_seen)) or "none"
    print(f"  incidents played: {seen}; rotations: {dict(stats.rotations)}")
    return consistent


async def run_demo(*, directory: Path, duration: float, listen: str,
                   incidents: Sequence[Incident] | None = None,
                   sink: WebhookSink | None = None) -> int:
    """`directory` must be absolute (the CLI resolves it). `incidents` replaces the default
    schedule and `sink` the default (printing) sink, both for tests."""
    clock = SystemClock()
    schedule = default_incident_schedule(duration) if incidents is None else tuple(incidents)
    workload = DemoWorkload(directory / "logs", clock, random.Random(),  # noqa: S311 - synthetic traffic
                            incidents=schedule)
    sink = sink if sink is not None else WebhookSink(clock)
    # The log directories exist before the daemon starts, so it watches them from the start:
    # a directory created later is found only by the periodic rescan, which a busy source's
    # file events can hold off.
    for path in workload.paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # The sink first: its URL goes into the config, and it outlives the daemon's outbox.
        started = clock.time()

        def simulated_gpu(store: MetricStore, clock: Clock) -> Sampler:
            return SimulatedGpuSampler(store=store, clock=clock, incidents=schedule,
                                       started=started, rng=random.Random())  # noqa: S311

        async with contextlib.AsyncExitStack() as running:
            await running.enter_async_context(sink)  # its URL goes into the daemon's config
            daemon = await running.enter_async_context(Daemon(
                demo_config(directory, listen, sink.url), clock=clock,
                extra_samplers=[simulated_gpu]))
            base = daemon.listen_url
            print(f"inferwatch demo: logs in {directory / 'logs'}, state in "
                  f"{directory / 'state'}")
            print(f"  status page    {base}/   rules: {base}/rules")
            print(f"  metrics        {base}/metrics")
            print(f"  health         {base}/-/healthy   ready: {base}/-/ready")
            print(f"  alerts         {base}/api/v1/alerts   query: {base}/api/v1/query?query=up")
            print(f"  notifications  {base}/api/v2/alerts, delivered to the webhook receiver "
                  f"{sink.url}")
            print(f"  running for {duration:.0f}s (Ctrl-C stops early); incidents: "
                  + (", ".join(f"{i.kind} at {i.start_s:.0f}s" for i in workload.incidents)
                     or "none"))
            print("  each notification is printed as it arrives:", flush=True)
            before = requests_by_source(daemon.store)
            timeline = AlertTimeline(clock.time())
            sink.started = timeline.started
            assert daemon.rules is not None
            daemon.rules.listeners.append(timeline)
            writer = asyncio.create_task(workload.run(stop))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            stop.set()
            await writer
            workload.close()
            written = written_by_source(workload.stats)
            await _wait_for_catch_up(daemon, before, written)
            await sink.wait_until(lambda got: not undelivered(timeline.events, got),
                                  timeout=DELIVERY_TIMEOUT_S)
            consistent = _print_summary(
                workload.stats, written,
                ingested_since(before, requests_by_source(daemon.store)))
            timeline.print()
            _print_deliveries(timeline, sink)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0 if consistent else 1


async def _wait_for_catch_up(daemon: Daemon, before: Counter[tuple[str, str]],
                             written: Counter[tuple[str, str]]) -> None:
    """Until the daemon has counted and committed every line written (bounded). Counts, not
    the tailers' lag: a tailer knows of a write only once it has looked at the file again."""
    deadline = daemon.clock.monotonic() + _CATCH_UP_TIMEOUT_S
    while daemon.clock.monotonic() < deadline:
        if ingested_since(before, requests_by_source(daemon.store)) == written \
                and not daemon.store.dirty:
            return
        await asyncio.sleep(0.2)
