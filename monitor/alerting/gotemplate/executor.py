"""Executing a parsed Go template: a port of `text/template/exec.go` (Go 1.19).

The structure follows Go's `state` so that errors name the same node at the same position:
"template: name:1:118: executing "name" at <gt $value 80>: error calling gt: ...". Function
arguments are checked against the Go signature of each function (`GoFunc`), with Go's
messages ("wrong type for value; expected string; got float64", "expected integer; found
1.5", ...). Missing map keys give the map's zero value (Prometheus's `missingkey=zero`).

Unlike Go, execution is bounded, because a rule file is evaluated every interval in the
daemon's loop: output, evaluation steps, nesting depth and bytes made by functions all have
limits (`Limits`); exceeding one is an execution error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.alerting.gotemplate import nodes as n
from monitor.alerting.gotemplate.builtins import BUILTINS, printable, truth
from monitor.alerting.gotemplate.gofmt import sprint
from monitor.alerting.gotemplate.quoting import go_quote
from monitor.alerting.gotemplate.values import (
    CallError,
    GoFunc,
    GoMap,
    GoStruct,
    GoValue,
    can_be_nil,
    go_kind,
    go_type_name,
    is_true,
)

_MISSING: Any = object()  # Go's missingVal: "no value piped into this command"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one execution; Go has none of these but the template depth (100000)."""

    max_output_bytes: int = 1 << 20
    max_steps: int = 200_000
    max_depth: int = 100
    max_template_depth: int = 10
    max_function_bytes: int = 16 << 20


class ExecError(Exception):
    """A template that fails while executing; the message is Go's."""


class OutputLimitError(ExecError):
    """The output grew past `Limits.max_output_bytes` (reported like Go's write errors)."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def error_location(text: str, parse_name: str, pos: int) -> str:
    """Go's `ErrorContext` location: name:line:byte-column (the column counts from 0)."""
    before = text[:pos]
    last_newline = before.rfind("\n")
    column = len(before[last_newline + 1 :].encode())
    return f"{parse_name}:{before.count(chr(10)) + 1}:{column}"


