"""Loading the configuration: YAML to a validated, frozen `Config`, or one clear ConfigError.

Owns: reading the file, composing the YAML node tree to know the line of every key,
refusing duplicate keys, `${ENV}` expansion, and turning every validation error into
`file:line: dotted.key: message` (all of them, one per line, in file order). The schema
itself lives in `config_models` (core sections), `config_notify` and `config_routing`
(the Alertmanager-shaped `notify`) and `config_types` (value types, secrets); everything a
caller needs is re-exported here.

YAML is read with YAML 1.2 core-schema scalars: only true/false are booleans and there are
no sexagesimal numbers or timestamps, so `on`, `no` or `16:30` stay strings.

Whatever the text, the only exception that leaves `parse_config`/`load_config` is
ConfigError: characters YAML forbids, recursive aliases, nesting beyond MAX_NESTING, alias
bombs, unreadable tagged scalars and integers too long for Python are reported with their
line, and anything else a reader or validator raises is wrapped at the boundary. No single
problem's text contains a line break, so each problem is exactly one line.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from monitor.config_models import (
    DEFAULT_FIELD_UNITS,
    MAX_LINE_BYTES_LIMIT,
    RESERVED_SOURCE_LABELS,
    BudgetConfig,
    BudgetMatch,
    Config,
    CostConfig,
    EventField,
    FieldSpec,
    GpuConfig,
    HostConfig,
    IngestConfig,
    MetricsConfig,
    ProbeConfig,
    ProcessConfig,
    ServerConfig,
    SourceConfig,
    StorageConfig,
    TimeUnit,
)
from monitor.config_notify import (
    AlertmanagerForwardConfig,
    Authorization,
    BasicAuth,
    DingtalkConfig,
    EmailConfig,
    FeishuConfig,
    HttpClientConfig,
    IntegrationConfig,
    NotifyConfig,
    ReceiverConfig,
    TlsConfig,
    WebhookConfig,
    WecomConfig,
)
from monitor.config_routing import (
    InhibitRule,
    Matcher,
    ResolvedRoute,
    RouteConfig,
    parse_matchers,
    resolve_route,
)
from monitor.config_types import (
    CONTEXT_KEY,
    PROBLEMS_ERROR_TYPE,
    ConfigModel,
    KeyPath,
    LoadContext,
)
from monitor.config_yaml import Problem, format_key_path, one_line, raise_problems, read_yaml
from monitor.errors import ConfigError

DEFAULTS_FILE = "<defaults>"


_ENV_REFERENCE_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def _expand_string(text: str, path: KeyPath, environ: Mapping[str, str],
                   problems: list[Problem]) -> str:
    def substitute(match: re.Match[str]) -> str:
        reference, name = match.group(0), match.group(1)
        if reference == "$$":
            return "$"
        if name is None:
            problems.append(Problem(path, "invalid ${...} reference: write ${NAME}, "
                                           "or $$ for a literal $"))
            return reference
        if name not in environ:
            problems.append(Problem(path, f"environment variable {name} is not set "
                                           f"(referenced as ${{{name}}})"))
            return reference
        return environ[name]

    return _ENV_REFERENCE_RE.sub(substitute, text)


def _expand_environment(value: Any, path: KeyPath, environ: Mapping[str, str],
                        problems: list[Problem], *,
                        ancestors: frozenset[int] = frozenset()) -> Any:
    """A copy of `value` with ${NAME} and $$ replaced in every string value (not keys).

    A container inside itself (only possible from Python; the YAML reader refuses such
    aliases first) is reported and replaced by None rather than followed forever.
    """
    if isinstance(value, str):
        return _expand_string(value, path, environ, problems)
    if not isinstance(value, dict | list):
        return value
    if id(value) in ancestors:
        problems.append(Problem(path, "recursive value: it contains itself"))
        return None
    ancestors = ancestors | {id(value)}
    if isinstance(value, dict):
        return {key: _expand_environment(item, (*path, key), environ, problems,
                                         ancestors=ancestors)
                for key, item in value.items()}
    return [_expand_environment(item, (*path, index), environ, problems, ancestors=ancestors)
            for index, item in enumerate(value)]


# --- pydantic errors to problems -----------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The model class that validates the mapping at `path`, if the path leads to one."""
    annotation: Any = Config
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = next((info for name, info in annotation.model_fields.items()
                          if (info.alias or name) == part), None)
            if field is None:
                return None
            annotation = field.annotation
        elif get_origin(annotation) in (list, tuple):
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _did_you_mean(word: object, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _secret_keys() -> frozenset[str]:
    keys: set[str] = set()
    pending: list[type[ConfigModel]] = [ConfigModel]
    while pending:
        model = pending.pop()
        keys.update(model.secret_fields)
        pending.extend(model.__subclasses__())
    return frozenset(keys)


_SECRET_KEYS = _secret_keys()


def _describe_input(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: ErrorDetails, path: KeyPath) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    key = path[-1] if path else ""
    shows_input = not (isinstance(key, str) and key in _SECRET_KEYS)
    got = f" (got {_describe_input(error['input'])})" if shows_input else ""
    if kind == "extra_forbidden":
        model = _model_at(path[:-1])
        allowed = [info.alias or name for name, info in model.model_fields.items()] if model \
            else []
        return f"unknown key {key!r}{_did_you_mean(key, allowed)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        suggestion = _did_you_mean(error["input"], options) if shows_input else ""
        return f"must be one of {', '.join(options)}{got}{suggestion}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping{got}"
    if kind == "path_type":
        return f"must be a file path{got}"
    if kind == "invalid_key":
        return f"unknown key {key!r}: keys must be text"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if kind == "string_type" and isinstance(error["input"], int | float):
        return f"must be a string{got}; quote it to use it as text"
    message = error["msg"].removeprefix("Value error, ")
    message = re.sub(r"^Input should be ", "must be ", message)
    if kind.endswith(("_type", "_parsing")) or kind in ("greater_than_equal", "less_than_equal"):
        message += got
    return message


def _problems_from(exc: ValidationError) -> Iterator[Problem]:
    for error in exc.errors(include_url=False):
        path: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
        if error["type"] == PROBLEMS_ERROR_TYPE:
            for subpath, message in (error.get("ctx") or {})["problems"]:
                yield Problem((*path, *subpath), message)
        else:
            yield Problem(path, _describe(error, path))


# --- assembling the error ------------------------------------------------------------------

def _under(path: KeyPath, prefixes: list[KeyPath]) -> bool:
    return any(path[:len(prefix)] == prefix for prefix in prefixes)


def _build_config(data: Any, *, file: str, lines: Mapping[KeyPath, int],
                  problems: list[Problem], context: LoadContext) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem((), "the top level must be a mapping of keys such as "
                                     "namespace, server and sources"))
        raise_problems(problems, file, lines)
    env_problem_count = len(problems)
    data = _expand_environment(data, (), context.environ, problems)
    # A value whose ${ENV} failed is still the raw text; its own errors would be noise.
    unexpanded = [problem.path for problem in problems[env_problem_count:]]
    config: Config | None = None
    try:
        config = Config.model_validate(data, context={CONTEXT_KEY: context})
    except ValidationError as exc:
        problems.extend(problem for problem in _problems_from(exc)
                        if not _under(problem.path, unexpanded))
    if problems or config is None:
        raise_problems(problems, file, lines)
    assert config is not None
    return config


