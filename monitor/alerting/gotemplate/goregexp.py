"""Go's `Regexp.ReplaceAllString` and the quoting of patterns in Go's error messages, for
the template functions `reReplaceAll` and `match` (compiled by monitor.goregexp, on RE2)."""

from __future__ import annotations

from typing import Any

from monitor.alerting.gotemplate.quoting import can_backquote, go_quote
from monitor.goregexp import RegexpError, compile_go_regexp, expand

__all__ = ["RegexpError", "compile_go_regexp", "go_regexp_quote", "replace_all"]


def go_regexp_quote(text: str) -> str:
    """The `regexp` package's quoting in MustCompile panics."""
    return f"`{text}`" if can_backquote(text) else go_quote(text)


def replace_all(pattern: Any, text: str, template: str) -> str:
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
            out.append(expand(template, match))
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