class Executor:
    """One execution of one template set; `run` returns the output."""

    def __init__(self, *, text: str, parse_name: str, trees: Mapping[str, n.ListNode],
                 funcs: Mapping[str, GoFunc], limits: Limits) -> None:
        self.text = text
        self.parse_name = parse_name
        self.trees = trees
        self.funcs = funcs
        self.limits = limits
        self.out: list[str] = []
        self.out_bytes = 0
        self.function_bytes = 0
        self.steps = 0
        self.depth = 0
        self.template_depth = 0
        self.name = parse_name
        self.node: n.Node | None = None
        self.vars: list[list[Any]] = []

    def run(self, name: str, data: Any) -> str:
        self.name = name
        self.vars = [["$", data]]
        root = self.trees.get(name)
        if root is None:
            raise ExecError(
                f"template: {name}: {go_quote(name)} is an incomplete or empty template"
            )
        self.walk(data, root)
        return "".join(self.out)

    # --- errors and bookkeeping -------------------------------------------------------

    def error(self, message: str) -> ExecError:
        """Go's `state.errorf`: the message, prefixed with where execution is."""
        if self.node is None:
            return ExecError(f"template: {self.name}: {message}")
        location = error_location(self.text, self.parse_name, self.node.pos)
        return ExecError(
            f"template: {location}: executing {go_quote(self.name)} at <{self.node}>: {message}"
        )

    def at(self, node: n.Node) -> None:
        self.node = node

    def _step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise self.error(f"template execution exceeds {self.limits.max_steps} steps")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self.error(f"template nesting exceeds {self.limits.max_depth} levels at run time")

    def write(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode())
        self.out_bytes += size
        if self.out_bytes > self.limits.max_output_bytes:
            raise OutputLimitError(
                f"template output exceeds {self.limits.max_output_bytes} bytes"
            )
        self.out.append(text)

    def var_value(self, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        raise self.error(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        raise self.error(f"undefined variable: {name}")

    # --- statements -------------------------------------------------------------------

    def walk(self, dot: Any, node: n.Node) -> None:
        self.at(node)
        self._step()
        if isinstance(node, n.ActionNode):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.at(node)
                self.write(sprint([printable(value)]))
        elif isinstance(node, n.TextNode):
            self.write(node.text)
        elif isinstance(node, n.ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, n.IfNode | n.WithNode):
            self.walk_if_or_with(dot, node)
        elif isinstance(node, n.RangeNode):
            self.walk_range(dot, node)
        elif isinstance(node, n.TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, n.BreakNode):
            raise _Break
        elif isinstance(node, n.ContinueNode):
            raise _Continue
        elif not isinstance(node, n.CommentNode):
            raise self.error(f"unknown node: {node}")

    def walk_if_or_with(self, dot: Any, node: n.IfNode | n.WithNode) -> None:
        mark = len(self.vars)
        self._enter()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(value)[0]:
                self.walk(value if isinstance(node, n.WithNode) else dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]
            self.depth -= 1

    def walk_range(self, dot: Any, node: n.RangeNode) -> None:
        self.at(node)
        mark = len(self.vars)
        self._enter()
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if isinstance(value, GoStruct) and value.pointer:
                value = printable(value)
            inner_mark = len(self.vars)
            kind = go_kind(value)
            if kind == "slice" and len(value) > 0:
                for index, item in enumerate(value):
                    self._range_iteration(node, inner_mark, index, item)
                return
            if kind == "map" and len(value) > 0:
                for key in sorted(value):
                    self._range_iteration(node, inner_mark, key, value[key])
                return
            if kind not in ("invalid", "slice", "map"):
                raise self.error(f"range can't iterate over {sprint([value])}")
            if node.else_list is not None:
                self.walk(dot, node.else_list)
        except _Break:
            pass
        finally:
            del self.vars[mark:]
            self.depth -= 1

    def _range_iteration(self, node: n.RangeNode, mark: int, index: Any, item: Any) -> None:
        if node.pipe.decl:
            self.vars[-1][1] = item
        if len(node.pipe.decl) > 1:
            self.vars[-2][1] = index
        try:
            self.walk(item, node.list)
        except _Continue:
            pass
        finally:
            del self.vars[mark:]

    def walk_template(self, dot: Any, node: n.TemplateNode) -> None:
        self.at(node)
        tree = self.trees.get(node.name)
        if tree is None:
            raise self.error(f"template {go_quote(node.name)} not defined")
        if self.template_depth == self.limits.max_template_depth:
            raise self.error(f"exceeded maximum template depth ({self.limits.max_template_depth})")
        dot = self.eval_pipeline(dot, node.pipe)
        saved = (self.name, self.vars, self.node)
        self.name, self.vars = node.name, [["$", dot]]
        self.template_depth += 1
        self._enter()
        try:
            self.walk(dot, tree)
        finally:
            self.name, self.vars, self.node = saved
            self.template_depth -= 1
            self.depth -= 1

    # --- expressions ------------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: n.PipeNode | None) -> Any:
        if pipe is None:
            return None
        self.at(pipe)
        self._enter()
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for variable in pipe.decl:
            if pipe.is_assign:
                self.set_var(variable.ident[0], value)
            else:
                self.vars.append([variable.ident[0], value])
        self.depth -= 1
        return value

    def not_a_function(self, args: list[n.Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.error(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: n.CommandNode, final: Any) -> Any:
        self._step()
        first = cmd.args[0]
        if isinstance(first, n.FieldNode):
            self.at(first)
            return self.eval_field_chain(dot, dot, first, first.ident, args=cmd.args, final=final)
        if isinstance(first, n.ChainNode):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, n.IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, n.PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, n.VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, n.BoolNode):
            return first.value
        if isinstance(first, n.DotNode):
            return dot
        if isinstance(first, n.NilNode):
            raise self.error("nil is not a command")
        if isinstance(first, n.NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, n.StringNode):
            return first.text
        raise self.error(f"can't evaluate command {go_quote(str(first))}")

    def ideal_constant(self, constant: n.NumberNode) -> Any:
        self.at(constant)
        text = constant.text
        is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(
            ch in text for ch in "pP")
        if constant.is_complex:
            return constant.complex_value
        if (constant.is_float and not is_hex_int and not text.startswith("'")
                and any(ch in text for ch in ".eEpP")):
            return constant.float_value
        if constant.is_int:
            return constant.int_value
        if constant.is_uint:
            raise self.error(f"{text} overflows int")
        return None

    def eval_chain(self, dot: Any, chain: n.ChainNode, args: list[n.Node] | None,
                   final: Any) -> Any:
        self.at(chain)
        if isinstance(chain.node, n.NilNode):
            raise self.error(f"indirection through explicit nil in {chain}")
        receiver = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args=args, final=final)

    def eval_variable(self, dot: Any, variable: n.VariableNode, args: list[n.Node] | None,
                      final: Any) -> Any:
        self.at(variable)
        value = self.var_value(variable.ident[0])
        if len(variable.ident) == 1:
            self.not_a_function(args or [variable], final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.ident[1:], args=args,
                                     final=final)

    def eval_field_chain(self, dot: Any, receiver: Any, node: n.Node, ident: list[str], *,
                         args: list[n.Node] | None, final: Any) -> Any:
        for name in ident[:-1]:
            receiver = self.eval_field(dot, name, node, None, final=_MISSING, receiver=receiver)
        return self.eval_field(dot, ident[-1], node, args, final=final, receiver=receiver)

    def eval_function(self, dot: Any, node: n.IdentifierNode, cmd: n.Node,
                      args: list[n.Node] | None, final: Any) -> Any:
        self.at(node)
        name = node.ident
        function = self.funcs.get(name)
        is_builtin = function is None
        if function is None:
            function = BUILTINS.get(name)
        if function is None:
            raise self.error(f"{go_quote(name)} is not a defined function")
        return self.eval_call(dot, function, is_builtin=is_builtin, node=cmd, name=name,
                              args=args, final=final)

    def eval_field(self, dot: Any, name: str, node: n.Node, args: list[n.Node] | None, *,
                   final: Any, receiver: Any) -> Any:
        if receiver is None:
            return None
        if isinstance(receiver, GoValue):
            method = receiver.method(name)
            if method is not None:
                return self.eval_call(dot, method, is_builtin=False, node=node, name=name,
                                      args=args, final=final)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, GoStruct) and name in receiver.fields:
            if has_args:
                raise self.error(f"{name} has arguments but cannot be invoked as function")
            return receiver.fields[name]
        if go_kind(receiver) == "map":
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            return receiver.zero if isinstance(receiver, GoMap) else None
        raise self.error(f"can't evaluate field {name} in type {go_type_name(receiver)}")

    def eval_call(self, dot: Any, function: GoFunc, *, is_builtin: bool, node: n.Node,
                  name: str, args: list[n.Node] | None, final: Any) -> Any:
        arg_nodes = args[1:] if args is not None else []
        num_in = len(arg_nodes) + (final is not _MISSING)
        params = function.params
        num_fixed = len(arg_nodes)
        if function.variadic is not None:
            num_fixed = len(params)
            if num_in < num_fixed:
                raise self.error(f"wrong number of args for {name}: want at least {len(params)} "
                            f"got {len(arg_nodes)}")
        elif num_in != len(params):
            raise self.error(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if is_builtin and name in ("and", "or"):
            return self._and_or(dot, name, arg_nodes, final)
        argv = [self.eval_arg(dot, params[i], arg_nodes[i])
                for i in range(min(num_fixed, len(arg_nodes)))]
        if function.variadic is not None:
            argv += [self.eval_arg(dot, function.variadic, arg_node)
                     for arg_node in arg_nodes[len(argv):]]
        if final is not _MISSING:
            last = params[-1] if params else ""
            if function.variadic is not None:
                last = params[num_in - 1] if num_in - 1 < num_fixed else function.variadic
            argv.append(self.validate_type(final, last))
        self._step()
        try:
            result = function.impl(*argv)
        except CallError as exc:
            self.at(node)
            raise self.error(f"error calling {name}: {exc}") from None
        if isinstance(result, str):
            self.function_bytes += len(result)
            if self.function_bytes > self.limits.max_function_bytes:
                self.at(node)
                raise self.error(f"functions made more than {self.limits.max_function_bytes} bytes")
        return result

    def _and_or(self, dot: Any, name: str, arg_nodes: list[n.Node], final: Any) -> Any:
        value = None
        for arg_node in arg_nodes:
            value = self.eval_arg(dot, "reflect.Value", arg_node)
            if truth(value) == (name == "or"):
                return value
        if final is not _MISSING:
            value = final
        return value

    def validate_type(self, value: Any, type_name: str | None) -> Any:
        if value is None:
            if type_name is None or can_be_nil(type_name):
                return None
            raise self.error(f"invalid value; expected {type_name}")
        if type_name in (None, "reflect.Value", "interface {}"):
            return value
        if go_type_name(value) != type_name:
            raise self.error(
                f"wrong type for value; expected {type_name}; got {go_type_name(value)}"
            )
        return value

    def eval_arg(self, dot: Any, type_name: str | None, node: n.Node) -> Any:
        self.at(node)
        if isinstance(node, n.DotNode):
            return self.validate_type(dot, type_name)
        if isinstance(node, n.NilNode):
            if type_name is not None and can_be_nil(type_name):
                return None
            raise self.error(f"cannot assign nil to {type_name}")
        if isinstance(node, n.FieldNode):
            value = self.eval_field_chain(dot, dot, node, node.ident, args=[node], final=_MISSING)
            return self.validate_type(value, type_name)
        if isinstance(node, n.VariableNode):
            return self.validate_type(self.eval_variable(dot, node, None, _MISSING), type_name)
        if isinstance(node, n.PipeNode):
            return self.validate_type(self.eval_pipeline(dot, node), type_name)
        if isinstance(node, n.IdentifierNode):
            return self.validate_type(self.eval_function(dot, node, node, None, _MISSING),
                                      type_name)
        if isinstance(node, n.ChainNode):
            return self.validate_type(self.eval_chain(dot, node, None, _MISSING), type_name)
        return self._eval_literal_arg(dot, type_name, node)

    def _eval_literal_arg(self, dot: Any, type_name: str | None, node: n.Node) -> Any:
        if type_name in ("interface {}", "reflect.Value"):
            return self._eval_empty_interface(dot, node)
        literal: Any = None
        if type_name == "bool" and isinstance(node, n.BoolNode):
            literal = node.value
        elif type_name == "string" and isinstance(node, n.StringNode):
            literal = node.text
        elif isinstance(node, n.NumberNode):
            if type_name == "int" and node.is_int:
                literal = node.int_value
            elif type_name == "float64" and node.is_float:
                literal = node.float_value
        if literal is not None:
            return literal
        expected = {"bool": "bool", "string": "string", "int": "integer", "float64": "float"}
        if type_name in expected:
            raise self.error(f"expected {expected[type_name]}; found {node}")
        raise self.error(f"can't handle {node} for arg of type {type_name}")

    def _eval_empty_interface(self, dot: Any, node: n.Node) -> Any:
        self.at(node)
        if isinstance(node, n.BoolNode):
            return node.value
        if isinstance(node, n.NumberNode):
            return self.ideal_constant(node)
        if isinstance(node, n.StringNode):
            return node.text
        raise self.error(f"can't handle assignment of {node} to empty interface argument")
