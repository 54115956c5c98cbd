"""The status page of a real `inferwatch run`: a log whose service and model carry HTML, a
rule that fires on them, one pending, a recording rule, a budget crossed by priced API
traffic, the bundled SLO and a silence with a hostile comment. `/` and `/rules` show all of it
with nothing from the data turned into markup, link each alert to its rule or budget, and
sit behind the bearer token like every other non-metrics path. Bounded polls only."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, HttpResult, http_request
from status_page_checks import (
    HOSTILE_BUDGET,
    HOSTILE_COMMENT,
    HOSTILE_MODEL,
    HOSTILE_SERVICE,
    POLL_S,
    SLO_FILE,
    WAIT_S,
    assert_no_injected_markup,
    hostile_daemon_config,
    page_shows_everything,
    silence_body,
    wait_for_page,
)

TOKEN = "status-page-token"


def post_silence(daemon: DaemonProcess, headers: dict[str, str]) -> None:
    request = urllib.request.Request(
        daemon.url("/api/v2/silences"), data=silence_body(), method="POST",
        headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_status_page_of_a_running_daemon(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., DaemonProcess]) -> None:
    port = free_port()
    config = hostile_daemon_config(tmp_path, port, write_config, fast_ingest, SLO_FILE)
    daemon = spawn_daemon(config, port)
    daemon.wait_ready()
    post_silence(daemon, {})
    html = wait_for_page(daemon)
    found = assert_no_injected_markup(html)
    text = re.sub(r"\s+", " ", " ".join(found.text))

    # the hostile strings are shown as text: in the alert's labels, its summary, the silence
    for shown in (HOSTILE_SERVICE, HOSTILE_MODEL, HOSTILE_BUDGET, HOSTILE_COMMENT):
        assert shown in text, shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert f"{HOSTILE_SERVICE} on {HOSTILE_MODEL} failed 3 times" in text
    assert "silenced" in text  # the silence matches the firing alert's service

    # each alert links to where it comes from, and the targets exist
    rules_html = assert_no_injected_markup(daemon.get("/rules").body)
    rule_ids = {value for name, value in rules_html.attrs if name == "id"}
    page_ids = {value for name, value in found.attrs if name == "id"}
    links = [value for name, value in found.attrs if name == "href"]
    rule_links = {link.split("#", 1)[1] for link in links if link.startswith("/rules#")}
    budget_links = {link.split("#", 1)[1] for link in links if link.startswith("/#budget-")}
    assert len(rule_links) == 2 and rule_links <= rule_ids  # firing and pending rule
    assert len(budget_links) == 1 and budget_links <= page_ids
    assert "alert-ErrorsByService" in page_ids  # where notifications link to

    # sections: sources with their counts, the budget bar, the SLO, no GPU, the daemon
    assert re.search(r"inference caught up malformed.*?parsed 9 malformed 1", text), text
    assert re.search(r"spent 6 of 10 CNY \(60\.0 %\)", text), text
    assert 'class="fill warn" style="width: 60.00%"' in html
    assert "No GPU is reported" in text
    assert re.search(r"SLOs 2 .*?inference / requests-availability .*? no data", text), text
    assert "ready inferwatch" in text and "up for" in text
    assert 'http-equiv="refresh"' in html

    # the rules page: every rule with its expression and health
    rules_text = re.sub(r"\s+", " ", " ".join(rules_html.text))
    assert "hostile 3 rules" in rules_text
    assert 'sum by (service, model) (inferwatch_requests_total{status="error"}) > 0' \
        in rules_text
    assert "record service:requests:sum" in rules_text and "for 1h" in rules_text
    assert "every 200ms" in rules_text
    assert daemon.terminate() == 0


def test_the_bearer_token_applies_to_the_status_page(
        tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
        fast_ingest: dict[str, str], spawn_daemon: Callable[..., DaemonProcess]) -> None:
    port = free_port()
    config = hostile_daemon_config(tmp_path, port, write_config, fast_ingest, SLO_FILE)
    (tmp_path / "token").write_text(TOKEN + "\n")
    text = config.read_text().replace("server:\n", f"server:\n  bearer_token_file: "
                                      f"{tmp_path / 'token'}\n", 1)
    config.write_text(text)
    daemon = spawn_daemon(config, port)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    wait_ready(daemon, auth)
    for path in ("/", "/rules"):
        refused: HttpResult = daemon.get(path)
        assert refused.status == 401
        assert "ErrorsByService" not in refused.body
        assert daemon.get(path, headers={"Authorization": "Bearer wrong"}).status == 401
    assert page_shows_everything(wait_for_page(daemon, auth))
    assert http_request(daemon.url("/metrics")).status == 200  # still open
    assert daemon.terminate() == 0


def wait_ready(daemon: DaemonProcess, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        if not daemon.alive():
            pytest.fail(f"daemon exited:\n{daemon.log_text()}")
        try:
            if daemon.get("/-/ready", headers=headers).status == 200:
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(f"not ready within {WAIT_S} s:\n{daemon.log_text()}")
        time.sleep(POLL_S)
