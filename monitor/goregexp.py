"""Go's `regexp` package, as Prometheus 2.x uses it, on RE2 (google-re2).

Go's regexp is RE2's syntax and RE2's guarantee: matching takes time linear in the input,
so a label value from a log line can never make a pattern backtrack for seconds. RE2 (C++)
accepts two things Go (before 1.22) refuses, `(?<name>...)` and `\\C`; both are refused here
as Go refuses them. Errors read as Go's: "error parsing regexp: <code>: `<fragment>`".

`expand` is `Regexp.Expand` for a replacement template: `$1`, `${1}`, `$name`, `${name}`,
`$$`; `$1x` names a group "1x"; a group that does not exist expands to nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2

# RE2's error texts, and Go's for the same mistake.
_GO_CODES = (
    ("missing )", "missing closing )"),
    ("missing ]", "missing closing ]"),
    ("unexpected )", "unexpected )"),
    ("no argument for repetition operator", "missing argument to repetition operator"),
    ("bad repetition operator", "invalid nested repetition operator"),
    ("invalid repetition size", "invalid repeat count"),
    ("invalid perl operator", "invalid or unsupported Perl syntax"),
    ("invalid named capture group", "invalid named capture"),
)


# A compiled pattern: re.Pattern's search/match/groups/groupindex API (google-re2 ships no
# type information).
Regexp = Any


class RegexpError(ValueError):
    """A pattern Go would not compile."""

    def __init__(self, code: str, fragment: str) -> None:
        super().__init__(f"error parsing regexp: {code}: `{fragment}`")


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # raised to the caller, which reports it once
    return options


_OPTIONS = _options()
_MAX_NESTING = 1000  # Go's regexp/syntax limits
_MAX_REPEAT = 1000
_REPEAT = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")


@lru_cache(maxsize=4096)
def compile_go_regexp(pattern: str) -> Regexp:
    """regexp.Compile(pattern): an object with re.Pattern's search/match/groups API."""
    _refuse_what_go_refuses(pattern)
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else b""
        message = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        code, _, fragment = message.partition(": ")
        for re2_code, go_code in _GO_CODES:
            if code == re2_code:
                code = go_code
                break
        raise RegexpError(code, fragment or pattern) from None


def _refuse_what_go_refuses(pattern: str) -> None:
    i, n = 0, len(pattern)
    class_start = -1  # where the current [...] class's members begin; -1 outside one
    depth = 0
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if pattern.startswith("C", i + 1):
                raise RegexpError("invalid escape sequence", "\\C")
            i += 2
            continue
        if class_start >= 0:
            if pattern.startswith("[:", i) and (end := pattern.find(":]", i + 2)) >= 0:
                i = end + 2
                continue
            if ch == "]" and i > class_start:  # a `]` first in a class is a member
                class_start = -1
        elif ch == "[":
            class_start = i + 2 if pattern.startswith("^", i + 1) else i + 1
            i = class_start
            continue
        elif pattern.startswith("(?<", i):
            raise RegexpError("invalid or unsupported Perl syntax", "(?<")
        elif ch == "(":
            depth += 1
            if depth > _MAX_NESTING:
                raise RegexpError("expression nests too deeply", pattern[:40] + "...")
        elif ch == ")":
            depth -= 1
        elif ch == "{" and (repeat := _REPEAT.match(pattern, i)) is not None and any(
                int(bound) > _MAX_REPEAT for bound in repeat.groups() if bound):
            # RE2 (C++) reads a count too big to parse as literal text; Go refuses it.
            raise RegexpError("invalid repeat count", repeat.group())
        i += 1


def expand(template: str, match: Any) -> str:
    """Regexp.Expand of a replacement template for one match."""
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
        extracted = _extract(rest)
        if extracted is None:
            out.append("$")
            continue
        name, rest = extracted
        out.append(_group_text(match, name))


def _extract(text: str) -> tuple[str, str] | None:
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
        if body[length:length + 1] != "}":
            return None
        length += 1
    return name, body[length:]


def _group_text(match: Any, name: str) -> str:
    pattern = match.re
    if name.isascii() and name.isdigit() and len(name) <= 9 and not (
            name[0] == "0" and len(name) > 1):
        number = int(name)
        return (match.group(number) or "") if number <= pattern.groups else ""
    index = pattern.groupindex.get(name)
    return (match.group(index) or "") if index is not None else ""
