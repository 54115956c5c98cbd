"""Rule files read and validated as Prometheus 2.42 does (monitor/alerting/rulefmt.py).

Every valid file here is one `promtool check rules` (2.42) accepts and every invalid one is
one it refuses; the integration tests at the end run promtool on each to keep it so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from monitor.alerting.rulefmt import (
    RuleFileError,
    RuleGroupSpec,
    RuleNode,
    load_rule_file,
    parse_rule_file,
)
from monitor.errors import ConfigError


def fake_expr_checker(expr: str) -> str | None:
    """Stands in for the PromQL parser: unbalanced parentheses are an error."""
    if expr.count("(") != expr.count(")"):
        return "1:5: parse error: unclosed left parenthesis"
    if not expr.strip():
        return "no expression found in input"
    return None


def fake_template_checker(text: str) -> str | None:
    """Stands in for the template parser: an action left open is an error."""
    if text.count("{{") != text.count("}}"):
        return "template: __alert_x:1: unclosed action"
    return None


def parse(text: str) -> list[RuleGroupSpec]:
    return parse_rule_file(text, file="rules.yml", expr_checker=fake_expr_checker,
                           template_checker=fake_template_checker)


SPEC_DEEPSEEK = """\
groups:
  - name: deepseek
    rules:
      - alert: HighLatency
        expr: histogram_quantile(0.95, sum(rate(deepseek_request_duration_seconds_bucket[5m])) by (le)) > 15
        for: 10m
      - alert: HighLoad
        expr: rate(deepseek_requests_total[1m]) > 1000
"""  # noqa: E501 - SPEC §7's rules, verbatim

DOCS_RECORDING = """\
groups:
  - name: example
    rules:
    - record: code:prometheus_http_requests_total:sum
      expr: sum by (code) (prometheus_http_requests_total)
"""

DOCS_ALERTING = """\
groups:
- name: example
  rules:
  - alert: HighRequestLatency
    expr: job:request_latency_seconds:mean5m{job="myjob"} > 0.5
    for: 10m
    keep_firing_for: 5m
    labels:
      severity: page
    annotations:
      summary: High request latency
      description: "{{ $labels.instance }} has a median request latency above 1s (current value: {{ $value }}s)"
"""  # noqa: E501 - the Prometheus docs' example, verbatim

EVERYTHING = """\
# a comment
groups:
- name: api
  interval: 1h30m
  limit: 10
  rules:
  - record: job:requests:rate5m
    expr: sum by (job) (rate(requests_total[5m]))
    labels:
      team: infra
  - alert: Slow
    expr: job:requests:rate5m > 1
    for: 1d2h
    labels: {severity: page}
    annotations:
      summary: '{{ $labels.job }} is slow: {{ $value | humanize }}'
- name: empty
- name: api2
  interval: 500ms
  rules: []
"""

# Go's YAML decoders read any scalar into a string as its text: all of this is valid.
GO_SCALARS = """\
groups:
- name: 1
  interval: 0
  limit: 5.5
  rules:
  - alert: null
    expr: null
    for: 0
    labels: {a: true, b: 1.50, c: 0x1F, d: null, e: yes}
    annotations: {x: 2001-12-14, y: ~}
  -
  - record: r
    expr: 1e3
-
- name: "two"
  limit: 0x10
  rules:
- name: three
  limit: -1
  rules: null
