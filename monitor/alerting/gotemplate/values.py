"""Go values as a template sees them, and the Go type rules the engine needs about them.

Python values stand for Go values: None is nil (an invalid reflect.Value), bool, int (Go's
`int`), float (`float64`), complex (`complex128`) and str (`string`) are themselves. Python
dicts are `map[string]interface {}` and lists or tuples `[]interface {}`. Everything with a
more specific Go type (`map[string]string` label sets, structs, named slices, `*time.Time`)
is a `GoValue`, which carries its Go type name for error messages and `%T`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NIL_ABLE_PREFIXES = ("*", "[]", "map[", "interface", "func", "chan")


class CallError(Exception):
    """The error a template function returns (Go's second result); the message is Go's."""


@dataclass(frozen=True, slots=True)
class GoFunc:
    """A function a template can call, with its Go signature.

    `params` are the Go types of the fixed parameters, `variadic` the element type of a
    trailing `...T` parameter. The type "reflect.Value" takes anything, nil included, as the
    builtins do; "interface {}" takes anything.
    """

    params: tuple[str, ...]
    impl: Callable[..., Any]
    variadic: str | None = None


class GoValue:
    """A value with a Go type beyond Python's own: it names its type and may have methods."""

    type_name = "interface {}"
    kind = "struct"

    def method(self, name: str) -> GoFunc | None:
        return None

    def stringer(self) -> str | None:
        """The result of the value's `String()` method, when Go's type has one."""
        return None


class GoMap(GoValue, Mapping[str, Any]):
    """A map with string keys; `zero` is what a missing key gives (Go's zero value)."""

    kind = "map"

    def __init__(self, items: Mapping[str, Any], type_name: str = "map[string]string",
                 zero: Any = "") -> None:
        self._items = items
        self.type_name = type_name
        self.zero = zero

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class GoSlice(GoValue, Sequence[Any]):
    """A slice of a named type (Prometheus's `template.queryResult`)."""

    kind = "slice"

    def __init__(self, items: Sequence[Any], type_name: str) -> None:
        self._items = list(items)
        self.type_name = type_name

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)


class GoStruct(GoValue):
    """A struct, or a non-nil pointer to one (`pointer`); fields in declaration order."""

    def __init__(self, type_name: str, fields: Mapping[str, Any], *, pointer: bool = False):
        self.fields = dict(fields)
        self.pointer = pointer
        self.type_name = ("*" if pointer else "") + type_name
        self.kind = "ptr" if pointer else "struct"


class HTML(str):
    """html/template's `HTML`: a string type of its own (what `safeHtml` returns)."""

    __slots__ = ()


class GoUint(int):
    """An unsigned integer (`uint8` from indexing a string, or a `uint64`)."""

    type_name = "uint64"


class GoByte(GoUint):
    type_name = "uint8"


def go_type_name(value: Any) -> str:
    """What Go's `%T` prints for the value."""
    if value is None:
        return "<nil>"
    if isinstance(value, GoValue | GoUint):
        return value.type_name
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, complex):
        return "complex128"
    if isinstance(value, HTML):
        return "template.HTML"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, Sequence):
        return "[]interface {}"
    return f"{type(value).__name__}"


def go_kind(value: Any) -> str:
    """The reflect.Kind family: invalid bool int uint float complex string map slice struct ptr."""
    if value is None:
        return "invalid"
    if isinstance(value, GoValue):
        return value.kind
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, GoUint):
        return "uint"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, complex):
        return "complex"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, Sequence):
        return "slice"
    return "struct"


def can_be_nil(type_name: str) -> bool:
    return type_name == "reflect.Value" or type_name.startswith(NIL_ABLE_PREFIXES)


def is_true(value: Any) -> tuple[bool, bool]:
    """Go's `isTrue`: (truth, whether the value has a truth at all)."""
    kind = go_kind(value)
    if kind == "invalid":
        return False, True
    if kind in ("map", "slice", "string"):
        return len(value) > 0, True
    if kind in ("bool", "int", "uint", "float", "complex"):
        return value != 0, True
    return True, True  # a struct, or a non-nil pointer

