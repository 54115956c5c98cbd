"""The ledger writer: the journal converted in a real child process, exactly once.

The writer process is `python -m monitor.cost.writer`, started by `WorkerLedgerFeed` as the
daemon starts it. These tests kill it (SIGKILL) between and during conversions, race two
converters over one journal, and hold the state file's write lock against a checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from cost_helpers import JAN, PRICES, FakeTailer, Rig, usage

from monitor.config import CostConfig
from monitor.cost import journal
from monitor.cost.feed import WorkerLedgerFeed
from monitor.cost.ledger import Ledger, LedgerEntry
from monitor.cost.ledger_rows import amount_of
from monitor.cost.pricing import PriceTable
from monitor.ingest.events import RequestEvent
from monitor.ingest.files import LineChunk
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.storage import StateStore

MISS_PRICE = Decimal(2) / 10**6  # "chat" before 2026-01-10T12:00Z: 2 CNY per 1M miss tokens


def request(i: int, *, t: float = JAN) -> RequestEvent:
    """Request i: i+1 miss tokens of model chat, so the amounts are all different."""
    return RequestEvent(
        timestamp=t + i * 0.001, duration=1.0, ttft=None, service="", model="chat",
        request_id=f"r{i}", user=None, status=200, error_class=None, input_tokens=i + 1,
        output_tokens=0, reasoning_tokens=None, cache_hit_tokens=0, cache_miss_tokens=i + 1,
        throughput=None, reported_cost=None)


def expected_total(ids: range) -> Decimal:
    return sum((MISS_PRICE * (i + 1) for i in ids), Decimal(0))


def journal_rows(state: StateStore, ids: range, per_row: int) -> None:
    for first in range(ids.start, ids.stop, per_row):
        with state.transaction() as cursor:
            journal.append(cursor, [("api", None, [
                request(i) for i in range(first, min(first + per_row, ids.stop))])])


def ledger_rows(state: StateStore) -> tuple[int, int, Decimal]:
    """(rows, distinct request ids, total)."""
    rows, distinct = state.connection.execute(
        "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM ledger").fetchone()
    total = sum((amount_of(*parts) or Decimal(0) for parts in state.connection.execute(
        "SELECT amount_units, amount_places FROM ledger")), Decimal(0))
    return rows, distinct, total


class Writer:
    """A WorkerLedgerFeed over a fresh state directory, as the daemon builds it."""

    def __init__(self, directory: Path) -> None:
        (directory / "prices.yml").write_text(PRICES)
        self.directory = directory / "state"
        self.state = StateStore(self.directory)
        self.store = MetricStore()
        self.feed = WorkerLedgerFeed(
            self.store, state_directory=self.directory,
            prices=PriceTable.load([str(directory / "prices.yml")], bundled=False),
            config=CostConfig.model_validate({"currency": "CNY", "timezone": "UTC"}))
        self.entries: list[LedgerEntry] = []
        self.resyncs = 0
        self.feed.listeners.append(self.entries.extend)
        self.feed.resync_listeners.append(self._resynced)

    def _resynced(self) -> None:
        self.resyncs += 1

    def cost(self) -> float:
        family = self.store.family("inferwatch_cost")
        assert family is not None
        return sum(s.value for s in family.series.values() if isinstance(s, CounterSeries))

    def close(self) -> None:
        self.feed.close()
        self.state.close()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def writer(tmp_path: Path) -> Writer:
    return Writer(tmp_path)


async def test_the_writer_process_converts_the_journal_and_reports_its_totals(
        writer: Writer) -> None:
    journal_rows(writer.state, range(500), per_row=100)
    writer.feed.recorded()
    await until(lambda: writer.feed.drained)
    assert ledger_rows(writer.state) == (500, 500, expected_total(range(500)))
    assert journal.length(writer.state.connection) == 0
    assert writer.cost() == pytest.approx(float(expected_total(range(500))))
    assert sum((e.amount for e in writer.entries), Decimal(0)) == expected_total(range(500))
    pid = writer.feed.process.pid if writer.feed.process else None
    writer.close()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped


async def test_a_killed_writer_is_restarted_and_charges_each_request_once(
        writer: Writer) -> None:
    journal_rows(writer.state, range(40_000), per_row=2_000)
    assert (writer.feed.started, writer.feed.describe(20)) == (
        False, "not running; 20 journal row(s) to convert")
    writer.feed.recorded()
    await until(lambda: writer.entries != [])  # a first commit answered, more to come
    process = writer.feed.process
    assert process is not None
    assert writer.feed.describe(3) == f"writer pid {process.pid}; 3 journal row(s) to convert"
    os.kill(process.pid, signal.SIGKILL)  # mid-journal, perhaps mid-transaction
    await until(lambda: writer.feed.process is None)
    assert writer.feed.describe(2) == "waiting to restart; 2 journal row(s) to convert"
    await until(lambda: writer.feed.restarts == 1)
    await until(lambda: writer.feed.drained)
    assert writer.feed.describe(0).endswith(", restarted 1x; 0 journal row(s) to convert")
    assert ledger_rows(writer.state) == (40_000, 40_000, expected_total(range(40_000)))
    # The restarted writer's totals are the committed ones, whatever the dead one answered.
    assert writer.cost() == pytest.approx(float(expected_total(range(40_000))))
    assert writer.resyncs == 1  # the budgets were told to read the state file again
    writer.close()


async def test_a_journal_left_by_a_stopped_daemon_is_converted_by_the_next(
        tmp_path: Path) -> None:
    first = Writer(tmp_path)
    journal_rows(first.state, range(300), per_row=100)  # journaled, never converted
    first.close()
    second = Writer(tmp_path)
    second.feed.recorded()  # what the daemon does at start when the journal has rows
    await until(lambda: second.feed.drained)
    assert ledger_rows(second.state) == (300, 300, expected_total(range(300)))
    second.close()


def test_two_converters_over_one_journal_charge_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prices.yml").write_text(PRICES)
    table = PriceTable.load([str(tmp_path / "prices.yml")], bundled=False)
    config = CostConfig.model_validate({"currency": "CNY", "timezone": "UTC"})
    state_a = StateStore(tmp_path / "state")
    state_b = StateStore(tmp_path / "state")
    journal_rows(state_a, range(50), per_row=10)
    ledger_a = Ledger(state=state_a, prices=table, config=config)
    ledger_b = Ledger(state=state_b, prices=table, config=config)
    stale = journal.oldest(state_a.connection, 16)  # A has read the rows...
    while ledger_b.convert() is not None:  # ...when B converts them all
        pass
    real_oldest = journal.oldest
    calls: list[object] = []

    def oldest(connection: sqlite3.Connection, limit: int) -> list[journal.JournalRow]:
        calls.append(connection)
        return stale if len(calls) == 1 else real_oldest(connection, limit)

    monkeypatch.setattr(journal, "oldest", oldest)
    # A's commit finds its rows gone: it charges nothing, reads the state again, finds no work.
    assert ledger_a.convert() is None
    assert len(calls) == 2
    assert ledger_rows(state_a) == (50, 50, expected_total(range(50)))
    [(_, _, total)] = ledger_a.totals()  # read again from the rows B wrote
    assert total == pytest.approx(float(expected_total(range(50))))
    state_a.close()
    state_b.close()


def test_a_checkpoint_steps_aside_while_the_writer_holds_the_state_file(rig: Rig) -> None:
    other = sqlite3.connect(rig.state.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the writer's transaction
    rig.pipeline.process(LineChunk([orjson.dumps(usage("a", "chat", JAN, miss=1000))], 0, 0),
                         "test.log")
    work = [(rig.pipeline, FakeTailer("api"))]
    assert rig.writer.commit(work, wait=False) is None  # type: ignore[arg-type]
    assert rig.pipeline.pending_lines == 1  # still pending, nothing applied
    assert rig.counter("inferwatch_checkpoint_failures") == {}
    assert rig.counter("inferwatch_log_lines") == {}
    other.execute("COMMIT")
    other.close()
    assert rig.writer.commit(work, wait=False) is True  # type: ignore[arg-type]
    assert [r[0] for r in rig.rows()] == ["a"]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)
