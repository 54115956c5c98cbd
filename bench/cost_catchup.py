"""The catch-up of an `api_usage` log, with the cost ledger on or off, in its own process.

`python bench/cost_catchup.py LOG WORKDIR [--no-ledger]` builds what the daemon builds for
ingestion (config from YAML, state file, metric store, and — unless `--no-ledger` — the
`Ledger` over the bundled price table, as `Daemon.start` does) and times `IngestService.run`
from its start until `is_ready()`, exactly as bench/catchup.py does for the `inference` log.
After the clock stops it reads back what the state file holds: ledger rows (with a request
id, unpriced), their exact total, and the daily roll-ups' total. One JSON object on stdout.

`--profile N` runs the same catch-up under cProfile and prints the top N functions by own
time to stderr, then the top N of monitor/cost/ alone, instead of timing it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from catchup import POLL_INTERVAL_S, _time_until_ready
from cost_data import API_SOURCE
from daemon_peer import read_exposition

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.cost.feed import WorkerLedgerFeed
from monitor.cost.ledger_rows import amount_of
from monitor.cost.money import money_text
from monitor.cost.pricing import PriceTable
from monitor.ingest.service import IngestService
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

WRITER_START_TIMEOUT_S = 30.0


def write_config(workdir: Path, log: Path) -> Path:
    """One `api_usage` source over `log`; checkpoints at the defaults, as for `inference`."""
    config = {
        "server": {"listen": "127.0.0.1:9464"},  # never bound
        "storage": {"path": str(workdir / "state")},
        "ingest": {"checkpoint_interval": "1s", "checkpoint_lines": 10000},
        "sources": [{"name": API_SOURCE, "paths": [str(log.resolve())], "schema": "api_usage",
                     "start_at": "beginning"}],
    }
    path = workdir / "inferwatch.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ledger_summary(state: StateStore) -> dict[str, Any]:
    """What the ledger holds, read after the timed catch-up."""
    connection = state.connection
    rows, with_id, unpriced = connection.execute(
        "SELECT COUNT(*), COUNT(request_id), COUNT(*) - COUNT(amount_units) FROM ledger"
    ).fetchone()
    total = sum((amount_of(*parts) or Decimal(0) for parts in connection.execute(
        "SELECT amount_units, amount_places FROM ledger")), Decimal(0))
    daily_requests, = connection.execute("SELECT COALESCE(SUM(requests), 0) FROM cost_daily"
                                         ).fetchone()
    daily = sum((Decimal(a) for (a,) in connection.execute("SELECT amount FROM cost_daily")),
                Decimal(0))
    return {"rows": rows, "with_id": with_id, "unpriced": unpriced,
            "total": money_text(total), "daily_requests": daily_requests,
            "daily_total": money_text(daily)}


async def _time_until_converted(service: IngestService,
                                feed: WorkerLedgerFeed | None) -> dict[str, Any]:
    """`_time_until_ready`, then (with the ledger) until the writer process has converted the
    whole journal and its last update is applied: `converted_s` from the same start. The
    writer is started first, as `Daemon.start` starts it for a priced source, and the clock
    starts once it is ready: its start-up is the daemon's, not the catch-up's."""
    if feed is not None:
        feed.start_ahead()
        deadline = time.monotonic() + WRITER_START_TIMEOUT_S
        while not feed.ready:
            if time.monotonic() > deadline:
                raise RuntimeError("the ledger writer did not start")
            await asyncio.sleep(POLL_INTERVAL_S)
    started = time.perf_counter()
    timings = await _time_until_ready(service)
    if feed is None:
        return timings
    while not feed.drained:  # noqa: ASYNC110 - polled, as _time_until_ready polls
        await asyncio.sleep(POLL_INTERVAL_S)
    timings["converted_s"] = time.perf_counter() - started
    feed.close()
    return timings


def catch_up(log: Path, workdir: Path, *, ledger: bool, summarize: bool = True
             ) -> dict[str, Any]:
    """One cold catch-up of `log` with its state under `workdir`; timings, the aggregate, and
    (with the ledger, unless not `summarize`) what the ledger holds."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(workdir, log))
    state = StateStore(config.storage.path)
    try:
        store = MetricStore(config.namespace, config.metrics.series_limit)
        costs = WorkerLedgerFeed(
            store, state_directory=config.storage.path,
            prices=PriceTable.load(config.cost.pricing_files),
            config=config.cost) if ledger else None
        service = IngestService(sources=config.sources, ingest=config.ingest,
                                metrics=config.metrics, state=state, store=store,
                                clock=SystemClock(), ledger=costs)
        timings = asyncio.run(_time_until_converted(service, costs))
        summary = ledger_summary(state) if ledger and summarize else None
    finally:
        state.close()
    body, _ = Exposition(store).render(None)
    return {**timings, "result": read_exposition(body.decode()).to_json(), "ledger": summary}


def _profile(log: Path, workdir: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    catch_up(log, workdir, ledger=True, summarize=False)
    profiler.disable()
    for title, restriction in (("all", ()), ("monitor/cost/ only", ("monitor/cost/",))):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(*restriction, top)
        print(f"--- {title} ---\n{out.getvalue()}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("workdir", type=Path, help="a fresh directory for the state file")
    parser.add_argument("--no-ledger", action="store_true",
                        help="build IngestService with ledger=None (metrics only)")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="print the top N functions by own time (cProfile) instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        _profile(args.log, args.workdir, args.profile)
        return
    print(json.dumps(catch_up(args.log, args.workdir, ledger=not args.no_ledger)))


if __name__ == "__main__":
    main()
