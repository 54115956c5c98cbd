"""Rules inside the running daemon, in process: real log files, state file and HTTP listener.

Log lines are ingested, counted, sampled into the series store by the internal scrape
(100 ms here) and evaluated by the rule groups (200 ms): alerts fire, `/api/v1/alerts` and
`/api/v1/rules` show them, a failing rule is counted in
`inferwatch_rule_evaluation_failures_total`, a reload (SIGHUP or `reload()`) with an invalid
rule file keeps the running rules and says why, a valid one takes effect, and a restart keeps
a firing alert firing without firing it again.

Every wait is a bounded poll with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.alerting.manager import build_group
from monitor.alerting.rulefmt import parse_rule_file
from monitor.alerting.rules import AlertState, TemplateContext
from monitor.config import load_config
from monitor.daemon import RETENTION_MARGIN_MS, Daemon, RunState, retention_ms
from monitor.demo.workload import generate_lines
from monitor.sdnotify import SystemdNotifier

POLL_S = 0.02
WAIT_S = 15.0

RULES = """\
groups:
- name: requests
  rules:
  - record: source:requests:sum
    expr: sum by (source) (inferwatch_requests_total)
  - alert: ErrorsSeen
    expr: sum by (source) (inferwatch_requests_total{status="error"}) > 0
    labels:
      severity: page
    annotations:
      summary: '{{ $labels.source }} has {{ $value }} failed requests'
  - alert: ErrorBurst
    expr: sum by (source) (increase(inferwatch_requests_total{status="error"}[1m])) > 0
  - alert: Broken
    expr: label_replace(vector(1), "a", "$1", "b", "(")
"""

NEW_RULES = """\
groups:
- name: requests
  rules:
  - alert: ErrorsSeen
    expr: sum by (source) (inferwatch_requests_total{status="error"}) > 0
    labels:
      severity: page
  - alert: AlwaysOn
    expr: vector(1)
