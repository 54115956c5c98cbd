"""The JSON that Prometheus 2.42's HTTP API writes, byte for byte: envelopes, query results,
timestamps and the several ways it prints a float.

Prometheus prints floats four ways, and a client may compare the text, so each is kept apart:

- sample values (`jsonutil.MarshalValue`): a string, shortest digits, plain notation unless the
  magnitude is below 1e-6 or at least 1e21 (`"0.0000012345678"`, `"1.2345678e-67"`), and
  `"NaN"`, `"+Inf"`, `"-Inf"`;
- scalar results (`promql.Scalar.MarshalJSON`): always plain notation (`FormatFloat 'f'`);
- alert values (`/api/v1/alerts`, `/api/v1/rules`): always exponent notation (`"1e+00"`);
- JSON numbers (a group's `interval`, a rule's `duration`): encoding/json, plain notation
  between 1e-6 and 1e21, `60` rather than Python's `60.0`.

Sample timestamps are seconds with the milliseconds written as three digits (`1.010`, never
`1.01`), while a scalar's or a string's timestamp is an ordinary JSON number (`1.01`). Strings
are escaped as Go escapes them (`<`, `>`, `&`, U+2028, U+2029 as `\\u....`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from monitor.promql.values import Labels, Sample, Scalar, Series, String

BAD_DATA: Final = "bad_data"
EXECUTION: Final = "execution"
TIMEOUT: Final = "timeout"
CANCELED: Final = "canceled"
INTERNAL: Final = "internal"
NOT_FOUND: Final = "not_found"
UNAVAILABLE: Final = "unavailable"

# respondError's mapping; any other type (unavailable included) is a 500 there too.
HTTP_STATUS: Final[Mapping[str, int]] = {
    BAD_DATA: 400,
    EXECUTION: 422,
    CANCELED: 503,
    TIMEOUT: 503,
    INTERNAL: 500,
    NOT_FOUND: 404,
}
MAX_ERROR_CHARS = 1024  # an error message never carries a hostile input back in full


class ApiError(Exception):
    """A request that fails with a Prometheus error type (`bad_data`, `execution`, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# -- floats ----------------------------------------------------------------------------------


def _digits(value: float) -> tuple[str, int]:
    """The shortest decimal digits that read back as |value|, and where the point goes:
    |value| == 0.DIGITS * 10**point. Python's repr and Go's strconv both print the shortest
    round-tripping digits, so the digits agree; only the layout differs."""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return None


def _sign(value: float) -> str:
    return "-" if math.copysign(1.0, value) < 0 else ""


def format_plain(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'f', -1, 64)."""
    special = _special(value)
    if special is not None:
        return special
    text = repr(value)
    if "e" not in text:  # repr is already plain for 1e-4 <= |v| < 1e16
        return text[:-2] if text.endswith(".0") else text
    digits, point = _digits(value)
    if not digits:
        return _sign(value) + "0"
    if point <= 0:
        body = "0." + "0" * -point + digits
    elif point >= len(digits):
        body = digits + "0" * (point - len(digits))
    else:
        body = digits[:point] + "." + digits[point:]
    return _sign(value) + body


def format_exponent(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'e', -1, 64): `1e+00`, `2.5e-07`."""
    special = _special(value)
    if special is not None:
        return special
    digits, point = _digits(value)
    if not digits:
        return _sign(value) + "0e+00"
    exponent = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{_sign(value)}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _needs_exponent(value: float) -> bool:
    magnitude = abs(value)
    return magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21)


def format_sample_value(value: float) -> str:
    """A sample value as jsonutil.MarshalValue prints it (without the quotes)."""
    return format_exponent(value) if _needs_exponent(value) else format_plain(value)


