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
from contextlib import contextmanager
from dataclasses import dataclass
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
from monitor.errors import ConfigError

DEFAULTS_FILE = "<defaults>"


@dataclass(frozen=True)
class _Problem:
    path: KeyPath
    message: str
    line: int | None = None


# --- YAML ----------------------------------------------------------------------------------

# Limits on hostile input, far beyond any real configuration: deeper nesting (written out or
# through aliases) or more values once aliases are expanded is a ConfigError, not a
# RecursionError or a "billion laughs" exhausting memory.
MAX_NESTING = 100
MAX_EXPANDED_VALUES = 200_000
_MAX_INT_DIGITS = 4300  # Python's own limit on int <-> decimal text (sys.int_info)
_INT_LIMIT = 10**_MAX_INT_DIGITS


class _ConfigYamlLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema booleans and numbers, and no timestamps.

    It also refuses nesting deeper than MAX_NESTING, turns a scalar that its tag cannot
    read (`!!int abc`, a 5,000-digit integer) into a ConstructorError with a position, and
    keeps a merged mapping free of shadowed keys so chained `<<` merges cannot double it.
    """

    def __init__(self, stream: str) -> None:
        self._depth = 0
        super().__init__(stream)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped stub
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_NESTING} levels deep",
                    event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value as {tag}: {exc}",
                node.start_mark) from exc

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if sum(char.isalnum() for char in text) > _MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer too large: more than {_MAX_INT_DIGITS} digits",
                node.start_mark)
        value: int = super().construct_yaml_int(node)
        if abs(value) >= _INT_LIMIT:  # 0x…, 0o… and 0b… literals pack more into each digit
            raise yaml.constructor.ConstructorError(
                None, None, f"integer too large: more than {_MAX_INT_DIGITS} decimal digits",
                node.start_mark)
        return value

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)
        # A merged-in key that a later key shadows would be dropped by construction anyway;
        # dropping it now keeps `{<<: [*a, *a]}` chains linear instead of doubling each time.
        last: dict[tuple[str, str], int] = {}
        for position, (key_node, _) in enumerate(node.value):
            if isinstance(key_node, yaml.ScalarNode):
                last[(key_node.tag, key_node.value)] = position
        if len(last) < sum(isinstance(key, yaml.ScalarNode) for key, _ in node.value):
            node.value = [
                (key_node, value_node)
                for position, (key_node, value_node) in enumerate(node.value)
                if not isinstance(key_node, yaml.ScalarNode)
                or last[(key_node.tag, key_node.value)] == position
            ]


_ConfigYamlLoader.add_constructor("tag:yaml.org,2002:int",
                                  _ConfigYamlLoader.construct_yaml_int)

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
_LINE_BREAK_RE = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")
_CONTROL_CHAR_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _one_line(text: str) -> str:
    """`text` as a single line: line breaks joined with spaces, other controls escaped."""
    joined = " ".join(part.strip() for part in text.splitlines() if part.strip())
    escaped = _CONTROL_CHAR_RE.sub(lambda match: f"\\x{ord(match.group()):02x}", joined)
    # A lone surrogate (from a "\ud800" escape) could not be printed to a UTF-8 stderr.
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def _line_at(text: str, position: int) -> int:
    """The 1-based line of character `position`, counting line breaks as YAML does."""
    return len(_LINE_BREAK_RE.findall(text, 0, position)) + 1


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context:
        message += f" ({exc.context}"
        if exc.context_mark is not None and mark is not None and (
                exc.context_mark.line != mark.line):
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return ConfigError(_one_line(message), file=file,
                       line=mark.line + 1 if mark is not None else None)


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> ConfigError:
    return ConfigError(f"invalid YAML: character #x{exc.character:04x} is not allowed "
                       f"({exc.reason}); write it as an escape in a double-quoted string",
                       file=file, line=_line_at(text, exc.position))


def _key_of(loader: _ConfigYamlLoader, key_node: yaml.Node) -> Any:
    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
        return _NOT_A_KEY
    return loader.construct_object(key_node)


class _StopIndexing(Exception):
    """The node tree cannot be used at all; carries the problem that says why."""

    def __init__(self, problem: _Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class _LineIndex:
    """Walks the node tree once: the line of every key and list item, duplicate keys,
    and the aliases that would make the data recursive, too deep or too large."""

    loader: _ConfigYamlLoader
    lines: dict[KeyPath, int]
    problems: list[_Problem]
    recursive: bool = False
    visited: int = 0

    def walk(self, node: yaml.Node, path: KeyPath, ancestors: frozenset[int]) -> None:
        if id(node) in ancestors:
            self.recursive = True
            self.problems.append(_Problem(path, (
                "recursive YAML alias: the value contains itself (an alias used inside "
                "its own anchor)")))
            return
        self.visited += 1
        if self.visited > MAX_EXPANDED_VALUES:
            raise _StopIndexing(_Problem(path, (
                f"more than {MAX_EXPANDED_VALUES} values once aliases are expanded; "
                "check for aliases that multiply each other")))
        if len(path) > MAX_NESTING:
            raise _StopIndexing(_Problem(path, (
                f"nested more than {MAX_NESTING} levels deep once aliases are expanded")))
        ancestors = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path, ancestors)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                self.walk(item, (*path, index), ancestors)

    def _walk_mapping(self, node: yaml.MappingNode, path: KeyPath,
                      ancestors: frozenset[int]) -> None:
        first_seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = _key_of(self.loader, key_node)
            if key is _NOT_A_KEY:
                continue
            line = key_node.start_mark.line + 1
            if key in first_seen:
                self.problems.append(_Problem((*path, key), (
                    f"duplicate key {key!r} (first set at line {first_seen[key]}); "
                    "YAML would silently keep only the last one"), line))
            else:
                first_seen[key] = line
        self.loader.flatten_mapping(node)  # `<<` merges become ordinary keys, explicit last
        for key_node, value_node in node.value:
            key = _key_of(self.loader, key_node)
            if key is _NOT_A_KEY:
                continue
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            self.walk(value_node, (*path, key), ancestors)


def _read_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, int], list[_Problem]]:
    """The document's data, the line of each key path, and any duplicate-key problems."""
    lines: dict[KeyPath, int] = {}
    problems: list[_Problem] = []
    loader: _ConfigYamlLoader | None = None
    try:
        loader = _ConfigYamlLoader(text)  # checks every character up front
        node = loader.get_single_node()
        if node is None:
            return {}, lines, problems
        lines[()] = node.start_mark.line + 1
        index = _LineIndex(loader, lines, problems)
        try:
            index.walk(node, (), frozenset())
        except _StopIndexing as stop:
            problems.append(stop.problem)
            _raise_problems(problems, file, lines)
        if index.recursive:
            _raise_problems(problems, file, lines)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from exc
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(_one_line(f"invalid YAML: {exc}"), file=file) from exc
    finally:
        if loader is not None:
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
                        problems: list[_Problem], *,
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
        problems.append(_Problem(path, "recursive value: it contains itself"))
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


