"""The ledger's write-ahead journal: priced requests, committed with the offsets that read them.

A checkpoint appends one row per priced source: the source, its model override, and its
pending requests as one msgpack array. The row is part of the checkpoint's transaction, so a
request is in the journal if and only if its line is committed as read. The ledger writer
(`Ledger.convert`) later turns the oldest rows into ledger rows, roll-ups and cost counters
and deletes them in one transaction: a request is charged exactly once, whichever process
dies when.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from monitor.ingest.events import RequestEvent

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[RequestEvent])

Pending = tuple[str, str | None, Sequence[RequestEvent]]  # source, model override, requests


class JournalRow(NamedTuple):
    id: int
    source: str
    model_override: str | None
    events: bytes


def append(cursor: sqlite3.Cursor, pending: Sequence[Pending]) -> int:
    """Inside the checkpoint's transaction: one row per source with requests; the number of
    requests journaled."""
    rows = [(source, override, _ENCODER.encode(events))
            for source, override, events in pending if events]
    cursor.executemany(
        "INSERT INTO ledger_journal (source, model_override, events) VALUES (?, ?, ?)", rows)
    return sum(len(events) for _, _, events in pending)


def oldest(connection: sqlite3.Connection, limit: int) -> list[JournalRow]:
    return [JournalRow(*row) for row in connection.execute(
        "SELECT id, source, model_override, events FROM ledger_journal ORDER BY id LIMIT ?",
        (limit,))]


def decode(blob: bytes) -> list[RequestEvent]:
    """The requests of one row; `msgspec.ValidationError`/`DecodeError` if it is damaged."""
    return _DECODER.decode(blob)


def length(connection: sqlite3.Connection) -> int:
    (rows,) = connection.execute("SELECT COUNT(*) FROM ledger_journal").fetchone()
    return int(rows)
