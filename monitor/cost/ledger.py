"""The cost ledger: one row per request of a priced source, exactly once.

The requests of a priced source (schema `api_usage`) wait in their pipeline beside its metric
batch. At each checkpoint `price` turns them into ledger rows and adds their spend to the
metric store (inside the store's change tracking), and `write` puts the rows, their daily
roll-ups and the request ids in the same SQLite transaction as the offsets that produced them.
If that commit fails, the store's changes are undone, `discard` forgets the batch, and the
requests stay pending in their pipelines: a request is in the ledger if and only if its line
is committed as read.

Amounts are `Decimal`, stored as text, never a float. A request whose model has no price at
its time, or whose price is in a currency with no exchange rate, is recorded with no amount,
counted in `cost_unpriced_requests_total{model}`, and warned about once per model.

Duplicates: a request id already charged in the same source within DEDUP_WINDOW_S (by event
time, at most DEDUP_MAX_IDS ids per source) is not charged again; the window is persisted, so
a restart does not forget it.

Roll-ups (`cost_daily`) sum each (day in cost.timezone, source, model, user) and are kept
forever; ledger rows older than `cost.ledger_retention` are pruned.
"""

from __future__ import annotations

import decimal
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from monitor.config import CostConfig
from monitor.cost.pricing import PriceTable, convert, request_cost
from monitor.ingest.events import RequestEvent
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

log = logging.getLogger(__name__)

PRICED_SCHEMAS = frozenset({"api_usage"})
DEDUP_WINDOW_S = 86_400.0
DEDUP_MAX_IDS = 200_000
ZERO = Decimal(0)
# Wide enough that no sum of ledger amounts is ever rounded.
EXACT = decimal.Context(prec=80, Emin=-999_999, Emax=999_999,
                        traps=[decimal.InvalidOperation, decimal.Overflow])


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One charged request, as budgets and reports see it."""

    t: float
    source: str
    model: str
    user: str
    amount: Decimal  # in cost.currency


@dataclass(slots=True)
class DailyTotals:
    requests: int = 0
    unpriced: int = 0
    amount: Decimal = ZERO
    reported: Decimal = ZERO
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: DailyTotals) -> None:
        self.requests += other.requests
        self.unpriced += other.unpriced
        self.amount = EXACT.add(self.amount, other.amount)
        self.reported = EXACT.add(self.reported, other.reported)
        self.cache_hit_tokens += other.cache_hit_tokens
        self.cache_miss_tokens += other.cache_miss_tokens
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens


DayKey = tuple[str, str, str, str]  # day, source, model, user


@dataclass
class LedgerBatch:
    """What one checkpoint adds to the ledger."""

    rows: list[tuple[object, ...]] = field(default_factory=list)
    daily: dict[DayKey, DailyTotals] = field(default_factory=dict)
    new_ids: dict[str, dict[str, float]] = field(default_factory=dict)
    entries: list[LedgerEntry] = field(default_factory=list)
    duplicates: int = 0


class LocalDays:
    """The calendar day (in one time zone) of an epoch time, cached by day boundaries."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._start = self._end = 0.0
        self._day = ""

    def __call__(self, t: float) -> str:
        return self.bounds(t)[2]

    def bounds(self, t: float) -> tuple[float, float, str]:
        """(start, end, ISO date) of the local day holding `t`."""
        if not self._start <= t < self._end:
            local = datetime.fromtimestamp(t, self.zone)
            midnight = datetime(local.year, local.month, local.day, tzinfo=self.zone)
            following = midnight.date() + timedelta(days=1)
            self._start = midnight.timestamp()
            self._end = datetime(following.year, following.month, following.day,
                                 tzinfo=self.zone).timestamp()
            self._day = midnight.date().isoformat()
        return self._start, self._end, self._day


