"""`--format text`: the report's document as plain-text tables for a terminal.

Every string that came from a log (model names, request ids, paths, reasons) goes through
`clean`, so a hostile line cannot move the cursor, recolour or retitle the reader's terminal.
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Sequence
from typing import Any

from monitor.report.document import Document

TIMELINE_ROWS = 48  # error timeline rows shown; the JSON output has every bin
MODEL_WIDTH = 32
ID_WIDTH = 36


def clean(text: object, width: int | None = None) -> str:
    """Printable text: control characters as escapes, cut to `width` with an ellipsis."""
    value = "".join(
        ch if unicodedata.category(ch)[0] != "C" or ch == " " else ascii(ch)[1:-1]
        for ch in str(text))
    if width is not None and len(value) > width:
        value = value[: width - 1] + "…"
    return value


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1.0:
        return f"{value * 1000:.1f} ms"
    return f"{value:.3f} s"


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> list[str]:
    """Aligned columns: the first `right` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    out = []
    for row in (header, *rows):
        cells = [str(cell).ljust(widths[i]) if i < right else str(cell).rjust(widths[i])
                 for i, cell in enumerate(row)]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _distribution_rows(document: Document) -> list[list[str]]:
    rows = []
    for key, label, unit in (("latency_seconds", "latency", "s"),
                             ("ttft_seconds", "time to first token", "s"),
                             ("throughput_tokens_per_second", "output tokens/s", "tps")):
        summary = document[key]
        fmt = seconds if unit == "s" else number
        rows.append([label, f"{summary['count']:,}",
                     *(fmt(summary[k]) for k in ("min", "avg", "p50", "p95", "p99", "max"))])
    return rows


def _head(document: Document) -> list[str]:
    lines = document["lines"]
    span = document["range"]
    out = [f"inferwatch report, generated {document['generated_at']}"]
    if document["since"]:
        out.append(f"since {document['since']['duration']} (from {document['since']['from']})")
    out.append(f"{len(document['files'])} file(s), {lines['total']:,} lines: "
               f"{lines['parsed']:,} parsed, {lines['malformed']:,} malformed, "
               f"{lines['oversized']:,} oversized, {lines['blank']:,} blank, "
               f"{lines['before_since']:,} before --since")
    if span["first"]:
        out.append(f"requests from {span['first']} to {span['last']} "
                   f"({span['hours']:.1f} h)")
    return out


def _requests(document: Document) -> list[str]:
    requests = document["requests"]
    rates = document["rates"]
    tokens = document["tokens"]
    out = ["", "REQUESTS",
           f"  {requests['total']:,} requests: {requests['success']:,} succeeded "
           f"({percent(requests['success_ratio'])}), {requests['error']:,} failed "
           f"({percent(requests['error_ratio'])})"]
    if rates["hours"]:
        out.append(f"  per hour (over {rates['hours']:.1f} h): "
                   f"{number(rates['requests_per_hour'])} requests, "
                   f"{number(rates['input_tokens_per_hour'], 0)} input tokens, "
                   f"{number(rates['output_tokens_per_hour'], 0)} output tokens")
    out.append(f"  tokens: {tokens['input']:,} in, {tokens['output']:,} out "
               f"({tokens['reasoning']:,} reasoning); cache hit ratio "
               f"{percent(tokens['cache_hit_ratio'])}")
    out += ["", *table(["", "count", "min", "avg", "p50", "p95", "p99", "max"],
                       _distribution_rows(document))]
    return out


def _models(document: Document) -> list[str]:
    rows = []
    for model in document["models"]:
        latency = model["latency_seconds"]
        rows.append([clean(model["model"], MODEL_WIDTH), f"{model['requests']['total']:,}",
                     percent(model["requests"]["error_ratio"]), seconds(latency["p50"]),
                     seconds(latency["p95"]), seconds(latency["p99"]), seconds(latency["max"]),
                     seconds(model["ttft_seconds"]["p50"]),
                     number(model["throughput_tokens_per_second"]["p50"]),
                     f"{model['tokens']['input']:,}", f"{model['tokens']['output']:,}"])
    if not rows:
        return []
    return ["", "BY MODEL", *table(["model", "requests", "errors", "p50", "p95", "p99", "max",
                                    "ttft p50", "tok/s p50", "tokens in", "tokens out"], rows)]