def _problems_from(exc: ValidationError) -> Iterator[_Problem]:
    for error in exc.errors(include_url=False):
        path: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
        if error["type"] == PROBLEMS_ERROR_TYPE:
            for subpath, message in (error.get("ctx") or {})["problems"]:
                yield _Problem((*path, *subpath), message)
        else:
            yield _Problem(path, _describe(error, path))


# --- assembling the error ------------------------------------------------------------------

_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_key_path(path: KeyPath) -> str:
    """`('sources', 0, 'start_at')` as `sources[0].start_at`; odd keys in brackets."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY_RE.fullmatch(part):
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
    rendered = [ConfigError(_one_line(problem.message), file=file, line=line,
                            key=_one_line(format_key_path(problem.path)) or None)
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
        raise ConfigError(_one_line(f"cannot load the configuration: {type(exc).__name__}: "
                                    f"{exc}"), file=file) from exc


def parse_config(text: str, *, file: str = "<config>", base_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Config:
    """Validate YAML `text`; relative paths resolve against `base_dir` (default: cwd).

    Any problem, however malformed the text, raises ConfigError: one line per problem,
    each naming the file (and the line and key where known).
    """
    with _only_config_errors(file):
        data, lines, problems = _read_yaml(text, file)
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
        raise ConfigError(f"cannot read config file: {exc}", file=_one_line(file)) from exc
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