"""

VALID = {
    "spec_deepseek": SPEC_DEEPSEEK,
    "docs_recording": DOCS_RECORDING,
    "docs_alerting": DOCS_ALERTING,
    "everything": EVERYTHING,
    "go_scalars": GO_SCALARS,
    "empty": "",
    "comment_only": "# nothing here\n",
    "null_groups": "groups:\n",
    "no_groups": "groups: []\n",
    "bom": "\ufeffgroups: []\n",
}


def test_spec_examples() -> None:
    (group,) = parse(SPEC_DEEPSEEK)
    assert (group.name, group.interval, group.limit, group.file, group.line) == (
        "deepseek", None, 0, "rules.yml", 2)
    high_latency, high_load = group.rules
    assert high_latency == RuleNode(
        "alert", "HighLatency",
        "histogram_quantile(0.95, sum(rate(deepseek_request_duration_seconds_bucket[5m])) "
        "by (le)) > 15", for_=600.0, line=4)
    assert (high_load.name, high_load.for_, high_load.keep_firing_for) == ("HighLoad", 0, 0)
    assert high_load.expr == "rate(deepseek_requests_total[1m]) > 1000"


def test_docs_examples() -> None:
    (recording,) = parse(DOCS_RECORDING)[0].rules
    assert (recording.kind, recording.name) == ("record", "code:prometheus_http_requests_total:sum")
    assert recording.labels == recording.annotations == {}
    (alert,) = parse(DOCS_ALERTING)[0].rules
    assert (alert.kind, alert.for_, alert.keep_firing_for) == ("alert", 600.0, 300.0)
    assert alert.labels == {"severity": "page"}
    assert alert.annotations["summary"] == "High request latency"


def test_every_field() -> None:
    api, empty, api2 = parse(EVERYTHING)
    assert (api.interval, api.limit, api.line) == (5400.0, 10, 3)
    record, alert = api.rules
    assert (record.kind, record.labels, record.line) == ("record", {"team": "infra"}, 7)
    assert (alert.for_, alert.line) == (93600.0, 11)
    assert alert.annotations == {"summary": "{{ $labels.job }} is slow: {{ $value | humanize }}"}
    assert (empty.name, empty.rules, empty.interval) == ("empty", (), None)
    assert api2.interval == 0.5


def test_scalars_keep_their_text_as_in_go() -> None:
    first, two, three = parse(GO_SCALARS)
    assert (first.name, first.interval, first.limit) == ("1", None, 5)
    alert, record = first.rules  # the null item is skipped, as promtool skips it
    assert (alert.name, alert.expr) == ("null", "null")  # yaml.Node fields keep `null`
    assert alert.labels == {"a": "true", "b": "1.50", "c": "0x1F", "d": "", "e": "yes"}
    assert alert.annotations == {"x": "2001-12-14", "y": ""}
    assert record.expr == "1e3"
    assert (two.name, two.limit, two.rules) == ("two", 16, ())
    assert (three.limit, three.rules) == (-1, ())


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_files(name: str) -> None:
    parse(VALID[name])


# (name, text, a part of the error, its line): promtool 2.42 refuses each one as well.
INVALID = [
    ("unknown_top", "groups: []\nfoo: 1\n", "unknown field 'foo' in the rule file", 2),
    ("unknown_group_field", "groups:\n- name: a\n  foo: 1\n",
     "group \"a\": unknown field 'foo' in a rule group", 3),
    ("unknown_rule_field", "groups:\n- name: a\n  rules:\n  - alert: x\n    expr: up\n"
     "    severity: page\n", "group \"a\", rule 1, \"x\": unknown field 'severity'", 6),
    ("group_without_name", "groups:\n- rules: []\n", "groups[0]: group name must not be empty",
     2),
    ("group_null_name", "groups:\n- name: null\n", "group name must not be empty", 2),
    ("group_repeated", "groups:\n- name: a\n- name: b\n- name: a\n",
     'group "a": group name is repeated in the same file (first at line 2)', 4),
    ("group_repeated_as_number", "groups:\n- name: 1\n- name: '1'\n", "is repeated", 3),
    ("rules_mapping", "groups:\n- name: a\n  rules: {}\n",
     'group "a": rules: must be a list, not a mapping', 3),
    ("groups_mapping", "groups: {a: 1}\n", "groups: must be a list", 1),
    ("top_list", "- a\n", "the rule file must be a mapping, not a list", 1),
    ("top_scalar", "hello\n", "the rule file must be a mapping", 1),
    ("interval_number", "groups:\n- name: a\n  interval: 30\n", "invalid duration '30'", 3),
    ("interval_order", "groups:\n- name: a\n  interval: 1m1h\n", "invalid duration '1m1h'", 3),
    ("interval_empty", "groups:\n- name: a\n  interval: ''\n", "empty duration string", 3),
    ("for_negative", "groups:\n- name: a\n  rules:\n  - alert: x\n    expr: up\n    for: -1m\n",
     "for: invalid duration '-1m'", 6),
    ("for_number", "groups:\n- name: a\n  rules:\n  - alert: x\n    expr: up\n    for: 10\n",
     "invalid duration '10'", 6),
    ("limit_quoted", "groups:\n- name: a\n  limit: '5'\n", "limit: must be an integer", 3),
    ("limit_bool", "groups:\n- name: a\n  limit: true\n", "limit: must be an integer", 3),
    ("alert_and_record", "groups:\n- name: g\n  rules:\n  - alert: C\n    record: c\n"
     "    expr: up\n", "only one of 'record' and 'alert' must be set", 5),
    ("neither", "groups:\n- name: g\n  rules:\n  - expr: up\n",
     "group \"g\", rule 1, \"\": one of 'record' or 'alert' must be set", 4),
    ("alert_mapping", "groups:\n- name: g\n  rules:\n  - alert: {a: b}\n    expr: up\n",
     "alert: must be a string", 4),
    ("no_expr", "groups:\n- name: g\n  rules:\n  - alert: x\n    for: 1m\n",
     "field 'expr' must be set in rule", 4),
    ("empty_expr", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr:\n",
     "field 'expr' must be set in rule", 5),
    ("bad_expr", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: sum(up\n",
     'group "g", rule 1, "x": could not parse expression: 1:5: parse error', 5),
    ("record_annotations", "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n"
     "    annotations: {a: b}\n", "invalid field 'annotations' in recording rule", 6),
    ("record_for", "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n    for: 1m\n",
     "invalid field 'for' in recording rule", 6),
    ("record_keep_firing_for", "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n"
     "    keep_firing_for: 5m\n", "invalid field 'keep_firing_for' in recording rule", 6),
    ("record_name_digit", "groups:\n- name: g\n  rules:\n  - record: 1abc\n    expr: up\n",
     "invalid recording rule name: 1abc", 4),
    ("record_name_dash", "groups:\n- name: g\n  rules:\n  - record: a-b\n    expr: up\n",
     "invalid recording rule name: a-b", 4),
    ("label_name", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n"
     "    labels:\n      a-b: c\n", "invalid label name: a-b", 7),
    ("label_dunder_name", "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n"
     "    labels: {__name__: x}\n", "invalid label name: __name__", 6),
    ("label_mapping", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n"
     "    labels: {a: {b: c}}\n", "labels.a: must be a string", 6),
    ("labels_list", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n"
     "    labels: [a]\n", "labels must be a mapping", 6),
    ("annotation_name", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n"
     "    annotations: {bad-name: y}\n", "invalid annotation name: bad-name", 6),
    ("annotation_template", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n"
     "    annotations:\n      x: '{{ $value'\n", 'annotation "x": template: ', 7),
    ("label_template", "groups:\n- name: g\n  rules:\n  - alert: x\n    expr: up\n"
     "    labels:\n      s: '{{ if'\n", 'label "s": template: ', 7),
    ("duplicate_key", "groups:\n- name: a\n  name: b\n", "duplicate key 'name'", 3),
    ("tab_indent", "groups:\n\t- name: a\n", "invalid YAML", 2),
    ("unclosed_flow", "groups: [\n", "invalid YAML", 2),
    ("bad_alias", "groups: *nothing\n", "invalid YAML", 1),
]


@pytest.mark.parametrize(("name", "text", "message", "line"), INVALID,
                         ids=[case[0] for case in INVALID])
def test_invalid_files(name: str, text: str, message: str, line: int) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse(text)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert message in str(error)
    assert error.line == line
    assert str(error).startswith(f"rules.yml:{line}: ")


def test_all_problems_are_reported_sorted_by_line() -> None:
    text = """\
