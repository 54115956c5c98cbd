"""The promtool unit-test file format and the series notation (monitor/alerting/testfile.py).

The tables of series notation were confirmed by running promtool 2.42 (`promtool test rules`
with one `promql_expr_test` per step); the integration tests at the end run promtool again on
every row, so a table that drifts from the oracle fails there.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from monitor.alerting.series_notation import (
    MAX_SERIES_VALUES,
    STALE,
    SeriesNotationError,
    SeriesValue,
    expand_values,
    parse_series,
    parse_series_desc,
)
from monitor.alerting.testfile import (
    TestFile,
    TestFileError,
    load_test_file,
    parse_test_file,
)
from monitor.errors import ConfigError

NAN = math.nan
INF = math.inf

# (values, expansion): confirmed with promtool 2.42.
VALUE_CASES: list[tuple[str, list[SeriesValue]]] = [
    ("1 2 3", [1.0, 2.0, 3.0]),
    ("1x3", [1.0, 1.0, 1.0, 1.0]),
    ("1x0 2", [1.0, 2.0]),
    ("_x3 1", [None, None, None, 1.0]),  # `_xN` is N blanks, not N+1
    ("_x0 1", [1.0]),
    ("_ _ 4", [None, None, 4.0]),
    ("0+10x5", [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]),
    ("-2+4x3", [-2.0, 2.0, 6.0, 10.0]),
    ("1-1x3", [1.0, 0.0, -1.0, -2.0]),
    ("1+1x5 _x3 stale", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, None, None, None, STALE]),
    ("1 stale 2", [1.0, STALE, 2.0]),
    ("stale 1", [STALE, 1.0]),
    ("stale+1x3", [STALE, NAN, NAN, NAN]),  # a stale marker plus anything is a plain NaN
    ("stale-1x1", [STALE, NAN]),
    ("NaN", [NAN]),
    ("Inf -Inf", [INF, -INF]),
    ("inf nan INF", [INF, NAN, INF]),
    ("1e3", [1000.0]),
    ("1E2 1e+2x1", [100.0, 100.0, 100.0]),
    ("010 09", [8.0, 9.0]),  # strconv.ParseInt(s, 0, 64) first: a leading 0 is octal
    ("0x3", [0.0, 0.0, 0.0, 0.0]),  # no hex in series values: `0`, then `x3`
    (".5 1. +3", [0.5, 1.0, 3.0]),
    ("1x02", [1.0, 1.0, 1.0]),
    ("99999999999999999999", [1e20]),
    ("0777777777777777777777777", [7.777777777777778e23]),  # too big for int64: a float
    ("1e-400", [0.0]),
    ("1e308+1e308x1", [1e308, INF]),
    ("0.1+0.1x9", [0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.7999999999999999,
                   0.8999999999999999, 0.9999999999999999]),  # repeated addition
    ("  1  ", [1.0]),
    ("", []),
]

# Values promtool 2.42 rejects with a parse error.
BAD_VALUES = [
    "stalex3", "Infx3", "1x", "x3", "1+2", "1x3.5", "1 2,3", "1x-3", "abc", "1e", "1_000",
    "+-1", "- 1", "1 + 1x2", "1+1 x2", "STALE", "infinity", "0b1", "1x1x1", "_x2x2", "1+_x2",
    "1 #c", "1+1x2e0", "1x0x2", "1e400", "-1e400", "sum",
]

# (series, labels): confirmed with promtool 2.42 (the value sequence was " 1").
SERIES_CASES: list[tuple[str, dict[str, str]]] = [
    ("up", {"__name__": "up"}),
    ('http_requests{job="a"}', {"__name__": "http_requests", "job": "a"}),
    ("sum", {"__name__": "sum"}),
    ("by", {"__name__": "by"}),
    ("offset", {"__name__": "offset"}),
    ("start", {"__name__": "start"}),
    ('{a="1"}', {"a": "1"}),
    ('{__name__="x"}', {"__name__": "x"}),
    ('foo{__name__="bar"}', {"__name__": "foo"}),
    ('foo{a=""}', {"__name__": "foo"}),
    ('{a="",b="1"}', {"b": "1"}),
    ('foo{a="1",}', {"__name__": "foo", "a": "1"}),
    ("foo{}", {"__name__": "foo"}),
    ("job:foo:rate5m", {"__name__": "job:foo:rate5m"}),
    (":foo", {"__name__": ":foo"}),
    ("_foo", {"__name__": "_foo"}),
    ('foo{a=`x"y`}', {"__name__": "foo", "a": 'x"y'}),
    (r'foo{a="\x41\u00e9\101"}', {"__name__": "foo", "a": "AéA"}),
    (r'foo{a="tab\there"}', {"__name__": "foo", "a": "tab\there"}),
    ('foo{sum="1"}', {"__name__": "foo", "sum": "1"}),
    ('foo{a="1" , b="2"}', {"__name__": "foo", "a": "1", "b": "2"}),
    ("x{a='abc'}", {"__name__": "x", "a": "abc"}),
    ('x{a="模型"}', {"__name__": "x", "a": "模型"}),
]

# Series promtool 2.42 rejects.
BAD_SERIES = [
    "on", "bool", "inf", "nan", "atan2", "group_left", '{a="1",a="2"}', 'foo {a="b"}',
    'foo{a!="b"}', 'foo{a=~"b"}', r'foo{a="\q"}', "{}", 'foo{1a="x"}', "1foo",
    'foo{a="1"}bar', '{a=""}', 'x{a="1",,}', "x{,}", 'x{a="1"',
]


def same_values(got: list[SeriesValue], want: list[SeriesValue]) -> bool:
    def same(a: SeriesValue, b: SeriesValue) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return a == b or (math.isnan(a) and math.isnan(b))
        return a is b
    return len(got) == len(want) and all(same(a, b) for a, b in zip(got, want, strict=True))


# --- the series notation -------------------------------------------------------------------


@pytest.mark.parametrize(("values", "expected"), VALUE_CASES)
def test_expand_values_as_promtool(values: str, expected: list[SeriesValue]) -> None:
    assert same_values(expand_values(values), expected), expand_values(values)


@pytest.mark.parametrize("values", BAD_VALUES)
def test_bad_values_are_errors(values: str) -> None:
    with pytest.raises(SeriesNotationError):
        expand_values(values)


def test_errors_give_the_column() -> None:
    with pytest.raises(SeriesNotationError) as caught:
        expand_values("1 2 stalex3")
    assert caught.value.column == 5
    assert "stalex3" in str(caught.value)
    with pytest.raises(SeriesNotationError, match="column 3"):
        expand_values("1x")


def test_repetitions_are_capped() -> None:
    # promtool 2.42 hangs on the first (uint64 overflow) and runs out of memory on the second.
    for values in ("1x18446744073709551616", "_x99999999999", f"1x{MAX_SERIES_VALUES}",
                   "1+1x999999 2"):
        with pytest.raises(SeriesNotationError):
            expand_values(values)
    assert len(expand_values(f"1x{MAX_SERIES_VALUES - 1}")) == MAX_SERIES_VALUES
    assert len(expand_values("_x5 1", limit=6)) == 6
    with pytest.raises(SeriesNotationError, match="more than 5 values"):
        expand_values("1 2 3x3", limit=5)


@pytest.mark.parametrize(("series", "labels"), SERIES_CASES)
def test_parse_series_desc_labels(series: str, labels: dict[str, str]) -> None:
    got_labels, values = parse_series_desc(f"{series} 1")
    assert got_labels == labels
    assert values == [1.0]


@pytest.mark.parametrize("series", BAD_SERIES)
def test_bad_series_are_errors(series: str) -> None:
    with pytest.raises(SeriesNotationError):
        parse_series_desc(f"{series} 1")


def test_series_line_may_carry_values_in_the_series() -> None:
    # promtool joins `series` and `values` into one line.
    assert parse_series_desc('{a="1"} 2 1') == ({"a": "1"}, [2.0, 1.0])
    assert parse_series_desc("foo") == ({"__name__": "foo"}, [])


@pytest.mark.parametrize(("text", "labels"), [
    ("", {}),
    ("{}", {}),
    ('foo {a="1"}', {"__name__": "foo", "a": "1"}),  # ParseMetric skips spaces
    ('{a=""}', {"a": ""}),  # labels.New keeps an empty value ...
    ('foo{a=""}', {"__name__": "foo"}),  # ... a metric name's builder drops it
    ('{__name__="foo", a=""}', {"__name__": "foo", "a": ""}),
    (' foo{a="b"} # comment', {"__name__": "foo", "a": "b"}),
    ('sum{job="x", instance="h:9"}', {"__name__": "sum", "job": "x", "instance": "h:9"}),
])
def test_parse_series_for_expected_samples(text: str, labels: dict[str, str]) -> None:
    assert parse_series(text) == labels


@pytest.mark.parametrize("text", ["foo bar", "1", 'foo{a="1"} 2', "foo}", '{a="1",a="2"}'])
def test_parse_series_rejects(text: str) -> None:
    with pytest.raises(SeriesNotationError):
        parse_series(text)


# --- the test file -------------------------------------------------------------------------

DOCS_RULES = """\
# This is the main input for unit testing.
# Only this file is passed as command line argument.
groups:
- name: example
  rules:
  - alert: InstanceDown
    expr: up == 0
    for: 5m
    labels:
      severity: page
    annotations:
      summary: "Instance {{ $labels.instance }} down"
      description: "{{ $labels.instance }} of job {{ $labels.job }} is down."
  - alert: AnotherInstanceDown
    expr: up == 0
    for: 10m
    labels:
      severity: page
    annotations:
      summary: "Instance {{ $labels.instance }} down"
      description: "{{ $labels.instance }} of job {{ $labels.job }} is down."
