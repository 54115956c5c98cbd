"""`--format html`: one self-contained page — inline CSS, inline SVG charts, no JavaScript, no
fonts or images fetched — rendered by Jinja2 from `templates/report.html.j2` with autoescape
on, so every string that came from a log (model names, request ids, paths, services) is
escaped. A Content-Security-Policy meta tag forbids scripts and every fetch as well, so even a
mistake in escaping could not run anything. The layout is a single column that reflows on a
phone: tables scroll sideways inside their own box, charts scale to the width.
"""

from __future__ import annotations

from typing import Any

import jinja2

from monitor import __version__
from monitor.report.charts import cost_chart, errors_chart, latency_chart
from monitor.report.document import Document
from monitor.report.render_text import number, percent, seconds


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monitor.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["seconds"] = seconds
    env.filters["number"] = number
    env.filters["percent"] = percent
    env.filters["count"] = _count
    env.filters["evidence"] = evidence_text
    return env


def evidence_text(value: object) -> str:
    """An evidence value for people: floats to four significant digits, mappings as
    `key value` pairs, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{key} {evidence_text(item)}" for key, item in value.items())
    return str(value)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render_html(document: Document) -> str:
    charts: list[Any] = [latency_chart(document), errors_chart(document),
                         cost_chart(document)]
    template = _environment().get_template("report.html.j2")
    text = template.render(d=document, charts=charts, version=__version__)
    # A lone surrogate (a "\ud800" escape in a log line, a file name that is not UTF-8)
    # cannot be written as UTF-8: it is shown as its escape instead.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
