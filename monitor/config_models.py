"""The configuration schema (SPEC §4), except `notify`, as frozen pydantic models.

Owns: `Config` and its sections — server, storage, ingest, metrics, sources (with custom
`fields`), host, gpu, probes, processes, rule/SLO files and cost — with every default and
every cross-field rule. Values arrive already `${ENV}`-expanded (see `monitor.config`).
Sequences are tuples so a loaded config is immutable and compares by value, which is what
reload diffing relies on. Adding a key is one annotated line in the right model.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config_notify import NotifyConfig
from monitor.config_types import (
    ByteSize,
    ConfigModel,
    ConfigPath,
    Duration,
    ExcludePattern,
    GlobPattern,
    HostPort,
    HttpUrl,
    KeyPath,
    LabelName,
    NonEmptyStr,
    NonNegativeMoney,
    PositiveDuration,
    PositiveInt,
    PositiveMoney,
    RegexPattern,
    Secret,
    compile_regex,
    config_problem,
    config_problems,
    duplicate_name_problems,
    load_context,
    split_host_port,
)
from monitor.goregexp import Regexp

DEFAULT_STORAGE_PATH = Path("/var/lib/inferwatch")

RESERVED_SOURCE_LABELS = frozenset(
    {"source", "status", "class", "cache", "le", "quantile", "user"}
)

EventField = Literal[
    "timestamp", "duration", "ttft", "model", "service", "request_id", "user_id", "status",
    "level", "error", "input_tokens", "output_tokens", "reasoning_tokens", "cache_hit_tokens",
    "cache_miss_tokens", "cost", "throughput",
]
TimeUnit = Literal["ms", "s"]

# Event fields that take a unit, and the unit they default to.
DEFAULT_FIELD_UNITS: dict[str, TimeUnit] = {"duration": "ms", "ttft": "ms", "timestamp": "s"}


class ServerConfig(ConfigModel):
    """The HTTP listener. Non-loopback without a token needs `allow_unauthenticated`."""

    secret_fields = ("bearer_token",)

    listen: HostPort = "127.0.0.1:9464"
    bearer_token: Secret | None = None
    bearer_token_file: Path | None = None
    allow_unauthenticated: bool = False

    @property
    def listen_host(self) -> str:
        """The host part; '' means every interface."""
        return split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen)[1]

    @property
    def listens_on_loopback(self) -> bool:
        host = self.listen_host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False  # an empty host (all interfaces) or a hostname we cannot vouch for

    @model_validator(mode="after")
    def _refuse_open_listener(self) -> ServerConfig:
        if (not self.listens_on_loopback and self.bearer_token is None
                and not self.allow_unauthenticated):
            raise config_problem(("listen",), (
                f"{self.listen} is not a loopback address and no bearer token is set: "
                "set server.bearer_token_file (or bearer_token), or set "
                "server.allow_unauthenticated: true to serve without authentication"))
        return self


def _default_storage_path(info: ValidationInfo) -> Path:
    state_directory = load_context(info).environ.get("STATE_DIRECTORY", "")
    first = state_directory.split(":")[0]
    return Path(first) if first else DEFAULT_STORAGE_PATH


class StorageConfig(ConfigModel):
    """The state directory (one SQLite file) and the in-memory series retention.

    `path` defaults to the first entry of $STATE_DIRECTORY (systemd `StateDirectory=`),
    else /var/lib/inferwatch.
    """

    path: ConfigPath = DEFAULT_STORAGE_PATH
    retention: PositiveDuration = 6 * 3600.0

    @model_validator(mode="before")
    @classmethod
    def _default_path_from_environment(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and data.get("path") is None:
            return {**data, "path": _default_storage_path(info)}
        return data


class IngestConfig(ConfigModel):
    """Tailing and checkpoint cadence (an inferwatch extension)."""

    checkpoint_interval: PositiveDuration = 1.0
    checkpoint_lines: PositiveInt = 10000
    poll_interval: PositiveDuration = 0.25
    rescan_interval: PositiveDuration = 1.0
    rotate_wait: Duration = 30.0
    inotify: bool = True


class MetricsConfig(ConfigModel):
    """Cardinality controls (an inferwatch extension)."""

    series_limit: PositiveInt = 10000
    user_label: bool = False


def _check_dotted_path(path: str) -> str:
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"must be a dotted path such as usage.prompt_tokens (got {path!r})")
    return path


class FieldSpec(ConfigModel):
    """Where a custom-schema event field comes from: a dotted path into the JSON object.

    `unit` is set only for timestamp (default s, for epoch numbers) and duration/ttft
    (default ms); for every other field it is None.
    """

    path: Annotated[str, AfterValidator(_check_dotted_path)]
    unit: TimeUnit | None = None


def _regex_map_patterns(patterns: dict[str, str]) -> dict[str, Regexp]:
    return {path: compile_regex(pattern) for path, pattern in patterns.items()}


MAX_LINE_BYTES_LIMIT = 64 * 1024 * 1024
"""The largest `max_line_bytes`: the tailer holds a whole line in memory to read it."""


class SourceConfig(ConfigModel):
    """One group of log files read with one schema.

    `exclude_paths` entries come in two kinds, told apart by `"/" in pattern`: without a
    `/` (`*.gz`) a pattern is kept as written and matches the base name of any file under
    the source; with a `/` (`logs/old-*.log`) it is a path glob, made absolute against the
    config file's directory like `paths`, and matches the whole path.

    `include`/`exclude` map a dotted path in the line to a regex matched with `re.search`
    (anchor it yourself); `include_patterns`/`exclude_patterns` hold them compiled, keyed
    by the same dotted path, built once per loaded config.
    """

    name: NonEmptyStr
    paths: tuple[GlobPattern, ...] = Field(min_length=1)
    exclude_paths: tuple[ExcludePattern, ...] = Field(default=(), description=(
        "Files to leave out. A pattern without '/' (e.g. '*.gz') is kept verbatim and "
        "matches each file's base name; a pattern with '/' is a path glob resolved against "
        "the config file's directory and matches the full path."))
    log_schema: Literal["inference", "api_usage", "custom"] = Field(alias="schema")
    start_at: Literal["beginning", "end"] = "beginning"
    labels: dict[LabelName, str] = Field(default_factory=dict)
    fields: dict[EventField, FieldSpec] | None = None
    max_line_bytes: ByteSize = 1024 * 1024
    include: dict[Annotated[str, AfterValidator(_check_dotted_path)], RegexPattern] = Field(
        default_factory=dict)
    exclude: dict[Annotated[str, AfterValidator(_check_dotted_path)], RegexPattern] = Field(
        default_factory=dict)
    gpu_hourly_cost: NonNegativeMoney | None = None

    @cached_property
    def include_patterns(self) -> dict[str, Regexp]:
        """`include` compiled: dotted path -> pattern (computed once, then cached)."""
        return _regex_map_patterns(self.include)

    @cached_property
    def exclude_patterns(self) -> dict[str, Regexp]:
        """`exclude` compiled: dotted path -> pattern (computed once, then cached)."""
        return _regex_map_patterns(self.exclude)

    @field_validator("max_line_bytes")
    @classmethod
    def _cap_max_line_bytes(cls, value: int) -> int:
        if value > MAX_LINE_BYTES_LIMIT:
            raise ValueError(f"must be at most 64MiB ({MAX_LINE_BYTES_LIMIT} bytes), since "
                             f"a whole line is held in memory (got {value} bytes)")
        return value

    @field_validator("fields", mode="before")
    @classmethod
    def _expand_field_shorthand(cls, value: Any) -> Any:
        """`ttft: a.b` means `{path: a.b}`; fill in each time field's default unit."""
        if not isinstance(value, dict):
            return value
        expanded: dict[Any, Any] = {}
        for name, spec in value.items():
            entry = {"path": spec} if isinstance(spec, str) else spec
            if isinstance(entry, dict) and entry.get("unit") is None and (
                    name in DEFAULT_FIELD_UNITS):
                entry = {**entry, "unit": DEFAULT_FIELD_UNITS[name]}
            expanded[name] = entry
        return expanded

    @model_validator(mode="after")
    def _check_cross_fields(self) -> SourceConfig:
        problems: list[tuple[KeyPath, str]] = []
        for label in self.labels:
            if label.startswith("__"):
                problems.append((("labels", label), "label names starting with __ are reserved"))
            elif label in RESERVED_SOURCE_LABELS:
                problems.append((("labels", label), (
                    f"label {label!r} is set by inferwatch itself; reserved: "
                    f"{', '.join(sorted(RESERVED_SOURCE_LABELS))}")))
        if self.log_schema == "custom":
            if self.fields is None:
                problems.append((("fields",), "required when schema is custom"))
            elif "timestamp" not in self.fields:
                problems.append((("fields",), "must map timestamp"))
            else:
                problems.extend(
                    (("fields", name, "unit"),
                     f"only {', '.join(DEFAULT_FIELD_UNITS)} take a unit")
                    for name, spec in self.fields.items()
                    if spec.unit is not None and name not in DEFAULT_FIELD_UNITS
                )
        elif self.fields is not None:
            problems.append((("fields",), f"only allowed with schema: custom "
                                          f"(this source has schema: {self.log_schema})"))
        if problems:
            raise config_problems(problems)
        return self


