"""What one conversion adds to the ledger, before it is written: the rows, and their sums.

`Ledger.price` fills a `LedgerBatch`: a row per request, each request's amount as integer
units of its `Scale` (price row x discount factor x exchange rate), and the units summed per
`Charge` (day, minute, ledger key, scale), which become exact Decimal amounts once per charge
for the daily roll-ups (`DailyTotals`), the budgets' spend (`Spend`) and the cost counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from monitor.cost.money import EXACT, ZERO
from monitor.cost.pricing import Price


@dataclass(slots=True)
class DailyTotals:
    requests: int = 0
    unpriced: int = 0
    amount: Decimal = ZERO
    reported: Decimal = ZERO
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: DailyTotals) -> None:
        self.requests += other.requests
        self.unpriced += other.unpriced
        self.amount = EXACT.add(self.amount, other.amount)
        self.reported = EXACT.add(self.reported, other.reported)
        self.cache_hit_tokens += other.cache_hit_tokens
        self.cache_miss_tokens += other.cache_miss_tokens
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens


DayKey = tuple[str, str, str, str]  # day, source, model, user


@dataclass(slots=True)
class Spend:
    t: float  # the earliest request's
    amount: Decimal


@dataclass(frozen=True, slots=True, eq=False)
class Scale:
    """How a request of one price row, discount factor and exchange rate is charged: its
    tokens times the integer prices give `units`; the amount in cost.currency is exactly
    units x multiplier / 10**places."""

    price: Price
    factor: Decimal
    hit: int
    miss: int
    output: int
    multiplier: int
    places: int

    def amount(self, units: int) -> Decimal:
        return Decimal(units * self.multiplier).scaleb(-self.places, EXACT)


@dataclass(slots=True)
class Charge:
    """The priced requests of one (day, minute, source, model, user, scale)."""

    t: float  # the earliest request's
    scale: Scale
    units: int = 0
    requests: int = 0
    hit: int = 0
    miss: int = 0
    inputs: int = 0
    output: int = 0
    saved_hits: int = 0  # charged cache hits beyond `hit` (a split inferred from the input)

    def add(self, t: float, units: int, *, hit: int, miss: int, inputs: int,
            output: int) -> None:
        """One more request (the hot loop in `_price_source` does this inline)."""
        self.t = min(self.t, t)
        self.units += units
        self.requests += 1
        self.hit += hit
        self.miss += miss
        self.inputs += inputs
        self.output += output


@dataclass
class LedgerBatch:
    """What one checkpoint adds to the ledger."""

    rows: list[tuple[object, ...]] = field(default_factory=list)
    daily: dict[DayKey, DailyTotals] = field(default_factory=dict)
    # (source, model, user, minute, day) -> the spend of those requests, for the budgets
    spend: dict[tuple[str, str, str, int, str], Spend] = field(default_factory=dict)
    # (day, minute, ledger key id, scale) -> those requests, priced at the end
    charges: dict[tuple[str, int, int, Scale], Charge] = field(default_factory=dict)
    new_keys: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    # Cache-hit tokens by (source, model, user, id of the price row, discount factor), with
    # that row: each group is priced once, at the end of the batch (the row holds the id).
    hits: dict[tuple[str, str, str, int, Decimal], tuple[Price, int]] = field(
        default_factory=dict)
    duplicates: int = 0