groups:
- name: g
  interval: 1x
  rules:
  - record: a-b
    expr: up
    for: 1m
    annotations: {a: b}
    labels: {__name__: x, "a-b": c}
  - expr: up
  - alert: D
    expr: "sum("
    annotations: {x: "{{ $value"}
- name: g
"""
    with pytest.raises(RuleFileError) as caught:
        parse(text)
    rendered = str(caught.value).splitlines()
    assert rendered == [
        "rules.yml:3: group \"g\": interval: invalid duration '1x': use Prometheus syntax "
        "such as 30s, 5m, 1h30m, 7d",
        'rules.yml:5: group "g", rule 1, "a-b": invalid recording rule name: a-b',
        "rules.yml:7: group \"g\", rule 1, \"a-b\": invalid field 'for' in recording rule",
        "rules.yml:8: group \"g\", rule 1, \"a-b\": invalid field 'annotations' in recording "
        "rule",
        'rules.yml:9: group "g", rule 1, "a-b": invalid label name: __name__',
        'rules.yml:9: group "g", rule 1, "a-b": invalid label name: a-b',
        "rules.yml:10: group \"g\", rule 2, \"\": one of 'record' or 'alert' must be set",
        'rules.yml:12: group "g", rule 3, "D": could not parse expression: 1:5: parse error: '
        "unclosed left parenthesis",
        'rules.yml:13: group "g", rule 3, "D": annotation "x": template: __alert_x:1: '
        "unclosed action",
        'rules.yml:14: group "g": group name is repeated in the same file (first at line 2)',
    ]
    problems = caught.value.problems
    assert [problem.key for problem in problems][:2] == ["groups[0].interval",
                                                        "groups[0].rules[0].record"]
    assert problems[5].key == "groups[0].rules[0].labels.a-b"


def test_checkers_are_optional_and_called_as_prometheus_does() -> None:
    text = """\
