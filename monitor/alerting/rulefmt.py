"""Prometheus rule files, read and validated as Prometheus 2.42 does (`model/rulefmt`).

Owns the rule-file format (`groups` of `name`, `interval`, `limit` and `rules` of `alert` or
`record`, `expr`, `for`, `keep_firing_for`, `labels`, `annotations`), the checks that
`rulefmt.go` makes, and `RuleFileError`, which reports every problem at once, one line each,
naming file:line and the group and rule (`group "api", rule 2, "HighLatency": ...`).

Also the YAML layer shared with `testfile.py`. Go's YAML libraries read any scalar into a
string field as its source text (`1.50` stays "1.50", `yes` stays "yes", `expr: null` is
the selector `null`), so after `config_yaml.read_yaml` has checked the text (syntax,
duplicate keys, hostile input) and indexed the line of every key, the document is read once
more with every scalar kept as a `YamlText`: the text plus its tag and whether it was plain.

PromQL and template checks are injected: `expr_checker` and `template_checker` take the text
and return an error message, or None when it is fine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from monitor.config_types import KeyPath
from monitor.config_yaml import format_key_path, one_line, read_yaml
from monitor.errors import ConfigError
from monitor.units import parse_duration

try:
    from yaml import CSafeLoader as _FastSafeLoader
except ImportError:  # PyYAML built without libyaml: same result, slower
    from yaml import SafeLoader as _FastSafeLoader  # type: ignore[assignment]

Checker = Callable[[str], str | None]
RuleKind = Literal["alert", "record"]

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MAX_DURATION_S = (2**63 - 1) / 1000  # model.Duration is int64 milliseconds
_NULL_TAG = "tag:yaml.org,2002:null"


# --- problems ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileProblem:
    """One thing wrong with a file: what, on which line, and under which key path."""

    message: str
    line: int | None = None
    key: str | None = None

    def render(self, file: str) -> str:
        where = file if self.line is None else f"{file}:{self.line}"
        return f"{where}: {self.message}"


class ProblemsError(ConfigError):
    """Every problem found in one file, sorted by line; `str()` gives one line for each."""

    def __init__(self, problems: Sequence[FileProblem], *, file: str) -> None:
        if not problems:
            raise ValueError("a ProblemsError needs at least one problem")
        ordered = sorted(problems, key=lambda problem: (problem.line is None, problem.line or 0))
        self.problems: tuple[FileProblem, ...] = tuple(ordered)
        rest = "".join(f"\n{problem.render(file)}" for problem in ordered[1:])
        super().__init__(ordered[0].message + rest, file=file, line=ordered[0].line,
                         key=None)


class RuleFileError(ProblemsError):
    """A rule file Prometheus would refuse; `problems` holds each reason."""


# --- reading YAML with scalars as written ----------------------------------------------------


class YamlText(str):
    """A YAML scalar as its text (unquoted, folded), with its resolved tag and style."""

    tag: str = "tag:yaml.org,2002:str"
    plain: bool = False

    @property
    def is_null(self) -> bool:
        return self.tag == _NULL_TAG


def _text_scalar(loader: yaml.BaseLoader, node: yaml.Node) -> YamlText:
    text = YamlText(node.value)
    text.tag = node.tag
    # PyYAML marks a plain scalar with style None, libyaml with ""
    text.plain = isinstance(node, yaml.ScalarNode) and not node.style
    return text


class _TextScalarLoader(_FastSafeLoader):
    """SafeLoader whose scalars of every standard tag come back as `YamlText`."""


for _tag in ("null", "bool", "int", "float", "str", "timestamp", "binary"):
    _TextScalarLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _text_scalar)


@dataclass(frozen=True)
class YamlDocument:
    """A checked document: its data (scalars as `YamlText`), key lines, and problems so far."""

    data: Any
    lines: Mapping[KeyPath, int]
    problems: list[FileProblem]

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for length in range(len(path), -1, -1):
            line = self.lines.get(path[:length])
            if line is not None:
                return line
        return None


def read_document(text: str, file: str,
                  error_type: type[ProblemsError] = RuleFileError) -> YamlDocument:
    """Check `text` with `read_yaml`, then read it with scalars as written.

    Raises `error_type` for text that is not YAML; duplicate keys come back as problems.
    """
    try:
        _, lines, duplicates = read_yaml(text, file)
    except ConfigError as exc:
        raise error_type([FileProblem(exc.message, exc.line, exc.key)], file=file) from exc
    loader = _TextScalarLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:  # read_yaml accepted it; libyaml disagreeing is unexpected
        raise error_type([FileProblem(one_line(f"invalid YAML: {exc}"))], file=file) from exc
    finally:
        loader.dispose()
    document = YamlDocument(data, lines, [])
    document.problems.extend(
        FileProblem(one_line(problem.message), problem.line or document.line(problem.path),
                    format_key_path(problem.path) or None) for problem in duplicates)
    return document


def read_text_file(path: str | Path, error_type: type[ProblemsError]) -> str:
    """The file as UTF-8 text; unreadable or undecodable files raise `error_type`."""
    file = str(path)
    try:
        return Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise error_type([FileProblem(f"cannot read file: {exc.strerror or exc}")],
                         file=file) from exc
    except UnicodeDecodeError as exc:
        raise error_type([FileProblem(f"not UTF-8 text: invalid byte at offset {exc.start}")],
                         file=file) from exc


def kind_of(value: Any) -> str:
    """What a YAML value is, in the words an error message uses."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, YamlText) and value.is_null:
        return "null"
    if isinstance(value, YamlText) and not value.plain:
        return f"the string {one_line(value)!r}"
    return f"the scalar {one_line(str(value))!r}"


