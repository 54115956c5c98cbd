"""Go's string quoting: `strconv.Quote`, `QuoteToASCII`, `QuoteRune`, `Unquote`, `UnquoteChar`.

Templates quote in error messages (`%q`), in `printf "%q"`, and unquote their string and
character literals; all of it has to match Go byte for byte. Strings here are Python `str`;
a `\\xNN` escape that would make invalid UTF-8 in Go becomes U+FFFD, the only lossy case.
"""

from __future__ import annotations

_SIMPLE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
_UNESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
MAX_RUNE = 0x10FFFF


class UnquoteError(ValueError):
    """Go's strconv.ErrSyntax: the message is always "invalid syntax"."""

    def __init__(self) -> None:
        super().__init__("invalid syntax")


def is_print(ch: str) -> bool:
    """Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and ' '."""
    return ch.isprintable()


def _escape_rune(ch: str, quote: str, ascii_only: bool) -> str:
    if ch in (quote, "\\"):
        return "\\" + ch
    if (ascii_only and ord(ch) < 0x80 and is_print(ch)) or (not ascii_only and is_print(ch)):
        return ch
    if ch in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[ch]
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate is what Go sees as an invalid byte
        return "\\ufffd"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def go_quote(text: str, *, ascii_only: bool = False) -> str:
    """`strconv.Quote` (or `QuoteToASCII` with `ascii_only`)."""
    return '"' + "".join(_escape_rune(ch, '"', ascii_only) for ch in text) + '"'


def go_quote_rune(code: int, *, ascii_only: bool = False) -> str:
    """`strconv.QuoteRune`: invalid code points print as U+FFFD."""
    if code > MAX_RUNE or code < 0 or 0xD800 <= code <= 0xDFFF:
        code = 0xFFFD
    return "'" + _escape_rune(chr(code), "'", ascii_only) + "'"


def can_backquote(text: str) -> bool:
    """`strconv.CanBackquote`: no backquote, no control character other than tab."""
    return all(ch == "\t" or (ch not in "`\ufeff\x7f" and ord(ch) >= 0x20) for ch in text)


def unquote_char(text: str, at: int, quote: str) -> tuple[int, bool, int]:
    """`strconv.UnquoteChar` at `text[at]`: (value, is a whole rune, index after it).

    A value that is not a whole rune is a single byte (`\\xNN` or an octal escape).
    """
    if at >= len(text):
        raise UnquoteError
    ch = text[at]
    if ch == quote and quote in "'\"":
        raise UnquoteError
    if ch != "\\":
        return ord(ch), True, at + 1
    if at + 1 >= len(text):
        raise UnquoteError
    escape = text[at + 1]
    at += 2
    if escape in _UNESCAPES:
        return _UNESCAPES[escape], False, at
    if escape in "xuU":
        width = {"x": 2, "u": 4, "U": 8}[escape]
        digits = text[at : at + width]
        if len(digits) < width or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise UnquoteError
        value = int(digits, 16)
        if escape == "x":
            return value, False, at + width
        if value > MAX_RUNE or 0xD800 <= value <= 0xDFFF:
            raise UnquoteError
        return value, True, at + width
    if escape in "01234567":
        digits = escape + text[at : at + 2]
        if len(digits) < 3 or any(d not in "01234567" for d in digits):
            raise UnquoteError
        value = int(digits, 8)
        if value > 255:
            raise UnquoteError
        return value, False, at + 2
    if escape in "'\"":
        if escape != quote:
            raise UnquoteError
        return ord(escape), False, at
    raise UnquoteError


def go_unquote(literal: str) -> str:
    """`strconv.Unquote` of a "…", `…` or '…' literal."""
    if len(literal) < 2 or literal[0] != literal[-1] or literal[0] not in "\"`'":
        raise UnquoteError
    quote = literal[0]
    body = literal[1:-1]
    if quote == "`":
        if "`" in body:
            raise UnquoteError
        return body.replace("\r", "")
    if "\n" in body:
        raise UnquoteError
    out = bytearray()
    at = 0
    count = 0
    while at < len(body):
        value, whole_rune, at = unquote_char(body, at, quote)
        out += chr(value).encode() if whole_rune or value < 0x80 else bytes([value])
        count += 1
    if quote == "'" and count != 1:
        raise UnquoteError
    return out.decode("utf-8", errors="replace")
