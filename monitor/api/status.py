"""The status page: `GET /` (alerts, silences, budgets, SLOs, sources, GPUs, the daemon) and
`GET /rules` (every rule group, each rule with an anchor that the alerts link to).

Server-rendered from the Jinja2 templates in `templates/` with autoescaping on, refreshed by
`<meta http-equiv="refresh">`: no JavaScript, no external resource, and a Content Security
Policy that forbids scripts altogether, so a label value that slipped past escaping still
could not run. The bearer token applies as on every other path (monitor/api/app.py).

The formatting helpers never raise: NaN, infinities, None and absurd magnitudes all render
as text, so odd data cannot turn the page into a 500.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from aiohttp import web

from monitor.api.status_model import AlertRow, BudgetRow, StatusSnapshot, StatusSource
from monitor.units import format_duration

DEFAULT_REFRESH_S = 10
DASH = "—"
SECURITY_HEADERS = {
    # Inline style attributes draw the bars; nothing else may load or run.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

STATUS_KEY: web.AppKey[StatusSource] = web.AppKey("status")
REFRESH_KEY = web.AppKey("status_refresh_s", int)


# -- formatting (template filters) -----------------------------------------------------------


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def number(value: object, digits: int = 4) -> str:
    """A number with `digits` significant digits; NaN, ±Inf and None as words."""
    if value is None:
        return DASH
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    finite = _finite(value)
    if finite is None:
        return str(value)
    return f"{finite:.{digits}g}"


def percent(ratio: object, digits: int = 1) -> str:
    finite = _finite(ratio)
    if finite is None:
        return number(ratio) if ratio is not None else DASH
    if abs(finite) >= 1e6:
        return f"{finite * 100:.3g} %"
    return f"{finite * 100:.{digits}f} %"


_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def binary_bytes(value: object) -> str:
    finite = _finite(value)
    if finite is None:
        return number(value) if value is not None else DASH
    size, unit = abs(finite), 0
    while size >= 1024 and unit < len(_BINARY_UNITS) - 1:
        size /= 1024
        unit += 1
    sign = "-" if finite < 0 else ""
    return f"{sign}{size:.0f} {_BINARY_UNITS[unit]}" if unit == 0 \
        else f"{sign}{size:.1f} {_BINARY_UNITS[unit]}"


def count(value: object) -> str:
    finite = _finite(value)
    if finite is None:
        return number(value) if value is not None else DASH
    return f"{finite:,.0f}" if abs(finite) < 1e15 else f"{finite:.3g}"


_SPANS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(seconds: object) -> str:
    """`3d 4h`, `5m 2s`, `12s`: the two largest units."""
    finite = _finite(seconds)
    if finite is None:
        return DASH
    if abs(finite) >= 1e4 * 365 * 86400:
        return "ages"
    whole, parts = round(abs(finite)), list[str]()
    for unit, size in _SPANS:
        amount, whole = divmod(whole, size)
        if amount or (unit == "s" and not parts):
            parts.append(f"{amount}{unit}")
        if len(parts) == 2:
            break
    return ("-" if finite < 0 else "") + " ".join(parts)


def quoted(value: object) -> str:
    """A label value as Prometheus prints it: in double quotes, `\\`, `"` and newlines
    escaped, so a value holding a quote cannot pass for the end of the label."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def config_duration(seconds: object) -> str:
    """A configured duration as it is written in the config (`200ms`, `1h30m`, `30d`)."""
    finite = _finite(seconds)
    if finite is None or abs(finite) >= 1e12:
        return DASH if finite is None else duration(finite)
    return format_duration(finite)


