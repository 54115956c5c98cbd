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

Beside the spend (`cost_total`), `cost_cache_savings_total` counts what the requests' prompt
cache hits saved: those input tokens at the cache-miss price minus at the cache-hit price,
with the same discount and currency conversion. With `metrics.user_label` both counters
carry the request's `user` (when the log names one), as the request families do.

Duplicates: a request id already charged in the same source within DEDUP_WINDOW_S (by event
time; at least the last DEDUP_MAX_IDS ids per source, at most twice that between trims) is not
charged again. The window is read back from the ledger rows at start-up, so a restart does not
forget it (as long as cost.ledger_retention is longer than the window).

Roll-ups (`cost_daily`) sum each (day in cost.timezone, source, model, user) and are kept
forever; ledger rows older than `cost.ledger_retention` are pruned.
"""

from __future__ import annotations

import decimal
import itertools
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from monitor.config import CostConfig
from monitor.cost.pricing import Price, PriceTable, charged_split, convert, request_cost
from monitor.ingest.events import RequestEvent
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

log = logging.getLogger(__name__)

PRICED_SCHEMAS = frozenset({"api_usage"})
DEDUP_WINDOW_S = 86_400.0
DEDUP_MAX_IDS = 200_000
PRICE_CACHE_MODELS = 10_000  # a bound, whatever model names the logs carry
ZERO = Decimal(0)
ONE = Decimal(1)
# Wide enough that no sum of ledger amounts is ever rounded.
EXACT = decimal.Context(prec=80, Emin=-999_999, Emax=999_999,
                        traps=[decimal.InvalidOperation, decimal.Overflow])


class LedgerEntry(NamedTuple):
    """One charged request, as budgets see it (a tuple: one is built per request)."""

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
    # Cache-hit tokens by (source, model, user, id of the price row, discount factor), with
    # that row: each group is priced once, at the end of the batch (the row holds the id).
    hits: dict[tuple[str, str, str, int, Decimal], tuple[Price, int]] = field(
        default_factory=dict)
    duplicates: int = 0


class LocalDays:
    """The calendar day (in one time zone) of an epoch time, cached by day boundaries."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.start = self.end = 0.0  # the cached day: [start, end) is `day`
        self.day = ""

    def __call__(self, t: float) -> str:
        return self.bounds(t)[2]

    def bounds(self, t: float) -> tuple[float, float, str]:
        """(start, end, ISO date) of the local day holding `t`."""
        if not self.start <= t < self.end:
            local = datetime.fromtimestamp(t, self.zone)
            midnight = datetime(local.year, local.month, local.day, tzinfo=self.zone)
            following = midnight.date() + timedelta(days=1)
            self.start = midnight.timestamp()
            self.end = datetime(following.year, following.month, following.day,
                                tzinfo=self.zone).timestamp()
            self.day = midnight.date().isoformat()
        return self.start, self.end, self.day


