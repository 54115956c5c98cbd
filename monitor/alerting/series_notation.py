"""promtool's series notation (Prometheus 2.42's "series description" grammar).

`foo{a="b"}` names a series; its values are `1 2 3`, `_` (no sample), `stale` (a stale
marker), `axN` (a, then N more times), `a+bxN` / `a-bxN` (a, then N more values each b further
on, by repeated addition as Go does), `_xN` (N missing samples: not N+1).
"""

from __future__ import annotations

import enum
import math
import re

# A Go test file could ask for 2**64 repetitions (promtool 2.42 then hangs or runs out of
# memory); past this many values in one series it is an error instead.
MAX_SERIES_VALUES = 1_000_000


class Stale(enum.Enum):
    """A stale marker (Prometheus's special NaN): the series ends at this step."""

    STALE = "stale"

    def __repr__(self) -> str:
        return "STALE"


STALE = Stale.STALE
SeriesValue = float | Stale | None  # None: no sample at this step (`_`)


class SeriesNotationError(ValueError):
    """Text that the series notation does not allow; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


# --- the series notation -------------------------------------------------------------------

_SPACE = " \t\r\n"
_WORD_RE = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"[0-9]*(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?")
# Keywords the lexer turns into tokens other than an identifier; these cannot name a metric.
_NOT_METRIC_NAMES = frozenset({"on", "ignoring", "group_left", "group_right", "bool", "atan2",
                               "inf", "nan"})
_KEYWORDS = _NOT_METRIC_NAMES | {
    "and", "or", "unless", "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar",
    "topk", "bottomk", "count_values", "quantile", "offset", "by", "without", "start", "end"}
_HEX_DIGITS = "0123456789abcdefABCDEF"
_OCTAL_DIGITS = "01234567"
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\"}


def _is_alpha(char: str) -> bool:
    return char == "_" or ("a" <= char <= "z") or ("A" <= char <= "Z")


def _is_alnum(char: str) -> bool:
    return _is_alpha(char) or "0" <= char <= "9"


class _Cursor:
    """A position in one line of series notation, with the lexer's small steps."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ""

    def fail(self, message: str, pos: int | None = None) -> SeriesNotationError:
        return SeriesNotationError(message, (self.pos if pos is None else pos) + 1)

    def skip_space(self, *, comments: bool) -> None:
        while self.peek():
            if self.peek() in _SPACE:
                self.pos += 1
            elif comments and self.peek() == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def string(self) -> str:
        """A quoted label value ("…", '…' with Go escapes, or `…` raw), unquoted."""
        quote, start = self.peek(), self.pos
        self.pos += 1
        end = self.text.find(quote, self.pos) if quote == "`" else -1
        if quote == "`":
            if end < 0:
                raise self.fail("unterminated raw string", start)
            self.pos = end + 1
            return self.text[start + 1:end]
        out = bytearray()
        while (char := self.peek()) != quote:
            if char in ("", "\n"):
                raise self.fail("unterminated quoted string", start)
            self.pos += 1
            if char != "\\":
                out += char.encode("utf-8", "surrogatepass")
                continue
            out += self._escape(quote)
        self.pos += 1
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail("the string is not valid UTF-8 once unescaped", start) from exc

    def _escape(self, quote: str) -> bytes:
        """One escape after a backslash, as Go's lexEscape and strutil.Unquote read it."""
        char, start = self.peek(), self.pos - 1
        self.pos += 1
        if not char:
            raise self.fail("escape sequence not terminated", start)
        if char in _SIMPLE_ESCAPES or char == quote:
            return _SIMPLE_ESCAPES.get(char, char).encode()
        if char in "xuU":
            size, allowed, first = {"x": 2, "u": 4, "U": 8}[char], _HEX_DIGITS, self.pos
        elif char in _OCTAL_DIGITS:
            size, allowed, first = 3, _OCTAL_DIGITS, self.pos - 1
        else:
            raise self.fail(f"unknown escape sequence {chr(92) + char!r}", start)
        code = self.text[first:first + size]
        if len(code) < size or any(digit not in allowed for digit in code):
            escape = self.text[start:first + size]
            raise self.fail(f"illegal character in escape sequence {escape!r}", start)
        self.pos = first + size
        value = int(code, 8 if allowed is _OCTAL_DIGITS else 16)
        if char in "uU" and (value > 0x10FFFF or 0xD800 <= value < 0xE000):
            raise self.fail("escape sequence is an invalid Unicode code point", start)
        if char in "uU":
            return chr(value).encode()
        if value > 255:
            raise self.fail("escape sequence is an invalid Unicode code point", start)
        return bytes([value])  # \x and octal escapes are bytes, not characters


