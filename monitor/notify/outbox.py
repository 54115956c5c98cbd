"""The durable outbox: every notification is a row in the state file before it is sent.

Each integration of each receiver (a channel) has its own queue, delivered in order; queues
run concurrently, so a slow robot never holds up email. A row leaves the outbox when the
receiving end acknowledged it (counted in `notifications_total`) or failed permanently
(logged as an error, counted in `notifications_failed_total{reason}`). A transient failure
keeps the row at the head of its queue and retries it with exponential backoff and jitter
(1 s doubling to 5 min, or the provider's Retry-After), for at most a day.

A restart resumes the outbox. The counters of an outcome are written in the transaction that
records it, so a kill never keeps the outcome and loses its count. A message is deleted only
after the provider acknowledged it, so one whose acknowledgement was lost in a crash is sent
again — with the same DingTalk msgUuid / email Message-Id, which lets the provider drop the
duplicate.

Rate limits are per `rate_key` (one robot shared by several receivers shares its limit) and
counted from a log of sends in the state file, so a restart cannot burst past them. When a
rate-limited queue backs up, its waiting messages are merged into one (the channel says how).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import orjson

from monitor.clock import Clock
from monitor.metrics import families as fam
from monitor.metrics.persistence import write_counter_rows
from monitor.metrics.store import LabelKey, MetricFamily, MetricStore, Series
from monitor.notify.channels.base import Channel, Delivery, Message
from monitor.notify.wakeup import wait_for_news
from monitor.storage import StateStore

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
MAX_AGE_S = 24 * 3600.0
DELIVERY_TIMEOUT_S = 60.0
IDLE_WAKE_S = 30.0


Count = tuple[MetricFamily, LabelKey, float]  # a counter, its labels, how much to add


@dataclass(frozen=True, order=True)
class ChannelId:
    receiver: str
    integration: str
    index: int


@dataclass
class _Row:
    id: int
    channel: ChannelId
    message: Message
    created_at: float
    attempts: int
    next_attempt: float


def backoff(attempts: int, rng: random.Random) -> float:
    """Seconds before retry number `attempts` (1 for the first retry)."""
    base: float = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** min(attempts - 1, 20))
    return base * rng.uniform(0.8, 1.2)


class Outbox:
    def __init__(self, state: StateStore, clock: Clock, metrics: MetricStore,
                 channels: Callable[[], Mapping[ChannelId, Channel]],
                 rng: random.Random | None = None) -> None:
        self.state = state
        self.clock = clock
        self.channels = channels
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._metrics = metrics
        self._sent = metrics.register(fam.NOTIFICATIONS)
        self._failed = metrics.register(fam.NOTIFICATIONS_FAILED)
        self._queue_length = metrics.register(fam.NOTIFICATION_QUEUE_LENGTH)
        self._wake = asyncio.Event()
        self._update_queue_length()

    # -- writing -------------------------------------------------------------------------------

    @staticmethod
    def add(cursor: object, channel: ChannelId, message: Message, now: float) -> None:
        """Queue `message` inside the caller's transaction (a sqlite3 cursor)."""
        cursor.execute(  # type: ignore[attr-defined]
            "INSERT INTO outbox (receiver, integration, idx, message, created_at, "
            "next_attempt) VALUES (?, ?, ?, ?, ?, ?)",
            (channel.receiver, channel.integration, channel.index,
             orjson.dumps(message).decode(), now, now))

    def wake(self) -> None:
        self._update_queue_length()
        self._wake.set()

    def queue_length(self) -> int:
        row = self.state.connection.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(row[0])

    def _update_queue_length(self) -> None:
        self._queue_length.set(self._queue_length.key(()), float(self.queue_length()))

    # -- sending -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                wait = await self.send_due()
            except Exception:  # a defect must cost one pass, never the delivery loop
                log.exception("outbox: unexpected error; retrying in %.0f s", IDLE_WAKE_S)
                wait = IDLE_WAKE_S
            await wait_for_news(self._wake, stop, max(0.01, wait))

    async def send_due(self) -> float:
        """Deliver what is due in every queue; the seconds until something is due again."""
        queues: dict[ChannelId, list[_Row]] = {}
        for row in self._rows():
            queues.setdefault(row.channel, []).append(row)
        channels = self.channels()
        waits = await asyncio.gather(*(self._send_queue(cid, rows, channels.get(cid))
                                       for cid, rows in queues.items()))
        self._update_queue_length()
        return min(waits, default=IDLE_WAKE_S)

    def _rows(self) -> list[_Row]:
        rows = []
        for rid, receiver, integration, index, message, created, attempts, next_at in \
                self.state.connection.execute(
                    "SELECT id, receiver, integration, idx, message, created_at, attempts, "
                    "next_attempt FROM outbox ORDER BY id"):
            rows.append(_Row(rid, ChannelId(receiver, integration, index),
                             orjson.loads(message), created, attempts, next_at))
        return rows

    async def _send_queue(self, cid: ChannelId, rows: list[_Row],
                          channel: Channel | None) -> float:
        if channel is None or channel.integration != cid.integration:
            log.warning("outbox: dropping %d notification(s) for %s/%s[%d]: the receiver "
                        "or integration is no longer configured", len(rows), cid.receiver,
                        cid.integration, cid.index)
            self._delete([r.id for r in rows], self._failure(cid, "receiver_removed", len(rows)))
            return IDLE_WAKE_S
        while rows:
            now = self.clock.time()
            head = rows[0]
            if head.next_attempt > now:
                return head.next_attempt - now
            free_in = self._rate_wait(channel, now)
            if free_in > 0:
                if len(rows) > 1:
                    rows = self._merge(channel, rows)
                return free_in
            delivery = await self._deliver(channel, head.message)
            if delivery.ok:
                self._acknowledge(channel, head, now)
                rows.pop(0)
                continue
            failed = self._failure(cid, delivery.reason or "unknown")
            if not delivery.retry:
                log.error("notification to %s/%s[%d] failed permanently, dropped: %s %s",
                          cid.receiver, cid.integration, cid.index, delivery.reason,
                          delivery.detail)
                self._delete([head.id], failed)
                rows.pop(0)
                continue
            if now - head.created_at > MAX_AGE_S:
                log.error("notification to %s/%s[%d] still failing after %.0f h, dropped: "
                          "%s %s", cid.receiver, cid.integration, cid.index, MAX_AGE_S / 3600,
                          delivery.reason, delivery.detail)
                self._delete([head.id], failed, self._failure(cid, "expired"))
                rows.pop(0)
                continue
            delay = max(backoff(head.attempts + 1, self.rng), delivery.retry_after or 0.0)
            log.warning("notification to %s/%s[%d] failed (%s %s); retry %d in %.1f s",
                        cid.receiver, cid.integration, cid.index, delivery.reason,
                        delivery.detail, head.attempts + 1, delay)
            with self._counting(failed) as cursor:
                cursor.execute("UPDATE outbox SET attempts = ?, next_attempt = ?, "
                               "last_error = ? WHERE id = ?",
                               (head.attempts + 1, now + delay,
                                f"{delivery.reason} {delivery.detail}"[:500], head.id))
            head.attempts += 1
            head.next_attempt = now + delay
            return delay
        return IDLE_WAKE_S

    async def _deliver(self, channel: Channel, message: Message) -> Delivery:
        try:
            return await asyncio.wait_for(channel.deliver(message), DELIVERY_TIMEOUT_S)
        except TimeoutError:
            return Delivery.transient("timeout", f"no answer in {DELIVERY_TIMEOUT_S:.0f} s")
        except Exception as exc:  # a channel defect: retry, and say so
            log.exception("outbox: %s channel raised", channel.integration)
            return Delivery.transient("internal", repr(exc))

    def _acknowledge(self, channel: Channel, row: _Row, now: float) -> None:
        sent = (self._sent, self._sent.key((row.channel.receiver, row.channel.integration)), 1.0)
        with self._counting(sent) as cursor:
            cursor.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
            if channel.limits:
                cursor.execute("INSERT INTO rate_log (rate_key, sent_at) VALUES (?, ?)",
                               (channel.rate_key, now))
                longest = max(limit.per_seconds for limit in channel.limits)
                cursor.execute("DELETE FROM rate_log WHERE rate_key = ? AND sent_at < ?",
                               (channel.rate_key, now - longest))

    def _rate_wait(self, channel: Channel, now: float) -> float:
        """0 if `channel` may send now, else the seconds until it may."""
        wait = 0.0
        for limit in channel.limits:
            since = now - limit.per_seconds
            sent = [t for (t,) in self.state.connection.execute(
                "SELECT sent_at FROM rate_log WHERE rate_key = ? AND sent_at > ? "
                "ORDER BY sent_at", (channel.rate_key, since))]
            if len(sent) >= limit.count:
                wait = max(wait, sent[len(sent) - limit.count] + limit.per_seconds - now)
        return wait

    def _merge(self, channel: Channel, rows: list[_Row]) -> list[_Row]:
        """The waiting messages (all due) merged into the head one, if the channel merges."""
        due = [r for r in rows if r.attempts == 0 or r is rows[0]]
        if len(due) < 2:
            return rows
        merged = channel.merge([r.message for r in due])
        if merged is None:
            return rows
        head = due[0]
        with self.state.transaction() as cursor:
            cursor.execute("UPDATE outbox SET message = ? WHERE id = ?",
                           (orjson.dumps(merged).decode(), head.id))
            cursor.executemany("DELETE FROM outbox WHERE id = ?", [(r.id,) for r in due[1:]])
        log.info("outbox: %d queued %s notifications for %s merged into one (rate limit)",
                 len(due), channel.integration, head.channel.receiver)
        head.message = merged
        gone = {r.id for r in due[1:]}
        return [r for r in rows if r.id not in gone]

    def _delete(self, ids: list[int], *counts: Count) -> None:
        with self._counting(*counts) as cursor:
            cursor.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def _failure(self, cid: ChannelId, reason: str, amount: int = 1) -> Count:
        return self._failed, self._failed.key((cid.receiver, cid.integration, reason)), amount

    @contextlib.contextmanager
    def _counting(self, *counts: Count) -> Iterator[sqlite3.Cursor]:
        """A transaction that also counts `counts` and writes their series' rows, so that the
        state file never holds an outbox change without its count (a kill before the next
        ingest checkpoint used to lose it). The store counts under `begin_changes`, as the
        checkpoint does, and is put back if the commit fails: the row stays queued and is
        counted when it is settled again, once. Only these series are written; the others'
        dirty marks stay for the checkpoint, which writes these again at the same values."""
        self._metrics.begin_changes()
        try:
            with self.state.transaction() as cursor:
                yield cursor
                changed: list[tuple[MetricFamily, LabelKey, Series]] = []
                for family, key, amount in counts:
                    # The stored key: at the series cap, inc(key) would count a second drop.
                    stored, series = family.locate(key)
                    family.inc(stored, amount)
                    changed.append((family, stored, series))
                write_counter_rows(cursor, changed)
        except BaseException:
            self._metrics.undo_changes()
            raise
        self._metrics.keep_changes()
