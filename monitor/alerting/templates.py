"""Alert label and annotation templates, expanded exactly as Prometheus 2.42 expands them.

Prometheus prefixes every alert template with

    {{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}
    {{$externalURL := .ExternalURL}}{{$value := .Value}}

(on one line), names it `__alert_<alertname>`, runs it through Go's text/template with
`missingkey=zero` and its own functions (`template/template.go`), and on failure puts
`<error expanding template: ...>` into the label or annotation instead. This module does the
same with `gotemplate`: `expand_alert_template` for the rule engine, `check_template` for
rule-file validation. Every function of Prometheus's text-mode function map is here; `query`
needs the caller's query engine (`query_func`) and is an execution error without one.

Parsed templates are memoised by (alert name, text): annotations are expanded at every
evaluation of every alert, and parsing is the expensive part.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import quote_plus, urlsplit

from monitor.alerting.gotemplate import (
    HTML,
    CallError,
    ExecError,
    GoFunc,
    GoMap,
    GoSlice,
    GoStruct,
    GoUint,
    Limits,
    ParsedTemplate,
    ParseError,
    parse_template,
)
from monitor.alerting.gotemplate.gofmt import sprintf
from monitor.alerting.gotemplate.goregexp import (
    RegexpError,
    compile_go_regexp,
    go_regexp_quote,
    replace_all,
)
from monitor.alerting.gotemplate.gotime import GoTime
from monitor.alerting.gotemplate.numbers import NumError, format_go_float_v, parse_float
from monitor.alerting.gotemplate.values import go_type_name
from monitor.errors import InferwatchError

ALERT_TEMPLATE_DEFS = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}"
    "{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)
ALERT_DATA_TYPE = (
    "struct { Labels map[string]string; ExternalLabels map[string]string; "
    "ExternalURL string; Value float64 }"
)
ERROR_PREFIX = "<error expanding template: "
PARSE_CACHE_SIZE = 4096
_MAX_INT64 = 2**63


class QuerySample(Protocol):
    """One element of the instant vector `query_func` returns (`__name__` included): the
    shape of `monitor.promql.values.Sample`, so an engine's result can be passed as is."""

    @property
    def labels(self) -> Mapping[str, str] | Iterable[tuple[str, str]]: ...

    @property
    def v(self) -> float: ...


QueryFunc = Callable[[str, float], Iterable[QuerySample]]
"""(PromQL expression, evaluation time in epoch seconds) -> instant vector."""


@dataclass(frozen=True, slots=True)
class Expansion:
    """What goes into the alert (`text`), and the error behind it when expansion failed."""

    text: str
    error: str | None = None


class TemplateError(InferwatchError):
    """A template that does not parse or fails to run; `str()` is Prometheus's error text,
    e.g. "error parsing template __alert_X: template: __alert_X:1: unclosed action"."""


def alert_template_name(alert_name: str) -> str:
    return "__alert_" + alert_name


def alert_template_data(labels: Mapping[str, str], value: float, *,
                        external_labels: Mapping[str, str] | None = None,
                        external_url: str = "") -> GoStruct:
    """Prometheus's `AlertTemplateData`: `.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value`."""
    return GoStruct(ALERT_DATA_TYPE, {
        "Labels": GoMap(labels),
        "ExternalLabels": GoMap(external_labels or {}),
        "ExternalURL": external_url,
        "Value": float(value),
    })


def expand_template(
    text: str,
    *,
    name: str,
    data: Any,
    external_url: str = "",
    timestamp: float = 0.0,
    query_func: QueryFunc | None = None,
    limits: Limits | None = None,
) -> str:
    """Prometheus's `Expander.Expand` in text mode; raises TemplateError with its message."""
    parsed = _parse(name, text)
    if isinstance(parsed, str):
        raise TemplateError(f"error parsing template {name}: {parsed}")
    functions = prometheus_functions(external_url=external_url, timestamp=timestamp,
                                     query_func=query_func)
    try:
        return parsed.execute(data, functions, limits)
    except ExecError as exc:
        raise TemplateError(f"error executing template {name}: {exc}") from None


