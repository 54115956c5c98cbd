"""text/template's predefined functions: comparisons, `len`, `index`, `slice`, `print*`, escapers.

A port of `text/template/funcs.go` (Go 1.19). The comparisons keep Go's type rules: both
sides must be the same basic kind, except that signed and unsigned integers mix; so
`gt $value 80` (float64 against int) is "incompatible types for comparison", and only
`gt $value 80.0` works. `and` and `or` are listed here for their signatures; the executor
evaluates them lazily, as Go does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus

from monitor.alerting.gotemplate.gofmt import sprint, sprintf, sprintln
from monitor.alerting.gotemplate.values import (
    CallError,
    GoByte,
    GoFunc,
    GoStruct,
    go_kind,
    go_type_name,
    is_true,
)

_BASIC_KINDS = frozenset({"bool", "int", "uint", "float", "complex", "string"})


def truth(value: Any) -> bool:
    return is_true(value)[0]


def _not(value: Any) -> bool:
    return not truth(value)


def _basic_kind(value: Any) -> str | None:
    kind = go_kind(value)
    return kind if kind in _BASIC_KINDS else None


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise CallError("missing argument for comparison")
    first_kind = _basic_kind(first)
    for other in others:
        other_kind = _basic_kind(other)
        if first_kind != other_kind:
            if {first_kind, other_kind} == {"int", "uint"}:
                equal = first == other
            elif first is not None and other is not None:
                raise CallError("incompatible types for comparison")
            else:
                equal = False
        elif first_kind is not None:
            equal = first == other
        else:
            equal = _eq_composite(first, other)
        if equal:
            return True
    return False


def _eq_composite(first: Any, other: Any) -> bool:
    if first is None or other is None:
        return first is None and other is None
    if go_kind(first) != go_kind(other):
        raise CallError(
            f"non-comparable types {sprint([first])}: {go_type_name(first)}, "
            f"{go_type_name(other)}: {sprint([other])}"
        )
    if go_kind(other) == "ptr":
        return first is other
    raise CallError(f"non-comparable type {sprint([other])}: {go_type_name(other)}")


def _ne(first: Any, second: Any) -> bool:
    return not _eq(first, second)


def _lt(first: Any, second: Any) -> bool:
    first_kind = _basic_kind(first)
    second_kind = _basic_kind(second)
    if first_kind is None or second_kind is None:
        raise CallError("invalid type for comparison")
    if first_kind != second_kind:
        if {first_kind, second_kind} == {"int", "uint"}:
            return bool(first < second)
        raise CallError("incompatible types for comparison")
    if first_kind in ("bool", "complex"):
        raise CallError("invalid type for comparison")
    return bool(first < second)


def _le(first: Any, second: Any) -> bool:
    return _lt(first, second) or _eq(first, second)


def _gt(first: Any, second: Any) -> bool:
    return not _le(first, second)


def _ge(first: Any, second: Any) -> bool:
    return not _lt(first, second)


def _length(item: Any) -> int:
    kind = go_kind(item)
    if kind == "invalid":
        raise CallError("reflect: call of reflect.Value.Type on zero Value")
    if kind == "string":
        return len(item.encode())
    if kind in ("map", "slice"):
        return len(item)
    raise CallError(f"len of type {go_type_name(printable(item))}")


def _index_arg(index: Any, limit: int) -> int:
    kind = go_kind(index)
    if kind == "invalid":
        raise CallError("cannot index slice/array with nil")
    if kind not in ("int", "uint"):
        raise CallError(f"cannot index slice/array with type {go_type_name(index)}")
    if index < 0 or index > limit:
        raise CallError(f"index out of range: {index}")
    return int(index)


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise CallError("index of untyped nil")
    for index in indexes:
        kind = go_kind(item)
        if kind == "string":
            data = item.encode()
            position = _index_arg(index, len(data))
            if position == len(data):
                raise CallError("reflect: string index out of range")
            item = GoByte(data[position])
        elif kind == "slice":
            position = _index_arg(index, len(item))
            if position == len(item):
                raise CallError("reflect: slice index out of range")
            item = item[position]
        elif kind == "map":
            item = _map_index(item, index)
        else:
            raise CallError(f"can't index item of type {go_type_name(item)}")
    return item


def _map_index(item: Mapping[str, Any], key: Any) -> Any:
    if key is None:
        raise CallError("value is nil; should be of type string")
    if go_kind(key) != "string" or go_type_name(key) != "string":
        raise CallError(f"value has type {go_type_name(key)}; should be string")
    if key in item:
        return item[key]
    return getattr(item, "zero", None)


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise CallError("slice of untyped nil")
    if len(indexes) > 3:
        raise CallError(f"too many slice indexes: {len(indexes)}")
    kind = go_kind(item)
    if kind == "string":
        if len(indexes) == 3:
            raise CallError("cannot 3-index slice a string")
        data = item.encode()
        bounds = _slice_bounds(indexes, len(data))
        return data[bounds[0] : bounds[1]].decode("utf-8", errors="replace")
    if kind == "slice":
        bounds = _slice_bounds(indexes, len(item))
        return list(item[bounds[0] : bounds[1]])
    raise CallError(f"can't slice item of type {go_type_name(item)}")


def _slice_bounds(indexes: Sequence[Any], length: int) -> list[int]:
    bounds = [0, length, length]
    for position, index in enumerate(indexes):
        bounds[position] = _index_arg(index, length)
    if bounds[0] > bounds[1]:
        raise CallError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise CallError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    return bounds


def _call(function: Any, *args: Any) -> Any:
    if function is None:
        raise CallError("call of nil")
    raise CallError(f"non-function of type {go_type_name(function)}")


def printable(value: Any) -> Any:
    """Go's `printableValue`: pointers are followed, and nothing prints as <no value>."""
    if value is None:
        return "<no value>"
    if isinstance(value, GoStruct) and value.pointer:
        return GoStruct(value.type_name[1:], value.fields)
    return value