def parse_go_duration(text: str) -> float:
    """Seconds in a `model.Duration` (`30s`, `1h30m`, `0`); ValueError when invalid."""
    if text == "":
        raise ValueError("empty duration string")
    seconds = parse_duration(text)
    if seconds > _MAX_DURATION_S:
        raise ValueError(f"duration out of range: {text!r}")
    return seconds


def _go_int(text: YamlText) -> int | None:
    if text.tag == "tag:yaml.org,2002:bool":
        return None
    digits = text.replace("_", "")
    try:
        return int(digits, 0)
    except ValueError:
        pass
    if re.fullmatch(r"[-+]?0[0-7]+", digits):
        return int(digits, 8)
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", digits):
        return None
    number = float(digits)
    return int(number) if abs(number) < 2**63 else None


def has_surrogates(text: str) -> bool:
    """True when `text` holds lone surrogates, which are not valid UTF-8."""
    return any("\ud800" <= char <= "\udfff" for char in text)


class FieldReader:
    """Reads typed fields out of `YamlText` data as Go's YAML decoders do, noting problems.

    Each message starts with the context of its path (`contexts` maps a path to a prefix
    such as `group "api", rule 2, "HighLatency": `) and the keys below that context.
    """

    def __init__(self, document: YamlDocument) -> None:
        self.document = document
        self.contexts: dict[KeyPath, str] = {}

    def prefix(self, path: KeyPath) -> str:
        for length in range(len(path), 0, -1):
            context = self.contexts.get(path[:length])
            if context is not None:
                below = format_key_path(path[length:])
                return f"{context}{below}: " if below else context
        return f"{format_key_path(path)}: " if path else ""

    def problem(self, path: KeyPath, message: str, *, at: KeyPath | None = None) -> None:
        """A problem with the value at `path`; `at` names the key it is reported against
        (line and key path) when that is not `path` itself."""
        where = path if at is None else at
        self.document.problems.append(FileProblem(
            one_line(f"{self.prefix(path)}{message}"), self.document.line(where),
            format_key_path(where) or None))

    def mapping(self, value: Any, path: KeyPath, allowed: Sequence[str] | None,
                what: str) -> dict[str, Any] | None:
        """A mapping (null reads as empty); unknown keys are problems, as UnmarshalStrict."""
        if value is None or (isinstance(value, YamlText) and value.is_null):
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"{what} must be a mapping, not {kind_of(value)}")
            return None
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, YamlText):
                self.problem(path, f"{what} has a key that is not a string: {kind_of(key)}")
            elif allowed is not None and key not in allowed:
                self.problem(path, f"unknown field {one_line(key)!r} in {what} (allowed: "
                                   f"{', '.join(allowed)})", at=(*path, str(key)))
            else:
                result[str(key)] = item
        return result

    def items(self, value: Any, path: KeyPath) -> list[tuple[int, Any]]:
        """A list's (index, item) pairs, nulls skipped as Prometheus skips them."""
        if value is None or (isinstance(value, YamlText) and value.is_null):
            return []
        if not isinstance(value, list):
            self.problem(path, f"must be a list, not {kind_of(value)}")
            return []
        return [(index, item) for index, item in enumerate(value)
                if not (isinstance(item, YamlText) and item.is_null)]

    def string(self, value: Any, path: KeyPath, *, null_text: bool = False) -> str:
        """A scalar's text; null is "" unless `null_text` (a yaml.Node field keeps it)."""
        if isinstance(value, YamlText):
            return str(value) if null_text or not value.is_null else ""
        if value is not None:
            self.problem(path, f"must be a string, not {kind_of(value)}")
        return ""

    def duration(self, value: Any, path: KeyPath) -> float:
        """Seconds in a duration field; absent or null is 0, as in Go."""
        if value is None or (isinstance(value, YamlText) and value.is_null):
            return 0.0
        text = self.string(value, path)
        try:
            return parse_go_duration(text) if isinstance(value, YamlText) else 0.0
        except ValueError as exc:
            self.problem(path, str(exc))
            return 0.0

    def integer(self, value: Any, path: KeyPath) -> int:
        """An int as yaml.v3 reads one: a plain number, a float truncated toward zero."""
        if value is None or (isinstance(value, YamlText) and value.is_null):
            return 0
        number = _go_int(value) if isinstance(value, YamlText) and value.plain else None
        if number is None:
            self.problem(path, f"must be an integer, not {kind_of(value)}")
            return 0
        return number

    def string_map(self, value: Any, path: KeyPath, what: str) -> dict[str, str]:
        raw = self.mapping(value, path, None, what)
        if raw is None:
            return {}
        return {key: self.string(item, (*path, key)) for key, item in raw.items()}


