"""The abstract syntax tree of a `.opt` file: frozen nodes, each with a Span.

The AST records what was written, nothing more: names are unresolved,
shapes unchecked. `optlang.ir.build` turns it into the typed IR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from optlang.errors import Span


@dataclass(frozen=True)
class Name:
    """An identifier as written."""

    id: str
    span: Span


# ---- expressions -----------------------------------------------------------

@dataclass(frozen=True)
class Number:
    """A numeric literal; `text` is as written (for messages)."""

    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class NameRef:
    """A use of a dim, param, var or let name."""

    id: str
    span: Span


@dataclass(frozen=True)
class UnaryOp:
    """Unary minus (`op == "-"`) or plus."""

    op: str
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class BinaryOp:
    """`+ - * / ^ @`; `op_span` points at the operator itself."""

    op: str
    lhs: "Expr"
    rhs: "Expr"
    span: Span
    op_span: Span


@dataclass(frozen=True)
class Transpose:
    """Postfix `x'`."""

    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Keyword:
    """`name=value` inside a call, e.g. `axis=0`."""

    name: Name
    value: "Expr"
    span: Span


@dataclass(frozen=True)
class Call:
    """`f(args, kw=value)`; `func` is the function name as written."""

    func: Name
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...]
    span: Span


@dataclass(frozen=True)
class ArrayLiteral:
    """`zeros[shape]`, `ones[shape]`, `eye[n]`."""

    kind: str  # "zeros" | "ones" | "eye"
    shape: tuple["ShapeEntry", ...]
    span: Span


Expr = Union[Number, NameRef, UnaryOp, BinaryOp, Transpose, Call, ArrayLiteral]
# A shape entry is a dim name or an integer literal (Number with an integral value).
ShapeEntry = Union[Name, Number]


# ---- declarations ----------------------------------------------------------

@dataclass(frozen=True)
class SignAttr:
    """`> 0`, `>= 0`, `< 0`, `<= 0` after a param."""

    op: str
    bound: float
    span: Span


@dataclass(frozen=True)
class IntervalAttr:
    """`in [lo, hi)` and friends; closed ends are marked by brackets."""

    lo: float
    hi: float
    lo_closed: bool
    hi_closed: bool
    span: Span


@dataclass(frozen=True)
class FlagAttr:
    """`psd` or `symmetric`."""

    flag: str
    span: Span


Attr = Union[SignAttr, IntervalAttr, FlagAttr]


@dataclass(frozen=True)
class DimDecl:
    name: Name
    value: int | None
    span: Span


@dataclass(frozen=True)
class ParamDecl:
    name: Name
    shape: tuple[ShapeEntry, ...]  # () for a scalar
    attrs: tuple[Attr, ...]
    span: Span


@dataclass(frozen=True)
class VarDecl:
    name: Name
    shape: tuple[ShapeEntry, ...]
    span: Span


@dataclass(frozen=True)
class LetDecl:
    name: Name
    value: Expr
    span: Span


Decl = Union[DimDecl, ParamDecl, VarDecl, LetDecl]


# ---- the problem statement ---------------------------------------------------

@dataclass(frozen=True)
class Constraint:
    """One constraint line: `parts[0] ops[0] parts[1] [ops[1] parts[2]]`.

    Two parts for `a <= b`, `a >= b`, `a == b`; three for the chained
    `lo <= e <= hi` (or `hi >= e >= lo`). `op_spans` point at the operators.
    """

    label: Name | None
    parts: tuple[Expr, ...]
    ops: tuple[str, ...]
    op_spans: tuple[Span, ...]
    span: Span


@dataclass(frozen=True)
class Objective:
    """`minimize EXPR` / `maximize EXPR`, with an optional `subject to` block."""

    sense: str  # "minimize" | "maximize"
    expr: Expr
    constraints: tuple[Constraint, ...]
    span: Span  # covers the keyword and the expression


@dataclass(frozen=True)
class Root:
    """`root EXPR`."""

    expr: Expr
    span: Span


@dataclass(frozen=True)
class FixedPoint:
    """`fixed_point VAR = EXPR`."""

    var: Name
    expr: Expr
    span: Span


Statement = Union[Objective, Root, FixedPoint]


@dataclass(frozen=True)
class OptionItem:
    """`key = value` in the options block; value is a float, int or str."""

    key: Name
    value: float | int | str
    value_span: Span
    span: Span


@dataclass(frozen=True)
class Program:
    """A whole `.opt` file."""

    name: Name
    decls: tuple[Decl, ...]
    statement: Statement
    options: tuple[OptionItem, ...]
    span: Span
