"""Exported SLO rules: Sloth's rule groups, record names, labels and expressions (written out
here from Sloth's templates), Go's number and string formatting, yaml.v2's output style, and
the rules at work: `promtool check rules` and `inferwatch check rules` accept them, and a
promtool unit test generated here (run by promtool and by `inferwatch test rules`) feeds
constant and stepped error rates and checks when the page, ticket and half-budget alerts fire.

promtool tests are integration tests: they skip without /usr/bin/promtool unless
INFERWATCH_REQUIRE_INTEGRATION=1, then fail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.alerting.manager import check_expr
from monitor.alerting.rulefmt import parse_rule_file
from monitor.alerting.templates import check_template
from monitor.slo.export import (
    GeneratorInfo,
    go_float,
    go_float_f,
    go_quote,
    label_filter,
    render_rules,
    slo_rule_groups,
)
from monitor.slo.spec import Slo, load_slo_file, parse_slo_file

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "rules" / "slos" / "inference.yml"
TIMEOUT_S = 120

SPEC = """\
version: "prometheus/v1"
service: "shop"
labels:
  owner: "team-a"
  tier: "2"
slos:
  - name: "checkout-availability"
    objective: 99.5
    sli:
      events:
        error_query: sum(rate(http_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_total[{{.window}}]))
    alerting:
      name: CheckoutAvailability
      labels:
        category: availability
      annotations:
        runbook: "https://runbooks.example/checkout"
      page_alert:
        labels:
          severity: critical
      ticket_alert:
        labels:
          channel: "#shop"