def _eval_args(args: Sequence[Any]) -> str:
    if len(args) == 1 and type(args[0]) is str:
        return str(args[0])
    return sprint([printable(arg) for arg in args])


_HTML_ESCAPES = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;",
                 "\0": "\ufffd"}
_JS_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E",
               "&": "\\u0026", "=": "\\u003D"}


def html_escape(text: str) -> str:
    return "".join(_HTML_ESCAPES.get(ch, ch) for ch in text)


def _js_escape_char(ch: str) -> str:
    if ch in _JS_ESCAPES:
        return _JS_ESCAPES[ch]
    if ch < " ":
        return f"\\u00{ord(ch):02X}"
    if ord(ch) >= 0x80 and not ch.isprintable():
        return f"\\u{ord(ch):04X}"
    return ch


def _html(*args: Any) -> str:
    return html_escape(_eval_args(args))


def _js(*args: Any) -> str:
    return "".join(_js_escape_char(ch) for ch in _eval_args(args))


def _urlquery(*args: Any) -> str:
    return quote_plus(_eval_args(args), safe="-_.~")


def _printf(format_string: str, *args: Any) -> str:
    return sprintf(format_string, args)


def _print(*args: Any) -> str:
    return sprint(args)


def _println(*args: Any) -> str:
    return sprintln(args)


_VALUE = "reflect.Value"
_ANY = "interface {}"

BUILTINS: Mapping[str, GoFunc] = {
    "and": GoFunc((_VALUE,), truth, variadic=_VALUE),
    "or": GoFunc((_VALUE,), truth, variadic=_VALUE),
    "not": GoFunc((_VALUE,), _not),
    "call": GoFunc((_VALUE,), _call, variadic=_VALUE),
    "html": GoFunc((), _html, variadic=_ANY),
    "index": GoFunc((_VALUE,), _index, variadic=_VALUE),
    "slice": GoFunc((_VALUE,), _slice, variadic=_VALUE),
    "js": GoFunc((), _js, variadic=_ANY),
    "len": GoFunc((_VALUE,), _length),
    "print": GoFunc((), _print, variadic=_ANY),
    "printf": GoFunc(("string",), _printf, variadic=_ANY),
    "println": GoFunc((), _println, variadic=_ANY),
    "urlquery": GoFunc((), _urlquery, variadic=_ANY),
    "eq": GoFunc((_VALUE,), _eq, variadic=_VALUE),
    "ge": GoFunc((_VALUE, _VALUE), _ge),
    "gt": GoFunc((_VALUE, _VALUE), _gt),
    "le": GoFunc((_VALUE, _VALUE), _le),
    "lt": GoFunc((_VALUE, _VALUE), _lt),
    "ne": GoFunc((_VALUE, _VALUE), _ne),
}
