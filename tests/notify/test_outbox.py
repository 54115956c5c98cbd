"""The durable outbox (monitor/notify/outbox.py) on a fake clock with scripted channels:
in-order delivery through an outage, backoff, permanent failures dropped and counted, a
restart (a new Outbox on the same file, as after SIGKILL) resuming without loss or repeats,
rate limits counted across restarts, and merging when a rate-limited queue backs up."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_rig import Rig, ScriptedChannel

from monitor.metrics import families as fam
from monitor.metrics.persistence import restore_counters, write_counter_rows
from monitor.metrics.store import CounterSeries, FamilySpec, Kind, MetricStore
from monitor.notify.channels.base import Delivery, RateLimit
from monitor.notify.outbox import BACKOFF_MAX_S, ChannelId, Outbox

HOOK = ChannelId("team", "webhook", 0)


def queue(rig: Rig, *names: str, channel: ChannelId = HOOK) -> None:
    with rig.state.transaction() as cursor:
        for name in names:
            Outbox.add(cursor, channel, {"status": "firing", "firing": [name], "resolved": [],
                                         "parts": 1}, rig.clock.time())
    rig.outbox.wake()


def names(messages: list[dict[str, object]]) -> list[object]:
    return [m["firing"] for m in messages]


async def test_an_outage_delays_delivery_which_then_happens_once_and_in_order(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.script = [Delivery.transient("http_503")] * 5
    queue(rig, "a", "b", "c")
    waits = []
    for _ in range(5):
        waits.append(await rig.outbox.send_due())
        rig.clock.advance(waits[-1])
    assert rig.channel.delivered == []
    assert len(rig.channel.attempts) == 5  # only the head is tried while it fails
    assert 0.8 <= waits[0] <= 1.2 and 12.8 <= waits[4] <= 19.2  # 1 s doubling, jittered
    await rig.outbox.send_due()
    assert names(rig.channel.delivered) == [["a"], ["b"], ["c"]]
    assert rig.outbox.queue_length() == 0
    assert rig.counter("inferwatch_notifications_failed") == {
        (("receiver", "team"), ("integration", "webhook"), ("reason", "http_503")): 5.0}
    rig.close()


async def test_backoff_is_capped_and_retry_after_is_honoured(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.script = [Delivery.transient("rate", retry_after=7.0)] + \
        [Delivery.transient("http_500")] * 12
    queue(rig, "a")
    assert await rig.outbox.send_due() >= 7.0
    waits = []
    for _ in range(12):
        rig.clock.advance(BACKOFF_MAX_S * 1.2)
        waits.append(await rig.outbox.send_due())
    assert max(waits) <= BACKOFF_MAX_S * 1.2 and waits[-1] >= BACKOFF_MAX_S * 0.8
    rig.close()


async def test_a_permanent_failure_is_dropped_counted_and_does_not_block_the_queue(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.script = [Delivery.permanent("dingtalk_310000", "keyword not in content")]
    queue(rig, "a", "b")
    await rig.outbox.send_due()
    assert names(rig.channel.delivered) == [["b"]]
    assert rig.counter("inferwatch_notifications_failed") == {
        (("receiver", "team"), ("integration", "webhook"), ("reason", "dingtalk_310000")): 1.0}
    rig.close()


async def test_a_restart_resumes_the_outbox_without_loss_or_repeats(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    queue(rig, "a", "b", "c")
    rig.channel.script = [Delivery.sent(), Delivery.transient("connection")]
    await rig.outbox.send_due()
    assert names(rig.channel.delivered) == [["a"]]
    rig.restart()  # as after SIGKILL: the state file is all that is left
    fresh = ScriptedChannel()
    rig.channel_map[HOOK] = fresh
    rig.clock.advance(60)
    await rig.outbox.send_due()
    assert names(fresh.delivered) == [["b"], ["c"]]
    assert rig.outbox.queue_length() == 0
    rig.close()


async def test_a_queue_for_a_removed_receiver_is_dropped_and_counted(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    queue(rig, "a", channel=ChannelId("gone", "webhook", 0))
    await rig.outbox.send_due()
    assert rig.outbox.queue_length() == 0
    assert rig.counter("inferwatch_notifications_failed") == {
        (("receiver", "gone"), ("integration", "webhook"), ("reason", "receiver_removed")): 1.0}
    rig.close()


async def test_one_hundred_alerts_to_one_robot_stay_within_its_rate_and_none_is_lost(
        tmp_path: Path) -> None:
    robot = ScriptedChannel("dingtalk", limits=(RateLimit(20, 60.0),), rate_key="robot",
                            merges=True)
    rig = Rig(tmp_path, channels={ChannelId("team", "dingtalk", 0): robot})
    sent_at: list[float] = []
    for minute in range(5):
        for k in range(20):  # 20 new notifications a minute, 100 in all
            queue(rig, f"m{minute}-{k}", channel=ChannelId("team", "dingtalk", 0))
            before = len(robot.delivered)
            await rig.outbox.send_due()
            sent_at += [rig.clock.time()] * (len(robot.delivered) - before)
            rig.clock.advance(1.0)
        rig.clock.advance(40.0)
    for _ in range(10):
        before = len(robot.delivered)
        await rig.outbox.send_due()
        sent_at += [rig.clock.time()] * (len(robot.delivered) - before)
        rig.clock.advance(30.0)
    delivered = [name for m in robot.delivered for name in m["firing"]]
    assert sorted(delivered) == sorted(f"m{i}-{k}" for i in range(5) for k in range(20))
    assert len(delivered) == len(set(delivered))  # none twice
    for i, t in enumerate(sent_at):  # at most 20 messages in any 60 s window
        assert sum(1 for u in sent_at[i:] if u < t + 60.0) <= 20
    rig.close()


async def test_a_burst_of_one_hundred_is_sent_as_twenty_then_one_merged_message(
        tmp_path: Path) -> None:
    cid = ChannelId("team", "dingtalk", 0)
    robot = ScriptedChannel("dingtalk", limits=(RateLimit(20, 60.0),), rate_key="robot",
                            merges=True)
    rig = Rig(tmp_path, channels={cid: robot})
    queue(rig, *(f"a{i}" for i in range(100)), channel=cid)
    wait = await rig.outbox.send_due()
    assert len(robot.delivered) == 20
    assert rig.outbox.queue_length() == 1  # the other 80, merged into one message
    rig.clock.advance(wait)
    await rig.outbox.send_due()
    (merged,) = robot.delivered[20:]
    assert merged["status"] == "merged" and merged["parts"] == 80
    assert [n for m in robot.delivered for n in m["firing"]] == [f"a{i}" for i in range(100)]
    rig.close()


async def test_the_rate_limit_holds_across_a_restart(tmp_path: Path) -> None:
    robot = ScriptedChannel("dingtalk", limits=(RateLimit(20, 60.0),), rate_key="robot")
    cid = ChannelId("team", "dingtalk", 0)
    rig = Rig(tmp_path, channels={cid: robot})
    queue(rig, *(f"a{i}" for i in range(25)), channel=cid)
    await rig.outbox.send_due()
    assert len(robot.delivered) == 20
    rig.restart()
    await rig.outbox.send_due()
    assert len(robot.delivered) == 20  # the sends before the restart still count
    rig.clock.advance(60.0)
    await rig.outbox.send_due()
    assert len(robot.delivered) == 25
    rig.close()


def persisted(rig: Rig, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The counters a daemon killed now would restore: what the state file holds, with no
    ingest checkpoint since."""
    store = MetricStore()
    store.register(fam.NOTIFICATIONS)
    store.register(fam.NOTIFICATIONS_FAILED)
    restore_counters(rig.state, store)
    found = store.family(family)
    return {} if found is None else {key: series.value for key, series in found.series.items()
                                     if isinstance(series, CounterSeries)}


