"""Cost inside the running daemon, in process: `api_usage` lines appended to a real log are
priced into the ledger with the offsets that read them, `inferwatch_cost_total` shows the
spend, a budget threshold crossed is delivered through the webhook once, a duplicate request
id is charged once across a restart, and `inferwatch cost report` reads the ledger while the
daemon runs. Bounded polls, no timing assertions."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from monitor.cli import main
from monitor.config import load_config
from monitor.cost.feed import WorkerLedgerFeed
from monitor.cost.ledger_rows import amount_of
from monitor.daemon import Daemon
from monitor.metrics.store import CounterSeries
from monitor.sdnotify import SystemdNotifier

WAIT_S = 15.0
PRICES = """\
models:
  - match: chat
    prices:
      - {effective_from: 2026-01-01T00:00:00Z, currency: CNY, input_cache_hit: 0.2,
         input_cache_miss: 2, output: 3}
"""


def line(request_id: str, miss: int, output: int) -> bytes:
    return orjson.dumps({
        "timestamp": datetime.now(UTC).isoformat(), "request_id": request_id,
        "model": "chat", "user_id": "u1", "status": 200, "duration_ms": 800,
        "usage": {"prompt_tokens": miss, "completion_tokens": output,
                  "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": miss}},
        option=orjson.OPT_APPEND_NEWLINE)


def ledger_amounts(state_dir: Path) -> list[tuple[str, Decimal | None]]:
    with sqlite3.connect(f"file:{state_dir / 'inferwatch.db'}?mode=ro", uri=True) as db:
        return [(request_id, amount_of(units, places)) for request_id, units, places in db.execute(
            "SELECT request_id, amount_units, amount_places FROM ledger ORDER BY id")]


def cost_total(daemon: Daemon) -> float:
    family = daemon.store.family("inferwatch_cost")
    if family is None:
        return 0.0
    return sum(s.value for s in family.series.values() if isinstance(s, CounterSeries))


async def until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def start_receiver(received: list[dict[str, Any]]) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def budget_pages(received: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [alert["labels"] for message in received for alert in message["alerts"]
            if alert["labels"].get("alertname") == "BudgetThresholdCrossed"
            and alert["status"] == "firing"]


async def test_usage_lines_are_priced_exactly_once_and_reported_while_running(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    received: list[dict[str, Any]] = []
    runner, hook_url = await start_receiver(received)
    log = tmp_path / "logs" / "usage.jsonl"
    log.parent.mkdir()
    (tmp_path / "prices.yml").write_text(PRICES)
    state_dir = tmp_path / "state"
    config_path = write_config(tmp_path / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "storage": {"path": str(state_dir)},
        "ingest": fast_ingest,
        "sources": [{"name": "api", "paths": [str(log)], "schema": "api_usage"}],
        "cost": {"currency": "CNY", "timezone": "Asia/Shanghai",
                 "pricing_files": [str(tmp_path / "prices.yml")],
                 "budgets": [{"name": "daily", "period": "day", "limit": 10,
                              "thresholds": [0.5]}]},
        "notify": {"route": {"receiver": "hook", "group_wait": "0s",
                             "group_by": ["alertname", "budget"]},
                   "receivers": [{"name": "hook", "webhook_configs": [{"url": hook_url}]}]},
    })
    log.write_bytes(line("r1", 1_000_000, 1_000_000) + line("r2", 500_000, 0))
    daemon = Daemon(load_config(config_path), config_path=config_path,
                    notifier=SystemdNotifier(environ={}))
    await daemon.start()
    try:
        feed = daemon.ledger
        assert isinstance(feed, WorkerLedgerFeed) and feed.process is not None  # started ahead
        await until(lambda: len(ledger_amounts(state_dir)) == 2, "two ledger rows")
        await until(lambda: daemon.ledger_writer_status().endswith("0 journal row(s) to convert"),
                    "an empty journal on the status line")
        assert feed.process is not None
        assert daemon.ledger_writer_status().startswith(f"writer pid {feed.process.pid}")
        assert ledger_amounts(state_dir) == [
            ("r1", Decimal(5)), ("r2", Decimal(1))]
        await until(lambda: cost_total(daemon) == 6.0, "inferwatch_cost_total")

        # The report reads the ledger while the daemon holds the state file.
        assert main(["cost", "report", "--config", str(config_path), "--period", "day",
                     "--format", "json"]) == 0
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        assert (report["total"], report["requests"], report["by"]) == ("6", 2, {"chat": "6"})
        assert report["budgets"][0]["spent"] == "6"
        # 6 of 10 crossed the 0.5 threshold: the alert goes through routing and delivery.
        await until(lambda: bool(budget_pages(received)), "the budget threshold alert")
        assert budget_pages(received)[0]["budget"] == "daily"
        assert budget_pages(received)[0]["threshold"] == "0.5"
    finally:
        await daemon.stop()

    # A restart, then the same request id again (a gateway logging twice) and a new one.
    with log.open("ab") as f:
        f.write(line("r1", 1_000_000, 1_000_000) + line("r3", 0, 1_000_000))
    again = Daemon(load_config(config_path), config_path=config_path,
                   notifier=SystemdNotifier(environ={}))
    await again.start()
    try:
        await until(lambda: len(ledger_amounts(state_dir)) == 3, "the new request's row")
        assert [rid for rid, _ in ledger_amounts(state_dir)] == ["r1", "r2", "r3"]
        await until(lambda: cost_total(again) == 9.0, "the counter, continued")
        await asyncio.sleep(2.5)  # budget evaluations (every second) after the restart
        assert len(budget_pages(received)) == 1  # the threshold fired once this period
    finally:
        await again.stop()
        await runner.cleanup()
