"""AST to typed IR: resolve names, inline lets, infer shapes, classify constraints.

Assumes a syntactically valid `ast.Program`. Guarantees a `nodes.Problem` whose
expressions are shape-correct, or raises `OptError` at the offending span with
what was found and what was expected.
"""
from __future__ import annotations

import difflib
from dataclasses import replace

from optlang.errors import OptError
from optlang.ir import algebra as A
from optlang.ir import shapes
from optlang.ir.check import check_declarations, check_options, classify_constraint, check_statement_shape
from optlang.ir.nodes import DimInfo, Domain, Input, ParamInfo, Problem, VarInfo
from optlang.ir.calls import ARITY, call
from optlang.syntax import ast



class Scope:
    """What each name means: a dim, a param, a var or a let (with its IR value)."""

    def __init__(self):
        self.kinds: dict[str, str] = {}
        self.values: dict = {}
        self.spans: dict = {}
        self.later: dict = {}  # names declared further down the file: name -> span

    def declare(self, name: ast.Name, kind: str, value=None) -> None:
        if name.id in self.kinds:
            first = self.spans[name.id]
            raise OptError(
                f"'{name.id}' is already declared",
                name.span,
                f"it was declared as a {self.kinds[name.id]} at line {first.line}, column {first.col}; "
                "every dim, param, var and let needs a name of its own",
            )
        self.kinds[name.id] = kind
        self.values[name.id] = value
        self.spans[name.id] = name.span

    def suggest(self, name: str, kinds=("param", "var", "let", "dim")) -> str:
        pool = [n for n, k in self.kinds.items() if k in kinds]
        close = difflib.get_close_matches(name, pool, n=1)
        return f"; did you mean '{close[0]}'?" if close else ""


def build(program: ast.Program) -> Problem:
    """Build the typed IR of a parsed program."""
    scope = Scope()
    scope.later = {d.name.id: d.name.span for d in reversed(program.decls)}
    dims, params, vars_ = [], [], []
    for decl in program.decls:
        if isinstance(decl, ast.DimDecl):
            scope.declare(decl.name, "dim")
            dims.append(DimInfo(decl.name.id, decl.value, decl.span))
        elif isinstance(decl, ast.ParamDecl):
            shape = resolve_shape(decl.shape, scope, decl.name.id)
            scope.declare(decl.name, "param", Input("param", decl.name.id, shape, decl.name.span))
            params.append(ParamInfo(decl.name.id, shape, domain_of(decl), decl.span))
        elif isinstance(decl, ast.VarDecl):
            shape = resolve_shape(decl.shape, scope, decl.name.id)
            scope.declare(decl.name, "var", Input("var", decl.name.id, shape, decl.name.span))
            vars_.append(VarInfo(decl.name.id, shape, decl.span))
        elif isinstance(decl, ast.LetDecl):
            value = expr(decl.value, scope)
            scope.declare(decl.name, "let", value)
    check_declarations(program, dims, params, vars_)
    stmt = program.statement
    constraints = ()
    fixed_var = None
    if isinstance(stmt, ast.Objective):
        body = expr(stmt.expr, scope)
        statement = stmt.sense
        constraints = tuple(c for con in stmt.constraints for c in constraint(con, scope))
        check_labels(stmt.constraints, scope)
    elif isinstance(stmt, ast.Root):
        body = expr(stmt.expr, scope)
        statement = "root"
    else:
        if scope.kinds.get(stmt.var.id) != "var":
            found = scope.kinds.get(stmt.var.id)
            raise OptError(
                f"fixed_point needs a var on the left, found {'a ' + found + ' ' if found else 'an unknown name '}'{stmt.var.id}'",
                stmt.var.span,
                "write `fixed_point z = EXPR` with z declared by `var`" + scope.suggest(stmt.var.id, ("var",)),
            )
        body = expr(stmt.expr, scope)
        statement = "fixed_point"
        fixed_var = stmt.var.id
    problem = Problem(
        name=program.name.id,
        dims=tuple(dims),
        params=tuple(params),
        vars=tuple(vars_),
        statement=statement,
        expr=body,
        constraints=constraints,
        fixed_var=fixed_var,
        options=check_options(program.options),
        statement_span=stmt.span,
        source_name=program.span.source.name if program.span.source else "<string>",
    )
    check_statement_shape(problem, stmt)
    return problem


