"""The `promtool test rules` file format and its series notation, as Prometheus 2.42 reads them.

Owns the data model of a rule unit-test file (`rule_files`, `evaluation_interval`,
`group_eval_order`, `tests` of `interval`, `input_series`, `alert_rule_test`,
`promql_expr_test`, `external_labels`, `external_url`, `name`) and its validation with errors
naming file:line and key; series are read by `series_notation.py`. Running the tests against
the rules is the runner's job, not this module's.
"""

from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from monitor.alerting.rulefmt import (
    FieldReader,
    ProblemsError,
    YamlText,
    kind_of,
    read_document,
    read_text_file,
)
from monitor.alerting.series_notation import (
    SeriesNotationError,
    SeriesValue,
    parse_series,
    parse_series_desc,
)
from monitor.config_types import KeyPath
from monitor.config_yaml import format_key_path

DEFAULT_EVALUATION_INTERVAL = 60.0


# --- the test file -------------------------------------------------------------------------


class TestFileError(ProblemsError):
    """A rule unit-test file that cannot be run; `problems` holds each reason."""

    __test__: ClassVar[bool] = False  # not a pytest test class


@dataclass(frozen=True)
class InputSeries:
    """One `input_series` entry: labels (with `__name__`) and a value per `interval` step."""

    labels: dict[str, str]
    values: tuple[SeriesValue, ...]
    line: int = 0


@dataclass(frozen=True)
class AlertExpectation:
    """One expected firing alert; promtool adds `alertname` to `labels` when comparing."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRuleTest:
    """The alerts named `alertname` that fire at `eval_time` seconds (none if empty)."""

    eval_time: float
    alertname: str
    exp_alerts: tuple[AlertExpectation, ...]
    line: int = 0


@dataclass(frozen=True)
class ExpectedSample:
    """One expected sample: its labels (as parsed from `text`) and value."""

    labels: dict[str, str]
    value: float
    text: str = ""


@dataclass(frozen=True)
class PromqlExprTest:
    """`expr` evaluated at `eval_time` seconds must give exactly `exp_samples`."""

    expr: str
    eval_time: float
    exp_samples: tuple[ExpectedSample, ...]
    line: int = 0


@dataclass(frozen=True)
class UnitTestGroup:
    """One entry of `tests`: input series and what the rules must make of them."""

    interval: float
    input_series: tuple[InputSeries, ...]
    alert_rule_tests: tuple[AlertRuleTest, ...] = ()
    promql_expr_tests: tuple[PromqlExprTest, ...] = ()
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    name: str = ""
    line: int = 0



@dataclass(frozen=True)
class TestFile:
    """A whole test file; `rule_files` are patterns resolved against the file's directory."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    rule_files: tuple[str, ...]
    evaluation_interval: float = DEFAULT_EVALUATION_INTERVAL
    group_eval_order: tuple[str, ...] = ()
    tests: tuple[UnitTestGroup, ...] = ()
    file: str = ""

    def matched_rule_files(self) -> tuple[list[str], list[str]]:
        """(the files the patterns match, in order; the patterns that match nothing).

        As Go's filepath.Glob: `*` matches dot files, `**` is a plain `*`, and a pattern
        that matches nothing is only a warning in promtool.
        """
        matched: list[str] = []
        unmatched: list[str] = []
        for pattern in self.rule_files:
            # Path.glob takes no absolute patterns; Go's filepath.Glob does, as glob.glob.
            found = sorted(glob.glob(pattern, include_hidden=True)) if pattern else []  # noqa: PTH207
            matched.extend(found)
            if not found:
                unmatched.append(pattern)
        return matched, unmatched


_FILE_FIELDS = ("rule_files", "evaluation_interval", "group_eval_order", "tests")
_GROUP_FIELDS = ("interval", "input_series", "alert_rule_test", "promql_expr_test",
                 "external_labels", "external_url", "name")