- name: example2
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
"""

# The example of docs/configuration/unit_testing_rules.md, trimmed to the parts that pass.
DOCS_TEST = """\
rule_files:
    - alerts.yml

evaluation_interval: 1m

tests:
    # Test 1.
    - interval: 1m
      # Series data.
      input_series:
          - series: 'up{job="prometheus", instance="localhost:9090"}'
            values: '0 0 0 0 0 0 0 0 0 0 0 0 0 0 0'
          - series: 'up{job="node_exporter", instance="localhost:9100"}'
            values: '1+0x6 0 0 0 0 0 0 0 0' # 1 1 1 1 1 1 1 0 0 0 0 0 0 0 0
          - series: 'go_goroutines{job="prometheus", instance="localhost:9090"}'
            values: '10+10x2 30+10x4'
          - series: 'go_goroutines{job="node_exporter", instance="localhost:9100"}'
            values: '10+10x7 10+30x4'

      # Unit test for alerting rules.
      alert_rule_test:
          # Unit test 1.
          - eval_time: 10m
            alertname: InstanceDown
            exp_alerts:
                # Alert 1.
                - exp_labels:
                      severity: page
                      instance: localhost:9090
                      job: prometheus
                  exp_annotations:
                      summary: "Instance localhost:9090 down"
                      description: "localhost:9090 of job prometheus is down."
      # Unit tests for promql expressions.
      promql_expr_test:
          # Unit test 1.
          - expr: go_goroutines > 5
            eval_time: 4m
            exp_samples:
                # Sample 1.
                - labels: 'go_goroutines{job="prometheus",instance="localhost:9090"}'
                  value: 40
                # Sample 2.
                - labels: 'go_goroutines{job="node_exporter",instance="localhost:9100"}'
                  value: 50
          - expr: job:up:sum
            eval_time: 0m
            exp_samples:
                - labels: 'job:up:sum{job="prometheus"}'
                  value: 0
                - labels: '{__name__="job:up:sum", job="node_exporter"}'
                  value: 1
