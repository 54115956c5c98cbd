"""The lexer of Go's text/template (Go 1.19), token for token.

It is a port of `text/template/parse/lex.go`: the same states, the same trimming of spaces
around `{{-` and `-}}`, the same error texts. Go runs its lexer in a goroutine that feeds the
parser; nothing the parser does changes what the lexer produces, so here the whole input is
scanned up front into a list that ends with an EOF or an error token.

Positions are indices into the Python string (code points); `errors.py` turns them into the
byte columns Go reports.
"""

from __future__ import annotations

import enum
import unicodedata
from typing import NamedTuple, Protocol

from monitor.alerting.gotemplate.quoting import go_quote

LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
LEFT_COMMENT = "/*"
RIGHT_COMMENT = "*/"
SPACE_CHARS = " \t\r\n"
TRIM_MARKER_LEN = 2  # "-" plus the space before or after it


class Kind(enum.IntEnum):
    """Token kinds; everything after KEYWORD is a keyword (the order matters, as in Go)."""

    ERROR = 0
    BOOL = enum.auto()
    CHAR = enum.auto()
    CHAR_CONSTANT = enum.auto()
    COMMENT = enum.auto()
    COMPLEX = enum.auto()
    ASSIGN = enum.auto()
    DECLARE = enum.auto()
    EOF = enum.auto()
    FIELD = enum.auto()
    IDENTIFIER = enum.auto()
    LEFT_DELIM = enum.auto()
    LEFT_PAREN = enum.auto()
    NUMBER = enum.auto()
    PIPE = enum.auto()
    RAW_STRING = enum.auto()
    RIGHT_DELIM = enum.auto()
    RIGHT_PAREN = enum.auto()
    SPACE = enum.auto()
    STRING = enum.auto()
    TEXT = enum.auto()
    VARIABLE = enum.auto()
    KEYWORD = enum.auto()
    BLOCK = enum.auto()
    BREAK = enum.auto()
    CONTINUE = enum.auto()
    DOT = enum.auto()
    DEFINE = enum.auto()
    ELSE = enum.auto()
    END = enum.auto()
    IF = enum.auto()
    NIL = enum.auto()
    RANGE = enum.auto()
    TEMPLATE = enum.auto()
    WITH = enum.auto()


KEYWORDS = {
    ".": Kind.DOT,
    "block": Kind.BLOCK,
    "break": Kind.BREAK,
    "continue": Kind.CONTINUE,
    "define": Kind.DEFINE,
    "else": Kind.ELSE,
    "end": Kind.END,
    "if": Kind.IF,
    "range": Kind.RANGE,
    "nil": Kind.NIL,
    "template": Kind.TEMPLATE,
    "with": Kind.WITH,
}


class _State(Protocol):
    def __call__(self) -> _State | None: ...


class Token(NamedTuple):
    kind: Kind
    pos: int
    val: str
    line: int

    def describe(self) -> str:
        """What Go's `item.String()` prints for this token in parse errors."""
        if self.kind == Kind.EOF:
            return "EOF"
        if self.kind == Kind.ERROR:
            return self.val
        if self.kind > Kind.KEYWORD:
            return f"<{self.val}>"
        if len(self.val.encode()) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_space(ch: str) -> bool:
    return ch in SPACE_CHARS and ch != ""


def is_alphanumeric(ch: str) -> bool:
    return ch == "_" or (ch != "" and (ch.isalpha() or unicodedata.category(ch) == "Nd"))


def has_left_trim_marker(text: str, at: int) -> bool:
    return text[at : at + 1] == "-" and is_space(text[at + 1 : at + 2])


def has_right_trim_marker(text: str, at: int) -> bool:
    return is_space(text[at : at + 1]) and text[at + 1 : at + 2] == "-"


def _describe_rune(ch: str) -> str:
    """Go's `%#U`: U+0041 'A' (the quoted form only for printable runes)."""
    code = f"U+{ord(ch):04X}"
    return f"{code} '{ch}'" if ch.isprintable() else code


