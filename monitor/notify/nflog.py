"""The notification log: what each integration of each receiver was last told about each
group, and when. It decides, as Alertmanager's DedupStage does, whether a group's flush
becomes a notification; it lives in the state file so a restart does not page again.

An entry is written in the same transaction as the outbox row it allowed, so "notified" here
means "durably queued for delivery".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Set
from dataclasses import dataclass

import orjson

from monitor.storage import StateStore

RETENTION_S = 5 * 24 * 3600.0  # Alertmanager's default data retention


@dataclass(frozen=True)
class LogKey:
    group_key: str
    receiver: str
    integration: str
    index: int


@dataclass(frozen=True)
class LogEntry:
    firing: frozenset[str]  # fingerprints
    resolved: frozenset[str]
    sent_at: float


def needs_update(entry: LogEntry | None, firing: Set[str], resolved: Set[str], *,
                 send_resolved: bool, repeat_interval: float, now: float) -> bool:
    if entry is None:
        return bool(firing)  # nothing sent yet: only something firing is news
    if not firing <= entry.firing:
        return True  # a new firing alert
    if not firing:
        return bool(entry.firing)  # all resolved: news if we had said they were firing
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.sent_at <= now - repeat_interval


class NotificationLog:
    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.entries: dict[LogKey, LogEntry] = {}
        for row in state.connection.execute(
                "SELECT group_key, receiver, integration, idx, firing, resolved, sent_at "
                "FROM notification_log"):
            group_key, receiver, integration, index, firing, resolved, sent_at = row
            self.entries[LogKey(group_key, receiver, integration, index)] = LogEntry(
                frozenset(orjson.loads(firing)), frozenset(orjson.loads(resolved)), sent_at)

    def get(self, key: LogKey) -> LogEntry | None:
        return self.entries.get(key)

    def record(self, cursor: sqlite3.Cursor, key: LogKey, entry: LogEntry) -> None:
        """Write inside the caller's transaction; call `remember` once it has committed."""
        cursor.execute(
            "INSERT INTO notification_log (group_key, receiver, integration, idx, firing, "
            "resolved, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (group_key, receiver, integration, idx) DO UPDATE SET "
            "firing = excluded.firing, resolved = excluded.resolved, "
            "sent_at = excluded.sent_at",
            (key.group_key, key.receiver, key.integration, key.index,
             orjson.dumps(sorted(entry.firing)).decode(),
             orjson.dumps(sorted(entry.resolved)).decode(), entry.sent_at))

    def remember(self, key: LogKey, entry: LogEntry) -> None:
        self.entries[key] = entry

    def collect_garbage(self, now: float) -> int:
        old = [key for key, entry in self.entries.items() if entry.sent_at < now - RETENTION_S]
        if old:
            with self.state.transaction() as cursor:
                cursor.execute("DELETE FROM notification_log WHERE sent_at < ?",
                               (now - RETENTION_S,))
            for key in old:
                del self.entries[key]
        return len(old)
