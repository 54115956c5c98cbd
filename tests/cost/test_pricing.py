"""Price tables: the bundled DeepSeek and OpenAI prices, lookup and override rules, exact costs
(checked against `fractions.Fraction` arithmetic written here), and hostile price files."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cost.pricing import (
    Discount,
    Price,
    PriceFileError,
    PriceTable,
    convert,
    request_cost,
)
from monitor.errors import ConfigError
from monitor.ingest.schemas import parse_api_usage


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def bundled() -> PriceTable:
    return PriceTable.load()


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


# --- the bundled table -------------------------------------------------------------------------

# (model, time, factor, CNY hit/miss/output, USD hit/miss/output)
DEEPSEEK = [
    ("deepseek-chat", "2025-01-15T12:00:00", "1", ("0.1", "1", "2"), ("0.014", "0.14", "0.28")),
    ("deepseek-chat", "2025-02-10T17:00:00", "1", ("0.5", "2", "8"), ("0.07", "0.27", "1.10")),
    ("deepseek-chat", "2025-03-01T12:00:00", "1", ("0.5", "2", "8"), ("0.07", "0.27", "1.10")),
    ("deepseek-chat", "2025-03-01T17:00:00", "0.5", ("0.5", "2", "8"), ("0.07", "0.27", "1.10")),
    ("deepseek-chat", "2025-09-10T17:00:00", "1", ("0.5", "4", "12"), ("0.07", "0.56", "1.68")),
    ("deepseek-chat", "2025-10-01T17:00:00", "1", ("0.2", "2", "3"), ("0.028", "0.28", "0.42")),
    ("deepseek-chat", "2026-04-25T12:00:00", "1", ("0.2", "1", "2"), ("0.028", "0.14", "0.28")),
    ("deepseek-chat", "2026-05-01T12:00:00", "1", ("0.02", "1", "2"), ("0.0028", "0.14", "0.28")),
    ("deepseek-reasoner", "2025-01-25T12:00:00", "1", ("1", "4", "16"),
     ("0.14", "0.55", "2.19")),
    ("deepseek-reasoner", "2025-03-01T12:00:00", "1", ("1", "4", "16"),
     ("0.14", "0.55", "2.19")),
    ("deepseek-reasoner", "2025-03-01T17:00:00", "0.25", ("1", "4", "16"),
     ("0.14", "0.55", "2.19")),
    ("deepseek-reasoner", "2025-09-10T17:00:00", "1", ("0.5", "4", "12"),
     ("0.07", "0.56", "1.68")),
    ("deepseek-reasoner", "2025-10-01T17:00:00", "1", ("0.2", "2", "3"),
     ("0.028", "0.28", "0.42")),
    ("deepseek-reasoner", "2026-04-25T12:00:00", "1", ("0.2", "1", "2"),
     ("0.028", "0.14", "0.28")),
    ("deepseek-reasoner", "2026-05-01T12:00:00", "1", ("0.02", "1", "2"),
     ("0.0028", "0.14", "0.28")),
]


@pytest.mark.parametrize(("model", "when", "factor", "cny", "usd"), DEEPSEEK)
def test_bundled_deepseek_prices(bundled: PriceTable, model: str, when: str, factor: str,
                                 cny: tuple[str, str, str], usd: tuple[str, str, str]) -> None:
    t = at(when)
    for currency, prices in (("CNY", cny), ("USD", usd)):
        price = bundled.price_at(model, t, currency=currency)
        assert price is not None
        assert price.currency == currency
        hit, miss, output = (Decimal(p) for p in prices)
        cost = request_cost(price, t, input_tokens=3_000_000, cache_hit_tokens=1_000_000,
                            cache_miss_tokens=2_000_000, output_tokens=3_000_000)
        assert cost == (hit + 2 * miss + 3 * output) * Decimal(factor)


def test_deepseek_before_launch_is_unpriced(bundled: PriceTable) -> None:
    assert bundled.price_at("deepseek-chat", at("2024-12-25T23:59:59")) is None
    assert bundled.price_at("deepseek-reasoner", at("2025-01-19T15:59:59")) is None
    assert bundled.price_at("deepseek-reasoner", at("2025-01-19T16:00:00")) is not None


def test_without_a_currency_the_first_listed_row_applies(bundled: PriceTable) -> None:
    t = at("2025-10-01T12:00:00")
    assert bundled.price_at("deepseek-chat", t).currency == "CNY"  # type: ignore[union-attr]
    price = bundled.price_at("deepseek-chat", t, currency="EUR")
    assert price is not None
    assert price.currency == "CNY"
    openai = bundled.price_at("gpt-4.1", t, currency="CNY")
    assert openai is not None
    assert openai.currency == "USD"


@pytest.mark.parametrize(("when", "factor"), [
    ("2025-03-01T16:29:59", "1"),
    ("2025-03-01T16:30:00", "0.5"),
    ("2025-03-01T23:59:59", "0.5"),
    ("2025-03-02T00:00:00", "0.5"),
    ("2025-03-02T00:29:59", "0.5"),
    ("2025-03-02T00:30:00", "1"),
    ("2025-02-26T16:29:59", "1"),  # the row before the off-peak offer: no discount
    ("2025-02-26T16:30:00", "0.5"),  # the first discounted minute
    ("2025-02-25T17:00:00", "1"),
    ("2025-09-05T16:30:00", "1"),  # the discount ended with the 2025-09-05 list
])
def test_off_peak_window_edges(bundled: PriceTable, when: str, factor: str) -> None:
    t = at(when)
    price = bundled.price_at("deepseek-chat", t, currency="CNY")
    assert price is not None
    assert price.factor_at(t) == Decimal(factor)
    cost = request_cost(price, t, input_tokens=None, cache_hit_tokens=None,
                        cache_miss_tokens=None, output_tokens=1_000_000)
    assert cost == price.output * Decimal(factor)


@pytest.mark.parametrize(("before", "after", "old_miss", "new_miss"), [
    ("2025-09-05T15:59:59", "2025-09-05T16:00:00", "0.27", "0.56"),
    ("2026-04-26T12:14:59", "2026-04-26T12:15:00", "0.14", "0.14"),
])
def test_price_change_mid_day(bundled: PriceTable, before: str, after: str, old_miss: str,
                              new_miss: str) -> None:
    old = bundled.price_at("deepseek-chat", at(before), currency="USD")
    new = bundled.price_at("deepseek-chat", at(after), currency="USD")
    assert old is not None
    assert new is not None
    assert old.input_cache_miss == Decimal(old_miss)
    assert new.input_cache_miss == Decimal(new_miss)
    assert new.effective_from == at(after)
    assert old.effective_from < new.effective_from


def test_cache_hit_cut_2026_04_26(bundled: PriceTable) -> None:
    before = bundled.price_at("deepseek-reasoner", at("2026-04-26T12:14:59"), currency="CNY")
    after = bundled.price_at("deepseek-reasoner", at("2026-04-26T12:15:00"), currency="CNY")
    assert before is not None
    assert after is not None
    assert (before.input_cache_hit, after.input_cache_hit) == (Decimal("0.2"), Decimal("0.02"))


@pytest.mark.parametrize(("model", "when", "prices"), [
    ("gpt-4o", "2025-01-01T00:00:00", ("1.25", "2.50", "10.00")),
    ("gpt-4o-2024-08-06", "2024-09-01T00:00:00", ("1.25", "2.50", "10.00")),
    ("gpt-4o-2024-11-20", "2025-01-01T00:00:00", ("1.25", "2.50", "10.00")),
    ("gpt-4o-mini", "2025-01-01T00:00:00", ("0.075", "0.15", "0.60")),
    ("gpt-4o-mini-2024-07-18", "2025-01-01T00:00:00", ("0.075", "0.15", "0.60")),
    ("gpt-4.1", "2025-05-01T00:00:00", ("0.50", "2.00", "8.00")),
    ("gpt-4.1-2025-04-14", "2025-05-01T00:00:00", ("0.50", "2.00", "8.00")),
    ("gpt-4.1-mini", "2025-05-01T00:00:00", ("0.10", "0.40", "1.60")),
    ("gpt-4.1-nano", "2025-05-01T00:00:00", ("0.025", "0.10", "0.40")),
    ("o3", "2025-05-01T00:00:00", ("2.50", "10.00", "40.00")),
    ("o3-2025-04-16", "2025-07-01T00:00:00", ("0.50", "2.00", "8.00")),
    ("o4-mini", "2025-05-01T00:00:00", ("0.275", "1.10", "4.40")),
    ("gpt-5", "2025-09-01T00:00:00", ("0.125", "1.25", "10.00")),
    ("gpt-5-2025-08-07", "2025-09-01T00:00:00", ("0.125", "1.25", "10.00")),
    ("gpt-5-mini", "2025-09-01T00:00:00", ("0.025", "0.25", "2.00")),
])
def test_bundled_openai_prices(bundled: PriceTable, model: str, when: str,
                               prices: tuple[str, str, str]) -> None:
    price = bundled.price_at(model, at(when), currency="USD")
    assert price is not None
    assert (price.input_cache_hit, price.input_cache_miss, price.output) == tuple(
        Decimal(p) for p in prices)
    assert price.currency == "USD"


@pytest.mark.parametrize("model", ["gpt-4.10", "gpt-4-1", "gpt-5-nano", "o3-mini", "gpt-4o-x",
                                   "gpt-4.1-2025-04-15", "xgpt-5"])
def test_bundled_openai_patterns_are_whole_names(bundled: PriceTable, model: str) -> None:
    assert bundled.price_at(model, at("2025-09-01T00:00:00")) is None


def test_bundled_models_are_listed(bundled: PriceTable) -> None:
    models = bundled.models()
    assert {"deepseek-chat", "deepseek-reasoner", "gpt-4o"} <= set(models)
    assert "^gpt-5(-2025-08-07)?$" in models


def test_openai_cached_tokens_shape_is_costed_from_the_event(bundled: PriceTable) -> None:
    event = parse_api_usage({
        "timestamp": "2025-06-01T00:00:00Z", "model": "gpt-4.1",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
                  "prompt_tokens_details": {"cached_tokens": 300},
                  "completion_tokens_details": {"reasoning_tokens": 150}}})
    assert (event.cache_hit_tokens, event.cache_miss_tokens) == (300, 700)
    price = bundled.price_at(event.model, event.timestamp)
    assert price is not None
    cost = request_cost(price, event.timestamp, input_tokens=event.input_tokens,
                        cache_hit_tokens=event.cache_hit_tokens,
                        cache_miss_tokens=event.cache_miss_tokens,
                        output_tokens=event.output_tokens)
    # reasoning tokens are inside completion_tokens: 200 output tokens, not 350
    assert cost == Decimal("0.00315")  # (300*0.50 + 700*2.00 + 200*8.00) / 1e6


def test_deepseek_hit_miss_shape_is_costed_from_the_event(bundled: PriceTable) -> None:
    event = parse_api_usage({
        "timestamp": "2025-10-01T03:00:00Z", "model": "deepseek-chat",
        "usage": {"prompt_tokens": 5000, "completion_tokens": 1000,
                  "prompt_cache_hit_tokens": 4000, "prompt_cache_miss_tokens": 1000}})
    price = bundled.price_at(event.model, event.timestamp, currency="CNY")
    assert price is not None
    cost = request_cost(price, event.timestamp, input_tokens=event.input_tokens,
                        cache_hit_tokens=event.cache_hit_tokens,
                        cache_miss_tokens=event.cache_miss_tokens,
                        output_tokens=event.output_tokens)
    assert cost == Decimal("0.0058")  # (4000*0.2 + 1000*2 + 1000*3) / 1e6


# --- request_cost and convert --------------------------------------------------------------------

FLAT = Price(0.0, "CNY", Decimal("0.2"), Decimal("2"), Decimal("3"))


def test_without_hit_and_miss_all_input_is_a_miss() -> None:
    cost = request_cost(FLAT, 0.0, input_tokens=1000, cache_hit_tokens=None,
                        cache_miss_tokens=None, output_tokens=None)
    assert cost == Decimal("0.002")


def test_one_known_side_leaves_the_rest_of_the_input_to_the_other() -> None:
    hit_only = request_cost(FLAT, 0.0, input_tokens=1000, cache_hit_tokens=300,
                            cache_miss_tokens=None, output_tokens=0)
    miss_only = request_cost(FLAT, 0.0, input_tokens=1000, cache_hit_tokens=None,
                             cache_miss_tokens=700, output_tokens=0)
    assert hit_only == miss_only == Decimal("0.00146")  # 300*0.2 + 700*2


def test_no_tokens_cost_nothing() -> None:
    assert request_cost(FLAT, 0.0, input_tokens=None, cache_hit_tokens=None,
                        cache_miss_tokens=None, output_tokens=None) == 0


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        request_cost(FLAT, 0.0, input_tokens=None, cache_hit_tokens=-1, cache_miss_tokens=0,
                     output_tokens=0)


def test_large_counts_and_long_prices_stay_exact() -> None:
    price = Price(0.0, "USD", Decimal("0.123456789012345678901234567"),
                  Decimal("99999.999999"), Decimal("0.000001"),
                  (Discount(0, 1440 - 1, Decimal("0.333333")),))
    cost = request_cost(price, 60.0, input_tokens=None, cache_hit_tokens=10**12 - 1,
                        cache_miss_tokens=10**12 - 3, output_tokens=7)
    expected = ((10**12 - 1) * Fraction("0.123456789012345678901234567")
                + (10**12 - 3) * Fraction("99999.999999") + 7 * Fraction("0.000001")
                ) / 10**6 * Fraction("0.333333")
    assert Fraction(cost) == expected


def test_convert_with_and_without_a_rate() -> None:
    rates = {"USD": Decimal("7.1")}
    assert convert(Decimal("1.5"), "USD", "CNY", rates) == Decimal("10.65")
    assert convert(Decimal("1.5"), "CNY", "CNY", {}) == Decimal("1.5")
    assert convert(Decimal("1.5"), "EUR", "CNY", rates) is None


def test_usd_row_converted_into_cny(bundled: PriceTable) -> None:
    t = at("2025-06-01T00:00:00")
    price = bundled.price_at("gpt-4.1", t, currency="CNY")
    assert price is not None
    cost = request_cost(price, t, input_tokens=None, cache_hit_tokens=0,
                        cache_miss_tokens=1_000_000, output_tokens=0)
    assert convert(cost, price.currency, "CNY", {"USD": Decimal("7.1")}) == Decimal("14.2")
    assert convert(cost, price.currency, "CNY", {}) is None


def test_discount_window_wraps_midnight() -> None:
    night = Discount(22 * 60, 2 * 60, Decimal("0.5"))
    day = Discount(2 * 60, 22 * 60, Decimal("0.5"))
    for hour in range(24):
        t = at(f"2025-01-01T{hour:02d}:00:00")
        assert night.applies(t) == (hour >= 22 or hour < 2)
        assert day.applies(t) != night.applies(t)


# --- files: override, precedence, lookup ------------------------------------------------------

CHAT_OVERRIDE = """\
models:
  - match: deepseek-chat
    prices:
      - {effective_from: 2020-01-01T00:00:00Z, currency: CNY,
         input_cache_hit: 9, input_cache_miss: 9, output: 9}