def domain_of(decl: ast.ParamDecl) -> Domain:
    """The call-time checks a param's attributes ask for."""
    dom = Domain()
    for attr in decl.attrs:
        if isinstance(attr, ast.SignAttr):
            if attr.op in (">", ">="):
                dom = replace(dom, lo=attr.bound, lo_closed=attr.op == ">=")
            else:
                dom = replace(dom, hi=attr.bound, hi_closed=attr.op == "<=")
        elif isinstance(attr, ast.IntervalAttr):
            dom = replace(dom, lo=attr.lo, hi=attr.hi, lo_closed=attr.lo_closed, hi_closed=attr.hi_closed)
        else:
            dom = replace(dom, **{attr.flag: True})
    return dom


def resolve_shape(entries, scope: Scope, owner: str) -> tuple:
    """Turn shape entries (dim names, integer literals) into a shape."""
    out = []
    for entry in entries:
        if isinstance(entry, ast.Number):
            if not float(entry.value).is_integer() or entry.value < 1:
                raise OptError(
                    f"a shape entry must be a dim or a positive integer, found '{entry.text}'",
                    entry.span,
                    f"in the shape of '{owner}'",
                )
            out.append(int(entry.value))
            continue
        kind = scope.kinds.get(entry.id)
        if kind != "dim":
            what = f"a {kind}" if kind else "not declared"
            raise OptError(
                f"'{entry.id}' is {what}; a shape entry must be a dim or an integer",
                entry.span,
                f"declare it with `dim {entry.id}` before '{owner}'{scope.suggest(entry.id, ('dim',))}" if kind is None
                else f"only dims (declared with `dim`) can size '{owner}'",
            )
        out.append(entry.id)
    return tuple(out)


# ---- expressions ------------------------------------------------------------------

def expr(node, scope: Scope):
    """Type one AST expression into IR (raising OptError on misfits)."""
    out = _expr(node, scope)
    # Spans are not compared, so attaching one keeps equal subexpressions equal.
    if getattr(out, "span", 1) is None and not isinstance(node, ast.NameRef):
        out = replace(out, span=node.span)
    return out


def _expr(node, scope: Scope):
    if isinstance(node, ast.Number):
        return A.const(node.value)
    if isinstance(node, ast.NameRef):
        return name_ref(node, scope)
    if isinstance(node, ast.UnaryOp):
        inner = expr(node.operand, scope)
        return A.neg(inner) if node.op == "-" else inner
    if isinstance(node, ast.BinaryOp):
        return binary(node, scope)
    if isinstance(node, ast.Transpose):
        return A.transpose(expr(node.operand, scope))
    if isinstance(node, ast.ArrayLiteral):
        return array_literal(node, scope)
    if isinstance(node, ast.Call):
        return call(node, scope)
    raise AssertionError(f"unknown AST node {type(node).__name__}")


def name_ref(node: ast.NameRef, scope: Scope):
    kind = scope.kinds.get(node.id)
    if kind is None and node.id in scope.later:
        line = scope.later[node.id].line
        raise OptError(f"'{node.id}' is used before it is declared", node.span,
                       f"'{node.id}' is declared at line {line}; move that declaration above this line")
    if kind is None and node.id in ARITY:
        raise OptError(f"'{node.id}' is a function, not a value", node.span,
                       f"call it with its arguments, e.g. {node.id}(x)")
    if kind is None:
        raise OptError(f"unknown name '{node.id}'", node.span, "declare it with dim, param, var or let" + scope.suggest(node.id))
    if kind == "dim":
        return A.dim_size(node.id)
    return scope.values[node.id]