def _label_set(cursor: _Cursor) -> list[tuple[str, str]]:
    """`{name="value", ...}` from the cursor's `{`, as the grammar's label_set."""
    cursor.pos += 1
    pairs: list[tuple[str, str]] = []
    while True:
        cursor.skip_space(comments=True)
        char = cursor.peek()
        if char == "}":
            cursor.pos += 1
            return pairs
        if not _is_alpha(char):
            raise cursor.fail("unexpected end of input inside braces" if not char
                              else f"unexpected character inside braces: {char!r}")
        name = _LABEL_RE.match(cursor.text, cursor.pos)
        assert name is not None
        cursor.pos = name.end()
        cursor.skip_space(comments=True)
        if cursor.peek() != "=" or cursor.peek(1) == "~":
            op = cursor.text[cursor.pos:cursor.pos + 2]
            raise cursor.fail(f'unexpected {op or "end of input"!r} in label set, expected "="')
        cursor.pos += 1
        cursor.skip_space(comments=True)
        if cursor.peek() not in ('"', "'", "`") or not cursor.peek():
            raise cursor.fail("unexpected input in label set, expected a quoted string")
        pairs.append((name.group(), cursor.string()))
        cursor.skip_space(comments=True)
        if cursor.peek() == ",":
            cursor.pos += 1
        elif cursor.peek() != "}":
            raise cursor.fail('unexpected input in label set, expected "," or "}"')


def _metric(cursor: _Cursor, *, series_desc: bool) -> dict[str, str]:
    """The grammar's `metric`: an optional name, then an optional label set."""
    cursor.skip_space(comments=not series_desc)
    name = None
    word = _WORD_RE.match(cursor.text, cursor.pos)
    if word is not None:
        if word.group().lower() in _NOT_METRIC_NAMES:
            raise cursor.fail(f"unexpected {word.group()!r}: it cannot be a metric name")
        name, cursor.pos = word.group(), word.end()
        if not series_desc:
            cursor.skip_space(comments=True)
    pairs = _label_set(cursor) if cursor.peek() == "{" else []
    if name is not None:  # labels.NewBuilder: the name wins, empty values are dropped
        pairs = [(key, value) for key, value in pairs if key != "__name__" and value]
        pairs.insert(0, ("__name__", name))
    labels: dict[str, str] = {}
    for key, value in pairs:
        if key in labels:
            raise cursor.fail(f"label name {key!r} is not unique")
        labels[key] = value
    return labels


def parse_series(text: str) -> dict[str, str]:
    """The labels of a series written as `name{label="value", ...}` (parser.ParseMetric).

    As in Prometheus, a metric name drops empty label values; `{a=""}` alone keeps it.
    """
    cursor = _Cursor(text)
    labels = _metric(cursor, series_desc=False)
    cursor.skip_space(comments=True)
    if cursor.peek():
        raise cursor.fail(f"unexpected {cursor.text[cursor.pos:]!r} after the series")
    return labels


def _go_number(text: str, cursor: _Cursor, pos: int) -> float:
    """`parser.number`: strconv.ParseInt(text, 0, 64), else strconv.ParseFloat."""
    if text.lower() in ("inf", "nan"):
        return float(text)
    if re.fullmatch(r"0[0-7]*|[1-9][0-9]*", text) and int(text, 8 if text[0] == "0" else 10) \
            < 2**63:
        return float(int(text, 8 if text[0] == "0" else 10))
    try:
        value = float(text)
    except ValueError:
        raise cursor.fail(f"error parsing number {text!r}", pos) from None
    if math.isinf(value):
        raise cursor.fail(f"error parsing number {text!r}: value out of range", pos)
    return value


_Token = tuple[str, str, int]  # kind, text, position
_SINGLE_CHAR_TOKENS = {"+": "ADD", "-": "SUB", "x": "TIMES", "_": "BLANK"}