def expand(
    text: str,
    *,
    name: str,
    labels: Mapping[str, str],
    value: float,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
    timestamp: float = 0.0,
    query_func: QueryFunc | None = None,
    limits: Limits | None = None,
) -> Expansion:
    """Expand one label or annotation template of alert `name` for one alert instance."""
    data = alert_template_data(labels, value, external_labels=external_labels,
                               external_url=external_url)
    try:
        expanded = expand_template(ALERT_TEMPLATE_DEFS + text, name=alert_template_name(name),
                                   data=data, external_url=external_url, timestamp=timestamp,
                                   query_func=query_func, limits=limits)
    except TemplateError as exc:
        return Expansion(f"{ERROR_PREFIX}{exc}>", str(exc))
    return Expansion(expanded)


def expand_alert_template(
    text: str,
    *,
    name: str,
    labels: Mapping[str, str],
    value: float,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
    timestamp: float = 0.0,
    query_func: QueryFunc | None = None,
) -> str:
    """The label or annotation value Prometheus would put into the alert (errors included)."""
    return expand(text, name=name, labels=labels, value=value, external_labels=external_labels,
                  external_url=external_url, timestamp=timestamp, query_func=query_func).text


def check_template(text: str, *, name: str = "") -> str | None:
    """Go's parse error for an alert template of alert `name` (as `promtool check rules`
    reports it after `annotation "x": `), or None when it parses."""
    parsed = _parse(alert_template_name(name), ALERT_TEMPLATE_DEFS + text)
    return parsed if isinstance(parsed, str) else None


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse(template_name: str, full_text: str) -> ParsedTemplate | str:
    """A memo of a pure function: the parsed template, or Go's parse error text."""
    try:
        return parse_template(template_name, full_text, PROMETHEUS_FUNCTION_NAMES)
    except ParseError as exc:
        return str(exc)


# --- Prometheus's functions ---------------------------------------------------------------


def _to_float(value: Any) -> float:
    """Prometheus's `convertToFloat`: float64, string and the integer types only."""
    if type(value) is float:
        return value
    if type(value) is str:
        try:
            return parse_float(value)
        except NumError as exc:
            raise CallError(str(exc)) from None
    if type(value) is int or isinstance(value, GoUint):
        return float(value)
    raise CallError(f"can't convert {go_type_name(value)} to float")


def _g4(value: float, suffix: str = "") -> str:
    return sprintf("%.4g", [value]) + suffix


def _humanize(raw: Any) -> str:
    value = _to_float(raw)
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for candidate in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = candidate
            value /= 1000
        return _g4(value, prefix)
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return _g4(value, prefix)


def _humanize1024(raw: Any) -> str:
    value = _to_float(raw)
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for candidate in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = candidate
        value /= 1024
    return _g4(value, prefix)


def _go_int64(value: float) -> int:
    """Go's int64(value) on amd64: truncation, and MinInt64 for what does not fit."""
    return int(value) if -_MAX_INT64 <= value < _MAX_INT64 else -_MAX_INT64


