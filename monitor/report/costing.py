"""Cost in `inferwatch report`: `api_usage` requests priced as the daemon's ledger prices them.

The same price table (the bundled `prices.yml`, plus `cost.pricing_files` when a config is
given), the same lookup (`PriceTable.price_span`: the entry's row in force at the request's
time, in `cost.currency` when listed, else converted with `cost.exchange_rates`), the same
token rules as `request_cost` (hit and miss from the cache split; neither known: all input is
a miss; one known: the other is the rest of the input), the same discount windows and the
same days (calendar days of `cost.timezone`, UTC by default). Amounts are exact decimals. A
model without a price (or without an exchange rate) is counted as unpriced per model, never
costed at 0.

Pricing is deferred and grouped: each request adds its hit, miss and output tokens to a group
of its (day, model, price row, discount factor), and each group is priced once, with
`Price.cost`, when the results are read. A price is linear in the tokens and the arithmetic is
exact, so this is the very amount that pricing each request and adding them up gives — at
the cost of a few integer additions per request instead of Decimal arithmetic.

The computed cost is the figure reported everywhere. A `cost` the line carries is summed
beside it as `reported` (per day and in total, with the number of lines that carried one), so
a gateway's own figure can be compared, never substituted: it may use other prices, other
rounding, or not know the cache split.

A request id seen again within DEDUP_WINDOW_S (by event time) is not charged again, as in the
ledger; the ids kept are bounded (the ledger's DEDUP_MAX_IDS newest, trimmed in bulk), and so
are the days kept (MAX_DAYS newest; older ones fold into one `earlier` total).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from monitor.config_models import CostConfig
from monitor.cost.ledger import DEDUP_MAX_IDS, DEDUP_WINDOW_S
from monitor.cost.money import EXACT, ZERO
from monitor.cost.periods import LocalDays
from monitor.cost.pricing import Price, PriceTable, charged_split, convert
from monitor.ingest.events import RequestEvent

MAX_DAYS = 3660  # ten years of days; older days are folded together
MAX_MODELS = 1000  # distinct names listed; the rest are counted under "__overflow__"
PRICE_CACHE_MODELS = 10_000
WHOLE_DAY_SLACK_S = 3600.0
OVERFLOW = "__overflow__"
_ONE = Decimal(1)

# (model, id of the Price row or 0 when unpriced, discount factor) -> [requests, hit, miss,
# output, a time inside the group (for the discount window)]
GroupKey = tuple[str, int, Decimal]


@dataclass(slots=True)
class DayCost:
    """The requests of one day (or of every folded day, for `earlier`)."""

    requests: int = 0
    reported: Decimal = ZERO
    reported_requests: int = 0
    groups: dict[GroupKey, list[float]] = field(default_factory=dict)
    # Filled in by `CostTally.settle`:
    unpriced: int = 0
    amount: Decimal = ZERO

    def fold(self, other: DayCost) -> None:
        self.requests += other.requests
        self.reported = EXACT.add(self.reported, other.reported)
        self.reported_requests += other.reported_requests
        for key, (count, hit, miss, output, t) in other.groups.items():
            mine = self.groups.get(key)
            if mine is None:
                self.groups[key] = [count, hit, miss, output, t]
            else:
                mine[0] += count
                mine[1] += hit
                mine[2] += miss
                mine[3] += output


@dataclass
class CostTally:
    """Collects `api_usage` events; `settle()` prices them, by day and by model."""

    prices: PriceTable
    config: CostConfig
    days: dict[str, DayCost] = field(default_factory=dict)
    earlier: DayCost | None = None
    by_model: dict[str, Decimal] = field(default_factory=dict)
    unpriced_by_model: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    priced_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._local_days = LocalDays(self.config.timezone)
        self._seen: dict[str, float] = {}
        self._newest = float("-inf")
        self.first = float("inf")  # the first and last request: which days are whole
        self.last = float("-inf")
        self._price_cache: dict[str, tuple[Price | None, float, float]] = {}
        self._rows: dict[int, Price] = {}  # id -> price row, for the groups
        self._models: set[str] = set()
        self._settled = False

    def add(self, events: list[RequestEvent]) -> None:  # noqa: PLR0915 - the per-line loop
        """Collect a chunk of requests (one loop with everything bound locally: this runs for
        every api_usage line)."""
        if not events:
            return
        stamps = [e.timestamp for e in events]
        self.first = min(self.first, *stamps)
        self.last = max(self.last, *stamps)
        self._settled = False
        seen = self._seen
        window = DEDUP_WINDOW_S
        local_days = self._local_days
        all_days = self.days
        models = self._models
        price_cache = self._price_cache
        one = _ONE
        for event in events:
            t = event.timestamp
            request_id = event.request_id
            if request_id is not None:
                before = seen.get(request_id)
                if before is not None and -window <= t - before <= window:
                    self.duplicates += 1
                    continue
                seen[request_id] = t
            day_name = (local_days.day if local_days.start <= t < local_days.end
                        else local_days(t))
            day = all_days.get(day_name)
            if day is None:
                day = all_days[day_name] = DayCost()
            day.requests += 1
            reported = event.reported_cost
            if reported is not None:
                day.reported = EXACT.add(day.reported, Decimal(reported))
                day.reported_requests += 1
            model = event.model
            if model not in models:
                if len(models) >= MAX_MODELS:
                    model = OVERFLOW
                models.add(model)
            cached = price_cache.get(model)
            if cached is None or not cached[1] <= t < cached[2]:
                cached = self._price_span(model, t)
            price = cached[0]
            if price is None:
                key: GroupKey = (model, 0, one)
                hit = miss = output = 0
            else:
                key = (model, id(price), price.factor_at(t) if price.discounts else one)
                hit, miss = charged_split(event.input_tokens, event.cache_hit_tokens,
                                          event.cache_miss_tokens)
                output = event.output_tokens or 0
            group = day.groups.get(key)
            if group is None:
                day.groups[key] = [1, hit, miss, output, t]
            else:
                group[0] += 1
                group[1] += hit
                group[2] += miss
                group[3] += output
        self._newest = max(self._newest, self.last)
        if len(seen) > 2 * DEDUP_MAX_IDS:
            self._trim_ids()
        if len(all_days) > 2 * MAX_DAYS:
            self._fold_days()

    def _price_span(self, model: str, t: float) -> tuple[Price | None, float, float]:
        if len(self._price_cache) >= PRICE_CACHE_MODELS:
            self._price_cache.clear()
        found = self._price_cache[model] = self.prices.price_span(
            model, t, currency=self.config.currency)
        if found[0] is not None:
            self._rows[id(found[0])] = found[0]
        return found

    def _trim_ids(self) -> None:
        """Trimmed in bulk, as the ledger does: the newest DEDUP_MAX_IDS of the window."""
        horizon = self._newest - DEDUP_WINDOW_S
        kept = [(rid, when) for rid, when in self._seen.items() if when >= horizon]
        self._seen = dict(kept[-DEDUP_MAX_IDS:])

    def _fold_days(self) -> None:
        names = sorted(self.days)
        earlier = self.earlier or DayCost()
        for name in names[:-MAX_DAYS]:
            earlier.fold(self.days.pop(name))
        self.earlier = earlier

    # -- results --------------------------------------------------------------------------------

    def settle(self) -> None:
        """Price every group (see the module docstring); idempotent until the next `add`."""
        if self._settled:
            return
        self.by_model = {}
        self.unpriced_by_model = {}
        for day in (*self.days.values(), *([self.earlier] if self.earlier else [])):
            day.amount, day.unpriced = ZERO, 0
            for (model, row, _), group in day.groups.items():
                amount = self._group_amount(model, row, group)
                if amount is None:
                    count = int(group[0])
                    day.unpriced += count
                    self.unpriced_by_model[model] = self.unpriced_by_model.get(model, 0) + count
                    continue
                day.amount = EXACT.add(day.amount, amount)
                self.by_model[model] = EXACT.add(self.by_model.get(model, ZERO), amount)
        self._settled = True

    def _group_amount(self, model: str, row: int, group: list[float]) -> Decimal | None:
        price = self._rows.get(row)
        if price is None:
            return None
        _, hit, miss, output, t = group
        try:
            amount = price.cost(int(hit), int(miss), int(output), t)
        except (ArithmeticError, ValueError) as exc:  # odd requests, never the report
            if len(self.priced_errors) < 10:
                self.priced_errors.append(f"cannot price requests of {model!r}: {exc}")
            return None
        if price.currency == self.config.currency:
            return amount
        return convert(amount, price.currency, self.config.currency,
                       self.config.exchange_rates)

    @property
    def requests(self) -> int:
        return sum(d.requests for d in self.days.values()) + (
            self.earlier.requests if self.earlier else 0)

    @property
    def unpriced(self) -> int:
        self.settle()
        return sum(self.unpriced_by_model.values())

    def total(self) -> Decimal:
        self.settle()
        total = self.earlier.amount if self.earlier else ZERO
        for day in self.days.values():
            total = EXACT.add(total, day.amount)
        return total

    def reported_total(self) -> tuple[Decimal, int]:
        """The sum of the costs lines carried, and how many lines carried one."""
        total = self.earlier.reported if self.earlier else ZERO
        count = self.earlier.reported_requests if self.earlier else 0
        for day in self.days.values():
            total = EXACT.add(total, day.reported)
            count += day.reported_requests
        return total, count

    def daily(self) -> list[tuple[str, DayCost]]:
        """Every day with a request, in order, and the days in between without one (with
        zeros: they cost nothing, and the trend must see that) — gaps filled within the last
        MAX_DAYS days only, so a stray old timestamp cannot make the list long."""
        self.settle()
        if not self.days:
            return []
        names = sorted(self.days)
        last = names[-1]
        window_start = _day_before(self._local_days, last, MAX_DAYS - 1)
        found = [(name, self.days[name]) for name in names if name < window_start]
        current = max(names[0], window_start)
        while True:
            found.append((current, self.days.get(current) or DayCost()))
            if current >= last:
                break
            current = _next_day(self._local_days, current)
        return found

    def is_whole(self, name: str) -> bool:
        """Whether the logs cover day `name` (YYYY-MM-DD) from its start to its end, to within
        WHOLE_DAY_SLACK_S: the first and last day of a log that starts or stops mid-day do
        not (and would make a trend out of a partial day)."""
        start, end = _day_bounds(self._local_days, name)
        return self.first < start + WHOLE_DAY_SLACK_S and self.last >= end - WHOLE_DAY_SLACK_S


def _day_bounds(days: LocalDays, name: str) -> tuple[float, float]:
    day = date.fromisoformat(name)
    following = day + timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=days.zone).timestamp()
    end = datetime(following.year, following.month, following.day, tzinfo=days.zone)
    return start, end.timestamp()


def _day_before(days: LocalDays, name: str, count: int) -> str:
    """The calendar day `count` days before `name` (YYYY-MM-DD)."""
    earlier = date.fromisoformat(name) - timedelta(days=count)
    noon = datetime(earlier.year, earlier.month, earlier.day, 12, tzinfo=days.zone)
    return days(noon.timestamp())


def _next_day(days: LocalDays, name: str) -> str:
    """The calendar day after `name` (YYYY-MM-DD) in the tally's time zone."""
    following = date.fromisoformat(name) + timedelta(days=1)
    noon = datetime(following.year, following.month, following.day, 12, tzinfo=days.zone)
    return days(noon.timestamp())