class Ledger:
    """Prices the requests of priced sources and records them with each checkpoint."""

    def __init__(self, *, state: StateStore, prices: PriceTable, config: CostConfig,
                 store: MetricStore) -> None:
        self.state = state
        self.prices = prices
        self.config = config
        self._cost = store.register(fam.COST)
        self._unpriced = store.register(fam.COST_UNPRICED_REQUESTS)
        self._days = LocalDays(config.timezone)
        self._warned: set[str] = set()
        self._seen: dict[str, OrderedDict[str, float]] = {}
        self.listeners: list[Callable[[Sequence[LedgerEntry]], None]] = []
        self._load_recent_ids()
        self._check_timezone()

    def configure(self, prices: PriceTable, config: CostConfig) -> None:
        """A reload: new prices, rates and currency apply to requests committed from now on;
        a new time zone only at the next start (the roll-ups are rebuilt then)."""
        if config.timezone != self.config.timezone:
            log.warning("reload: cost.timezone changed; restart inferwatch to apply it")
            config = config.model_copy(update={"timezone": self.config.timezone})
        self.prices = prices
        self.config = config

    def _check_timezone(self) -> None:
        """Daily roll-ups are days of cost.timezone: when it changed since the last run,
        rebuild the roll-ups of the days the ledger still holds (older days keep theirs)."""
        connection = self.state.connection
        row = connection.execute("SELECT value FROM cost_meta WHERE key = 'timezone'").fetchone()
        if row is not None and row[0] == self.config.timezone:
            return
        daily: dict[tuple[str, str, str, str, str], DailyTotals] = {}
        first_day = None
        if row is not None:
            for t, source, model, user, currency, amount, reported, hit, miss, inputs, \
                    output in connection.execute(
                        "SELECT t, source, model, user, currency, amount, reported, "
                        "cache_hit_tokens, cache_miss_tokens, input_tokens, output_tokens "
                        "FROM ledger ORDER BY t"):
                day = self._days(t)
                first_day = first_day or day
                totals = daily.setdefault((day, source, model, user, currency), DailyTotals())
                totals.add(DailyTotals(
                    1, int(amount is None), ZERO if amount is None else Decimal(amount),
                    ZERO if reported is None else Decimal(reported), hit, miss, inputs, output))
            log.warning("cost.timezone changed from %s to %s: daily roll-ups rebuilt from %s "
                        "on (earlier days keep their old boundaries)", row[0],
                        self.config.timezone, first_day or "(no ledger rows)")
        with self.state.transaction() as cursor:
            if first_day is not None:
                cursor.execute("DELETE FROM cost_daily WHERE day >= ?", (first_day,))
                cursor.executemany(
                    "INSERT INTO cost_daily (day, source, model, user, currency, requests, "
                    "unpriced, amount, reported, cache_hit_tokens, cache_miss_tokens, "
                    "input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*key, t.requests, t.unpriced, money_text(t.amount), money_text(t.reported),
                      t.cache_hit_tokens, t.cache_miss_tokens, t.input_tokens, t.output_tokens)
                     for key, t in daily.items()])
            cursor.execute("INSERT OR REPLACE INTO cost_meta (key, value) VALUES "
                           "('timezone', ?)", (self.config.timezone,))

    def _load_recent_ids(self) -> None:
        rows = self.state.connection.execute(
            "SELECT source, request_id, t FROM ledger_request_ids ORDER BY t")
        for source, request_id, t in rows:
            self._remember(source, request_id, t)

    def _remember(self, source: str, request_id: str, t: float) -> None:
        seen = self._seen.setdefault(source, OrderedDict())
        seen[request_id] = t
        seen.move_to_end(request_id)
        if len(seen) > DEDUP_MAX_IDS:
            seen.popitem(last=False)

    # -- a checkpoint ---------------------------------------------------------------------------

    def price(self, pending: Iterable[tuple[str, str | None, Sequence[RequestEvent]]]
              ) -> LedgerBatch:
        """Price the pending requests of each (source, model override, events) and add their
        spend to the metric store; nothing is written yet."""
        batch = LedgerBatch()
        currency = self.config.currency
        for source, model_override, events in pending:
            seen: Mapping[str, float] = self._seen.get(source, {})
            new_ids = batch.new_ids.setdefault(source, {})
            for event in events:
                request_id = event.request_id
                if request_id:
                    if request_id in seen or request_id in new_ids:
                        batch.duplicates += 1
                        continue
                    new_ids[request_id] = event.timestamp
                self._add(batch, source, model_override or event.model, event, currency)
        if batch.duplicates:
            log.info("ledger: %d duplicate request id(s) not charged again", batch.duplicates)
        return batch

    def _add(self, batch: LedgerBatch, source: str, model: str, event: RequestEvent,
             currency: str) -> None:
        try:
            amount = self._amount(model, event)
        except (ArithmeticError, ValueError) as exc:  # one odd request, never the checkpoint
            self._warn(model, f"cannot price a request of model {model!r}: {exc}")
            amount = None
        hit = event.cache_hit_tokens or 0
        miss = event.cache_miss_tokens or 0
        input_tokens = event.input_tokens if event.input_tokens is not None else hit + miss
        output = event.output_tokens or 0
        user = event.user or ""
        reported = _reported(event.reported_cost)
        batch.rows.append((
            event.timestamp, source, event.request_id, model, user, input_tokens, hit, miss,
            output, event.reasoning_tokens or 0, currency,
            None if amount is None else money_text(amount),
            None if reported is None else money_text(reported)))
        key = (self._days(event.timestamp), source, model, user)
        totals = batch.daily.get(key)
        if totals is None:
            totals = batch.daily[key] = DailyTotals()
        totals.requests += 1
        totals.cache_hit_tokens += hit
        totals.cache_miss_tokens += miss
        totals.input_tokens += input_tokens
        totals.output_tokens += output
        if reported is not None:
            totals.reported = EXACT.add(totals.reported, reported)
        if amount is None:
            totals.unpriced += 1
            self._unpriced.inc(self._unpriced.key((model,)))
            return
        totals.amount = EXACT.add(totals.amount, amount)
        self._cost.inc(self._cost.key((source, model, currency)), float(amount))
        batch.entries.append(LedgerEntry(event.timestamp, source, model, user, amount))

    def _amount(self, model: str, event: RequestEvent) -> Decimal | None:
        t = event.timestamp
        price = self.prices.price_at(model, t, currency=self.config.currency)
        if price is None:
            self._warn(model, f"no price for model {model!r} at "
                              f"{datetime.fromtimestamp(t).astimezone().isoformat()}; its "
                              "requests are counted in cost_unpriced_requests_total, not "
                              "costed. Add it with cost.pricing_files")
            return None
        amount = request_cost(price, t, input_tokens=event.input_tokens,
                              cache_hit_tokens=event.cache_hit_tokens,
                              cache_miss_tokens=event.cache_miss_tokens,
                              output_tokens=event.output_tokens)
        converted = convert(amount, price.currency, self.config.currency,
                            self.config.exchange_rates)
        if converted is None:
            self._warn(model, f"model {model!r} is priced in {price.currency} and "
                              f"cost.exchange_rates has no rate to {self.config.currency}; "
                              "its requests are counted as unpriced")
        return converted

    def _warn(self, model: str, message: str) -> None:
        if model not in self._warned and len(self._warned) < 10_000:
            self._warned.add(model)
            log.warning("cost: %s", message)

    def write(self, cursor: sqlite3.Cursor, batch: LedgerBatch) -> None:
        """Inside the checkpoint's transaction."""
        cursor.executemany(
            "INSERT INTO ledger (t, source, request_id, model, user, input_tokens, "
            "cache_hit_tokens, cache_miss_tokens, output_tokens, reasoning_tokens, currency, "
            "amount, reported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch.rows)
        currency = self.config.currency
        for (day, source, model, user), delta in batch.daily.items():
            row = cursor.execute(
                "SELECT requests, unpriced, amount, reported, cache_hit_tokens, "
                "cache_miss_tokens, input_tokens, output_tokens FROM cost_daily WHERE day = ? "
                "AND source = ? AND model = ? AND user = ? AND currency = ?",
                (day, source, model, user, currency)).fetchone()
            totals = DailyTotals()
            if row is not None:
                totals = DailyTotals(row[0], row[1], Decimal(row[2]), Decimal(row[3]), *row[4:])
            totals.add(delta)
            cursor.execute(
                "INSERT OR REPLACE INTO cost_daily (day, source, model, user, currency, "
                "requests, unpriced, amount, reported, cache_hit_tokens, cache_miss_tokens, "
                "input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (day, source, model, user, currency, totals.requests, totals.unpriced,
                 money_text(totals.amount), money_text(totals.reported), totals.cache_hit_tokens,
                 totals.cache_miss_tokens, totals.input_tokens, totals.output_tokens))
        cursor.executemany(
            "INSERT OR REPLACE INTO ledger_request_ids (source, request_id, t) VALUES (?, ?, ?)",
            [(source, request_id, t) for source, ids in batch.new_ids.items()
             for request_id, t in ids.items()])

    def committed(self, batch: LedgerBatch) -> None:
        """The batch's transaction succeeded."""
        for source, ids in batch.new_ids.items():
            for request_id, t in ids.items():
                self._remember(source, request_id, t)
        if batch.entries:
            for listener in self.listeners:
                try:
                    listener(batch.entries)
                except Exception:  # a budget defect must never fail ingestion
                    log.exception("cost listener failed")

    # -- housekeeping ---------------------------------------------------------------------------

    def prune(self, now: float) -> tuple[int, int]:
        """Drop ledger rows past retention and request ids past the dedup window (and the
        oldest beyond DEDUP_MAX_IDS per source); (rows, ids) removed."""
        with self.state.transaction() as cursor:
            rows = cursor.execute("DELETE FROM ledger WHERE t < ?",
                                  (now - self.config.ledger_retention,)).rowcount
            ids = 0
            for source, seen in self._seen.items():
                newest = next(reversed(seen.values()), None) if seen else None
                if newest is None:
                    continue
                horizon = newest - DEDUP_WINDOW_S
                stale = [rid for rid, t in seen.items() if t < horizon]
                for rid in stale:
                    del seen[rid]
                # What memory keeps (the window, at most DEDUP_MAX_IDS) is what the file keeps.
                oldest_kept = min(seen.values(), default=horizon)
                ids += cursor.execute(
                    "DELETE FROM ledger_request_ids WHERE source = ? AND t < ?",
                    (source, max(horizon, oldest_kept))).rowcount
        return rows, ids


def money_text(amount: Decimal) -> str:
    """Plain decimal text without trailing zeros or an exponent ("0.0123", "2", "1500")."""
    return format(EXACT.normalize(amount), "f")


def _reported(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except decimal.InvalidOperation:
        return None
    return value if value.is_finite() else None
