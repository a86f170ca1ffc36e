"""Checks on declarations, options, constraints and the statement's shape."""
from __future__ import annotations

from optlang.errors import OptError
from optlang.options import OPTION_KINDS, option_value
from optlang.ir import shapes
from optlang.ir.nodes import ConstraintInfo, Input
from optlang.ir.walk import inputs_of
from optlang.syntax import ast

RESERVED_PARAM_NAMES = ("backend", "backward", "init", "max_iter", "solver", "time_limit", "tol", "verbose", "warn")


def check_declarations(program: ast.Program, dims, params, vars_) -> None:
    """Declarations are well formed: a var exists, dims positive, domains sensible."""
    if not vars_:
        raise OptError(
            "the problem declares no var",
            program.statement.span,
            "declare what to solve for with `var NAME[shape]`",
        )
    _check_dims_bound(program, dims, params)
    for p in params:
        if p.name in RESERVED_PARAM_NAMES:
            raise OptError(
                f"'{p.name}' cannot name a param: calls use it for an option",
                p.span,
                f"rename the param; {', '.join(RESERVED_PARAM_NAMES)} are keyword arguments of every call",
            )
    for decl in program.decls:
        if isinstance(decl, ast.DimDecl) and decl.value is not None and decl.value < 1:
            raise OptError(f"dim '{decl.name.id}' must be a positive integer, found {decl.value}", decl.span, "")
        if isinstance(decl, ast.ParamDecl):
            _check_attrs(decl)


def _check_dims_bound(program: ast.Program, dims, params) -> None:
    """Every dim that sizes a var must get its value from the file or from a param's shape."""
    known = {d.name for d in dims if d.value is not None}
    known |= {e for p in params for e in p.shape if isinstance(e, str)}
    for decl in program.decls:
        if isinstance(decl, ast.VarDecl):
            for entry in decl.shape:
                if isinstance(entry, ast.Name) and entry.id not in known:
                    raise OptError(
                        f"dim '{entry.id}' sizes the var '{decl.name.id}' but no param has it in its shape",
                        entry.span,
                        f"give it a value (`dim {entry.id} = 3`) or use it in a param's shape so calls can bind it",
                    )


def _check_attrs(decl: ast.ParamDecl) -> None:
    seen = {}
    for attr in decl.attrs:
        key = "flag:" + attr.flag if isinstance(attr, ast.FlagAttr) else "range"
        if key in seen:
            raise OptError(
                f"'{decl.name.id}' has two {'range' if key == 'range' else attr.flag} attributes",
                attr.span,
                "give each parameter at most one sign or interval attribute" if key == "range" else "drop the repeat",
            )
        seen[key] = attr
        if isinstance(attr, ast.IntervalAttr) and not attr.lo < attr.hi:
            raise OptError(
                f"the interval of '{decl.name.id}' is empty",
                attr.span,
                f"expected lo < hi, found lo = {attr.lo:g} and hi = {attr.hi:g}",
            )
        if isinstance(attr, ast.FlagAttr) and (len(decl.shape) != 2 or _entry(decl.shape[0]) != _entry(decl.shape[1])):
            raise OptError(
                f"'{attr.flag}' needs a square matrix",
                attr.span,
                f"'{decl.name.id}' is declared {_shape_text(decl.shape)}; declare it square, e.g. {_square_hint(decl.shape)}",
            )


def _square_hint(shape) -> str:
    first = str(_entry(shape[0])).removesuffix(".0") if shape else "n"
    return f"[{first}, {first}]"


def _entry(e):
    return e.id if isinstance(e, ast.Name) else e.value


def _shape_text(shape) -> str:
    return "a scalar" if not shape else "[" + ", ".join(str(_entry(e)).removesuffix(".0") for e in shape) + "]"


def check_options(items) -> tuple:
    """Validate the options block into sorted (key, value, span) triples."""
    out = {}
    for item in items:
        key = item.key.id
        if key not in OPTION_KINDS:
            raise OptError(f"unknown option '{key}'", item.key.span, "the options are " + ", ".join(sorted(OPTION_KINDS)))
        if key in out:
            raise OptError(f"option '{key}' is set twice", item.key.span, "keep one")
        out[key] = (key, option_value(key, item.value, item.value_span), item.span)
    return tuple(out[k] for k in sorted(out))