def _humanize_duration(raw: Any) -> str:
    value = _to_float(raw)
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return _g4(value, "s")
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        duration = _go_int64(value)
        magnitude = abs(duration)  # Go's % and / truncate toward zero
        direction = -1 if duration < 0 else 1
        seconds = direction * (magnitude % 60)
        minutes = direction * ((magnitude // 60) % 60)
        hours = direction * ((magnitude // 3600) % 24)
        days = direction * (magnitude // 86400)
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return sign + _g4(value, "s")
    prefix = ""
    for candidate in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = candidate
        value *= 1000
    return _g4(value, prefix + "s")


def _humanize_percentage(raw: Any) -> str:
    return _g4(_to_float(raw) * 100, "%")


def _float_to_time(value: float) -> GoTime | None:
    """Prometheus's `floatToTime`, at millisecond precision; None for NaN and Inf."""
    if math.isnan(value) or math.isinf(value):
        return None
    nanos = value * 1e9
    if nanos > _MAX_INT64 or nanos < -_MAX_INT64:
        raise CallError(f"{format_go_float_v(value)} cannot be represented as a nanoseconds "
                        "timestamp since it overflows int64")
    whole_nanos = _go_int64(nanos)
    millis = abs(whole_nanos) // 1_000_000 * (-1 if whole_nanos < 0 else 1)
    return GoTime(millis * 1_000_000)


def _humanize_timestamp(raw: Any) -> str:
    value = _to_float(raw)
    moment = _float_to_time(value)
    return _g4(value) if moment is None else moment.stringer()


def _to_time(raw: Any) -> GoTime:
    moment = _float_to_time(_to_float(raw))
    if moment is None:
        raise CallError("value is NaN or Inf")
    return moment


_DURATION = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?"
                       r"(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_DURATION_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def _parse_duration(text: str) -> float:
    """`model.ParseDuration` (y w d h m s ms, in that order) in seconds."""
    if text == "0":
        return 0.0
    if text == "":
        raise CallError("empty duration string")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise CallError(f"not a valid duration string: {sprintf('%q', [text])}")
    millis = sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS_MS,
                                                        strict=True) if part)
    if millis * 1_000_000 >= _MAX_INT64:
        raise CallError("duration out of range")
    return millis / 1000


def _split_host_port(host_port: str) -> tuple[str, str] | None:
    """`net.SplitHostPort`: (host, port), or None where Go returns an error."""
    colon = host_port.rfind(":")
    if colon < 0:
        return None
    start, after_bracket = 0, 0
    if host_port.startswith("["):
        end = host_port.find("]")
        if end < 0 or end + 1 != colon:
            return None
        host = host_port[1:end]
        start, after_bracket = 1, end + 1
    else:
        host = host_port[:colon]
        if ":" in host:
            return None
    if "[" in host_port[start:] or "]" in host_port[after_bracket:]:
        return None
    return host, host_port[colon + 1 :]


def _strip_port(host_port: str) -> str:
    split = _split_host_port(host_port)
    return host_port if split is None else split[0]


def _is_ip(host: str) -> bool:
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _strip_domain(host_port: str) -> str:
    split = _split_host_port(host_port)
    host, port = split if split is not None else (host_port, "")
    if _is_ip(host):
        return host_port
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _re_replace_all(pattern: str, replacement: str, text: str) -> str:
    try:
        compiled = compile_go_regexp(pattern)
    except RegexpError as exc:
        raise CallError(f"regexp: Compile({go_regexp_quote(pattern)}): {exc}") from None
    return replace_all(compiled, text, replacement)


def _match(pattern: str, text: str) -> bool:
    try:
        return compile_go_regexp(pattern).search(text) is not None
    except RegexpError as exc:
        raise CallError(str(exc)) from None


def _map_runes(text: str, convert: Callable[[str], str]) -> str:
    """Go maps rune by rune; Python's full case mappings may grow ("ß" -> "SS"): keep those."""
    out = []
    for ch in text:
        mapped = convert(ch)
        out.append(mapped if len(mapped) == 1 else ch)
    return "".join(out)


def _is_separator(ch: str) -> bool:
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    if ch.isalpha() or ch.isdigit():
        return False
    return ch.isspace()


def _title(text: str) -> str:
    """`strings.Title`: upper-case (title-case) the first letter of each word."""
    out = []
    previous = " "
    for ch in text:
        out.append(_map_runes(ch, str.title) if _is_separator(previous) else ch)
        previous = ch
    return "".join(out)


_SAMPLE = "*template.sample"
_QUERY_RESULT = "template.queryResult"
_NIL_POINTER = "runtime error: invalid memory address or nil pointer dereference"


def _sample_field(sample: GoStruct | None, field: str) -> Any:
    if sample is None:
        raise CallError(_NIL_POINTER)
    return sample.fields[field]


def _first(result: GoSlice) -> GoStruct:
    if len(result) == 0:
        raise CallError("first() called on vector with no elements")
    first: GoStruct = result[0]
    return first


def _sort_by_label(label: str, result: GoSlice) -> GoSlice:
    ordered = sorted(result, key=lambda sample: sample.fields["Labels"].get(label, ""))
    return GoSlice(ordered, _QUERY_RESULT)


def _args(*values: Any) -> dict[str, Any]:
    return {f"arg{index}": value for index, value in enumerate(values)}


_STATIC_FUNCTIONS: Mapping[str, GoFunc] = MappingProxyType({
    "first": GoFunc((_QUERY_RESULT,), _first),
    "label": GoFunc(("string", _SAMPLE),
                    lambda label, sample: _sample_field(sample, "Labels").get(label, "")),
    "value": GoFunc((_SAMPLE,), lambda sample: _sample_field(sample, "Value")),
    "strvalue": GoFunc((_SAMPLE,),
                       lambda sample: _sample_field(sample, "Labels").get("__value__", "")),
    "args": GoFunc((), _args, variadic="interface {}"),
    "reReplaceAll": GoFunc(("string", "string", "string"), _re_replace_all),
    "safeHtml": GoFunc(("string",), HTML),
    "match": GoFunc(("string", "string"), _match),
    "title": GoFunc(("string",), _title),
    "toUpper": GoFunc(("string",), lambda text: _map_runes(text, str.upper)),
    "toLower": GoFunc(("string",), lambda text: _map_runes(text, str.lower)),
    "graphLink": GoFunc(("string",),
                        lambda expr: f"/graph?g0.expr={quote_plus(expr, safe='-_.~')}&g0.tab=0"),
    "tableLink": GoFunc(("string",),
                        lambda expr: f"/graph?g0.expr={quote_plus(expr, safe='-_.~')}&g0.tab=1"),
    "sortByLabel": GoFunc(("string", _QUERY_RESULT), _sort_by_label),
    "stripPort": GoFunc(("string",), _strip_port),
    "stripDomain": GoFunc(("string",), _strip_domain),
    "humanize": GoFunc(("interface {}",), _humanize),
    "humanize1024": GoFunc(("interface {}",), _humanize1024),
    "humanizeDuration": GoFunc(("interface {}",), _humanize_duration),
    "humanizePercentage": GoFunc(("interface {}",), _humanize_percentage),
    "humanizeTimestamp": GoFunc(("interface {}",), _humanize_timestamp),
    "toTime": GoFunc(("interface {}",), _to_time),
    "parseDuration": GoFunc(("string",), _parse_duration),
})
PROMETHEUS_FUNCTION_NAMES = frozenset(_STATIC_FUNCTIONS) | {"query", "pathPrefix", "externalURL"}


def prometheus_functions(*, external_url: str = "", timestamp: float = 0.0,
                         query_func: QueryFunc | None = None) -> dict[str, GoFunc]:
    """Prometheus's text-mode function map, bound to one expansion's context."""
    def query(expression: str) -> GoSlice:
        if query_func is None:
            raise CallError("query is not available: no query engine was given")
        try:
            samples = list(query_func(expression, timestamp))
        except Exception as exc:  # a failing query is a template error, as in Prometheus
            raise CallError(str(exc)) from exc
        return GoSlice([
            GoStruct("template.sample",
                     {"Labels": GoMap(dict(sample.labels)), "Value": float(sample.v)},
                     pointer=True)
            for sample in samples
        ], _QUERY_RESULT)

    return {
        **_STATIC_FUNCTIONS,
        "query": GoFunc(("string",), query),
        "pathPrefix": GoFunc((), lambda: urlsplit(external_url).path),
        "externalURL": GoFunc((), lambda: external_url),
    }


# Prometheus's number and duration formatting, for the notification templates (Jinja2).
HUMANIZERS: dict[str, Callable[[Any], str]] = {
    "humanize": _humanize,
    "humanize1024": _humanize1024,
    "humanizeDuration": _humanize_duration,
    "humanizePercentage": _humanize_percentage,
    "humanizeTimestamp": _humanize_timestamp,
}
