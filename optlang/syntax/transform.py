"""Lark parse tree to AST: build every node with a Span, then check the order of lines.

The grammar accepts the lines of a file in any order; `build_program` checks
the order here so that a misplaced line gets a message naming it. Errors
raised inside the Lark transformer are unwrapped from Lark's `VisitError`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError

from optlang.errors import OptError, Source, Span
from optlang.syntax import ast

__all__ = ["to_program", "build_program"]

ARRAY_KINDS = ("zeros", "ones", "eye")
FLAGS = ("symmetric",)  # `psd` is a keyword; other flags are plain names


def to_program(tree: Tree, source: Source) -> ast.Program:
    """Transform a parse tree of `source` into an `ast.Program`."""
    try:
        lines = _ToAst(source).transform(tree)
    except VisitError as err:
        # Users see our OptError, never Lark's wrapper around it.
        raise err.orig_exc from None
    return build_program(lines, source)


# ---- line records: what the transform hands to build_program ---------------------

@dataclass(frozen=True)
class Line:
    """One line of a file: its kind, how messages name it, where they point, its nodes."""

    kind: str  # problem | decl | statement | subject_to | constraint | options | assignment
    word: str  # e.g. "'var'", "a constraint"
    span: Span
    node: Any = None  # the AST node(s) the line carries
    extra: Any = None  # an assignment's (`=` span, value); None otherwise


def _num(tok: Token, source: Source, sign: Token | None = None) -> ast.Number:
    """A Number from a NUMBER token, negated when `sign` is a `-` token."""
    span = _tok_span(tok, source)
    text = str(tok)
    if sign is not None:
        span = _tok_span(sign, source).join(span)
        text = "-" + text
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf: not a number anyone means, and not printable code
        raise OptError(f"the number {str(tok)} is too large: it overflows float64 (to inf)", _tok_span(tok, source),
                       "numbers must have a magnitude below 1.8e308")
    return ast.Number(value, text, span)


def _tok_span(tok: Token, source: Source) -> Span:
    """The span of one token."""
    return Span(tok.line, tok.column, tok.end_line, tok.end_column, source)


@v_args(inline=True, meta=True)
class _ToAst(Transformer):
    """Rule-by-rule construction of AST nodes (one method per grammar rule or alias)."""

    def __init__(self, source: Source):
        super().__init__()
        self.source = source

    def _span(self, meta) -> Span:
        return Span(meta.line, meta.column, meta.end_line, meta.end_column, self.source)

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(str(tok), _tok_span(tok, self.source))

    # -- the file and its lines --

    def start(self, meta, *lines: Line) -> list[Line]:
        return list(lines)

    def problem(self, meta, kw, name) -> Line:
        return Line("problem", "'problem'", _tok_span(kw, self.source), self._name(name))

    def decls(self, meta, kw, *decls) -> Line:
        return Line("decl", f"'{kw}'", _tok_span(kw, self.source), tuple(decls))

    def let(self, meta, kw, name, _eq, value) -> Line:
        return self.decls(meta, kw, ast.LetDecl(self._name(name), value, self._span(meta)))

    def dim(self, meta, name, _eq=None, value=None) -> ast.DimDecl:
        size = None
        if value is not None:
            size = int(value) if str(value).isdigit() else 0
            if size <= 0:
                raise OptError(f"bad size '{value}' for dim '{name}'", _tok_span(value, self.source),
                               "a dim's size is a positive whole number, e.g. 'dim n = 3'")
        return ast.DimDecl(self._name(name), size, self._span(meta))

    def param(self, meta, name, shape, *attrs) -> ast.ParamDecl:
        return ast.ParamDecl(self._name(name), shape or (), tuple(attrs), self._span(meta))

    def var(self, meta, name, shape) -> ast.VarDecl:
        return ast.VarDecl(self._name(name), shape or (), self._span(meta))

    def shape(self, meta, *entries: Token) -> tuple[ast.ShapeEntry, ...]:
        return tuple(self._shape_entry(t) for t in entries)

    def _shape_entry(self, tok: Token) -> ast.ShapeEntry:
        if tok.type == "NAME":
            return self._name(tok)
        if not str(tok).isdigit():
            raise OptError(f"bad shape entry '{tok}'", _tok_span(tok, self.source),
                           "a shape lists dim names or whole numbers, e.g. [n, 3]")
        return _num(tok, self.source)

    # -- param attributes --

    def sign_attr(self, meta, op, bound: ast.Number) -> ast.SignAttr:
        return ast.SignAttr(str(op), bound.value, self._span(meta))

    def interval_attr(self, meta, _in, lo_br, lo, hi, hi_br) -> ast.IntervalAttr:
        return ast.IntervalAttr(lo.value, hi.value, lo_br == "[", hi_br == "]", self._span(meta))

    def flag_attr(self, meta, tok) -> ast.FlagAttr:
        if tok.type == "NAME" and str(tok) not in FLAGS:
            raise OptError(f"unknown attribute '{tok}'", _tok_span(tok, self.source),
                           "expected '> 0', '>= 0', '< 0', '<= 0', 'in [lo, hi]', 'psd' or "
                           "'symmetric'; separate declarations with commas: 'param a, b'")
        return ast.FlagAttr(str(tok), self._span(meta))

    def signed_number(self, meta, sign, tok) -> ast.Number:
        return _num(tok, self.source, sign)

    # -- the problem statement --

    def objective(self, meta, kw, expr) -> Line:
        node = ast.Objective(str(kw), expr, (), self._span(meta))
        return Line("statement", f"'{kw}'", _tok_span(kw, self.source), node)

    def root(self, meta, kw, expr) -> Line:
        return Line("statement", "'root'", _tok_span(kw, self.source), ast.Root(expr, self._span(meta)))

    def fixed_point(self, meta, kw, name, _eq, expr) -> Line:
        node = ast.FixedPoint(self._name(name), expr, self._span(meta))
        return Line("statement", "'fixed_point'", _tok_span(kw, self.source), node)

    def subject_to(self, meta, subject, to, constraint) -> Line:
        span = _tok_span(subject, self.source).join(_tok_span(to, self.source))
        return Line("subject_to", "'subject to'", span, constraint and constraint.node)

    def constraint(self, meta, label, *rest) -> Line:
        rest = [r for r in rest if r is not None]  # an unchained constraint has two parts
        parts, ops = tuple(rest[0::2]), tuple(rest[1::2])
        node = ast.Constraint(label, parts, tuple(str(op) for op in ops),
                              tuple(_tok_span(op, self.source) for op in ops), self._span(meta))
        _check_chain(node)
        return Line("constraint", "a constraint", node.span, node)

    def label(self, meta, name) -> ast.Name:
        return self._name(name)

    def options(self, meta, kw) -> Line:
        return Line("options", "'options'", _tok_span(kw, self.source))

    def assignment(self, meta, name, eq, value) -> Line:
        if isinstance(value, Token):  # a STRING
            value = (str(value)[1:-1], _tok_span(value, self.source))
        return Line("assignment", f"'{name} = ...'", self._span(meta), self._name(name),
                    (_tok_span(eq, self.source), value))

    # -- expressions --

    def binop(self, meta, lhs, op, rhs) -> ast.BinaryOp:
        return ast.BinaryOp(str(op), lhs, rhs, self._span(meta), _tok_span(op, self.source))

    def unop(self, meta, op, operand) -> ast.UnaryOp:
        return ast.UnaryOp(str(op), operand, self._span(meta))

    def transpose(self, meta, operand, _quote) -> ast.Transpose:
        return ast.Transpose(operand, self._span(meta))

    def number(self, meta, tok) -> ast.Number:
        return _num(tok, self.source)

    def name_ref(self, meta, tok) -> ast.NameRef:
        return ast.NameRef(str(tok), _tok_span(tok, self.source))

    def paren(self, meta, inner):
        # No node for parentheses; the inner node's span grows to cover them
        # so that a caret under it underlines what the user wrote.
        return dataclasses.replace(inner, span=self._span(meta))

    def kwarg(self, meta, name, _eq, value) -> ast.Keyword:
        return ast.Keyword(self._name(name), value, self._span(meta))

    def call(self, meta, func, *items) -> ast.Call:
        args, kwargs = [], []
        for item in items:
            if isinstance(item, ast.Keyword):
                kwargs.append(item)
            elif kwargs:
                raise OptError("positional argument after a keyword argument", item.span,
                               f"put keyword arguments such as '{kwargs[-1].name.id}=...' last")
            else:
                args.append(item)
        return ast.Call(self._name(func), tuple(args), tuple(kwargs), self._span(meta))

    def array(self, meta, name, shape) -> ast.ArrayLiteral:
        if str(name) not in ARRAY_KINDS:
            raise OptError(f"'{name}[...]' is not an array literal", self._span(meta),
                           "only zeros[shape], ones[shape] and eye[n] take brackets; "
                           "indexing is not supported")
        return ast.ArrayLiteral(str(name), shape, self._span(meta))


def _check_chain(c: ast.Constraint) -> None:
    """A chained constraint reads `lo <= e <= hi` or `hi >= e >= lo`, nothing else."""
    if len(c.ops) == 2 and not (c.ops[0] == c.ops[1] and c.ops[0] in ("<=", ">=")):
        raise OptError(f"cannot chain '{c.ops[0]}' with '{c.ops[1]}'", c.op_spans[1],
                       "a chained constraint is 'lo <= x <= hi' or 'hi >= x >= lo'; "
                       "write other combinations as two constraints")


# ---- the order of lines ---------------------------------------------------------

def build_program(lines: list[Line], source: Source) -> ast.Program:
    """Check the order of `lines` and assemble the Program.

    Order: `problem NAME` first and once; declarations; exactly one statement;
    `subject to` and its constraints only after minimize/maximize; `options`
    and its `key = value` lines last and at most once.
    """
    if not lines:
        raise OptError("empty file: expected 'problem NAME'", Span(1, 1, 1, 2, source),
                       "a .opt file starts with 'problem NAME', then declarations, "
                       "then one of 'minimize', 'maximize', 'root' or 'fixed_point'")
    if lines[0].kind != "problem":
        raise OptError("the file must start with 'problem NAME'", lines[0].span,
                       f"found {lines[0].word} first; add a line 'problem NAME' above it")
    builder = _Builder(lines[0])
    for line in lines[1:]:
        _ADD[line.kind](builder, line)
    return builder.finish(lines, source)


class _Builder:
    """The state of `build_program` while it walks the lines."""

    def __init__(self, problem: Line):
        self.problem = problem
        self.decls: list = []
        self.statement: Line | None = None
        self.subject: Line | None = None
        self.constraints: list[ast.Constraint] = []
        self.options: Line | None = None
        self.items: list[ast.OptionItem] = []

    def finish(self, lines: list[Line], source: Source) -> ast.Program:
        if self.statement is None:
            raise OptError("no problem statement", _end_of(lines[-1]),
                           "add one of 'minimize EXPR', 'maximize EXPR', 'root EXPR' "
                           "or 'fixed_point VAR = EXPR' after the declarations")
        if self.subject is not None and not self.constraints:
            raise OptError("'subject to' with no constraints", self.subject.span,
                           "write one constraint a line below it, or remove it")
        stmt = self.statement.node
        if isinstance(stmt, ast.Objective):
            stmt = dataclasses.replace(stmt, constraints=tuple(self.constraints))
        span = self.problem.span.join(_extent(lines[-1]))
        return ast.Program(self.problem.node, tuple(self.decls), stmt, tuple(self.items), span)


def _extent(line: Line) -> Span:
    """The span of a line's whole content, keyword through last node."""
    last = line.node[-1] if isinstance(line.node, tuple) and line.node else line.node
    node_span = getattr(last, "span", None)
    return line.span.join(node_span) if node_span is not None else line.span


