"""Pass `lower`: derived IR functions to straight-line SSA (the Plan's functions).

Assumes `Functions`. Guarantees one `plan.Function` per derived function, with
every distinct subexpression computed once (IR nodes compare structurally, so
common subexpressions are one node) and temporaries numbered t0, t1, ... in
post-order: the same problem always lowers to the same text.
"""
from __future__ import annotations

from optlang.ir.nodes import (Broadcast, Const, DimSize, Elementwise, ExpandDims, Eye, Fill, Input, MatMul,
                              Reduce, SumTo, Transpose, children)
from optlang.ir.walk import postorder
from optlang.passes.functions import FunctionSpec
from optlang.plan import Arg, Function, Op

ROLE_PREFIX = {"var": "x_", "dual": "d_", "param": "p_", "tangent": "v_", "cotangent": "u_", "step": "s_"}


def arg_name(node: Input) -> str:
    """The generated identifier of an input: a checked identifier behind a role prefix."""
    return ROLE_PREFIX[node.role] + node.name


def lower_function(spec: FunctionSpec) -> Function:
    """Lower one derived function to SSA ops."""
    args = tuple(Arg(arg_name(i), i.role, i.name, i.shape) for i in spec.inputs)
    names: dict = {i: arg_name(i) for i in spec.inputs}
    ops: list[Op] = []
    roots = [e for _, e in spec.outputs]
    for node in postorder(*roots):
        if node in names:
            continue
        if isinstance(node, Input):
            raise AssertionError(f"{spec.name} uses {node.role} {node.name} that is not among its inputs")
        prim, attrs = _prim(node)
        out = f"t{len(ops)}"
        span = getattr(node, "span", None)
        note = f"line {span.line}" if span is not None else ""
        ops.append(Op(out, prim, tuple(names[c] for c in children(node)), attrs, tuple(node.shape), note))
        names[node] = out
    outputs = tuple((key, names[e]) for key, e in spec.outputs)
    return Function(spec.name, args, tuple(ops), outputs, spec.doc)


def _prim(node) -> tuple:
    if isinstance(node, Const):
        return "const", (node.value,)
    if isinstance(node, DimSize):
        return "dim", (node.dim,)
    if isinstance(node, Fill):
        return "fill", (node.value,)
    if isinstance(node, Eye):
        return "eye", ()
    if isinstance(node, Elementwise):
        return node.op, ()
    if isinstance(node, MatMul):
        return "matmul", ()
    if isinstance(node, Transpose):
        return "transpose", ()
    if isinstance(node, Reduce):
        return "reduce", (node.op, node.axis)
    if isinstance(node, Broadcast):
        return "broadcast", ()
    if isinstance(node, SumTo):
        return "sum_to", ()
    if isinstance(node, ExpandDims):
        return "expand_dims", (node.axis,)
    raise AssertionError(f"cannot lower {type(node).__name__}")