"""


@pytest.fixture
def docs_example(tmp_path: Path) -> Path:
    (tmp_path / "alerts.yml").write_text(DOCS_RULES, encoding="utf-8")
    test = tmp_path / "test.yml"
    test.write_text(DOCS_TEST, encoding="utf-8")
    return test


def test_docs_example_loads(docs_example: Path) -> None:
    test_file = load_test_file(docs_example)
    assert test_file.rule_files == (str(docs_example.parent / "alerts.yml"),)
    assert test_file.matched_rule_files() == ([str(docs_example.parent / "alerts.yml")], [])
    assert test_file.evaluation_interval == 60.0
    assert test_file.group_eval_order == ()
    (group,) = test_file.tests
    assert group.interval == 60.0
    assert group.input_series[0].labels == {
        "__name__": "up", "job": "prometheus", "instance": "localhost:9090"}
    assert group.input_series[1].values == (1.0,) * 7 + (0.0,) * 8
    assert group.input_series[3].values[6:] == (70.0, 80.0, 10.0, 40.0, 70.0, 100.0, 130.0)
    assert group.input_series[0].line == 11
    (alert_test,) = group.alert_rule_tests
    assert (alert_test.eval_time, alert_test.alertname) == (600.0, "InstanceDown")
    assert alert_test.exp_alerts[0].labels == {
        "severity": "page", "instance": "localhost:9090", "job": "prometheus"}
    assert alert_test.exp_alerts[0].annotations["summary"] == "Instance localhost:9090 down"
    first, second = group.promql_expr_tests
    assert (first.expr, first.eval_time) == ("go_goroutines > 5", 240.0)
    assert first.exp_samples[0].labels == {
        "__name__": "go_goroutines", "job": "prometheus", "instance": "localhost:9090"}
    assert first.exp_samples[0].value == 40.0
    assert second.exp_samples[1].labels == {"__name__": "job:up:sum", "job": "node_exporter"}


def test_defaults(tmp_path: Path) -> None:
    test_file = parse_test_file("tests:\n- input_series:\n  - {series: up, values: '1 2'}\n",
                                file=str(tmp_path / "t.yml"))
    assert test_file.evaluation_interval == 60.0
    assert test_file.rule_files == ()
    (group,) = test_file.tests
    # SPEC and later promtool: interval defaults to evaluation_interval (2.42 uses 0s).
    assert group.interval == 60.0
    assert (group.external_labels, group.external_url, group.name) == ({}, "", "")
    assert group.alert_rule_tests == ()
    assert group.promql_expr_tests == ()
    other = parse_test_file("evaluation_interval: 30s\ntests: [{interval: 0s}, {}]\n",
                            file="t.yml")
    assert [g.interval for g in other.tests] == [30.0, 30.0]
    assert parse_test_file("", file="t.yml") == TestFile((), file="t.yml")


def test_scalars_read_as_go_reads_them() -> None:
    text = """\