"""
ID = 'sloth_id="shop-checkout-availability", sloth_service="shop", ' \
     'sloth_slo="checkout-availability"'
ID_LABELS = {"sloth_id": "shop-checkout-availability", "sloth_service": "shop",
             "sloth_slo": "checkout-availability"}


def slos_of(text: str) -> list[Slo]:
    return list(parse_slo_file(textwrap.dedent(text), file="spec.yml").slos)


def rules_by_name(groups: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        for rule in group["rules"]:
            found.setdefault(rule.get("record") or rule["alert"], []).append(rule)
    return found


# --- Go formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (14.4, "14.4"), (6.0, "6"), (30.0, "30"), (0.0009999999999999432, "0.0009999999999999432"),
    (0.9990000000000001, "0.9990000000000001"), (0.0001, "0.0001"), (1e-05, "1e-05"),
    (2.5e-05, "2.5e-05"), (123456.0, "123456"),
    (1e6, "1e+06"), (1234567.0, "1.234567e+06"), (1.5e21, "1.5e+21"), (-2.5, "-2.5"),
    (0.0, "0"), (float("inf"), "+Inf"), (float("nan"), "NaN"),
])
def test_floats_print_as_go_prints_them(value: float, text: str) -> None:
    assert go_float(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (99.9, "99.9"), (100.0, "100"), (95.0, "95"), (1e-05, "0.00001"), (99.999, "99.999"),
    (1e21, "1000000000000000000000"),
])
def test_objectives_print_as_strconv_formatfloat_f(value: float, text: str) -> None:
    assert go_float_f(value) == text


def test_go_quote_and_label_sets() -> None:
    assert go_quote('a"b\\c\nd\te') == '"a\\"b\\\\c\\nd\\te"'
    assert go_quote("café") == '"café"'
    assert go_quote("\x01\x7f\u200b\U000e0001") == '"\\x01\\x7f\\u200b\\U000e0001"'
    # prometheus/common sorts the `name="value"` strings: "a0=" sorts before "a=".
    assert label_filter({"a": "1", "a0": "2", "b": 'x"y'}) == '{a0="2", a="1", b="x\\"y"}'


# --- the rules, as Sloth writes them -------------------------------------------------------------


def test_group_names_and_rule_order() -> None:
    groups = slo_rule_groups(slos_of(SPEC)[0])
    assert [group["name"] for group in groups] == [
        "sloth-slo-sli-recordings-shop-checkout-availability",
        "sloth-slo-meta-recordings-shop-checkout-availability",
        "sloth-slo-alerts-shop-checkout-availability",
    ]
    assert [rule["record"] for rule in groups[0]["rules"]] == [
        f"slo:sli_error:ratio_rate{window}"
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")]
    assert [rule["record"] for rule in groups[1]["rules"]] == [
        "slo:objective:ratio", "slo:error_budget:ratio", "slo:time_period:days",
        "slo:current_burn_rate:ratio", "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio", "sloth_slo_info"]
    assert [rule["alert"] for rule in groups[2]["rules"]] == [
        "CheckoutAvailability", "CheckoutAvailability", "CheckoutAvailabilityBudgetHalfSpent"]


def test_sli_recording_rules() -> None:
    rules = rules_by_name(slo_rule_groups(slos_of(SPEC)[0]))
    (rate1h,) = rules["slo:sli_error:ratio_rate1h"]
    assert rate1h["expr"] == ('(sum(rate(http_total{code=~"5.."}[1h])))\n/\n'
                              "(sum(rate(http_total[1h])))\n")
    assert rate1h["labels"] == {**ID_LABELS, "owner": "team-a", "sloth_window": "1h",
                                "tier": "2"}
    (period,) = rules["slo:sli_error:ratio_rate30d"]
    assert period["expr"] == (
        f"sum_over_time(slo:sli_error:ratio_rate5m{{{ID}}}[30d])\n"
        "/ ignoring (sloth_window)\n"
        f"count_over_time(slo:sli_error:ratio_rate5m{{{ID}}}[30d])\n")
    assert period["labels"]["sloth_window"] == "30d"


def test_meta_recording_rules() -> None:
    rules = {name: found[0] for name, found in
             rules_by_name(slo_rule_groups(slos_of(SPEC)[0])).items()}
    labels = {**ID_LABELS, "owner": "team-a", "tier": "2"}
    assert rules["slo:objective:ratio"] == {"record": "slo:objective:ratio",
                                            "expr": "vector(0.995)", "labels": labels}
    assert rules["slo:error_budget:ratio"]["expr"] == "vector(1-0.995)"
    assert rules["slo:time_period:days"]["expr"] == "vector(30)"
    assert rules["slo:current_burn_rate:ratio"]["expr"] == (
        f"slo:sli_error:ratio_rate5m{{{ID}}}\n/ on(sloth_id, sloth_slo, sloth_service) "
        f"group_left\nslo:error_budget:ratio{{{ID}}}\n")
    assert rules["slo:period_burn_rate:ratio"]["expr"] == (
        f"slo:sli_error:ratio_rate30d{{{ID}}}\n/ on(sloth_id, sloth_slo, sloth_service) "
        f"group_left\nslo:error_budget:ratio{{{ID}}}\n")
    assert rules["slo:period_error_budget_remaining:ratio"]["expr"] == (
        f"1 - slo:period_burn_rate:ratio{{{ID}}}")
    assert rules["sloth_slo_info"]["expr"] == "vector(1)"
    assert rules["sloth_slo_info"]["labels"] == {
        **labels, "sloth_mode": "cli-gen-prom", "sloth_objective": "99.5",
        "sloth_spec": "prometheus/v1", "sloth_version": GeneratorInfo().version}
    assert all(rule["labels"] == labels for name, rule in rules.items()
               if name.startswith("slo:") and ":sli_error:" not in name)


def test_burn_rate_alerts() -> None:
    page, ticket, budget = rules_by_name(slo_rule_groups(slos_of(SPEC)[0]))[
        "CheckoutAvailability"] + rules_by_name(slo_rule_groups(slos_of(SPEC)[0]))[
        "CheckoutAvailabilityBudgetHalfSpent"]

    def pair(short: str, long: str, factor: str) -> str:
        return "\n    and\n".join(
            f"    max(slo:sli_error:ratio_rate{window}{{{ID}}} > ({factor} * 0.005)) "
            "without (sloth_window)" for window in (short, long))

    assert page["expr"] == (f"(\n{pair('5m', '1h', '14.4')}\n)\nor\n"
                            f"(\n{pair('30m', '6h', '6')}\n)\n")
    assert ticket["expr"] == (f"(\n{pair('2h', '1d', '3')}\n)\nor\n"
                              f"(\n{pair('6h', '3d', '1')}\n)\n")
    assert "for" not in page
    assert page["labels"] == {"category": "availability", "severity": "critical",
                              "sloth_severity": "page"}
    assert ticket["labels"] == {"category": "availability", "channel": "#shop",
                                "sloth_severity": "ticket"}
    assert page["annotations"] == {
        "runbook": "https://runbooks.example/checkout",
        "summary": "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn "
                   "rate is over expected.",
        "title": "(page) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget "
                 "burn rate is too fast.",
    }
    # Sloth's contrib plugin error_budget_exhausted_alert/v1 with threshold 0.5.
    assert budget["expr"] == ("slo:period_error_budget_remaining:ratio{owner=\"team-a\", "
                              f"{ID}, tier=\"2\"}} <= 0.5")
    assert "for" not in budget  # as the daemon's own: no `for`, so both fire on one minute
    assert budget["labels"] == {"category": "availability", "sloth_severity": "info"}
    assert budget["annotations"]["title"] == (
        "(info) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO has spent half of its "
        "error budget.")


def test_unoptimized_period_ratio_from_the_sli_query() -> None:
    # Sloth's sli_rules plugin with disableOptimized: the true event ratio over the period.
    rules = rules_by_name(slo_rule_groups(slos_of(SPEC)[0], optimized=False))
    assert rules["slo:sli_error:ratio_rate30d"][0]["expr"] == (
        '(sum(rate(http_total{code=~"5.."}[30d])))\n/\n(sum(rate(http_total[30d])))\n')


def test_four_week_period_as_sloth_names_and_scales_it() -> None:
    (slo,) = slos_of(SPEC.replace('slos:\n', 'time_window: 28d\nslos:\n'))
    rules = rules_by_name(slo_rule_groups(slo))
    (period,) = rules["slo:sli_error:ratio_rate4w"]
    assert period["labels"]["sloth_window"] == "4w"
    assert "[4w])" in period["expr"]
    assert rules["slo:time_period:days"][0]["expr"] == "vector(28)"
    assert "slo:sli_error:ratio_rate4w{" in rules["slo:period_burn_rate:ratio"][0]["expr"]
    page, ticket = rules["CheckoutAvailability"]
    assert "(13.44 * 0.005)" in page["expr"]
    assert "(5.6000000000000005 * 0.005)" in page["expr"]
    assert "(2.8000000000000003 * 0.005)" in ticket["expr"]
    assert "(0.9333333333333333 * 0.005)" in ticket["expr"]


def test_extra_labels_go_on_recorded_series_only() -> None:
    groups = slo_rule_groups(slos_of(SPEC)[0], extra_labels={"cluster": "bj-1", "tier": "1"})
    rules = rules_by_name(groups)
    assert rules["slo:sli_error:ratio_rate5m"][0]["labels"]["cluster"] == "bj-1"
    assert rules["slo:objective:ratio"][0]["labels"]["tier"] == "1"
    assert "cluster" not in rules["CheckoutAvailability"][0]["labels"]


def test_disabled_alerts_leave_no_alert_group() -> None:
    spec = SPEC.replace("      page_alert:\n        labels:\n          severity: critical\n",
                        "      page_alert: {disable: true}\n      budget_alert: {disable: true}\n")
    spec = spec.replace("      ticket_alert:\n        labels:\n          channel: \"#shop\"\n",
                        "      ticket_alert: {disable: true}\n")
    (slo,) = slos_of(spec)
    assert [group["name"] for group in slo_rule_groups(slo)] == [
        "sloth-slo-sli-recordings-shop-checkout-availability",
        "sloth-slo-meta-recordings-shop-checkout-availability"]


def test_raw_sli() -> None:
    (slo,) = slos_of(SPEC.replace(
        '      events:\n        error_query: sum(rate(http_total{code=~"5.."}[{{.window}}]))\n'
        "        total_query: sum(rate(http_total[{{.window}}]))\n",
        "      raw:\n        error_ratio_query: 1 - avg_over_time(up[{{.window}}])\n"))
    rules = rules_by_name(slo_rule_groups(slo))
    assert rules["slo:sli_error:ratio_rate6h"][0]["expr"] == "(1 - avg_over_time(up[6h]))"


# --- the YAML text ------------------------------------------------------------------------------


def test_yaml_is_written_as_yaml_v2_writes_it() -> None:
    text = render_rules(slos_of(SPEC), header=False)
    assert text.startswith("groups:\n- name: sloth-slo-sli-recordings-shop-checkout-availability\n"
                           "  rules:\n  - record: slo:sli_error:ratio_rate5m\n    expr: |\n"
                           '      (sum(rate(http_total{code=~"5.."}[5m])))\n      /\n')
    assert '      tier: "2"\n' in text  # would read back as a number: double quotes
    assert "      channel: '#shop'\n" in text  # not plain, not another type: single quotes
    assert '      sloth_objective: "99.5"\n' in text
    # long plain scalars fold at 80 columns, as Sloth's output does
    assert "    expr: 1 - slo:period_burn_rate:ratio{sloth_id=\"shop-checkout-availability\", " \
           'sloth_service="shop",\n      sloth_slo="checkout-availability"}\n' in text
    assert yaml.safe_load(text)["groups"] == [
        group for slo in slos_of(SPEC) for group in slo_rule_groups(slo)]


def test_label_keys_are_sorted_as_yaml_v2_sorts_them() -> None:
    (slo,) = slos_of(SPEC.replace('  tier: "2"\n', '  tier: "2"\n  a_b: x\n  ab: x\n  Zed: x\n'
                                                    "  a10: x\n  a9: x\n"))
    labels = slo_rule_groups(slo)[1]["rules"][0]["labels"]
    assert list(labels) == ["Zed", "a_b", "a9", "a10", "ab", "owner", "sloth_id",
                            "sloth_service", "sloth_slo", "tier"]


def test_header_and_several_slos_in_one_file() -> None:
    slos = list(load_slo_file(BUNDLED).slos) + slos_of(SPEC)
    text = render_rules(slos)
    assert text.startswith("---\n# Code generated by inferwatch ")
    groups = parse_rule_file(text, file="out.yml", expr_checker=check_expr,
                             template_checker=check_template)
    assert len(groups) == 9
    assert len({group.name for group in groups}) == 9


# --- the rules at work -------------------------------------------------------------------------


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False, cwd=cwd)


def assert_ok(proc: subprocess.CompletedProcess[str], what: str) -> None:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


QUOTING = """\
version: "prometheus/v1"
service: "shop"
time_window: 28d
labels:
  owner: 'a "quoted" \\ owner, café'
