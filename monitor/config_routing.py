"""Alertmanager routing: label matchers, the route tree and inhibit rules.

Owns: matchers parsed exactly like Alertmanager's classic `ParseMatchers` (quoted or bare
values, several per string, regexes fully anchored), `RouteConfig` as written in YAML, and
`resolve_route`, which fills in what each child route inherits (receiver, group_by,
group_wait, group_interval, repeat_interval) to give `ResolvedRoute` trees.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from monitor.config_types import (
    ConfigModel,
    Duration,
    LabelName,
    NonEmptyStr,
    PositiveDuration,
    RegexPattern,
    compile_regex,
    config_problem,
)
from monitor.goregexp import Regexp

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0

MatchOperator = Literal["=", "!=", "=~", "!~"]
_OPERATORS: dict[str, MatchOperator] = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}

_MATCHER_RE = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.S)


class Matcher(ConfigModel):
    """One label matcher; regexes are fully anchored and a missing label reads as ''."""

    name: str
    op: MatchOperator
    value: str

    @model_validator(mode="after")
    def _compile(self) -> Matcher:
        if self.op in ("=~", "!~"):
            compile_regex(f"^(?:{self.value})$")
        return self

    @cached_property
    def regex(self) -> Regexp | None:
        return compile_regex(f"^(?:{self.value})$") if self.op in ("=~", "!~") else None

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        found = self.regex.match(value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def _split_matcher_list(text: str) -> list[str]:
    """Alertmanager's tokenizer: commas outside double quotes separate matchers."""
    text = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    token: list[str] = []
    inside_quotes = escaped = False
    for char in text:
        if char == "," and not inside_quotes:
            tokens.append("".join(token))
            token = []
            continue
        if char == '"':
            if escaped:
                escaped = False
            else:
                inside_quotes = not inside_quotes
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        token.append(char)
    if "".join(token).strip():
        tokens.append("".join(token))
    return tokens


def _unquote_matcher_value(raw: str) -> str:
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index < len(body) - 1:
            following = body[index + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(following, "\\" + following))
            index += 2
            continue
        if char == '"':
            if not quoted or index < len(body) - 1:
                raise ValueError(f"matcher value contains an unescaped double quote: {raw}")
            quoted = False
        else:
            out.append(char)
        index += 1
    if quoted:
        raise ValueError(f"matcher value contains an unescaped double quote: {raw}")
    return "".join(out)


def parse_matchers(text: str) -> list[Matcher]:
    """`severity="page"`, `{a=~"x.*", b!=c}` … into matchers, as Alertmanager reads them."""
    return [parse_matcher(token) for token in _split_matcher_list(text)]


def parse_matcher(text: str) -> Matcher:
    """Exactly one matcher, as Alertmanager's classic `labels.ParseMatcher` reads it: no
    braces, and an unquoted value runs to the end, commas included."""
    match = _MATCHER_RE.match(text)
    if match is None:
        raise ValueError(f"bad matcher format: {text.strip()!r}; write e.g. "
                         'severity="page" (operators = != =~ !~)')
    name, op_text, raw_value = match.groups()
    op = _OPERATORS[op_text]
    value = _unquote_matcher_value(raw_value)
    if op in ("=~", "!~"):
        compile_regex(value)
    return Matcher(name=name, op=op, value=value)