tests:
- interval: 1m
  external_labels: {a: 1, b: true, c: 1.50}
  external_url: http://x
  name: 7
  alert_rule_test:
  - eval_time: 0
    alertname: 123
    exp_alerts:
    - exp_labels: {a: 1, b: yes, c: null, d: 1.50}
  promql_expr_test:
  - expr: 1
    exp_samples:
    - {labels: '', value: .nan}
    - {labels: '{}', value: -.Inf}
    - {labels: '', value: null}
    - {labels: '', value: 1_0}
    - {labels: '', value: 0x1F}
    - {labels: '', value: 1e3}
    - {labels: '', value: 010}
"""
    (group,) = parse_test_file(text, file="t.yml").tests
    assert group.external_labels == {"a": "1", "b": "true", "c": "1.50"}
    assert group.name == "7"
    assert group.alert_rule_tests[0].alertname == "123"
    assert group.alert_rule_tests[0].exp_alerts[0].labels == {
        "a": "1", "b": "yes", "c": "", "d": "1.50"}
    values = [sample.value for sample in group.promql_expr_tests[0].exp_samples]
    assert math.isnan(values[0])
    assert values[1:] == [-INF, 0.0, 10.0, 31.0, 1000.0, 8.0]
    assert group.promql_expr_tests[0].eval_time == 0.0


def test_duplicate_series_last_one_wins() -> None:
    text = """\
tests:
- interval: 1m
  input_series:
  - {series: 'foo{a="1",b="2"}', values: '1 1'}
  - {series: 'bar', values: '5'}
  - {series: 'foo{b="2",a="1"}', values: '2'}
