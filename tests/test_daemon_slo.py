"""SLOs inside the running daemon, in process: the bundled rules/slos/inference.yml in
`slo_files`, inference lines appended, the daemon's own scrapes and an SLO tick on a FakeClock;
the SLO metrics are on /metrics and the minutes' counts in the state file. A bad SLO file
stops the start-up."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from monitor.clock import FakeClock
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.demo.workload import generate_lines
from monitor.errors import ConfigError
from monitor.sdnotify import SystemdNotifier

BUNDLED = Path(__file__).resolve().parents[1] / "rules" / "slos" / "inference.yml"
T0 = 1_767_225_600.0  # a whole minute
WAIT_S = 15.0
SLO_ID = "inference-requests-availability"


def config_file(tmp_path: Path, port: int, write_config: Callable[..., Path],
                fast_ingest: dict[str, str], slo_files: list[str]) -> Path:
    log = tmp_path / "logs" / "inference.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    return write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(tmp_path / "state")},
        "ingest": fast_ingest,
        "host": {"enabled": False},
        "sources": [{"name": "inference", "paths": [str(log)], "schema": "inference"}],
        "slo_files": slo_files,
    })


async def test_slo_metrics_on_metrics_after_a_tick(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str]) -> None:
    path = config_file(tmp_path, free_port(), write_config, fast_ingest, [str(BUNDLED)])
    clock = FakeClock(T0 + 1)
    daemon = Daemon(load_config(path), config_path=path, clock=clock,
                    notifier=SystemdNotifier(environ={}))
    await daemon.start()
    try:
        assert daemon.slos is not None and daemon.scraper is not None
        assert sorted(daemon.slos.slos) == [SLO_ID, "inference-requests-latency"]
        lines = list(generate_lines(200, "inference", seed=5, error_rate=0.1))
        with (tmp_path / "logs" / "inference.log").open("ab") as f:
            f.write(b"".join(line.data for line in lines))
        async with asyncio.timeout(WAIT_S):
            while daemon.store.family("inferwatch_requests") is None or not \
                    daemon.store.family("inferwatch_requests").series:  # type: ignore[union-attr]
                await asyncio.sleep(0.02)
        for _ in range(8):  # two minutes of scrapes every 15 s
            clock.advance(15)
            daemon.scraper.scrape()
        clock.advance(1)
        daemon.slos.tick()
        async with aiohttp.ClientSession() as session, \
                session.get(daemon.listen_url + "/metrics") as response:
            body = await response.text()
        assert f'inferwatch_slo_objective_ratio{{slo="{SLO_ID}"}} 0.999' in body
        assert f'inferwatch_slo_burn_rate{{slo="{SLO_ID}",window="5m"}}' in body
        assert f'inferwatch_slo_sli_error_ratio{{slo="{SLO_ID}",window="30d"}}' in body
        with sqlite3.connect(tmp_path / "state" / "inferwatch.db") as db:
            (total,) = db.execute("SELECT SUM(total) FROM slo_minutes WHERE slo = ?",
                                  (SLO_ID,)).fetchone()
        assert total == pytest.approx(200, rel=0.5)  # rate x 60: extrapolated, roughly
    finally:
        await daemon.stop()


async def test_a_bad_slo_file_stops_the_start(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text('version: "prometheus/v1"\nservice: x\nslos: []\n')
    path = config_file(tmp_path, free_port(), write_config, fast_ingest, [str(bad)])
    daemon = Daemon(load_config(path), config_path=path, notifier=SystemdNotifier(environ={}))
    with pytest.raises(ConfigError, match=r"bad\.yml"):
        await daemon.start()
    await daemon.stop()
