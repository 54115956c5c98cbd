"""The live daemon's status page in Debian's headless Chromium (tests/headless_chromium.py).

A real `inferwatch run` reads a log whose service and model carry `<script>alert(1)</script>`
and `"><img src=x onerror=alert(1)>`, fires a rule on them, crosses a budget and holds a
silence with a hostile comment. The browser opens `/` at desktop and phone widths and
`/rules` at phone width: no console error, no failed load, no JavaScript dialog (the injected
`alert()` never ran), the title counts the firing alerts, and the screenshots are kept as test
artifacts (`test-artifacts/status-page-*.png`).

Skips without chromium unless INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess
from headless_chromium import artifact_path, require_chromium, visit
from status_page_checks import (
    SLO_FILE,
    hostile_daemon_config,
    page_shows_everything,
    silence_body,
    wait_for_page,
)

pytestmark = pytest.mark.integration

VIEWS = [("/", "desktop", 1280, 900), ("/", "phone", 390, 844), ("/rules", "rules-phone", 390, 844)]


def test_status_page_in_headless_chromium(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., DaemonProcess]) -> None:
    require_chromium()
    port = free_port()
    config = hostile_daemon_config(tmp_path, port, write_config, fast_ingest, SLO_FILE)
    daemon = spawn_daemon(config, port)
    daemon.wait_ready()
    request = urllib.request.Request(daemon.url("/api/v2/silences"), data=silence_body(),
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert page_shows_everything(wait_for_page(daemon))

    for path, name, width, height in VIEWS:
        shot = artifact_path(f"status-page-{name}.png")
        seen = visit(daemon.url(path), shot, width=width, height=height)
        assert seen.console_errors == [], (name, seen.console_errors)
        assert seen.dialogs == [], (name, seen.dialogs)  # alert(1) would show up here
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if path == "/":
            assert seen.title == "(2 firing) inferwatch status"
        else:
            assert seen.title == "inferwatch rules"
    assert daemon.terminate() == 0
