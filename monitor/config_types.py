"""The value types and the base model shared by every configuration model.

Owns: Prometheus durations, byte sizes, exact money, regexes, label names, URLs and
`host:port` as pydantic `Annotated` types; relative-path resolution; the `X` / `X_file`
secret twins (read at load time, `$CREDENTIALS_DIRECTORY` first); and `config_problem`, the
one way a model validator reports an error against a specific key so that the loader can
name file, line and key path.

Relative paths and globs resolve against the directory of the config file, as Prometheus
does. The loader passes that directory (and the environment) as the validation context; a
model built without one resolves against the working directory and `os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from monitor.goregexp import Regexp, RegexpError, compile_go_regexp
from monitor.units import parse_bytes, parse_duration

CONTEXT_KEY = "inferwatch_config"
PROBLEMS_ERROR_TYPE = "config_problems"

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadContext:
    """What validation needs from outside the YAML: where the file is, and the environment."""

    base_dir: Path = field(default_factory=Path.cwd)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def resolve(self, path: str) -> Path:
        """`path` made absolute against the config file's directory."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def find_secret_file(self, path: str) -> Path:
        """Absolute paths as given; relative ones in $CREDENTIALS_DIRECTORY first, if there."""
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate
        credentials_dir = self.environ.get("CREDENTIALS_DIRECTORY")
        if credentials_dir:
            credential = Path(credentials_dir) / candidate
            if credential.is_file():
                return credential
        return self.base_dir / candidate


def load_context(info: ValidationInfo) -> LoadContext:
    """The loader's context, or one for the working directory when validated directly."""
    context = info.context.get(CONTEXT_KEY) if isinstance(info.context, dict) else None
    return context if isinstance(context, LoadContext) else LoadContext()


def config_problems(problems: Sequence[tuple[KeyPath, str]]) -> PydanticCustomError:
    """An error carrying (key path relative to the model, message) pairs for the loader.

    Raise it from a model validator; the loader appends each key path to the model's own
    location, so the message names the exact key and line.
    """
    summary = "; ".join(message for _, message in problems)
    return PydanticCustomError(
        PROBLEMS_ERROR_TYPE, "{summary}", {"summary": summary, "problems": list(problems)}
    )


def config_problem(key: KeyPath, message: str) -> PydanticCustomError:
    """`config_problems` for a single key."""
    return config_problems([(key, message)])


def duplicate_name_problems(
        list_key: str, names: list[str], what: str) -> list[tuple[KeyPath, str]]:
    """A problem on `list_key[i].name` for each name that an earlier entry already used."""
    first_index: dict[str, int] = {}
    problems: list[tuple[KeyPath, str]] = []
    for index, name in enumerate(names):
        if name in first_index:
            problems.append(((list_key, index, "name"), (
                f"duplicate {what} name {name!r} (first used by {list_key}[{first_index[name]}])"
            )))
        else:
            first_index[name] = index
    return problems


# --- durations, sizes, money --------------------------------------------------------------


def _to_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise config_problem((), "must be a duration such as 30s, 5m, 1h30m")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        if value < 0:
            raise config_problem((), "a duration cannot be negative")
        raise ValueError(f"a bare number is not a duration: add a unit, e.g. {value}s")
    if _too_many_digits(value):
        raise ValueError(f"duration is too long (more than {_MAX_NUMBER_DIGITS} digits)")
    try:
        return parse_duration(value.strip())
    except OverflowError:
        raise ValueError("duration is too long") from None


