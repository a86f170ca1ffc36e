"""Typing of function calls: `sum(x, axis=0)`, `dot(a, b)`, `exp(x)`, `clip(x, lo, hi)`, ..."""
from __future__ import annotations

import difflib

from optlang.errors import OptError
from optlang.ir import algebra as A
from optlang.ir import shapes
from optlang.ir.primitives import SURFACE_ELEMENTWISE
from optlang.syntax import ast

REDUCTIONS = ("sum", "mean", "sumsq", "norm1", "norm2", "norminf", "logsumexp", "max", "min")
ARITY = {name: 1 for name in REDUCTIONS}
ARITY.update({name: 1 for name in SURFACE_ELEMENTWISE})
ARITY.update({"maximum": 2, "minimum": 2, "dot": 2, "quad": 2, "transpose": 1, "clip": 3, "neg": 1, "expand": 1})
TAKES_AXIS = set(REDUCTIONS) | {"dot", "expand"}


def call(node: ast.Call, scope):
    """Type a call node into IR."""
    from optlang.ir.build import expr

    name = node.func.id
    if name not in ARITY:
        close = difflib.get_close_matches(name, sorted(ARITY), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "see LANGUAGE.md for the functions"
        if name in scope.kinds:
            hint = f"'{name}' is a {scope.kinds[name]}, not a function; there is no implicit multiplication, write '*' or '@'"
        raise OptError(f"unknown function '{name}'", node.func.span, hint)
    if len(node.args) != ARITY[name]:
        raise OptError(
            f"{name} takes {_count(ARITY[name])}, found {len(node.args)}",
            node.span,
            f"write {name}({', '.join('xyz'[:ARITY[name]])})",
        )
    axis = _axis(node, name)
    args = [expr(a, scope) for a in node.args]
    if name in REDUCTIONS:
        return _reduction(node, name, args[0], axis)
    if name == "dot":
        return _dot(node, args, axis)
    if name == "quad":
        return _quad(node, args)
    if name == "expand":
        return _expand(node, args[0], axis)
    if name == "transpose":
        if len(args[0].shape) != 2:
            raise OptError("transpose needs a matrix", node.span, f"the argument is {shapes.fmt(args[0].shape)}; a vector is its own transpose")
        return A.transpose(args[0])
    _check_broadcast(node, name, args)
    if name == "clip":
        return A.ew("minimum", A.ew("maximum", args[0], args[1]), args[2])
    if name == "neg":
        return A.ew("relu", A.neg(args[0]))
    from optlang.ir.build import constant_checked

    return constant_checked(A.ew(SURFACE_ELEMENTWISE[name], *args), node)


def _count(n: int) -> str:
    return "1 argument" if n == 1 else f"{n} arguments"


def _axis(node: ast.Call, name: str):
    axis = None
    for kw in node.kwargs:
        if kw.name.id != "axis" or name not in TAKES_AXIS:
            allowed = "the only keyword is axis=k" if name in TAKES_AXIS else f"{name} takes no keywords"
            raise OptError(f"unexpected keyword '{kw.name.id}' in {name}", kw.span, allowed)
        if axis is not None:
            raise OptError(f"axis is given twice in {name}", kw.span, "keep one axis=k")
        value = kw.value
        if not (isinstance(value, ast.Number) and float(value.value).is_integer() and value.value >= 0):
            raise OptError("axis must be a nonnegative integer literal", kw.value.span, "axes count from 0 over the declared shape")
        axis = (int(value.value), kw.value.span)
    return axis


def _reduction(node: ast.Call, name: str, x, axis):
    ax = None
    if axis is not None:
        ax, span = axis
        if ax >= len(x.shape):
            raise OptError(
                f"axis={ax} is out of range for {shapes.fmt(x.shape)}",
                span,
                f"{name} here takes axis 0 to {len(x.shape) - 1}" if x.shape else "the argument is a scalar; drop the axis",
            )
    if name == "sum":
        return A.reduce("sum", x, ax)
    if name == "mean":
        counted = x.shape if ax is None else (x.shape[ax],)
        return A.div(A.reduce("sum", x, ax), A.count(counted))
    if name == "sumsq":
        return A.reduce("sum", A.ew("square", x), ax)
    return A.reduce(name, x, ax)


def _expand(node, x, axis):
    """expand(x, axis=k): x with a new axis of size 1 at position k, for broadcasting against
    another expansion: expand(x, axis=1) - expand(x, axis=0) pairs every row of x with every row."""
    if axis is None:
        raise OptError("expand needs axis=k: where the new axis goes", node.span,
                       f"write expand(x, axis=k) with k from 0 to {len(x.shape)}")
    ax, span = axis
    if ax > len(x.shape):
        raise OptError(f"axis={ax} is out of range for expand of {shapes.fmt(x.shape)}", span,
                       f"the new axis goes at 0 to {len(x.shape)}")
    return A.expand_dims(x, ax)


def _dot(node, args, axis):
    a, b = args
    if not a.shape and not b.shape:
        names = [getattr(arg, "id", None) for arg in node.args]
        hint = f"{names[0]} * {names[1]}" if all(names) else "a * b"
        raise OptError("dot needs vectors or arrays, found two scalars", node.span,
                       f"multiply scalars with '*': {hint}")
    if shapes.broadcast(a.shape, b.shape) is None:
        raise OptError(
            "dot needs two arrays of the same shape",
            node.span,
            f"found {shapes.fmt(a.shape)} and {shapes.fmt(b.shape)}",
        )
    prod = A.mul(a, b)
    ax = None
    if axis is not None:
        ax, span = axis
        if ax >= len(prod.shape):
            raise OptError(f"axis={ax} is out of range for {shapes.fmt(prod.shape)}", span, "axes count from 0")
    return A.reduce("sum", prod, ax)


def _quad(node, args):
    x, Q = args
    n = x.shape[0] if len(x.shape) == 1 else None
    if n is None or Q.shape != (n, n):
        raise OptError(
            "quad(x, Q) needs a vector x[n] and a matrix Q[n, n]",
            node.span,
            f"found x {shapes.fmt(x.shape)} and Q {shapes.fmt(Q.shape)}",
        )
    return A.reduce("sum", A.mul(x, A.matmul(Q, x)))


def _check_broadcast(node, name, args):
    if len(args) > 1 and shapes.broadcast(*(a.shape for a in args)) is None:
        found = " and ".join(shapes.fmt(a.shape) for a in args)
        raise OptError(f"the arguments of {name} do not broadcast", node.span, f"found {found}")