def bar_width(ratio: object) -> str:
    """A CSS width from a ratio, clamped to 0-100 %."""
    finite = _finite(ratio)
    if finite is None:
        return "0%"
    return f"{min(max(finite, 0.0), 1.0) * 100:.2f}%"


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _clock_filters(snapshot: StatusSnapshot) -> dict[str, Callable[..., str]]:
    zone = _zone(snapshot.timezone)
    now = snapshot.taken_at

    def when(seconds: object) -> str:
        finite = _finite(seconds)
        if finite is None or finite <= 0:
            return DASH
        try:
            return datetime.fromtimestamp(finite, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        except (OverflowError, OSError, ValueError):
            return number(finite)

    def relative(seconds: object) -> str:
        finite = _finite(seconds)
        if finite is None or finite <= 0:
            return ""
        delta = finite - now
        return f"in {duration(delta)}" if delta > 0.5 else f"{duration(-delta)} ago"

    return {"when": when, "relative": relative}


# -- bars -------------------------------------------------------------------------------------


def budget_bar(budget: BudgetRow) -> dict[str, Any]:
    """Widths (CSS) of the spend, the limit line and the forecast marker on one scale that
    fits all three, and a level for the colour."""
    values = [v for v in (budget.limit, budget.spent, budget.forecast) if _finite(v) is not None]
    scale = max([*values, 0.0])
    if scale <= 0:
        scale = 1.0
    spent = _finite(budget.spent) or 0.0
    limit = _finite(budget.limit)
    forecast = _finite(budget.forecast)
    ratio = spent / limit if limit else math.nan
    first = min(budget.thresholds, default=1.0)
    level = ("over" if ratio >= 1 else "warn" if ratio >= first else "ok") \
        if math.isfinite(ratio) else "ok"
    return {
        "spent": bar_width(spent / scale),
        "limit": None if limit is None else bar_width(limit / scale),
        "forecast": None if forecast is None else bar_width(forecast / scale),
        "thresholds": [bar_width(t * limit / scale) for t in budget.thresholds
                       if limit is not None and _finite(t) is not None and t < 1],
        "ratio": ratio,
        "forecast_ratio": forecast / limit if forecast is not None and limit else math.nan,
        "level": level,
    }


def level_of(ratio: object, *, warn: float, bad: float) -> str:
    finite = _finite(ratio)
    if finite is None:
        return "unknown"
    return "over" if finite >= bad else "warn" if finite >= warn else "ok"


# -- rendering --------------------------------------------------------------------------------


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.api", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update({"number": number, "percent": percent, "bytes": binary_bytes,
                        "count": count, "duration": duration, "width": bar_width,
                        "config_duration": config_duration,
                        "quoted": quoted})
    env.globals.update({"budget_bar": budget_bar, "level_of": level_of})
    return env


def render(template: str, snapshot: StatusSnapshot, *, refresh_s: int,
           **extra: Any) -> str:
    env = environment()
    context = {"s": snapshot, "refresh_s": refresh_s, **_clock_filters(snapshot), **extra}
    return env.get_template(template).render(context)


def render_status(snapshot: StatusSnapshot, *, refresh_s: int = DEFAULT_REFRESH_S) -> str:
    # The first card of each alert name carries id="alert-<name>": notifications link there.
    named: set[str] = set()
    cards: dict[str, list[tuple[AlertRow, bool]]] = {"firing": [], "pending": []}
    for alert in snapshot.alerts:
        cards.setdefault(alert.state, []).append((alert, alert.name not in named))
        named.add(alert.name)
    return render("status.html.j2", snapshot, refresh_s=refresh_s, firing=cards["firing"],
                  pending=cards["pending"])


def render_rules(snapshot: StatusSnapshot, *, refresh_s: int = DEFAULT_REFRESH_S) -> str:
    return render("rules.html.j2", snapshot, refresh_s=refresh_s)


def _html(text: str) -> web.Response:
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a "\ud800" escape in a log line, carried into a label) becomes
        # U+FFFD, as the JSON APIs (monitor/api/prom_json.py) and Go write it.
        body = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode(
            "utf-8", "replace")
    return web.Response(body=body, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


async def status_page(request: web.Request) -> web.Response:
    snapshot = request.app[STATUS_KEY].snapshot()
    return _html(render_status(snapshot, refresh_s=request.app[REFRESH_KEY]))


async def rules_page(request: web.Request) -> web.Response:
    snapshot = request.app[STATUS_KEY].snapshot()
    return _html(render_rules(snapshot, refresh_s=request.app[REFRESH_KEY]))


def add_status_page(app: web.Application, *, source: StatusSource,
                    refresh_s: int = DEFAULT_REFRESH_S) -> None:
    app[STATUS_KEY] = source
    app[REFRESH_KEY] = refresh_s
    app.router.add_get("/", status_page)
    app.router.add_get("/rules", rules_page)
