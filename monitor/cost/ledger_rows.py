"""Reading the ledger's rows (schema v9): by time through their spans, and their exact amounts.

A ledger row (`ledger_rows`, joined with its key in the view `ledger`) holds its amount as
`amount_units` / 10**`amount_places` in its currency. Rows have no index on their time: each
conversion records the id range it inserted and the earliest and latest time in it
(`ledger_spans`), so the rows of a time range lie within the ids of the spans that overlap
it. Logs are read roughly in time order, so those ids are close to the rows wanted; a query
adds its own condition on `t` for the rest.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import NamedTuple

INT64_MAX = 2**63 - 1


class IdRange(NamedTuple):
    """`id BETWEEN first AND last` holds every row of the time range asked for."""

    first: int
    last: int


def id_range(connection: sqlite3.Connection, since: float | None = None,
             until: float | None = None) -> IdRange | None:
    """The ids of the rows with `since <= t < until` (either bound open when None); None when
    no span overlaps the range (no such row)."""
    first, last = connection.execute(
        "SELECT MIN(first_id), MAX(last_id) FROM ledger_spans WHERE t_max >= ? AND t_min < ?",
        (float("-inf") if since is None else since,
         float("inf") if until is None else until)).fetchone()
    return None if first is None else IdRange(first, last)


def add_span(cursor: sqlite3.Cursor, after_id: int) -> None:
    """Record the span of the rows inserted with ids above `after_id` (inside the transaction
    that inserted them)."""
    cursor.execute(
        "INSERT INTO ledger_spans (first_id, last_id, t_min, t_max) SELECT MIN(id), MAX(id), "
        "MIN(t), MAX(t) FROM ledger_rows WHERE id > ? HAVING COUNT(*) > 0", (after_id,))


def last_id(cursor: sqlite3.Cursor | sqlite3.Connection) -> int:
    (found,) = cursor.execute("SELECT COALESCE(MAX(id), 0) FROM ledger_rows").fetchone()
    return int(found)


def newest_time(connection: sqlite3.Connection) -> float | None:
    """The latest time any row may have (None: no rows)."""
    (newest,) = connection.execute("SELECT MAX(t_max) FROM ledger_spans").fetchone()
    return None if newest is None else float(newest)


def oldest_time(connection: sqlite3.Connection) -> float | None:
    """No row is older (None: no rows)."""
    (oldest,) = connection.execute("SELECT MIN(t_min) FROM ledger_spans").fetchone()
    return None if oldest is None else float(oldest)


def amount_of(units: int | str | None, places: int | None) -> Decimal | None:
    """A row's exact amount; None for an unpriced row."""
    if units is None or places is None:
        return None
    return Decimal(f"{units}e-{places}")  # the constructor never rounds; scaleb would


def stored_units(units: int) -> int | str:
    """`amount_units` as stored: SQLite integers are 64-bit, so larger ones go as their digits
    (the column has no type: SQLite keeps the text as it is)."""
    return units if units <= INT64_MAX else str(units)


def prune(cursor: sqlite3.Cursor, before: float) -> int:
    """Delete the rows older than `before`; the number deleted."""
    deleted = 0
    spans = cursor.execute("SELECT first_id, last_id FROM ledger_spans WHERE t_min < ?",
                           (before,)).fetchall()
    for first, last in spans:
        deleted += cursor.execute(
            "DELETE FROM ledger_rows WHERE id BETWEEN ? AND ? AND t < ?",
            (first, last, before)).rowcount
    cursor.execute("DELETE FROM ledger_spans WHERE t_max < ?", (before,))
    # What is left of a span that held older rows starts at `before` at the earliest.
    cursor.execute("UPDATE ledger_spans SET t_min = ? WHERE t_min < ?", (before, before))
    return deleted
