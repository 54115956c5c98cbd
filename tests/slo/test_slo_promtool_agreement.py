"""The daemon's SLO alerts and the exported rules agree minute by minute (issue 7): the same
counter samples are fed to the daemon's SloService (a real SeriesStore and Engine, a FakeClock
ticking a second after each minute) and, as `input_series`, to a `promtool test rules` file
over `render_rules(slos, optimized=False)`; at every minute of the scenario the file asserts
that `count by (alertname, sloth_severity) (ALERTS{alertstate="firing"})` is exactly the set of
alerts the daemon had active at that minute. The file is run by /usr/bin/promtool and by
`inferwatch test rules`.

Why the two must agree exactly: the counters are sampled once a minute at whole minutes, and
both sides use closed ranges [t - range, t] (Prometheus 2, the daemon's engine), so the
daemon's minute k count, rate(...[1m]) x 60 at 60k, is exactly the increase over the minute,
and the exported `rate(...[w])` at 60k is exactly the increase over the window's minutes (no
extrapolation: a sample sits on each end of the window, or the counters start at 0, which
clamps Prometheus' extrapolation to the start at zero). The period ratio is the unoptimized
rate(...[30d]) ratio, the true event ratio the daemon computes (Sloth's optimized mean of the
5m ratios is a different number). Recording rules add no lag because the test file sets
`group_eval_order` to the export's order (SLI recordings, meta recordings, alerts), so the alert
group at t reads the ratios recorded at t. Without it promtool 2.42 runs the groups in Go map
order, which varies from run to run: with the alerts group first, its page and ticket alerts
fire and resolve one minute after the daemon's (seen: 3h10m, 3h44m, 5h21m, 10h42m in the burst
scenario), the one-evaluation lag a real Prometheus has between independent groups. The traffic is
chosen so that no window's ratio lands exactly on a threshold (ties would hinge on float
rounding).

No tolerance: page, ticket and half-spent alerts are compared minute by minute as they are
(the exported half-spent rule has no `for`, like the daemon's).

promtool tests are integration tests: they skip without /usr/bin/promtool unless
INFERWATCH_REQUIRE_INTEGRATION=1, then fail.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import main
from monitor.clock import FakeClock
from monitor.metrics.store import MetricStore
from monitor.notify.model import NotifyAlert
from monitor.promql.engine import Engine
from monitor.promql.values import labels_from
from monitor.slo.export import GROUP_PREFIXES, render_rules
from monitor.slo.service import SloService
from monitor.slo.spec import parse_slo_file
from monitor.storage import StateStore
from monitor.tsdb.store import SeriesStore

TIMEOUT_S = 300
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: promtool's time 0
NAME = "XAvailability"
BUDGET = f"{NAME}BudgetHalfSpent"
SLO_ID = "xsvc-requests"
SPEC = textwrap.dedent("""\
    version: "prometheus/v1"
    service: "xsvc"
    slos:
      - name: "requests"
        objective: 99
        sli:
          events:
            error_query: sum(rate(x_requests_total{status="error"}[{{.window}}]))
            total_query: sum(rate(x_requests_total[{{.window}}]))
        alerting:
          name: XAvailability
          page_alert:
            labels:
              severity: page
          ticket_alert:
            labels:
              severity: ticket
""")

Run = tuple[int, int, int]  # minutes, errors per minute, ok requests per minute
Active = frozenset[tuple[str, str]]  # (alertname, sloth_severity)

# Budget 1 % of requests. Rates are slightly off round multiples so that no window ratio
# equals a threshold exactly.
SCENARIOS: dict[str, list[Run]] = {
    # 3 h clean, 2 h at 19.9x the budget, 7 h clean: page, ticket and half-spent.
    "page burst": [(180, 0, 1000), (120, 199, 801), (420, 0, 1000)],
    # 1 h clean, a day at 4.1x, 5 h clean: ticket (and half-spent), never a page.
    "ticket slow burn": [(60, 0, 1000), (1440, 41, 959), (300, 0, 1000)],
}


def counter_values(runs: Sequence[Run], column: int) -> list[int]:
    """The counter at minutes 0, 1, ...: 0, then the per-minute increments of each run."""
    values = [0]
    for run in runs:
        base = values[-1]
        values += [base + run[column] * (i + 1) for i in range(run[0])]
    return values


def notation(runs: Sequence[Run], column: int) -> str:
    """promtool's expanding notation of the same counter: `0 1000+1000x179 ...`."""
    parts, value = ["0"], 0
    for run in runs:
        minutes, step = run[0], run[column]
        parts.append(f"{value + step}+{step}x{minutes - 1}")
        value += step * minutes
    return " ".join(parts)