"""


def test_a_later_file_replaces_the_whole_entry(tmp_path: Path) -> None:
    table = PriceTable.load([write(tmp_path, "mine.yml", CHAT_OVERRIDE)])
    price = table.price_at("deepseek-chat", at("2025-10-01T17:00:00"), currency="USD")
    assert price is not None
    assert (price.currency, price.output) == ("CNY", Decimal("9"))  # the USD rows are gone too
    assert table.price_at("deepseek-reasoner", at("2025-10-01T17:00:00"),
                          currency="CNY").output == Decimal("3")  # type: ignore[union-attr]


def test_files_of_one_glob_load_in_sorted_order(tmp_path: Path) -> None:
    for name, output in (("b.yml", "2"), ("a.yml", "1"), ("c.yml", "3")):
        write(tmp_path, name, CHAT_OVERRIDE.replace("output: 9", f"output: {output}"))
    table = PriceTable.load([str(tmp_path / "*.yml")], bundled=False)
    assert table.price_at("deepseek-chat", 2e9).output == Decimal("3")  # type: ignore[union-attr]
    table = PriceTable.load([str(tmp_path / "c.yml"), str(tmp_path / "a.yml")], bundled=False)
    assert table.price_at("deepseek-chat", 2e9).output == Decimal("1")  # type: ignore[union-attr]


def test_a_glob_matching_nothing_adds_nothing(tmp_path: Path) -> None:
    table = PriceTable.load([str(tmp_path / "none-*.yml")], bundled=False)
    assert table.models() == []
    assert table.price_at("deepseek-chat", at("2025-10-01T00:00:00")) is None


def entry(key: str, value: str, output: str) -> str:
    return (f"  - {key}: {value!r}\n    prices:\n"
            f"      - {{effective_from: 2020-01-01, currency: USD, input_cache_hit: 0, "
            f"input_cache_miss: 0, output: {output}}}\n")


def test_exact_match_wins_over_any_regex_and_the_last_regex_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "1.yml", "models:\n" + entry("match_regex", "^deepseek-", "1")
                  + entry("match", "deepseek-chat", "2"))
    second = write(tmp_path, "2.yml", "models:\n" + entry("match_regex", "chat", "3"))
    table = PriceTable.load([first, second], bundled=False)

    def output(model: str) -> Decimal | None:
        price = table.price_at(model, at("2024-01-01T00:00:00"))
        return None if price is None else price.output

    assert output("deepseek-chat") == Decimal("2")  # exact, though both regexes match
    assert output("deepseek-chat-v2") == Decimal("3")  # unanchored; loaded last
    assert output("deepseek-coder") == Decimal("1")
    assert output("gpt-4o") is None
    # overriding a regex entry makes it the last loaded
    third = write(tmp_path, "3.yml", "models:\n" + entry("match_regex", "^deepseek-", "4"))
    table = PriceTable.load([first, second, third], bundled=False)
    assert output("deepseek-chat-v2") == Decimal("4")
    assert table.models() == ["deepseek-chat", "^deepseek-", "chat"]


def test_exact_entry_before_its_first_price_is_unpriced_even_when_a_regex_matches(
        tmp_path: Path) -> None:
    text = ("models:\n" + entry("match_regex", ".*", "1")
            + entry("match", "m", "2").replace("2020-01-01", "2030-01-01"))
    table = PriceTable.load([write(tmp_path, "p.yml", text)], bundled=False)
    assert table.price_at("m", at("2025-01-01T00:00:00")) is None
    assert table.price_at("other", at("2025-01-01T00:00:00")) is not None


def test_rows_are_sorted_and_naive_times_are_utc(tmp_path: Path) -> None:
    text = """\
