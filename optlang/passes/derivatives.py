"""Symbolic forward (JVP) and reverse (VJP) differentiation of IR expressions.

Rules are one short function per node kind (singledispatch); elementwise
partials come from `algebra.partials` (SymPy-derived, or the primitive's hand
rule). Results are IR expressions built with the folding constructors, so
zero derivatives vanish and shared subexpressions stay shared.
"""
from __future__ import annotations

from functools import singledispatch

from optlang.errors import NotSupportedError
from optlang.ir import algebra as A
from optlang.ir.nodes import (Broadcast, Const, DimSize, Elementwise, ExpandDims, Eye, Fill, Input, MatMul,
                              Reduce, SumTo, Transpose, children)
from optlang.ir.walk import postorder


def jvp(root, tangents: dict):
    """The directional derivative of `root` along `tangents` ({input name: tangent expr}).

    Inputs not in `tangents` are held fixed. Keys are input names; a var and a
    param never share a name (the checker guarantees it).
    """
    dot = {}
    for node in postorder(root):
        dot[node] = _jvp(node, [dot[c] for c in children(node)], tangents)
    return dot[root]


@singledispatch
def _jvp(node, dargs, tangents):
    raise AssertionError(f"no JVP rule for {type(node).__name__}")


@_jvp.register
def _(node: Input, dargs, tangents):
    return tangents.get(node.name, A.zeros(node.shape))


@_jvp.register(Const)
@_jvp.register(DimSize)
@_jvp.register(Fill)
@_jvp.register(Eye)
def _(node, dargs, tangents):
    return A.zeros(node.shape)


@_jvp.register
def _(node: Elementwise, dargs, tangents):
    out = A.zeros(node.shape)
    if all(A.is_zero(d) for d in dargs):
        return out
    for partial, d in zip(A.partials(node), dargs):
        if not A.is_zero(d):
            out = A.add(out, A.mul(partial, d))
    return A.broadcast_to(out, node.shape)


@_jvp.register
def _(node: MatMul, dargs, tangents):
    da, db = dargs
    return A.add(A.matmul(da, node.b), A.matmul(node.a, db))


@_jvp.register
def _(node: Transpose, dargs, tangents):
    return A.transpose(dargs[0])


@_jvp.register
def _(node: Broadcast, dargs, tangents):
    return A.broadcast_to(dargs[0], node.shape)


@_jvp.register
def _(node: SumTo, dargs, tangents):
    return A.sum_to(dargs[0], node.shape)


@_jvp.register
def _(node: ExpandDims, dargs, tangents):
    return A.expand_dims(dargs[0], node.axis)


@_jvp.register
def _(node: Reduce, dargs, tangents):
    (da,) = dargs
    if A.is_zero(da):
        return A.zeros(node.shape)
    weight = reduce_weight(node)
    return A.reduce("sum", A.mul(weight, da), node.axis)


def reduce_weight(node: Reduce):
    """d(reduction)/d(entry), broadcast against the operand: the gradient of the reduction."""
    if node.op == "sum":
        return A.const(1.0)
    out = _unreduce(node)
    if node.op == "logsumexp":
        return A.ew("exp", A.sub(node.a, out))
    if node.op == "norm2":  # 0 at 0 (a subgradient), where a / |a| would be 0 / 0
        return A.div(node.a, A.ew("maximum", out, A.const(A.TINY_NORM)))
    if node.op == "norm1":
        return A.ew("sign", node.a)
    if node.op == "simplex_tau":
        # tau solves sum_S (x_i - tau) = 1 over the support S = {x > tau}: d tau = sum_S dx_i / |S|.
        support = A.ew("step", A.sub(node.a, out))
        size = A.reduce("sum", support, node.axis)
        size = size if node.axis is None else A.expand_dims(size, node.axis)
        return A.div(support, A.broadcast_to(size, node.a.shape))
    raise NotSupportedError(f"{node.op} has no derivative rule", node.span)


def _unreduce(node: Reduce):
    """The reduction's result, shaped to broadcast against its operand."""
    out = node
    if node.axis is not None:
        out = A.expand_dims(out, node.axis)
    return A.broadcast_to(out, node.a.shape)


# ---- reverse mode ---------------------------------------------------------------

def vjp(root, cotangent, wrt=None) -> dict:
    """Adjoints of every Input below `root` for the cotangent (same shape as root).

    Returns {input name: adjoint expr (the input's shape)}; `wrt` (names) limits
    which adjoints are kept, not which are computed.
    """
    order = postorder(root)
    adj = {root: cotangent}
    for node in reversed(order):
        ct = adj.get(node)
        if ct is None or A.is_zero(ct):
            continue
        for child, contrib in zip(children(node), _vjp(node, ct)):
            if contrib is None or A.is_zero(contrib):
                continue
            prev = adj.get(child)
            adj[child] = contrib if prev is None else A.add(prev, contrib)
    out = {}
    for node in order:
        if isinstance(node, Input) and (wrt is None or node.name in wrt):
            out[node.name] = adj.get(node, A.zeros(node.shape))
    return out


def grad(f, name: str, shape):
    """The gradient of the scalar `f` w.r.t. the input `name`."""
    return vjp(f, A.const(1.0), {name}).get(name, A.zeros(shape))


@singledispatch
def _vjp(node, ct):
    return ()


@_vjp.register
def _(node: Elementwise, ct):
    return tuple(
        A.sum_to(A.mul(ct, partial), arg.shape)
        for arg, partial in zip(node.args, A.partials(node))
    )


@_vjp.register
def _(node: MatMul, ct):
    a, b = node.a, node.b
    ra, rb = len(a.shape), len(b.shape)
    if (ra, rb) == (2, 1):
        return A.mul(A.expand_dims(ct, 1), b), A.matmul(A.transpose(a), ct)
    if (ra, rb) == (1, 2):
        return A.matmul(b, ct), A.mul(A.expand_dims(a, 1), ct)
    if (ra, rb) == (2, 2):
        return A.matmul(ct, A.transpose(b)), A.matmul(A.transpose(a), ct)
    return A.mul(ct, b), A.mul(ct, a)


@_vjp.register
def _(node: Transpose, ct):
    return (A.transpose(ct),)


@_vjp.register
def _(node: Broadcast, ct):
    return (A.sum_to(ct, node.a.shape),)


@_vjp.register
def _(node: SumTo, ct):
    return (A.broadcast_to(ct, node.a.shape),)


@_vjp.register
def _(node: ExpandDims, ct):
    return (A.reduce("sum", ct, node.axis),)


@_vjp.register
def _(node: Reduce, ct):
    spread = ct if node.axis is None else A.expand_dims(ct, node.axis)
    spread = A.broadcast_to(spread, node.a.shape)
    return (A.mul(reduce_weight(node), spread),)
