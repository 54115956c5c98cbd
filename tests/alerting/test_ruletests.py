"""`inferwatch test rules` (monitor/alerting/ruletests.py), and alert timelines against promtool.

The runner is checked on its own first: passing and failing alert and PromQL tests, the float
tolerance of SPEC §3, evaluation errors, `group_eval_order`, external labels and URL. Then the
alert-state timelines of test_rules.py (`for` at its boundary, `for: 0`, resolve,
`keep_firing_for` with its reset, a pending alert that flaps, annotations following the value,
ALERTS / ALERTS_FOR_STATE, `limit` and duplicate label sets) are written as one promtool test
file and run through BOTH `promtool test rules` (the oracle, Prometheus 2.42) and
`python -m monitor test rules`: both must pass, or fail with the same lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.alerting.ruletests import floats_equal, run_file

TIMELINE_RULES = """\
groups:
- name: timelines
  rules:
  - alert: ForTwo
    expr: x > 0
    for: 2m
    labels:
      severity: page
      copy: 'from {{ $labels.inst }}'
    annotations:
      summary: 'value {{ $value }} on {{ $labels.inst }}'
  - alert: Instant
    expr: y > 0
  - alert: Keep
    expr: z > 0
    keep_firing_for: 3m
  - alert: Flap
    expr: w > 0
    for: 2m
"""

# x: pending at 1m, fires at exactly 1m + for = 3m, resolves at 5m; y: for 0 fires at once;
# z: keep_firing_for 3m, reset when it comes back at 3m, so it fires until 6m (not 4m);
# w: pending at 0m, dropped at 1m, pending again at 2m: fires at 4m (not 2m).
TIMELINE_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'x{inst="i1"}'
    values: '0 1 2 3 4 0 0'
  - series: 'y{inst="i2"}'
    values: '0 1 0'
  - series: 'z{inst="i3"}'
    values: '1 0 0 1 0 0 0 0 0'
  - series: 'w{inst="i4"}'
    values: '1 0 1 1 1'
  alert_rule_test:
  - {alertname: ForTwo, eval_time: 2m}
  - alertname: ForTwo
    eval_time: 3m
    exp_alerts:
    - exp_labels: {severity: page, copy: from i1, inst: i1}
      exp_annotations: {summary: value 3 on i1}
  - alertname: ForTwo
    eval_time: 4m
    exp_alerts:
    - exp_labels: {severity: page, copy: from i1, inst: i1}
      exp_annotations: {summary: value 4 on i1}
  - {alertname: ForTwo, eval_time: 5m}
  - {alertname: Instant, eval_time: 0m}
  - alertname: Instant
    eval_time: 1m
    exp_alerts: [{exp_labels: {inst: i2}}]
  - {alertname: Instant, eval_time: 2m}
  - alertname: Keep
    eval_time: 2m
    exp_alerts: [{exp_labels: {inst: i3}}]
  - alertname: Keep
    eval_time: 4m
    exp_alerts: [{exp_labels: {inst: i3}}]
  - alertname: Keep
    eval_time: 6m
    exp_alerts: [{exp_labels: {inst: i3}}]
  - {alertname: Keep, eval_time: 7m}
  - {alertname: Flap, eval_time: 2m}
  - {alertname: Flap, eval_time: 3m}
  - alertname: Flap
    eval_time: 4m
    exp_alerts: [{exp_labels: {inst: i4}}]
  promql_expr_test:
  - expr: ALERTS{alertname="ForTwo"}
    eval_time: 2m
    exp_samples:
    - labels: 'ALERTS{alertname="ForTwo", alertstate="pending", severity="page",
               copy="from i1", inst="i1"}'
      value: 1
  - expr: ALERTS{alertname="ForTwo"}
    eval_time: 3m
    exp_samples:
    - labels: 'ALERTS{alertname="ForTwo", alertstate="firing", severity="page",
               copy="from i1", inst="i1"}'
      value: 1
  - expr: ALERTS_FOR_STATE{alertname="ForTwo"}
    eval_time: 3m
    exp_samples:
    - labels: 'ALERTS_FOR_STATE{alertname="ForTwo", severity="page", copy="from i1",
               inst="i1"}'
      value: 60
  - expr: ALERTS{alertname="ForTwo"}
    eval_time: 5m
    exp_samples: []
  - expr: ALERTS{alertname="Keep"}
    eval_time: 5m
    exp_samples:
    - labels: 'ALERTS{alertname="Keep", alertstate="firing", inst="i3"}'
      value: 1
  - expr: ALERTS_FOR_STATE{alertname="Flap"}
    eval_time: 3m
    exp_samples:
    - labels: 'ALERTS_FOR_STATE{alertname="Flap", inst="i4"}'
      value: 120
"""

ERROR_RULES = """\
groups:
- name: lim
  limit: 1
  rules:
  - alert: TooMany
    expr: x > 0
- name: dup
  rules:
  - alert: Dup
    expr: x > 0
    labels:
      inst: same
"""