class HostConfig(ConfigModel):
    """psutil sampling; `filesystems` None means every real mount."""

    enabled: bool = True
    interval: PositiveDuration = 5.0
    filesystems: tuple[NonEmptyStr, ...] | None = None

    @field_validator("filesystems")
    @classmethod
    def _require_mountpoints(
            cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for mountpoint in value or ():
            if not mountpoint.startswith("/"):
                raise ValueError(f"mountpoints are absolute paths (got {mountpoint!r})")
        return value


_GPU_SWITCH_WORDS = {"yes": "true", "on": "true", "no": "false", "off": "false"}


def _gpu_switch(value: Any) -> Any:
    """YAML booleans (and the yes/on/no/off that bool keys accept) as 'true'/'false'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _GPU_SWITCH_WORDS.get(value.lower(), value.lower())
    return value


class GpuConfig(ConfigModel):
    """NVML sampling: `auto` turns it on when NVML loads."""

    enabled: Annotated[Literal["auto", "true", "false"], BeforeValidator(_gpu_switch)] = "auto"
    interval: PositiveDuration = 5.0


class ProbeConfig(ConfigModel):
    """An HTTP health check. `expect_status` None means any 2xx."""

    name: NonEmptyStr
    url: HttpUrl
    interval: PositiveDuration = 10.0
    timeout: PositiveDuration = 3.0
    verify_tls: bool = True
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] | None = Field(
        default=None, min_length=1)

    def accepts_status(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status <= 299
        return status in self.expect_status

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> ProbeConfig:
        if self.timeout >= self.interval:
            raise config_problem(("timeout",), "must be shorter than the probe's interval")
        return self


class ProcessConfig(ConfigModel):
    """A process to watch, found by a regex searched in its command line."""

    name: NonEmptyStr
    match: RegexPattern

    @cached_property
    def pattern(self) -> Regexp:
        return compile_regex(self.match)


class BudgetMatch(ConfigModel):
    """Which spend counts against a budget; unset keys match everything."""

    model: NonEmptyStr | None = None
    user: NonEmptyStr | None = None
    source: NonEmptyStr | None = None


class BudgetConfig(ConfigModel):
    """A spend limit per calendar period; thresholds are fractions of the limit."""

    name: NonEmptyStr
    period: Literal["day", "week", "month"]
    limit: PositiveMoney
    thresholds: tuple[PositiveMoney, ...] = Field(
        default=(Decimal("0.5"), Decimal("0.8"), Decimal("1.0")), min_length=1)
    match: BudgetMatch = Field(default_factory=BudgetMatch)

    @field_validator("thresholds")
    @classmethod
    def _increasing(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if any(later <= earlier for earlier, later in itertools.pairwise(value)):
            raise ValueError("must be in increasing order, without repeats")
        return value


def _check_currency(code: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(f"must be a three-letter ISO 4217 code such as CNY or USD "
                         f"(got {code!r})")
    return code


Currency = Annotated[str, AfterValidator(_check_currency)]


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as "
                         "Asia/Shanghai or UTC") from None
    return name


class CostConfig(ConfigModel):
    """Currency, budget time zone, price tables, exchange rates and budgets."""

    currency: Currency = "CNY"
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    pricing_files: tuple[GlobPattern, ...] = ()
    exchange_rates: dict[Currency, PositiveMoney] = Field(default_factory=dict)
    ledger_retention: PositiveDuration = 400 * 86400.0
    budgets: tuple[BudgetConfig, ...] = ()

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _unique_budget_names(self) -> CostConfig:
        problems = duplicate_name_problems("budgets", [b.name for b in self.budgets], "budget")
        if problems:
            raise config_problems(problems)
        return self


def _check_namespace(value: str) -> str:
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", value):
        raise ValueError(f"must match [a-zA-Z_][a-zA-Z0-9_]* (got {value!r})")
    return value


class Config(ConfigModel):
    """The whole configuration file. Build it with `monitor.config.load_config`."""

    namespace: Annotated[str, AfterValidator(_check_namespace)] = "inferwatch"
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    scrape_interval: PositiveDuration = 1.0
    evaluation_interval: PositiveDuration = 1.0
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    sources: tuple[SourceConfig, ...] = ()
    host: HostConfig = Field(default_factory=HostConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    probes: tuple[ProbeConfig, ...] = ()
    processes: tuple[ProcessConfig, ...] = ()
    rule_files: tuple[GlobPattern, ...] = ()
    slo_files: tuple[GlobPattern, ...] = ()
    cost: CostConfig = Field(default_factory=CostConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    # Prometheus's global.external_labels: added to the alerts forwarded to Alertmanager
    # (alertmanager_configs) that lack them, so a fleet's hosts stay apart there.
    external_labels: dict[LabelName, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _storage_sees_environment(cls, data: Any) -> Any:
        # An omitted section would be built by its default factory, outside the validation
        # context; validating `{}` instead lets $STATE_DIRECTORY from `environ` apply.
        if isinstance(data, dict) and data.get("storage") is None:
            return {**data, "storage": {}}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        problems = [
            *duplicate_name_problems("sources", [s.name for s in self.sources], "source"),
            *duplicate_name_problems("probes", [p.name for p in self.probes], "probe"),
            *duplicate_name_problems("processes", [p.name for p in self.processes], "process"),
            *((("external_labels", name), "label names starting with __ are reserved")
              for name in self.external_labels if name.startswith("__")),
            *((("external_labels", name), "must not be empty (an empty label is no label)")
              for name, value in self.external_labels.items() if value == ""),
        ]
        if problems:
            raise config_problems(problems)
        return self

    def source_by_name(self, name: str) -> SourceConfig:
        """The source called `name`; KeyError if there is none."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(f"no source named {name!r}")


__all__ = [
    "DEFAULT_FIELD_UNITS",
    "MAX_LINE_BYTES_LIMIT",
    "RESERVED_SOURCE_LABELS",
    "BudgetConfig",
    "BudgetMatch",
    "Config",
    "CostConfig",
    "EventField",
    "FieldSpec",
    "GpuConfig",
    "HostConfig",
    "IngestConfig",
    "MetricsConfig",
    "ProbeConfig",
    "ProcessConfig",
    "ServerConfig",
    "SourceConfig",
    "StorageConfig",
    "TimeUnit",
]