"""
    (group,) = parse_test_file(text, file="t.yml").tests
    assert [(s.labels["__name__"], s.values) for s in group.input_series] == [
        ("bar", (5.0,)), ("foo", (2.0,))]


def test_rule_files_resolve_and_glob_like_go(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    for name in ("b.yml", "a.yml", ".hidden.yml", "c.txt"):
        (tmp_path / "rules" / name).write_text("groups: []\n", encoding="utf-8")
    absolute = tmp_path / "rules" / "c.txt"
    test = tmp_path / "sub" / "t.yml"
    test.parent.mkdir()
    test.write_text(f"rule_files: ['../rules/*.yml', '{absolute}', nope.yml, '']\n",
                    encoding="utf-8")
    test_file = load_test_file(test)
    assert test_file.rule_files == (str(tmp_path / "rules" / "*.yml"), str(absolute),
                                    str(test.parent / "nope.yml"), "")
    matched, unmatched = test_file.matched_rule_files()
    assert matched == [str(tmp_path / "rules" / name)
                       for name in (".hidden.yml", "a.yml", "b.yml", "c.txt")]
    assert unmatched == [str(test.parent / "nope.yml"), ""]


# (test file, part of the error, line): each also fails under promtool 2.42 (see below).
BAD_TEST_FILES = [
    ("tests:\n- interval: 1m\n  foo: 1\n", "unknown field 'foo'", 3),
    ("tests: []\nfoo: 1\n", "unknown field 'foo'", 2),
    ("interval: 1m\ntests: []\n", "unknown field 'interval'", 1),
    ("tests: []\ntests: []\n", "duplicate key 'tests'", 2),
    ("group_eval_order: [a, b, a]\ntests: []\n", "group name repeated in evaluation order: a",
     1),
    ("tests:\n- interval: 1m\n  alert_rule_test:\n  - eval_time: 1m\n", "alertname is required",
     4),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: '1'\n    eval_time: 60\n",
     "invalid duration '60'", 5),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: '1'\n    eval_time: -1m\n",
     "invalid duration '-1m'", 5),
    ("evaluation_interval: 1x\ntests: []\n", "invalid duration", 1),
    ("tests:\n- interval: 1m\n  input_series:\n  - series: foo\n    values: 1 2 stalex3\n",
     "column 9", 4),
    ("tests:\n- interval: 1m\n  input_series:\n  - values: 1 2\n", "unexpected '1'", 4),
    ("tests:\n- interval: 1m\n  input_series:\n  - series: '{a=\"1\",a=\"2\"}'\n    values: 1\n",
     "not unique", 4),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: '1'\n    exp_samples:\n"
     "    - labels: foo bar\n      value: 1\n", "invalid labels 'foo bar'", 6),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: foo\n    exp_samples:\n"
     "    - labels: foo\n      value: NaN\n", "must be a number", 7),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: foo\n    exp_samples:\n"
     "    - labels: foo\n      value: '1'\n", "not the string '1'", 7),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: foo\n    exp_samples:\n"
     "    - labels: foo\n      value: yes\n", "must be a number", 7),
    ("tests:\n- interval: 1m\n  promql_expr_test:\n  - expr: foo\n    exp_samples:\n"
     "    - labels: foo\n      value: +Inf\n", "must be a number", 7),
    ("tests:\n- interval: 1m\n  input_series: {series: foo}\n", "must be a list", 3),
    ("tests:\n  interval: 1m\n", "tests: must be a list", 1),
    ("- a\n", "must be a mapping", 1),
    ("tests: [\n", "invalid YAML", 2),
]


@pytest.mark.parametrize(("text", "message", "line"), BAD_TEST_FILES)
def test_bad_test_files(text: str, message: str, line: int) -> None:
    with pytest.raises(TestFileError) as caught:
        parse_test_file(text, file="t.yml")
    assert isinstance(caught.value, ConfigError)
    assert message in str(caught.value)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"t.yml:{line}: ")


def test_every_problem_is_reported_with_its_line() -> None:
    text = """\
group_eval_order: [a, a]
tests:
- interval: 1m
  name: first
  input_series:
  - {series: 'foo', values: '1 x'}
  alert_rule_test:
  - {eval_time: 1m}
