"""`inferwatch cost report`: spend by model, user or source over a period, from the ledger.

It opens the state file read-only (SQLite WAL lets it read while the daemon writes), so it
works whether the daemon runs or not. Whole local days of the range come from the daily
roll-ups (kept forever); the parts of days at either end of a `--from/--to` range come from
the ledger rows (kept for `cost.ledger_retention`). Amounts are exact decimals throughout and
printed as plain decimal text.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from monitor.config import Config
from monitor.cost import ledger_rows
from monitor.cost.forecast import forecast_at
from monitor.cost.money import EXACT, ZERO, money_text
from monitor.cost.periods import LocalDays, period_at
from monitor.errors import StateError, UsageError
from monitor.storage import STATE_FILE_NAME

By = Literal["model", "user", "source"]
LEDGER_SCHEMA_VERSION = 9  # the ledger as rows, keys and spans (monitor/cost/ledger_rows.py)


@dataclass
class Spend:
    """What was spent in [start, end)."""

    start: float
    end: float
    total: Decimal = ZERO
    requests: int = 0
    unpriced: int = 0
    by: dict[str, Decimal] = field(default_factory=dict)

    def add(self, key: str, amount: Decimal | None, requests: int = 1,
            unpriced: int = 0) -> None:
        self.requests += requests
        self.unpriced += unpriced
        if amount is not None:
            self.total = EXACT.add(self.total, amount)
            self.by[key] = EXACT.add(self.by.get(key, ZERO), amount)


@dataclass(frozen=True)
class BudgetLine:
    name: str
    period: str
    limit: Decimal
    spent: Decimal
    forecast: Decimal | None

    @property
    def ratio(self) -> Decimal:
        return EXACT.divide(self.spent, self.limit)


def open_readonly(state_directory: Path) -> sqlite3.Connection:
    """The state file, read-only; StateError when it is missing or older than the ledger."""
    path = state_directory / STATE_FILE_NAME
    if not path.is_file():
        raise StateError(f"no state file at {path}: has inferwatch run with storage.path "
                         f"{state_directory}?")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    if version < LEDGER_SCHEMA_VERSION:
        connection.close()
        raise StateError(f"{path} predates this version's cost ledger (schema {version}, "
                         f"wanted {LEDGER_SCHEMA_VERSION}); start the daemon once to upgrade it")
    return connection


def spend(connection: sqlite3.Connection, *, start: float, end: float, timezone: str,
          currency: str, by: By, match: Mapping[str, str] | None = None) -> Spend:
    """Spend in [start, end): whole days from `cost_daily`, the rest from `ledger` rows;
    `match` keeps only rows whose model, user or source have the given values."""
    result = Spend(start, end)
    if end <= start:
        return result
    wanted = sorted((match or {}).items())
    if any(name not in ("model", "user", "source") for name, _ in wanted):
        raise ValueError(f"cannot match on {wanted}")
    extra = "".join(f" AND {name} = ?" for name, _ in wanted)
    extra_params = [value for _, value in wanted]
    days = LocalDays(timezone)
    first_start, first_end, _ = days.bounds(start)
    full_from = start if first_start == start else first_end  # the first midnight >= start
    full_to = days.bounds(end)[0]  # the last midnight <= end
    partial = [(start, end)]
    if full_from < full_to:
        for key, requests, unpriced, amount in connection.execute(
                f"SELECT {by}, requests, unpriced, amount FROM cost_daily "  # noqa: S608 - `by` is a Literal
                f"WHERE currency = ? AND day >= ? AND day < ?{extra}",
                (currency, days(full_from), days(full_to), *extra_params)):
            priced = requests > unpriced  # an all-unpriced row has no amount to show
            result.add(key, Decimal(amount) if priced else None, requests, unpriced)
        partial = [(start, full_from), (full_to, end)]
    for lo, hi in partial:
        ids = ledger_rows.id_range(connection, lo, hi) if lo < hi else None
        if ids is None:
            continue
        for key, units, places in connection.execute(
                f"SELECT {by}, amount_units, amount_places FROM ledger "  # noqa: S608 - `by` is a Literal
                f"WHERE id BETWEEN ? AND ? AND currency = ? AND t >= ? AND t < ?{extra}",
                (*ids, currency, lo, hi, *extra_params)):
            amount = ledger_rows.amount_of(units, places)
            result.add(key, amount, unpriced=int(amount is None))
    return result


# -- output -------------------------------------------------------------------------------------


def iso(t: float, timezone: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(timezone)).isoformat()


def as_json(config: Config, kind: str, result: Spend, budgets: Sequence[BudgetLine]) -> str:
    document: dict[str, Any] = {
        "currency": config.cost.currency,
        "timezone": config.cost.timezone,
        "period": {"kind": kind, "start": iso(result.start, config.cost.timezone),
                   "end": iso(result.end, config.cost.timezone)},
        "total": money_text(result.total),
        "requests": result.requests,
        "by": {key: money_text(amount) for key, amount in sorted(
            result.by.items(), key=lambda item: (-item[1], item[0]))},
        "budgets": [{"name": b.name, "period": b.period, "limit": money_text(b.limit),
                     "spent": money_text(b.spent), "ratio": money_text(round(b.ratio, 6)),
                     "forecast": None if b.forecast is None else money_text(b.forecast)}
                    for b in budgets],
        "unpriced_requests": result.unpriced,
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def as_csv(config: Config, by: By, result: Spend) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([by, "amount", "currency"])
    for key, amount in sorted(result.by.items(), key=lambda item: (-item[1], item[0])):
        writer.writerow([key, money_text(amount), config.cost.currency])
    writer.writerow(["(total)", money_text(result.total), config.cost.currency])
    return out.getvalue()


def as_table(config: Config, kind: str, by: By, result: Spend,
             budgets: Sequence[BudgetLine]) -> str:
    tz = config.cost.timezone
    currency = config.cost.currency
    lines = [f"spend {iso(result.start, tz)} .. {iso(result.end, tz)} ({kind}, {tz}), "
             f"in {currency}"]
    rows = sorted(result.by.items(), key=lambda item: (-item[1], item[0]))
    width = max([len(by), 7, *(len(key or "(none)") for key, _ in rows)])
    lines.append(f"  {by:<{width}}  {'amount':>16}  {'share':>6}")
    for key, amount in rows:
        share = f"{float(amount / result.total) * 100:5.1f}%" if result.total else "     -"
        lines.append(f"  {key or '(none)':<{width}}  {money_text(round(amount, 6)):>16}  "
                     f"{share}")
    lines.append(f"  {'total':<{width}}  {money_text(round(result.total, 6)):>16}  "
                 f"({result.requests} requests, {result.unpriced} unpriced)")
    if budgets:
        lines.append("budgets (each over its own current period)")
        for b in budgets:
            forecast = "-" if b.forecast is None else money_text(round(b.forecast, 2))
            lines.append(f"  {b.name:<16} {b.period:<11} {money_text(round(b.spent, 2)):>12}"
                         f" / {money_text(b.limit):<10} {float(b.ratio) * 100:6.1f}%"
                         f"  forecast {forecast}")
    return "\n".join(lines)


def parse_moment(text: str, timezone: str) -> float:
    """`--from`/`--to`: an ISO 8601 date (local midnight) or date-time; without an offset it
    is local time in cost.timezone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time "
                         "(2026-11-01 or 2026-11-01T08:00:00+08:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()