_SERIES_FIELDS = ("series", "values")
_ALERT_TEST_FIELDS = ("eval_time", "alertname", "exp_alerts")
_ALERT_FIELDS = ("exp_labels", "exp_annotations")
_PROMQL_TEST_FIELDS = ("expr", "eval_time", "exp_samples")
_SAMPLE_FIELDS = ("labels", "value")
_YAML_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_YAML_INT_RE = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[1-9][0-9]*|0)")
_YAML_SPECIAL_FLOATS = {
    **{f"{sign}.{word}": math.inf for sign in ("", "+") for word in ("inf", "Inf", "INF")},
    **{f"-.{word}": -math.inf for word in ("inf", "Inf", "INF")},
    **{f".{word}": math.nan for word in ("nan", "NaN", "NAN")},
}


def _go_parse_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64) for text that matches _YAML_INT_RE."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        return sign * int(body[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
    return sign * int(body, 8 if body.startswith("0") else 10)


def _yaml_float(text: YamlText) -> float | None:
    """A float64 as yaml.v2 decodes a plain scalar into one; None when it would refuse."""
    if text.is_null:
        return 0.0
    if not text.plain or text.tag == "tag:yaml.org,2002:bool":
        return None
    if text in _YAML_SPECIAL_FLOATS:
        return _YAML_SPECIAL_FLOATS[text]
    plain = text.replace("_", "")
    if _YAML_INT_RE.fullmatch(plain) and abs(number := _go_parse_int(plain)) < 2**63:
        return float(number)
    if _YAML_FLOAT_RE.fullmatch(plain):
        value = float(plain)
        return None if math.isinf(value) else value
    return None