class Ledger:
    """Prices the requests of priced sources and records them with each checkpoint."""

    def __init__(self, *, state: StateStore, prices: PriceTable, config: CostConfig,
                 store: MetricStore, user_label: bool = False) -> None:
        self.state = state
        self.prices = prices
        self.config = config
        self.user_label = user_label
        self._cost = store.register(fam.COST)
        self._saved = store.register(fam.COST_CACHE_SAVINGS)
        self._unpriced = store.register(fam.COST_UNPRICED_REQUESTS)
        self._days = LocalDays(config.timezone)
        self._warned: set[str] = set()
        self._price_cache: dict[str, tuple[Price | None, float, float]] = {}
        self._seen: dict[str, dict[str, float]] = {}  # source -> request id -> event time
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
        self._price_cache.clear()

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
        """The dedup window comes back from the ledger's own rows (each keeps its request
        id): those of the last DEDUP_WINDOW_S before the newest request."""
        connection = self.state.connection
        (newest,) = connection.execute("SELECT MAX(t) FROM ledger").fetchone()
        if newest is None:
            return
        rows = connection.execute(
            "SELECT source, request_id, t FROM ledger WHERE t >= ? AND request_id IS NOT NULL "
            "ORDER BY t", (newest - DEDUP_WINDOW_S,))
        for source, request_id, t in rows:
            self._remember(source, request_id, t)
        for source, seen in self._seen.items():
            if len(seen) > DEDUP_MAX_IDS:
                self._seen[source] = _newest(seen, DEDUP_MAX_IDS)

    def _remember(self, source: str, request_id: str, t: float) -> None:
        seen = self._seen.get(source)
        if seen is None:
            seen = self._seen[source] = {}
        seen[request_id] = t

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
        spent: dict[tuple[str, str, str], Decimal] = {}
        for (_, source, model, user), totals in batch.daily.items():
            if totals.requests > totals.unpriced:
                key = (source, model, user if self.user_label else "")
                spent[key] = EXACT.add(spent.get(key, ZERO), totals.amount)
        for family, amounts in ((self._cost, spent), (self._saved, self._savings(batch))):
            for (source, model, user), amount in amounts.items():
                extra = (("user", user),) if user else ()
                family.inc(family.key((source, model, currency), extra), float(amount))
        if batch.duplicates:
            log.info("ledger: %d duplicate request id(s) not charged again", batch.duplicates)
        return batch

    def _add(self, batch: LedgerBatch, source: str, model: str, event: RequestEvent,
             currency: str) -> None:
        t = event.timestamp
        try:
            amount = self._amount(model, event, t, currency)
        except (ArithmeticError, ValueError) as exc:  # one odd request, never the checkpoint
            self._warn(model, f"cannot price a request of model {model!r}: {exc}")
            amount = None
        hit = event.cache_hit_tokens or 0
        miss = event.cache_miss_tokens or 0
        input_tokens = event.input_tokens if event.input_tokens is not None else hit + miss
        output = event.output_tokens or 0
        user = event.user or ""
        reported_text = event.reported_cost
        reported = None if reported_text is None else _reported(reported_text)
        # Rows keep the exact amount as Decimal writes it ("0.002201531280"); roll-ups, read by
        # people, get the normalised text.
        batch.rows.append((
            t, source, event.request_id, model, user, input_tokens, hit, miss,
            output, event.reasoning_tokens or 0, currency,
            None if amount is None else str(amount),
            None if reported is None else reported_text))
        days = self._days
        day = days.day if days.start <= t < days.end else days(t)
        key = (day, source, model, user)
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
        batch.entries.append(LedgerEntry(t, source, model, user, amount))
        saved_hits = charged_split(event.input_tokens, event.cache_hit_tokens,
                                   event.cache_miss_tokens)[0]
        price = self._price_cache[model][0]  # `_amount` priced it: its row is cached
        if saved_hits and price is not None:
            factor = price.factor_at(t) if price.discounts else ONE
            hits_key = (source, model, user if self.user_label else "", id(price), factor)
            before = batch.hits.get(hits_key)
            batch.hits[hits_key] = (price, saved_hits + (0 if before is None else before[1]))

    def _price_span(self, model: str, t: float) -> tuple[Price | None, float, float]:
        """The table's row for `model` at t and how long it holds, cached per model so a
        model is looked up once per price change, not once per request."""
        if len(self._price_cache) >= PRICE_CACHE_MODELS:
            self._price_cache.clear()
        found = self._price_cache[model] = self.prices.price_span(
            model, t, currency=self.config.currency)
        return found

    def _amount(self, model: str, event: RequestEvent, t: float,
                currency: str) -> Decimal | None:
        cached = self._price_cache.get(model)
        if cached is None or not cached[1] <= t < cached[2]:
            cached = self._price_span(model, t)
        price = cached[0]
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
        if price.currency == currency:
            return amount
        converted = convert(amount, price.currency, currency, self.config.exchange_rates)
        if converted is None:
            self._warn(model, f"model {model!r} is priced in {price.currency} and "
                              f"cost.exchange_rates has no rate to {currency}; "
                              "its requests are counted as unpriced")
        return converted

    def _savings(self, batch: LedgerBatch) -> dict[tuple[str, str, str], Decimal]:
        """What the batch's cache hits saved, by (source, model, user), in cost.currency."""
        saved: dict[tuple[str, str, str], Decimal] = {}
        for (source, model, user, _, factor), (price, hit) in batch.hits.items():
            amount = convert(price.cache_saving(hit, factor), price.currency,
                             self.config.currency, self.config.exchange_rates)
            if amount is not None and amount > 0:
                key = (source, model, user)
                saved[key] = EXACT.add(saved.get(key, ZERO), amount)
        return saved

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

    def committed(self, batch: LedgerBatch) -> None:
        """The batch's transaction succeeded."""
        for source, ids in batch.new_ids.items():
            seen = self._seen.get(source)
            if seen is None:
                seen = self._seen[source] = {}
            seen.update(ids)
            if len(seen) > 2 * DEDUP_MAX_IDS:  # trimmed in bulk, not one id at a time
                self._seen[source] = _newest(seen, DEDUP_MAX_IDS)
        if batch.entries:
            for listener in self.listeners:
                try:
                    listener(batch.entries)
                except Exception:  # a budget defect must never fail ingestion
                    log.exception("cost listener failed")

    # -- housekeeping ---------------------------------------------------------------------------

    def prune(self, now: float) -> tuple[int, int]:
        """Drop ledger rows past retention, and forget request ids past the dedup window;
        (rows, ids) removed."""
        with self.state.transaction() as cursor:
            rows = cursor.execute("DELETE FROM ledger WHERE t < ?",
                                  (now - self.config.ledger_retention,)).rowcount
        ids = 0
        for source, seen in self._seen.items():
            horizon = max(seen.values(), default=0.0) - DEDUP_WINDOW_S
            kept = {rid: t for rid, t in seen.items() if t >= horizon}
            if len(kept) > DEDUP_MAX_IDS:
                kept = _newest(kept, DEDUP_MAX_IDS)
            ids += len(seen) - len(kept)
            self._seen[source] = kept
        return rows, ids


def _newest(seen: dict[str, float], keep: int) -> dict[str, float]:
    """The `keep` most recently added ids (insertion order)."""
    return dict(itertools.islice(seen.items(), len(seen) - keep, None))


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