def daemon_alerts(tmp_path: Path, runs: Sequence[Run]) -> list[Active]:
    """The daemon's active alerts at minutes 0 ... N, from what it hands to notification."""
    clock = FakeClock(T0)
    series = SeriesStore(retention_ms=10**12)
    state = StateStore(tmp_path / "state")
    batches: list[list[NotifyAlert]] = []
    service = SloService(list(parse_slo_file(SPEC, file="x.yml").slos), state=state,
                         store=MetricStore(), engine=Engine(series), clock=clock,
                         notify_put=batches.append)
    service.load()
    errors, ok = counter_values(runs, 1), counter_values(runs, 2)
    active: list[Active] = [frozenset()]  # minute 0: one sample, no rate yet
    try:
        for minute in range(len(errors)):
            t_ms = round(T0 * 1000) + minute * 60_000
            for status, values in (("error", errors), ("ok", ok)):
                series.append(labels_from({"__name__": "x_requests_total", "status": status}),
                              t_ms, float(values[minute]))
            if minute == 0:
                continue
            clock.advance(T0 + minute * 60 + 1 - clock.time())
            batches.clear()
            service.tick()
            now = clock.time()
            active.append(frozenset(
                (alert.labels["alertname"], alert.labels["sloth_severity"])
                for batch in batches for alert in batch
                if alert.ends_at is None or alert.ends_at > now))
    finally:
        state.close()
    return active


def exported_alerts(daemon: Sequence[Active]) -> list[Active]:
    """What the exported rules should have firing: exactly the daemon's alerts."""
    return list(daemon)


def transitions(active: Sequence[Active]) -> dict[tuple[str, str], list[tuple[str, int]]]:
    found: dict[tuple[str, str], list[tuple[str, int]]] = {}
    previous: Active = frozenset()
    for minute, now in enumerate(active):
        for alert in sorted(now - previous):
            found.setdefault(alert, []).append(("fires", minute))
        for alert in sorted(previous - now):
            found.setdefault(alert, []).append(("resolves", minute))
        previous = now
    return found


def write_test_file(tmp_path: Path, runs: Sequence[Run], expected: Sequence[Active]) -> Path:
    rules = tmp_path / "slo_rules.yml"
    rules.write_text(render_rules(list(parse_slo_file(SPEC, file="x.yml").slos),
                                  optimized=False), encoding="utf-8")
    checks: list[dict[str, Any]] = [
        {"expr": 'count by (alertname, sloth_severity) (ALERTS{alertstate="firing"})',
         "eval_time": f"{minute}m",
         "exp_samples": [{"labels": f'{{alertname="{name}", sloth_severity="{severity}"}}',
                          "value": 1} for name, severity in sorted(now)]}
        for minute, now in enumerate(expected)]
    test = {"name": "daemon alerts", "interval": "1m",
            "input_series": [
                {"series": 'x_requests_total{status="error"}', "values": notation(runs, 1)},
                {"series": 'x_requests_total{status="ok"}', "values": notation(runs, 2)}],
            "promql_expr_test": checks}
    order = [f"{prefix}{SLO_ID}" for prefix in GROUP_PREFIXES]  # the file's order
    path = tmp_path / "slo_agreement_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                    "group_eval_order": order, "tests": [test]},
                                   sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_exported_rules_fire_on_the_daemons_minutes(
        promtool: Path, tmp_path: Path, scenario: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    runs = SCENARIOS[scenario]
    assert notation(runs, 1) and len(counter_values(runs, 1)) == 1 + sum(r[0] for r in runs)
    daemon = daemon_alerts(tmp_path, runs)
    seen = transitions(daemon)
    # The scenarios exercise what they are meant to: the burst pages, the slow burn tickets.
    assert (NAME, "ticket") in seen and (BUDGET, "info") in seen
    assert ((NAME, "page") in seen) == (scenario == "page burst"), seen
    test = write_test_file(tmp_path, runs, exported_alerts(daemon))

    proc = subprocess.run([str(promtool), "test", "rules", test.name], capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False, cwd=tmp_path)
    assert proc.returncode == 0, (f"promtool disagrees with the daemon {seen}:\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    assert "SUCCESS" in proc.stdout

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    status = main(["test", "rules", test.name])
    out = capsys.readouterr()
    assert status == 0, (f"inferwatch test rules disagrees with the daemon {seen}:\n"
                         f"{out.out[-4000:]}\n{out.err[-4000:]}")
    assert "SUCCESS" in out.out