class Lexer:
    """Scans a template into tokens; `tokens()` returns them all, ending in EOF or ERROR."""

    def __init__(self, text: str, *, break_ok: bool = True, continue_ok: bool = True) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.line = 1
        self.start_line = 1
        self.paren_depth = 0
        self.at_eof = False
        self.break_ok = break_ok
        self.continue_ok = continue_ok
        self.out: list[Token] = []

    def tokens(self) -> list[Token]:
        state: _State | None = self._lex_text
        while state is not None:
            state = state()
        return self.out

    # --- primitives -------------------------------------------------------------------

    def _next(self) -> str:
        if self.pos >= len(self.text):
            self.at_eof = True  # as in Go, sticky: every later backup is a no-op
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        if ch == "\n":
            self.line += 1
        return ch

    def _backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            self.pos -= 1
            if self.text[self.pos] == "\n":
                self.line -= 1

    def _peek(self) -> str:
        ch = self._next()
        self._backup()
        return ch

    def _emit(self, kind: Kind) -> None:
        self.out.append(Token(kind, self.start, self.text[self.start : self.pos], self.start_line))
        self.start = self.pos
        self.start_line = self.line

    def _ignore(self) -> None:
        self.line += self.text.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def _accept(self, valid: str) -> bool:
        ch = self._next()
        if ch != "" and ch in valid:
            return True
        self._backup()
        return False

    def _accept_run(self, valid: str) -> None:
        while True:
            ch = self._next()
            if ch == "" or ch not in valid:
                break
        self._backup()

    def _error(self, message: str) -> None:
        self.out.append(Token(Kind.ERROR, self.start, message, self.start_line))

    def _at_right_delim(self) -> tuple[bool, bool]:
        if has_right_trim_marker(self.text, self.pos) and self.text.startswith(
            RIGHT_DELIM, self.pos + TRIM_MARKER_LEN
        ):
            return True, True
        return self.text.startswith(RIGHT_DELIM, self.pos), False

    def _at_terminator(self) -> bool:
        ch = self._peek()
        if ch == "" or is_space(ch) or ch in ".,|:)(":
            return True
        return self.text.startswith(RIGHT_DELIM, self.pos)

    # --- states -----------------------------------------------------------------------

    def _lex_text(self) -> _State | None:
        found = self.text.find(LEFT_DELIM, self.pos)
        if found >= 0:
            self.pos = found
            trim = 0
            if has_left_trim_marker(self.text, self.pos + len(LEFT_DELIM)):
                before = self.text[self.start : self.pos]
                trim = len(before) - len(before.rstrip(SPACE_CHARS))
            self.pos -= trim
            if self.pos > self.start:
                self.line += self.text.count("\n", self.start, self.pos)
                self._emit(Kind.TEXT)
            self.pos += trim
            self._ignore()
            return self._lex_left_delim
        self.pos = len(self.text)
        if self.pos > self.start:
            self.line += self.text.count("\n", self.start, self.pos)
            self._emit(Kind.TEXT)
        self._emit(Kind.EOF)
        return None

    def _lex_left_delim(self) -> _State | None:
        self.pos += len(LEFT_DELIM)
        trim = has_left_trim_marker(self.text, self.pos)
        after_marker = TRIM_MARKER_LEN if trim else 0
        if self.text.startswith(LEFT_COMMENT, self.pos + after_marker):
            self.pos += after_marker
            self._ignore()
            return self._lex_comment
        self._emit(Kind.LEFT_DELIM)
        self.pos += after_marker
        self._ignore()
        self.paren_depth = 0
        return self._lex_inside_action

    def _lex_comment(self) -> _State | None:
        self.pos += len(LEFT_COMMENT)
        end = self.text.find(RIGHT_COMMENT, self.pos)
        if end < 0:
            self._error("unclosed comment")
            return None
        self.pos = end + len(RIGHT_COMMENT)
        delim, trim = self._at_right_delim()
        if not delim:
            self._error("comment ends before closing delimiter")
            return None
        if trim:
            self.pos += TRIM_MARKER_LEN
        self.pos += len(RIGHT_DELIM)
        if trim:
            rest = self.text[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(SPACE_CHARS))
        self._ignore()
        return self._lex_text

    def _lex_right_delim(self) -> _State | None:
        trim = has_right_trim_marker(self.text, self.pos)
        if trim:
            self.pos += TRIM_MARKER_LEN
            self._ignore()
        self.pos += len(RIGHT_DELIM)
        self._emit(Kind.RIGHT_DELIM)
        if trim:
            rest = self.text[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(SPACE_CHARS))
            self._ignore()
        return self._lex_text

    def _lex_inside_action(self) -> _State | None:
        delim, _ = self._at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self._lex_right_delim
            self._error("unclosed left paren")
            return None
        ch = self._next()
        if ch == "":
            self._error("unclosed action")
            return None
        if is_space(ch):
            self._backup()
            return self._lex_space
        simple = {"=": Kind.ASSIGN, "|": Kind.PIPE}
        if ch in simple:
            self._emit(simple[ch])
        elif ch == ":":
            if self._next() != "=":
                self._error("expected :=")
                return None
            self._emit(Kind.DECLARE)
        elif ch == '"':
            return self._lex_quote
        elif ch == "`":
            return self._lex_raw_quote
        elif ch == "$":
            return self._lex_variable
        elif ch == "'":
            return self._lex_char
        elif ch == "." and self.pos < len(self.text) and not "0" <= self.text[self.pos] <= "9":
            return self._lex_field
        elif ch in "+-." or "0" <= ch <= "9":
            self._backup()
            return self._lex_number
        elif is_alphanumeric(ch):
            self._backup()
            return self._lex_identifier
        elif ch == "(":
            self._emit(Kind.LEFT_PAREN)
            self.paren_depth += 1
        elif ch == ")":
            self._emit(Kind.RIGHT_PAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                self._error(f"unexpected right paren {_describe_rune(ch)}")
                return None
        elif ord(ch) < 0x80 and ch.isprintable():
            self._emit(Kind.CHAR)
        else:
            self._error(f"unrecognized character in action: {_describe_rune(ch)}")
            return None
        return self._lex_inside_action

    def _lex_space(self) -> _State | None:
        spaces = 0
        while is_space(self._peek()):
            self._next()
            spaces += 1
        if has_right_trim_marker(self.text, self.pos - 1) and self.text.startswith(
            RIGHT_DELIM, self.pos - 1 + TRIM_MARKER_LEN
        ):
            self._backup()
            if spaces == 1:
                return self._lex_right_delim
        self._emit(Kind.SPACE)
        return self._lex_inside_action

    def _lex_identifier(self) -> _State | None:
        while True:
            ch = self._next()
            if is_alphanumeric(ch):
                continue
            self._backup()
            word = self.text[self.start : self.pos]
            if not self._at_terminator():
                self._error(f"bad character {_describe_rune(ch)}")
                return None
            keyword = KEYWORDS.get(word)
            if keyword is not None and keyword > Kind.KEYWORD:
                if (keyword == Kind.BREAK and not self.break_ok) or (
                    keyword == Kind.CONTINUE and not self.continue_ok
                ):
                    self._emit(Kind.IDENTIFIER)
                else:
                    self._emit(keyword)
            elif word[0] == ".":
                self._emit(Kind.FIELD)
            elif word in ("true", "false"):
                self._emit(Kind.BOOL)
            else:
                self._emit(Kind.IDENTIFIER)
            return self._lex_inside_action

    def _lex_field(self) -> _State | None:
        return self._lex_field_or_variable(Kind.FIELD)

    def _lex_variable(self) -> _State | None:
        if self._at_terminator():
            self._emit(Kind.VARIABLE)
            return self._lex_inside_action
        return self._lex_field_or_variable(Kind.VARIABLE)

    def _lex_field_or_variable(self, kind: Kind) -> _State | None:
        if self._at_terminator():
            self._emit(Kind.VARIABLE if kind == Kind.VARIABLE else Kind.DOT)
            return self._lex_inside_action
        while True:
            ch = self._next()
            if not is_alphanumeric(ch):
                self._backup()
                break
        if not self._at_terminator():
            self._error(f"bad character {_describe_rune(ch)}")
            return None
        self._emit(kind)
        return self._lex_inside_action

    def _lex_char(self) -> _State | None:
        return self._lex_quoted("'", Kind.CHAR_CONSTANT, "unterminated character constant")

    def _lex_quote(self) -> _State | None:
        return self._lex_quoted('"', Kind.STRING, "unterminated quoted string")

    def _lex_quoted(self, quote: str, kind: Kind, unterminated: str) -> _State | None:
        while True:
            ch = self._next()
            if ch == "\\":
                ch = self._next()
                if ch not in ("", "\n"):
                    continue
            if ch in ("", "\n"):
                self._error(unterminated)
                return None
            if ch == quote:
                break
        self._emit(kind)
        return self._lex_inside_action

    def _lex_raw_quote(self) -> _State | None:
        end = self.text.find("`", self.pos)
        if end < 0:
            self.pos = len(self.text)
            self._error("unterminated raw quoted string")
            return None
        self.line += self.text.count("\n", self.pos, end + 1)
        self.pos = end + 1
        self._emit(Kind.RAW_STRING)
        return self._lex_inside_action

    def _lex_number(self) -> _State | None:
        if not self._scan_number():
            self._error(f"bad number syntax: {go_quote(self.text[self.start : self.pos])}")
            return None
        if self._peek() in ("+", "-"):
            if not self._scan_number() or self.text[self.pos - 1] != "i":
                self._error(f"bad number syntax: {go_quote(self.text[self.start : self.pos])}")
                return None
            self._emit(Kind.COMPLEX)
        else:
            self._emit(Kind.NUMBER)
        return self._lex_inside_action

    def _scan_number(self) -> bool:
        self._accept("+-")
        digits = "0123456789_"
        if self._accept("0"):
            if self._accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self._accept("oO"):
                digits = "01234567_"
            elif self._accept("bB"):
                digits = "01_"
        self._accept_run(digits)
        if self._accept("."):
            self._accept_run(digits)
        if len(digits) == 11 and self._accept("eE"):
            self._accept("+-")
            self._accept_run("0123456789_")
        if len(digits) == 23 and self._accept("pP"):
            self._accept("+-")
            self._accept_run("0123456789_")
        self._accept("i")
        if is_alphanumeric(self._peek()):
            self._next()
            return False
        return True

