"""Go's number parsing and float formatting (`strconv.ParseFloat`, `ParseInt`, `FormatFloat`).

Formatting follows `strconv/ftoa.go`: a float becomes decimal digits plus a decimal point
position, either the shortest digits that round-trip (Python's `repr` finds the same ones)
or exactly rounded to a precision (`decimal` on the float's exact value, half to even, which
is what Go's exact algorithms produce), and then `%e`, `%f` or `%g` layout. `%g` switches to
the exponent form when the exponent is < -4 or >= the precision, and with the shortest digits
that precision is 6: Go prints 1e+06 and 100000 where Python's repr prints 1000000.0.
`format_float_verb` adds fmt's hexadecimal (%x: 0x1.8p+00) and binary (%b) float forms and
`sharp_float` the `#` flag.
"""

from __future__ import annotations

import math
import re
import struct
from decimal import ROUND_HALF_EVEN, Context, Decimal

from monitor.alerting.gotemplate.quoting import go_quote

_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_INT_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
MAX_INT64 = 2**63 - 1
MAX_UINT64 = 2**64 - 1
_MAX_INTEGER_DIGITS = 320  # a float64 has at most 309 digits before the point
_EXACT_DECIMALS = 1100  # ... at most 1074 after it
_EXACT_DIGITS = 800  # ... and at most 767 significant ones


class NumError(ValueError):
    """A `*strconv.NumError`, printed as Go prints it."""

    def __init__(self, func: str, text: str, reason: str) -> None:
        super().__init__(f"strconv.{func}: parsing {go_quote(text)}: {reason}")


def underscore_ok(text: str) -> bool:
    """Go's rule: an underscore sits between digits, or between a base prefix and a digit."""
    saw = "^"
    if text[:1] in ("+", "-"):
        text = text[1:]
    i = 0
    hex_digits = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        i = 2
        saw = "0"
        hex_digits = text[1].lower() == "x"
    for ch in text[i:]:
        if "0" <= ch <= "9" or (hex_digits and "a" <= ch.lower() <= "f"):
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


def _special_float(text: str) -> float | None:
    body = text[1:] if text[:1] in ("+", "-") else text
    if body.lower() in ("inf", "infinity"):
        return -math.inf if text[0] == "-" else math.inf
    if text.lower() == "nan":
        return math.nan
    return None


def parse_float(text: str) -> float:
    """`strconv.ParseFloat(text, 64)`; raises NumError with Go's message."""
    special = _special_float(text)
    if special is not None:
        return special
    plain = text
    if "_" in text:
        if not underscore_ok(text):
            raise NumError("ParseFloat", text, "invalid syntax")
        plain = text.replace("_", "")
    try:
        if _DECIMAL_FLOAT.fullmatch(plain):
            value = float(plain)
        elif _HEX_FLOAT.fullmatch(plain):
            value = float.fromhex(plain)
        else:
            raise NumError("ParseFloat", text, "invalid syntax")
    except OverflowError:
        value = math.inf
    if math.isinf(value):
        raise NumError("ParseFloat", text, "value out of range")
    return value


def parse_int_base0(text: str, *, signed: bool) -> int | None:
    """`strconv.ParseInt(text, 0, 64)` / `ParseUint`: the value, or None on any error."""
    if not text:
        return None
    sign = 1
    body = text
    if signed and body[0] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base = 10
    digits = body
    if body[:1] == "0" and len(body) > 1:
        prefix = body[1].lower()
        if len(body) >= 3 and prefix in "box":
            base = {"b": 2, "o": 8, "x": 16}[prefix]
            digits = body[2:]
        else:
            base = 8
            digits = body[1:]
    if not body or any(ch not in _INT_DIGITS[base] and ch != "_" for ch in digits):
        return None
    if "_" in body and not underscore_ok(body):
        return None
    cleaned = digits.replace("_", "")
    value = sign * int(cleaned, base) if cleaned else 0
    if signed:
        return value if -MAX_INT64 - 1 <= value <= MAX_INT64 else None
    return value if value <= MAX_UINT64 else None


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest round-tripping digits of a finite, non-zero |value|, and the point."""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    return "".join(map(str, digit_tuple)).rstrip("0"), len(digit_tuple) + exponent


def _rounded_digits(value: float, significant: int) -> tuple[str, int]:
    """|value| exactly rounded (half to even) to `significant` digits, trailing zeros cut."""
    exact = Decimal(value).copy_abs()
    rounded = Context(prec=significant, rounding=ROUND_HALF_EVEN).plus(exact)
    _, digit_tuple, exponent = rounded.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent
    stripped = digits.rstrip("0")
    return stripped, point


def _fixed_digits(value: float, decimals: int) -> tuple[str, int]:
    """|value| exactly rounded (half to even) to `decimals` places after the point."""
    exact = Decimal(value).copy_abs()
    context = Context(prec=_MAX_INTEGER_DIGITS + decimals)
    rounded = exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN,
                             context=context)
    _, digit_tuple, exponent = rounded.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    point = len(digits) + exponent
    return digits.rstrip("0"), point


def _layout_e(digits: str, point: int, prec: int, letter: str) -> str:
    first = digits[0] if digits else "0"
    rest = digits[1 : prec + 1].ljust(prec, "0") if prec > 0 else ""
    exp = point - 1 if digits else 0
    sign = "-" if exp < 0 else "+"
    mantissa = first + ("." + rest if prec > 0 else "")
    return f"{mantissa}{letter}{sign}{abs(exp):02d}"


def _layout_f(digits: str, point: int, prec: int) -> str:
    integer = digits[:point].ljust(point, "0") if point > 0 else "0"
    if prec <= 0:
        return integer
    fraction = "".join(
        digits[point + i] if 0 <= point + i < len(digits) else "0" for i in range(prec)
    )
    return integer + "." + fraction


def format_float(value: float, fmt: str, prec: int) -> str:
    """`strconv.FormatFloat(value, fmt, prec, 64)` for fmt in e E f g G; prec -1 = shortest."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    # Past these precisions a float64's exact decimal expansion has ended: only zeros follow,
    # so compute at the bound and append them rather than round to a million digits.
    if fmt == "f" and prec > _EXACT_DECIMALS:
        return format_float(value, fmt, _EXACT_DECIMALS) + "0" * (prec - _EXACT_DECIMALS)
    if fmt in "eE" and prec > _EXACT_DIGITS:
        mantissa, letter, exponent = format_float(value, fmt, _EXACT_DIGITS).partition(fmt)
        return mantissa + "0" * (prec - _EXACT_DIGITS) + letter + exponent
    if fmt in "gG":
        prec = min(prec, _EXACT_DIGITS)  # %g drops trailing zeros, and exponents stay < 400
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    shortest = prec < 0
    if value == 0:
        digits, point = "", 0
    elif shortest:
        digits, point = _shortest_digits(value)
    elif fmt in "eE":
        digits, point = _rounded_digits(value, prec + 1)
    elif fmt == "f":
        digits, point = _fixed_digits(value, prec)
    else:
        digits, point = _rounded_digits(value, prec if prec > 0 else 1)
    if fmt in "eE":
        return sign + _layout_e(digits, point, len(digits) - 1 if shortest else prec, fmt)
    if fmt == "f":
        return sign + _layout_f(digits, point, max(len(digits) - point, 0) if shortest else prec)
    if shortest:
        eprec = 6
        prec = len(digits)
    else:
        prec = max(prec, 1)
        eprec = prec
        if eprec > len(digits) >= point:
            eprec = len(digits)
    exp = point - 1
    if exp < -4 or exp >= eprec:
        prec = min(prec, len(digits))
        return sign + _layout_e(digits, point, prec - 1, "e" if fmt == "g" else "E")
    if prec > point:
        prec = len(digits)
    return sign + _layout_f(digits, point, max(prec - point, 0))


