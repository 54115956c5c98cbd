"""The bundled rule files in rules/ and their promtool-format unit tests (issue 3, item 6).

- Every rules/*.yml has a rules/tests/<name>_test.yml, and `inferwatch check rules` and
  `inferwatch test rules` pass on them; so does a copy with another namespace prefix, as
  rules/README.md tells users to make one.
- The files keep the conventions rules/README.md promises: groups with an interval; alerts
  with `for`, a severity of page/ticket/info and summary/description/runbook annotations;
  runbook links to an existing section of rules/README.md; metric names of SPEC §6 only.
- The tests cover every rule: each alert both firing and not firing (before it fires), each
  recording rule through a promql_expr_test.
- Integration: the real `promtool check rules` and `promtool test rules` pass on the same
  files. They skip without /usr/bin/promtool unless INFERWATCH_REQUIRE_INTEGRATION=1, then
  fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.metrics import families as fam
from monitor.metrics.store import DROPPED_SPEC, FamilySpec, Kind

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
TEST_FILES = sorted((RULES / "tests").glob("*_test.yml"))
README = RULES / "README.md"
TIMEOUT_S = 120
SEVERITIES = {"page", "ticket", "info"}
ANNOTATIONS = {"summary", "description", "runbook"}
PREFIX = "inferwatch_"

# SPEC §6 names of the families that samplers still to come will export (host, process,
# probe, GPU, notifications); the request and self families are read from their declarations.
SPEC_ONLY_NAMES = {
    "host_cpu_utilization_ratio", "host_load1", "host_memory_total_bytes",
    "host_memory_available_bytes", "host_filesystem_size_bytes", "host_filesystem_avail_bytes",
    "host_network_receive_bytes_total", "host_network_transmit_bytes_total", "process_up",
    "process_resident_memory_bytes", "probe_success", "probe_duration_seconds", "gpu_info",
    "gpu_up", "gpu_memory_used_bytes", "gpu_memory_total_bytes", "gpu_utilization_ratio",
    "gpu_temperature_celsius", "gpu_power_watts", "gpu_energy_joules_total",
    "gpu_xid_errors_total", "gpu_process_memory_bytes", "notifications_total",
    "notifications_failed_total", "notification_queue_length",
}


def sample_names(spec: FamilySpec) -> set[str]:
    if spec.kind is Kind.COUNTER:
        return {f"{spec.name}_total"}
    if spec.kind is Kind.HISTOGRAM:
        return {f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
    return {spec.name}


def known_metric_names() -> set[str]:
    names = set(SPEC_ONLY_NAMES)
    for value in vars(fam).values():
        if isinstance(value, FamilySpec):
            names |= sample_names(value)
    return names | sample_names(DROPPED_SPEC)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def unit_test_file(rule_file: Path) -> Path:
    return RULES / "tests" / f"{rule_file.stem}_test.yml"


def readme_anchors() -> set[str]:
    """GitHub's anchors for the headings of rules/README.md."""
    anchors = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#+ (.+)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def minutes(duration: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d)", duration):
        total += int(number) * {"ms": 1 / 60000, "s": 1 / 60, "m": 1, "h": 60, "d": 1440}[unit]
    return total


def tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], cwd=REPO, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def inferwatch(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "monitor", *argv)


