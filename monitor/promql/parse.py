"""Parsing PromQL: `promql-parser` does the grammar, this module makes our tree from its tree.

`promql-parser` follows Prometheus 3's grammar. The engine implements Prometheus 2.x, so the
translation refuses, by name, what 2.x does not have or this engine does not evaluate: native
histogram functions, Prometheus 3 functions and aggregations (`limitk`, `info`, ...), `or`
between matcher sets, `fill` modifiers. It also registers `holt_winters`, which Prometheus 3
renamed. An expression that parses here is one the engine evaluates, never one it would
silently get wrong.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Any

import promql_parser as pp

from monitor.promql import ast
from monitor.tsdb.store import EQUAL, NOT_EQUAL, NOT_REGEX, REGEX, Matcher


class PromQLParseError(ValueError):
    """The text is not PromQL this engine evaluates; the message says why."""


_NATIVE_HISTOGRAM_FUNCTIONS = frozenset({"histogram_count", "histogram_sum",
                                         "histogram_fraction", "histogram_stddev",
                                         "histogram_stdvar", "histogram_avg"})

_holt_winters = pp.Function("holt_winters",
                            [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar],
                            pp.ValueType.Vector)
pp.register_extra_functions([_holt_winters])

_MATCH_OPS = {"MatchOp.Equal": EQUAL, "MatchOp.NotEqual": NOT_EQUAL, "MatchOp.Re": REGEX,
              "MatchOp.NotRe": NOT_REGEX}
_CARDINALITY = {
    "VectorMatchCardinality.OneToOne": ast.Cardinality.ONE_TO_ONE,
    "VectorMatchCardinality.ManyToOne": ast.Cardinality.MANY_TO_ONE,
    "VectorMatchCardinality.OneToMany": ast.Cardinality.ONE_TO_MANY,
    "VectorMatchCardinality.ManyToMany": ast.Cardinality.MANY_TO_MANY,
}


MAX_QUERY_BYTES = 64 * 1024
# promql-parser recurses natively: a few thousand chained operators or nested brackets crash
# the whole process, and the translation below recurses too. No real query comes near this.
MAX_NESTING = 128
_CACHED_QUERY_BYTES = 4096
_OPERATOR_CHARS = frozenset("+-*/%^<>=!")
_OPERATOR_WORDS = re.compile(r"\b(?:and|or|unless|atan2)\b")
_NEGATIVE_AT = re.compile(r"@\s*-\s*((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
# promql-parser turns a negative `@` time into 0 and panics when it is read; such times are
# swapped for placeholders near its largest time (year 9999) and swapped back afterwards.
_PLACEHOLDER_BASE_S = 253_402_300_799


def parse_expr(text: str) -> ast.Expr:
    """Our tree for `text`, or PromQLParseError naming the problem."""
    if len(text) <= _CACHED_QUERY_BYTES:
        return _parse_cached(text)
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> ast.Expr:
    return _parse(text)


def _parse(text: str) -> ast.Expr:
    if len(text.encode()) > MAX_QUERY_BYTES:
        raise PromQLParseError(f"query too long: more than {MAX_QUERY_BYTES} bytes")
    code = _code_only(text)
    nesting = _nesting(code)
    if nesting > MAX_NESTING:
        raise PromQLParseError(f"query too complex: {nesting} nested brackets and operators "
                               f"(at most {MAX_NESTING})")
    _refuse_newer_syntax(code)
    text, negative_ats = _swap_negative_ats(text, code)
    try:
        tree = pp.parse(text)
        return _convert(tree, negative_ats)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PromQLParseError(f"parse error: {exc}") from None
    except RecursionError:
        raise PromQLParseError("query too complex: nested too deeply") from None


def _code_only(text: str) -> str:
    """`text` with the contents of string literals blanked, positions unchanged."""
    out = list(text)
    quote: str | None = None
    escaped = False
    for index, char in enumerate(text):
        if quote is None:
            if char in "\"'`":
                quote = char
            continue
        if escaped:
            escaped = False
        elif char == "\\" and quote != "`":
            escaped = True
        elif char == quote:
            quote = None
            continue
        out[index] = " "
    return "".join(out)


def _nesting(code: str) -> int:
    """An upper bound on the depth of the syntax tree: deepest brackets plus operators."""
    depth = deepest = 0
    for char in code:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    operators = sum(char in _OPERATOR_CHARS for char in code)
    return deepest + operators + len(_OPERATOR_WORDS.findall(code))


_UNITLESS_DURATION = re.compile(
    r"(?:\[\s*|\[[^\[\]]*:\s*|\boffset\s+-?\s*)(\d+(?:\.\d*)?)\s*(?=[\]:)\s,]|$)")


def _refuse_newer_syntax(code: str) -> None:
    """What promql-parser reads but Prometheus 2.x does not: durations without a unit
    (`x[300]`, `offset 60`) and quoted metric or label names in braces (`{"up"}`)."""
    unitless = _UNITLESS_DURATION.search(code)
    if unitless is not None:
        raise PromQLParseError(f"parse error: bad duration syntax: {unitless.group(1)!r} "
                               "(a duration needs a unit, as in 5m)")
    in_braces = False
    expect_name = False
    for char in code:
        if char == "{":
            in_braces = expect_name = True
        elif char == "}":
            in_braces = False
        elif in_braces and char == ",":
            expect_name = True
        elif expect_name and char in "\"'`":
            raise PromQLParseError("unsupported PromQL: quoted metric and label names in "
                                   "braces are Prometheus 3 syntax")
        elif not char.isspace():
            expect_name = False


def _swap_negative_ats(text: str, code: str) -> tuple[str, dict[int, int]]:
    """Negative `@` times replaced by placeholders: (new text, placeholder s -> real ms)."""
    swaps: dict[int, int] = {}
    pieces = []
    last = 0
    for index, match in enumerate(_NEGATIVE_AT.finditer(code)):
        placeholder = _PLACEHOLDER_BASE_S - index
        seconds = float(text[match.start(1):match.end(1)])
        if seconds > _PLACEHOLDER_BASE_S:  # as far back as promql-parser reaches forward
            raise PromQLParseError(
                f"parse error: timestamp out of bounds for @ modifier: -{seconds:f}")
        swaps[placeholder] = -round(seconds * 1000)
        pieces.append(text[last:match.start()] + f"@ {placeholder}")
        last = match.end()
    if not swaps:
        return text, swaps
    pieces.append(text[last:])
    return "".join(pieces), swaps


def _ms(duration: timedelta | None) -> int:
    if duration is None:
        return 0
    return duration // timedelta(milliseconds=1)


def _at(modifier: Any, negative_ats: dict[int, int]) -> ast.At | None:
    if modifier is None:
        return None
    kind = str(modifier.type)
    if kind.endswith("Start"):
        return ast.At(ast.AtKind.START)
    if kind.endswith("End"):
        return ast.At(ast.AtKind.END)
    seconds = modifier.at.timestamp()
    if seconds in negative_ats:
        return ast.At(ast.AtKind.TIME, negative_ats[int(seconds)])
    return ast.At(ast.AtKind.TIME, round(seconds * 1000))


def _selector(node: Any, negative_ats: dict[int, int]) -> ast.VectorSelector:
    if node.matchers.or_matchers:
        raise PromQLParseError(
            "unsupported PromQL: 'or' between matchers in a selector is Prometheus 3 syntax")
    matchers = [Matcher.of(m.name, _MATCH_OPS[str(m.op)], m.value)
                for m in node.matchers.matchers]
    if node.name is not None:
        matchers.insert(0, Matcher.of("__name__", EQUAL, node.name))
    return ast.VectorSelector(node.name, tuple(matchers), _ms(node.offset),
                              _at(node.at, negative_ats))


def _convert(node: Any, negative_ats: dict[int, int]) -> ast.Expr:
    kind = type(node).__name__
    convert = _convert
    if kind == "NumberLiteral":
        return ast.NumberLiteral(float(node.val))
    if kind == "StringLiteral":
        return ast.StringLiteral(str(node.val))
    if kind == "VectorSelector":
        return _selector(node, negative_ats)
    if kind == "MatrixSelector":
        return ast.MatrixSelector(_selector(node.vector_selector, negative_ats),
                                  _ms(node.range))
    if kind == "SubqueryExpr":
        return ast.SubqueryExpr(convert(node.expr, negative_ats), _ms(node.range),
                                _ms(node.step), _ms(node.offset), _at(node.at, negative_ats))
    if kind == "ParenExpr":
        return ast.ParenExpr(convert(node.expr, negative_ats))
    if kind == "UnaryExpr":
        return ast.UnaryExpr(convert(node.expr, negative_ats))
    if kind == "Call":
        return _call(node, negative_ats)
    if kind == "AggregateExpr":
        return _aggregate(node, negative_ats)
    if kind == "BinaryExpr":
        return _binary(node, negative_ats)
    raise PromQLParseError(f"unsupported PromQL: {kind} expressions")


def _call(node: Any, negative_ats: dict[int, int]) -> ast.Call:
    name = node.func.name
    if name in _NATIVE_HISTOGRAM_FUNCTIONS:
        raise PromQLParseError(f"unsupported PromQL: {name}() works on native histograms, "
                               f"which inferwatch does not store")
    signature = ast.FUNCTIONS.get(name)
    if signature is None:
        raise PromQLParseError(f"unsupported PromQL: function {name}() is not in "
                               f"Prometheus 2.x")
    args = tuple(_convert(arg, negative_ats) for arg in node.args)
    if not signature.accepts(len(args)):
        raise PromQLParseError(f"parse error: wrong number of arguments for {name}()")
    return ast.Call(name, args)


def _aggregate(node: Any, negative_ats: dict[int, int]) -> ast.AggregateExpr:
    op = str(node.op)
    if op not in ast.AGGREGATIONS:
        raise PromQLParseError(f"unsupported PromQL: aggregation {op} is not in "
                               f"Prometheus 2.x")
    modifier = node.modifier
    grouping: tuple[str, ...] = ()
    without = False
    if modifier is not None:
        grouping = tuple(modifier.labels)
        without = str(modifier.type).endswith("Without")
    param = _convert(node.param, negative_ats) if node.param is not None else None
    return ast.AggregateExpr(op, _convert(node.expr, negative_ats), param, grouping, without)


def _binary(node: Any, negative_ats: dict[int, int]) -> ast.BinaryExpr:
    op = str(node.op)
    if op not in ast.ARITHMETIC | ast.COMPARISONS | ast.SET_OPERATORS:
        raise PromQLParseError(f"unsupported PromQL: binary operator {op}")
    lhs, rhs = _convert(node.lhs, negative_ats), _convert(node.rhs, negative_ats)
    both_vectors = (ast.value_type(lhs) is ast.ValueType.VECTOR
                    and ast.value_type(rhs) is ast.ValueType.VECTOR)
    modifier = node.modifier
    return_bool = False
    matching = None
    if modifier is not None:
        fill = modifier.fill_values
        if fill is not None and (fill.lhs is not None or fill.rhs is not None):
            raise PromQLParseError("unsupported PromQL: fill modifiers are Prometheus 3 syntax")
        return_bool = bool(modifier.return_bool)
        if both_vectors:
            label_modifier = modifier.matching
            on = label_modifier is not None and str(label_modifier.type).endswith("Include")
            labels = tuple(label_modifier.labels) if label_modifier is not None else ()
            matching = ast.VectorMatching(_CARDINALITY[str(modifier.card)], on, labels,
                                          tuple(modifier.group_labels or ()))
    if matching is None and both_vectors:
        card = (ast.Cardinality.MANY_TO_MANY if op in ast.SET_OPERATORS
                else ast.Cardinality.ONE_TO_ONE)
        matching = ast.VectorMatching(card, False, (), ())
    return ast.BinaryExpr(op, lhs, rhs, return_bool, matching)