def _end_of(line: Line) -> Span:
    """A one-character span just past the end of a line's content."""
    s = _extent(line)
    return Span(s.end_line, s.end_col, s.end_line, s.end_col + 1, s.source)


def _where(line: Line) -> str:
    """How messages refer back to an earlier line."""
    return f"line {line.span.line}"


def _not_after_options(b: _Builder, line: Line) -> None:
    """Reject any line other than an option after the `options` line."""
    if b.options is not None:
        raise OptError(f"{line.word} after the options block", line.span,
                       f"the 'options' block ({_where(b.options)}) must come last; "
                       "move this line above it")


def _add_problem(b: _Builder, line: Line) -> None:
    raise OptError("a second 'problem' line", line.span,
                   f"the problem is already named '{b.problem.node.id}' on {_where(b.problem)}; "
                   "a file describes one problem")


def _add_decl(b: _Builder, line: Line) -> None:
    _not_after_options(b, line)
    if b.statement is not None:
        raise OptError(f"{line.word} declaration after the problem statement", line.span,
                       f"declarations come before {b.statement.word} ({_where(b.statement)}); "
                       "move this line above it")
    b.decls.extend(line.node)


def _add_statement(b: _Builder, line: Line) -> None:
    _not_after_options(b, line)
    if b.statement is not None:
        raise OptError("a second problem statement", line.span,
                       "a file has exactly one of 'minimize', 'maximize', 'root' or 'fixed_point'; "
                       f"the first is {b.statement.word} on {_where(b.statement)}")
    b.statement = line