ERROR_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'x{inst="a"}'
    values: '1 1'
  - series: 'x{inst="b"}'
    values: '1 1'
  alert_rule_test:
  - alertname: TooMany
    eval_time: 1m
"""


def write_pair(directory: Path, rules: str, test: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yml").write_text(rules)
    path = directory / "test.yml"
    path.write_text(test)
    return path


# --- the runner on its own ---------------------------------------------------------------------


def test_the_timelines_pass(tmp_path: Path) -> None:
    result = run_file(write_pair(tmp_path, TIMELINE_RULES, TIMELINE_TEST))
    assert result.failures == []
    assert result.passed
    assert result.groups == 1


def test_evaluation_errors_are_reported_as_promtool_reports_them(tmp_path: Path) -> None:
    result = run_file(write_pair(tmp_path, ERROR_RULES, ERROR_TEST))
    assert result.failures == [
        "    rule: TooMany, time: 0s, err: exceeded limit of 1 with 2 alerts",
        "    rule: Dup, time: 0s, err: vector contains metrics with the same labelset after "
        "applying alert labels",
    ]


def test_a_wrong_expectation_fails_with_expected_and_got(tmp_path: Path) -> None:
    test = TIMELINE_TEST.replace("summary: value 3 on i1", "summary: value 99 on i1")
    result = run_file(write_pair(tmp_path, TIMELINE_RULES, test))
    (failure,) = result.failures
    assert failure.startswith("    alertname: ForTwo, time: 3m, \n        exp:[")
    assert 'summary="value 99 on i1"' in failure
    assert 'summary="value 3 on i1"' in failure


FLOATS_RULES = "groups:\n- name: g\n  rules:\n  - record: r\n    expr: x / 3\n"


@pytest.mark.parametrize(("value", "passes"), [
    ("0.3333333333333333", True),
    ("0.3333333334", True),  # relative difference 2e-10: within 1e-9
    ("0.333333334", False),  # 2e-9: outside
    ("0.3334", False),
])
def test_promql_expectations_compare_with_a_relative_tolerance_of_1e9(
        tmp_path: Path, value: str, passes: bool) -> None:
    test = ("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n"
            "  input_series:\n  - {series: x, values: '1'}\n  promql_expr_test:\n"
            f"  - expr: r\n    eval_time: 0m\n    exp_samples: [{{labels: r, value: {value}}}]\n")
    result = run_file(write_pair(tmp_path, FLOATS_RULES, test))
    assert result.passed is passes, result.failures


def test_floats_equal() -> None:
    nan = float("nan")
    assert floats_equal(nan, nan)
    assert not floats_equal(nan, 1.0)
    assert floats_equal(float("inf"), float("inf"))
    assert floats_equal(0.0, -0.0)
    assert floats_equal(1e300, 1e300 * (1 + 5e-10))
    assert not floats_equal(1.0, 1.0 + 2e-9)
    assert not floats_equal(0.0, 1e-300)  # relative: nothing is close to zero but zero


@pytest.mark.parametrize(("a", "b"), [(float("inf"), float("-inf")), (5.0, float("inf")),
                                      (float("-inf"), -1e308)])
def test_an_infinity_equals_only_itself(a: float, b: float) -> None:
    assert not floats_equal(a, b)


def test_a_test_expecting_a_number_fails_on_an_infinite_result(tmp_path: Path) -> None:
    test = ("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n"
            "  input_series:\n  - {series: x, values: 'Inf'}\n  promql_expr_test:\n"
            "  - {expr: r, eval_time: 0m, exp_samples: [{labels: r, value: 5}]}\n")
    assert not run_file(write_pair(tmp_path, FLOATS_RULES, test)).passed


def test_group_eval_order_and_external_labels_reach_the_rules(tmp_path: Path) -> None:
    rules = ("groups:\n- name: first\n  rules:\n  - alert: Big\n    expr: r > 1\n"
             "    annotations: {where: '{{ $externalLabels.dc }} {{ $externalURL }}'}\n"
             "- name: second\n  rules:\n  - record: r\n    expr: x * 2\n")
    test = ("rule_files: [rules.yml]\nevaluation_interval: 1m\n"
            "group_eval_order: [second, first]\ntests:\n- interval: 1m\n"
            "  external_labels: {dc: eu1}\n  external_url: http://iw.example\n"
            "  input_series:\n  - {series: x, values: '1 1'}\n  alert_rule_test:\n"
            "  - alertname: Big\n    eval_time: 0m\n    exp_alerts:\n"
            "    - exp_annotations: {where: eu1 http://iw.example}\n")
    assert run_file(write_pair(tmp_path, rules, test)).failures == []
    # In file order the alert runs first and only sees r from the previous evaluation.
    swapped = test.replace("group_eval_order: [second, first]", "group_eval_order: [first]")
    (failure,) = run_file(write_pair(tmp_path / "swapped", rules, swapped)).failures
    assert "alertname: Big, time: 0s" in failure


def test_stale_and_missing_input_values(tmp_path: Path) -> None:
    test = ("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n"
            "  input_series:\n  - {series: x, values: '3 stale _ 6'}\n  promql_expr_test:\n"
            "  - {expr: x, eval_time: 0m, exp_samples: [{labels: x, value: 3}]}\n"
            "  - {expr: x, eval_time: 1m, exp_samples: []}\n"
            "  - {expr: x, eval_time: 2m, exp_samples: []}\n"
            "  - {expr: r, eval_time: 3m, exp_samples: [{labels: r, value: 2}]}\n")
    assert run_file(write_pair(tmp_path, FLOATS_RULES, test)).failures == []


def test_an_unreadable_test_or_rule_file_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    missing = run_file(tmp_path / "nope.yml")
    assert not missing.passed
    assert "nope.yml" in missing.failures[0]
    bad_rules = run_file(write_pair(tmp_path, "groups:\n- name: g\n  rules:\n"
                                              "  - alert: A\n    expr: sum(\n", ERROR_TEST))
    assert not bad_rules.passed
    assert "rules.yml:5" in bad_rules.failures[0]


def test_every_failure_of_a_group_is_reported(tmp_path: Path) -> None:
    test = (TIMELINE_TEST
            .replace("summary: value 3 on i1", "summary: value 99 on i1")
            .replace("      value: 120", "      value: 121")
            .replace("  - {alertname: Keep, eval_time: 7m}",
                     "  - {alertname: Keep, eval_time: 7m}\n  - {alertname: Keep, "
                     "eval_time: 2m}"))
    failures = run_file(write_pair(tmp_path, TIMELINE_RULES, test)).failures
    assert len(failures) == 3, failures


def test_failed_alert_output_is_worded_as_promtool_words_it(tmp_path: Path) -> None:
    test = TIMELINE_TEST.replace("summary: value 3 on i1", "summary: value 99 on i1")
    (failure,) = run_file(write_pair(tmp_path, TIMELINE_RULES, test)).failures
    assert "              Labels:{" in failure
    assert "              Annotations:{" in failure


# --- against promtool ----------------------------------------------------------------------------


def run_both(promtool: Path, test: Path) -> tuple[subprocess.CompletedProcess[str],
                                                  subprocess.CompletedProcess[str]]:
    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              cwd=test.parent, stdin=subprocess.DEVNULL)

    return (run([str(promtool), "test", "rules", test.name]),
            run([sys.executable, "-m", "monitor", "test", "rules", test.name]))


def body(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The report (promtool writes failures to stderr) without the `Unit Testing:` header
    and blank lines, sorted: without group_eval_order promtool runs groups in Go's random
    map order."""
    return sorted(line for line in (result.stdout + result.stderr).splitlines()
                  if line.strip() and not line.startswith("Unit Testing:"))