def _parse_matcher_list(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return value  # the tuple type check reports it
    matchers: list[Matcher] = []
    for index, item in enumerate(value):
        if isinstance(item, Matcher):
            matchers.append(item)
            continue
        if not isinstance(item, str):
            raise config_problem((index,), 'must be a string such as severity="page"')
        try:
            matchers.extend(parse_matchers(item))
        except ValueError as exc:
            raise config_problem((index,), str(exc)) from None
    return tuple(matchers)


Matchers = Annotated[tuple[Matcher, ...], BeforeValidator(_parse_matcher_list)]


def _legacy_matchers(equal: Mapping[str, str], regex: Mapping[str, str]) -> tuple[Matcher, ...]:
    """The deprecated `match` / `match_re` maps as matchers."""
    return (*(Matcher(name=n, op="=", value=v) for n, v in equal.items()),
            *(Matcher(name=n, op="=~", value=v) for n, v in regex.items()))


class RouteConfig(ConfigModel):
    """A routing node as written; unset settings (None) inherit from the parent route."""

    receiver: NonEmptyStr | None = None
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: PositiveDuration | None = None
    repeat_interval: PositiveDuration | None = None
    matchers: Matchers = ()
    match: dict[LabelName, str] = Field(default_factory=dict)
    match_re: dict[LabelName, RegexPattern] = Field(default_factory=dict)
    continue_: bool = Field(default=False, alias="continue")
    routes: tuple[RouteConfig, ...] = ()

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if not value:
            return value
        if "..." in value and len(value) > 1:
            raise ValueError("'...' (group by every label) cannot be combined with other labels")
        for label in value:
            if label != "..." and not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
                raise ValueError(f"invalid label name {label!r} in group_by")
        duplicates = sorted({label for label in value if value.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicated label {duplicates[0]!r} in group_by")
        return value

    @property
    def all_matchers(self) -> tuple[Matcher, ...]:
        """`match`, `match_re` and `matchers` together (all must match)."""
        return (*_legacy_matchers(self.match, self.match_re), *self.matchers)


@dataclass(frozen=True)
class ResolvedRoute:
    """A route with every inheritable setting filled in; `path` names it in logs and errors."""

    path: str
    receiver: str
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait: float
    group_interval: float
    repeat_interval: float
    matchers: tuple[Matcher, ...]
    continue_: bool
    routes: tuple[ResolvedRoute, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(matcher.matches(labels) for matcher in self.matchers)


_ROOT_DEFAULTS = ResolvedRoute(
    path="", receiver="", group_by=(), group_by_all=False, group_wait=DEFAULT_GROUP_WAIT,
    group_interval=DEFAULT_GROUP_INTERVAL, repeat_interval=DEFAULT_REPEAT_INTERVAL,
    matchers=(), continue_=False, routes=(),
)


def resolve_route(route: RouteConfig, parent: ResolvedRoute | None,
                  path: str = "route") -> ResolvedRoute:
    """`route` with the settings it leaves unset taken from `parent` (or the defaults).

    As in Alertmanager, an empty `group_by` inherits and `['...']` groups by every label.
    """
    inherited = parent or _ROOT_DEFAULTS
    group_by, group_by_all = inherited.group_by, inherited.group_by_all
    if route.group_by == ("...",):
        group_by_all = True
    elif route.group_by:
        group_by, group_by_all = route.group_by, False
    node = ResolvedRoute(
        path=path,
        receiver=route.receiver or inherited.receiver,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait=inherited.group_wait if route.group_wait is None else route.group_wait,
        group_interval=(inherited.group_interval if route.group_interval is None
                        else route.group_interval),
        repeat_interval=(inherited.repeat_interval if route.repeat_interval is None
                         else route.repeat_interval),
        matchers=route.all_matchers,
        continue_=route.continue_,
        routes=(),
    )
    children = tuple(resolve_route(child, node, f"{path}.routes[{index}]")
                     for index, child in enumerate(route.routes))
    return dataclasses.replace(node, routes=children)


class InhibitRule(ConfigModel):
    """Mute alerts matching the target while one matching the source fires (same `equal`)."""

    source_matchers: Matchers = ()
    target_matchers: Matchers = ()
    equal: tuple[LabelName, ...] = ()
    source_match: dict[LabelName, str] = Field(default_factory=dict)
    source_match_re: dict[LabelName, RegexPattern] = Field(default_factory=dict)
    target_match: dict[LabelName, str] = Field(default_factory=dict)
    target_match_re: dict[LabelName, RegexPattern] = Field(default_factory=dict)

    @property
    def all_source_matchers(self) -> tuple[Matcher, ...]:
        return (*_legacy_matchers(self.source_match, self.source_match_re),
                *self.source_matchers)

    @property
    def all_target_matchers(self) -> tuple[Matcher, ...]:
        return (*_legacy_matchers(self.target_match, self.target_match_re),
                *self.target_matchers)




def matcher_text(raw: Mapping[str, Any]) -> str:
    """An API v2 matcher object (name, value, isRegex, isEqual) as `name=~"value"`."""
    op = {(False, True): "=", (False, False): "!=", (True, True): "=~",
          (True, False): "!~"}[(bool(raw.get("isRegex")), bool(raw.get("isEqual", True)))]
    value = str(raw.get("value", "")).replace("\\", "\\\\").replace('"', '\\"')
    return f'{raw.get("name", "")}{op}"{value}"'