slos:
  - name: "uptime"
    objective: 99.95
    sli:
      raw:
        error_ratio_query: >-
          1 - avg_over_time(up[{{.window}}])
    alerting:
      name: ShopUptime
      annotations:
        summary: "{{ $labels.sloth_slo }} is down {{ $value | humanizePercentage }}"
"""
SPECS = {
    "bundled": lambda: list(load_slo_file(BUNDLED).slos),
    "events": lambda: slos_of(SPEC),
    "four-weeks-raw-quoting": lambda: slos_of(QUOTING),
}


def write_rules(tmp_path: Path, case: str) -> list[Path]:
    """The export of a case, with Sloth's optimised period ratio and without."""
    paths = []
    for optimized in (True, False):
        path = tmp_path / f"{case}-{'optimized' if optimized else 'unoptimized'}.yml"
        path.write_text(render_rules(SPECS[case](), optimized=optimized), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.mark.parametrize("case", sorted(SPECS))
def test_inferwatch_check_rules_accepts_the_export(tmp_path: Path, case: str) -> None:
    assert_ok(run(sys.executable, "-m", "monitor", "check", "rules", *write_rules(tmp_path, case)),
              f"inferwatch check rules ({case})")


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(SPECS))
def test_promtool_check_rules_accepts_the_export(promtool: Path, tmp_path: Path,
                                                 case: str) -> None:
    proc = run(promtool, "check", "rules", *write_rules(tmp_path, case))
    assert_ok(proc, f"promtool check rules ({case})")
    assert "SUCCESS" in proc.stdout


