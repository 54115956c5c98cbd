"""Helpers for the cost tests: a ledger inside the real checkpoint over a real state file.

(Named `cost_helpers`: test directories have no `__init__.py`, so module basenames must be
unique across `tests/`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from monitor.clock import FakeClock
from monitor.config import CostConfig
from monitor.cost.feed import LocalLedgerFeed
from monitor.cost.ledger import Ledger, LedgerEntry
from monitor.cost.ledger_rows import amount_of
from monitor.cost.pricing import PriceTable
from monitor.ingest.checkpoint import CheckpointWriter
from monitor.ingest.decoders import FAST_DECODERS
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import parse_api_usage
from monitor.metrics.store import CounterSeries, MetricStore
from monitor.storage import StateStore

JAN = datetime(2026, 1, 10, tzinfo=UTC).timestamp()

PRICES = """\
models:
  - match: chat
    prices:
      - effective_from: 2025-01-01T00:00:00Z
        currency: CNY
        input_cache_hit: 0.5
        input_cache_miss: 2
        output: 8
      - effective_from: 2026-01-10T12:00:00Z
        currency: CNY
        input_cache_hit: 0.2
        input_cache_miss: 2
        output: 3
        discounts:
          - {from: "16:30", to: "00:30", factor: 0.5}
  - match: gpt-x
    prices:
      - effective_from: 2025-01-01T00:00:00Z
        currency: USD
        input_cache_hit: 1.25
        input_cache_miss: 2.5
        output: 10
"""


@dataclass
class FakeTailer:
    """What CheckpointWriter needs of a tailer: no files, so no offsets to write."""

    source: str
    removed: list[Any] = field(default_factory=list)

    def dirty_checkpoints(self) -> list[Any]:
        return []

    def mark_saved(self) -> None:
        pass


class Rig:
    def __init__(self, directory: Path, *, prices: str = PRICES, timezone: str = "UTC",
                 rates: dict[str, str] | None = None, currency: str = "CNY",
                 user_label: bool = False) -> None:
        self.directory = directory
        self.user_label = user_label
        directory.mkdir(parents=True, exist_ok=True)
        price_file = directory / "prices.yml"
        price_file.write_text(prices)
        self.config = CostConfig.model_validate({
            "currency": currency, "timezone": timezone,
            "exchange_rates": {k: Decimal(v) for k, v in (rates or {}).items()}})
        self.table = PriceTable.load([str(price_file)], bundled=False)
        self.clock = FakeClock(JAN)
        self.entries: list[LedgerEntry] = []
        self.start()

    def start(self) -> None:
        """A (re)start over the same state file."""
        self.state = StateStore(self.directory / "state")
        self.store = MetricStore()
        self.ledger = Ledger(state=self.state, prices=self.table, config=self.config,
                             user_label=self.user_label)
        self.ledger_feed = LocalLedgerFeed(self.store, self.ledger)
        self.ledger_feed.listeners.append(self.entries.extend)
        self.writer = CheckpointWriter(self.state, self.store, self.clock, self.ledger_feed)
        self.pipeline = SourcePipeline(
            name="api", schema=parse_api_usage, fast_decoder=FAST_DECODERS["api_usage"],
            store=self.store, clock=self.clock, priced=True)

    def restart(self) -> None:
        self.state.close()
        self.start()

    def feed(self, *records: dict[str, Any]) -> bool:
        lines = [orjson.dumps(r) for r in records]
        self.pipeline.process(LineChunk(lines, 0, 0), "test.log")
        return self.writer.commit([(self.pipeline, FakeTailer("api"))])  # type: ignore[list-item]

    def rows(self) -> list[tuple[Any, ...]]:
        """(request id, model, amount, reported), amounts as Decimal."""
        return [(rid, model, amount_of(units, places),
                 None if reported is None else Decimal(reported))
                for rid, model, units, places, reported in self.state.connection.execute(
                    "SELECT request_id, model, amount_units, amount_places, reported FROM ledger "
                    "ORDER BY id")]

    def total(self) -> Decimal:
        return sum((amount for _, _, amount, _ in self.rows() if amount is not None),
                   Decimal(0))

    def daily(self) -> dict[tuple[str, str], tuple[int, int, Decimal]]:
        rows = self.state.connection.execute(
            "SELECT day, model, requests, unpriced, amount FROM cost_daily").fetchall()
        return {(day, model): (n, unpriced, Decimal(amount))
                for day, model, n, unpriced, amount in rows}

    def counter(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        family = self.store.family(name)
        if family is None:
            return {}
        return {key: s.value for key, s in family.series.items()
                if isinstance(s, CounterSeries)}


def usage(request_id: str | None, model: str, t: float, *, hit: int = 0, miss: int = 0,
          output: int = 0, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(t, UTC).isoformat(), "model": model,
        "usage": {"prompt_tokens": hit + miss, "completion_tokens": output,
                  "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": miss}}
    if request_id is not None:
        record["request_id"] = request_id
    record.update(extra)
    return record


