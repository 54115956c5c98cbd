"""A fleet: three daemons, one real Prometheus with the exported rules, one real Alertmanager.

- Three `inferwatch run` daemons on loopback ports, each fed by its own demo workload: host A
  fails 60 % of its inference requests (an error burst), host B has the demo's latency spike,
  host C only logs hosted-API calls and has a daily budget its spend crosses at once.
- `inferwatch export rules` over a config whose rule file (tests/fixtures/fleet/rules.yml) is
  written as for one host (`sum(...)` over everything). Prometheus runs
  examples/fleet/prometheus.yml with loopback targets, 1 s intervals and the export as its
  `rule_files`, and sends to an Alertmanager running examples/fleet/alertmanager.yml.
- The incident on A yields FleetErrorBurst with `instance` = A in Alertmanager (read back
  through its API v2), B's yields FleetSlowGeneration for B, and no other host has either, in
  Alertmanager or even pending in Prometheus: the exported sums are per instance.
- Host C forwards its own budget alert through `alertmanager_configs`: Alertmanager holds it
  exactly once, with the daemon's own start time; after C restarts and sends it again, it is
  still one alert, same fingerprint, same startsAt, updated.

Every wait is a poll with a deadline; the daemons, Prometheus, Alertmanager and the workload
thread are stopped in teardown. Skips without prometheus / prometheus-alertmanager unless
INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from real_alertmanager import Alerts, alertmanager_binary, running_alertmanager
from real_prometheus import prometheus_binary, running_prometheus

from monitor.clock import SystemClock
from monitor.demo.lines import Incident, IncidentKind
from monitor.demo.workload import DemoWorkload

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "fleet"
FLEET_RULES = ROOT / "tests" / "fixtures" / "fleet" / "rules.yml"
ALERTS_TIMEOUT_S = 60.0
PUMP_S = 0.05
BUDGET_ALERT = {"alertname": "BudgetThresholdCrossed", "budget": "fleet-c", "threshold": "0.5",
                "severity": "ticket"}


@contextmanager
def pumped(workloads: list[DemoWorkload]) -> Iterator[None]:
    """Write every workload's due lines from a thread until the block ends."""
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(PUMP_S):
            for workload in workloads:
                workload.emit_due()

    thread = threading.Thread(target=pump, name="fleet-workloads", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        for workload in workloads:
            workload.close()


def daemon_config(directory: Path, port: int, fast_ingest: Mapping[str, str], *,
                  inference: bool, api: bool, **extra: Any) -> dict[str, Any]:
    sources = []
    if inference:
        sources.append({"name": "inference", "paths": [str(directory / "inference" / "*.log")],
                        "schema": "inference", "labels": {"service": "deepseek-r1"}})
    if api:
        sources.append({"name": "api", "paths": [str(directory / "api" / "*.jsonl")],
                        "schema": "api_usage"})
    return {"server": {"listen": f"127.0.0.1:{port}"},
            "storage": {"path": str(directory / "state")}, "ingest": dict(fast_ingest),
            "sources": sources, "rule_files": [str(FLEET_RULES)], **extra}


def prometheus_config(export: Path, targets: list[str], alertmanager: str) -> dict[str, Any]:
    """examples/fleet/prometheus.yml with loopback addresses, 1 s intervals and the export."""
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    assert config["rule_files"] == ["/etc/prometheus/inferwatch/*.yml"]
    config["rule_files"] = [str(export / "*.yml")]
    [manager] = config["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [alertmanager]}]
    [job] = config["scrape_configs"]
    assert len(job["static_configs"][0]["targets"]) == len(targets)
    job["static_configs"] = [{"targets": targets}]
    return config


def alertmanager_config(webhook_port: int) -> str:
    """examples/fleet/alertmanager.yml with its webhook on a loopback port nobody serves."""
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "alertmanager.yml").read_text())
    [receiver] = config["receivers"]
    [webhook] = receiver["webhook_configs"]
    webhook["url"] = f"http://127.0.0.1:{webhook_port}/alertmanager"
    return yaml.safe_dump(config, sort_keys=False)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def named(alerts: Alerts, name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("alertname") == name]


def instances(alerts: Alerts, name: str) -> list[str | None]:
    return sorted((a["labels"].get("instance") for a in named(alerts, name)), key=str)


def forwarded(alerts: Alerts) -> list[dict[str, Any]]:
    """The alerts with the label set of host C's own budget alert: its labels on the host
    plus the `instance` host C's `external_labels` add (it did not come through Prometheus)."""
    return [a for a in alerts if {k: v for k, v in a["labels"].items() if k != "instance"}
            == BUDGET_ALERT and "instance" in a["labels"]]


