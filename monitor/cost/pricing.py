"""Price tables (SPEC §9): reading them, the price of a model at a time, the cost of a request.

A table is the bundled `prices.yml` followed by the `cost.pricing_files` (globs, each sorted,
in order). An entry in a later file replaces the whole entry with the same `match` (or the same
`match_regex` text) in an earlier one. Lookup of a model: an exact `match` wins over every
regex; among regex entries the one loaded last wins. `match_regex` is Go RE2 syntax and, like
Go's `regexp.MatchString`, unanchored: write `^…$` to match a whole name.

Within an entry, the row in force at time t is the one with the latest `effective_from` <= t;
before the first one the model is unpriced. One `effective_from` may carry one row per
currency (DeepSeek publishes CNY and USD lists that are not conversions of each other); the row
in the currency asked for wins, else the first listed. `effective_from` is ISO 8601; without a
zone it is UTC. Discount windows are UTC minutes of the day, half-open, may wrap midnight, and
the windows of one row never overlap (checked), so at most one factor applies.

Money is exact: prices are read from their YAML text, never through a float, and all arithmetic
runs in `_EXACT`, a context that traps any rounding instead of doing it.
"""

from __future__ import annotations

import bisect
import decimal
import functools
import glob
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from monitor.alerting.rulefmt import (
    FileProblem,
    ProblemsError,
    YamlDocument,
    kind_of,
    read_document,
    read_text_file,
)
from monitor.config_types import KeyPath
from monitor.config_yaml import format_key_path, one_line
from monitor.goregexp import Regexp, RegexpError, compile_go_regexp

# Every operation on prices and token counts is exact at this precision; a result that would
# need rounding raises decimal.Inexact rather than losing a digit of money.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.InvalidOperation, decimal.DivisionByZero,
                                decimal.Overflow, decimal.Inexact, decimal.Rounded])
_ONE = Decimal(1)
_MINUTES_PER_DAY = 1440
_TOKENS_PER_PRICE_UNIT = 6  # prices are per 10**6 tokens
TOKENS_PER_PRICE_UNIT = _TOKENS_PER_PRICE_UNIT

_MAX_PRICE_DIGITS = 30
_PRICE_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_CLOCK_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_ENTRY_KEYS = ("match", "match_regex", "prices")
_PRICE_KEYS = ("effective_from", "currency", "input_cache_hit", "input_cache_miss", "output",
               "discounts")
_DISCOUNT_KEYS = ("from", "to", "factor")
BUNDLED_FILE = "prices.yml"


class PriceFileError(ProblemsError):
    """A price file that cannot be used; `problems` names each reason with its line."""


