"""Go's strconv and regexp behaviour where PromQL functions expose it.

- `parse_float`: strconv.ParseFloat(s, 64), which reads histogram `le` labels. Python's float()
  accepts spaces, "+nan" and non-ASCII digits and turns "1e400" into inf; Go refuses all of
  those (the last with ErrRange), and Prometheus then skips the bucket.
- `format_float`: strconv.FormatFloat(v, 'f', -1, 64), the label value count_values writes.
- `compile_go_regexp` / `expand_template`: label_replace's regular expression, RE2 syntax read
  by Python's `re`. What RE2 refuses (backreferences, lookaround, possessive quantifiers,
  repeat counts over 1000) is refused; what only RE2 has (\\Q...\\E, [[:alpha:]], \\z) is
  translated; \\d \\w \\s \\b are ASCII as in RE2; `$` is the end of the text (Python's also
  matches before a final newline). Unicode classes (\\pL) and the U flag are refused as
  unsupported rather than silently matched differently. The replacement template follows
  regexp.Expand: `$1`, `${1}`, `$name`, `${name}`, `$$`, where `$1x` names group "1x".
"""

from __future__ import annotations

import math
import re
import unicodedata
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

class GoRegexpError(ValueError):
    """RE2 would not compile the pattern (or it uses syntax this translation cannot match)."""


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_PERL_CLASSES = {"d": "0-9", "s": "\\t\\n\\f\\r ", "w": "0-9A-Za-z_"}
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_MAX_REPEAT = 1000


def compile_go_regexp(pattern: str) -> re.Pattern[str]:
    """The pattern compiled to behave as Go's regexp.Compile(pattern) does."""
    try:
        return re.compile(_translate(pattern))
    except re.error as exc:
        raise GoRegexpError(str(exc)) from None
    except (OverflowError, RecursionError) as exc:
        raise GoRegexpError(str(exc)) from None


_FLAGS = re.compile(r"\(\?([imsU]*)(?:-([imsU]*))?([:)])")