def _add_subject_to(b: _Builder, line: Line) -> None:
    _not_after_options(b, line)
    if b.subject is not None:
        raise OptError("a second 'subject to'", line.span,
                       f"list every constraint under the first one ({_where(b.subject)})")
    if b.statement is None:
        raise OptError("'subject to' before the objective", line.span,
                       "write 'minimize EXPR' or 'maximize EXPR' first, then 'subject to'")
    if not isinstance(b.statement.node, ast.Objective):
        raise OptError(f"'subject to' after {b.statement.word}", line.span,
                       "only 'minimize' and 'maximize' take constraints")
    b.subject = line
    if line.node is not None:
        b.constraints.append(line.node)


def _add_constraint(b: _Builder, line: Line) -> None:
    _not_after_options(b, line)
    if b.subject is None:
        if b.statement is not None and isinstance(b.statement.node, ast.Objective):
            what = f"add a line 'subject to' after {b.statement.word} ({_where(b.statement)})"
        elif b.statement is not None:
            what = f"{b.statement.word} takes no constraints"
        else:
            what = "constraints go under 'subject to', after 'minimize' or 'maximize'"
        raise OptError("a constraint outside 'subject to'", line.span, what)
    b.constraints.append(line.node)


def _add_options(b: _Builder, line: Line) -> None:
    if b.options is not None:
        raise OptError("a second 'options' block", line.span,
                       f"put every option under the first 'options' ({_where(b.options)})")
    b.options = line