def _require_positive_duration(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0s")
    return seconds


Duration = Annotated[float, BeforeValidator(_to_seconds)]
"""Seconds, written in Prometheus syntax (`30s`, `1h30m`, `7d`); `0` alone is allowed."""

PositiveDuration = Annotated[
    float, BeforeValidator(_to_seconds), AfterValidator(_require_positive_duration)
]


_MAX_NUMBER_DIGITS = 30  # more digits than any size or duration can sensibly need


def _too_many_digits(text: str) -> bool:
    return sum(char.isdigit() for char in text) > _MAX_NUMBER_DIGITS


def _to_bytes(value: object) -> int:
    if not isinstance(value, int | str):
        raise config_problem((), "must be a byte size such as 1048576 or 1MiB")
    if isinstance(value, str) and _too_many_digits(value):
        raise ValueError(f"byte size is too large (more than {_MAX_NUMBER_DIGITS} digits)")
    return parse_bytes(value)


def _require_positive_int(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


ByteSize = Annotated[int, BeforeValidator(_to_bytes), AfterValidator(_require_positive_int)]
PositiveInt = Annotated[int, AfterValidator(_require_positive_int)]


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise config_problem((), "must be a number")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # str() is the shortest text that reads back as this float, i.e. what the YAML said;
        # Decimal(float) would carry the binary approximation (0.1 -> 0.1000000000000000055...).
        amount = Decimal(str(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"must be a decimal number (got {value!r})") from None
    else:
        raise config_problem((), "must be a number")
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    return amount


def _require_positive_decimal(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise ValueError("must be greater than 0")
    return amount


def _require_non_negative_decimal(amount: Decimal) -> Decimal:
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


Money = Annotated[Decimal, BeforeValidator(_to_decimal)]
"""An exact decimal; YAML numbers are read from their text, never their binary value."""

PositiveMoney = Annotated[
    Decimal, BeforeValidator(_to_decimal), AfterValidator(_require_positive_decimal)
]
NonNegativeMoney = Annotated[
    Decimal, BeforeValidator(_to_decimal), AfterValidator(_require_non_negative_decimal)
]


# --- strings with a shape ----------------------------------------------------------------

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _check_non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_label_name(value: str) -> str:
    if not LABEL_NAME_RE.match(value):
        raise ValueError(f"invalid label name {value!r}: must match [a-zA-Z_][a-zA-Z0-9_]*")
    return value


def compile_regex(pattern: str) -> Regexp:
    """A config regex, compiled with Go's (RE2's) syntax and linear-time matching, as
    Prometheus and Alertmanager compile theirs: a log line can never make it backtrack.
    ValueError naming the pattern when it is invalid."""
    try:
        return compile_go_regexp(pattern)
    except RegexpError as exc:
        raise ValueError(f"invalid regular expression {_shorten(pattern)}: {exc}") from None


def _shorten(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _check_regex(pattern: str) -> str:
    compile_regex(pattern)
    return pattern


def check_http_url(value: str, *, show_value: bool = True) -> str:
    """An absolute http(s) URL; `show_value=False` keeps secret URLs out of the message."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f" (got {value!r})" if show_value else ""
        raise ValueError(f"must be an http:// or https:// URL with a host{shown}")
    return value


def split_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts; raises ValueError. An empty host is allowed."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if match is None:
        raise ValueError(f"must be host:port, with IPv6 hosts in brackets as [::1]:9464 "
                         f"(got {text!r})")
    host = match.group(1) if match.group(1) is not None else match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535 (got {port})")
    return host, port


def _check_host_port(value: str) -> str:
    split_host_port(value)
    return value.strip()


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    if not str(value).strip():
        raise ValueError("must not be empty")
    return load_context(info).resolve(str(value))


def _resolve_glob(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return str(load_context(info).resolve(value))


def _resolve_exclude_pattern(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if "/" not in value:
        return value  # a base-name pattern: matched against each file's name, kept verbatim
    return str(load_context(info).resolve(value))


NonEmptyStr = Annotated[str, AfterValidator(_check_non_empty)]
LabelName = Annotated[str, AfterValidator(_check_label_name)]
RegexPattern = Annotated[str, AfterValidator(_check_regex)]
"""A regular expression kept as its source text (so models compare by value), checked at load."""
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
HostPort = Annotated[str, AfterValidator(_check_host_port)]
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A file path; relative paths are made absolute against the config file's directory."""
GlobPattern = Annotated[str, AfterValidator(_resolve_glob)]
"""A glob; relative globs are made absolute against the config file's directory."""
ExcludePattern = Annotated[str, AfterValidator(_resolve_exclude_pattern)]
"""A pattern without `/` (`*.gz`) is kept as written and matches a file's base name; one
with `/` is a path glob, made absolute against the config file's directory like GlobPattern.
A consumer tells them apart by `"/" in pattern`."""


def _check_secret_value(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise ValueError("must not be empty")
    return value


Secret = Annotated[SecretStr, AfterValidator(_check_secret_value)]


# --- the base model ------------------------------------------------------------------------


def read_secret_file(path: Path, key: str) -> str:
    """The secret in `path`, without one trailing newline; a config_problem on `key` if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise config_problem((key,), f"cannot read secret file {path}: "
                                     f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise config_problem((key,), f"secret file {path} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
        text = text.removesuffix("\r")
    if not text:
        raise config_problem((key,), f"secret file {path} is empty")
    return text


class ConfigModel(BaseModel):
    """Frozen, unknown keys forbidden; resolves the `X_file` twin of every `secret_fields` X.

    A section given as null (a key with nothing under it) takes its defaults.

    After validation `X` holds the secret whichever way it was given, and `X_file` the path
    it was read from (or None).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any, info: ValidationInfo) -> Any:
        if data is None:
            return {}  # a section left empty (`server:`) takes its defaults, as in Prometheus
        if not cls.secret_fields or not isinstance(data, dict):
            return data
        resolved = dict(data)
        for name in cls.secret_fields:
            file_key = f"{name}_file"
            file_value = data.get(file_key)
            if file_value is None:
                continue
            if data.get(name) is not None:
                raise config_problem((file_key,), f"set either {name} or {file_key}, not both")
            if not isinstance(file_value, str | os.PathLike):
                continue  # the field's own type check reports it
            if not str(file_value).strip():
                raise config_problem((file_key,), "must be a file path, not empty")
            path = load_context(info).find_secret_file(str(file_value))
            resolved[name] = read_secret_file(path, file_key)
            resolved[file_key] = path
        return resolved

    def require_secret(self, name: str) -> None:
        """Raise the usual problem when neither `name` nor `name_file` was given."""
        if getattr(self, name) is None:
            raise config_problem((name,), f"one of {name} or {name}_file is required")