# Error rates as multiples of the 99.9 % availability budget (0.1 % of requests).
REQUESTS = "inferwatch_requests_total"
DURATION = "inferwatch_request_duration_seconds"
SPEC_DATA = yaml.safe_load(BUNDLED.read_text(encoding="utf-8"))


def expected_alerts(slo: str, *severities: str) -> list[dict[str, Any]]:
    """The alerts with their labels and rendered annotations. The half-budget alert keeps
    `sloth_window="30d"`: Sloth's slo:period_burn_rate:ratio takes it from the 30d SLI through
    `group_left`, and slo:period_error_budget_remaining:ratio from that."""
    spec = next(item for item in SPEC_DATA["slos"] if item["name"] == slo)
    alerting = spec["alerting"]
    found = []
    for severity in severities:
        kind = {"page": "page", "ticket": "ticket", "info": "budget"}[severity]
        title = (f"({severity}) inference {slo} SLO error budget burn rate is too fast."
                 if kind != "budget" else
                 f"(info) inference {slo} SLO has spent half of its error budget.")
        summary = (f"inference {slo} SLO error budget burn rate is over expected."
                   if kind != "budget" else
                   f"inference {slo} SLO has less than half of its error budget left for the "
                   "period.")
        description = {**alerting["annotations"],
                       **alerting[f"{kind}_alert"].get("annotations", {})}["description"]
        found.append({
            "exp_labels": {"sloth_id": f"inference-{slo}", "sloth_service": "inference",
                           "sloth_slo": slo, "sloth_severity": severity,
                           "severity": severity, **alerting["labels"],
                           **({"sloth_window": "30d"} if kind == "budget" else {})},
            "exp_annotations": {"title": title, "summary": summary,
                                "description": description},
        })
    return found


