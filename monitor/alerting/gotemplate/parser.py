"""The parser of Go's text/template (Go 1.19): templates text into trees, with Go's errors.

A port of `text/template/parse/parse.go`, down to the three-token lookahead buffer: Go
reports a parse error on the line of the last token read from the lexer, so the buffer has
to behave the same for multi-line templates to get the same line numbers.

One addition: nesting (parentheses and if/range/with/block) deeper than `MAX_NESTING` is a
parse error, so a hostile template cannot exhaust Python's stack.
"""

from __future__ import annotations

from collections.abc import Container

from monitor.alerting.gotemplate import nodes as n
from monitor.alerting.gotemplate.lexer import Kind, Lexer, Token
from monitor.alerting.gotemplate.numbers import parse_float, parse_int_base0
from monitor.alerting.gotemplate.quoting import UnquoteError, go_quote, go_unquote, unquote_char

MAX_NESTING = 50
_PAST_END = Token(Kind.ERROR, 0, "", 0)


class ParseError(Exception):
    """A template that does not parse; the message is Go's ("template: name:1: ...")."""


class _TokenStream:
    """The lexer's output, shared by the trees of one parse (as Go shares its lexer)."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def next_item(self) -> Token:
        if self._index >= len(self._tokens):
            return _PAST_END
        token = self._tokens[self._index]
        self._index += 1
        return token


def parse_templates(name: str, text: str, funcs: Container[str]) -> dict[str, n.ListNode]:
    """Every template in `text`: the top-level one under `name`, plus each `define`/`block`."""
    tree_set: dict[str, n.ListNode] = {}
    stream = _TokenStream(Lexer(text, break_ok="break" not in funcs,
                                continue_ok="continue" not in funcs).tokens())
    tree = _Tree(name, name, stream, funcs, tree_set)
    tree.parse()
    tree.add()
    return tree_set


class _Tree:
    def __init__(self, name: str, parse_name: str, stream: _TokenStream, funcs: Container[str],
                 tree_set: dict[str, n.ListNode]) -> None:
        self.name = name
        self.parse_name = parse_name
        self.stream = stream
        self.funcs = funcs
        self.tree_set = tree_set
        self.root: n.ListNode | None = None
        self.token = [_PAST_END, _PAST_END, _PAST_END]
        self.peek_count = 0
        self.vars = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.nesting = 0

    # --- the lookahead buffer, exactly as Go's --------------------------------------------

    def next(self) -> Token:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            self.token[0] = self.stream.next_item()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: Token) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: Token, t1: Token) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> Token:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        self.peek_count = 1
        self.token[0] = self.stream.next_item()
        return self.token[0]

    def next_non_space(self) -> Token:
        while True:
            token = self.next()
            if token.kind != Kind.SPACE:
                return token

    def peek_non_space(self) -> Token:
        token = self.next_non_space()
        self.backup()
        return token

    # --- errors -------------------------------------------------------------------------

    def error(self, message: str) -> ParseError:
        """Go's `Tree.errorf`: the message on the line of the last token read."""
        self.root = None
        return ParseError(f"template: {self.parse_name}:{self.token[0].line}: {message}")

    def expect(self, expected: Kind, context: str) -> Token:
        token = self.next_non_space()
        if token.kind != expected:
            raise self.unexpected(token, context)
        return token

    def expect_one_of(self, first: Kind, second: Kind, context: str) -> Token:
        token = self.next_non_space()
        if token.kind not in (first, second):
            raise self.unexpected(token, context)
        return token

    def unexpected(self, token: Token, context: str) -> ParseError:
        if token.kind == Kind.ERROR:
            extra = ""
            if self.action_line not in (0, token.line):
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return self.error(f"{token.describe()}{extra}")
        return self.error(f"unexpected {token.describe()} in {context}")

    def _unquote(self, literal: str) -> str:
        try:
            return go_unquote(literal)
        except UnquoteError as exc:
            raise self.error(str(exc)) from None

    def _nest(self) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(f"template nesting exceeds {MAX_NESTING} levels")

    # --- the grammar ----------------------------------------------------------------------

    def add(self) -> None:
        existing = self.tree_set.get(self.name)
        if existing is None or n.is_empty_tree(existing):
            assert self.root is not None
            self.tree_set[self.name] = self.root
            return
        if not n.is_empty_tree(self.root):
            raise self.error(f"template: multiple definition of template {go_quote(self.name)}")

    def _subtree(self, name: str) -> _Tree:
        return _Tree(name, self.parse_name, self.stream, self.funcs, self.tree_set)

    def parse(self) -> None:
        self.root = n.ListNode(self.peek().pos)
        while self.peek().kind != Kind.EOF:
            if self.peek().kind == Kind.LEFT_DELIM:
                delim = self.next()
                if self.next_non_space().kind == Kind.DEFINE:
                    self._subtree("definition").parse_definition()
                    continue
                self.backup2(delim)
            node = self.text_or_action()
            if isinstance(node, n.EndNode | n.ElseNode):
                raise self.error(f"unexpected {node}")
            self.root.nodes.append(node)

    def parse_definition(self) -> None:
        context = "define clause"
        name = self.expect_one_of(Kind.STRING, Kind.RAW_STRING, context)
        self.name = self._unquote(name.val)
        self.expect(Kind.RIGHT_DELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, n.EndNode):
            raise self.error(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[n.ListNode, n.Node]:
        items = n.ListNode(self.peek_non_space().pos)
        while self.peek_non_space().kind != Kind.EOF:
            node = self.text_or_action()
            if isinstance(node, n.EndNode | n.ElseNode):
                return items, node
            items.nodes.append(node)
        raise self.error("unexpected EOF")

    def text_or_action(self) -> n.Node:
        token = self.next_non_space()
        if token.kind == Kind.TEXT:
            return n.TextNode(token.pos, token.val)
        if token.kind == Kind.LEFT_DELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if token.kind == Kind.COMMENT:
            return n.CommentNode(token.pos, token.val)
        raise self.unexpected(token, "input")

    def action(self) -> n.Node:
        token = self.next_non_space()
        kind = token.kind
        if kind == Kind.BLOCK:
            return self.block_control()
        if kind in (Kind.BREAK, Kind.CONTINUE):
            return self.loop_control(token)
        if kind == Kind.ELSE:
            return self.else_control()
        if kind == Kind.END:
            return n.EndNode(self.expect(Kind.RIGHT_DELIM, "end").pos)
        if kind == Kind.IF:
            return n.IfNode(*self.parse_control(allow_else_if=True, context="if"))
        if kind == Kind.RANGE:
            return n.RangeNode(*self.parse_control(allow_else_if=False, context="range"))
        if kind == Kind.TEMPLATE:
            return self.template_control()
        if kind == Kind.WITH:
            return n.WithNode(*self.parse_control(allow_else_if=False, context="with"))
        self.backup()
        token = self.peek()
        return n.ActionNode(token.pos, token.line, self.pipeline("command", Kind.RIGHT_DELIM))

    def loop_control(self, keyword: Token) -> n.Node:
        name = "{{" + keyword.val + "}}"
        token = self.next_non_space()
        if token.kind != Kind.RIGHT_DELIM:
            raise self.unexpected(token, name)
        if self.range_depth == 0:
            raise self.error(f"{name} outside {{{{range}}}}")
        if keyword.kind == Kind.BREAK:
            return n.BreakNode(keyword.pos, keyword.line)
        return n.ContinueNode(keyword.pos, keyword.line)

    def pipeline(self, context: str, end: Kind) -> n.PipeNode:
        self._nest()
        token = self.peek_non_space()
        pipe = n.PipeNode(token.pos, token.line)
        self._declarations(pipe, context)
        while True:
            token = self.next_non_space()
            if token.kind == end:
                self.check_pipeline(pipe, context)
                self.nesting -= 1
                return pipe
            if token.kind in _OPERAND_STARTS:
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(token, context)

    def _declarations(self, pipe: n.PipeNode, context: str) -> None:
        while True:
            variable = self.peek_non_space()
            if variable.kind != Kind.VARIABLE:
                return
            self.next()
            token_after_variable = self.peek()
            following = self.peek_non_space()
            if following.kind in (Kind.ASSIGN, Kind.DECLARE):
                pipe.is_assign = following.kind == Kind.ASSIGN
                self.next_non_space()
                pipe.decl.append(n.VariableNode(variable.pos, variable.val.split(".")))
                self.vars.append(variable.val)
            elif following.kind == Kind.CHAR and following.val == ",":
                self.next_non_space()
                pipe.decl.append(n.VariableNode(variable.pos, variable.val.split(".")))
                self.vars.append(variable.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in (
                        Kind.VARIABLE, Kind.RIGHT_DELIM, Kind.RIGHT_PAREN
                    ):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            elif token_after_variable.kind == Kind.SPACE:
                self.backup3(variable, token_after_variable)
            else:
                self.backup2(variable)
            return

    def check_pipeline(self, pipe: n.PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for stage, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], n.BoolNode | n.DotNode | n.NilNode | n.NumberNode
                          | n.StringNode):
                raise self.error(f"non executable command in pipeline stage {stage}")

    def parse_control(
        self, *, allow_else_if: bool, context: str
    ) -> tuple[int, int, n.PipeNode, n.ListNode, n.ListNode | None]:
        self._nest()
        mark = len(self.vars)
        pipe = self.pipeline(context, Kind.RIGHT_DELIM)
        if context == "range":
            self.range_depth += 1
        body, following = self.item_list()
        if context == "range":
            self.range_depth -= 1
        else_list: n.ListNode | None = None
        if isinstance(following, n.ElseNode):
            if allow_else_if and self.peek().kind == Kind.IF:
                self.next()
                else_list = n.ListNode(following.pos)
                else_list.nodes.append(
                    n.IfNode(*self.parse_control(allow_else_if=True, context="if"))
                )
            else:
                else_list, following = self.item_list()
                if not isinstance(following, n.EndNode):
                    raise self.error(f"expected end; found {following}")
        del self.vars[mark:]
        self.nesting -= 1
        return pipe.pos, pipe.line, pipe, body, else_list

    def else_control(self) -> n.Node:
        peeked = self.peek_non_space()
        if peeked.kind == Kind.IF:
            return n.ElseNode(peeked.pos, peeked.line)
        token = self.expect(Kind.RIGHT_DELIM, "else")
        return n.ElseNode(token.pos, token.line)

    def block_control(self) -> n.Node:
        context = "block clause"
        self._nest()
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = self.pipeline(context, Kind.RIGHT_DELIM)
        block = self._subtree(name)
        block.nesting = self.nesting
        block.root, end = block.item_list()
        if not isinstance(end, n.EndNode):
            raise self.error(f"unexpected {end} in {context}")
        block.add()
        self.nesting -= 1
        return n.TemplateNode(token.pos, token.line, name, pipe)

    def template_control(self) -> n.Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.template_name(token, context)
        pipe = None
        if self.next_non_space().kind != Kind.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, Kind.RIGHT_DELIM)
        return n.TemplateNode(token.pos, token.line, name, pipe)

    def template_name(self, token: Token, context: str) -> str:
        if token.kind in (Kind.STRING, Kind.RAW_STRING):
            return self._unquote(token.val)
        raise self.unexpected(token, context)

    def command(self) -> n.CommandNode:
        cmd = n.CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.kind == Kind.SPACE:
                continue
            if token.kind in (Kind.RIGHT_DELIM, Kind.RIGHT_PAREN):
                self.backup()
            elif token.kind != Kind.PIPE:
                raise self.unexpected(token, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> n.Node | None:
        node = self.term()
        if node is None or self.peek().kind != Kind.FIELD:
            return node
        chain = n.ChainNode(self.peek().pos, node)
        while self.peek().kind == Kind.FIELD:
            chain.fields.append(self.next().val[1:])
        if isinstance(node, n.FieldNode):
            return n.FieldNode(chain.pos, str(chain)[1:].split("."))
        if isinstance(node, n.VariableNode):
            return n.VariableNode(chain.pos, str(chain).split("."))
        if isinstance(node, n.BoolNode | n.StringNode | n.NumberNode | n.NilNode | n.DotNode):
            raise self.error(f"unexpected . after term {go_quote(str(node))}")
        return chain

    def term(self) -> n.Node | None:
        token = self.next_non_space()
        kind = token.kind
        if kind == Kind.IDENTIFIER:
            if token.val not in self.funcs:
                raise self.error(f"function {go_quote(token.val)} not defined")
            return n.IdentifierNode(token.pos, token.val)
        if kind == Kind.DOT:
            return n.DotNode(token.pos)
        if kind == Kind.NIL:
            return n.NilNode(token.pos)
        if kind == Kind.VARIABLE:
            return self.use_var(token.pos, token.val)
        if kind == Kind.FIELD:
            return n.FieldNode(token.pos, token.val[1:].split("."))
        if kind == Kind.BOOL:
            return n.BoolNode(token.pos, token.val == "true")
        if kind in (Kind.CHAR_CONSTANT, Kind.COMPLEX, Kind.NUMBER):
            try:
                return new_number(token.pos, token.val, kind)
            except ValueError as exc:
                raise self.error(str(exc)) from None
        if kind == Kind.LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", Kind.RIGHT_PAREN)
        if kind in (Kind.STRING, Kind.RAW_STRING):
            return n.StringNode(token.pos, token.val, self._unquote(token.val))
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> n.VariableNode:
        variable = n.VariableNode(pos, name.split("."))
        if variable.ident[0] not in self.vars:
            raise self.error(f"undefined variable {go_quote(variable.ident[0])}")
        return variable


_OPERAND_STARTS = frozenset({
    Kind.BOOL, Kind.CHAR_CONSTANT, Kind.COMPLEX, Kind.DOT, Kind.FIELD, Kind.IDENTIFIER,
    Kind.NUMBER, Kind.NIL, Kind.RAW_STRING, Kind.STRING, Kind.VARIABLE, Kind.LEFT_PAREN,
})


def _integral_kinds(node: n.NumberNode, value: float) -> None:
    if value.is_integer():
        if not node.is_int and -(2**63) <= value < 2**63:
            node.is_int, node.int_value = True, int(value)
        if not node.is_uint and 0 <= value < 2**64:
            node.is_uint, node.uint_value = True, int(value)


def new_number(pos: int, text: str, kind: Kind) -> n.NumberNode:
    """Go's `newNumber`: which of int, uint, float and complex a constant can be."""
    node = n.NumberNode(pos, text)
    if kind == Kind.CHAR_CONSTANT:
        try:
            code, _, after = unquote_char(text, 1, text[0])
        except UnquoteError:
            raise ValueError("invalid syntax") from None
        if text[after:] != "'":
            raise ValueError(f"malformed character constant: {text}")
        node.is_int = node.is_uint = node.is_float = True
        node.int_value = node.uint_value = code
        node.float_value = float(code)
        return node
    if kind == Kind.COMPLEX or text.endswith("i"):
        return _complex_number(node, text, kind)
    unsigned = parse_int_base0(text, signed=False)
    if unsigned is not None:
        node.is_uint, node.uint_value = True, unsigned
    signed = parse_int_base0(text, signed=True)
    if signed is not None:
        node.is_int, node.int_value = True, signed
        if signed == 0:
            node.is_uint, node.uint_value = True, 0
    if node.is_int:
        node.is_float, node.float_value = True, float(node.int_value)
    elif node.is_uint:
        node.is_float, node.float_value = True, float(node.uint_value)
    else:
        try:
            value = parse_float(text)
        except ValueError:
            value = None
        if value is not None:
            if not any(ch in text for ch in ".eEpP"):
                raise ValueError(f"integer overflow: {go_quote(text)}")
            node.is_float, node.float_value = True, value
            _integral_kinds(node, value)
    if not (node.is_int or node.is_uint or node.is_float):
        raise ValueError(f"illegal number syntax: {go_quote(text)}")
    return node


def _complex_number(node: n.NumberNode, text: str, kind: Kind) -> n.NumberNode:
    if kind == Kind.COMPLEX:
        try:
            value = complex(text.replace("_", "")[:-1] + "j")
        except ValueError:
            raise ValueError(f"illegal number syntax: {go_quote(text)}") from None
    else:
        try:
            value = complex(0, parse_float(text[:-1]))
        except ValueError:
            raise ValueError(f"illegal number syntax: {go_quote(text)}") from None
    node.is_complex, node.complex_value = True, value
    if value.imag == 0:
        node.is_float, node.float_value = True, value.real
        _integral_kinds(node, value.real)
    return node