models:
  - match: m
    prices:
      - {effective_from: "2025-03-01T08:00:00+08:00", currency: USD,
         input_cache_hit: 0, input_cache_miss: 0, output: 2}
      - {effective_from: 2025-01-01T00:00:00, currency: USD,
         input_cache_hit: 0, input_cache_miss: 0, output: 1}
      - {effective_from: "2025-02-01", currency: USD,
         input_cache_hit: 0, input_cache_miss: 0, output: 1.5}
"""
    table = PriceTable.load([write(tmp_path, "p.yml", text)], bundled=False)

    def output(when: str) -> Decimal | None:
        price = table.price_at("m", at(when))
        return None if price is None else price.output

    assert output("2024-12-31T23:59:59") is None
    assert output("2025-01-01T00:00:00") == Decimal("1")
    assert output("2025-02-01T00:00:00") == Decimal("1.5")
    assert output("2025-03-01T00:00:00") == Decimal("2")  # 08:00+08:00 is midnight UTC


def test_numbers_are_read_from_their_text_not_through_a_float(tmp_path: Path) -> None:
    text = """\
models:
  - match: m
    prices:
      - {effective_from: 2025-01-01T00:00:00Z, currency: USD,
         input_cache_hit: 0.1000000000000000000000000001, input_cache_miss: "0.3",
         output: 123456789.123456789}