def checks(slo: str, name: str, expected: dict[int, tuple[str, ...]],
           budget: dict[int, bool]) -> list[dict[str, Any]]:
    tests = [{"eval_time": f"{minute}m", "alertname": name,
              "exp_alerts": expected_alerts(slo, *severities)}
             for minute, severities in expected.items()]
    tests += [{"eval_time": f"{minute}m", "alertname": f"{name}BudgetHalfSpent",
               "exp_alerts": expected_alerts(slo, "info") if spent else []}
              for minute, spent in budget.items()]
    return tests


def availability(success: str, errors: str) -> list[dict[str, str]]:
    return [{"series": f'{REQUESTS}{{source="inference",status="success"}}', "values": success},
            {"series": f'{REQUESTS}{{source="inference",status="error"}}', "values": errors}]


def latency(le: str, fast: str, count: str) -> list[dict[str, str]]:
    return [{"series": f'{DURATION}_bucket{{source="inference",le="{le}"}}', "values": fast},
            {"series": f'{DURATION}_count{{source="inference"}}', "values": count}]


AVAILABILITY = ("requests-availability", "InferenceAvailability")
LATENCY = ("requests-latency", "InferenceLatency")
SCENARIOS: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]]]] = {
    # Two good hours, then 15x the budget (1.5 % errors): the 1h window crosses 14.4x after
    # about 58 minutes of it; the 2h and 1d windows are above 3x long before.
    "page after an hour at 15x": (
        availability("0+1000x120 120985+985x240", "0x120 15+15x240"),
        checks(*AVAILABILITY, {110: (), 170: ("ticket",), 175: ("ticket",),
                               185: ("page", "ticket"), 360: ("page", "ticket")},
               {110: False, 140: True})),
    # 5x: above the ticket's 3x, below the page's 6x and 14.4x, however long it lasts.
    "ticket but no page at 5x": (
        availability("0+995x480", "0+5x480"),
        checks(*AVAILABILITY, {0: (), 10: ("ticket",), 120: ("ticket",), 480: ("ticket",)},
               {0: False, 30: True})),
    "ticket at 3.5x": (
        availability("0+1993x480", "0+7x480"),
        checks(*AVAILABILITY, {0: (), 30: ("ticket",), 480: ("ticket",)}, {})),
    # 2x: only the slow ticket pair (1x over 6h and 3d).
    "slow ticket at 2x": (
        availability("0+998x480", "0+2x480"),
        checks(*AVAILABILITY, {0: (), 30: ("ticket",), 480: ("ticket",)},
               {0: False, 60: True})),
    # 0.4x: within budget, 60 % of it left: nothing fires.
    "nothing at 0.4x": (
        availability("0+4998x480", "0+2x480"),
        checks(*AVAILABILITY, {30: (), 480: ()}, {30: False, 480: False})),
    # Latency: 80 % of requests slower than 10 s is 16x the 5 % budget.
    "latency page with le=10": (
        latency("10", "0+20x240", "0+100x240"),
        checks(*LATENCY, {0: (), 30: ("page", "ticket"), 240: ("page", "ticket")},
               {0: False, 30: True})),
    "latency page with le=10.0 (Prometheus 3)": (
        latency("10.0", "0+20x240", "0+100x240"),
        checks(*LATENCY, {0: (), 30: ("page", "ticket")}, {})),
    "latency fine at 2 % slow": (
        latency("10", "0+98x240", "0+100x240"),
        checks(*LATENCY, {30: (), 240: ()}, {30: False, 240: False})),
}


def write_unit_test(tmp_path: Path) -> Path:
    rules = tmp_path / "slo_rules.yml"
    rules.write_text(render_rules(list(load_slo_file(BUNDLED).slos)), encoding="utf-8")
    tests = [{"name": name, "interval": "1m", "input_series": series,
              "alert_rule_test": alert_checks}
             for name, (series, alert_checks) in SCENARIOS.items()]
    test = tmp_path / "slo_rules_test.yml"
    test.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                                    "tests": tests}, sort_keys=False), encoding="utf-8")
    return test


@pytest.mark.slow
def test_inferwatch_test_rules_on_burn_rates(tmp_path: Path) -> None:
    test = write_unit_test(tmp_path)
    proc = run(sys.executable, "-m", "monitor", "test", "rules", test.name, cwd=tmp_path)
    assert_ok(proc, "inferwatch test rules")
    assert "SUCCESS" in proc.stdout


@pytest.mark.integration
def test_promtool_test_rules_on_burn_rates(promtool: Path, tmp_path: Path) -> None:
    test = write_unit_test(tmp_path)
    proc = run(promtool, "test", "rules", test.name, cwd=tmp_path)
    assert_ok(proc, "promtool test rules")
    assert "SUCCESS" in proc.stdout
