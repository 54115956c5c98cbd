"""What prompt-cache hits saved (`cost_cache_savings_total`) and spend by user
(`cost_total{user}` with `metrics.user_label`), through the real ledger and checkpoint.

Expected amounts are computed here with fractions, independently of the pricing module:
saved = hit tokens x (cache-miss price - cache-hit price) / 1e6 x the discount factor.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
from cost_helpers import JAN, Rig, usage

SAVINGS = "inferwatch_cost_cache_savings"
COST = "inferwatch_cost"


def saved(hit: int, hit_price: str, miss_price: str, factor: str = "1",
          rate: str = "1") -> float:
    exact = hit * (Fraction(miss_price) - Fraction(hit_price)) / 1_000_000 \
        * Fraction(factor) * Fraction(rate)
    return float(exact)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path, rates={"USD": "7.1"})
    yield made
    made.state.close()


def test_savings_are_hit_tokens_at_the_miss_price_minus_the_hit_price(rig: Rig) -> None:
    assert rig.feed(
        usage("a", "chat", JAN + 3600, hit=1000, miss=3000, output=777),  # old price
        usage("b", "chat", JAN + 13 * 3600, hit=4000, miss=10, output=5),  # new price
        usage("c", "chat", JAN + 17 * 3600, hit=2000, miss=0, output=0),  # off-peak: x0.5
        usage("d", "chat", JAN + 13 * 3600, hit=0, miss=500, output=50),  # no hit: nothing
        usage("e", "gpt-x", JAN + 3600, hit=800, miss=200, output=10),  # USD at 7.1
    )
    chat = saved(1000, "0.5", "2") + saved(4000, "0.2", "2") + saved(2000, "0.2", "2", "0.5")
    assert rig.counter(SAVINGS) == {
        (("source", "api"), ("model", "chat"), ("currency", "CNY")): pytest.approx(chat),
        (("source", "api"), ("model", "gpt-x"), ("currency", "CNY")): pytest.approx(
            saved(800, "1.25", "2.5", rate="7.1")),
    }


def test_no_savings_series_without_cache_hits_or_for_unpriced_models(rig: Rig) -> None:
    assert rig.feed(usage("a", "chat", JAN + 3600, hit=0, miss=3000, output=7),
                    usage("b", "unknown-model", JAN + 3600, hit=900, miss=100, output=7))
    assert rig.counter(SAVINGS) == {}


def test_a_duplicate_request_saves_once(rig: Rig) -> None:
    assert rig.feed(usage("a", "chat", JAN + 3600, hit=1000, miss=0))
    assert rig.feed(usage("a", "chat", JAN + 3600, hit=1000, miss=0))
    assert list(rig.counter(SAVINGS).values()) == [pytest.approx(saved(1000, "0.5", "2"))]


def test_spend_carries_the_user_only_with_the_user_label(tmp_path: Path) -> None:
    records = (usage("a", "chat", JAN + 3600, hit=0, miss=1000, user_id="alice"),
               usage("b", "chat", JAN + 3600, hit=0, miss=1000, user_id="bob"),
               usage("c", "chat", JAN + 3600, hit=0, miss=1000))
    each = float(Fraction(1000 * 2, 1_000_000))
    labelled = Rig(tmp_path / "on", user_label=True)
    assert labelled.feed(*records)
    base = (("source", "api"), ("model", "chat"), ("currency", "CNY"))
    assert labelled.counter(COST) == {
        (*base, ("user", "alice")): pytest.approx(each),
        (*base, ("user", "bob")): pytest.approx(each),
        base: pytest.approx(each),
    }
    labelled.state.close()
    plain = Rig(tmp_path / "off")
    assert plain.feed(*records)
    assert plain.counter(COST) == {base: pytest.approx(3 * each)}
    plain.state.close()
