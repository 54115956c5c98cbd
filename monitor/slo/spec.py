"""SLO spec files: Sloth's `version: "prometheus/v1"` format, read and validated as Sloth does.

Owns reading and validation: `parse_slo_file`, `load_slo_file(s)` and `SloFileError`, which
reports every problem of a file at once, one line each, naming file:line, the SLO and the field
(`slos.yml:14: slo "requests-availability": objective: must be > 0 and <= 100 ...`). The data
model (`SloFile` > `SloGroup` > `Slo` ...) is monitor/slo/model.py, re-exported here.

Sloth's source is the reference (github.com/slok/sloth): the spec types of
`pkg/prometheus/api/v1`, the loader `internal/storage/io/sloth.go` (ID `<service>-<name>`, labels
and alert metadata merged), `pkg/common/validation/{slo,promql}.go` and the catalogue
`internal/alert/windows/google-{30d,28d}.yaml`. Where this module differs, on purpose:

- Unknown keys are errors (Sloth decodes through JSON and ignores them, so a misspelt
  `ticket_alerts:` silently leaves the ticket alert on).
- SLI plugins (`sli.plugin`) and SLO plugins (`slo_plugins`, `plugins`) are refused by name:
  they are Go code that only Sloth can run.
- Label names are Prometheus 2 names (`[a-zA-Z_][a-zA-Z0-9_]*`), which promtool 2.x and the
  daemon's rule loader accept; Sloth now accepts any UTF-8 name.
- Alert label and annotation values are checked as alert templates, as promtool would.
- Extensions that Sloth ignores: `time_window` (top level or per SLO, default 30d: one of the
  periods of Sloth's built-in catalogue, 28d or 30d), and `alerting.budget_alert`, an alert when
  half of the period's error budget is spent.
- `{{.window}}` (spaces allowed inside the braces, as Sloth's check allows) is the only template
  action a query may hold; Sloth would run any Go template.
- Several documents in one file (`---`) are read as Sloth's `generate` does.
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monitor.alerting.rulefmt import (
    LABEL_NAME_RE,
    FieldReader,
    FileProblem,
    ProblemsError,
    YamlText,
    has_surrogates,
    kind_of,
    parse_go_duration,
    read_document,
    read_text_file,
)
from monitor.alerting.templates import check_template
from monitor.config_types import KeyPath
from monitor.promql.parse import PromQLParseError, parse_expr
from monitor.slo.model import (
    DEFAULT_TIME_WINDOW_S,
    SUPPORTED_PERIODS_S,
    VERSION,
    WINDOW_VAR_RE,
    AlertingSpec,
    AlertKind,
    AlertRule,
    AlertSpec,
    AlertWindows,
    BurnRateWindow,
    SliEvents,
    SliRaw,
    Slo,
    SloFile,
    SloGroup,
    alert_windows,
    prom_duration,
    render_window,
)

# The data model lives in monitor/slo/model.py; it is re-exported here with the reader.
__all__ = [
    "AlertKind", "AlertRule", "AlertSpec", "AlertWindows", "AlertingSpec", "BurnRateWindow",
    "SliEvents", "SliRaw", "Slo", "SloFile", "SloFileError", "SloGroup", "alert_windows",
    "load_slo_file", "load_slo_files", "parse_slo_file", "prom_duration", "render_window",
]

CHECK_WINDOW = "5m"  # `{{.window}}` while a query is checked

# Sloth's conventions (pkg/common/conventions).
NAME_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]")
_ACTION_RE = re.compile(r"\{\{.*?(?:\}\}|\Z)", re.DOTALL)
_NAME_RULE = ("must start and end with an alphanumeric and can only contain alphanumeric, "
              "'.', '_', and '-'")


class SloFileError(ProblemsError):
    """An SLO spec file that cannot be used; `problems` names each reason with its line."""


# --- reading ---------------------------------------------------------------------------------

_TOP_FIELDS = ("version", "service", "labels", "slos", "time_window", "slo_plugins")
_SLO_FIELDS = ("name", "objective", "description", "labels", "sli", "alerting", "time_window",
               "plugins")
_SLI_FIELDS = ("events", "raw", "plugin")
_EVENTS_FIELDS = ("error_query", "total_query")
_RAW_FIELDS = ("error_ratio_query",)
_ALERTING_FIELDS = ("name", "labels", "annotations", "page_alert", "ticket_alert",
                    "budget_alert")
_ALERT_FIELDS = ("disable", "labels", "annotations")
_SLI_PLUGIN = ("SLI plugins are Go code that only Sloth runs and are not supported; write "
               "the plugin's query as sli.raw.error_ratio_query, or use sli.events")
_SLO_PLUGINS = ("SLO plugins are Go code that only Sloth runs and are not supported; remove "
                "them (alerting.budget_alert replaces the error_budget_exhausted_alert plugin)")


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, YamlText) and value.is_null)


class _SpecReader:
    """Reads one document, noting every problem with the SLO and field it concerns."""

    def __init__(self, fields: FieldReader, file: str) -> None:
        self.fields = fields
        self.file = file

    def group(self) -> SloGroup | None:
        data = self.fields.document.data
        if isinstance(data, dict) and ("apiVersion" in data or "kind" in data):
            self.fields.problem((), "this is a Kubernetes or OpenSLO manifest; only Sloth's "
                                    f'`version: "{VERSION}"` spec is supported')
            return None
        top = self.fields.mapping(data, (), _TOP_FIELDS, "an SLO spec")
        if top is None:
            return None
        version = self.fields.string(top.get("version"), ("version",))
        if version != VERSION:
            self.fields.problem(("version",), f'must be "{VERSION}", not {version!r}')
        if "slo_plugins" in top:
            self.fields.problem(("slo_plugins",), _SLO_PLUGINS)
        service = self.fields.string(top.get("service"), ("service",))
        self._name(service, ("service",))
        labels = self._labels(top.get("labels"), ("labels",))
        window = self._time_window(top.get("time_window"), ("time_window",),
                                   DEFAULT_TIME_WINDOW_S)
        slos: list[Slo] = []
        items = self.fields.items(top.get("slos"), ("slos",))
        if not items:
            self.fields.problem(("slos",), "at least one SLO is required")
        for index, raw in items:
            slo = self._slo(raw, ("slos", index), service, labels, window)
            if slo is not None:
                slos.append(slo)
        return SloGroup(service, labels, tuple(slos), self.fields.document.line(()) or 0)

    def _slo(self, raw: Any, path: KeyPath, service: str, group_labels: Mapping[str, str],
             group_window: int) -> Slo | None:
        fields = self.fields
        raw_name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(raw_name, YamlText) and raw_name and not raw_name.is_null:
            fields.contexts[path] = f'slo "{raw_name}": '
        slo = fields.mapping(raw, path, _SLO_FIELDS, "an SLO")
        if slo is None:
            return None
        name = fields.string(slo.get("name"), (*path, "name"))
        self._name(name, (*path, "name"))
        if "plugins" in slo:
            fields.problem((*path, "plugins"), _SLO_PLUGINS)
        objective = self._objective(slo.get("objective"), (*path, "objective"))
        labels = {**group_labels, **self._labels(slo.get("labels"), (*path, "labels"))}
        window = self._time_window(slo.get("time_window"), (*path, "time_window"), group_window)
        sli = self._sli(slo.get("sli"), (*path, "sli"))
        alerting = self._alerting(slo.get("alerting"), (*path, "alerting"))
        description = fields.string(slo.get("description"), (*path, "description"))
        if sli is None or alerting is None or objective is None:
            return None
        return Slo(f"{service}-{name}", name, service, description, objective, labels, sli,
                   alerting, window, self.file, fields.document.line(path) or 0)

    def _name(self, name: str, path: KeyPath) -> None:
        if not name:
            self.fields.problem(path, "is required")
        elif not NAME_RE.fullmatch(name):
            self.fields.problem(path, f"{name!r} {_NAME_RULE}")

    def _objective(self, value: Any, path: KeyPath) -> float | None:
        if _is_null(value):
            self.fields.problem(path, "is required: the target in percent, e.g. 99.9")
            return None
        number = _number(value)
        if number is None:
            self.fields.problem(path, f"must be a number, not {kind_of(value)}")
            return None
        if not 0 < number <= 100:
            self.fields.problem(path, f"must be > 0 and <= 100 (a percentage), not {value}")
            return None
        return number

    def _time_window(self, value: Any, path: KeyPath, default: int) -> int:
        if _is_null(value):
            return default
        text = self.fields.string(value, path)
        try:
            seconds = round(parse_go_duration(text))
        except ValueError as exc:
            self.fields.problem(path, str(exc))
            return default
        if seconds not in SUPPORTED_PERIODS_S:
            supported = " or ".join(f"{s // 86400}d" for s in SUPPORTED_PERIODS_S)
            self.fields.problem(path, f"{text} is not supported: the burn-rate windows of "
                                      f"Sloth's catalogue exist for {supported}")
            return default
        return seconds

    def _labels(self, value: Any, path: KeyPath, *, what: str = "label") -> dict[str, str]:
        labels = self.fields.string_map(value, path, f"{what}s")
        for key, text in labels.items():
            if not LABEL_NAME_RE.fullmatch(key) or (what == "label" and key == "__name__"):
                self.fields.problem((*path, key), f"invalid {what} name {key!r}")
            if not text:
                self.fields.problem((*path, key), f"the {what} value is required")
            elif has_surrogates(text):
                self.fields.problem((*path, key), f"invalid {what} value {text!r}")
        return labels

    def _sli(self, value: Any, path: KeyPath) -> SliEvents | SliRaw | None:
        sli = self.fields.mapping(value, path, _SLI_FIELDS, "the SLI")
        if sli is None:
            return None
        if "plugin" in sli:
            self.fields.problem((*path, "plugin"), _SLI_PLUGIN)
            return None
        present = [key for key in ("events", "raw") if not _is_null(sli.get(key))]
        if not present:
            self.fields.problem(path, "an SLI type is required: sli.events or sli.raw")
            return None
        if len(present) > 1:
            self.fields.problem(path, "only one SLI type is allowed: sli.events or sli.raw")
            return None
        if present == ["raw"]:
            raw = self.fields.mapping(sli["raw"], (*path, "raw"), _RAW_FIELDS, "a raw SLI")
            if raw is None:
                return None
            query_path = (*path, "raw", "error_ratio_query")
            query = self.fields.string(raw.get("error_ratio_query"), query_path)
            return SliRaw(query) if self._query(query, query_path) else None
        events = self.fields.mapping(sli["events"], (*path, "events"), _EVENTS_FIELDS,
                                     "an events SLI")
        if events is None:
            return None
        queries = {key: self.fields.string(events.get(key), (*path, "events", key))
                   for key in _EVENTS_FIELDS}
        valid = [self._query(queries[key], (*path, "events", key)) for key in _EVENTS_FIELDS]
        if queries["error_query"] and queries["error_query"] == queries["total_query"]:
            self.fields.problem((*path, "events"), "error_query and total_query are the same")
            return None
        if not all(valid):
            return None
        result = SliEvents(queries["error_query"], queries["total_query"])
        error = _promql_error(result.error_ratio_query(CHECK_WINDOW))
        if error is not None:
            self.fields.problem((*path, "events"), f"(error_query) / (total_query) is not "
                                                   f"valid PromQL: {error}")
            return None
        return result

    def _query(self, query: str, path: KeyPath) -> bool:
        if not query:
            self.fields.problem(path, "the query template is required")
            return False
        for action in _ACTION_RE.findall(query):
            if not WINDOW_VAR_RE.fullmatch(action):
                shown = action if len(action) <= 40 else action[:37] + "..."
                self.fields.problem(path, f"only {{{{.window}}}} may appear between {{{{ }}}}, "
                                          f"not {shown!r}")
                return False
        if not WINDOW_VAR_RE.search(query):
            self.fields.problem(path, "the template must contain the {{.window}} variable")
            return False
        error = _promql_error(render_window(query, CHECK_WINDOW))
        if error is not None:
            self.fields.problem(path, f"not valid PromQL (with {{{{.window}}}} = "
                                      f"{CHECK_WINDOW}): {error}")
            return False
        return True

    def _alerting(self, value: Any, path: KeyPath) -> AlertingSpec | None:
        alerting = self.fields.mapping(value, path, _ALERTING_FIELDS, "the alerting block")
        if alerting is None:
            return None
        name = self.fields.string(alerting.get("name"), (*path, "name"))
        labels = self._labels(alerting.get("labels"), (*path, "labels"))
        annotations = self._labels(alerting.get("annotations"), (*path, "annotations"),
                                   what="annotation")
        self._templates(labels, annotations, path)
        page, ticket = (self._alert(alerting.get(key), (*path, key))
                        for key in ("page_alert", "ticket_alert"))
        budget = None
        if not _is_null(alerting.get("budget_alert")):
            budget = self._alert(alerting["budget_alert"], (*path, "budget_alert"))
        if page is None or ticket is None or ("budget_alert" in alerting and budget is None):
            return None
        spec = AlertingSpec(name, labels, annotations, page, ticket, budget)
        enabled = [key for key, on in (("page_alert", not page.disable),
                                       ("ticket_alert", not ticket.disable),
                                       ("budget_alert", budget is not None and not budget.disable))
                   if on]
        if enabled and not name:
            verb = "is" if len(enabled) == 1 else "are"
            self.fields.problem((*path, "name"), "the alert name is required while "
                                                 f"{' and '.join(enabled)} {verb} enabled")
            return None
        return spec

    def _alert(self, value: Any, path: KeyPath) -> AlertSpec | None:
        alert = self.fields.mapping(value, path, _ALERT_FIELDS, "an alert")
        if alert is None:
            return None
        disable = self._bool(alert.get("disable"), (*path, "disable"))
        labels = self._labels(alert.get("labels"), (*path, "labels"))
        annotations = self._labels(alert.get("annotations"), (*path, "annotations"),
                                   what="annotation")
        self._templates(labels, annotations, path)
        return AlertSpec(disable, labels, annotations)

    def _templates(self, labels: Mapping[str, str], annotations: Mapping[str, str],
                   path: KeyPath) -> None:
        for key, texts in (("labels", labels), ("annotations", annotations)):
            for name, text in texts.items():
                error = check_template(text) if text else None
                if error is not None:
                    self.fields.problem((*path, key, name), f"invalid alert template: {error}")

    def _bool(self, value: Any, path: KeyPath) -> bool:
        if _is_null(value):
            return False
        if isinstance(value, YamlText) and value.tag == "tag:yaml.org,2002:bool":
            return value.lower() in ("true", "yes", "on")  # YAML 1.1 booleans, as Sloth reads
        self.fields.problem(path, f"must be true or false, not {kind_of(value)}")
        return False


def _number(value: Any) -> float | None:
    if not isinstance(value, YamlText) or not value.plain or value.tag not in (
            "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        return None
    text = value.replace("_", "")
    try:
        number = float(int(text, 0)) if value.tag.endswith("int") else float(text)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _promql_error(query: str) -> str | None:
    try:
        parse_expr(query)
    except PromQLParseError as exc:
        return str(exc)
    return None


def _documents(text: str) -> list[str]:
    """The documents of a file split at lines starting `---`, as Sloth's generate splits them;
    each is padded with blank lines so that line numbers stay those of the file."""
    documents: list[str] = []
    current: list[str] = []
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.startswith("---"):
            documents.append("".join(current))
            current = ["\n"] * number + [line[3:]]
        else:
            current.append(line)
    documents.append("".join(current))
    return [doc for doc in documents
            if any(not line.strip().startswith("#") for line in doc.splitlines()
                   if line.strip())]


def parse_slo_file(text: str, *, file: str) -> SloFile:
    """The spec documents of a file's text; SloFileError listing every problem."""
    problems: list[FileProblem] = []
    groups: list[SloGroup] = []
    documents = _documents(text)
    if not documents:
        raise SloFileError([FileProblem(f'the file is empty: expected a Sloth "{VERSION}" '
                                        "SLO spec")], file=file)
    for document_text in documents:
        document = read_document(document_text, file, SloFileError)
        group = _SpecReader(FieldReader(document), file).group()
        problems.extend(document.problems)
        if group is not None:
            groups.append(group)
    _check_unique_ids([slo for group in groups for slo in group.slos], {}, problems)
    if problems:
        raise SloFileError(problems, file=file)
    return SloFile(file, tuple(groups))


def _check_unique_ids(slos: Iterable[Slo], seen: dict[str, Slo],
                      problems: list[FileProblem]) -> None:
    for slo in slos:
        first = seen.setdefault(slo.id, slo)
        if first is not slo:
            where = f"line {first.line}" if first.file == slo.file else \
                f"{first.file}:{first.line}"
            problems.append(FileProblem(f'slo "{slo.name}": the SLO ID {slo.id!r} is '
                                        f"repeated (first at {where})", slo.line))


def load_slo_file(path: str | Path) -> SloFile:
    """The SLO spec file at `path`; SloFileError listing every problem."""
    return parse_slo_file(read_text_file(path, SloFileError), file=str(path))


def load_slo_files(patterns: Iterable[str]) -> list[SloFile]:
    """Every file the globs match (each glob sorted), SLO IDs unique across all of them;
    SloFileError (a ConfigError) naming file:line on the first file with problems."""
    files: list[SloFile] = []
    seen: dict[str, Slo] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):  # noqa: PTH207 - absolute str globs from config
            spec = load_slo_file(path)
            problems: list[FileProblem] = []
            _check_unique_ids(spec.slos, seen, problems)
            if problems:
                raise SloFileError(problems, file=path)
            files.append(spec)
    return files
