"""The HTML report's charts as plain data for the template to draw as inline SVG: coordinates
already computed, labels already formatted — no JavaScript, no fonts, nothing fetched.

Three charts: latency percentiles (p50/p95/p99) per timeline bin, errors per bin stacked by
class, and cost per day with the fitted Theil-Sen trend line. Every label is text the
template escapes; nothing here is markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from monitor.ingest.events import ERROR_CLASSES

WIDTH = 720
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 14, 34
CLASS_COLOURS = dict(zip(ERROR_CLASSES, ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                                         "#1f77b4", "#17becf", "#7f7f7f"), strict=True))
PERCENTILE_COLOURS = {"p50": "#2ca02c", "p95": "#ff7f0e", "p99": "#d62728"}
COST_COLOUR = "#1f77b4"
TREND_COLOUR = "#d62728"


@dataclass(frozen=True)
class Tick:
    position: float
    label: str
    anchor: str = "middle"  # SVG text-anchor: the outermost x labels stay inside the chart


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Line:
    name: str
    colour: str
    points: str  # "x,y x,y …" for <polyline points=…>
    dashed: bool = False


@dataclass
class Chart:
    title: str
    unit: str
    width: int = WIDTH
    height: int = HEIGHT
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    empty: str | None = None  # why there is nothing to draw

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """left, top, right, bottom of the plotting area."""
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def nice_step(span: float, ticks: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten giving about `ticks` ticks over `span`."""
    raw = span / ticks if span > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.6g}"


def _y_axis(chart: Chart, top_value: float) -> tuple[float, float]:
    """Ticks from 0 to a nice maximum; returns (maximum, pixels per unit)."""
    step = nice_step(top_value)
    maximum = max(step, math.ceil(top_value / step) * step)
    _, top, _, bottom = chart.plot
    scale = (bottom - top) / maximum
    value = 0.0
    while value <= maximum + step / 2:
        chart.y_ticks.append(Tick(bottom - value * scale, _fmt(value)))
        value += step
    return maximum, scale


def _time_label(t: float, span: float) -> str:
    moment = datetime.fromtimestamp(t, UTC)
    return f"{moment:%m-%d}" if span > 4 * 86400 else f"{moment:%m-%d %H:%M}"


def _x_axis(chart: Chart, start: float, end: float) -> float:
    """Time ticks over [start, end]; returns pixels per second."""
    left, _, right, _ = chart.plot
    span = max(end - start, 1.0)
    scale = (right - left) / span
    count = 4  # five labels: room for "MM-DD HH:MM" at 13px even when the chart is narrow
    for index in range(count + 1):
        t = start + span * index / count
        anchor = "start" if index == 0 else "end" if index == count else "middle"
        chart.x_ticks.append(Tick(left + (t - start) * scale, _time_label(t, span), anchor))
    return scale


def latency_chart(document: dict[str, Any]) -> Chart:
    chart = Chart("Latency percentiles per " + _bin_name(document), "seconds")
    bins = [b for b in document["timeline"]["bins"] if b["latency_seconds"]]
    if not bins:
        chart.empty = "no request with a latency"
        return chart
    width = document["timeline"]["bin_seconds"]
    starts = [_epoch(b["start"]) + width / 2 for b in bins]  # a bin is drawn at its middle
    top = max(b["latency_seconds"]["p99"] for b in bins)
    _, y_scale = _y_axis(chart, top)
    x_scale = _x_axis(chart, starts[0] - width / 2, starts[-1] + width / 2)
    left, _, _, bottom = chart.plot
    origin = starts[0] - width / 2
    for name, colour in PERCENTILE_COLOURS.items():
        points = " ".join(
            f"{left + (t - origin) * x_scale:.1f},"
            f"{bottom - b['latency_seconds'][name] * y_scale:.1f}"
            for t, b in zip(starts, bins, strict=True))
        chart.lines.append(Line(name, colour, points))
        chart.legend.append((name, colour))
    return chart


def errors_chart(document: dict[str, Any]) -> Chart:
    chart = Chart("Errors per " + _bin_name(document), "requests")
    bins = document["timeline"]["bins"]
    if not any(b["errors"] for b in bins):
        chart.empty = "no errors"
        return chart
    width = document["timeline"]["bin_seconds"]
    start, end = _epoch(bins[0]["start"]), _epoch(bins[-1]["start"]) + width
    _, y_scale = _y_axis(chart, max(b["errors"] for b in bins))
    x_scale = _x_axis(chart, start, end)
    left, _, _, bottom = chart.plot
    bar = max(width * x_scale * 0.9, 1.0)
    used: list[str] = []
    for b in bins:
        x = left + (_epoch(b["start"]) - start) * x_scale
        y = float(bottom)
        for name, count in b["errors_by_class"].items():
            height = count * y_scale
            y -= height
            chart.rects.append(Rect(x, y, bar, height, CLASS_COLOURS.get(name, "#7f7f7f"),
                                    f"{b['start']}: {count:,} {name}"))
            if name not in used:
                used.append(name)
    chart.legend = [(name, CLASS_COLOURS.get(name, "#7f7f7f"))
                    for name in ERROR_CLASSES if name in used]
    return chart


def cost_chart(document: dict[str, Any]) -> Chart:
    cost = document["cost"]
    chart = Chart("Cost per day", cost["currency"] if cost else "")
    if not cost or not cost["days"]:
        chart.empty = "no api_usage requests to price"
        return chart
    days: Sequence[dict[str, Any]] = cost["days"]
    amounts = [float(Decimal(day["amount"])) for day in days]
    _, y_scale = _y_axis(chart, max(*amounts, 1e-9))
    left, _, right, bottom = chart.plot
    slot = (right - left) / len(days)
    step = max(1, math.ceil(len(days) / 8))
    for index, (day, amount) in enumerate(zip(days, amounts, strict=True)):
        x = left + index * slot
        note = "" if day["whole"] else " (partial day)"
        chart.rects.append(Rect(x + slot * 0.1, bottom - amount * y_scale, slot * 0.8,
                                amount * y_scale, COST_COLOUR if day["whole"] else "#9ecae1",
                                f"{day['day']}: {day['amount']} {cost['currency']}{note}"))
        if index % step == 0:
            chart.x_ticks.append(Tick(x + slot / 2, day["day"][5:]))
    chart.legend.append(("cost", COST_COLOUR))
    trend = cost["trend"]
    if trend["slope_per_day"] is not None:
        whole = [index for index, day in enumerate(days) if day["whole"]][-trend["days"]:]
        _, top, _, _ = chart.plot
        ends = (whole[0], whole[-1])
        points = []
        for index in ends:
            fitted = trend["intercept"] + trend["slope_per_day"] * (index - ends[0])
            y = min(max(bottom - fitted * y_scale, top), bottom)  # a fit below 0 stays on the axis
            points.append(f"{left + (index + 0.5) * slot:.1f},{y:.1f}")
        chart.lines.append(Line(f"trend: {trend['direction']}", TREND_COLOUR, " ".join(points),
                                True))
        chart.legend.append((f"trend ({trend['direction']})", TREND_COLOUR))
    return chart


def _bin_name(document: dict[str, Any]) -> str:
    hours = document["timeline"]["bin_seconds"] // 3600
    return "hour" if hours == 1 else f"{hours} hours"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