def assert_ok(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, (
        f"{what}: exit {proc.returncode}\n--- stdout\n{tail(proc.stdout)}\n"
        f"--- stderr\n{tail(proc.stderr)}")


def name_of(path: Path) -> str:
    return str(path.relative_to(RULES))


# --- layout and conventions ------------------------------------------------------------------


def test_the_bundled_files_are_there() -> None:
    assert {p.name for p in RULE_FILES} >= {"requests.yml", "host.yml", "gpu.yml",
                                            "inferwatch.yml", "cost.yml"}
    assert README.is_file()


def test_every_rule_file_has_its_test_and_every_test_its_rule_file() -> None:
    assert {unit_test_file(p) for p in RULE_FILES} == set(TEST_FILES)
    for rule_file in RULE_FILES:
        assert load(unit_test_file(rule_file))["rule_files"] == [f"../{rule_file.name}"]


@pytest.mark.parametrize("path", RULE_FILES, ids=name_of)
def test_rule_file_conventions(path: Path) -> None:
    anchors = readme_anchors()
    doc = load(path)
    for group in doc["groups"]:
        assert group["name"].startswith("inferwatch-"), group["name"]
        assert minutes(group["interval"]) > 0, f"group {group['name']} has no interval"
        for rule in group["rules"]:
            if "record" in rule:
                assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule
                continue
            name = rule["alert"]
            assert "for" in rule, f"{name} has no for"
            assert rule["labels"] == {"severity": rule["labels"]["severity"]}, name
            assert rule["labels"]["severity"] in SEVERITIES, name
            annotations = rule["annotations"]
            assert set(annotations) == ANNOTATIONS, name
            assert "{{" in annotations["summary"] and "{{" in annotations["description"], name
            assert annotations["runbook"] == f"rules/README.md#{name.lower()}", name
            assert name.lower() in anchors, f"rules/README.md has no section for {name}"


@pytest.mark.parametrize("path", RULE_FILES, ids=name_of)
def test_rules_use_spec_metric_names(path: Path) -> None:
    known = known_metric_names()
    for rule in rules_of(path):
        used = set(re.findall(rf"\b{PREFIX}([a-zA-Z0-9_]+)", rule["expr"]))
        unknown = used - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown {unknown}"
        assert used, rule


@pytest.mark.parametrize("path", RULE_FILES, ids=name_of)
def test_every_rule_is_tested(path: Path) -> None:
    """Each alert fires in some check and is expected silent in an earlier one (under its
    threshold or before its `for` has elapsed); each recording rule's value is checked."""
    tests = load(unit_test_file(path))["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    exprs = {check["expr"] for test in tests for check in test.get("promql_expr_test", [])}
    # One alert name may have several rules, one severity each (BudgetThresholdCrossed at 0.8
    # and at 1.0).
    severities: dict[str, set[str]] = {}
    for rule in rules_of(path):
        if "alert" in rule:
            severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    for rule in rules_of(path):
        if "record" in rule:
            assert rule["record"] in exprs, f"recording rule {rule['record']} is not checked"
            continue
        name = rule["alert"]
        mine = [c for c in checks if c["alertname"] == name]
        firing = [minutes(c["eval_time"]) for c in mine if c.get("exp_alerts")]
        silent = [minutes(c["eval_time"]) for c in mine if not c.get("exp_alerts")]
        assert firing, f"{name} is never tested firing"
        assert silent and min(silent) < min(firing), f"{name} is never tested silent first"
        for check in mine:
            for alert in check.get("exp_alerts") or []:
                assert set(alert["exp_annotations"]) == ANNOTATIONS, (name, check["eval_time"])
                assert alert["exp_labels"]["severity"] in severities[name], name
        tested = {alert["exp_labels"]["severity"] for check in mine
                  for alert in check.get("exp_alerts") or []}
        assert rule["labels"]["severity"] in tested, f"{name} is never tested at " \
            f"severity {rule['labels']['severity']}"


# --- inferwatch ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RULE_FILES, ids=name_of)
def test_inferwatch_check_rules(path: Path) -> None:
    assert_ok(inferwatch("check", "rules", path), f"inferwatch check rules {name_of(path)}")


@pytest.mark.parametrize("path", TEST_FILES, ids=name_of)
def test_inferwatch_test_rules(path: Path) -> None:
    proc = inferwatch("test", "rules", path)
    assert_ok(proc, f"inferwatch test rules {name_of(path)}")
    assert "SUCCESS" in proc.stdout


def renamed_copy(tmp_path: Path, namespace: str) -> Path:
    """rules/ with every metric prefix replaced, as rules/README.md says to do."""
    target = tmp_path / "rules"
    shutil.copytree(RULES, target)
    for path in [*target.glob("*.yml"), *target.glob("tests/*.yml")]:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(PREFIX, f"{namespace}_"), encoding="utf-8")
    return target


def test_inferwatch_test_rules_under_another_namespace(tmp_path: Path) -> None:
    target = renamed_copy(tmp_path, "deepseek")
    assert PREFIX not in "".join(p.read_text(encoding="utf-8") for p in target.glob("*.yml"))
    files = sorted(target.glob("tests/*_test.yml"))
    assert_ok(inferwatch("test", "rules", *files), "inferwatch test rules (namespace deepseek)")


# --- promtool (integration) ------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("path", RULE_FILES, ids=name_of)
def test_promtool_check_rules(promtool: Path, path: Path) -> None:
    assert_ok(run(promtool, "check", "rules", path), f"promtool check rules {name_of(path)}")


@pytest.mark.integration
@pytest.mark.parametrize("path", TEST_FILES, ids=name_of)
def test_promtool_test_rules(promtool: Path, path: Path) -> None:
    proc = run(promtool, "test", "rules", path)
    assert_ok(proc, f"promtool test rules {name_of(path)}")
    assert "SUCCESS" in proc.stdout


@pytest.mark.integration
def test_promtool_test_rules_under_another_namespace(promtool: Path, tmp_path: Path) -> None:
    files = sorted(renamed_copy(tmp_path, "deepseek").glob("tests/*_test.yml"))
    assert_ok(run(promtool, "test", "rules", *files), "promtool test rules (namespace deepseek)")
