"""The HTML report in Debian's headless Chromium (tests/headless_chromium.py), from a file://
URL as a person opens a saved report: at desktop and phone widths, no console error, no
failed load, no JavaScript dialog (the `alert()`s hidden in the logs' service, model and
request id never run), and the screenshots kept as test artifacts
(`test-artifacts/report-*.png`).

Skips without chromium unless INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from headless_chromium import artifact_path, require_chromium, visit
from report_logs import START, generated, write
from test_report_render import hostile_logs

from monitor.clock import FakeClock
from monitor.report.command import run_report

pytestmark = pytest.mark.integration

VIEWS = [("desktop", 1280, 900), ("phone", 390, 844)]


def test_html_report_in_headless_chromium(tmp_path: Path) -> None:
    require_chromium()
    logs = tmp_path / "logs"
    hostile_logs(logs)
    # A few days of ordinary traffic too, so every chart has something to draw.
    write(logs / "inference.log", [line.data for line in generated(
        "inference", 3000, seed=21, spacing_s=120.0)])
    write(logs / "usage.jsonl", [line.data for line in generated(
        "api_usage", 3000, seed=22, spacing_s=120.0)])
    page = tmp_path / "report.html"
    page.write_text(run_report([str(logs / "*")], output="html",
                               clock=FakeClock(START + 10 * 86400.0)), encoding="utf-8")

    for name, width, height in VIEWS:
        shot = artifact_path(f"report-{name}.png")
        seen = visit(page.as_uri(), shot, width=width, height=height)
        assert seen.console_errors == [], (name, seen.console_errors)
        assert seen.dialogs == [], (name, seen.dialogs)  # alert(…) would show up here
        assert seen.title.startswith("inferwatch report ")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
