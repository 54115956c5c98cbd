"""Shared by the status page tests: hostile strings, a check that no markup from data
survived into the HTML, and a real `inferwatch run` set up so that every section has
something hostile to show (a log whose service and model carry HTML, a rule that fires on
them, a budget that is crossed, an SLO, a silence with a hostile comment)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import DaemonProcess

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE_SERVICE = f"svc{SCRIPT}"
HOSTILE_MODEL = f"model{IMG}"
HOSTILE_BUDGET = "daily<b>bold</b>"
HOSTILE_COMMENT = f"maintenance {SCRIPT}{IMG}"
# Every tag and attribute the templates write; anything else came from data.
ALLOWED_TAGS = frozenset({
    "html", "head", "meta", "link", "title", "style", "body", "header", "h1", "nav", "a", "span",
    "main", "section", "div", "article", "h2", "h3", "ul", "li", "p", "dl", "dt", "dd", "table",
    "tr", "th", "td", "footer", "pre"})
ALLOWED_ATTRS = frozenset({"lang", "charset", "name", "content", "http-equiv", "rel", "href",
                           "class", "id", "style", "role", "aria-label", "scope"})
WAIT_S = 30.0
POLL_S = 0.1
SLO_FILE = Path(__file__).resolve().parent.parent / "rules" / "slos" / "inference.yml"


class MarkupCollector(HTMLParser):
    """The tags, attributes and text of a page, as a browser's tokenizer splits them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((name, value or "") for name, value in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def markup(html: str) -> MarkupCollector:
    collector = MarkupCollector()
    collector.feed(html)
    collector.close()
    return collector


def assert_no_injected_markup(html: str) -> MarkupCollector:
    """No tag, attribute or link that the templates did not write; returns what was found."""
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<b>" not in lowered
    found = markup(html)
    assert set(found.tags) <= ALLOWED_TAGS, sorted(set(found.tags) - ALLOWED_TAGS)
    names = {name for name, _ in found.attrs}
    assert names <= ALLOWED_ATTRS, sorted(names - ALLOWED_ATTRS)
    for name, value in found.attrs:
        if name == "href":
            assert value.startswith(("/", "data:")), value
    return found


# -- a daemon with hostile data ---------------------------------------------------------------

RULES = """\
groups:
- name: hostile
  rules:
  - alert: ErrorsByService
    expr: sum by (service, model) (inferwatch_requests_total{status="error"}) > 0
    labels:
      severity: page
    annotations:
      summary: '{{ $labels.service }} on {{ $labels.model }} failed {{ $value }} times'
  - alert: NeverFiresYet
    expr: sum(inferwatch_requests_total) > 0
    for: 1h
  - record: service:requests:sum
    expr: sum by (service) (inferwatch_requests_total)
"""

PRICES = """\
models:
  - match: chat
    prices:
      - {effective_from: 2026-01-01T00:00:00Z, currency: CNY, input_cache_hit: 0.2,
         input_cache_miss: 2, output: 3}
"""


def inference_line(n: int, *, error: bool) -> bytes:
    record: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(), "level": "ERROR" if error else "INFO",
        "service": HOSTILE_SERVICE, "model": HOSTILE_MODEL, "request_id": f"req-{n}",
        "duration_ms": 120.5 + n, "input_tokens": 100, "output_tokens": 50,
    }
    if error:
        record["error"] = f"boom {SCRIPT}"
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def usage_line(request_id: str, miss: int, output: int) -> bytes:
    return orjson.dumps({
        "timestamp": datetime.now(UTC).isoformat(), "request_id": request_id, "model": "chat",
        "user_id": "u1", "status": 200, "duration_ms": 800,
        "usage": {"prompt_tokens": miss, "completion_tokens": output,
                  "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": miss}},
        option=orjson.OPT_APPEND_NEWLINE)


def hostile_daemon_config(root: Path, port: int, write_config: Callable[..., Path],
                          fast_ingest: dict[str, str], slo_file: Path) -> Path:
    """Logs, rules, prices and the config of a daemon whose page has something in every
    section but GPUs; returns the config path."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "inference.log").write_bytes(
        b"".join(inference_line(n, error=n % 3 == 0) for n in range(9))
        + b"not json at all <script>alert(2)</script>\n")
    (logs / "usage.jsonl").write_bytes(usage_line("r1", 1_000_000, 1_000_000)
                                       + usage_line("r2", 500_000, 0))
    (root / "rules.yml").write_text(RULES)
    (root / "prices.yml").write_text(PRICES)
    return write_config(root / "inferwatch.yml", {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": str(root / "state")},
        "ingest": fast_ingest,
        "host": {"enabled": False},
        "gpu": {"enabled": False},
        "scrape_interval": "100ms",
        "evaluation_interval": "200ms",
        "rule_files": [str(root / "rules.yml")],
        "slo_files": [str(slo_file)],
        "sources": [
            {"name": "inference", "paths": [str(logs / "inference.log")],
             "schema": "inference"},
            {"name": "api", "paths": [str(logs / "usage.jsonl")], "schema": "api_usage"},
        ],
        "cost": {"currency": "CNY", "timezone": "UTC",
                 "pricing_files": [str(root / "prices.yml")],
                 "budgets": [{"name": HOSTILE_BUDGET, "period": "day", "limit": 10,
                              "thresholds": [0.5, 0.8]}]},
    })


def silence_body() -> bytes:
    now = time.time()
    return json.dumps({
        "matchers": [{"name": "service", "value": HOSTILE_SERVICE, "isRegex": False,
                      "isEqual": True}],
        "startsAt": datetime.fromtimestamp(now - 60, UTC).isoformat(),
        "endsAt": datetime.fromtimestamp(now + 3600, UTC).isoformat(),
        "createdBy": f"ops{IMG}", "comment": HOSTILE_COMMENT,
    }).encode()


def page_shows_everything(html: str) -> bool:
    """Whether the page shows the rule's alert firing on the hostile service and the budget's
    threshold alert: the rules have run and the budget has been evaluated."""
    return ("ErrorsByService" in html and "BudgetThresholdCrossed" in html
            and "NeverFiresYet" in html)


def wait_for_page(daemon: DaemonProcess, headers: dict[str, str] | None = None) -> str:
    """`/` once it shows everything (`page_shows_everything`); fails after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    body = ""
    while time.monotonic() < deadline:
        response = daemon.get("/", headers=headers)
        assert response.status == 200, response.body
        body = response.body
        if page_shows_everything(body):
            return body
        time.sleep(POLL_S)
    pytest.fail(f"the page did not show the alerts within {WAIT_S} s:\n{body}\n"
                f"{daemon.log_text()}")