def json_number(value: float) -> str:
    """A float as Go's encoding/json writes a number (it has no NaN or Inf)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON representation")
    if not _needs_exponent(value):
        return format_plain(value)
    text = format_exponent(value)
    if text[-4:-1] == "e-0":  # encoding/json shortens e-07 to e-7
        text = text[:-2] + text[-1]
    return text


def sample_time(t_ms: int) -> str:
    """A sample timestamp as jsonutil.MarshalTimestamp writes it: `1435781451.781`, `1.010`."""
    sign = "-" if t_ms < 0 else ""
    seconds, millis = divmod(abs(t_ms), 1000)
    return f"{sign}{seconds}.{millis:03d}" if millis else f"{sign}{seconds}"


def point_time(t_ms: int) -> str:
    """A scalar's or string's timestamp: float64(t)/1000 as an encoding/json number."""
    return json_number(float(t_ms) / 1000)


# -- times -----------------------------------------------------------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time: "never"


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01, proleptic Gregorian, any year."""
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524
                   - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def rfc3339nano(ns: int) -> str:
    """Nanoseconds since the epoch as Go's time.RFC3339Nano in UTC (trailing zeros dropped)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    days, second_of_day = divmod(seconds, 86400)
    year, month, day = _civil(days)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    year_text = f"-{-year:04d}" if year < 0 else f"{year:04d}"
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"


def epoch_seconds_time(seconds: float) -> str:
    """A time kept as epoch seconds (0: never) as a Go time.Time in JSON, to the microsecond."""
    if seconds <= 0 or not math.isfinite(seconds):
        return ZERO_TIME
    return rfc3339nano(round(seconds * 1_000_000) * 1000)


def epoch_ms_time(t_ms: int) -> str:
    return rfc3339nano(t_ms * 1_000_000)


# -- JSON text -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawJSON:
    """Text that is already JSON, written as it is."""

    text: str


JSONValue = (str | int | float | bool | None | RawJSON | Mapping[str, "JSONValue"]
             | Sequence["JSONValue"])

_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                             "\u2028": "\\u2028", "\u2029": "\\u2029"})
# Python writes \b and \f as short escapes where Go writes \u0008 and \u000c; an escaped
# backslash is matched first so that a literal `\` followed by `b` is left alone.
_SHORT_ESCAPES = re.compile(r"\\\\|\\b|\\f")
_LONG_ESCAPES = {"\\b": "\\u0008", "\\f": "\\u000c"}


def json_string(text: str) -> str:
    """A JSON string literal escaped as Go's encoding/json escapes it."""
    out = json.dumps(text, ensure_ascii=False)
    if "\b" in text or "\f" in text:
        out = _SHORT_ESCAPES.sub(lambda m: _LONG_ESCAPES.get(m.group(0), m.group(0)), out)
    return out.translate(_GO_ESCAPES)


def encode(value: JSONValue) -> str:
    """JSON text with Go's spacing (none), escaping and number formatting."""
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, RawJSON):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json_string(k)}:{encode(v)}" for k, v in value.items()) + "}"
    return "[" + ",".join(encode(item) for item in value) + "]"


def labels_json(labels: Iterable[tuple[str, str]]) -> str:
    """A label set as Prometheus writes it: an object with keys in sorted order."""
    pairs = sorted(dict(labels).items())
    return "{" + ",".join(f"{json_string(k)}:{json_string(v)}" for k, v in pairs) + "}"


# -- query results ---------------------------------------------------------------------------


def _point(t_ms: int, value: float) -> str:
    return f'[{sample_time(t_ms)},"{format_sample_value(value)}"]'


def vector_json(samples: Sequence[Sample]) -> str:
    return "[" + ",".join(f'{{"metric":{labels_json(s.labels)},"value":{_point(s.t, s.v)}}}'
                          for s in samples) + "]"


def _series_json(labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> str:
    metric = labels_json(labels)
    if not ts:
        return f'{{"metric":{metric}}}'
    points = ",".join(_point(t, v) for t, v in zip(ts, vs, strict=True))
    return f'{{"metric":{metric},"values":[{points}]}}'


def matrix_json(series: Sequence[Series]) -> str:
    return "[" + ",".join(_series_json(s.labels, s.ts, s.vs) for s in series) + "]"


def scalar_json(scalar: Scalar) -> str:
    return f'[{point_time(scalar.t)},{json_string(format_plain(scalar.v))}]'


def string_json(string: String) -> str:
    return f"[{point_time(string.t)},{json_string(string.v)}]"


def query_data(result_type: str, result_json: str) -> str:
    return f'{{"resultType":"{result_type}","result":{result_json}}}'


# -- envelopes -------------------------------------------------------------------------------


def _body(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (undecodable bytes in a request or a label) become U+FFFD, as Go
        # writes invalid UTF-8.
        repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return repaired.encode("utf-8", "replace")


def success(data_json: str) -> web.Response:
    body = f'{{"status":"success","data":{data_json}}}'
    return web.Response(body=_body(body), content_type="application/json")


def failure(kind: str, message: str) -> web.Response:
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "... (truncated)"
    body = f'{{"status":"error","errorType":{json_string(kind)},"error":{json_string(message)}}}'
    return web.Response(status=HTTP_STATUS.get(kind, 500), body=_body(body),
                        content_type="application/json")