def budget_lines(connection: sqlite3.Connection, config: Config, now: float
                 ) -> list[BudgetLine]:
    """Each budget's spend over its own current period (whole days so far from the roll-ups,
    today from the ledger) and its forecast, as the daemon computes them."""
    zone = ZoneInfo(config.cost.timezone)
    lines = []
    for budget in config.cost.budgets:
        period = period_at(budget.period, now, zone)
        match = {name: value for name in ("model", "user", "source")
                 if (value := getattr(budget.match, name)) is not None}
        spent = spend(connection, start=period.start, end=now, timezone=config.cost.timezone,
                      currency=config.cost.currency, by="model", match=match)
        forecast = forecast_at(connection, budget, currency=config.cost.currency, zone=zone,
                               now=now)
        lines.append(BudgetLine(budget.name, period.label, budget.limit, spent.total,
                                forecast))
    return lines


def run_report(config: Config, *, period: str | None, start: str | None, end: str | None,
               by: By, output: str, now: float | None = None) -> str:
    """The report as text in `output` format (table, json or csv)."""
    now = time.time() if now is None else now
    tz = config.cost.timezone
    if period is not None and (start is not None or end is not None):
        raise UsageError("use either --period or --from/--to, not both")
    if end is not None and start is None:
        raise UsageError("--to needs --from")
    if start is not None:
        try:
            lo = parse_moment(start, tz)
            hi = parse_moment(end, tz) if end is not None else now
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if hi <= lo:
            raise UsageError("--to must be after --from")
        kind = "custom"
    else:
        kind = period or "month"
        current = period_at(kind, now, ZoneInfo(tz))  # type: ignore[arg-type]
        lo, hi = current.start, current.end
    connection = open_readonly(Path(config.storage.path))
    try:
        result = spend(connection, start=lo, end=min(hi, now) if hi > now else hi,
                       timezone=tz, currency=config.cost.currency, by=by)
        result.end = hi
        budgets = budget_lines(connection, config, now)
    finally:
        connection.close()
    if output == "json":
        return as_json(config, kind, result, budgets)
    if output == "csv":
        return as_csv(config, by, result)
    return as_table(config, kind, by, result, budgets)
