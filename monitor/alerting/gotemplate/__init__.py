"""Go's text/template in Python: the Go 1.19 dialect that Prometheus 2.42 expands alerts with.

    parse_template(name, text, funcs)  -> ParsedTemplate    raises ParseError
    ParsedTemplate.execute(data, funcs) -> str               raises ExecError

Error messages are Go's, byte for byte where the engine can know them ("template: x:1:5:
executing "x" at <.Foo>: can't evaluate field Foo in type ..."). Module map:

    lexer.py, parser.py, nodes.py   text -> trees (parse/lex.go, parse.go, node.go)
    executor.py, builtins.py        trees + data -> text (exec.go, funcs.go)
    values.py                       which Python value stands for which Go value
    gofmt.py, numbers.py, quoting.py  fmt's verbs, strconv's numbers and quoting
    gotime.py, goregexp.py          time.Time and regexp, for Prometheus's functions
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.alerting.gotemplate.builtins import BUILTINS
from monitor.alerting.gotemplate.executor import ExecError, Executor, Limits, OutputLimitError
from monitor.alerting.gotemplate.nodes import ListNode
from monitor.alerting.gotemplate.parser import MAX_NESTING, ParseError, parse_templates
from monitor.alerting.gotemplate.values import (
    HTML,
    CallError,
    GoFunc,
    GoMap,
    GoSlice,
    GoStruct,
    GoUint,
)

__all__ = [
    "HTML",
    "MAX_NESTING",
    "CallError",
    "ExecError",
    "GoFunc",
    "GoMap",
    "GoSlice",
    "GoStruct",
    "GoUint",
    "Limits",
    "OutputLimitError",
    "ParseError",
    "ParsedTemplate",
    "parse_template",
]


@dataclass(frozen=True, slots=True)
class ParsedTemplate:
    """A parsed template set: `name` is the top-level template, `trees` every definition."""

    name: str
    text: str
    trees: Mapping[str, ListNode]

    def execute(self, data: Any, funcs: Mapping[str, GoFunc] | None = None,
                limits: Limits | None = None) -> str:
        """Run the top-level template on `data`; `funcs` must cover what parsing allowed."""
        executor = Executor(text=self.text, parse_name=self.name, trees=self.trees,
                            funcs=funcs or {}, limits=limits or Limits())
        return executor.run(self.name, data)


def parse_template(name: str, text: str, funcs: Container[str] = ()) -> ParsedTemplate:
    """Parse `text`; `funcs` names the functions beyond Go's builtins that it may call."""
    known = _KnownFunctions(funcs)
    return ParsedTemplate(name, text, parse_templates(name, text, known))


class _KnownFunctions(Container[str]):
    def __init__(self, extra: Container[str]) -> None:
        self._extra = extra

    def __contains__(self, name: object) -> bool:
        return name in BUILTINS or name in self._extra