# --- the public entry points ---------------------------------------------------------------


@contextmanager
def _only_config_errors(file: str) -> Iterator[None]:
    """The loader's boundary: whatever hostile text makes the YAML reader or a validator
    raise comes out as a one-line ConfigError naming the file (the cause chained)."""
    try:
        yield
    except ConfigError:
        raise
    except RecursionError as exc:
        raise ConfigError("the configuration is nested too deeply to read (nesting, "
                          "aliases or merge keys)", file=file) from exc
    except (ValueError, TypeError, LookupError, ArithmeticError, AttributeError,
            yaml.YAMLError) as exc:
        raise ConfigError(one_line(f"cannot load the configuration: {type(exc).__name__}: "
                                    f"{exc}"), file=file) from exc


def parse_config(text: str, *, file: str = "<config>", base_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Config:
    """Validate YAML `text`; relative paths resolve against `base_dir` (default: cwd).

    Any problem, however malformed the text, raises ConfigError: one line per problem,
    each naming the file (and the line and key where known).
    """
    with _only_config_errors(file):
        data, lines, problems = read_yaml(text, file)
        context = LoadContext(base_dir=base_dir if base_dir is not None else Path.cwd(),
                              environ=environ if environ is not None else os.environ)
        return _build_config(data, file=file, lines=lines, problems=problems,
                             context=context)


def load_config(path: str | os.PathLike[str], *,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at `path`; raises ConfigError naming file:line: key."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("config file is not UTF-8 text", file=file) from exc
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"cannot read config file: {exc}", file=one_line(file)) from exc
    return parse_config(text, file=file, base_dir=Path(file).absolute().parent,
                        environ=environ)


def default_config(**overrides: Any) -> Config:
    """The embedded defaults (no sources), with top-level keys replaced as YAML would.

    Overrides are plain values (`storage={"path": "./var/demo"}`) and go through the same
    expansion and validation as a file; relative paths resolve against the working directory.
    """
    with _only_config_errors(DEFAULTS_FILE):
        return _build_config(dict(overrides), file=DEFAULTS_FILE, lines={}, problems=[],
                             context=LoadContext())


__all__ = [
    "DEFAULT_FIELD_UNITS",
    "MAX_LINE_BYTES_LIMIT",
    "RESERVED_SOURCE_LABELS",
    "AlertmanagerForwardConfig",
    "Authorization",
    "BasicAuth",
    "BudgetConfig",
    "BudgetMatch",
    "Config",
    "ConfigError",
    "CostConfig",
    "DingtalkConfig",
    "EmailConfig",
    "EventField",
    "FeishuConfig",
    "FieldSpec",
    "GpuConfig",
    "HostConfig",
    "HttpClientConfig",
    "IngestConfig",
    "InhibitRule",
    "IntegrationConfig",
    "Matcher",
    "MetricsConfig",
    "NotifyConfig",
    "ProbeConfig",
    "ProcessConfig",
    "ReceiverConfig",
    "ResolvedRoute",
    "RouteConfig",
    "ServerConfig",
    "SourceConfig",
    "StorageConfig",
    "TimeUnit",
    "TlsConfig",
    "WebhookConfig",
    "WecomConfig",
    "default_config",
    "format_key_path",
    "load_config",
    "parse_config",
    "parse_matchers",
    "resolve_route",
]