def format_go_float_v(value: float) -> str:
    """How `%v` (and `{{ $value }}`) prints a float64."""
    return format_float(value, "g", -1)


def format_float_verb(value: float, verb: str, prec: int) -> str:
    """fmt's float verbs e E f g G, and x X b (hex and binary mantissa-exponent)."""
    if verb in "eEfgG":
        return format_float(value, verb, prec)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    sign = "-" if bits >> 63 else ""
    exponent = (bits >> 52) & 0x7FF
    mantissa = bits & ((1 << 52) - 1)
    if exponent == 0:
        exponent = 1
    else:
        mantissa |= 1 << 52
    exponent -= 1023
    if verb == "b":
        binary_exponent = exponent - 52
        return f"{sign}{mantissa}p{'+' if binary_exponent >= 0 else '-'}{abs(binary_exponent)}"
    return sign + _hex_float(mantissa, exponent, prec, verb)


def _hex_float(mantissa: int, exp: int, prec: int, verb: str) -> str:
    """strconv's `fmtX`: 0x1.8p+01, the mantissa shifted so its leading 1 is at bit 60."""
    if prec > 13:  # 52 fraction bits are 13 hex digits: the rest are zeros
        mantissa_text, letter, exponent = _hex_float(mantissa, exp, 13, verb).partition(
            "P" if verb == "X" else "p")
        return mantissa_text + "0" * (prec - 13) + letter + exponent
    mask64 = (1 << 64) - 1
    if mantissa == 0:
        exp = 0
    mantissa <<= 60 - 52
    while mantissa != 0 and mantissa & (1 << 60) == 0:
        mantissa <<= 1
        exp -= 1
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mantissa << shift) & ((1 << 60) - 1)
        mantissa >>= 60 - shift
        if extra | (mantissa & 1) > 1 << 59:
            mantissa += 1
        mantissa <<= 60 - shift
        if mantissa & (1 << 61):
            mantissa >>= 1
            exp += 1
    hex_digits = "0123456789ABCDEF" if verb == "X" else "0123456789abcdef"
    text = "0" + verb + str((mantissa >> 60) & 1)
    mantissa = (mantissa << 4) & mask64
    if (prec < 0 and mantissa != 0) or prec > 0:
        text += "."
        count = 0
        while (prec < 0 and mantissa != 0) or count < prec:
            text += hex_digits[(mantissa >> 60) & 15]
            mantissa = (mantissa << 4) & mask64
            count += 1
    text += "P" if verb == "X" else "p"
    return text + ("-" if exp < 0 else "+") + f"{abs(exp):02d}"


def sharp_float(num: str, verb: str, prec: int) -> str:
    """The `#` flag on floats: always a decimal point, and %g keeps its trailing zeros."""
    digits = 0
    if verb in "vgGx":
        digits = 6 if prec == -1 else prec
    tail = ""
    body = num
    for marker in ("p", "P") + (("e", "E") if verb not in "xX" else ()):
        at = body.find(marker, 1)
        if at >= 0:
            body, tail = body[:at], body[at:]
            break
    has_point = "." in body
    saw_nonzero = False
    for ch in body[1:]:
        if ch == ".":
            continue
        if ch != "0":
            saw_nonzero = True
        if saw_nonzero:
            digits -= 1
    if not has_point:
        if len(body) == 2 and body[1] == "0":
            digits -= 1
        body += "."
    return body + "0" * max(digits, 0) + tail