def test_an_incident_on_one_host_alerts_for_that_host_and_a_forwarded_alert_arrives_once(
        tmp_path: Path, free_port: Callable[[], int], fast_ingest: dict[str, str],
        write_config: Callable[..., Path], spawn_daemon: Callable[..., Any],
        run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    prometheus = prometheus_binary()
    alertmanager = alertmanager_binary()
    clock = SystemClock()
    rng = random.Random(8)
    dirs = {name: tmp_path / name for name in ("host-a", "host-b", "host-c")}
    ports = {name: free_port() for name in dirs}
    instance = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    workloads = [
        DemoWorkload(dirs["host-a"], clock, rng, rates={"inference": 8.0, "api_usage": 0.0},
                     error_rate=0.6),
        DemoWorkload(dirs["host-b"], clock, rng, rates={"inference": 5.0, "api_usage": 0.0},
                     incidents=[Incident(IncidentKind.LATENCY_SPIKE, 0.0, 3600.0)]),
        DemoWorkload(dirs["host-c"], clock, rng, rates={"inference": 0.0, "api_usage": 3.0}),
    ]

    export = tmp_path / "export"
    export_config = write_config(tmp_path / "export.yml", {"rule_files": [str(FLEET_RULES)]})
    done = run_cli("export", "rules", "--config", str(export_config), "--out", str(export))
    assert done.returncode == 0, done.stderr
    assert "sum by (instance) (rate(inferwatch_requests_total" in \
        (export / "rules.yml").read_text()

    am_port = free_port()
    with running_alertmanager(alertmanager, tmp_path / "alertmanager",
                              alertmanager_config(free_port()), port=am_port) as manager, \
            pumped(workloads):
        configs = {
            "host-a": daemon_config(dirs["host-a"], ports["host-a"], fast_ingest,
                                    inference=True, api=False),
            "host-b": daemon_config(dirs["host-b"], ports["host-b"], fast_ingest,
                                    inference=True, api=False),
            "host-c": daemon_config(
                dirs["host-c"], ports["host-c"], fast_ingest, inference=False, api=True,
                cost={"budgets": [{"name": "fleet-c", "period": "day", "limit": "0.001",
                                   "thresholds": ["0.5"]}]},
                external_labels={"instance": instance["host-c"]},
                notify={"route": {"receiver": "none", "routes": [
                            {"matchers": ['alertname=~"Budget.*|SpendSurge"'],
                             "receiver": "central"}]},
                        "receivers": [{"name": "none"}, {"name": "central",
                                                         "alertmanager_configs": [
                                                             {"urls": [manager.url]}]}]}),
        }
        paths = {name: write_config(dirs[name] / "inferwatch.yml", config)
                 for name, config in configs.items()}
        daemons = {name: spawn_daemon(paths[name], ports[name], log_name=f"{name}.log")
                   for name in dirs}
        for daemon in daemons.values():
            daemon.wait_ready(timeout=60)

        config = prometheus_config(export, [instance[n] for n in dirs], f"127.0.0.1:{am_port}")
        with running_prometheus(prometheus, tmp_path / "prometheus", config) as prom:
            prom.wait_for_targets_up(3, timeout=30)

            def both_incidents_and_the_budget(alerts: Alerts) -> bool:
                return (instance["host-a"] in instances(alerts, "FleetErrorBurst")
                        and instance["host-b"] in instances(alerts, "FleetSlowGeneration")
                        and len(forwarded(alerts)) == 1)

            alerts = manager.wait_for_alerts(
                both_incidents_and_the_budget, "the two hosts' alerts and host C's budget "
                "alert in Alertmanager", timeout=ALERTS_TIMEOUT_S)

            # Per host, never merged: only A has the error burst, only B the slow generation,
            # in Alertmanager and in Prometheus, pending ones included.
            assert instances(alerts, "FleetErrorBurst") == [instance["host-a"]]
            assert instances(alerts, "FleetSlowGeneration") == [instance["host-b"]]
            [burst] = named(alerts, "FleetErrorBurst")
            assert burst["labels"] == {"alertname": "FleetErrorBurst", "severity": "page",
                                       "instance": instance["host-a"]}
            for name, host in (("FleetErrorBurst", "host-a"), ("FleetSlowGeneration", "host-b")):
                active = prom.query(f'ALERTS{{alertname="{name}"}}')
                assert {s["metric"]["instance"] for s in active} == {instance[host]}, active

            # Host C's own alert, forwarded: once, with the start the daemon gave it.
            [sent] = forwarded(alerts)
            assert sent["labels"]["instance"] == instance["host-c"]
            own = daemons["host-c"].get("/api/v2/alerts")
            assert own.status == 200
            [local] = [a for a in json.loads(own.body)
                       if a["labels"].get("alertname") == "BudgetThresholdCrossed"]
            assert parse_time(local["startsAt"]) == pytest.approx(parse_time(sent["startsAt"]),
                                                                  abs=0.001)

            # A restart re-sends it (the daemon keeps fired budget alerts, not what it sent):
            # still one alert, same fingerprint and start, updated by the new send.
            assert daemons["host-c"].terminate() == 0
            restarted = spawn_daemon(paths["host-c"], ports["host-c"], log_name="host-c.log")
            restarted.wait_ready(timeout=60)
            alerts = manager.wait_for_alerts(
                lambda now: any(parse_time(a["updatedAt"]) > parse_time(sent["updatedAt"])
                                for a in forwarded(now)),
                "host C's budget alert sent again after its restart", timeout=ALERTS_TIMEOUT_S)
            [again] = forwarded(alerts)
            assert again["fingerprint"] == sent["fingerprint"]
            assert again["startsAt"] == sent["startsAt"]
            # (Prometheus's own evaluation of the bundled cost.yml may add the 0.8 and 1.0
            # thresholds of this budget, with host C's instance: other label sets.)
            assert forwarded(alerts) == [again]