def _translate(pattern: str) -> str:  # noqa: PLR0915 - one pass over RE2's tokens
    out: list[str] = []
    # One entry per open group: (closers owed for `(?flags)` inside it, multiline outside it).
    groups: list[tuple[int, bool]] = []
    top_closers = 0
    i, n = 0, len(pattern)
    in_class = multiline = False
    at_group_start = True
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            token, i = _escape(pattern, i, in_class)
            out.append(token)
            at_group_start = False
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                cls = _POSIX_CLASSES.get(pattern[i + 2:end]) if end > 0 else None
                if cls is None:
                    raise GoRegexpError(f"invalid character class range: {pattern[i:end + 2]}")
                out.append(cls)
                i = end + 2
                continue
            if ch == "]" and not _class_just_opened(out):
                in_class = False
            out.append("\\" + ch if ch in "[&~|" else ch)
            i += 1
            continue
        at_group_start_next = False
        if ch == "[":
            in_class = True
            out.append("[")
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):
                out.append("\\]")
                i += 1
            at_group_start = False
            continue
        if ch == "(":
            flags = _FLAGS.match(pattern, i)
            if pattern.startswith("(?P<", i):
                groups.append((0, multiline))
                out.append("(?P<")
                i += 4
                at_group_start = False  # the name follows; the group body starts after it
                continue
            if pattern.startswith("(?", i) and flags is None:
                raise GoRegexpError(f"invalid or unsupported Perl syntax: {pattern[i:i + 3]}")
            if flags is not None:
                on, off, kind = flags.group(1), flags.group(2) or "", flags.group(3)
                if "U" in on + off:
                    raise GoRegexpError("the U (ungreedy) flag is not supported")
                if kind == ")":
                    if not on + off:
                        raise GoRegexpError("missing argument to repetition operator: (?)")
                    if not at_group_start:
                        raise GoRegexpError("flags in the middle of a group are not supported")
                    if groups:
                        closers, saved = groups[-1]
                        groups[-1] = (closers + 1, saved)
                    else:
                        top_closers += 1
                else:
                    groups.append((0, multiline))
                multiline = ("m" in on or multiline) and "m" not in off
                out.append(flags.group(0)[:-1] + ":")
                i = flags.end()
                at_group_start = True
                continue
            groups.append((0, multiline))
            at_group_start_next = True
        elif ch == ")" and groups:
            closers, multiline = groups.pop()
            out.append(")" * closers)
        elif ch in "*+?" and pattern.startswith("+", i + 1):
            raise GoRegexpError(f"invalid nested repetition operator: {ch}+")
        elif ch == "{":
            repeat = _REPEAT.match(pattern, i)
            if repeat is None:
                ch = "\\{"
            else:
                if any(int(g) > _MAX_REPEAT for g in repeat.groups() if g):
                    raise GoRegexpError(f"invalid repeat count: {repeat.group(0)}")
                if pattern.startswith("+", repeat.end()):
                    raise GoRegexpError(f"invalid nested repetition operator: "
                                        f"{repeat.group(0)}+")
        elif ch == "$" and not multiline:
            ch = "\\Z"
        elif ch == "|":
            at_group_start_next = True
        out.append(ch)
        i += 1
        at_group_start = at_group_start_next
    if in_class:
        raise GoRegexpError(f"missing closing ]: {pattern}")
    out.append(")" * top_closers)
    return "".join(out)


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    """One backslash escape at `i`: its Python spelling and the index after it."""
    if i + 1 >= len(pattern):
        raise GoRegexpError("trailing backslash at end of expression")
    nxt = pattern[i + 1]
    if nxt == "Q":
        end = pattern.find("\\E", i + 2)
        literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
        return "".join(_escape_literal(c, in_class) for c in literal), (
            len(pattern) if end < 0 else end + 2)
    if nxt in "pP":
        raise GoRegexpError("Unicode character classes are not supported")
    if nxt == "x" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        digits = pattern[i + 3:end] if end > 0 else ""
        if not digits or any(c not in "0123456789abcdefABCDEF" for c in digits) or int(
                digits, 16) > 0x10FFFF:
            raise GoRegexpError(f"invalid escape sequence: {pattern[i:end + 1]}")
        return _escape_literal(chr(int(digits, 16)), in_class), end + 1
    if (nxt.isdigit() and nxt != "0") or nxt in "ZGX" or (
            nxt.isalpha() and nxt not in "abfnrtvxdswDSWbBAz"):
        raise GoRegexpError(f"invalid escape sequence: \\{nxt}")
    if nxt == "z":
        return "\\Z", i + 2
    if nxt.lower() in _PERL_CLASSES:
        inner = _PERL_CLASSES[nxt.lower()]
        if not in_class:
            return f"[{'^' if nxt.isupper() else ''}{inner}]", i + 2
        if nxt.isupper():
            raise GoRegexpError("negated Perl classes inside brackets are not supported")
        return inner, i + 2
    if nxt in "bB" and not in_class:
        word, other = "(?<=[0-9A-Za-z_])", "(?<![0-9A-Za-z_])"
        ahead, not_ahead = "(?=[0-9A-Za-z_])", "(?![0-9A-Za-z_])"
        if nxt == "b":
            return f"(?:{word}{not_ahead}|{other}{ahead})", i + 2
        return f"(?:{word}{ahead}|{other}{not_ahead})", i + 2
    return pattern[i:i + 2], i + 2


def _class_just_opened(out: list[str]) -> bool:
    return bool(out) and (out[-1] == "[" or (out[-1] == "^" and len(out) > 1
                                              and out[-2] == "["))


def _escape_literal(ch: str, in_class: bool) -> str:
    if in_class:
        return "\\" + ch if ch in "\\]^-[" else ch
    return re.escape(ch)


def expand_template(template: str, match: re.Match[str]) -> str:
    """regexp.ExpandString(nil, template, src, match): Go's `$` template language."""
    out: list[str] = []
    rest = template
    while True:
        before, dollar, rest = rest.partition("$")
        out.append(before)
        if not dollar:
            return "".join(out)
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        parsed = _extract(rest)
        if parsed is None:
            out.append("$")
            continue
        name, rest = parsed
        out.append(_group_text(match, name))


def _extract(text: str) -> tuple[str, str] | None:
    brace = text.startswith("{")
    body = text[1:] if brace else text
    i = 0
    while i < len(body) and (body[i].isalpha() or body[i] == "_"
                             or unicodedata.category(body[i]) == "Nd"):
        i += 1
    if i == 0:
        return None
    name = body[:i]
    if brace:
        if i >= len(body) or body[i] != "}":
            return None
        i += 1
    return name, body[i:]


def _group_text(match: re.Match[str], name: str) -> str:
    if name.isascii() and name.isdigit():
        if (name[0] == "0" and len(name) > 1) or len(name) > 9:
            return _named_group_text(match, name)
        number = int(name)
        if number <= (match.re.groups or 0):
            return match.group(number) or ""
        return ""
    return _named_group_text(match, name)


def _named_group_text(match: re.Match[str], name: str) -> str:
    index = match.re.groupindex.get(name)
    return (match.group(index) or "") if index is not None else ""


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