async def test_each_outcome_is_counted_in_the_state_file_with_its_outbox_change(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.script = [Delivery.sent(), Delivery.transient("http_503"),
                          Delivery.permanent("http_400")]
    queue(rig, "a", "b")
    queue(rig, "c", channel=ChannelId("gone", "webhook", 0))
    await rig.outbox.send_due()  # a sent; b failed once and waits; c's receiver is gone
    rig.clock.advance(BACKOFF_MAX_S)
    await rig.outbox.send_due()  # b failed for good
    team = (("receiver", "team"), ("integration", "webhook"))
    assert persisted(rig, "inferwatch_notifications") == {team: 1.0}
    assert persisted(rig, "inferwatch_notifications_failed") == {
        (*team, ("reason", "http_503")): 1.0, (*team, ("reason", "http_400")): 1.0,
        (("receiver", "gone"), ("integration", "webhook"), ("reason", "receiver_removed")): 1.0}
    # What the store counts and what a restart would restore are the same.
    assert persisted(rig, "inferwatch_notifications_failed") == \
        rig.counter("inferwatch_notifications_failed")
    rig.close()


async def test_an_acknowledgement_that_cannot_be_written_is_not_counted(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    queue(rig, "a")
    original = rig.state.transaction

    @contextlib.contextmanager
    def refused(**options: Any) -> Iterator[sqlite3.Cursor]:
        raise sqlite3.OperationalError("database is locked")
        yield from ()  # pragma: no cover - a generator, for contextmanager

    rig.state.transaction = refused  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        await rig.outbox.send_due()
    rig.state.transaction = original  # type: ignore[method-assign]
    assert sum(rig.counter("inferwatch_notifications").values()) == 0.0
    assert persisted(rig, "inferwatch_notifications") == {}
    assert rig.outbox.queue_length() == 1  # sent again later: counted then, once
    await rig.outbox.send_due()
    assert rig.counter("inferwatch_notifications") == persisted(rig, "inferwatch_notifications")
    assert sum(rig.counter("inferwatch_notifications").values()) == 1.0
    assert names(rig.channel.delivered) == [["a"], ["a"]]  # its acknowledgement was lost
    rig.close()


def failing_at_commit(rig: Rig) -> Any:
    """A state file that runs the transaction's statements, then refuses to commit them (the
    transaction rolls back, as on a full disk)."""
    original = rig.state.transaction

    @contextlib.contextmanager
    def refused(**options: Any) -> Iterator[sqlite3.Cursor]:
        with original(**options) as cursor:
            yield cursor
            raise sqlite3.OperationalError("disk I/O error")

    return refused


async def test_an_acknowledgement_whose_commit_fails_is_not_counted(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    queue(rig, "a")
    original = rig.state.transaction
    rig.state.transaction = failing_at_commit(rig)  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        await rig.outbox.send_due()
    rig.state.transaction = original  # type: ignore[method-assign]
    assert sum(rig.counter("inferwatch_notifications").values()) == 0.0
    assert persisted(rig, "inferwatch_notifications") == {}  # the counter row rolled back too
    assert rig.outbox.queue_length() == 1
    await rig.outbox.send_due()
    team = (("receiver", "team"), ("integration", "webhook"))
    assert rig.counter("inferwatch_notifications") == {team: 1.0}
    assert persisted(rig, "inferwatch_notifications") == {team: 1.0}
    rig.close()


async def test_a_permanent_failure_that_cannot_be_written_is_counted_once(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.script = [Delivery.permanent("http_400")] * 2
    queue(rig, "a")
    original = rig.state.transaction
    rig.state.transaction = failing_at_commit(rig)  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError):
        await rig.outbox.send_due()
    rig.state.transaction = original  # type: ignore[method-assign]
    assert sum(rig.counter("inferwatch_notifications_failed").values()) == 0.0
    assert persisted(rig, "inferwatch_notifications_failed") == {}
    assert rig.outbox.queue_length() == 1  # tried again, and only that attempt counts
    await rig.outbox.send_due()
    bad = {(("receiver", "team"), ("integration", "webhook"), ("reason", "http_400")): 1.0}
    assert rig.counter("inferwatch_notifications_failed") == bad
    assert persisted(rig, "inferwatch_notifications_failed") == bad
    assert rig.outbox.queue_length() == 0
    rig.close()


async def test_an_expired_message_is_counted_in_the_state_file_with_both_reasons(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel.script = [Delivery.transient("http_503")]
    queue(rig, "a")
    rig.clock.advance(BACKOFF_MAX_S + 24 * 3600.0)  # older than a day at its first attempt
    await rig.outbox.send_due()
    assert rig.outbox.queue_length() == 0
    team = (("receiver", "team"), ("integration", "webhook"))
    assert persisted(rig, "inferwatch_notifications_failed") == {
        (*team, ("reason", "http_503")): 1.0, (*team, ("reason", "expired")): 1.0}
    rig.close()


async def test_the_next_checkpoint_still_writes_every_changed_series_and_the_same_count(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    lines = rig.metrics.register(FamilySpec(name="lines", help="h", kind=Kind.COUNTER))
    lines.inc(lines.key(()), 5.0)  # ingest's change, not committed yet
    queue(rig, "a")
    await rig.outbox.send_due()
    dirty = rig.metrics.take_dirty()  # what the checkpoint gathers
    assert {(family.full_name, key) for family, key, _ in dirty} == {
        ("inferwatch_lines", ()),
        ("inferwatch_notifications", (("receiver", "team"), ("integration", "webhook")))}
    written = rig.state.connection.execute("SELECT DISTINCT family FROM counters").fetchall()
    assert written == [("inferwatch_notifications",)]  # the outbox wrote only its own series
    with rig.state.transaction() as cursor:
        write_counter_rows(cursor, dirty)
    assert persisted(rig, "inferwatch_notifications") == {
        (("receiver", "team"), ("integration", "webhook")): 1.0}
    rig.close()


async def test_an_outcome_diverted_at_the_series_cap_is_one_drop(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    family = rig.metrics.family("inferwatch_notifications")
    assert family is not None
    family.series_limit = 0  # every new label set goes to the overflow series
    queue(rig, "a")
    await rig.outbox.send_due()
    overflow = (("receiver", "__overflow__"), ("integration", "__overflow__"))
    assert rig.counter("inferwatch_notifications") == {overflow: 1.0}
    assert persisted(rig, "inferwatch_notifications") == {overflow: 1.0}
    assert rig.counter("inferwatch_series_dropped") == {
        (("family", "inferwatch_notifications"),): 1.0}
    rig.close()
