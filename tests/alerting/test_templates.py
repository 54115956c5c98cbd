"""Alert templates against Prometheus 2.42's own expectations.

The first tables port the cases of Prometheus's `template/template_test.go` (v2.42.0, values
only). The alert-style, formatting and error tables were checked against `promtool test
rules` from the Debian `prometheus` 2.42.0 package (built with Go 1.19.8); the last test
repeats that comparison live when promtool is installed.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.alerting import templates
from monitor.alerting.gotemplate import GoUint, Limits
from monitor.alerting.gotemplate.quoting import go_unquote
from monitor.alerting.templates import (
    TemplateError,
    check_template,
    expand,
    expand_alert_template,
    expand_template,
)

EXTERNAL_URL = "http://testhost:9090/path/prefix"
LABELS = {"instance": "h:9", "job": "j"}
ALERT_PREFIX_LEN = len(templates.ALERT_TEMPLATE_DEFS)  # 112: error columns count it


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]  # as monitor.promql.values.Sample has them
    v: float


def sample(labels: Mapping[str, str], value: float) -> Sample:
    return Sample(tuple(sorted(labels.items())), value)


def run(text: str, data: Any = None, query_result: list[Sample] | None = None) -> str:
    def query(_expr: str, _ts: float) -> list[Sample]:
        return query_result or []

    return expand_template(text, name="test", data=data, external_url=EXTERNAL_URL,
                           query_func=query)


def alert(text: str, value: float = 1234567.0, labels: Mapping[str, str] = LABELS) -> str:
    return expand_alert_template(text, name="A", labels=labels, value=value)


def exec_error(column: int, context: str, message: str, *, executing: str = "__alert_A") -> str:
    """Prometheus's annotation text for an execution error at `column` of the user's text."""
    return (
        "<error expanding template: error executing template __alert_A: template: "
        f'__alert_A:1:{ALERT_PREFIX_LEN + column}: executing "{executing}" at <{context}>: '
        f"{message}>"
    )


# --- Prometheus's template_test.go ----------------------------------------------------------

MAX_INT64 = 2**63 - 1
MAX_UINT64 = [GoUint(0), GoUint(1), GoUint(1234567), GoUint(2**64 - 1)]

PROMETHEUS_CASES: list[tuple[str, Any, str]] = [
    ("plain text", None, "plain text"),
    ("{{ 1 }}", None, "1"),
    ('{{ "<b>" }}', None, "<b>"),
    ('{{define "x"}}{{.arg0}} {{.arg1}}{{end}}{{template "x" (args 1 "2")}}', None, "1 2"),
    ('{{ "foo.example.com" | stripPort }}', None, "foo.example.com"),
    ('{{ "foo.example.com:12345" | stripPort }}', None, "foo.example.com"),
    ('{{ "192.0.2.1" | stripPort }}', None, "192.0.2.1"),
    ('{{ "192.0.2.1:12345" | stripPort }}', None, "192.0.2.1"),
    ('{{ "2001:0DB8::1" | stripPort }}', None, "2001:0DB8::1"),
    ('{{ "[2001:0DB8::1]:12345" | stripPort }}', None, "2001:0DB8::1"),
    ('{{ "[2001:0DB8::1]::12345" | stripPort }}', None, "[2001:0DB8::1]::12345"),
    ("{{ .Foo }}", None, "<no value>"),
    ('{{ reReplaceAll "(a)b" "x$1" "ab" }}', None, "xa"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", [0.0, 1.0, 1234567.0, 0.12], "0:1:1.235M:120m:"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", ["0.0", "1.0", "1234567.0", ".12"],
     "0:1:1.235M:120m:"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", [0, -1, 1, 1234567, MAX_INT64],
     "0:-1:1:1.235M:9.223E:"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", MAX_UINT64, "0:1:1.235M:18.45E:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", [0.0, 1.0, 1048576.0, 0.12],
     "0:1:1Mi:0.12:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", ["0.0", "1.0", "1048576.0", ".12"],
     "0:1:1Mi:0.12:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", [0, -1, 1, 1234567, MAX_INT64],
     "0:-1:1:1.177Mi:8Ei:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", MAX_UINT64, "0:1:1.177Mi:16Ei:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}",
     [0.0, 1.0, 60.0, 3600.0, 86400.0, 86400.0 + 3600, -(86400 * 2 + 3600 * 3 + 60 * 4 + 5.0),
      899.99],
     "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", ["0", "1", "60", "3600", "86400"],
     "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}",
     [0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345],
     "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}",
     [".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"],
     "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", [0, -1, 1, 1234567],
     "0s:-1s:1s:14d 6h 56m 7s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", [GoUint(0), GoUint(1), GoUint(1234567)],
     "0s:1s:14d 6h 56m 7s:"),
    ("{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:"
     "{{humanizeTimestamp .}}:{{ end }}", [math.inf, -math.inf, math.nan],
     "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"),
    ("{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:"
     "{{humanizeTimestamp .}}:{{ end }}", ["+Inf", "-Inf", "NaN"],
     "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"),
    ("{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:"
     "{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}", None,
     "-22.22%:0%:12.35%:123.5%"),
    ("{{ range . }}{{ humanizePercentage . }}:{{ end }}", [0, -1, 1, 1234567, MAX_INT64],
     "0%:-100%:100%:1.235e+08%:9.223e+20%:"),
    ("{{ range . }}{{ humanizePercentage . }}:{{ end }}", MAX_UINT64,
     "0%:100%:1.235e+08%:1.845e+21%:"),
    ('{{ "-0.22222" | humanizePercentage }}:{{ "0.0" | humanizePercentage }}:'
     '{{ "0.1234567" | humanizePercentage }}:{{ "1.23456" | humanizePercentage }}', None,
     "-22.22%:0%:12.35%:123.5%"),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}", [0, -1, 1, 1234567, 9223372036],
     "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:"
     "1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:"
     "2262-04-11 23:47:16 +0000 UTC:"),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
     [GoUint(0), GoUint(1), GoUint(1234567), GoUint(9223372036)],
     "1970-01-01 00:00:00 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:"
     "1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:"),
    ("{{ 1435065584.128 | humanizeTimestamp }}", None, "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ "1435065584.128" | humanizeTimestamp }}', None, "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ (1435065584.128 | toTime).Format "2006" }}', None, "2015"),
    ('{{ ("1435065584.128" | toTime).Format "2006" }}', None, "2015"),
    ('{{ "aa bb CC" | title }}', None, "Aa Bb CC"),
    ('{{ "aa bb CC" | toUpper }}', None, "AA BB CC"),
    ('{{ "aA bB CC" | toLower }}', None, "aa bb cc"),
    ('{{ match "a+" "aa" }} {{ match "a+" "b" }}', None, "true false"),
    ('{{ graphLink "up" }}', None, "/graph?g0.expr=up&g0.tab=0"),
    ('{{ tableLink "up" }}', None, "/graph?g0.expr=up&g0.tab=1"),
    ("{{ pathPrefix }}", None, "/path/prefix"),
    ("{{ externalURL }}", None, EXTERNAL_URL),
    ('{{ printf "%0.2f" (parseDuration "1h2m10ms") }}', None, "3720.01"),
    ('{{ "foo.example.com" | stripDomain }}', None, "foo"),
    ('{{ "foo.example.com:12345" | stripDomain }}', None, "foo:12345"),
    ('{{ "192.0.2.1" | stripDomain }}', None, "192.0.2.1"),
    ('{{ "192.0.2.1:12345" | stripDomain }}', None, "192.0.2.1:12345"),
    ('{{ "2001:0DB8::1" | stripDomain }}', None, "2001:0DB8::1"),
    ('{{ "[2001:0DB8::1]:12345" | stripDomain }}', None, "[2001:0DB8::1]:12345"),
    ('{{ "[2001:0DB8::1]::12345" | stripDomain }}', None, "[2001:0DB8::1]::12345"),
]


@pytest.mark.parametrize(("text", "data", "expected"), PROMETHEUS_CASES)
def test_prometheus_expansion_cases(text: str, data: Any, expected: str) -> None:
    assert run(text, data) == expected


PROMETHEUS_ERRORS = [
    ("{{ \u00a0}}", None,
     "error parsing template test: template: test:1: unrecognized character in action: U+00A0"),
    ("{{", None, "error parsing template test: template: test:1: unclosed action"),
    ('{{ humanize "one" }}', None,
     'error executing template test: template: test:1:3: executing "test" at <humanize "one">: '
     'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax'),
    ('{{ humanize1024 "one" }}', None,
     'error executing template test: template: test:1:3: executing "test" at '
     '<humanize1024 "one">: error calling humanize1024: strconv.ParseFloat: parsing "one": '
     "invalid syntax"),
    ('{{ humanizeDuration "one" }}', None,
     'error executing template test: template: test:1:3: executing "test" at '
     '<humanizeDuration "one">: error calling humanizeDuration: strconv.ParseFloat: parsing '
     '"one": invalid syntax'),
    ('{{ "one" | humanizePercentage }}', None,
     'error executing template test: template: test:1:11: executing "test" at '
     "<humanizePercentage>: error calling humanizePercentage: strconv.ParseFloat: parsing "
     '"one": invalid syntax'),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}", [-(2**63), MAX_INT64],
     'error executing template test: template: test:1:16: executing "test" at '
     "<humanizeTimestamp .>: error calling humanizeTimestamp: -9.223372036854776e+18 cannot be "
     "represented as a nanoseconds timestamp since it overflows int64"),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}", [GoUint(2**64 - 1)],
     'error executing template test: template: test:1:16: executing "test" at '
     "<humanizeTimestamp .>: error calling humanizeTimestamp: 1.8446744073709552e+19 cannot be "
     "represented as a nanoseconds timestamp since it overflows int64"),
]


@pytest.mark.parametrize(("text", "data", "message"), PROMETHEUS_ERRORS)
def test_prometheus_error_cases(text: str, data: Any, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        run(text, data)
    assert str(caught.value) == message


METRIC_A = sample({"__name__": "metric", "instance": "a"}, 11)
METRIC_B = sample({"__name__": "metric", "instance": "b"}, 21)


@pytest.mark.parametrize(("text", "result", "expected"), [
    ('{{ query "1.5" | first | value }}', [sample({}, 1.5)], "1.5"),
    ("{{ query \"metric{instance='a'}\" | first | value }}", [METRIC_A], "11"),
    ("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}", [METRIC_A], "a"),
    ("{{ query \"metric{__value__='a'}\" | first | strvalue }}",
     [sample({"__name__": "metric", "__value__": "a"}, 11)], "a"),
    ("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}", [METRIC_A], ""),
    ('{{ $x := query "metric" | first }}{{ $x.Labels.foo }}', [METRIC_A], ""),
    ('{{ range query "metric" | sortByLabel "instance" }}{{.Labels.instance}}:{{.Value}}: '
     "{{end}}", [METRIC_B, METRIC_A], "a:11: b:21: "),
])
def test_query_functions(text: str, result: list[Sample], expected: str) -> None:
    assert run(text, query_result=result) == expected


@pytest.mark.parametrize(("text", "message"), [
    ('{{ query "missing" | first }}',
     'error executing template test: template: test:1:21: executing "test" at <first>: '
     "error calling first: first() called on vector with no elements"),
    ('{{ (query "missing").banana }}',
     'error executing template test: template: test:1:10: executing "test" at <"missing">: '
     "can't evaluate field banana in type template.queryResult"),
])
def test_query_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        run(text, query_result=[])
    assert str(caught.value) == message


def test_query_without_an_engine_is_an_expansion_error() -> None:
    text = expand_alert_template('{{ query "up" }}', name="A", labels=LABELS, value=1.0)
    assert text == exec_error(3, 'query "up"', "error calling query: query is not available: "
                              "no query engine was given")
    assert check_template('{{ query "up" | first | value }}', name="A") is None


def test_query_gets_the_expression_and_evaluation_time() -> None:
    seen: list[tuple[str, float]] = []

    def query(expr: str, ts: float) -> list[Sample]:
        seen.append((expr, ts))
        return [sample({"job": "j"}, 2.5)]

    text = expand_alert_template('{{ with query "up == 0" }}{{ . | first | value }}{{ end }}',
                                 name="A", labels=LABELS, value=1.0, timestamp=1700000000.0,
                                 query_func=query)
    assert text == "2.5"
    assert seen == [("up == 0", 1700000000.0)]


# --- alert templates, checked against promtool ------------------------------------------------

@pytest.mark.parametrize(("text", "value", "expected"), [
    ("{{ $labels.instance }} is {{ $value | humanizePercentage }}", 0.5, "h:9 is 50%"),
    ("{{ $labels.instance }} is {{ $value | humanizePercentage }}", 1234567.0,
     "h:9 is 1.235e+08%"),
    ("{{ .Labels.job }}", 1.0, "j"),
    ("{{ $labels }}", 1.0, "map[instance:h:9 job:j]"),
    ("{{ $labels.missing }}|", 1.0, "|"),  # missingkey=zero: "" for map[string]string
    ("{{ $externalLabels }}|{{ $externalURL }}|", 1.0, "map[]||"),
    ("{{ . }}", 1234567.0, "{map[instance:h:9 job:j] map[]  1.234567e+06}"),
    ("{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", 85.0, "high"),
    ("{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", 0.5, "ok"),
    ("{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", math.nan, "high"),  # Go's NaN rules
    ("{{ if lt $value 80.0 }}low{{ else if gt $value 1000.0 }}huge{{ else }}mid{{ end }}", 85.0,
     "mid"),
    ('{{ if eq $labels.job "x" "j" }}J{{ end }}', 1.0, "J"),
    ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", 1.0, "instance=h:9;job=j;"),
    ("{{ with $labels.missing }}x{{ else }}none{{ end }}", 1.0, "none"),
    ('{{ reReplaceAll "(.*):.*" "$1" $labels.instance }}', 1.0, "h"),
    ("{{ $value }}", 1234567.0, "1.234567e+06"),
    ("{{ $value }}", 123456.7, "123456.7"),
    ("{{ $value }}", 1e21, "1e+21"),
    ("{{ $value }}", 1e-7, "1e-07"),
    ("{{ $value }}", 0.0001, "0.0001"),
    ("{{ $value }}", 85.0, "85"),
    ("{{ $value }}", -math.inf, "-Inf"),
    ("{{ $value }}", math.nan, "NaN"),
    ("{{ $value | humanize }}", 1234567.0, "1.235M"),
    ("{{ $value | humanize }}", 0.001234, "1.234m"),
    ("{{ $value | humanize }}", 0.0, "0"),
    ("{{ $value | humanize }}", 1e-7, "100n"),
    ("{{ $value | humanize1024 }}", 1234567.0, "1.177Mi"),
    ("{{ $value | humanizeDuration }}", 1234567.0, "14d 6h 56m 7s"),
    ("{{ $value | humanizeTimestamp }}", 1435065584.128, "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ printf "%.2f" $value }}', 0.5, "0.50"),
    ('{{ printf "%d" $value }}', 1234567.0, "%!d(float64=1.234567e+06)"),
    ('{{ printf "%d" $value }}', 1.5, "%!d(float64=1.5)"),
    ('{{ printf "%s" $value }}', 1.5, "%!s(float64=1.5)"),
    ('{{ printf "%v %v" $value }}', 1.5, "1.5 %!v(MISSING)"),
    ('{{ printf "%v" $value 1 "x" }}', 1.5, '1.5%!(EXTRA int=1, string=x)'),
    ('{{ printf "%q|%x|%8.3f|%-6d|%+d" "a\\"b" "hi" 3.14159 42 7 }}', 1.0,
     '"a\\"b"|6869|   3.142|42    |+7'),
    ('{{ printf "%x|%.1x|%e|%G" 1.0 1.96875 0.0 1e-10 }}', 1.0,
     "0x1p+00|0x1.0p+01|0.000000e+00|1E-10"),
    ('{{ printf "%v" .ExternalLabels }}{{ printf "%#v" $labels }}', 1.0,
     'map[]map[string]string{"instance":"h:9", "job":"j"}'),
    ("{{ 1e6 }} {{ 1e5 }} {{ 0x1F }} {{ 010 }} {{ 'a' }} {{ 1.0 }}", 1.0,
     "1e+06 100000 31 8 97 1"),
    ('{{ title "hello world-foo_bar" }}', 1.0, "Hello World-Foo_bar"),
    ('{{ toUpper "straße" }}', 1.0, "STRAßE"),
])
def test_alert_templates_match_promtool(text: str, value: float, expected: str) -> None:
    assert alert(text, value) == expected


@pytest.mark.parametrize(("text", "column", "context", "message"), [
    ('{{ humanize "one" }}', 3, 'humanize "one"',
     'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax'),
    ("{{ if gt $value 80 }}high{{ end }}", 6, "gt $value 80",
     "error calling gt: incompatible types for comparison"),
    ("{{ .Foo }}", 3, ".Foo",
     "can't evaluate field Foo in type struct { Labels map[string]string; ExternalLabels "
     "map[string]string; ExternalURL string; Value float64 }"),
    ("{{ .Labels.x.y }}", 10, ".Labels.x.y", "can't evaluate field y in type string"),
    ("{{ toUpper $value }}", 11, "$value",
     "wrong type for value; expected string; got float64"),
    ("{{ toUpper 1 }}", 11, "1", "expected string; found 1"),
    ("{{ humanize }}", 3, "humanize", "wrong number of args for humanize: want 1 got 0"),
    ("{{ range 5 }}x{{ end }}", 9, "5", "range can't iterate over 5"),
    ('{{ template "nope" }}', 12, '{{template "nope"}}', 'template "nope" not defined'),
    ("{{ lt true false }}", 3, "lt true false", "error calling lt: invalid type for comparison"),
    ("{{ index $labels 1 }}", 3, "index $labels 1",
     "error calling index: value has type int; should be string"),
    ('{{ reReplaceAll "(" "x" "aa" }}', 3, 'reReplaceAll "(" "x" "aa"',
     "error calling reReplaceAll: regexp: Compile(`(`): error parsing regexp: "
     "missing closing ): `(`"),
    ("{{ 18446744073709551615 }}", 3, "18446744073709551615", "18446744073709551615 overflows int"),
])
def test_execution_errors_match_promtool(text: str, column: int, context: str,
                                         message: str) -> None:
    assert alert(text) == exec_error(column, context, message)


def test_errors_inside_a_defined_template_name_it() -> None:
    text = '{{ define "x" }}\n{{ .Nope }}{{ end }}{{ template "x" . }}'
    expected = (
        "<error expanding template: error executing template __alert_A: template: "
        '__alert_A:2:3: executing "x" at <.Nope>: can\'t evaluate field Nope in type '
        f"{templates.ALERT_DATA_TYPE}>"
    )
    assert alert(text) == expected


def test_error_columns_count_bytes_not_characters() -> None:
    assert alert("é\nàé {{ humanize \"x\" }}") == (
        "<error expanding template: error executing template __alert_A: template: "
        '__alert_A:2:8: executing "__alert_A" at <humanize "x">: error calling humanize: '
        'strconv.ParseFloat: parsing "x": invalid syntax>'
    )


def test_expand_reports_the_error_separately() -> None:
    ok = expand("{{ $value }}", name="A", labels=LABELS, value=2.0)
    assert (ok.text, ok.error) == ("2", None)
    failed = expand("{{ humanize true }}", name="A", labels=LABELS, value=2.0)
    assert failed.error is not None
    assert failed.text == f"<error expanding template: {failed.error}>"
    assert failed.error.endswith("error calling humanize: can't convert bool to float")


# --- whitespace, comments, variables, control flow -------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ('  {{- "trim" -}}  \n', "trim"),
    ("a  {{- 1 }}  b", "a1  b"),
    ("a  {{ 1 -}}  b", "a  1b"),
    ("a\n{{- 1 -}}\nb", "a1b"),
    ("x {{- \n\t 1 \n -}} y", "x1y"),
    ("{{/* a comment */}}after", "after"),
    ("{{- /* trimmed */ -}}   after", "after"),
    ("{{-1}}", "-1"),
    ("{{ range $k, $v := $labels -}}\n  {{ $k }}: {{ $v }}\n{{ end -}}", "instance: h:9\njob: j\n"),
    ('{{ $x := "a" }}{{ if true }}{{ $x = "b" }}{{ end }}{{ $x }}', "b"),
    ('{{ $x := "a" }}{{ if true }}{{ $x := "b" }}{{ end }}{{ $x }}', "a"),
    ('{{ range $k, $v := $labels }}{{ if eq $k "job" }}{{ break }}{{ end }}{{ $k }};{{ end }}',
     "instance;"),
    ('{{ range $k, $v := $labels }}{{ if eq $k "instance" }}{{ continue }}{{ end }}{{ $k }};'
     "{{ end }}", "job;"),
    ('{{ block "b" . }}block{{ end }}', "block"),
    ("{{ and 1 0 }} {{ or 0 \"x\" }} {{ not 0 }} {{ 0 | and 1 }}", "0 x true 0"),
    ('{{ len "héllo" }} {{ index "abc" 1 }} {{ slice "abcdef" 1 3 }}', "6 98 bc"),
    ("{{ html \"<a href='x'>&</a>\" }}", "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
    ('{{ urlquery "a b&c=d/é" }}', "a+b%26c%3Dd%2F%C3%A9"),
    ('{{ js "a\'b<d>" }}', "a\\'b\\u003Cd\\u003E"),
])
def test_language_features(text: str, expected: str) -> None:
    assert alert(text) == expected


# --- parse errors (check rules) ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("{{", "template: __alert_A:1: unclosed action"),
    ("{{ foo }}", 'template: __alert_A:1: function "foo" not defined'),
    ("{{ if }}", "template: __alert_A:1: missing value for if"),
    ("{{ if true }}", "template: __alert_A:1: unexpected EOF"),
    ("{{ end }}", "template: __alert_A:1: unexpected {{end}}"),
    ("{{ $x }}", 'template: __alert_A:1: undefined variable "$x"'),
    ('{{ "a" | printf "%s" | 1 }}', "template: __alert_A:1: non executable command in pipeline "
     "stage 3"),
    ("{{ break }}", "template: __alert_A:1: {{break}} outside {{range}}"),
    ("{{ 1e400 }}", 'template: __alert_A:1: illegal number syntax: "1e400"'),
    ("{{ 99999999999999999999 }}", 'template: __alert_A:1: integer overflow: '
     '"99999999999999999999"'),
    ("{{ 'ab' }}", "template: __alert_A:1: malformed character constant: 'ab'"),
    ('{{ "\\q" }}', "template: __alert_A:1: invalid syntax"),
    ('{{ "a".b }}', 'template: __alert_A:1: unexpected . after term "\\"a\\""'),
    ('{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}',
     'template: __alert_A:1: template: multiple definition of template "a"'),
    ("{{ tmpl \"x\" . }}", 'template: __alert_A:1: function "tmpl" not defined'),
    ("line1\nline2 {{ if }}", "template: __alert_A:2: missing value for if"),
    ("{{ if true }}\nx\n{{ foo }}\n{{ end }}", 'template: __alert_A:3: function "foo" not defined'),
    ('{{ "a\nb" }}', "template: __alert_A:1: unterminated quoted string"),
    ("{{ (1\n}}", "template: __alert_A:2: unclosed left paren in action started at __alert_A:1"),
    ("{{ 1 2 3 4\n5 }} {{ ", "template: __alert_A:2: unclosed action"),
])
def test_parse_errors_match_promtool(text: str, message: str) -> None:
    assert check_template(text, name="A") == message
    assert alert(text) == (
        f"<error expanding template: error parsing template __alert_A: {message}>"
    )


def test_valid_templates_check_clean() -> None:
    for text in ("{{ $labels.instance }}", "plain", "{{ query \"up\" | first | value }}",
                 "{{ range $labels }}{{ . }}{{ end }}"):
        assert check_template(text, name="A") is None


# --- hostile templates: everything is bounded ------------------------------------------------

BIG_LABELS = {f"l{i:03d}": "v" * 50 for i in range(100)}


def test_deep_nesting_is_a_parse_error() -> None:
    deep_parens = "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}"
    assert check_template(deep_parens, name="A") == (
        "template: __alert_A:1: template nesting exceeds 50 levels"
    )
    deep_ifs = "{{ if true }}" * 60 + "x" + "{{ end }}" * 60
    assert check_template(deep_ifs, name="A") is not None
    assert check_template("{{ " + "(" * 40 + "1" + ")" * 40 + " }}", name="A") is None


def test_output_over_one_mebibyte_is_cut_with_an_error() -> None:
    text = "{{ range $labels }}{{ range $labels }}{{ range $labels }}{{ . }}{{ end }}{{ end }}" \
           "{{ end }}"
    result = expand(text, name="A", labels=BIG_LABELS, value=1.0)
    assert result.text == (
        "<error expanding template: error executing template __alert_A: template output "
        "exceeds 1048576 bytes>"
    )


def test_runaway_loops_stop_after_a_step_budget() -> None:
    text = "{{ range $labels }}{{ range $labels }}{{ range $labels }}{{ range $labels }}" \
           "{{ end }}{{ end }}{{ end }}{{ end }}"
    started = time.monotonic()
    result = expand(text, name="A", labels=BIG_LABELS, value=1.0)
    assert result.error is not None
    assert "template execution exceeds 200000 steps" in result.error
    assert time.monotonic() - started < 5


def test_recursive_templates_stop_at_a_small_depth() -> None:
    result = expand('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}',
                    name="A", labels=LABELS, value=1.0)
    assert result.error is not None
    assert result.error.endswith("exceeded maximum template depth (10)")


def test_functions_cannot_build_huge_strings() -> None:
    doubling = '{{ $x := "a" }}' + '{{ $x = printf "%s%s" $x $x }}' * 30 + "{{ len $x }}"
    result = expand(doubling, name="A", labels=LABELS, value=1.0)
    assert result.error is not None
    assert "functions made more than 16777216 bytes" in result.error


def test_limits_are_configurable() -> None:
    result = expand("{{ range $labels }}{{ . }}{{ end }}", name="A", labels=BIG_LABELS,
                    value=1.0, limits=Limits(max_output_bytes=100))
    assert result.error == "error executing template __alert_A: template output exceeds 100 bytes"


def test_parsed_templates_are_cached() -> None:
    text = "{{ $labels.job }} cached {{ $value }}"
    alert(text)
    hits = templates._parse.cache_info().hits
    for value in (1.0, 2.0, 3.0):
        assert alert(text, value) == f"j cached {value:g}"
    assert templates._parse.cache_info().hits == hits + 3


def test_broken_templates_are_cached_too() -> None:
    alert("{{ broken")
    hits = templates._parse.cache_info().hits
    alert("{{ broken")
    assert templates._parse.cache_info().hits == hits + 1


# --- promtool as the oracle -------------------------------------------------------------------

ORACLE_TEMPLATES = [
    "{{ $value }}", "{{ $labels }}", "{{ . }}", "{{ printf \"%#v\" . }}",
    "{{ $value | humanize }}", "{{ $value | humanize1024 }}", "{{ $value | humanizeDuration }}",
    "{{ $value | humanizePercentage }}", "{{ $value | humanizeTimestamp }}",
    "{{ printf \"%.2f|%e|%g|%x|%10.3v|%-8.1e|%+.3g\" $value $value $value $value $value "
    "$value $value }}",
    "{{ printf \"%d|%s|%t\" $value $value $value }}",
    "{{ if gt $value 80.0 }}high{{ else }}ok{{ end }}", "{{ if gt $value 80 }}x{{ end }}",
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v | printf \"%q\" }} {{ end }}",
    "{{ $labels.instance | reReplaceAll \"(.*):.*\" \"$1\" | toUpper }}",
    "{{ title $labels.job }} {{ stripPort $labels.instance }}",
    "{{ .Nope }}", "{{ humanize \"x\" }}", "{{ index $labels \"job\" | len }}",
    "{{ (toTime $value).Format \"2006-01-02T15:04:05.000Z07:00 Mon Jan _2\" }}",
    "{{ foo }}", "{{ if }}", "x\n{{ 1 | 2 }}",
]


def _write_rules(directory: Path, texts: list[str]) -> None:
    annotations = {f"t{i:03d}": text for i, text in enumerate(texts)}
    rules = {"groups": [{"name": "g", "rules": [
        {"alert": "A", "expr": "m * 1", "annotations": annotations}]}]}
    (directory / "rules.yml").write_text(yaml.safe_dump(rules))


def _promtool(directory: Path, *args: str) -> str:
    done = subprocess.run(["promtool", *args], cwd=directory, capture_output=True, text=True,
                          timeout=60, check=False)
    return done.stdout + done.stderr


def _promtool_parse_errors(directory: Path, texts: list[str]) -> dict[int, str]:
    _write_rules(directory, texts)
    output = _promtool(directory, "check", "rules", "rules.yml")
    return {int(key): message
            for key, message in re.findall(r'annotation "t(\d+)": (.*)', output)}


def _promtool_expansions(directory: Path, texts: list[str], value: str,
                         labels: Mapping[str, str]) -> dict[int, str]:
    """What promtool puts into each annotation of an alert on m{labels} = value."""
    _write_rules(directory, texts)
    selector = "m{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    (directory / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": selector, "values": value}],
                   "alert_rule_test": [{"eval_time": "0m", "alertname": "A",
                                        "exp_alerts": []}]}]}))
    output = _promtool(directory, "test", "rules", "test.yml")
    found = re.search(r"Annotations:\{(.*)\}\n", output)
    assert found, output
    pairs = re.findall(r'(t\d+)=("(?:[^"\\]|\\.)*")', found.group(1))
    return {int(key[1:]): go_unquote(quoted) for key, quoted in pairs}


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_agrees_with_promtool(tmp_path: Path) -> None:
    parsing = [text for text in ORACLE_TEMPLATES if check_template(text, name="A") is None]
    broken = [text for text in ORACLE_TEMPLATES if text not in parsing]
    errors = _promtool_parse_errors(tmp_path, broken)
    assert errors == {i: check_template(text, name="A") for i, text in enumerate(broken)}
    for value in ("1234567", "0.5", "-3", "NaN", "1435065584.128"):
        expected = _promtool_expansions(tmp_path, parsing, value, LABELS)
        mine = {i: alert(text, float(value)) for i, text in enumerate(parsing)}
        assert mine == expected
