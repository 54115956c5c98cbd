"""Cost in `inferwatch report`: `api_usage` requests priced as the daemon's ledger prices them.

The same price table (the bundled `prices.yml`, plus `cost.pricing_files` when a config is
given), the same lookup (the entry's row in force at the request's time, in `cost.currency`
when listed, else converted with `cost.exchange_rates`), the same `request_cost` (hit, miss and
output tokens, discount windows) and the same days (calendar days of `cost.timezone`, UTC by
default). Amounts are exact decimals. A model without a price (or without an exchange rate)
is counted as unpriced per model, never costed at 0.

The computed cost is the figure reported everywhere. A `cost` the line carries is summed
beside it as `reported` (per day and in total, with the number of lines that carried one), so
a gateway's own figure can be compared, never substituted: it may use other prices, other
rounding, or not know the cache split.

A request id seen again within DEDUP_WINDOW_S (by event time) is not charged again, as in the
ledger; the ids kept are bounded (the ledger's DEDUP_MAX_IDS newest, trimmed in bulk), and so
are the days kept (MAX_DAYS newest; older ones fold into one `earlier` total).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from monitor.config_models import CostConfig
from monitor.cost.ledger import DEDUP_MAX_IDS, DEDUP_WINDOW_S, EXACT, ZERO, LocalDays
from monitor.cost.pricing import Price, PriceTable, convert, request_cost
from monitor.ingest.events import RequestEvent

log = logging.getLogger(__name__)

MAX_DAYS = 3660  # ten years of days; older days are folded together
MAX_UNPRICED_MODELS = 1000  # distinct names listed; the rest are counted under "__overflow__"
PRICE_CACHE_MODELS = 10_000
WHOLE_DAY_SLACK_S = 3600.0


@dataclass(slots=True)
class DayCost:
    """The priced requests of one day (or of every folded day, for `earlier`)."""

    requests: int = 0
    unpriced: int = 0
    amount: Decimal = ZERO
    reported: Decimal = ZERO
    reported_requests: int = 0


@dataclass
class CostTally:
    """Prices `api_usage` events one at a time; the totals by day and by model."""

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
        self.first = float("inf")  # the first and last request priced: which days are whole
        self.last = float("-inf")
        self._price_cache: dict[str, tuple[Price | None, float, float]] = {}

    def add(self, event: RequestEvent) -> None:
        t = event.timestamp
        if t < self.first:  # noqa: PLR1730 - a comparison, not a call, per request
            self.first = t
        if t > self.last:  # noqa: PLR1730
            self.last = t
        request_id = event.request_id
        if request_id is not None:
            before = self._seen.get(request_id)
            if before is not None and abs(t - before) <= DEDUP_WINDOW_S:
                self.duplicates += 1
                return
            self._remember(request_id, t)
        days = self._local_days
        day_name = days.day if days.start <= t < days.end else days(t)
        day = self.days.get(day_name)
        if day is None:
            day = self.days[day_name] = DayCost()
            if len(self.days) > 2 * MAX_DAYS:
                self._fold_days()
        day.requests += 1
        reported = event.reported_cost
        if reported is not None:
            day.reported = EXACT.add(day.reported, Decimal(reported))
            day.reported_requests += 1
        model = event.model
        amount = self._amount(model, event, t)
        if amount is None:
            day.unpriced += 1
            if model not in self.unpriced_by_model and (
                    len(self.unpriced_by_model) >= MAX_UNPRICED_MODELS):
                model = "__overflow__"
            self.unpriced_by_model[model] = self.unpriced_by_model.get(model, 0) + 1
            return
        day.amount = EXACT.add(day.amount, amount)
        if model not in self.by_model and len(self.by_model) >= MAX_UNPRICED_MODELS:
            model = "__overflow__"
        self.by_model[model] = EXACT.add(self.by_model.get(model, ZERO), amount)

    def _remember(self, request_id: str, t: float) -> None:
        seen = self._seen
        seen[request_id] = t
        self._newest = max(t, self._newest)
        if len(seen) > 2 * DEDUP_MAX_IDS:  # trimmed in bulk, as the ledger does
            horizon = self._newest - DEDUP_WINDOW_S
            kept = [(rid, when) for rid, when in seen.items() if when >= horizon]
            self._seen = dict(kept[-DEDUP_MAX_IDS:])

    def _fold_days(self) -> None:
        names = sorted(self.days)
        earlier = self.earlier or DayCost()
        for name in names[:-MAX_DAYS]:
            day = self.days.pop(name)
            earlier.requests += day.requests
            earlier.unpriced += day.unpriced
            earlier.amount = EXACT.add(earlier.amount, day.amount)
            earlier.reported = EXACT.add(earlier.reported, day.reported)
            earlier.reported_requests += day.reported_requests
        self.earlier = earlier

    def _amount(self, model: str, event: RequestEvent, t: float) -> Decimal | None:
        cached = self._price_cache.get(model)
        if cached is None or not cached[1] <= t < cached[2]:
            if len(self._price_cache) >= PRICE_CACHE_MODELS:
                self._price_cache.clear()
            cached = self._price_cache[model] = self.prices.price_span(
                model, t, currency=self.config.currency)
        price = cached[0]
        if price is None:
            return None
        try:
            amount = request_cost(price, t, input_tokens=event.input_tokens,
                                  cache_hit_tokens=event.cache_hit_tokens,
                                  cache_miss_tokens=event.cache_miss_tokens,
                                  output_tokens=event.output_tokens)
        except (ArithmeticError, ValueError) as exc:  # one odd request, never the report
            if len(self.priced_errors) < 10:
                self.priced_errors.append(f"cannot price a request of {model!r}: {exc}")
            return None
        if price.currency == self.config.currency:
            return amount
        return convert(amount, price.currency, self.config.currency,
                       self.config.exchange_rates)

    # -- results --------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return sum(d.requests for d in self.days.values()) + (
            self.earlier.requests if self.earlier else 0)

    @property
    def unpriced(self) -> int:
        return sum(self.unpriced_by_model.values())

    def total(self) -> Decimal:
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
        """Every day from the first to the last with a request, in order; days in between
        without one appear with zeros (they cost nothing, and the trend must see that)."""
        if not self.days:
            return []
        local = self._local_days
        names = sorted(self.days)
        found: list[tuple[str, DayCost]] = []
        current = names[0]
        last = names[-1]
        while True:
            found.append((current, self.days.get(current) or DayCost()))
            if current >= last or len(found) > MAX_DAYS:
                break
            current = _next_day(local, current)
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


def _next_day(days: LocalDays, name: str) -> str:
    """The calendar day after `name` (YYYY-MM-DD) in the tally's time zone."""
    following = date.fromisoformat(name) + timedelta(days=1)
    noon = datetime(following.year, following.month, following.day, 12, tzinfo=days.zone)
    return days(noon.timestamp())
