"""Loading the configuration: YAML to a validated, frozen `Config`, or one clear ConfigError.

Owns: reading the file, composing the YAML node tree to know the line of every key,
refusing duplicate keys, `${ENV}` expansion, and turning every validation error into
`file:line: dotted.key: message` (all of them, one per line, in file order). The schema
itself lives in `config_models` (core sections), `config_notify` and `config_routing`
(the Alertmanager-shaped `notify`) and `config_types` (value types, secrets); everything a
caller needs is re-exported here.

YAML is read with YAML 1.2 core-schema scalars: only true/false are booleans and there are
no sexagesimal numbers or timestamps, so `on`, `no` or `16:30` stay strings.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from monitor.config_models import (
    DEFAULT_FIELD_UNITS,
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
from monitor.errors import ConfigError

DEFAULTS_FILE = "<defaults>"


@dataclass(frozen=True)
class _Problem:
    path: KeyPath
    message: str
    line: int | None = None


# --- YAML ----------------------------------------------------------------------------------


class _ConfigYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema booleans and numbers, and no timestamps."""


_YAML11_ONLY_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
                     "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_ONLY_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first_chars in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$",
     "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
):
    _ConfigYamlLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first_chars))

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NOT_A_KEY = object()


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context:
        message += f" ({exc.context}"
        if exc.context_mark is not None and mark is not None and (
                exc.context_mark.line != mark.line):
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return ConfigError(message, file=file, line=mark.line + 1 if mark is not None else None)


def _key_of(loader: _ConfigYamlLoader, key_node: yaml.Node) -> Any:
    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
        return _NOT_A_KEY
    return loader.construct_object(key_node)


def _index_lines(loader: _ConfigYamlLoader, node: yaml.Node, path: KeyPath,
                 lines: dict[KeyPath, int], problems: list[_Problem], *,
                 ancestors: frozenset[int] = frozenset()) -> None:
    """Record the line of every key and list item under `node`; report duplicate keys."""
    if id(node) in ancestors:
        return  # a recursive alias
    ancestors = ancestors | {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = _key_of(loader, key_node)
            if key is _NOT_A_KEY:
                continue
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(_Problem((*path, key), (
                    f"duplicate key {key!r} (first set at line {first_seen[key]}); "
                    "YAML would silently keep only the last one"), line))
            else:
                first_seen[key] = line
        loader.flatten_mapping(node)  # `<<` merges become ordinary keys, explicit ones last
        for key_node, value_node in node.value:
            key = _key_of(loader, key_node)
            if key is _NOT_A_KEY:
                continue
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(loader, value_node, (*path, key), lines, problems,
                         ancestors=ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index_lines(loader, item, (*path, index), lines, problems, ancestors=ancestors)


def _read_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, int], list[_Problem]]:
    """The document's data, the line of each key path, and any duplicate-key problems."""
    loader = _ConfigYamlLoader(text)
    lines: dict[KeyPath, int] = {}
    problems: list[_Problem] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lines, problems
        lines[()] = node.start_mark.line + 1
        _index_lines(loader, node, (), lines, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, lines, problems


# --- ${ENV} --------------------------------------------------------------------------------

_ENV_REFERENCE_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def _expand_string(text: str, path: KeyPath, environ: Mapping[str, str],
                   problems: list[_Problem]) -> str:
    def substitute(match: re.Match[str]) -> str:
        reference, name = match.group(0), match.group(1)
        if reference == "$$":
            return "$"
        if name is None:
            problems.append(_Problem(path, "invalid ${...} reference: write ${NAME}, "
                                           "or $$ for a literal $"))
            return reference
        if name not in environ:
            problems.append(_Problem(path, f"environment variable {name} is not set "
                                           f"(referenced as ${{{name}}})"))
            return reference
        return environ[name]

    return _ENV_REFERENCE_RE.sub(substitute, text)


def _expand_environment(value: Any, path: KeyPath, environ: Mapping[str, str],
                        problems: list[_Problem]) -> Any:
    """A copy of `value` with ${NAME} and $$ replaced in every string value (not keys)."""
    if isinstance(value, str):
        return _expand_string(value, path, environ, problems)
    if isinstance(value, dict):
        return {key: _expand_environment(item, (*path, key), environ, problems)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_environment(item, (*path, index), environ, problems)
                for index, item in enumerate(value)]
    return value


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


def _problems_from(exc: ValidationError) -> Iterator[_Problem]:
    for error in exc.errors(include_url=False):
        path: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
        if error["type"] == PROBLEMS_ERROR_TYPE:
            for subpath, message in (error.get("ctx") or {})["problems"]:
                yield _Problem((*path, *subpath), message)
        else:
            yield _Problem(path, _describe(error, path))


# --- assembling the error ------------------------------------------------------------------

_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_key_path(path: KeyPath) -> str:
    """`('sources', 0, 'start_at')` as `sources[0].start_at`; odd keys in brackets."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY_RE.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _line_of(problem: _Problem, lines: Mapping[KeyPath, int]) -> int | None:
    if problem.line is not None:
        return problem.line
    for length in range(len(problem.path), -1, -1):
        line = lines.get(problem.path[:length])
        if line is not None:
            return line
    return None


def _raise_problems(problems: list[_Problem], file: str, lines: Mapping[KeyPath, int]) -> None:
    located = sorted(
        ((_line_of(problem, lines), order, problem) for order, problem in enumerate(problems)),
        key=lambda item: (item[0] is None, item[0] or 0, item[1]),
    )
    rendered = [ConfigError(problem.message, file=file, line=line,
                            key=format_key_path(problem.path) or None)
                for line, _, problem in located]
    first = rendered[0]
    message = first.message + "".join(f"\n{error}" for error in rendered[1:])
    raise ConfigError(message, file=file, line=first.line, key=first.key)


def _under(path: KeyPath, prefixes: list[KeyPath]) -> bool:
    return any(path[:len(prefix)] == prefix for prefix in prefixes)


def _build_config(data: Any, *, file: str, lines: Mapping[KeyPath, int],
                  problems: list[_Problem], context: LoadContext) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(_Problem((), "the top level must be a mapping of keys such as "
                                     "namespace, server and sources"))
        _raise_problems(problems, file, lines)
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
        _raise_problems(problems, file, lines)
    assert config is not None
    return config


# --- the public entry points ---------------------------------------------------------------


def parse_config(text: str, *, file: str = "<config>", base_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Config:
    """Validate YAML `text`; relative paths resolve against `base_dir` (default: cwd)."""
    data, lines, problems = _read_yaml(text, file)
    context = LoadContext(base_dir=base_dir if base_dir is not None else Path.cwd(),
                          environ=environ if environ is not None else os.environ)
    return _build_config(data, file=file, lines=lines, problems=problems, context=context)


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
    return parse_config(text, file=file, base_dir=Path(file).absolute().parent,
                        environ=environ)


def default_config(**overrides: Any) -> Config:
    """The embedded defaults (no sources), with top-level keys replaced as YAML would.

    Overrides are plain values (`storage={"path": "./var/demo"}`) and go through the same
    expansion and validation as a file; relative paths resolve against the working directory.
    """
    return _build_config(dict(overrides), file=DEFAULTS_FILE, lines={}, problems=[],
                         context=LoadContext())


__all__ = [
    "DEFAULT_FIELD_UNITS",
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