def _errors(document: Document) -> list[str]:
    errors = document["errors"]
    if not errors["total"]:
        return ["", "ERRORS", "  none"]
    total = document["requests"]["total"]
    out = ["", "ERRORS", *table(["class", "requests", "share"],
                                [[name, f"{count:,}", percent(count / total)]
                                 for name, count in errors["by_class"].items()])]
    timeline = document["timeline"]
    with_errors = [b for b in timeline["bins"] if b["errors"]]
    width = timeline["bin_seconds"] // 3600
    latest = f", latest {TIMELINE_ROWS}" if len(with_errors) > TIMELINE_ROWS else ""
    out += ["", f"  errors per {'hour' if width == 1 else f'{width} hours'}"
                f" (bins with errors{latest}):"]
    rows = [[b["start"], f"{b['errors']:,}", f"{b['requests']:,}",
             ", ".join(f"{name} {count:,}" for name, count in b["errors_by_class"].items())]
            for b in with_errors[-TIMELINE_ROWS:]]
    out += table(["bin start", "errors", "requests", "by class"], rows)
    return out


def _cost(document: Document) -> list[str]:
    cost = document["cost"]
    if cost is None:
        return ["", "COST", "  no api_usage lines: nothing to price"]
    currency = cost["currency"]
    out = ["", f"COST ({currency}, days in {cost['timezone']})",
           f"  total {cost['total']} {currency} over {cost['requests']:,} api_usage requests "
           f"({cost['unpriced_requests']:,} unpriced, {cost['duplicate_requests']:,} "
           "duplicate ids not charged again)"]
    if cost["reported_total"] is not None:
        out.append(f"  the lines' own cost fields add up to {cost['reported_total']} over "
                   f"{cost['reported_requests']:,} lines (in the gateway's currency; shown, "
                   "not used for the totals)")
    if cost["by_model"]:
        out.append("  by model: " + ", ".join(f"{clean(m, MODEL_WIDTH)} {a}"
                                              for m, a in cost["by_model"].items()))
    out += table(["day", "requests", "unpriced", f"cost {currency}", "reported"],
                 [[d["day"], f"{d['requests']:,}", f"{d['unpriced']:,}", d["amount"],
                   d["reported"] or "-"] for d in cost["days"]])
    trend = cost["trend"]
    if trend["slope_per_day"] is None:
        out.append(f"  trend: {trend['direction']} (needs 3 days, have {trend['days']})")
    else:
        relative = trend["relative_slope"]
        out.append(f"  trend: {trend['direction']} (Theil-Sen slope {trend['slope_per_day']:+.6g}"
                   f" {currency}/day"
                   + (f", {100 * relative:+.1f} % of the mean" if relative is not None else "")
                   + f" {trend['mean_per_day']:.6g} {currency}/day over {trend['days']} days;"
                   f" flat within ±{100 * trend['flat_within']:.0f} %)")
    return out


def _slowest(document: Document) -> list[str]:
    if not document["slowest"]:
        return []
    rows = [[clean(s["request_id"] or "(no id)", ID_WIDTH), clean(s["model"], MODEL_WIDTH),
             s["timestamp"], seconds(s["latency_seconds"]),
             s["error_class"] or (str(s["status"]) if s["status"] else "ok")]
            for s in document["slowest"]]
    return ["", "SLOWEST REQUESTS",
            *table(["request id", "model", "time", "latency", "outcome"], rows, right=3)]


def _recommendations(document: Document) -> list[str]:
    out = ["", "RECOMMENDATIONS"]
    if not document["recommendations"]:
        return [*out, "  none: nothing the report checks for stood out"]
    for index, item in enumerate(document["recommendations"], 1):
        out.append(f"  {index}. {item['title']}")
        out += textwrap.wrap(clean(item["detail"]), 96, initial_indent="     ",
                             subsequent_indent="     ", break_on_hyphens=False)
    return out


def _files(document: Document) -> list[str]:
    rows = [[clean(f["path"], 60), f["schema"] or "-", f["compression"] or "-",
             f"{f['lines']:,}", f"{f['parsed']:,}", f"{f['malformed']:,}", f"{f['oversized']:,}"]
            for f in document["files"]]
    out = ["", "FILES", *table(["path", "schema", "compressed", "lines", "parsed", "malformed",
                                "oversized"], rows, right=3)]
    for f in document["files"]:
        if f["error"]:
            out.append(f"  {clean(f['path'])}: {clean(f['error'])}")
        out += [f"  {clean(f['path'], 60)}: malformed: {clean(reason, 120)}"
                for reason in f["malformed_reasons"][:3]]
    out += [f"  warning: {clean(w)}" for w in document["warnings"]
            if not any(w.startswith(f["path"] + ":") for f in document["files"])]
    return out


def render_text(document: Document) -> str:
    parts: list[Any] = [*_head(document), *_requests(document), *_models(document),
                        *_errors(document), *_cost(document), *_slowest(document),
                        *_recommendations(document), *_files(document)]
    return "\n".join(parts) + "\n"