@pytest.mark.integration
def test_promtool_and_inferwatch_agree_on_the_alert_timelines(
        promtool: Path, tmp_path: Path) -> None:
    oracle, ours = run_both(promtool, write_pair(tmp_path, TIMELINE_RULES, TIMELINE_TEST))
    assert oracle.returncode == 0, oracle.stdout + oracle.stderr
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert body(oracle) == body(ours) == ["  SUCCESS"]


@pytest.mark.integration
def test_promtool_and_inferwatch_agree_on_limit_and_duplicate_errors(
        promtool: Path, tmp_path: Path) -> None:
    oracle, ours = run_both(promtool, write_pair(tmp_path, ERROR_RULES, ERROR_TEST))
    assert (oracle.returncode, ours.returncode) == (1, 1)
    assert body(oracle) == body(ours) == sorted([
        "  FAILED:",
        "    rule: TooMany, time: 0s, err: exceeded limit of 1 with 2 alerts",
        "    rule: Dup, time: 0s, err: vector contains metrics with the same labelset after "
        "applying alert labels",
    ])


@pytest.mark.integration
@pytest.mark.parametrize("shift", ["1m", "2m"])
def test_promtool_and_inferwatch_agree_when_the_boundary_moves(
        promtool: Path, tmp_path: Path, shift: str) -> None:
    # The `for` boundary one evaluation either side: a `for` of 1m fires a minute early (the
    # 2m expectation at 2m now fails in both); 2m is the file as written (passes in both).
    rules = TIMELINE_RULES.replace("for: 2m\n    labels", f"for: {shift}\n    labels")
    oracle, ours = run_both(promtool, write_pair(tmp_path, rules, TIMELINE_TEST))
    assert oracle.returncode == ours.returncode == (0 if shift == "2m" else 1)
    if shift == "1m":
        assert "    alertname: ForTwo, time: 2m, " in body(oracle)
        assert "    alertname: ForTwo, time: 2m, " in body(ours)
