"""Go (RE2) regular expressions on Python's `re`: syntax translation, `ReplaceAllString`.

Prometheus's `reReplaceAll` and `match` take Go regexps. Most syntax is the same; this
module translates what differs and refuses what Go refuses:

- `$` without the `m` flag is end of text in Go (`\\z`), not "before a final newline";
  `\\z` is `\\Z` in Python; `\\Q...\\E` quotes; `\\s` is `[\\t\\n\\f\\r ]` (no `\\v`);
  `\\d \\w \\b` are ASCII; POSIX classes `[[:alpha:]]` become ranges.
- Go has no lookaround, backreferences, atomic groups or possessive repeats: using one is
  a compile error here too. Unicode classes (`\\pL`) and the `U` flag are not supported.

Replacement follows Go's `Expand`: `$1`, `${1}`, `$name`, `${name}`, `$$`; `$1x` names a
group "1x", and a missing group is empty. Replace-all skips an empty match right after the
previous match, as Go does (Python's `re.sub` does not). Python's `re` backtracks where RE2
does not, so a pathological pattern can be slow; patterns come from rule files, which the
operator writes.
"""

from __future__ import annotations

import re
from functools import lru_cache

from monitor.alerting.gotemplate.quoting import can_backquote, go_quote

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_GO_SPACE = "\\t\\n\\f\\r "
_UNSUPPORTED_GROUPS = ("(?=", "(?!", "(?<", "(?#", "(?>", "(?P=", "(?P>")


