"""Reading the Prometheus API's request parameters as Prometheus 2.42 reads them.

- Form values: a POST body (urlencoded or multipart) and the URL query together, body first, as
  Go's `r.FormValue` and `r.Form[...]` see them.
- Times (`parseTime`): float seconds (rounded to the millisecond) or RFC 3339, plus the two
  sentinels clients send for "unbounded" (`minTimeFormatted`, `maxTimeFormatted`).
- Durations (`parseDuration`): float seconds or a Prometheus duration (`1h30m`, `5m`).
- A cheap size check of PromQL text before it reaches the parser, whose recursion does not
  survive thousands of nested operators (the Rust parser overflows its stack and takes the
  process with it).

Times are nanoseconds since the epoch (Python ints) until they are turned into the
millisecond timestamps the engine uses, exactly as `timestamp.FromTime` truncates them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Final

from aiohttp import web
from multidict import MultiDict

from monitor.api.prom_json import BAD_DATA, ApiError, rfc3339nano

NS_PER_S: Final = 1_000_000_000
NS_PER_MS: Final = 1_000_000
MAX_INT64: Final = 2**63 - 1
MIN_INT64: Final = -(2**63)

# Prometheus's minTime and maxTime: the widest times whose milliseconds fit in an int64.
MIN_TIME_NS: Final = (-(-MIN_INT64 // 1000) + 62135596801) * NS_PER_S  # Go's / truncates
MAX_TIME_NS: Final = (MAX_INT64 // 1000 - 62135596801) * NS_PER_S + 999_999_999
MIN_TIME_TEXT: Final = rfc3339nano(MIN_TIME_NS)
MAX_TIME_TEXT: Final = rfc3339nano(MAX_TIME_NS)

LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
QUOTED_CHARS = 100  # how much of a bad value an error message repeats

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_INF = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)
_RFC3339 = re.compile(r"(-?\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
                      r"(Z|[+-]\d{2}:\d{2})")
_DURATION = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?"
                       r"(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_DURATION_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000,
                      1000, 1)
_DURATION_NAMES = ("y", "w", "d", "h", "m", "s", "ms")


def quote(text: str) -> str:
    """`text` quoted as Go's %q would, cut short when it is long."""
    if len(text) > QUOTED_CHARS:
        return json.dumps(text[:QUOTED_CHARS], ensure_ascii=False)[:-1] + '..."'
    return json.dumps(text, ensure_ascii=False)


def invalid_param(name: str, message: str) -> ApiError:
    return ApiError(BAD_DATA, f'invalid parameter "{name}": {message}')


def parse_go_float(text: str) -> float | None:
    """What Go's strconv.ParseFloat accepts (None where it fails, overflow included)."""
    if text.lower() == "nan":
        return math.nan
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    try:
        if _DECIMAL.fullmatch(text):
            value = float(text)
        elif _HEX.fullmatch(text):
            value = float.fromhex(text)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return None if math.isinf(value) else value  # out of range is an error in Go


def _go_round(value: float) -> float:
    return math.copysign(math.floor(abs(value) + 0.5), value)


def parse_time(text: str) -> int:
    """A time parameter in nanoseconds; ValueError with Prometheus's message if invalid."""
    seconds = parse_go_float(text)
    if seconds is not None:
        if not MIN_TIME_NS / NS_PER_S <= seconds <= MAX_TIME_NS / NS_PER_S:
            # Go would overflow silently here and query some other time.
            raise ValueError(f"cannot parse {quote(text)} to a valid timestamp")
        fraction, whole = math.modf(seconds)
        millis = _go_round(fraction * 1000) / 1000
        return int(whole) * NS_PER_S + int(millis * NS_PER_S)
    if text == MIN_TIME_TEXT:
        return MIN_TIME_NS
    if text == MAX_TIME_TEXT:
        return MAX_TIME_NS
    found = _rfc3339_ns(text)
    if found is None:
        raise ValueError(f"cannot parse {quote(text)} to a valid timestamp")
    return found


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _rfc3339_ns(text: str) -> int | None:
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year_text, *fields, fraction, zone = match.groups()
    if len(year_text) != 4:
        return None  # Go's time.Parse reads exactly four digits of year
    year = int(year_text)
    month, day, hour, minute, second = (int(f) for f in fields)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month) and hour < 24
            and minute < 60 and second < 60):
        return None
    offset_s = 0
    if zone != "Z":
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[4:6])
        if zone_hours >= 24 or zone_minutes >= 60:
            return None
        offset_s = (zone_hours * 3600 + zone_minutes * 60) * (-1 if zone[0] == "-" else 1)
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    seconds = (_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60
               + second - offset_s)
    return seconds * NS_PER_S + nanos


