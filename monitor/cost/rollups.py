"""The ledger's daily roll-ups (`cost_daily`): one row per (day in cost.timezone, source,
model, user, currency), kept forever, while ledger rows are pruned after cost.ledger_retention.

Only the ledger writer writes them: `add` in each conversion's transaction, and
`rebuild_if_zone_changed` at its start.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from decimal import Decimal

from monitor.cost.charges import DailyTotals, DayKey
from monitor.cost.ledger_rows import amount_of
from monitor.cost.money import ZERO, money_text
from monitor.cost.periods import LocalDays
from monitor.storage import StateStore

log = logging.getLogger(__name__)

_UPSERT = ("INSERT OR REPLACE INTO cost_daily (day, source, model, user, currency, requests, "
           "unpriced, amount, reported, cache_hit_tokens, cache_miss_tokens, input_tokens, "
           "output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def add(cursor: sqlite3.Cursor, daily: Mapping[DayKey, DailyTotals], currency: str) -> None:
    """Add a conversion's totals to their days' rows (inside its transaction)."""
    for (day, source, model, user), delta in daily.items():
        row = cursor.execute(
            "SELECT requests, unpriced, amount, reported, cache_hit_tokens, "
            "cache_miss_tokens, input_tokens, output_tokens FROM cost_daily WHERE day = ? "
            "AND source = ? AND model = ? AND user = ? AND currency = ?",
            (day, source, model, user, currency)).fetchone()
        totals = DailyTotals()
        if row is not None:
            totals = DailyTotals(row[0], row[1], Decimal(row[2]), Decimal(row[3]), *row[4:])
        totals.add(delta)
        cursor.execute(_UPSERT, _row((day, source, model, user, currency), totals))


def rebuild_if_zone_changed(state: StateStore, days: LocalDays, timezone: str) -> None:
    """Days are days of cost.timezone: when it changed since the last run, rebuild the
    roll-ups of the days the ledger still holds (older days keep theirs)."""
    connection = state.connection
    row = connection.execute("SELECT value FROM cost_meta WHERE key = 'timezone'").fetchone()
    if row is not None and row[0] == timezone:
        return
    daily: dict[tuple[str, str, str, str, str], DailyTotals] = {}
    first_day = None
    if row is not None:
        for t, source, model, user, currency, units, places, reported, hit, miss, inputs, \
                output in connection.execute(
                    "SELECT t, source, model, user, currency, amount_units, amount_places, "
                    "reported, cache_hit_tokens, cache_miss_tokens, input_tokens, "
                    "output_tokens FROM ledger"):
            day = days(t)
            first_day = day if first_day is None else min(first_day, day)
            amount = amount_of(units, places)
            totals = daily.setdefault((day, source, model, user, currency), DailyTotals())
            totals.add(DailyTotals(
                1, int(amount is None), ZERO if amount is None else amount,
                ZERO if reported is None else Decimal(reported), hit, miss, inputs, output))
        log.warning("cost.timezone changed from %s to %s: daily roll-ups rebuilt from %s on "
                    "(earlier days keep their old boundaries)", row[0], timezone,
                    first_day or "(no ledger rows)")
    with state.transaction() as cursor:
        if first_day is not None:
            cursor.execute("DELETE FROM cost_daily WHERE day >= ?", (first_day,))
            cursor.executemany(_UPSERT, [_row(key, totals) for key, totals in daily.items()])
        cursor.execute("INSERT OR REPLACE INTO cost_meta (key, value) VALUES ('timezone', ?)",
                       (timezone,))


def _row(key: tuple[str, str, str, str, str], totals: DailyTotals) -> tuple[object, ...]:
    """The cost_daily row of (day, source, model, user, currency) and its totals."""
    return (*key, totals.requests, totals.unpriced,
            money_text(totals.amount), money_text(totals.reported), totals.cache_hit_tokens,
            totals.cache_miss_tokens, totals.input_tokens, totals.output_tokens)