class RegexpError(ValueError):
    """A pattern Go would not compile; the message is "error parsing regexp: ..."."""

    def __init__(self, code: str, fragment: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{fragment}`")


def go_regexp_quote(text: str) -> str:
    """The `regexp` package's quoting in MustCompile panics."""
    return f"`{text}`" if can_backquote(text) else go_quote(text)


@lru_cache(maxsize=512)
def compile_go_regexp(pattern: str) -> re.Pattern[str]:
    translated = _translate(pattern)
    try:
        return re.compile(translated, re.ASCII)
    except re.error as exc:
        raise RegexpError(_go_error_code(exc.msg), pattern) from None


def _go_error_code(message: str) -> str:
    for python, go in (
        ("missing ), unterminated subpattern", "missing closing )"),
        ("unterminated character set", "missing closing ]"),
        ("unbalanced parenthesis", "unexpected )"),
        ("nothing to repeat", "missing argument to repetition operator"),
        ("multiple repeat", "invalid nested repetition operator"),
        ("bad character range", "invalid character class range"),
        ("bad escape", "invalid escape sequence"),
    ):
        if message.startswith(python):
            return go
    return message


def _translate(pattern: str) -> str:
    out: list[str] = []
    multiline_stack = [False]
    i = 0
    if pattern.startswith("(?"):
        flags = re.match(r"\(\?([a-zA-Z]*)\)", pattern)
        if flags:
            _check_flags(flags.group(1), pattern)
            multiline_stack[0] = "m" in flags.group(1)
            out.append(flags.group(0))
            i = flags.end()
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            text, i = _escape(pattern, i, in_class=False)
            out.append(text)
            continue
        if ch == "[":
            text, i = _char_class(pattern, i)
            out.append(text)
            continue
        if ch == "(":
            if pattern.startswith(_UNSUPPORTED_GROUPS, i):
                raise RegexpError("invalid or unsupported Perl syntax", pattern[i : i + 3])
            scoped = re.match(r"\(\?([a-zA-Z-]*)(:|\))", pattern[i:])
            multiline = multiline_stack[-1]
            if scoped and not pattern.startswith("(?P", i):
                _check_flags(scoped.group(1), pattern)
                if scoped.group(2) == ")":
                    raise RegexpError("flags in the middle of a pattern are not supported",
                                      scoped.group(0))
                on, _, off = scoped.group(1).partition("-")
                multiline = ("m" in on or multiline) and "m" not in off
            multiline_stack.append(multiline)
            out.append(ch)
        elif ch == ")":
            if len(multiline_stack) > 1:
                multiline_stack.pop()
            out.append(ch)
        elif ch == "$":
            out.append("$" if multiline_stack[-1] else "\\Z")
        elif ch in "*+?" and i + 1 < len(pattern) and pattern[i + 1] == "+":
            raise RegexpError("invalid nested repetition operator", pattern[i : i + 2])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _check_flags(flags: str, pattern: str) -> None:
    if any(flag not in "imsU-" for flag in flags):
        raise RegexpError("invalid or unsupported Perl syntax", f"(?{flags}")
    if "U" in flags:
        raise RegexpError("the U (ungreedy) flag is not supported", pattern)


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        raise RegexpError("trailing backslash at end of expression", "")
    ch = pattern[i + 1]
    if ch == "Q" and not in_class:
        end = pattern.find("\\E", i + 2)
        literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
        return re.escape(literal), len(pattern) if end < 0 else end + 2
    if ch == "z" and not in_class:
        return "\\Z", i + 2
    if ch == "s":
        return (_GO_SPACE if in_class else f"[{_GO_SPACE}]"), i + 2
    if ch == "S" and not in_class:
        return f"[^{_GO_SPACE}]", i + 2
    if ch in "pP":
        raise RegexpError("Unicode classes are not supported", pattern[i : i + 3])
    if ch == "x" and pattern.startswith("{", i + 2):
        end = pattern.find("}", i + 3)
        if end < 0:
            raise RegexpError("invalid escape sequence", pattern[i:])
        return f"\\U{int(pattern[i + 3 : end], 16):08x}", end + 1
    if ch in "01234567":
        digits = re.match(r"[0-7]{1,3}", pattern[i + 1 :])
        assert digits is not None
        if ch != "0" and len(digits.group(0)) == 1:
            raise RegexpError("invalid escape sequence", pattern[i : i + 2])
        value = int(digits.group(0), 8)
        return f"\\x{value:02x}", i + 1 + len(digits.group(0))
    allowed_letters = "aftnrvdDwWsSbBAx" if not in_class else "aftnrvdDwWsx"
    if ch.isascii() and ch.isalnum() and ch not in allowed_letters:
        raise RegexpError("invalid escape sequence", pattern[i : i + 2])
    return pattern[i : i + 2], i + 2


def _char_class(pattern: str, start: int) -> tuple[str, int]:
    out = ["["]
    i = start + 1
    if pattern[i : i + 1] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2 : end] if end >= 0 else ""
            if name.startswith("^"):
                raise RegexpError("negated POSIX classes are not supported", pattern[i : end + 2])
            if name not in _POSIX_CLASSES:
                raise RegexpError("invalid character class range", pattern[i : end + 2])
            out.append(_POSIX_CLASSES[name])
            i = end + 2
        elif ch == "\\":
            text, i = _escape(pattern, i, in_class=True)
            out.append(text)
        elif ch in "[&~|":
            out.append("\\" + ch)
            i += 1
        else:
            out.append(ch)
            i += 1
    raise RegexpError("missing closing ]", pattern[start:])


def expand_go_template(template: str, match: re.Match[str]) -> str:
    """Go's `Regexp.Expand` of a replacement template for one match."""
    out: list[str] = []
    rest = template
    while True:
        before, dollar, after = rest.partition("$")
        if not dollar:
            break
        out.append(before)
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        extracted = _extract(rest)
        if extracted is None:
            out.append("$")
            continue
        name, number, rest = extracted
        group = _group(match, name, number)
        if group is not None:
            out.append(group)
    out.append(rest)
    return "".join(out)


def _extract(text: str) -> tuple[str, int, str] | None:
    brace = text.startswith("{")
    body = text[1:] if brace else text
    length = 0
    while length < len(body) and (body[length] == "_" or body[length].isalpha()
                                  or body[length].isdecimal()):
        length += 1
    if length == 0:
        return None
    name = body[:length]
    if brace:
        if body[length : length + 1] != "}":
            return None
        length += 1
    number = int(name) if name.isascii() and name.isdigit() and len(name) <= 9 else -1
    if name[0] == "0" and len(name) > 1:
        number = -1
    return name, number, body[length:]


def _group(match: re.Match[str], name: str, number: int) -> str | None:
    if number >= 0:
        return match.group(number) if number <= match.re.groups else None
    if name in match.re.groupindex:
        return match.group(name)
    return None


def replace_all(pattern: re.Pattern[str], text: str, template: str) -> str:
    """Go's `ReplaceAllString`, empty-match rules included."""
    out: list[str] = []
    last_end = 0
    search_pos = 0
    while search_pos <= len(text):
        match = pattern.search(text, search_pos)
        if match is None:
            break
        start, end = match.span()
        out.append(text[last_end:start])
        if end > last_end or start == 0:
            out.append(expand_go_template(template, match))
        last_end = end
        width = 1 if search_pos < len(text) else 0
        if search_pos + width > end:
            search_pos += width
        elif search_pos + 1 > end:
            search_pos += 1
        else:
            search_pos = end
    out.append(text[last_end:])
    return "".join(out)
