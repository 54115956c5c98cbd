"""`--format json`: the report's document (see `document.py`), indented, keys in the order the
document builds them, non-ASCII text as UTF-8."""

from __future__ import annotations

import orjson

from monitor.report.document import Document


def render_json(document: Document) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
