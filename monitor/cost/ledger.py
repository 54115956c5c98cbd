"""The cost ledger: one row per request of a priced source, exactly once.

The requests of a priced source (schema `api_usage`) wait in their pipeline beside its metric
batch; the checkpoint puts them in the ledger's journal (monitor/cost/journal.py) in the same
transaction as the offsets that read them. `convert` takes the oldest journal rows, prices
their requests, and writes the ledger rows, their daily roll-ups, the cost counters and the
journal rows' deletion in one transaction: a request is charged if and only if its line is
committed as read, once, whichever process stops when. `convert` runs in the ledger writer
(monitor/cost/feed.py), a process of its own in the daemon, so pricing and SQLite's inserts
never hold up ingestion.

Amounts are `Decimal`, never a float; a row stores its amount as integer units and decimal
places (monitor/cost/ledger_rows.py). A request whose model has no price at
its time, or whose price is in a currency with no exchange rate, is recorded with no amount,
counted in `cost_unpriced_requests_total{model}`, and warned about once per model.

Beside the spend (`cost_total`), `cost_cache_savings_total` counts what the requests' prompt
cache hits saved: those input tokens at the cache-miss price minus at the cache-hit price,
with the same discount and currency conversion. With `metrics.user_label` both counters
carry the request's `user` (when the log names one), as the request families do. The ledger
keeps these families in a store of its own and writes their rows; each conversion reports
their new totals, which the daemon's store takes over.

Duplicates: a request id already charged in the same source within DEDUP_WINDOW_S (by event
time; at least the last DEDUP_MAX_IDS ids per source, at most twice that between trims) is not
charged again. The window is read back from the ledger rows at start-up, so a restart does not
forget it (as long as cost.ledger_retention is longer than the window).

Roll-ups (`cost_daily`) sum each (day in cost.timezone, source, model, user) and are kept
forever; ledger rows older than `cost.ledger_retention` are pruned.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import msgspec

from monitor.config import CostConfig
from monitor.cost import journal, ledger_rows, rollups
from monitor.cost.charges import Charge, DailyTotals, LedgerBatch, Scale, Spend
from monitor.cost.ledger_rows import INT64_MAX, stored_units
from monitor.cost.money import EXACT, ZERO, reported_amount
from monitor.cost.periods import LocalDays
from monitor.cost.pricing import (
    TOKENS_PER_PRICE_UNIT,
    Price,
    PriceTable,
    charged_split,
    convert,
)
from monitor.ingest.events import RequestEvent
from monitor.metrics import families as fam
from monitor.metrics.persistence import restore_counters, write_counter_rows
from monitor.metrics.store import CounterSeries, LabelKey, MetricStore
from monitor.storage import StateStore

log = logging.getLogger(__name__)

PRICED_SCHEMAS = frozenset({"api_usage"})
DEDUP_WINDOW_S = 86_400.0
DEDUP_MAX_IDS = 200_000
PRICE_CACHE_MODELS = 10_000  # a bound, whatever model names the logs carry
JOURNAL_ROWS_PER_COMMIT = 1  # journal rows (each a checkpoint's requests) per transaction
LEDGER_FAMILIES = (fam.COST, fam.COST_CACHE_SAVINGS, fam.COST_UNPRICED_REQUESTS)


class LedgerEntry(NamedTuple):
    """Charged spend, as budgets see it: the requests of one (source, model, user, minute,
    local day), `t` the earliest of them. Budgets need no finer grain: their minutes, days and
    periods all start on whole minutes (periods and days at local midnights)."""

    t: float
    source: str
    model: str
    user: str
    amount: Decimal  # in cost.currency


class LedgerUpdate(NamedTuple):
    """What one conversion committed, for the daemon: the new totals of the cost series it
    changed, and the spend for the budgets."""

    series: list[tuple[str, LabelKey, float]]
    entries: list[LedgerEntry]


class JournalRaced(Exception):
    """The journal rows being converted were gone at commit: another writer converted them."""


class Ledger:
    """Turns the journal's requests into ledger rows, roll-ups and cost counters."""

    def __init__(self, *, state: StateStore, prices: PriceTable, config: CostConfig,
                 namespace: str = "inferwatch", series_limit: int = 10_000,
                 user_label: bool = False) -> None:
        self.state = state
        self.prices = prices
        self.config = config
        self.user_label = user_label
        # Its own store: the ledger alone writes these families' rows (see LedgerUpdate).
        store = MetricStore(namespace, series_limit)
        self._cost = store.register(fam.COST)
        self._saved = store.register(fam.COST_CACHE_SAVINGS)
        self._unpriced = store.register(fam.COST_UNPRICED_REQUESTS)
        self._days = LocalDays(config.timezone)
        self._warned: set[str] = set()
        # model -> the scale its requests are charged at (None: unpriced) and the [start, end)
        # during which that holds: a model's price is looked up once per change, not per request
        self._scale_cache: dict[str, tuple[Scale | None, float, float]] = {}
        # (id of a price row, discount factor) -> its scale, None when it has no exchange rate
        self._scales: dict[tuple[int, Decimal], Scale | None] = {}
        self._seen: dict[str, dict[str, float]] = {}  # source -> request id -> event time
        # (source, currency) -> (model, user) -> the id of their ledger_keys row
        self._keys: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        self._key_names: dict[int, tuple[str, str, str]] = {}  # id -> (source, model, user)
        self._next_key_id = 1
        self.store = store
        self.owned_families = frozenset(store.full_name(spec) for spec in LEDGER_FAMILIES)
        restore_counters(state, store, self.owned_families)
        self._load_keys()
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
        self._scale_cache.clear()
        self._scales.clear()

    def _check_timezone(self) -> None:
        rollups.rebuild_if_zone_changed(self.state, self._days, self.config.timezone)

    def _load_keys(self) -> None:
        """The ledger_keys rows (again, after a failed commit may have left ids that were never
        written)."""
        self._keys = {}
        self._key_names = {}
        self._next_key_id = 1
        for key_id, source, model, user, currency in self.state.connection.execute(
                "SELECT id, source, model, user, currency FROM ledger_keys"):
            self._keys.setdefault((source, currency), {})[(model, user)] = key_id
            self._key_names[key_id] = (source, model, user)
            self._next_key_id = max(self._next_key_id, key_id + 1)

    def _new_key(self, batch: LedgerBatch, source: str, model: str, user: str) -> int:
        """An id for a (source, model, user) the ledger has not charged in cost.currency
        before; written with the batch."""
        key_id = self._next_key_id
        self._next_key_id += 1
        currency = self.config.currency
        self._keys.setdefault((source, currency), {})[(model, user)] = key_id
        self._key_names[key_id] = (source, model, user)
        batch.new_keys.append((key_id, source, model, user, currency))
        return key_id

    def _load_recent_ids(self) -> None:
        """The dedup window comes back from the ledger's own rows (each keeps its request
        id): those of the last DEDUP_WINDOW_S before the newest request, in the order they
        were charged."""
        connection = self.state.connection
        newest = ledger_rows.newest_time(connection)
        if newest is None:
            return
        since = newest - DEDUP_WINDOW_S
        ids = ledger_rows.id_range(connection, since)
        if ids is None:
            return
        rows = connection.execute(
            "SELECT source, request_id, t FROM ledger WHERE id BETWEEN ? AND ? AND t >= ? "
            "AND request_id IS NOT NULL ORDER BY id", (*ids, since))
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
        spend to the ledger's store; nothing is written yet."""
        batch = LedgerBatch()
        for source, model_override, events in pending:
            self._price_source(batch, source, model_override, events)
        self._settle(batch)
        if batch.duplicates:
            log.info("ledger: %d duplicate request id(s) not charged again", batch.duplicates)
        return batch

    def _price_source(self, batch: LedgerBatch, source: str,
                      model_override: str | None, events: Sequence[RequestEvent]) -> None:
        """The hot loop: a row per request, its amount as integer units of its `Scale`, and
        the units summed per `Charge` key; `_settle` turns the sums into Decimal once."""
        seen = self._seen.get(source)
        if seen is None:
            seen = self._seen[source] = {}
        rows, charges = batch.rows, batch.charges
        scale_cache = self._scale_cache
        keys = self._keys.setdefault((source, self.config.currency), {})
        days = self._days
        for event in events:
            request_id = event.request_id
            t = event.timestamp
            if request_id:
                # Into the window at once (a failed commit reads it back from the ledger).
                if request_id in seen:
                    batch.duplicates += 1
                    continue
                seen[request_id] = t
            model = model_override or event.model
            hit = event.cache_hit_tokens
            miss = event.cache_miss_tokens
            inputs = event.input_tokens
            output = event.output_tokens or 0
            user = event.user or ""
            day = days.day if days.start <= t < days.end else days(t)
            cached = scale_cache.get(model)
            scale = cached[0] if cached is not None and cached[1] <= t < cached[2] else \
                self._scale_at(model, t)
            key_id = keys.get((model, user))
            if key_id is None:
                key_id = self._new_key(batch, source, model, user)
            if scale is None or hit is None or miss is None or event.reported_cost is not None \
                    or (hit | miss | output) < 0:
                self._add_slowly(batch, key_id, event, scale=scale, day=day)
                continue
            # Both split counts known (DeepSeek's usage): they are what is charged.
            n = hit * scale.hit + miss * scale.miss + output * scale.output
            amount_units = n * scale.multiplier
            if inputs is None:
                inputs = hit + miss
            rows.append((t, key_id, request_id, inputs, hit, miss, output,
                         event.reasoning_tokens or 0,
                         amount_units if amount_units <= INT64_MAX else str(amount_units),
                         scale.places, None))
            key = (day, -int(-t // 60), key_id, scale)
            charge = charges.get(key)
            if charge is None:
                charge = charges[key] = Charge(t, scale)
            elif t < charge.t:
                charge.t = t
            # `Charge.add`, inlined: a call per request costs the writer a tenth of its time.
            charge.units += n
            charge.requests += 1
            charge.hit += hit
            charge.miss += miss
            charge.inputs += inputs
            charge.output += output

    def _add_slowly(self, batch: LedgerBatch, key_id: int, event: RequestEvent, *,
                    scale: Scale | None, day: str) -> None:
        """Every other request: a split to infer, a reported cost, no price, or a count the
        decoder let through that pricing refuses."""
        source, model, user = self._key_names[key_id]
        t = event.timestamp
        hit = event.cache_hit_tokens or 0
        miss = event.cache_miss_tokens or 0
        inputs = event.input_tokens if event.input_tokens is not None else hit + miss
        output = event.output_tokens or 0
        units = None
        charged_hit = 0
        if scale is not None:
            charged_hit, charged_miss = charged_split(event.input_tokens, event.cache_hit_tokens,
                                                      event.cache_miss_tokens)
            if min(charged_hit, charged_miss, output) < 0:
                self._warn(model, f"cannot price a request of model {model!r}: token counts "
                                  f"must not be negative: {(charged_hit, charged_miss, output)}")
            else:
                units = (charged_hit * scale.hit + charged_miss * scale.miss
                         + output * scale.output)
        reported_text = event.reported_cost
        reported = None if reported_text is None else reported_amount(reported_text)
        batch.rows.append((
            t, key_id, event.request_id, inputs, hit, miss, output, event.reasoning_tokens or 0,
            None if units is None or scale is None else stored_units(units * scale.multiplier),
            None if units is None or scale is None else scale.places,
            None if reported is None else reported_text))
        totals = batch.daily.get((day, source, model, user))
        if totals is None:
            totals = batch.daily[(day, source, model, user)] = DailyTotals()
        if reported is not None:
            totals.reported = EXACT.add(totals.reported, reported)
        if units is None or scale is None:
            totals.requests += 1
            totals.unpriced += 1
            totals.cache_hit_tokens += hit
            totals.cache_miss_tokens += miss
            totals.input_tokens += inputs
            totals.output_tokens += output
            self._unpriced.inc(self._unpriced.key((model,)))
            return
        key = (day, -int(-t // 60), key_id, scale)
        charge = batch.charges.get(key)
        if charge is None:
            charge = batch.charges[key] = Charge(t, scale)
        charge.add(t, units, hit=hit, miss=miss, inputs=inputs, output=output)
        charge.saved_hits += charged_hit - hit  # the split charged differs from the raw one

    def _settle(self, batch: LedgerBatch) -> None:
        """The charges' amounts (one exact Decimal each) into the roll-ups, the budgets'
        spend, and the cost and savings counters."""
        spent: dict[tuple[str, str, str], Decimal] = {}
        hits: dict[tuple[str, str, str, int, Decimal], tuple[Price, int]] = {}
        key_names = self._key_names
        for (day, minute, key_id, _), charge in batch.charges.items():
            source, model, user = key_names[key_id]
            scale = charge.scale
            amount = scale.amount(charge.units)
            totals = batch.daily.get((day, source, model, user))
            if totals is None:
                totals = batch.daily[(day, source, model, user)] = DailyTotals()
            totals.requests += charge.requests
            totals.cache_hit_tokens += charge.hit
            totals.cache_miss_tokens += charge.miss
            totals.input_tokens += charge.inputs
            totals.output_tokens += charge.output
            totals.amount = EXACT.add(totals.amount, amount)
            spend = batch.spend.get((source, model, user, minute, day))
            if spend is None:
                batch.spend[(source, model, user, minute, day)] = Spend(charge.t, amount)
            else:  # another price row or factor within the same minute
                spend.t = min(spend.t, charge.t)
                spend.amount = EXACT.add(spend.amount, amount)
            label_user = user if self.user_label else ""
            key = (source, model, label_user)
            spent[key] = EXACT.add(spent.get(key, ZERO), amount)
            saved = charge.hit + charge.saved_hits
            if saved:
                hits_key = (source, model, label_user, id(scale.price), scale.factor)
                before = hits.get(hits_key)
                hits[hits_key] = (scale.price, saved + (0 if before is None else before[1]))
        batch.hits = hits
        currency = self.config.currency
        for family, amounts in ((self._cost, spent), (self._saved, self._savings(batch))):
            for (source, model, user), amount in amounts.items():
                extra = (("user", user),) if user else ()
                family.inc(family.key((source, model, currency), extra), float(amount))

    def _new_scale(self, price: Price, factor: Decimal, model: str) -> Scale | None:
        """The scale of `price` under `factor`, kept for the next requests; None (and a
        warning) when its currency has no exchange rate."""
        if len(self._scales) >= PRICE_CACHE_MODELS:
            self._scales.clear()
        multiplier = factor
        if price.currency != self.config.currency:
            rate = self.config.exchange_rates.get(price.currency)
            if rate is None:
                self._warn(model, f"model {model!r} is priced in {price.currency} and "
                                  f"cost.exchange_rates has no rate to "
                                  f"{self.config.currency}; its requests are counted as "
                                  "unpriced")
                self._scales[(id(price), factor)] = None
                return None
            multiplier = EXACT.multiply(multiplier, rate)
        exponent, hit, miss, output = price.scaled()
        sign, digits, multiplier_exponent = multiplier.as_tuple()
        assert isinstance(multiplier_exponent, int)  # finite by validation
        whole = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        places = TOKENS_PER_PRICE_UNIT - exponent - multiplier_exponent
        if places < 0:  # a whole amount: fold the zeros into the multiplier
            whole, places = whole * 10 ** -places, 0
        scale = self._scales[(id(price), factor)] = Scale(
            price, factor, hit, miss, output, whole, places)
        return scale

    def _warn_unpriced(self, model: str, t: float) -> None:
        self._warn(model, f"no price for model {model!r} at "
                          f"{datetime.fromtimestamp(t).astimezone().isoformat()}; its "
                          "requests are counted in cost_unpriced_requests_total, not "
                          "costed. Add it with cost.pricing_files")

    def _scale_at(self, model: str, t: float) -> Scale | None:
        """The scale `model`'s requests are charged at around t (None: unpriced, warned about
        once), kept for as long as both its price row and its discount factor hold."""
        if len(self._scale_cache) >= PRICE_CACHE_MODELS:
            self._scale_cache.clear()
        price, start, end = self.prices.price_span(model, t, currency=self.config.currency)
        if price is None:
            self._warn_unpriced(model, t)
            scale = None
        else:
            factor, factor_start, factor_end = price.factor_span(t)
            start, end = max(start, factor_start), min(end, factor_end)
            scale_key = (id(price), factor)
            scale = self._scales[scale_key] if scale_key in self._scales else \
                self._new_scale(price, factor, model)
        self._scale_cache[model] = (scale, start, end)
        return scale

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
            "INSERT INTO ledger_keys (id, source, model, user, currency) VALUES (?, ?, ?, ?, ?)",
            batch.new_keys)
        after = ledger_rows.last_id(cursor)
        cursor.executemany(
            "INSERT INTO ledger_rows (t, key_id, request_id, input_tokens, cache_hit_tokens, "
            "cache_miss_tokens, output_tokens, reasoning_tokens, amount_units, amount_places, "
            "reported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch.rows)
        ledger_rows.add_span(cursor, after)
        rollups.add(cursor, batch.daily, self.config.currency)

    def committed(self) -> None:
        """The batch's transaction succeeded (its request ids are in the window already)."""
        for source, seen in self._seen.items():
            if len(seen) > 2 * DEDUP_MAX_IDS:  # trimmed in bulk, not one id at a time
                self._seen[source] = _newest(seen, DEDUP_MAX_IDS)

    # -- the journal ------------------------------------------------------------------------------

    def convert(self) -> LedgerUpdate | None:
        """Price the oldest journal rows and commit their ledger rows, roll-ups and cost
        counters with the rows' deletion; None when the journal is empty. `sqlite3.Error` if
        the commit failed (nothing changed: the rows stay for the next try)."""
        while rows := journal.oldest(self.state.connection, JOURNAL_ROWS_PER_COMMIT):
            update = self._convert_rows(rows)
            if update is not None:
                return update
            # Another writer converted these rows first: the next oldest are ours to try.
        return None

    def _convert_rows(self, rows: Sequence[journal.JournalRow]) -> LedgerUpdate | None:
        """None when another writer converted `rows` first (this one has read the state file
        again)."""
        pending = []
        for row in rows:
            try:
                pending.append((row.source, row.model_override, journal.decode(row.events)))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # Only a damaged file does this; the row would block every row behind it.
                log.error("cost ledger: journal row %d of source %s is unreadable and is "
                          "dropped (%s)", row.id, row.source, exc)
        store = self.store
        store.begin_changes()
        try:
            batch = self.price(pending)
            changed = store.take_dirty()
            with self.state.transaction() as cursor:
                _delete_journal_rows(cursor, rows)
                write_counter_rows(cursor, changed)
                self.write(cursor, batch)
        except JournalRaced:
            store.undo_changes()
            log.error("cost ledger: another writer converted journal rows %d-%d; reading the "
                      "dedup window and cost counters again", rows[0].id, rows[-1].id)
            self.resync()
            return None
        except BaseException:
            store.undo_changes()
            self._reload_window()  # the batch's new keys and request ids were not written
            raise
        store.keep_changes()
        self.committed()
        series = [(family.full_name, key, value.value) for family, key, value in changed
                  if isinstance(value, CounterSeries)]
        entries = [LedgerEntry(spent.t, source, model, user, spent.amount)
                   for (source, model, user, _, _), spent in batch.spend.items()]
        return LedgerUpdate(series, entries)

    def totals(self) -> list[tuple[str, LabelKey, float]]:
        """Every cost series this ledger holds, as `LedgerUpdate.series`."""
        return [(family.full_name, key, series.value)
                for family in self.store.families() if family.full_name in self.owned_families
                for key, series in family.series.items() if isinstance(series, CounterSeries)]

    def resync(self) -> None:
        """Read the ledger keys, the dedup window and the cost counters from the state file
        again."""
        self._reload_window()
        for family in self.store.families():
            if family.full_name in self.owned_families:
                family.series.clear()
        restore_counters(self.state, self.store, self.owned_families)

    def _reload_window(self) -> None:
        """The ledger keys and the dedup window, as the state file has them."""
        self._load_keys()
        self._seen = {}
        self._load_recent_ids()

    # -- housekeeping ---------------------------------------------------------------------------

    def prune_and_log(self, now: float) -> None:
        rows, ids = self.prune(now)
        if rows:
            log.info("cost ledger: %d row(s) past cost.ledger_retention removed (daily "
                     "roll-ups kept)", rows)
        log.debug("cost ledger: %d request id(s) left the dedup window", ids)

    def prune(self, now: float) -> tuple[int, int]:
        """Drop ledger rows past retention, and forget request ids past the dedup window;
        (rows, ids) removed."""
        with self.state.transaction() as cursor:
            rows = ledger_rows.prune(cursor, now - self.config.ledger_retention)
        ids = 0
        for source, seen in self._seen.items():
            horizon = max(seen.values(), default=0.0) - DEDUP_WINDOW_S
            kept = {rid: t for rid, t in seen.items() if t >= horizon}
            if len(kept) > DEDUP_MAX_IDS:
                kept = _newest(kept, DEDUP_MAX_IDS)
            ids += len(seen) - len(kept)
            self._seen[source] = kept
        return rows, ids


def _delete_journal_rows(cursor: sqlite3.Cursor, rows: Sequence[journal.JournalRow]) -> None:
    """Delete the rows being converted, or raise JournalRaced if any is already gone."""
    deleted = cursor.execute("DELETE FROM ledger_journal WHERE id <= ?", (rows[-1].id,)).rowcount
    if deleted != len(rows):
        raise JournalRaced


def _newest(seen: dict[str, float], keep: int) -> dict[str, float]:
    """The `keep` most recently added ids (insertion order)."""
    return dict(itertools.islice(seen.items(), len(seen) - keep, None))