groups:
- name: g
  rules:
  - record: r
    expr: sum(up
    labels: {t: "{{ oops"}
  - alert: A
    expr: up
    labels: {t: "{{ $labels.job }}"}
    annotations: {s: "{{ $value }}"}
"""
    (group,) = parse_rule_file(text, file="rules.yml")  # nothing checked
    assert group.rules[0].expr == "sum(up"
    exprs: list[str] = []
    templates: list[str] = []

    def expr_checker(expr: str) -> None:
        exprs.append(expr)

    def template_checker(template: str) -> None:
        templates.append(template)

    parse_rule_file(text, file="rules.yml", expr_checker=expr_checker,
                    template_checker=template_checker)
    assert exprs == ["sum(up", "up"]
    # Templates of recording rules are not parsed (testTemplateParsing skips them).
    assert templates == ["{{ $labels.job }}", "{{ $value }}"]


def test_expr_checker_not_called_without_expr() -> None:
    def expr_checker(expr: str) -> str:
        raise AssertionError(f"called with {expr!r}")

    with pytest.raises(RuleFileError, match="field 'expr' must be set"):
        parse_rule_file("groups:\n- name: g\n  rules:\n  - alert: x\n", file="r.yml",
                        expr_checker=expr_checker)


def test_load_rule_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(SPEC_DEEPSEEK, encoding="utf-8")
    (group,) = load_rule_file(path, expr_checker=fake_expr_checker)
    assert group.file == str(path)
    (group,) = load_rule_file(str(path))
    assert group.file == str(path)
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: a\n  foo: 1\n", encoding="utf-8")
    with pytest.raises(RuleFileError) as caught:
        load_rule_file(bad)
    assert str(caught.value).startswith(f"{bad}:3: ")
    assert caught.value.file == str(bad)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read file"):
        load_rule_file(tmp_path / "missing.yml")
    with pytest.raises(RuleFileError, match="cannot read file"):
        load_rule_file(tmp_path)
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"groups: []\n\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(RuleFileError, match="not UTF-8"):
        load_rule_file(binary)


def test_hostile_yaml() -> None:
    with pytest.raises(RuleFileError, match="not allowed"):
        parse("groups: []\n\x00\n")
    with pytest.raises(RuleFileError, match="nested more than"):
        parse("groups: " + "[" * 500 + "]" * 500 + "\n")
    with pytest.raises(RuleFileError, match="recursive"):
        parse("groups: &a\n- name: x\n  rules: *a\n")
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]"
        for i in range(8)]
    with pytest.raises(RuleFileError, match="more than"):
        parse("\n".join(levels) + "\n")
    with pytest.raises(RuleFileError, match="integer too large"):
        parse("groups:\n- name: a\n  limit: " + "9" * 5000 + "\n")
    with pytest.raises(RuleFileError, match="only one"):
        parse("groups:\n- name: a\n  rules:\n  - {alert: '" + "x" * 100_000 + "', "
              "record: y, expr: up}\n")


def test_aliases_and_merge_keys_work() -> None:
    text = """\
common: &common
  for: 5m
  labels: {severity: page}
groups:
- name: g
  rules:
  - <<: *common
    alert: A
    expr: up == 0
"""
    with pytest.raises(RuleFileError, match="unknown field 'common'"):
        parse(text)
    merged = """\
groups:
- name: g
  rules:
  - &base
    alert: A
    expr: up == 0
    for: 5m
    labels: {severity: page}
  - <<: *base
    alert: B
"""
    _, second = parse(merged)[0].rules
    assert (second.name, second.expr, second.for_, second.labels) == (
        "B", "up == 0", 300.0, {"severity": "page"})


@pytest.mark.slow
def test_ten_thousand_rules_load() -> None:
    rules = "".join(
        f"  - alert: Alert{i}\n    expr: rate(x_total{{job=\"a\"}}[5m]) > {i}\n    for: 5m\n"
        f"    labels: {{severity: page}}\n    annotations:\n"
        f"      summary: '{{{{ $labels.job }}}} is high'\n"
        for i in range(10_000))
    (group,) = parse("groups:\n- name: big\n  rules:\n" + rules)
    assert len(group.rules) == 10_000
    assert group.rules[-1].name == "Alert9999"
    assert group.rules[-1].line == 4 + 6 * 9_999


# --- against promtool ----------------------------------------------------------------------



def check_rules(promtool: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(VALID))
def test_promtool_accepts_the_valid_files(promtool: Path, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yml"
    path.write_text(VALID[name], encoding="utf-8")
    result = check_rules(promtool, path)
    assert result.returncode == 0, result.stdout + result.stderr
    load_rule_file(path, expr_checker=fake_expr_checker, template_checker=fake_template_checker)


@pytest.mark.integration
@pytest.mark.parametrize(("name", "text", "message", "line"), INVALID,
                         ids=[case[0] for case in INVALID])
def test_promtool_refuses_the_invalid_files(promtool: Path, tmp_path: Path, name: str,
                                            text: str, message: str, line: int) -> None:
    path = tmp_path / f"{name}.yml"
    path.write_text(text, encoding="utf-8")
    result = check_rules(promtool, path)
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.integration
def test_known_deviation_second_yaml_document(promtool: Path, tmp_path: Path) -> None:
    # promtool reads only the first document and ignores the rest; we refuse the file
    # rather than silently drop rules someone wrote.
    path = tmp_path / "two.yml"
    path.write_text("groups: []\n---\ngroups:\n- name: lost\n", encoding="utf-8")
    assert check_rules(promtool, path).returncode == 0
    with pytest.raises(RuleFileError, match="single document"):
        load_rule_file(path)