"""
    price = PriceTable.load([write(tmp_path, "p.yml", text)], bundled=False).price_at("m", 2e9)
    assert price is not None
    assert str(price.input_cache_hit) == "0.1000000000000000000000000001"
    assert str(price.input_cache_miss) == "0.3"
    assert str(price.output) == "123456789.123456789"


# --- Hypothesis: request_cost against Fraction arithmetic ----------------------------------------

price_texts = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False,
                          allow_infinity=False).map(lambda d: format(d, "f"))
clock_minutes = st.integers(0, 1439)


@st.composite
def windows(draw: st.DrawFn) -> list[tuple[int, int, str]]:
    """Zero, one or two non-overlapping windows, possibly wrapping midnight."""
    count = draw(st.integers(0, 2))
    if count == 0:
        return []
    cuts = sorted(draw(st.sets(clock_minutes, min_size=2 * count, max_size=2 * count)))
    factors = [draw(st.sampled_from(["1", "0.5", "0.25", "0.75", "0.123456", "0.000001"]))
               for _ in range(count)]
    if count == 1:
        start, end = cuts if draw(st.booleans()) else cuts[::-1]
        return [(start, end, factors[0])]
    a, b, c, d = cuts
    spans = [(a, b), (c, d)] if draw(st.booleans()) else [(d, a), (b, c)]
    return [(start, end, factor) for (start, end), factor in zip(spans, factors, strict=True)]


@st.composite
def price_files(draw: st.DrawFn) -> tuple[str, list[tuple[int, tuple[str, str, str],
                                                           list[tuple[int, int, str]]]]]:
    days = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=3)))
    rows = []
    lines = ["models:", "  - match: m", "    prices:"]
    for day in days:
        prices = (draw(price_texts), draw(price_texts), draw(price_texts))
        spans = draw(windows())
        start = int(at("2025-01-01T00:00:00")) + day * 86400
        stamp = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines += [f"      - effective_from: {stamp}", "        currency: USD",
                  f"        input_cache_hit: {prices[0]}",
                  f"        input_cache_miss: {prices[1]}", f"        output: {prices[2]}",
                  "        discounts:"]
        lines += [f'          - {{from: "{lo // 60:02d}:{lo % 60:02d}", '
                  f'to: "{hi // 60:02d}:{hi % 60:02d}", factor: {factor}}}'
                  for lo, hi, factor in spans] or ["          []"]
        rows.append((start, prices, spans))
    return "\n".join(lines) + "\n", rows


def reference_cost(rows: list[tuple[int, tuple[str, str, str], list[tuple[int, int, str]]]],
                   t: float, hit: int, miss: int, output: int) -> Fraction | None:
    in_force = [row for row in rows if row[0] <= t]
    if not in_force:
        return None
    _, prices, spans = in_force[-1]
    minute = int(t // 60) % 1440
    factor = Fraction(1)
    for lo, hi, text in spans:
        if (lo <= minute < hi) if lo < hi else (minute >= lo or minute < hi):
            factor = Fraction(text)
    h, m, o = (Fraction(p) for p in prices)
    return (hit * h + miss * m + output * o) / 1_000_000 * factor


counts = st.integers(0, 10**12)


@settings(max_examples=300, deadline=None)
@given(price_files(), st.integers(-86400, 70 * 86400), counts, counts, counts)
def test_request_cost_matches_fraction_arithmetic(
        generated: tuple[str, list[tuple[int, tuple[str, str, str],
                                         list[tuple[int, int, str]]]]],
        offset: int, hit: int, miss: int, output: int) -> None:
    text, rows = generated
    table = PriceTable.from_texts([(text, "generated.yml")])
    t = at("2025-01-01T00:00:00") + offset
    price = table.price_at("m", t)
    expected = reference_cost(rows, t, hit, miss, output)
    if expected is None:
        assert price is None
        return
    assert price is not None
    cost = request_cost(price, t, input_tokens=hit + miss, cache_hit_tokens=hit,
                        cache_miss_tokens=miss, output_tokens=output)
    assert Fraction(cost) == expected


@settings(max_examples=300, deadline=None)
@given(price_files(), st.floats(-86400, 70 * 86400, allow_nan=False))
def test_factor_span_is_the_stretch_its_factor_holds(
        generated: tuple[str, list[tuple[int, tuple[str, str, str],
                                         list[tuple[int, int, str]]]]], offset: float) -> None:
    text, _ = generated
    price = PriceTable.from_texts([(text, "generated.yml")]).price_at(
        "m", at("2025-01-01T00:00:00") + 70 * 86400)
    assert price is not None
    t = at("2025-01-01T00:00:00") + offset
    factor, start, end = price.factor_span(t)
    assert start <= t < end
    assert factor == price.factor_at(t) == price.factor_at(start)
    if price.discounts:
        # Minute by minute to the end, the factor holds; nothing is cached past a change.
        assert end - start <= 86400 and start % 60 == end % 60 == 0
        assert all(price.factor_at(m) == factor for m in range(int(start), int(end), 60))
    else:
        assert (start, end) == (-math.inf, math.inf)


# --- hostile price files -----------------------------------------------------------------------

ROW = "currency: USD, input_cache_hit: 1, input_cache_miss: 2, output: 3"


def one_row(row: str, head: str = "match: m") -> str:
    return f"models:\n  - {head}\n    prices:\n      - {{{row}}}\n"


MALFORMED = [
    ("unknown entry key", "models:\n  - match: m\n    matc: x\n    prices: []\n",
     3, "unknown key 'matc'"),
    ("unknown row key", one_row(f"effective_from: 2025-01-01, {ROW}, cached: 1"), 4,
     "unknown key 'cached'"),
    ("missing output", one_row("effective_from: 2025-01-01, currency: USD, "
                               "input_cache_hit: 1, input_cache_miss: 2"),
     4, "missing required key 'output'"),
    ("missing prices", "models:\n  - match: m\n", 2, "missing required key 'prices'"),
    ("empty prices", "models:\n  - match: m\n    prices: []\n", 3, "at least one price"),
    ("negative price", one_row("effective_from: 2025-01-01, currency: USD, "
                               "input_cache_hit: -1, input_cache_miss: 2, output: 3"),
     4, "must not be negative"),
    ("exponent", one_row("effective_from: 2025-01-01, currency: USD, "
                         "input_cache_hit: 1e-3, input_cache_miss: 2, output: 3"),
     4, "plain decimal number"),
    ("price text", one_row("effective_from: 2025-01-01, currency: USD, "
                           "input_cache_hit: cheap, input_cache_miss: 2, output: 3"),
     4, "plain decimal number"),
    ("null price", one_row("effective_from: 2025-01-01, currency: USD, "
                           "input_cache_hit: null, input_cache_miss: 2, output: 3"),
     4, "not null"),
    ("factor zero", one_row(f"effective_from: 2025-01-01, {ROW}, "
                            "discounts: [{from: '16:30', to: '00:30', factor: 0}]"),
     4, "factor must be in (0, 1]"),
    ("factor above one", one_row(f"effective_from: 2025-01-01, {ROW}, "
                                 "discounts: [{from: '16:30', to: '00:30', factor: 1.5}]"),
     4, "factor must be in (0, 1]"),
    ("bad clock 24:00", one_row(f"effective_from: 2025-01-01, {ROW}, "
                                "discounts: [{from: '16:30', to: '24:00', factor: 0.5}]"),
     4, "HH:MM"),
    ("bad clock 9:30", one_row(f"effective_from: 2025-01-01, {ROW}, "
                               "discounts: [{from: '9:30', to: '10:30', factor: 0.5}]"),
     4, "HH:MM"),
    ("from equals to", one_row(f"effective_from: 2025-01-01, {ROW}, "
                               "discounts: [{from: '10:30', to: '10:30', factor: 0.5}]"),
     4, "from and to are equal"),
    ("overlapping windows", one_row(
        f"effective_from: 2025-01-01, {ROW}, discounts: [{{from: '16:30', to: '00:30', "
        "factor: 0.5}, {from: '00:00', to: '01:00', factor: 0.5}]"), 4, "overlaps"),
    ("missing factor", one_row(f"effective_from: 2025-01-01, {ROW}, "
                               "discounts: [{from: '10:30', to: '11:30'}]"),
     4, "missing required key 'factor'"),
    ("not ISO", one_row(f"effective_from: yesterday, {ROW}"), 4, "ISO 8601"),
    ("duplicate effective_from",
     "models:\n  - match: m\n    prices:\n"
     f"      - {{effective_from: 2025-01-01T00:00:00Z, {ROW}}}\n"
     f"      - {{effective_from: 2025-01-01T08:00:00+08:00, {ROW}}}\n",
     5, "duplicate effective_from for currency USD"),
    ("both match and match_regex", one_row(f"effective_from: 2025-01-01, {ROW}",
                                           "match: m\n    match_regex: m"),
     2, "exactly one of match"),
    ("neither match nor match_regex", "models:\n  - prices:\n      - "
     f"{{effective_from: 2025-01-01, {ROW}}}\n", 2, "exactly one of match"),
    ("bad regex", one_row(f"effective_from: 2025-01-01, {ROW}", "match_regex: '(deepseek'"),
     2, "missing closing )"),
    ("regex Go refuses", one_row(f"effective_from: 2025-01-01, {ROW}",
                                 "match_regex: '(?<name>x)'"), 2, "invalid or unsupported"),
    ("lower-case currency", one_row("effective_from: 2025-01-01, currency: usd, "
                                    "input_cache_hit: 1, input_cache_miss: 2, output: 3"),
     4, "three-letter ISO 4217"),
    ("duplicate match", "models:\n"
     f"  - match: m\n    prices: [{{effective_from: 2025-01-01, {ROW}}}]\n"
     f"  - match: m\n    prices: [{{effective_from: 2026-01-01, {ROW}}}]\n",
     4, "already listed at models[0]"),
    ("duplicate YAML key", "models:\n  - match: m\n    match: n\n"
     f"    prices: [{{effective_from: 2025-01-01, {ROW}}}]\n", 3, "duplicate key 'match'"),
    ("models not a list", "models: {m: 1}\n", 1, "must be a list"),
    ("unknown top-level key", "model: []\n", 1, "unknown key 'model'"),
    ("empty file", "", None, "the file is empty"),
    ("YAML syntax error", "models: [\n", 2, "invalid YAML"),
]


@pytest.mark.parametrize(("text", "line", "message"),
                         [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_files_name_file_and_line(tmp_path: Path, text: str, line: int | None,
                                            message: str) -> None:
    path = write(tmp_path, "bad.yml", text)
    with pytest.raises(ConfigError) as caught:
        PriceTable.load([path])
    error = caught.value
    assert isinstance(error, PriceFileError)
    assert message in str(error)
    assert error.file == path
    assert error.line == line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error).startswith(where)


def test_problems_name_the_entry(tmp_path: Path) -> None:
    text = one_row("effective_from: 2025-01-01, currency: usd, input_cache_hit: 1, "
                   "input_cache_miss: 2, output: 3", "match: deepseek-chat")
    with pytest.raises(ConfigError, match=r"models\[0\]\.prices\[0\]\.currency "
                                          r"\(entry 'deepseek-chat'\)"):
        PriceTable.load([write(tmp_path, "bad.yml", text)], bundled=False)


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    text = ("models:\n"
            f"  - match: a\n    prices: [{{effective_from: never, {ROW}}}]\n"
            "  - match: b\n    prices: [{effective_from: 2025-01-01, currency: EURO, "
            "input_cache_hit: 1, input_cache_miss: 2, output: 3}]\n")
    path = write(tmp_path, "bad.yml", text)
    with pytest.raises(PriceFileError) as caught:
        PriceTable.load([path], bundled=False)
    assert [problem.line for problem in caught.value.problems] == [3, 5]
    assert str(caught.value).count(f"{path}:") == 2


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "dir.yml").mkdir()
    with pytest.raises(ConfigError, match="cannot read file"):
        PriceTable.load([str(tmp_path / "dir.yml")], bundled=False)
