"""The cost ledger (monitor/cost/ledger.py) inside the real checkpoint.

Lines go through the real `api_usage` pipeline and `CheckpointWriter` into a real state file;
a "restart" is a new Ledger (and writer) over the same file. Prices come from a pricing file
written by each test (the bundled table is left out, so the numbers are the test's own).
Expected amounts are computed here with `fractions.Fraction`, independently of the pricing
module.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from cost_helpers import JAN, FakeTailer, Rig, usage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cost import journal, ledger_rows


def cny(hit: int, miss: int, output: int, prices: tuple[str, str, str],
        factor: str = "1") -> Decimal:
    """The expected amount, computed with fractions."""
    h, m, o = (Fraction(p) for p in prices)
    exact = (hit * h + miss * m + output * o) / 1_000_000 * Fraction(factor)
    value = Decimal(exact.numerator) / Decimal(exact.denominator)
    assert Fraction(value) == exact  # a terminating decimal: nothing was rounded
    return value


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.state.close()


def test_each_request_is_priced_exactly_at_its_time(rig: Rig) -> None:
    assert rig.feed(
        usage("a", "chat", JAN + 3600, hit=1000, miss=3000, output=777),  # the old price
        usage("b", "chat", JAN + 13 * 3600, hit=1000, miss=3000, output=777),  # the new one
        usage("c", "chat", JAN + 17 * 3600, hit=1000, miss=3000, output=777),  # off-peak
    )
    a = cny(1000, 3000, 777, ("0.5", "2", "8"))
    b = cny(1000, 3000, 777, ("0.2", "2", "3"))
    c = cny(1000, 3000, 777, ("0.2", "2", "3"), "0.5")
    assert rig.rows() == [("a", "chat", a, None), ("b", "chat", b, None),
                          ("c", "chat", c, None)]
    assert rig.total() == a + b + c
    assert rig.daily() == {("2026-01-10", "chat"): (3, 0, a + b + c)}
    assert rig.counter("inferwatch_cost") == {
        (("source", "api"), ("model", "chat"), ("currency", "CNY")): pytest.approx(
            float(a + b + c))}
    assert [e.amount for e in rig.entries] == [a, b, c]


def test_a_duplicate_request_id_is_charged_once_even_across_a_restart(rig: Rig) -> None:
    rig.feed(usage("dup", "chat", JAN, miss=1000), usage("dup", "chat", JAN, miss=1000))
    rig.restart()
    rig.feed(usage("dup", "chat", JAN + 5, miss=1000), usage("other", "chat", JAN, miss=1000))
    assert [r[0] for r in rig.rows()] == ["dup", "other"]
    # Requests without an id cannot be told apart: each is charged.
    rig.feed(usage(None, "chat", JAN, miss=1000), usage(None, "chat", JAN, miss=1000))
    assert len(rig.rows()) == 4


def test_an_unpriced_model_is_recorded_without_an_amount_counted_and_warned_once(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        rig.feed(usage("a", "mystery", JAN, miss=10), usage("b", "mystery", JAN, miss=10))
        rig.feed(usage("c", "mystery", JAN, miss=10))
    assert [r[2] for r in rig.rows()] == [None, None, None]
    assert rig.counter("inferwatch_cost_unpriced_requests") == {(("model", "mystery"),): 3.0}
    assert rig.daily() == {("2026-01-10", "mystery"): (3, 3, Decimal(0))}
    assert sum("mystery" in r.getMessage() for r in caplog.records) == 1
    assert rig.entries == []


def test_a_foreign_currency_converts_with_a_rate_and_is_unpriced_without(
        tmp_path: Path) -> None:
    without = Rig(tmp_path / "without")
    without.feed(usage("a", "gpt-x", JAN, hit=100, miss=900, output=50))
    assert without.rows() == [("a", "gpt-x", None, None)]
    with_rate = Rig(tmp_path / "with", rates={"USD": "7.1"})
    with_rate.feed(usage("a", "gpt-x", JAN, hit=100, miss=900, output=50))
    usd = cny(100, 900, 50, ("1.25", "2.5", "10"))
    assert with_rate.rows() == [("a", "gpt-x", usd * Decimal("7.1"), None)]
    for made in (without, with_rate):
        made.state.close()


def test_a_reported_cost_is_kept_beside_the_computed_one(rig: Rig) -> None:
    rig.feed(usage("a", "chat", JAN, miss=1_000_000, cost=1.999999))
    [(_, _, amount, reported)] = rig.rows()
    assert (amount, reported) == (Decimal(2), Decimal("1.999999"))
    units, places = rig.state.connection.execute(
        "SELECT amount_units, amount_places FROM ledger").fetchone()
    assert isinstance(units, int) and Decimal(units).scaleb(-places) == 2  # exact, not a float
    (totals,) = rig.state.connection.execute("SELECT reported FROM cost_daily").fetchone()
    assert totals == "1.999999"


def test_days_are_calendar_days_of_cost_timezone(tmp_path: Path) -> None:
    shanghai = Rig(tmp_path, timezone="Asia/Shanghai")
    before = datetime(2026, 1, 10, 15, 59, 59, tzinfo=UTC).timestamp()  # 23:59:59 local
    shanghai.feed(usage("a", "chat", before, miss=1000), usage("b", "chat", before + 1,
                                                               miss=1000))
    assert set(shanghai.daily()) == {("2026-01-10", "chat"), ("2026-01-11", "chat")}
    shanghai.state.close()


def test_a_new_timezone_rebuilds_the_roll_ups_at_start(tmp_path: Path) -> None:
    rig = Rig(tmp_path, timezone="UTC")
    t = datetime(2026, 1, 10, 20, 0, tzinfo=UTC).timestamp()  # 04:00 next day in Shanghai
    rig.feed(usage("a", "chat", t - 12 * 3600, miss=1000), usage("b", "chat", t, miss=1000))
    assert {day for day, _ in rig.daily()} == {"2026-01-10"}
    rig.state.close()
    rig.config = rig.config.model_copy(update={"timezone": "Asia/Shanghai"})
    rig.start()
    assert {day for day, _ in rig.daily()} == {"2026-01-10", "2026-01-11"}
    assert sum(n for n, _, _ in rig.daily().values()) == 2
    rig.state.close()


def failing_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, except that its first call fails as a full disk does."""
    calls = 0

    def call(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real(*args)

    return call


def test_a_failed_checkpoint_journals_nothing_and_the_retry_charges_once(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "append", failing_once(journal.append))
    assert not rig.feed(usage("a", "chat", JAN, miss=1000))
    assert rig.rows() == []
    assert journal.length(rig.state.connection) == 0
    assert rig.counter("inferwatch_cost") == {}
    # The request is still pending in its pipeline: the next checkpoint commits it once.
    assert rig.writer.commit([(rig.pipeline, FakeTailer("api"))])  # type: ignore[list-item]
    assert [r[0] for r in rig.rows()] == ["a"]
    assert len(rig.entries) == 1


def test_a_failed_conversion_leaves_the_journal_and_the_retry_charges_once(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rig.ledger, "write", failing_once(rig.ledger.write))
    assert rig.feed(usage("a", "chat", JAN, miss=1000))  # the checkpoint itself commits
    assert rig.rows() == []
    assert journal.length(rig.state.connection) == 1
    assert rig.counter("inferwatch_cost") == {}
    assert rig.ledger.totals() == []  # the ledger's own store was put back too
    assert rig.entries == []
    # The next conversion (after the next checkpoint, or the writer's retry) charges it once.
    assert rig.ledger_feed.drain()
    assert [r[0] for r in rig.rows()] == ["a"]
    assert journal.length(rig.state.connection) == 0
    assert len(rig.entries) == 1
    [(_, value)] = rig.counter("inferwatch_cost").items()
    assert value == pytest.approx(0.002)
    assert rig.ledger.totals()[0][2] == value


def test_an_unreadable_journal_row_is_dropped_and_the_rows_behind_it_are_charged(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    with rig.state.transaction() as cursor:  # what a damaged page would hand back
        cursor.executemany(
            "INSERT INTO ledger_journal (source, model_override, events) VALUES (?, ?, ?)",
            [("api", None, b"\xc1 not msgpack"), ("api", None, b"\x91\x91\x01"),
             ("api", None, b"")])
    caplog.set_level(logging.ERROR, logger="monitor.cost.ledger")
    assert rig.feed(usage("a", "chat", JAN, miss=1000))
    assert [r[0] for r in rig.rows()] == ["a"]
    assert journal.length(rig.state.connection) == 0
    assert sum("is unreadable and is dropped" in r.getMessage() for r in caplog.records) == 3


def test_prune_drops_rows_past_retention_and_keeps_the_roll_ups(rig: Rig) -> None:
    rig.feed(usage("old", "chat", JAN - 500 * 86400, miss=1000),
             usage("new", "chat", JAN, miss=1000))
    removed, _ = rig.ledger.prune(JAN)
    assert removed == 1
    assert [r[0] for r in rig.rows()] == ["new"]
    assert len(rig.daily()) == 2


def test_prune_keeps_the_newer_rows_of_a_span_that_straddles_the_cut(rig: Rig) -> None:
    # One conversion, so one span, holding rows on both sides of the retention cut, out of
    # time order.
    rig.feed(usage("new1", "chat", JAN, miss=1000),
             usage("old", "chat", JAN - 500 * 86400, miss=1000),
             usage("new2", "chat", JAN + 60, miss=1000))
    removed, _ = rig.ledger.prune(JAN)
    assert removed == 1
    assert [r[0] for r in rig.rows()] == ["new1", "new2"]
    connection = rig.state.connection
    assert ledger_rows.oldest_time(connection) >= JAN - 400 * 86400  # the span's bound moved
    assert ledger_rows.id_range(connection, JAN, JAN + 1) is not None
    assert rig.ledger.prune(JAN) == (0, 0)  # nothing older is left
    rig.restart()
    rig.feed(usage("new1", "chat", JAN + 120, miss=1000))  # still in the dedup window
    assert [r[0] for r in rig.rows()] == ["new1", "new2"]


def test_a_time_range_finds_rows_of_every_span_that_overlaps_it(rig: Rig) -> None:
    rig.feed(usage("a", "chat", JAN + 3600, miss=10))
    rig.feed(usage("b", "chat", JAN, miss=20))  # a later span with older rows
    rig.feed(usage("c", "chat", JAN + 7200, miss=30))
    connection = rig.state.connection

    def ids_between(since: float, until: float) -> list[str]:
        found = ledger_rows.id_range(connection, since, until)
        if found is None:
            return []
        return [rid for (rid,) in connection.execute(
            "SELECT request_id FROM ledger WHERE id BETWEEN ? AND ? AND t >= ? AND t < ? "
            "ORDER BY t", (*found, since, until))]

    assert ids_between(JAN, JAN + 3601) == ["b", "a"]
    assert ids_between(JAN + 1, JAN + 7200) == ["a"]
    assert ids_between(JAN - 10, JAN + 10**6) == ["b", "a", "c"]
    assert ledger_rows.id_range(connection, JAN + 7201, JAN + 8000) is None


def test_an_amount_past_64_bits_is_stored_exactly(tmp_path: Path) -> None:
    # A long exchange rate makes the integer behind an amount wider than SQLite's integers.
    rate = "7.123456789012345678901234567"
    rig = Rig(tmp_path, rates={"USD": rate})
    rig.feed(usage("a", "gpt-x", JAN, hit=10**9, miss=10**9, output=10**9))
    usd = cny(10**9, 10**9, 10**9, ("1.25", "2.5", "10"))
    [(_, _, amount, _)] = rig.rows()
    assert Fraction(amount) == Fraction(usd) * Fraction(rate)
    (units,) = rig.state.connection.execute("SELECT amount_units FROM ledger").fetchone()
    assert isinstance(units, str) and int(units) > 2**63  # digits, never a float
    assert rig.daily()[("2026-01-10", "gpt-x")][2] == amount
    rig.state.close()


# -- Hypothesis: the ledger's total is the exact sum ------------------------------------------

price_text = st.decimals(min_value=0, max_value=100, places=6).map(
    lambda d: format(d.normalize(), "f"))


@st.composite
def price_tables(draw: st.DrawFn) -> tuple[str, dict[str, list[tuple[float, tuple[str, ...],
                                                                     int, int, str]]]]:
    """A pricing file and the same prices as plain data: model → [(from, (hit, miss, out),
    discount from minute, to minute, factor)]."""
    models: dict[str, list[tuple[float, tuple[str, ...], int, int, str]]] = {}
    lines = ["models:"]
    for model in ("m0", "m1", "m2"):
        lines += [f"  - match: {model}", "    prices:"]
        starts = sorted(draw(st.sets(st.integers(0, 364), min_size=1, max_size=3)))
        for day in starts:
            prices = tuple(draw(price_text) for _ in range(3))
            start = JAN + (day - 30) * 86400
            lines += [f"      - effective_from: "
                      f"{datetime.fromtimestamp(start, UTC).isoformat().replace('+00:00', 'Z')}",
                      "        currency: CNY",
                      f"        input_cache_hit: {prices[0]}",
                      f"        input_cache_miss: {prices[1]}",
                      f"        output: {prices[2]}"]
            lo, hi, factor = 0, 0, "1"
            if draw(st.booleans()):
                lo, hi = draw(st.tuples(st.integers(0, 1439), st.integers(0, 1439)).filter(
                    lambda pair: pair[0] != pair[1]))
                factor = draw(st.sampled_from(["0.5", "0.25", "0.75", "0.1"]))
                lines += ["        discounts:",
                          f"          - {{from: \"{lo // 60:02d}:{lo % 60:02d}\", "
                          f"to: \"{hi // 60:02d}:{hi % 60:02d}\", factor: {factor}}}"]
            models.setdefault(model, []).append((start, prices, lo, hi, factor))
    return "\n".join(lines) + "\n", models


def reference(models: dict[str, list[tuple[float, tuple[str, ...], int, int, str]]],
              model: str, t: float, hit: int, miss: int, output: int) -> Fraction | None:
    applicable = [p for p in models.get(model, []) if p[0] <= t]
    if not applicable:
        return None
    _, prices, lo, hi, factor = applicable[-1]
    minute = int(t // 60) % 1440
    inside = lo <= minute < hi if lo < hi else (minute >= lo or minute < hi)
    h, m, o = (Fraction(p) for p in prices)
    amount = (hit * h + miss * m + output * o) / 1_000_000
    return amount * Fraction(factor) if lo != hi and inside else amount


events = st.lists(st.tuples(
    st.sampled_from(["m0", "m1", "m2", "unknown"]),
    st.floats(min_value=JAN - 40 * 86400, max_value=JAN + 340 * 86400,
              allow_nan=False).map(lambda t: float(int(t))),
    st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**6),
    st.booleans()), max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(table=price_tables(), batches=st.lists(events, min_size=1, max_size=3))
def test_the_ledger_total_equals_an_exact_reference(
        tmp_path_factory: pytest.TempPathFactory,
        table: tuple[str, dict[str, list[tuple[float, tuple[str, ...], int, int, str]]]],
        batches: Sequence[list[tuple[str, float, int, int, int, bool]]]) -> None:
    text, models = table
    rig = Rig(tmp_path_factory.mktemp("ledger"), prices=text)
    expected = Fraction(0)
    unpriced = 0
    serial = 0
    try:
        for batch in batches:
            records = []
            for model, t, hit, miss, output, _ in batch:
                serial += 1
                records.append(usage(f"r{serial}", model, t, hit=hit, miss=miss,
                                     output=output))
                amount = reference(models, model, t, hit, miss, output)
                if amount is None:
                    unpriced += 1
                else:
                    expected += amount
            assert rig.feed(*records)
            if batch and batch[-1][5]:
                rig.restart()
        total = rig.total()
        assert Fraction(total) == expected
        daily = sum((amount for _, _, amount in rig.daily().values()), Decimal(0))
        assert Fraction(daily) == expected
        assert sum(u for _, u, _ in rig.daily().values()) == unpriced
    finally:
        rig.state.close()


def test_each_usage_shape_is_priced_and_reasoning_is_not_charged_twice(rig: Rig) -> None:
    openai = usage("o", "chat", JAN, output=2000)
    openai["usage"] = {"prompt_tokens": 10_000, "completion_tokens": 2000,
                       "prompt_tokens_details": {"cached_tokens": 4000},
                       "completion_tokens_details": {"reasoning_tokens": 1500}}
    flat = {"timestamp": "2026-01-10T00:00:00Z", "request_id": "f", "model_name": "chat",
            "request_tokens": 10_000, "response_tokens": 2000}
    deepseek = usage("d", "chat", JAN, hit=4000, miss=6000, output=2000)
    deepseek["usage"]["completion_tokens_details"] = {"reasoning_tokens": 1500}
    assert rig.feed(openai, flat, deepseek)
    split = cny(4000, 6000, 2000, ("0.5", "2", "8"))  # 1500 reasoning tokens inside the 2000
    all_miss = cny(0, 10_000, 2000, ("0.5", "2", "8"))  # no cache information: all a miss
    assert [(r[0], r[2]) for r in rig.rows()] == [("o", split), ("f", all_miss), ("d", split)]