def parse_duration(text: str) -> int:
    """A duration parameter in nanoseconds; ValueError with Prometheus's message if invalid."""
    seconds = parse_go_float(text)
    if seconds is not None:
        if math.isnan(seconds):
            raise ValueError(f"cannot parse {quote(text)} to a valid duration")
        ns = seconds * NS_PER_S
        if not MIN_INT64 <= ns <= MAX_INT64:
            raise ValueError(f"cannot parse {quote(text)} to a valid duration. "
                             f"It overflows int64")
        return int(ns)
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text) if text else None
    if match is None:
        raise ValueError(f"cannot parse {quote(text)} to a valid duration")
    total_ms = sum(int(count) * unit for count, unit
                   in zip(match.groups(), _DURATION_UNITS_MS, strict=True) if count)
    if total_ms * NS_PER_MS > MAX_INT64:
        raise ValueError(f"cannot parse {quote(text)} to a valid duration")
    return total_ms * NS_PER_MS


def format_duration_ms(ms: int) -> str:
    """Prometheus's model.Duration.String: `15d`, `1h30m`, `90d` (not `12w6d`)."""
    if ms == 0:
        return "0s"
    out = []
    for index, (unit, name) in enumerate(zip(_DURATION_UNITS_MS, _DURATION_NAMES,
                                             strict=True)):
        if index < 2 and ms % unit:
            continue  # years and weeks only when they divide exactly
        count, ms = divmod(ms, unit)
        if count:
            out.append(f"{count}{name}")
    return "".join(out)


def ms_of(ns: int) -> int:
    """timestamp.FromTime: milliseconds, rounded down."""
    return ns // NS_PER_MS


def check_query_size(text: str, *, max_bytes: int, max_operators: int) -> str | None:
    """Why `text` is refused before parsing (too long, too many operators and brackets), or
    None. String literals, `#` comments and label matchers are skipped; counting every
    operator character, exponent signs included, errs on the side of refusing."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"query is too long: {size} bytes, at most {max_bytes} are accepted"
    operators = 0
    in_braces = False
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char in "\"'`":
            end = _string_end(text, index)
            index = end + 1
            continue
        if char == "#":
            newline = text.find("\n", index)
            index = length if newline < 0 else newline + 1
            continue
        if char in "{}":
            in_braces = char == "{"
        elif in_braces:
            pass
        elif char in "(+-*/%^<>!=[":
            operators += 1
        elif char.isalpha():
            end = index
            while end < length and (text[end].isalnum() or text[end] == "_"):
                end += 1
            if text[index:end].lower() in ("and", "or", "unless", "atan2"):
                operators += 1
            index = end
            continue
        index += 1
    if operators > max_operators:
        return (f"query is too complex: more than {max_operators} operators and brackets "
                f"are not accepted")
    return None


def _string_end(text: str, start: int) -> int:
    quote_char = text[start]
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and quote_char != "`":
            index += 2
            continue
        if char == quote_char:
            return index
        index += 1
    return len(text)


async def read_params(request: web.Request) -> MultiDict[str]:
    """The request's form values, a POST body's before the URL query's (Go's r.Form)."""
    merged: MultiDict[str] = MultiDict()
    if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(BAD_DATA, "error parsing form values: request body too large") \
                from None
        except (ValueError, LookupError) as exc:
            raise ApiError(BAD_DATA, f"error parsing form values: {exc}") from None
        for key, value in form.items():
            if isinstance(value, str):  # a file upload is no form value
                merged.add(key, value)
    for key, value in request.query.items():
        merged.add(key, value)
    return merged