class _TestFileReader:
    def __init__(self, fields: FieldReader, base_dir: str) -> None:
        self.fields = fields
        self.base_dir = base_dir

    def _items(self, parent: dict[str, Any], key: str, path: KeyPath,
               allowed: tuple[str, ...], what: str) -> list[tuple[KeyPath, dict[str, Any]]]:
        found = []
        for index, raw in self.fields.items(parent.get(key), (*path, key)):
            item_path: KeyPath = (*path, key, index)
            item = self.fields.mapping(raw, item_path, allowed, what)
            if item is not None:
                found.append((item_path, item))
        return found

    def test_file(self, data: Any, file: str) -> TestFile:
        fields = self.fields
        top = fields.mapping(data, (), _FILE_FIELDS, "a test file") or {}
        rule_files = []
        for index, raw in fields.items(top.get("rule_files"), ("rule_files",)):
            pattern = fields.string(raw, ("rule_files", index))
            if pattern and not Path(pattern).is_absolute():  # filepath.Join cleans the path
                pattern = os.path.normpath(Path(self.base_dir, pattern))
            rule_files.append(pattern)
        interval = fields.duration(top.get("evaluation_interval"), ("evaluation_interval",))
        order: list[str] = []
        for index, raw in fields.items(top.get("group_eval_order"), ("group_eval_order",)):
            name = fields.string(raw, ("group_eval_order", index))
            if name in order:
                fields.problem(("group_eval_order", index),
                               f"group name repeated in evaluation order: {name}")
            order.append(name)
        interval = interval or DEFAULT_EVALUATION_INTERVAL
        tests = tuple(self._group(path, group, interval)
                      for path, group in self._items(top, "tests", (), _GROUP_FIELDS,
                                                     "a test group"))
        return TestFile(tuple(rule_files), interval, tuple(order), tests, file)

    def _group(self, path: KeyPath, group: dict[str, Any], default: float) -> UnitTestGroup:
        fields = self.fields
        name = fields.string(group.get("name"), (*path, "name"))
        if name:
            fields.contexts[path] = f"{format_key_path(path)} ({name!r}): "
        interval = fields.duration(group.get("interval"), (*path, "interval")) or default
        series: dict[tuple[tuple[str, str], ...], InputSeries] = {}
        for item_path, item in self._items(group, "input_series", path, _SERIES_FIELDS,
                                           "an input series"):
            parsed = self._series(item_path, item)
            if parsed is not None:  # as in promtool, a later definition replaces an earlier
                series.pop(key := tuple(sorted(parsed.labels.items())), None)
                series[key] = parsed
        return UnitTestGroup(
            interval, tuple(series.values()), self._alert_tests(path, group),
            self._promql_tests(path, group),
            fields.string_map(group.get("external_labels"), (*path, "external_labels"),
                              "external_labels"),
            fields.string(group.get("external_url"), (*path, "external_url")), name,
            self._line(path))

    def _alert_tests(self, path: KeyPath, group: dict[str, Any]) -> tuple[AlertRuleTest, ...]:
        fields, tests = self.fields, []
        for item_path, item in self._items(group, "alert_rule_test", path, _ALERT_TEST_FIELDS,
                                           "an alert rule test"):
            alertname = fields.string(item.get("alertname"), (*item_path, "alertname"))
            if not alertname:
                fields.problem(item_path, "alertname is required")
            expected = tuple(
                AlertExpectation(
                    fields.string_map(alert.get("exp_labels"), (*alert_path, "exp_labels"),
                                      "exp_labels"),
                    fields.string_map(alert.get("exp_annotations"),
                                      (*alert_path, "exp_annotations"), "exp_annotations"))
                for alert_path, alert in self._items(item, "exp_alerts", item_path,
                                                     _ALERT_FIELDS, "an expected alert"))
            tests.append(AlertRuleTest(
                fields.duration(item.get("eval_time"), (*item_path, "eval_time")), alertname,
                expected, self._line(item_path)))
        return tuple(tests)

    def _promql_tests(self, path: KeyPath, group: dict[str, Any]) -> tuple[PromqlExprTest, ...]:
        fields, tests = self.fields, []
        for item_path, item in self._items(group, "promql_expr_test", path,
                                           _PROMQL_TEST_FIELDS, "a PromQL expression test"):
            expr = fields.string(item.get("expr"), (*item_path, "expr"))
            if not expr.strip():
                fields.problem(item_path, "expr is required")
            samples = tuple(
                sample for sample_path, raw in self._items(
                    item, "exp_samples", item_path, _SAMPLE_FIELDS, "an expected sample")
                if (sample := self._sample(sample_path, raw)) is not None)
            tests.append(PromqlExprTest(
                expr, fields.duration(item.get("eval_time"), (*item_path, "eval_time")),
                samples, self._line(item_path)))
        return tuple(tests)

    def _line(self, path: KeyPath) -> int:
        return self.fields.document.line(path) or 0

    def _series(self, path: KeyPath, item: dict[str, Any]) -> InputSeries | None:
        series = self.fields.string(item.get("series"), (*path, "series"))
        values = self.fields.string(item.get("values"), (*path, "values"))
        if "\n" in series or "\n" in values:
            self.fields.problem(path, "series and values must each be on one line")
            return None
        # promtool joins the two into one `load` line, so the values may even begin in
        # `series`; columns in errors count in that line.
        line = f"{series} {values}".strip()
        try:
            labels, expanded = parse_series_desc(line)
        except SeriesNotationError as exc:
            self.fields.problem(path, f"invalid series {line!r}: {exc}")
            return None
        return InputSeries(labels, tuple(expanded), self._line(path))

    def _sample(self, path: KeyPath, item: dict[str, Any]) -> ExpectedSample | None:
        text = self.fields.string(item.get("labels"), (*path, "labels"))
        raw = item.get("value")
        value = _yaml_float(raw) if isinstance(raw, YamlText) else (0.0 if raw is None else None)
        if value is None:
            self.fields.problem((*path, "value"), "must be a number (YAML float such as 1, "
                                f"2.5e3, .inf or .nan), not {kind_of(raw)}")
        try:
            labels = parse_series(text)
        except SeriesNotationError as exc:
            self.fields.problem((*path, "labels"), f"invalid labels {text!r}: {exc}")
            return None
        return None if value is None else ExpectedSample(labels, value, text)


def parse_test_file(text: str, *, file: str, base_dir: str | None = None) -> TestFile:
    """A test file's text; relative `rule_files` resolve against `base_dir` (default: the
    directory of `file`). Raises TestFileError listing every problem."""
    document = read_document(text, file, TestFileError)
    fields = FieldReader(document)
    directory = str(Path(file).parent) if base_dir is None else base_dir
    test_file = _TestFileReader(fields, directory).test_file(document.data, file)
    if document.problems:
        raise TestFileError(document.problems, file=file)
    return test_file


def load_test_file(path: str | Path) -> TestFile:
    """The test file at `path`; TestFileError listing every problem."""
    return parse_test_file(read_text_file(path, TestFileError), file=str(path))
