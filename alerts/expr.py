"""The expression language of query rules, compiled to ClickHouse SQL with bound parameters.

A query rule's ``where`` is a Python-like boolean expression over a request's fields and
features, such as ``amount > 500 and country in ('BR', 'NG') and not is_new``. It is parsed
with Python's ``ast`` and only these forms are accepted: ``and``/``or``/``not``, comparisons
(``== != < <= > >= in not in``) between a name and a constant (or a tuple of constants),
names, numbers, strings and booleans. Anything else is refused with its position.

Names are the record's fields (``latency_ms``, ``prediction``, ``status``,
``prediction_label``, ``version``) or its features: a feature compared with a number is read
from ``numeric_features``, one compared with text from ``categorical_features``. A name and a
constant never reach the SQL text: both are bound parameters, so no user input is spliced.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

#: Record fields a rule may name, as their SQL column and type.
FIELDS: dict[str, tuple[str, str]] = {
    "latency_ms": ("latency_ms", "number"),
    "prediction": ("prediction", "number"),
    "status": ("status", "text"),
    "prediction_label": ("prediction_label", "text"),
    "version": ("model_version", "text"),
    "error": ("error", "text"),
}
_OPERATORS = {ast.Eq: "=", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
              ast.GtE: ">="}


class ExpressionError(ValueError):
    """A rule expression outside the language; the message says what and where."""


@dataclass
class Compiled:
    """SQL text with ``{name:Type}`` placeholders, and the values to bind to them."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


class _Compiler:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, kind: str) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{kind}}}"

    def column(self, name: str, kind: str) -> str:
        """A field's column, or a feature's map lookup for a number or a text comparison."""
        if name in FIELDS:
            column, field_kind = FIELDS[name]
            if field_kind != kind:
                raise ExpressionError(f"{name} is a {field_kind} field, compared with a {kind}")
            return column
        key = self.bind(name, "String")
        return (f"numeric_features[{key}]" if kind == "number"
                else f"categorical_features[{key}]")

    def present(self, name: str, kind: str) -> str:
        """True when the feature is in the request (an absent one never matches)."""
        if name in FIELDS:
            return "1"
        key = self.bind(name, "String")
        return (f"mapContains(numeric_features, {key})" if kind == "number"
                else f"mapContains(categorical_features, {key})")

    def compile(self, node: ast.AST) -> str:
        if isinstance(node, ast.BoolOp):
            joiner = " AND " if isinstance(node.op, ast.And) else " OR "
            return "(" + joiner.join(self.compile(v) for v in node.values) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(NOT {self.compile(node.operand)})"
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise _at(node, "one comparison at a time: write a < x and x < b")
            return self.comparison(node.left, node.ops[0], node.comparators[0], node)
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return "1" if node.value else "0"  # where: True, every request
        if isinstance(node, ast.Name):  # a boolean feature: stored as 1 or 0
            return self.comparison(node, ast.Eq(), ast.Constant(True), node)
        raise _at(node, f"{type(node).__name__} is not part of the rule language")

    def comparison(self, left: ast.AST, op: ast.cmpop, right: ast.AST, node: ast.AST) -> str:
        if not isinstance(left, ast.Name):
            raise _at(node, "the left side of a comparison must be a field or feature name")
        name = left.id
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.Tuple, ast.List)) or not right.elts:
                raise _at(node, "`in` takes a tuple of constants: x in ('a', 'b')")
            values = [_constant(v) for v in right.elts]
            kind = _kind(values[0])
            if any(_kind(v) != kind for v in values):
                raise _at(node, "the constants of `in` must all be numbers or all text")
            array = self.bind([_value(v) for v in values],
                              "Array(Float64)" if kind == "number" else "Array(String)")
            test = f"has({array}, {self.column(name, kind)})"
            if isinstance(op, ast.NotIn):
                test = f"NOT {test}"
            return f"({self.present(name, kind)} AND {test})"
        if type(op) not in _OPERATORS:
            raise _at(node, f"operator {type(op).__name__} is not part of the rule language")
        value = _constant(right)
        kind = _kind(value)
        if kind == "text" and type(op) not in (ast.Eq, ast.NotEq):
            raise _at(node, "text is compared with == or != only")
        bound = self.bind(_value(value), "Float64" if kind == "number" else "String")
        return (f"({self.present(name, kind)} AND "
                f"{self.column(name, kind)} {_OPERATORS[type(op)]} {bound})")


def compile_expression(text: str, prefix: str = "q") -> Compiled:
    """Compile a ``where`` expression; raise ``ExpressionError`` outside the language."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {exc.msg} at column {exc.offset}") from None
    compiler = _Compiler(prefix)
    return Compiled(compiler.compile(tree.body), compiler.params)


def feature_names(text: str) -> set[str]:
    """The feature names an expression reads (fields left out)."""
    tree = ast.parse(text, mode="eval")
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in FIELDS}


def _constant(node: ast.AST) -> Any:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)):
        return -node.operand.value
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    raise _at(node, "the right side of a comparison must be a number, text or a boolean")


def _kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "number"


def _value(value: Any) -> Any:
    # booleans are stored as numeric features, 1 and 0 (telemetry.records.split_features)
    return float(value) if isinstance(value, (int, float)) else value


def _at(node: ast.AST, message: str) -> ExpressionError:
    column = getattr(node, "col_offset", None)
    return ExpressionError(message if column is None else f"{message} (at column {column + 1})")
