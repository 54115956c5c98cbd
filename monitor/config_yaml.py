"""Reading configuration YAML: the node tree with the line of every key, and its limits.

Owns the YAML side of config loading: a SafeLoader with YAML 1.2 core-schema scalars (only
true/false are booleans; no sexagesimal numbers or timestamps), refusal of duplicate keys, the
index from each key path to its line, and the limits on hostile text (characters YAML forbids,
recursive aliases, nesting beyond MAX_NESTING, alias bombs, unreadable tagged scalars, integers
too long for Python), each reported as a `Problem` or ConfigError with its line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from monitor.config_types import KeyPath
from monitor.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    path: KeyPath
    message: str
    line: int | None = None


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


def one_line(text: str) -> str:
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
    return ConfigError(one_line(message), file=file,
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

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class _LineIndex:
    """Walks the node tree once: the line of every key and list item, duplicate keys,
    and the aliases that would make the data recursive, too deep or too large."""

    loader: _ConfigYamlLoader
    lines: dict[KeyPath, int]
    problems: list[Problem]
    recursive: bool = False
    visited: int = 0

    def walk(self, node: yaml.Node, path: KeyPath, ancestors: frozenset[int]) -> None:
        if id(node) in ancestors:
            self.recursive = True
            self.problems.append(Problem(path, (
                "recursive YAML alias: the value contains itself (an alias used inside "
                "its own anchor)")))
            return
        self.visited += 1
        if self.visited > MAX_EXPANDED_VALUES:
            raise _StopIndexing(Problem(path, (
                f"more than {MAX_EXPANDED_VALUES} values once aliases are expanded; "
                "check for aliases that multiply each other")))
        if len(path) >= MAX_NESTING:
            raise _StopIndexing(Problem(path, (
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
                self.problems.append(Problem((*path, key), (
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


def read_yaml(text: str, file: str) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """The document's data, the line of each key path, and any duplicate-key problems."""
    lines: dict[KeyPath, int] = {}
    problems: list[Problem] = []
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
            raise_problems(problems, file, lines)
        if index.recursive:
            raise_problems(problems, file, lines)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, file) from exc
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(one_line(f"invalid YAML: {exc}"), file=file) from exc
    finally:
        if loader is not None:
            loader.dispose()
    return data, lines, problems


# --- ${ENV} --------------------------------------------------------------------------------


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


def _line_of(problem: Problem, lines: Mapping[KeyPath, int]) -> int | None:
    if problem.line is not None:
        return problem.line
    for length in range(len(problem.path), -1, -1):
        line = lines.get(problem.path[:length])
        if line is not None:
            return line
    return None


def raise_problems(problems: list[Problem], file: str, lines: Mapping[KeyPath, int]) -> None:
    located = sorted(
        ((_line_of(problem, lines), order, problem) for order, problem in enumerate(problems)),
        key=lambda item: (item[0] is None, item[0] or 0, item[1]),
    )
    rendered = [ConfigError(one_line(problem.message), file=file, line=line,
                            key=one_line(format_key_path(problem.path)) or None)
                for line, _, problem in located]
    first = rendered[0]
    message = first.message + "".join(f"\n{error}" for error in rendered[1:])
    raise ConfigError(message, file=file, line=first.line, key=first.key)
