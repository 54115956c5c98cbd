"""`--format json`: the report's document (see `document.py`), indented, keys in the order the
document builds them, non-ASCII text as UTF-8."""

from __future__ import annotations

from typing import Any

import orjson

from monitor.report.document import Document

_OPTIONS = orjson.OPT_INDENT_2


def render_json(document: Document) -> str:
    try:
        return orjson.dumps(document, option=_OPTIONS).decode() + "\n"
    except TypeError:
        # A lone surrogate (a "\ud800" escape in a log line, a file name that is not UTF-8)
        # is not UTF-8, and orjson refuses it: such text is written with backslash escapes.
        return orjson.dumps(encodable(document), option=_OPTIONS).decode() + "\n"


def encodable(value: Any) -> Any:
    """`value` with every string made encodable as UTF-8 (lone surrogates as `\\udcff`)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {encodable(key): encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(item) for item in value]
    return value
