"""Go's strconv and regexp behaviour where PromQL functions expose it.

- `parse_float`: strconv.ParseFloat(s, 64), which reads histogram `le` labels. Python's float()
  accepts spaces, "+nan" and non-ASCII digits and turns "1e400" into inf; Go refuses all of
  those (the last with ErrRange), and Prometheus then skips the bucket.
- `format_float`: strconv.FormatFloat(v, 'f', -1, 64), the label value count_values writes.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+",
                        re.ASCII)
_INF_NAMES = ("inf", "infinity")


def _underscore_ok(text: str) -> bool:
    """strconv's rule: an underscore must sit between digits (or after a base prefix)."""
    body = text[1:] if text[:1] in "+-" else text
    saw, i, hexadecimal = "^", 0, False
    if len(body) >= 2 and body[0] == "0" and body[1].lower() in "box":
        i, saw, hexadecimal = 2, "0", body[1].lower() == "x"
    for ch in body[i:]:
        if ch.isascii() and (ch.isdigit() or (hexadecimal and ch.lower() in "abcdef")):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64), or None where Go returns an error."""
    body = text[1:] if text[:1] in "+-" else text
    lowered = body.lower()
    if lowered in _INF_NAMES:
        return -math.inf if text[0] == "-" else math.inf
    if text.lower() == "nan":
        return math.nan
    if "_" in text:
        if not _underscore_ok(text):
            return None
        text = text.replace("_", "")
    try:
        if _DECIMAL_FLOAT.fullmatch(text):
            value = float(text)
        elif _HEX_FLOAT.fullmatch(text):
            value = float.fromhex(text)
        else:
            return None
    except OverflowError:
        return None
    return None if math.isinf(value) else value


def format_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): the shortest exact digits, never exponents."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return format(Decimal(repr(value)).normalize(), "f")


# --- regexp --------------------------------------------------------------------------------

def format_float_g(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 64), which is also what fmt's %v prints."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # digits before the decimal point
    prefix = "-" if sign else ""
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        power = point - 1
        return f"{prefix}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    return prefix + format(Decimal(repr(abs(value))).normalize(), "f")


def go_quote(text: str) -> str:
    """strconv.Quote: what %q prints for a string."""
    escapes = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'