def classify_constraint(label, con: ast.Constraint, parts, normalized) -> list:
    """Tag each normalized constraint: bound, linear_eq, linear_ineq or other."""
    out = []
    var_sides = [p for p in parts if isinstance(p, Input) and p.role == "var"]
    is_bound = (
        len(var_sides) == 1
        and all(not _has_var(p) for p in parts if p is not var_sides[0])
        and all(shapes.broadcast(p.shape, var_sides[0].shape) == var_sides[0].shape for p in parts)
    )
    for i, (kind, g) in enumerate(normalized):
        if not _has_var(g):
            raise OptError("this constraint does not involve any var", con.span, "constraints restrict vars; check the names")
        if is_bound and kind == "ineq":
            var = var_sides[0]
            a, b, op = parts[i], parts[i + 1], con.ops[i]
            lower_side, upper_side = (a, b) if op == "<=" else (b, a)
            if lower_side is var:
                out.append(ConstraintInfo(label, kind, g, "bound", var.name, None, upper_side, span=con.span))
            else:
                out.append(ConstraintInfo(label, kind, g, "bound", var.name, lower_side, None, span=con.span))
            continue
        cls = ("linear_" + kind) if is_affine(g) else "other"
        out.append(ConstraintInfo(label, kind, g, cls, span=con.span))
    return out


def _has_var(e) -> bool:
    return any(i.role == "var" for i in inputs_of(e))


def is_affine(e) -> bool:
    """True if `e` is affine in the vars: its derivative in the vars has no var in it."""
    from optlang.passes.derivatives import jvp

    tangents = {i.name: Input("tangent", i.name, i.shape) for i in inputs_of(e) if i.role == "var"}
    return not _has_var(jvp(e, tangents))


def check_statement_shape(problem, stmt) -> None:
    """The objective is scalar; a root has the vars' total size; a fixed point the var's shape."""
    span = getattr(stmt, "expr").span if hasattr(stmt, "expr") else stmt.span
    e = problem.expr
    if problem.statement in ("minimize", "maximize") and e.shape != ():
        raise OptError(
            f"the objective of {problem.statement} must be a scalar",
            span,
            f"found {shapes.fmt(e.shape)}; reduce it, e.g. with sum(...) or sumsq(...)",
        )
    if problem.statement == "root":
        want = [v.shape for v in problem.vars]
        if len(problem.vars) == 1 and e.shape != want[0]:
            raise OptError(
                "root needs an expression with the shape of the var",
                span,
                f"the var '{problem.vars[0].name}' is {shapes.fmt(want[0])} but the expression is {shapes.fmt(e.shape)}",
            )
        if len(problem.vars) > 1 and _size(e.shape) != sum(_size(s) for s in want):
            sizes = " + ".join(f"{v.name} {shapes.fmt(v.shape)}" for v in problem.vars)
            raise OptError(
                "root needs as many equations as unknowns",
                span,
                f"the expression is {shapes.fmt(e.shape)} but the vars hold {sizes} entries; give the equations "
                "with the vars' total size (stack them in one vector)",
            )
    if problem.statement == "fixed_point":
        var = problem.var(problem.fixed_var)
        if e.shape != var.shape:
            raise OptError(
                "the map of a fixed point must have the shape of its var",
                span,
                f"'{var.name}' is {shapes.fmt(var.shape)} but the right side is {shapes.fmt(e.shape)}",
            )
        other = next((v for v in problem.vars if v.name != var.name), None)
        if other is not None:
            raise OptError(
                f"a fixed point solves for the one var on its left; '{other.name}' is a second var",
                other.span,
                f"make '{other.name}' a param, or stack both into '{var.name}' (z = g(z) on the joint vector)",
            )
    if not any(i.role == "var" for i in inputs_of(e)) and problem.statement != "fixed_point":
        raise OptError(
            f"the {problem.statement} expression does not involve any var",
            span,
            "it must depend on the declared var(s): " + ", ".join(v.name for v in problem.vars),
        )


def _size(shape):
    """The number of entries of a shape, symbolic in its dims (a SymPy expression)."""
    import sympy

    out = sympy.Integer(1)
    for d in shape:
        out *= sympy.Integer(d) if isinstance(d, int) else sympy.Symbol(d, positive=True)
    return sympy.expand(out)