def binary(node: ast.BinaryOp, scope: Scope):
    lhs, rhs = expr(node.lhs, scope), expr(node.rhs, scope)
    if node.op == "@":
        return matmul(node, lhs, rhs)
    if shapes.broadcast(lhs.shape, rhs.shape) is None:
        raise OptError(
            f"'{node.op}' needs shapes that broadcast",
            node.span,
            f"the left side is {shapes.fmt(lhs.shape)} but the right side is {shapes.fmt(rhs.shape)}; "
            "elementwise operations follow NumPy broadcasting (trailing dims equal, or 1)",
        )
    op = {"+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow"}[node.op]
    if op == "div" and A.is_zero(rhs):
        raise OptError("division by zero", node.span, "the divisor is 0 at every call")
    return constant_checked(A.ew(op, lhs, rhs), node)


def constant_checked(e, node):
    """`e`, unless it is arithmetic on numbers with no finite real value (2 / 0, (-1)^0.5, exp(1000))."""
    if A.has_no_value(e):
        raise OptError("this constant expression has no finite real value", node.span,
                       "it would be infinite, undefined or complex at every call; fix the numbers")
    return e


def matmul(node: ast.BinaryOp, lhs, rhs):
    for side, e in (("left", lhs), ("right", rhs)):
        if len(e.shape) not in (1, 2):
            raise OptError(
                "'@' needs vectors or matrices",
                node.span,
                f"the {side} side is {shapes.fmt(e.shape)}; use '*' to scale by a scalar",
            )
    if shapes.matmul(lhs.shape, rhs.shape) is None:
        want = list(rhs.shape)
        want[0] = lhs.shape[-1]
        raise OptError(
            "'@' needs matching inner dims",
            node.span,
            f"the left side is {shapes.fmt(lhs.shape)} but the right side is {shapes.fmt(rhs.shape)}; "
            f"expected the right side to be {shapes.fmt(tuple(want))}",
        )
    return A.matmul(lhs, rhs)


def array_literal(node: ast.ArrayLiteral, scope: Scope):
    shape = resolve_shape(node.shape, scope, node.kind)
    if node.kind == "eye":
        if len(shape) != 1:
            raise OptError(f"eye takes one dim, found {len(shape)}", node.span, "write eye[n] for the n-by-n identity")
        return A.eye(shape[0])
    if not shape:
        raise OptError(f"{node.kind} needs a shape", node.span, f"write {node.kind}[n] or {node.kind}[m, n]")
    return A.fill(0.0 if node.kind == "zeros" else 1.0, shape)


def check_labels(constraints, scope: Scope) -> None:
    """Labels name duals: each is used once, is not the name of anything else, and marks one constraint."""
    seen = {}
    for con in constraints:
        if con.label is None:
            continue
        name = con.label.id
        if name in seen:
            raise OptError(f"the label '{name}' is used twice", con.label.span,
                           f"it already labels the constraint on line {seen[name]}; give each dual its own label")
        if name in scope.kinds:
            raise OptError(f"the label '{name}' is also the name of a {scope.kinds[name]}", con.label.span,
                           "duals are returned under their labels; pick a name not used in the file")
        if len(con.ops) == 2:
            raise OptError("a chained constraint cannot carry a label", con.label.span,
                           "its two sides have two duals: write it as two constraints, each with its own label")
        seen[name] = con.span.line


def constraint(con: ast.Constraint, scope: Scope):
    """One constraint line as normalized ConstraintInfo entries (two for a chain)."""
    parts = [expr(p, scope) for p in con.parts]
    label = con.label.id if con.label else None
    out = []
    for i, op in enumerate(con.ops):
        a, b = parts[i], parts[i + 1]
        if shapes.broadcast(a.shape, b.shape) is None:
            raise OptError(
                f"the sides of '{op}' do not broadcast",
                con.span,
                f"the left side is {shapes.fmt(a.shape)} but the right side is {shapes.fmt(b.shape)}",
            )
        if op == "==":
            out.append(("eq", A.sub(a, b)))
        elif op == "<=":
            out.append(("ineq", A.sub(a, b)))
        else:
            out.append(("ineq", A.sub(b, a)))
    if len(con.ops) == 2 and "==" in con.ops:
        raise OptError("a chained constraint takes '<=' or '>=' on both sides", con.span, "write `lo <= x <= hi`")
    return classify_constraint(label, con, parts, out)