def _add_assignment(b: _Builder, line: Line) -> None:
    eq_span, value = line.extra
    name = line.node.id
    if b.options is None and b.subject is not None:
        raise OptError("'=' in a constraint", eq_span, "use '==' for an equality constraint")
    if b.options is None:
        raise OptError(f"'{name} = ...' outside the options block", line.span,
                       f"to name an expression write 'let {name} = ...'; "
                       "options go last, under a line 'options'")
    value, value_span = _option_value(value)
    b.items.append(ast.OptionItem(line.node, value, value_span, line.span))


def _option_value(value) -> tuple[Any, Span]:
    """An option's value: a string, or a number literal possibly signed."""
    if isinstance(value, tuple):
        return value
    sign, number = 1, value
    if isinstance(value, ast.UnaryOp) and isinstance(value.operand, ast.Number):
        sign, number = (-1 if value.op == "-" else 1), value.operand
    if not isinstance(number, ast.Number):
        raise OptError("an option's value must be a number or a string", value.span,
                       'e.g. tol = 1e-8, max_iter = 500, solver = "newton"')
    text = number.text
    plain = int(text) if text.isdigit() else float(text)
    return sign * plain, value.span


_ADD = {
    "problem": _add_problem, "decl": _add_decl, "statement": _add_statement,
    "subject_to": _add_subject_to, "constraint": _add_constraint,
    "options": _add_options, "assignment": _add_assignment,
}
