"""The catch-up alone: `IngestService` built in-process and timed from run start to ready.

Run as its own process (`python bench/catchup.py LOG WORKDIR`), so every repetition starts
from the same clean interpreter, like the bare loop it is compared with. It builds what the
daemon builds for ingestion (the config from the same YAML, the state file, the metric store,
the service) but no HTTP server, and times `IngestService.run` from its start until
`is_ready()` — also noting when every file had been read to its end (`read_s`), since
readiness waits for the commit that follows. It prints one JSON object on stdout.

`--profile N` runs the same catch-up under cProfile and prints the top N functions by own
time to stderr instead of timing it.
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
from pathlib import Path
from typing import Any

from daemon_peer import read_exposition, write_config

from monitor.clock import SystemClock
from monitor.config import load_config
from monitor.ingest.service import IngestService
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

POLL_INTERVAL_S = 0.005


async def _time_until_ready(service: IngestService) -> dict[str, Any]:
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(service.run(stop), name="ingest")
    read_s: float | None = None
    try:
        while not service.is_ready():
            if task.done():
                task.result()  # raises what crashed the loop
                raise RuntimeError("ingestion stopped before it was ready")
            if read_s is None and all(rt.tailer.caught_up()
                                      for rt in service.runtimes.values()):
                read_s = time.perf_counter() - started
            await asyncio.sleep(POLL_INTERVAL_S)
        ready_s = time.perf_counter() - started
    finally:
        stop.set()
        await task
    return {"ready_s": ready_s, "read_s": ready_s if read_s is None else read_s}


def catch_up(log: Path, workdir: Path) -> dict[str, Any]:
    """One cold catch-up of `log` with its state under `workdir`; timings and the aggregate."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(workdir, log, port=9464))  # the port is never bound
    state = StateStore(config.storage.path)
    try:
        store = MetricStore(config.namespace, config.metrics.series_limit)
        service = IngestService(sources=config.sources, ingest=config.ingest,
                                metrics=config.metrics, state=state, store=store,
                                clock=SystemClock())
        timings = asyncio.run(_time_until_ready(service))
    finally:
        state.close()
    body, _ = Exposition(store).render(None)
    return {**timings, "result": read_exposition(body.decode()).to_json()}


def _profile(log: Path, workdir: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    catch_up(log, workdir)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
    print(out.getvalue(), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("workdir", type=Path, help="a fresh directory for the state file")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="print the top N functions by own time (cProfile) instead")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        _profile(args.log, args.workdir, args.profile)
        return
    print(json.dumps(catch_up(args.log, args.workdir)))


if __name__ == "__main__":
    main()
