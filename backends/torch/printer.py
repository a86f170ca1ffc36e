"""Print a Plan's functions as batched PyTorch source.

Every value carries any number of leading batch dims; declared dims are
counted from the right, so one function serves every batch shape.
Backends print; they decide no math: each op below is a spelling.
"""
from __future__ import annotations

from optlang.plan import Function, Plan

UNARY = {
    "negate": "-{a}",
    "exp": "torch.exp({a})",
    "log": "torch.log({a})",
    "sqrt": "torch.sqrt({a})",
    "sin": "torch.sin({a})",
    "cos": "torch.cos({a})",
    "tanh": "torch.tanh({a})",
    "square": "torch.square({a})",
    "sigmoid": "torch.sigmoid({a})",
    "softplus": "torch.logaddexp({a}, torch.zeros_like({a}))",  # exact, unlike F.softplus's threshold
    "abs": "torch.abs({a})",
    "relu": "torch.relu({a})",
    "relu2": "torch.square(torch.relu({a}))",
    "sign": "torch.sign({a})",
    "step": "mask({a} > 0, {a})",
}
BINARY = {
    "add": "{a} + {b}",
    "sub": "{a} - {b}",
    "mul": "{a} * {b}",
    "div": "{a} / {b}",
    "pow": "{a} ** {b}",
    "maximum": "torch.maximum({a}, {b})",
    "minimum": "torch.minimum({a}, {b})",
    "ge": "mask({a} >= {b}, {t})",
    "le": "mask({a} <= {b}, {t})",
    "gt": "mask({a} > {b}, {t})",
}
PY_ARITH = ("add", "sub", "mul", "div", "pow")
REDUCE = {
    "sum": "{a}.sum(dim={dims})",
    "logsumexp": "torch.logsumexp({a}, dim={dims})",
    "max": "{a}.amax(dim={dims})",
    "min": "{a}.amin(dim={dims})",
    "norm1": "{a}.abs().sum(dim={dims})",
    "norm2": "torch.linalg.vector_norm({a}, 2, dim={dims})",
    "norminf": "{a}.abs().amax(dim={dims})",
    "simplex_tau": "simplex_tau({a}, {dims})",
}


def shape_text(shape: tuple) -> str:
    items = [str(d) if isinstance(d, int) else f"dims[{d!r}]" for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def print_function(fn: Function) -> list[str]:
    """The lines of one generated function."""
    params = ", ".join(a.name for a in fn.args)
    lines = [f"def {fn.name}({params}{', ' if params else ''}*, dims, like):", f'    """{fn.doc}."""']
    scalars = set()  # names holding Python numbers, not tensors
    for op in fn.ops:
        if op.prim in BINARY and op.args and all(a in scalars for a in op.args) and op.prim in PY_ARITH:
            text = BINARY[op.prim].format(a=op.args[0], b=op.args[1])
            scalars.add(op.out)  # arithmetic on numbers (dims, constants) stays a number
        else:
            text = _op_text(op, fn, scalars)
        if op.prim in ("const", "dim"):
            scalars.add(op.out)
        note = f"  # {op.note}" if op.note else ""
        lines.append(f"    {op.out} = {text}{note}")
    outs = [name if name not in scalars else f"torch.as_tensor({name}, dtype=like.dtype, device=like.device)"
            for _, name in fn.outputs]
    if len(outs) == 1:
        lines.append(f"    return {outs[0]}")
    else:
        lines.append(f"    return ({', '.join(outs)}{',' if outs else ''})")
    return lines


def _op_text(op, fn: Function, scalars: set) -> str:
    rank = len(op.shape)
    ranks = [len(fn.shape_of(a)) for a in op.args]
    if op.prim == "const":
        return repr(float(op.attrs[0]))
    if op.prim == "dim":
        return f"dims[{op.attrs[0]!r}]"
    if op.prim == "fill":
        return f"full({shape_text(op.shape)}, {float(op.attrs[0])!r}, like)"
    if op.prim == "eye":
        return f"eye({shape_text(op.shape)}[0], like)"
    if op.prim in UNARY:
        a = op.args[0]
        if a in scalars:
            a = f"torch.as_tensor({a}, dtype=like.dtype, device=like.device)"
        return UNARY[op.prim].format(a=a)
    if op.prim in BINARY:
        if all(a in scalars for a in op.args):
            scalars = scalars - {op.args[0]}
            op = type(op)(op.out, op.prim, (f"torch.as_tensor({op.args[0]}, dtype=like.dtype, device=like.device)",
                                            op.args[1]), op.attrs, op.shape, op.note)
            ranks = [0, 0]
        a, b = (_aligned(name, r, rank, scalars) for name, r in zip(op.args, ranks))
        if op.prim in ("maximum", "minimum") and (op.args[0] in scalars or op.args[1] in scalars):
            tensor, number = (a, b) if op.args[1] in scalars else (b, a)
            side = "min" if op.prim == "maximum" else "max"
            return f"torch.clamp({tensor}, {side}={number})"
        t = a if op.args[0] not in scalars else b
        return BINARY[op.prim].format(a=a, b=b, t=t)
    if op.prim != "broadcast" and any(a in scalars for a in op.args):  # (broadcast_to takes numbers too)
        # Shape ops and products take tensors, not Python numbers.
        op = type(op)(op.out, op.prim, tuple(f"torch.as_tensor({a}, dtype=like.dtype, device=like.device)"
                                             if a in scalars else a for a in op.args), op.attrs, op.shape, op.note)
    if op.prim == "matmul":
        a, b = op.args
        pair = tuple(ranks)
        # support.matvec & co. pick matmul or einsum by the operands' batch dims.
        if pair == (2, 1):
            return f"matvec({a}, {b})"
        if pair == (1, 2):
            return f"vecmat({a}, {b})"
        if pair == (2, 2):
            return f"matmat({a}, {b})"
        return f"(({a}) * ({b})).sum(dim=-1)"
    if op.prim == "transpose":
        return f"{op.args[0]}.transpose(-1, -2)"
    if op.prim == "reduce":
        kind, axis = op.attrs
        r = ranks[0]
        dims = tuple(range(-r, 0)) if axis is None else (axis - r,)
        return REDUCE[kind].format(a=op.args[0], dims=dims)
    if op.prim == "broadcast":
        return f"broadcast_to({op.args[0]}, {ranks[0]}, {shape_text(op.shape)}, like)"
    if op.prim == "sum_to":
        return f"sum_to({op.args[0]}, {ranks[0]}, {shape_text(op.shape)})"
    if op.prim == "expand_dims":
        return f"{op.args[0]}.unsqueeze({op.attrs[0] - ranks[0] - 1})"
    raise AssertionError(f"no PyTorch spelling for op {op.prim}")


def _aligned(name: str, rank: int, out_rank: int, scalars: set) -> str:
    if name in scalars or rank == out_rank:
        return name
    index = ", ".join(["..."] + ["None"] * (out_rank - rank) + [":"] * rank)
    return f"{name}[{index}]"


def print_plan(plan: Plan) -> str:
    """The whole generated module for a plan: deterministic, readable text."""
    lines = [
        f"# Generated by optlang for problem '{plan.problem}' ({plan.kind}); backend: torch.",
        "# Every function takes tensors with any leading batch dims; declared dims count from the right.",
        "import torch",
        "",
        "from optlang.backends.torch.support import (broadcast_to, eye, full, mask, matmat, matvec, simplex_tau, sum_to,",
        "                                          vecmat)",
        "",
    ]
    for fn in plan.functions:
        lines.append("")
        lines.extend(print_function(fn))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