class _ValueParser:
    """A value sequence (Go's lexValueSequence and the grammar's series_values) from the
    cursor on: items, each after white space, at most `limit` values."""

    def __init__(self, cursor: _Cursor, limit: int) -> None:
        self.cursor = cursor
        self.limit = limit
        self.values: list[SeriesValue] = []
        self.token = self._lex()

    def _lex(self) -> _Token:
        cursor = self.cursor
        start, char = cursor.pos, cursor.peek()
        if not char:
            return ("EOF", "", start)
        if char in _SPACE:
            cursor.skip_space(comments=False)
            return ("SPACE", " ", start)
        if char in _SINGLE_CHAR_TOKENS:
            cursor.pos += 1
            return (_SINGLE_CHAR_TOKENS[char], char, start)
        if "0" <= char <= "9" or (char == "." and "0" <= cursor.peek(1) <= "9"):
            number = _NUMBER_RE.match(cursor.text, start)
            assert number is not None
            cursor.pos = number.end()
            if _is_alnum(cursor.peek()) and cursor.peek() != "x":
                raise cursor.fail(f"bad number syntax: {number.group()!r}", start)
            return ("NUMBER", number.group(), start)
        if _is_alpha(char):
            word = _WORD_RE.match(cursor.text, start)
            assert word is not None
            cursor.pos = word.end()
            lowered = word.group().lower()
            kind = "NUMBER" if lowered in ("inf", "nan") else (
                "KEYWORD" if lowered in _KEYWORDS else "IDENTIFIER")
            return (kind, word.group(), start)
        raise cursor.fail(f"unexpected character in series values: {char!r}")

    def take(self) -> _Token:
        token, self.token = self.token, self._lex()
        return token

    def unexpected(self, token: _Token, wanted: str = "") -> SeriesNotationError:
        what = "end of input" if token[0] == "EOF" else repr(token[1])
        return self.cursor.fail(f"unexpected {what} in series values{wanted}", token[2])

    def number(self, token: _Token) -> float:
        sign = 1.0
        if token[0] in ("ADD", "SUB"):
            sign = -1.0 if token[0] == "SUB" else 1.0
            token = self.take()
        if token[0] != "NUMBER":
            raise self.unexpected(token, ", expected a number")
        return sign * _go_number(token[1], self.cursor, token[2])

    def repetitions(self) -> int:
        """The N of `xN` (the `x` is the current token), within the limit."""
        self.take()
        token = self.take()
        if token[0] != "NUMBER":
            raise self.unexpected(token, ", expected a repetition count")
        if not token[1].isdigit() or int(token[1]) >= 2**64:
            raise self.cursor.fail(f"invalid repetition {token[1]!r} in series values: "
                                   "expected a whole number", token[2])
        if len(self.values) + int(token[1]) > self.limit:
            raise self.cursor.fail(f"more than {self.limit} values in one series", token[2])
        return int(token[1])

    def parse(self) -> list[SeriesValue]:
        while (token := self.take())[0] != "EOF":
            if token[0] != "SPACE":
                raise self.unexpected(token)
            if self.token[0] != "EOF":
                self.item(self.take())
        return self.values

    def item(self, token: _Token) -> None:
        if token[0] == "BLANK":  # `_xN` is N blanks where `axN` is N+1 values
            self.values.extend([None] * (self.repetitions() if self.token[0] == "TIMES" else 1))
            return
        first: float | Stale
        if token[0] == "IDENTIFIER" and token[1] == "stale":
            first = STALE
        elif token[0] in ("IDENTIFIER", "KEYWORD"):
            raise self.unexpected(token, ', expected a number or "stale"')
        else:
            first = self.number(token)
        if self.token[0] == "TIMES":
            self.values.extend([first] * (self.repetitions() + 1))
        elif self.token[0] in ("ADD", "SUB"):
            step = self.number(self.take())
            if self.token[0] != "TIMES":
                raise self.unexpected(self.token, ', expected "x" and a repetition count')
            current = first
            for _ in range(self.repetitions() + 1):  # repeated addition, as Go's `$1 += $2`
                self.values.append(current)
                current = math.nan if isinstance(current, Stale) else current + step
        else:
            self.values.append(first)
        if len(self.values) > self.limit:
            raise self.cursor.fail(f"more than {self.limit} values in one series", token[2])


def parse_series_desc(line: str, *, limit: int = MAX_SERIES_VALUES,
                      ) -> tuple[dict[str, str], list[SeriesValue]]:
    """A `load` line, `series values...`: its labels and one value per step.

    As for an input series in Prometheus, empty label values are dropped and an empty label
    set is an error.
    """
    cursor = _Cursor(line)
    labels = {key: value for key, value in _metric(cursor, series_desc=True).items() if value}
    values = _ValueParser(cursor, limit).parse()
    if not labels:
        raise cursor.fail("empty label set: a series needs a name or a label", 0)
    return labels, values


def expand_values(text: str, *, limit: int = MAX_SERIES_VALUES) -> list[SeriesValue]:
    """The values of `text` in series notation, one per step (columns count in `text`)."""
    cursor = _Cursor(" " + text)
    try:
        return _ValueParser(cursor, limit).parse()
    except SeriesNotationError as exc:
        raise SeriesNotationError(exc.message, max(exc.column - 1, 1)) from None