"""
    with pytest.raises(TestFileError) as caught:
        parse_test_file(text, file="t.yml")
    lines = str(caught.value).splitlines()
    assert [problem.line for problem in caught.value.problems] == [1, 6, 8]
    assert lines[1].startswith("t.yml:6: tests[0] ('first'): input_series[0]: invalid series")
    assert lines[2] == "t.yml:8: tests[0] ('first'): alert_rule_test[0]: alertname is required"


def test_multi_line_values_are_refused() -> None:
    # promtool would read the second line as another series.
    text = "tests:\n- input_series:\n  - series: foo\n    values: |\n      1 2\n      bar 3\n"
    with pytest.raises(TestFileError, match="on one line"):
        parse_test_file(text, file="t.yml")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TestFileError, match="cannot read file"):
        load_test_file(tmp_path / "missing.yml")
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"tests: []\n\xff\xfe\x00")
    with pytest.raises(TestFileError, match="not UTF-8"):
        load_test_file(binary)


def test_hostile_yaml() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    with pytest.raises(TestFileError, match="more than"):
        parse_test_file(bomb, file="t.yml")
    with pytest.raises(TestFileError, match="nested more than"):
        parse_test_file("tests: " + "[" * 200 + "]" * 200 + "\n", file="t.yml")
    with pytest.raises(TestFileError):
        parse_test_file("tests: &a [*a]\n", file="t.yml")


# --- against promtool ----------------------------------------------------------------------



def run_promtool(promtool: Path, test: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), "test", "rules", str(test)], capture_output=True,
                          text=True, timeout=60, check=False)


def yaml_float(value: float) -> str:
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


def labels_text(labels: dict[str, str]) -> str:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return "{" + ", ".join(f"{name}={quote(value)}" for name, value in labels.items()) + "}"


def expectation_tests(selector: str, values: list[SeriesValue]) -> list[str]:
    """promql_expr_test entries that pin down every step of the series `selector` (a metric
    name) as we expand it."""
    labels = labels_text({"__name__": selector})
    tests = []
    for step, value in enumerate(values):
        at = f"on() (timestamp({selector}) == {step * 60})"
        if value is None or value is STALE:
            tests.append(f"  - expr: '{selector} and {at}'\n    eval_time: {step}m\n")
            if value is STALE:  # unlike a missing sample, it also hides the earlier value
                tests.append(f"  - expr: '{selector}'\n    eval_time: {step}m\n")
        elif math.isnan(value):  # NaN never equals NaN in promtool 2.42: count it instead
            tests.append(f"  - expr: 'count({selector} != {selector} and {at})'\n"
                         f"    eval_time: {step}m\n    exp_samples:\n"
                         "    - {labels: '{}', value: 1}\n")
        else:
            tests.append(f"  - expr: '{selector} and {at}'\n    eval_time: {step}m\n"
                         f"    exp_samples:\n    - labels: '{labels}'\n"
                         f"      value: {yaml_float(value)}\n")
    return tests


def oracle_file(tmp_path: Path, series: str, values: str, tests: list[str]) -> Path:
    test = tmp_path / "oracle.yml"
    test.write_text("tests:\n- interval: 1m\n  input_series:\n"
                    f"  - series: '{series}'\n    values: '{values}'\n"
                    "  promql_expr_test:\n" + "".join(tests), encoding="utf-8")
    return test


@pytest.mark.integration
@pytest.mark.parametrize(("values", "expected"), VALUE_CASES)
def test_promtool_expands_values_the_same(promtool: Path, tmp_path: Path, values: str,
                                          expected: list[SeriesValue]) -> None:
    ours = expand_values(values)
    assert same_values(ours, expected)
    tests = expectation_tests("foo", ours)
    # One step past the end: nothing there.
    tests.append(f"  - expr: 'foo and on() (timestamp(foo) == {len(ours) * 60})'\n"
                 f"    eval_time: {len(ours)}m\n")
    result = run_promtool(promtool, oracle_file(tmp_path, "foo", values, tests))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("values", BAD_VALUES)
def test_promtool_rejects_bad_values(promtool: Path, tmp_path: Path, values: str) -> None:
    result = run_promtool(promtool, oracle_file(tmp_path, "foo", values, []))
    assert result.returncode == 1
    assert "parse error" in result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(("series", "labels"), SERIES_CASES)
def test_promtool_reads_series_the_same(promtool: Path, tmp_path: Path, series: str,
                                        labels: dict[str, str]) -> None:
    assert parse_series_desc(f"{series} 1")[0] == labels
    selector = '{__name__=~".+"} or {a=~".+"} or {b=~".+"}'
    test = tmp_path / "oracle.yml"
    quoted = series.replace("'", "''")
    test.write_text("tests:\n- interval: 1m\n  input_series:\n"
                    f"  - series: '{quoted}'\n    values: '1'\n"
                    f"  promql_expr_test:\n  - expr: '{selector}'\n    exp_samples:\n"
                    f"    - labels: '{labels_text(labels).replace(chr(39), chr(39) * 2)}'\n"
                    "      value: 1\n", encoding="utf-8")
    result = run_promtool(promtool, test)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("series", BAD_SERIES)
def test_promtool_rejects_bad_series(promtool: Path, tmp_path: Path, series: str) -> None:
    quoted = series.replace("'", "''")
    test = tmp_path / "oracle.yml"
    test.write_text("tests:\n- interval: 1m\n  input_series:\n"
                    f"  - series: '{quoted}'\n    values: '1'\n", encoding="utf-8")
    result = run_promtool(promtool, test)
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.integration
def test_promtool_passes_the_docs_example(promtool: Path, docs_example: Path) -> None:
    result = run_promtool(promtool, docs_example)
    assert result.returncode == 0, result.stdout + result.stderr
    load_test_file(docs_example)


@pytest.mark.integration
@pytest.mark.parametrize(("text", "message", "line"), BAD_TEST_FILES)
def test_promtool_fails_the_bad_test_files(promtool: Path, tmp_path: Path, text: str,
                                           message: str, line: int) -> None:
    test = tmp_path / "bad.yml"
    test.write_text(text, encoding="utf-8")
    result = run_promtool(promtool, test)
    assert result.returncode == 1, result.stdout + result.stderr