"""


async def until(condition: Callable[[], Awaitable[bool]], what: str,
                timeout: float = WAIT_S) -> None:
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(POLL_S)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


async def fetch(daemon: Daemon, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
            daemon.listen_url + path, timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, await response.text()


async def api(daemon: Daemon, path: str) -> Any:
    status, body = await fetch(daemon, path)
    assert status == 200, body
    data = json.loads(body)
    assert data["status"] == "success"
    return data["data"]


async def firing(daemon: Daemon, alertname: str) -> list[dict[str, Any]]:
    alerts = (await api(daemon, "/api/v1/alerts"))["alerts"]
    return [a for a in alerts
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


class Setup:
    def __init__(self, root: Path, port: int, write_config: Callable[..., Path],
                 fast_ingest: dict[str, str]) -> None:
        self.root = root
        self.port = port
        self.log = root / "logs" / "inference.log"
        self.rules = root / "rules" / "requests.yml"
        self.config_path = root / "inferwatch.yml"
        self._write_config = write_config
        self._fast_ingest = fast_ingest

    def write(self, rules: str = RULES, *, scrape_interval: str = "100ms",
              evaluation_interval: str = "200ms") -> None:
        self.rules.parent.mkdir(parents=True, exist_ok=True)
        self.rules.write_text(rules)
        self._write_config(self.config_path, {
            "server": {"listen": f"127.0.0.1:{self.port}"},
            "storage": {"path": str(self.root / "state")},
            "ingest": self._fast_ingest,
            "host": {"enabled": False},
            "gpu": {"enabled": False},
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "rule_files": [str(self.rules)],
            "sources": [{"name": "inference", "paths": [str(self.log)],
                         "schema": "inference"}],
        })

    def append_lines(self, n: int, *, seed: int, error_rate: float) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as f:
            f.write(b"".join(line.data for line in generate_lines(
                n, "inference", seed=seed, error_rate=error_rate)))


@pytest.fixture
def setup(tmp_path: Path, free_port: Callable[[], int], write_config: Callable[..., Path],
          fast_ingest: dict[str, str]) -> Setup:
    return Setup(tmp_path, free_port(), write_config, fast_ingest)


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        await daemon.stop()


def make_daemon(setup: Setup, daemons: list[Daemon]) -> Daemon:
    daemon = Daemon(load_config(setup.config_path), config_path=setup.config_path,
                    notifier=SystemdNotifier(environ={}))
    daemons.append(daemon)
    return daemon


async def wait_firing(daemon: Daemon, alertname: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def fired() -> bool:
        found[:] = await firing(daemon, alertname)
        return bool(found)

    await until(fired, f"{alertname} to fire")
    return found


# --- alerts from ingested lines ---------------------------------------------------------------


async def test_new_lines_are_evaluated_promptly_not_at_the_next_tick(
        setup: Setup, daemons: list[Daemon]) -> None:
    # An hour between regular scrapes and evaluations: only the prompt evaluation that follows
    # each commit of new lines can make the alert fire within the test's deadline.
    setup.write(scrape_interval="1h", evaluation_interval="1h")
    setup.append_lines(30, seed=1, error_rate=0.0)
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    await until(lambda: _ready(daemon), "the daemon to be ready")
    assert await firing(daemon, "ErrorBurst") == []
    setup.append_lines(40, seed=2, error_rate=0.5)
    (burst,) = await wait_firing(daemon, "ErrorBurst")
    assert burst["labels"] == {"alertname": "ErrorBurst", "source": "inference"}
    assert daemon.prompt is not None and daemon.prompt.passes >= 1



async def test_alerts_fire_from_ingested_lines_and_the_api_shows_them(
        setup: Setup, daemons: list[Daemon], parse_exposition: Any) -> None:
    setup.write()
    setup.append_lines(30, seed=1, error_rate=0.0)
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    # The first lines have no errors: nothing fires.
    await until(lambda: _has_series(daemon, "source:requests:sum"), "the recording rule")
    assert await firing(daemon, "ErrorsSeen") == []

    setup.append_lines(40, seed=2, error_rate=0.5)  # errors arrive while it runs
    (seen,) = await wait_firing(daemon, "ErrorsSeen")
    assert seen["labels"] == {"alertname": "ErrorsSeen", "severity": "page",
                              "source": "inference"}
    errors = float(seen["value"])  # the API writes it as Go's %e: "1.9e+01"
    assert errors >= 1
    assert seen["annotations"] == {"summary": f"inference has {errors:g} failed requests"}
    # The error counter was born while the daemon ran: increase() sees its first events.
    (burst,) = await wait_firing(daemon, "ErrorBurst")
    assert burst["labels"] == {"alertname": "ErrorBurst", "source": "inference"}

    groups = (await api(daemon, "/api/v1/rules"))["groups"]
    (group,) = groups
    assert (group["name"], group["file"], group["interval"]) == (
        "requests", str(setup.rules), 0.2)
    by_name = {rule["name"]: rule for rule in group["rules"]}
    assert by_name["source:requests:sum"]["type"] == "recording"
    assert by_name["source:requests:sum"]["health"] == "ok"
    assert by_name["ErrorsSeen"]["state"] == "firing"
    assert by_name["ErrorsSeen"]["alerts"][0]["labels"] == seen["labels"]
    assert by_name["Broken"]["health"] == "err"
    assert by_name["Broken"]["lastError"] == (
        "invalid regular expression in label_replace(): (")

    status, body = await fetch(daemon, "/api/v1/query?query=ALERTS")
    assert status == 200
    assert '"alertname":"ErrorsSeen"' in body

    samples = parse_exposition((await fetch(daemon, "/metrics"))[1])
    failures = samples[("inferwatch_rule_evaluation_failures_total",
                        frozenset({("group", "requests")}))]
    assert failures >= 1
    assert samples[("inferwatch_alerts",
                    frozenset({("alertname", "ErrorsSeen"), ("state", "firing")}))] == 1


async def _ready(daemon: Daemon) -> bool:
    return daemon.is_ready()


async def _has_series(daemon: Daemon, name: str) -> bool:
    result = (await api(daemon, f"/api/v1/query?query={name}"))["result"]
    return bool(result)


async def test_the_failure_counter_keeps_counting_a_failing_rule(
        setup: Setup, daemons: list[Daemon], parse_exposition: Any) -> None:
    setup.write()
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    key = ("inferwatch_rule_evaluation_failures_total", frozenset({("group", "requests")}))

    async def failed_three_times() -> bool:
        samples = parse_exposition((await fetch(daemon, "/metrics"))[1])
        return samples.get(key, 0) >= 3

    await until(failed_three_times, "three counted failures")
    # The other rules of the group kept running.
    assert daemon.rules is not None
    (group,) = daemon.rules.groups
    assert [h.health for h in group.health] == ["ok", "ok", "ok", "err"]


# --- reload --------------------------------------------------------------------------------------


async def test_reload_with_an_invalid_rule_file_keeps_the_running_rules(
        setup: Setup, daemons: list[Daemon]) -> None:
    setup.write()
    setup.append_lines(40, seed=3, error_rate=0.5)
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    (before,) = await wait_firing(daemon, "ErrorsSeen")
    assert daemon.rules is not None
    running = daemon.rules.groups

    setup.rules.write_text(RULES.replace("sum by (source) (inferwatch_requests_total)",
                                         "sum by (source) (inferwatch_requests_total"))
    error = await daemon.reload()
    assert error is not None
    assert f"{setup.rules}:5" in error
    assert "unclosed left parenthesis" in error
    assert daemon.state is RunState.RUNNING
    assert daemon.rules.groups is running
    evaluated = running[0].last_evaluation

    async def still_evaluated() -> bool:
        return running[0].last_evaluation > evaluated

    await until(still_evaluated, "the old rules to keep being evaluated")
    (after,) = await firing(daemon, "ErrorsSeen")
    assert after["activeAt"] == before["activeAt"]

    setup.rules.write_text("groups: [\n")  # not even YAML
    error = await daemon.reload()
    assert error is not None
    assert str(setup.rules) in error
    assert daemon.rules.groups is running


async def test_reload_with_a_valid_rule_file_takes_effect_and_keeps_alert_state(
        setup: Setup, daemons: list[Daemon]) -> None:
    setup.write()
    setup.append_lines(40, seed=4, error_rate=0.5)
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    (before,) = await wait_firing(daemon, "ErrorsSeen")

    setup.rules.write_text(NEW_RULES)
    assert await daemon.reload() is None
    await wait_firing(daemon, "AlwaysOn")
    names = [rule["name"] for group in (await api(daemon, "/api/v1/rules"))["groups"]
             for rule in group["rules"]]
    assert names == ["ErrorsSeen", "AlwaysOn"]
    # Same name and labels: the alert carried over, not re-fired.
    (after,) = await firing(daemon, "ErrorsSeen")
    assert after["activeAt"] == before["activeAt"]
    alerts = (await api(daemon, "/api/v1/alerts"))["alerts"]
    assert not any(a["labels"]["alertname"] == "ErrorBurst" for a in alerts)


async def test_sighup_reloads_the_rule_files(setup: Setup, daemons: list[Daemon]) -> None:
    setup.write()
    daemon = make_daemon(setup, daemons)
    task = asyncio.create_task(daemon.run())
    try:
        async def running() -> bool:
            return daemon.state is RunState.RUNNING
        await until(running, "the daemon to run")
        # run() installs its handler before it first yields; never send SIGHUP without one.
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN)
        setup.rules.write_text(NEW_RULES)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_firing(daemon, "AlwaysOn")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, WAIT_S) == 0


# --- restart ---------------------------------------------------------------------------------


async def test_a_restart_keeps_a_firing_alert_firing_without_firing_it_again(
        setup: Setup, daemons: list[Daemon]) -> None:
    setup.write()
    setup.append_lines(40, seed=5, error_rate=0.5)
    first = make_daemon(setup, daemons)
    await first.start()
    (before,) = await wait_firing(first, "ErrorsSeen")
    assert first.rules is not None
    (rule,) = [r for r in first.rules.groups[0].alerting_rules() if r.name == "ErrorsSeen"]
    (alert,) = rule.active.values()
    fired_at = alert.fired_at
    # One more evaluation after the one that fired (the firing was saved by then), then stop.
    group = first.rules.groups[0]
    seen = group.last_evaluation

    async def evaluated_again() -> bool:
        return group.last_evaluation > seen

    await until(evaluated_again, "another evaluation")
    await first.stop()

    second = make_daemon(setup, daemons)
    await second.start()
    # Straight after start-up, before any evaluation: restored from the state file.
    (restored,) = await firing(second, "ErrorsSeen")
    assert restored["activeAt"] == before["activeAt"]
    assert second.rules is not None
    group = second.rules.groups[0]
    (rule,) = [r for r in group.alerting_rules() if r.name == "ErrorsSeen"]
    seen = group.last_evaluation

    async def evaluated_after_restart() -> bool:
        return group.last_evaluation > seen

    await until(evaluated_after_restart, "an evaluation after the restart")
    (alert,) = rule.active.values()
    assert (alert.state, alert.fired_at) == (AlertState.FIRING, fired_at)
    (still,) = await firing(second, "ErrorsSeen")
    assert still["activeAt"] == before["activeAt"]


async def test_a_bad_rule_file_stops_the_start_before_anything_listens(
        setup: Setup, daemons: list[Daemon]) -> None:
    setup.write("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: limitk(1, up)\n")
    daemon = Daemon(load_config(setup.config_path), config_path=setup.config_path,
                    notifier=SystemdNotifier(environ={}))
    with pytest.raises(Exception, match="limitk") as raised:
        await daemon.start()
    assert f"{setup.rules}:5" in str(raised.value)


# --- retention follows the rules ----------------------------------------------------------------

HOUR_MS = 3600 * 1000


def groups_reaching(*exprs: str) -> list[Any]:
    text = "groups:\n- name: g\n  rules:\n" + "".join(
        f"  - record: r{i}\n    expr: '{expr}'\n" for i, expr in enumerate(exprs))
    return [build_group(spec, 1000, TemplateContext({}, ""))
            for spec in parse_rule_file(text, file="r.yml")]


@pytest.mark.parametrize(("exprs", "needed_ms"), [
    (("rate(x[12h])",), 12 * HOUR_MS),
    (("x offset 10h",), 10 * HOUR_MS + 5 * 60_000),
    (("max_over_time(rate(x[5m])[8h:1m] offset 1h)",), 9 * HOUR_MS + 5 * 60_000),
    (("rate(x[1h])", "x offset 7h", "x"), 7 * HOUR_MS + 5 * 60_000),
])
def test_retention_covers_the_longest_reach_of_any_rule(
        setup: Setup, exprs: tuple[str, ...], needed_ms: int) -> None:
    setup.write()
    config = load_config(setup.config_path)
    assert round(config.storage.retention * 1000) == 6 * HOUR_MS  # the default
    assert retention_ms(config, groups_reaching(*exprs)) == needed_ms + RETENTION_MARGIN_MS
    assert retention_ms(config, groups_reaching("rate(x[1h])")) == 6 * HOUR_MS
    assert retention_ms(config, []) == 6 * HOUR_MS


async def test_a_reload_recomputes_the_retention(setup: Setup, daemons: list[Daemon]) -> None:
    setup.write(RULES.replace("inferwatch_requests_total{status=\"error\"}[1m]",
                              "inferwatch_requests_total{status=\"error\"}[1d]"))
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    assert daemon.series.retention_ms == 24 * HOUR_MS + RETENTION_MARGIN_MS
    setup.rules.write_text(NEW_RULES)
    assert await daemon.reload() is None
    assert daemon.series.retention_ms == 6 * HOUR_MS


async def test_a_reload_changes_the_default_subquery_step_of_both_engines(
        setup: Setup, daemons: list[Daemon]) -> None:
    setup.write()
    daemon = make_daemon(setup, daemons)
    await daemon.start()
    assert daemon.engine is not None and daemon.api_engine is not None
    assert daemon.engine.subquery_step_ms == daemon.api_engine.subquery_step_ms == 200
    text = setup.config_path.read_text().replace("200ms", "300ms")
    assert "300ms" in text
    setup.config_path.write_text(text)
    assert await daemon.reload() is None
    assert daemon.engine.subquery_step_ms == daemon.api_engine.subquery_step_ms == 300