# --- rule files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleNode:
    """One alerting or recording rule as written; durations in seconds."""

    kind: RuleKind
    name: str
    expr: str
    for_: float = 0.0
    keep_firing_for: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True)
class RuleGroupSpec:
    """A rule group: `interval` None means the global evaluation interval; `limit` <= 0 none."""

    name: str
    interval: float | None
    limit: int
    rules: tuple[RuleNode, ...]
    file: str
    line: int


_TOP_FIELDS = ("groups",)
_GROUP_FIELDS = ("name", "interval", "limit", "rules")
_RULE_FIELDS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")


class _RuleFileReader:
    def __init__(self, document: YamlDocument, expr_checker: Checker | None,
                 template_checker: Checker | None) -> None:
        self.document = document
        self.expr_checker = expr_checker
        self.template_checker = template_checker
        self.fields = FieldReader(document)
        self.contexts = self.fields.contexts

    def groups(self, file: str) -> list[RuleGroupSpec]:
        top = self.fields.mapping(self.document.data, (), _TOP_FIELDS, "the rule file")
        if top is None:
            return []
        seen: dict[str, int | None] = {}
        specs = []
        for index, raw in self.fields.items(top.get("groups"), ("groups",)):
            path: KeyPath = ("groups", index)
            spec = self._group(raw, path, file)
            if spec is None:
                continue
            if not spec.name:
                self.fields.problem(path, "group name must not be empty")
            elif spec.name in seen:
                self.fields.problem(path, "group name is repeated in the same file "
                                          f"(first at line {seen[spec.name]})")
            else:
                seen[spec.name] = spec.line
            specs.append(spec)
        return specs

    def _group(self, raw: Any, path: KeyPath, file: str) -> RuleGroupSpec | None:
        raw_name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(raw_name, YamlText) and raw_name and not raw_name.is_null:
            self.contexts[path] = f'group "{_go_quote(raw_name)}": '
        group = self.fields.mapping(raw, path, _GROUP_FIELDS, "a rule group")
        if group is None:
            return None
        name = self.fields.string(group.get("name"), (*path, "name"))
        interval = self.fields.duration(group.get("interval"), (*path, "interval"))
        limit = self.fields.integer(group.get("limit"), (*path, "limit"))
        rules = []
        for number, (index, raw_rule) in enumerate(
                self.fields.items(group.get("rules"), (*path, "rules")), start=1):
            rule = self._rule(raw_rule, (*path, "rules", index), name, number)
            if rule is not None:
                rules.append(rule)
        return RuleGroupSpec(name, interval or None, limit, tuple(rules), file,
                             self.document.line(path) or 0)

    def _rule(self, raw: Any, path: KeyPath, group: str, number: int) -> RuleNode | None:
        fields = self.fields
        names = [raw.get(key) if isinstance(raw, dict) else None for key in ("alert", "record")]
        name = next((str(text) for text in names if isinstance(text, YamlText) and text), "")
        self.contexts[path] = f'group "{_go_quote(group)}", rule {number}, "{_go_quote(name)}": '
        rule = fields.mapping(raw, path, _RULE_FIELDS, "a rule")
        if rule is None:
            return None
        alert = fields.string(rule.get("alert"), (*path, "alert"), null_text=True)
        record = fields.string(rule.get("record"), (*path, "record"), null_text=True)
        expr = fields.string(rule.get("expr"), (*path, "expr"), null_text=True)
        for_ = fields.duration(rule.get("for"), (*path, "for"))
        keep_firing_for = fields.duration(rule.get("keep_firing_for"), (*path, "keep_firing_for"))
        labels = fields.string_map(rule.get("labels"), (*path, "labels"), "labels")
        annotations = fields.string_map(rule.get("annotations"), (*path, "annotations"),
                                        "annotations")

        if record and alert:
            fields.problem(path, "only one of 'record' and 'alert' must be set",
                           at=(*path, "record"))
        if not record and not alert:
            fields.problem(path, "one of 'record' or 'alert' must be set")
        if not expr:
            fields.problem(path, "field 'expr' must be set in rule", at=(*path, "expr"))
        elif self.expr_checker is not None:
            error = self.expr_checker(expr)
            if error is not None:
                fields.problem(path, f"could not parse expression: {error}",
                               at=(*path, "expr"))
        if record:
            for key, present in (("annotations", annotations), ("for", for_),
                                 ("keep_firing_for", keep_firing_for)):
                if present:
                    fields.problem(path, f"invalid field '{key}' in recording rule",
                                   at=(*path, key))
            if not METRIC_NAME_RE.fullmatch(record):
                fields.problem(path, f"invalid recording rule name: {record}",
                               at=(*path, "record"))
        for key, value in labels.items():
            if not LABEL_NAME_RE.fullmatch(key) or key == "__name__":
                fields.problem(path, f"invalid label name: {key}", at=(*path, "labels", key))
            if has_surrogates(value):
                fields.problem(path, f"invalid label value: {value}",
                               at=(*path, "labels", key))
        for key in annotations:
            if not LABEL_NAME_RE.fullmatch(key):
                fields.problem(path, f"invalid annotation name: {key}",
                               at=(*path, "annotations", key))
        if alert and self.template_checker is not None:
            for where, texts in (("label", labels), ("annotation", annotations)):
                for key, value in texts.items():
                    error = self.template_checker(value)
                    if error is not None:
                        fields.problem(path, f'{where} "{_go_quote(key)}": {error}',
                                       at=(*path, f"{where}s", key))

        kind: RuleKind = "alert" if alert else "record"
        return RuleNode(kind, name, expr, for_, keep_firing_for, labels, annotations,
                        self.document.line(path) or 0)


def _go_quote(text: str) -> str:
    """`text` as it appears between the quotes of Go's %q (quotes and backslashes escaped)."""
    return one_line(text.replace("\\", "\\\\").replace('"', '\\"'))


def parse_rule_file(text: str, *, file: str, expr_checker: Checker | None = None,
                    template_checker: Checker | None = None) -> list[RuleGroupSpec]:
    """The groups of a rule file's text; RuleFileError listing every problem.

    `expr_checker(expr)` and `template_checker(text)` return an error message or None; when
    not given, expressions or templates are not checked.
    """
    document = read_document(text, file, RuleFileError)
    groups = _RuleFileReader(document, expr_checker, template_checker).groups(file)
    if document.problems:
        raise RuleFileError(document.problems, file=file)
    return groups


def load_rule_file(path: str | Path, *, expr_checker: Checker | None = None,
                   template_checker: Checker | None = None) -> list[RuleGroupSpec]:
    """The groups of the rule file at `path`; RuleFileError listing every problem."""
    text = read_text_file(path, RuleFileError)
    return parse_rule_file(text, file=str(path), expr_checker=expr_checker,
                           template_checker=template_checker)