@dataclass(frozen=True)
class Discount:
    """A daily UTC window [start_minute, end_minute) in which prices are multiplied by
    `factor`; when end <= start the window wraps past midnight."""

    start_minute: int
    end_minute: int
    factor: Decimal

    def applies(self, t: float) -> bool:
        minute = int(t // 60) % _MINUTES_PER_DAY
        if self.start_minute < self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute

    def spans(self) -> tuple[tuple[int, int], ...]:
        """The window as non-wrapping [start, end) minute ranges."""
        if self.start_minute < self.end_minute:
            return ((self.start_minute, self.end_minute),)
        return tuple(span for span in ((self.start_minute, _MINUTES_PER_DAY),
                                       (0, self.end_minute)) if span[0] < span[1])


@dataclass(frozen=True)
class Price:
    """One row of a price list: per 1M tokens, in `currency`, from `effective_from`."""

    effective_from: float
    currency: str
    input_cache_hit: Decimal
    input_cache_miss: Decimal
    output: Decimal
    discounts: tuple[Discount, ...] = ()

    @functools.cached_property
    def _scaled(self) -> tuple[int, int, int, int]:
        """(exponent, hit, miss, output): the three prices as integers times 10**exponent, so
        a request costs one integer sum and one exact scaling instead of Decimal products."""
        prices = (self.input_cache_hit, self.input_cache_miss, self.output)
        exponent = 0
        for price in prices:  # finite by validation: the exponent is an int
            exponent = min(exponent, int(price.as_tuple().exponent))
        hit, miss, output = (int(price.scaleb(-exponent, _EXACT)) for price in prices)
        return exponent, hit, miss, output

    def scaled(self) -> tuple[int, int, int, int]:
        """(exponent, hit, miss, output): the prices per 10**TOKENS_PER_PRICE_UNIT tokens as
        integers times 10**exponent."""
        return self._scaled

    def cost(self, hit: int, miss: int, output: int, t: float) -> Decimal:
        """The exact cost of these token counts at time t, in `currency`."""
        if hit < 0 or miss < 0 or output < 0:
            raise ValueError(f"token counts must not be negative: {(hit, miss, output)}")
        _, hit_price, miss_price, output_price = self._scaled
        units = hit * hit_price + miss * miss_price + output * output_price
        return self._amount(units, self.factor_at(t) if self.discounts else _ONE)

    def cache_saving(self, hit: int, factor: Decimal) -> Decimal:
        """What `hit` cache-hit tokens cost less than at the miss price, under the discount
        `factor` (`factor_at` of their time): linear in `hit`, so token sums can be priced
        once."""
        _, hit_price, miss_price, _ = self._scaled
        return self._amount(hit * (miss_price - hit_price), factor)

    def _amount(self, units: int, factor: Decimal) -> Decimal:
        amount = Decimal(units).scaleb(self._scaled[0] - _TOKENS_PER_PRICE_UNIT, _EXACT)
        return amount if factor == _ONE else _EXACT.multiply(amount, factor)

    def factor_span(self, t: float) -> tuple[Decimal, float, float]:
        """`factor_at(t)` and the [start, end) around t during which it holds: the stretch of
        the UTC day between the nearest window edges."""
        if not self.discounts:
            return _ONE, -math.inf, math.inf
        minute = int(t // 60)
        day_start = minute - minute % _MINUTES_PER_DAY
        edges = [0, _MINUTES_PER_DAY]
        for discount in self.discounts:
            edges += (discount.start_minute, discount.end_minute)
        of_day = minute - day_start
        start = max(edge for edge in edges if edge <= of_day)
        end = min(edge for edge in edges if edge > of_day)
        return self.factor_at(t), (day_start + start) * 60.0, (day_start + end) * 60.0

    def factor_at(self, t: float) -> Decimal:
        """The factor of the discount window containing t, else 1. Windows of one row never
        overlap, so there is never more than one to choose from."""
        for discount in self.discounts:
            if discount.applies(t):
                return discount.factor
        return _ONE


def request_cost(price: Price, t: float, *, input_tokens: int | None,
                 cache_hit_tokens: int | None, cache_miss_tokens: int | None,
                 output_tokens: int | None) -> Decimal:
    """The exact cost of one request at time t, in `price.currency` (input tokens split as
    `charged_split` says). Reasoning tokens are part of `output_tokens` and are not added
    again."""
    hit, miss = charged_split(input_tokens, cache_hit_tokens, cache_miss_tokens)
    return price.cost(hit, miss, output_tokens or 0, t)


def charged_split(input_tokens: int | None, cache_hit_tokens: int | None,
                  cache_miss_tokens: int | None) -> tuple[int, int]:
    """(hit, miss) input tokens as a request is charged: with neither known, all input is a
    miss; with one known, the other is the rest of the input."""
    hit, miss = cache_hit_tokens, cache_miss_tokens
    if hit is None and miss is None:
        return 0, input_tokens or 0
    if hit is None or miss is None:
        known = hit if hit is not None else miss
        assert known is not None
        rest = max((input_tokens or 0) - known, 0)
        return (known, rest) if hit is not None else (rest, known)
    return hit, miss


def convert(amount: Decimal, currency: str, to: str,
            rates: Mapping[str, Decimal]) -> Decimal | None:
    """`amount` in `currency` as an amount in `to`, where `rates` maps a currency to units of
    `to` per unit (cost.exchange_rates, relative to cost.currency); None with no rate."""
    if currency == to:
        return amount
    rate = rates.get(currency)
    if rate is None:
        return None
    return _EXACT.multiply(amount, rate)


@dataclass(frozen=True)
class _Entry:
    """One model entry: its name or pattern, its rows grouped by effective_from, ascending."""

    key: str  # the `match` text, or the `match_regex` text
    regex: Regexp | None
    starts: tuple[float, ...]
    rows: tuple[tuple[Price, ...], ...]  # rows[i]: those with effective_from == starts[i]

    def matches(self, model: str) -> bool:
        return self.regex.search(model) is not None if self.regex is not None else (
            model == self.key)

    def price_at(self, t: float, currency: str | None) -> Price | None:
        return self.price_span(t, currency)[0]

    def price_span(self, t: float, currency: str | None) -> tuple[Price | None, float, float]:
        """The row in force at t and the [start, end) during which it stays in force."""
        index = bisect.bisect_right(self.starts, t) - 1
        end = self.starts[index + 1] if index + 1 < len(self.starts) else math.inf
        if index < 0:
            return None, -math.inf, end
        rows = self.rows[index]
        row = next((row for row in rows if row.currency == currency), rows[0])
        return row, self.starts[index], end


class PriceTable:
    """Prices by model and time; build it with `load`."""

    def __init__(self, exact: Mapping[str, _Entry], regexes: Sequence[_Entry]) -> None:
        self._exact = dict(exact)
        self._regexes = tuple(regexes)  # in load order; the last match wins

    @classmethod
    def load(cls, pricing_files: Sequence[str] = (), *, bundled: bool = True) -> PriceTable:
        """The bundled table (unless `bundled` is False) overridden by each file the globs in
        `pricing_files` match. PriceFileError (a ConfigError) naming file:line on any problem."""
        sources: list[tuple[str, str]] = []
        if bundled:
            resource = resources.files("monitor.cost").joinpath(BUNDLED_FILE)
            sources.append((resource.read_text(encoding="utf-8"), str(resource)))
        for pattern in pricing_files:
            paths = sorted(glob.glob(pattern))  # noqa: PTH207 - absolute str globs from config
            sources.extend((read_text_file(path, PriceFileError), path) for path in paths)
        return cls.from_texts(sources)

    @classmethod
    def from_texts(cls, sources: Iterable[tuple[str, str]]) -> PriceTable:
        """A table from (text, file name) documents, later ones overriding earlier ones."""
        exact: dict[str, _Entry] = {}
        regexes: dict[str, _Entry] = {}  # insertion order is load order
        for text, file in sources:
            for entry in _parse_price_file(text, file):
                if entry.regex is None:
                    exact[entry.key] = entry
                else:
                    regexes.pop(entry.key, None)  # an override counts as loaded last
                    regexes[entry.key] = entry
        return cls(exact, list(regexes.values()))

    def price_at(self, model: str, t: float, *, currency: str | None = None) -> Price | None:
        """The row in force for `model` at t: in `currency` when the entry lists one for that
        effective_from, else the first listed; None when the model is unpriced at t."""
        entry = self._exact.get(model)
        if entry is None:
            entry = next((regex_entry for regex_entry in reversed(self._regexes)
                          if regex_entry.matches(model)), None)
        return None if entry is None else entry.price_at(t, currency)

    def price_span(self, model: str, t: float, *, currency: str | None = None
                   ) -> tuple[Price | None, float, float]:
        """`price_at` and the [start, end) times during which its answer for `model` holds,
        so a caller pricing many requests can look the model up once per price change."""
        entry = self._exact.get(model)
        if entry is None:
            entry = next((regex_entry for regex_entry in reversed(self._regexes)
                          if regex_entry.matches(model)), None)
        if entry is None:
            return None, -math.inf, math.inf
        return entry.price_span(t, currency)

    def models(self) -> list[str]:
        """Every `match` name, then every `match_regex` pattern, each sorted."""
        return sorted(self._exact) + sorted(entry.key for entry in self._regexes)


# --- reading a price file ---------------------------------------------------------------------


@dataclass
class _Reader:
    """Validates one document, collecting every problem with its line and key."""

    document: YamlDocument
    problems: list[FileProblem]
    names: dict[int, str] = field(default_factory=dict)  # models[i] -> its match text

    def problem(self, path: KeyPath, message: str) -> None:
        """Record a problem; the message starts with the key path and the entry's name, so
        each line of the error says which model and which row it is about."""
        key = format_key_path(path)
        where = key
        if len(path) >= 2 and path[0] == "models" and path[1] in self.names:
            where = f"{key} (entry {self.names[int(path[1])]!r})"
        text = f"{where}: {message}" if where else message
        self.problems.append(FileProblem(one_line(text), self.document.line(path), key or None))

    def mapping(self, value: Any, path: KeyPath, allowed: Sequence[str],
                required: Sequence[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, not {kind_of(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.problem((*path, key), f"unknown key {str(key)!r}; expected one of "
                                           f"{', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.problem(path, f"missing required key {key!r}")
        return {str(key): item for key, item in value.items() if key in allowed}

    def text(self, value: Any, path: KeyPath) -> str | None:
        if isinstance(value, (dict, list)) or value is None or value.is_null:
            self.problem(path, f"must be a non-empty scalar, not {kind_of(value)}")
            return None
        if not str(value):
            self.problem(path, "must not be empty")
            return None
        return str(value)

    def amount(self, value: Any, path: KeyPath, *, what: str = "price") -> Decimal | None:
        text = self.text(value, path)
        if text is None:
            return None
        if not _PRICE_RE.fullmatch(text) or sum(c.isdigit() for c in text) > _MAX_PRICE_DIGITS:
            self.problem(path, f"{what} must be a plain decimal number such as 0.28, with at "
                               f"most {_MAX_PRICE_DIGITS} digits (got {text!r})")
            return None
        amount = Decimal(text)
        if amount < 0:
            self.problem(path, f"{what} must not be negative (got {text})")
            return None
        return amount

    def read(self) -> list[_Entry]:
        if self.document.data is None:
            self.problem((), "the file is empty: expected a mapping with a `models` list")
            return []
        root = self.mapping(self.document.data, (), ("models",), ("models",))
        if root is None or "models" not in root:
            return []
        models = root["models"]
        if not isinstance(models, list):
            self.problem(("models",), f"must be a list, not {kind_of(models)}")
            return []
        entries: list[_Entry] = []
        seen: dict[tuple[bool, str], int] = {}
        for index, item in enumerate(models):
            entry = self.entry(item, ("models", index))
            if entry is None:
                continue
            identity = (entry.regex is not None, entry.key)
            if identity in seen:
                kind = "match_regex" if entry.regex is not None else "match"
                self.problem(("models", index), (
                    f"{kind} {entry.key!r} is already listed at models[{seen[identity]}]; "
                    "list all its prices in one entry"))
                continue
            seen[identity] = index
            entries.append(entry)
        return entries

    def entry(self, value: Any, path: KeyPath) -> _Entry | None:
        fields = self.mapping(value, path, _ENTRY_KEYS, ("prices",))
        if fields is None:
            return None
        if ("match" in fields) == ("match_regex" in fields):
            self.problem(path, "needs exactly one of match (a model name) and match_regex")
            return None
        regex: Regexp | None = None
        if "match" in fields:
            key = self.text(fields["match"], (*path, "match"))
        else:
            key = self.text(fields["match_regex"], (*path, "match_regex"))
        if key is not None:
            self.names[int(path[1])] = key
            if "match_regex" in fields:
                try:
                    regex = compile_go_regexp(key)
                except RegexpError as exc:
                    self.problem((*path, "match_regex"),
                                 f"invalid regular expression: {exc}")
                    key = None
        rows = self.rows(fields.get("prices"), (*path, "prices"))
        if key is None or not rows:
            return None
        grouped = [(start, tuple(group)) for start, group in
                   itertools.groupby(sorted(rows, key=lambda row: row.effective_from),
                                     key=lambda row: row.effective_from)]
        return _Entry(key, regex, tuple(start for start, _ in grouped),
                      tuple(group for _, group in grouped))

    def rows(self, value: Any, path: KeyPath) -> list[Price]:
        if not isinstance(value, list):
            self.problem(path, f"must be a non-empty list of prices, not {kind_of(value)}")
            return []
        if not value:
            self.problem(path, "must list at least one price")
            return []
        rows: list[Price] = []
        seen: dict[tuple[float, str], int] = {}
        for index, item in enumerate(value):
            row = self.row(item, (*path, index))
            if row is None:
                continue
            identity = (row.effective_from, row.currency)
            if identity in seen:
                self.problem((*path, index, "effective_from"), (
                    f"duplicate effective_from for currency {row.currency} (also at "
                    f"prices[{seen[identity]}]); each time may have one row per currency"))
                continue
            seen[identity] = index
            rows.append(row)
        return rows

    def row(self, value: Any, path: KeyPath) -> Price | None:
        fields = self.mapping(value, path, _PRICE_KEYS, _PRICE_KEYS[:-1])
        if fields is None:
            return None
        start = self.instant(fields.get("effective_from"), (*path, "effective_from"))
        currency = self.currency(fields.get("currency"), (*path, "currency"))
        amounts = [self.amount(fields.get(key), (*path, key)) if key in fields else None
                   for key in ("input_cache_hit", "input_cache_miss", "output")]
        discounts = self.discounts(fields.get("discounts", []), (*path, "discounts"))
        if start is None or currency is None or discounts is None:
            return None
        hit, miss, output = amounts
        if hit is None or miss is None or output is None:
            return None
        return Price(start, currency, hit, miss, output, discounts)

    def instant(self, value: Any, path: KeyPath) -> float | None:
        if value is None:
            return None  # reported as a missing key
        text = self.text(value, path)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.problem(path, "must be an ISO 8601 time such as 2025-09-05T16:00:00Z "
                               f"(got {text!r})")
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    def currency(self, value: Any, path: KeyPath) -> str | None:
        if value is None:
            return None
        text = self.text(value, path)
        if text is not None and not _CURRENCY_RE.fullmatch(text):
            self.problem(path, f"must be a three-letter ISO 4217 code such as CNY or USD "
                               f"(got {text!r})")
            return None
        return text

    def discounts(self, value: Any, path: KeyPath) -> tuple[Discount, ...] | None:
        if not isinstance(value, list):
            self.problem(path, f"must be a list of discount windows, not {kind_of(value)}")
            return None
        windows: list[Discount] = []
        for index, item in enumerate(value):
            window = self.discount(item, (*path, index))
            if window is None:
                return None
            for other_index, other in enumerate(windows):
                if _overlap(window, other):
                    self.problem((*path, index), f"overlaps discount window {other_index} "
                                                 "of the same price")
                    return None
            windows.append(window)
        return tuple(windows)

    def discount(self, value: Any, path: KeyPath) -> Discount | None:
        fields = self.mapping(value, path, _DISCOUNT_KEYS, _DISCOUNT_KEYS)
        if fields is None or len(fields) < len(_DISCOUNT_KEYS):
            return None
        start = self.minute(fields["from"], (*path, "from"))
        end = self.minute(fields["to"], (*path, "to"))
        factor = self.amount(fields["factor"], (*path, "factor"), what="factor")
        if factor is not None and not 0 < factor <= 1:
            self.problem((*path, "factor"), f"factor must be in (0, 1] (got {factor})")
            factor = None
        if start is not None and start == end:
            self.problem(path, "from and to are equal: the window would be empty")
            return None
        if start is None or end is None or factor is None:
            return None
        return Discount(start, end, factor)

    def minute(self, value: Any, path: KeyPath) -> int | None:
        text = self.text(value, path)
        if text is None:
            return None
        clock = _CLOCK_RE.fullmatch(text)
        if clock is None:
            self.problem(path, f"must be a UTC time of day HH:MM, 00:00 to 23:59 (got {text!r})")
            return None
        return int(clock.group(1)) * 60 + int(clock.group(2))


def _overlap(first: Discount, second: Discount) -> bool:
    return any(a_start < b_end and b_start < a_end
               for a_start, a_end in first.spans() for b_start, b_end in second.spans())


def _parse_price_file(text: str, file: str) -> list[_Entry]:
    """The entries of one price file; PriceFileError listing every problem, each with its
    line."""
    document = read_document(text, file, PriceFileError)
    reader = _Reader(document, list(document.problems))
    entries = reader.read()
    if reader.problems:
        raise PriceFileError(reader.problems, file=file)
    return entries
