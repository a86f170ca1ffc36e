"""The kkt kind on Triton: adapters between flat tiles of several blocks and the Plan's functions.

The flat state of a KKT problem is (var, lam, nu): the var's block, then one dual
block per inequality, then one per equality (optlang/runtime/kkt.py), each at a
runtime offset (a sum of dim counts) in one [VAR_BLOCK] tile. An adapter cuts
each block it needs out of a flat tile and puts each output back with one-hot
contractions (no gather, no dynamic indexing): a block of rank 1 over dim d
reads lanes off + r_d, masked to r_d < n_d. The interior-point kernel keeps
g, lam and s in tiles of their own (lanes 0 .. NI), and h, nu likewise (0 .. NE),
so `ineq_flat` and `eq_flat` put their outputs at offsets local to those tiles.
Blocks have rank 0, 1 or 2 (a rank-2 block is row-major; `printer.unsupported` refuses
the rest). `block_adapter_lines` gives the smooth, prox and root kinds the same
cutting when their state has several blocks (several vars, or a var of rank 2).
"""
from __future__ import annotations

from optlang.plan import Function, Plan

# Plan function -> (adapter, the flat tiles it takes, where its outputs go: "residual" or "state" or a
# dual kind, whose blocks are put at offsets local to that kind's tile).
ADAPTERS = {
    "residual": ("residual_flat", "x", "residual"), "jvp_x": ("jvp_flat", "x, v", "residual"),
    "objective": ("objective_flat", "x", None), "gradient": ("gradient_flat", "x", "state"),
    "ineq": ("ineq_flat", "x", "ineq"), "jvp_ineq": ("jvp_ineq_flat", "x, v", "ineq"),
    "eq": ("eq_flat", "x", "eq"), "jvp_eq": ("jvp_eq_flat", "x, v", "eq"),
    "hvp_lagrangian": ("hvp_lagrangian_flat", "x, v", "state"),
}
SOURCE = {"var": "x", "dual": "x", "tangent": "v", "cotangent": "w"}


def _size(shape: tuple) -> str:
    from optlang.backends.triton.printer import count

    if len(shape) == 2:
        return f"({count(shape[0])} * {count(shape[1])})"
    return count(shape[0]) if shape else "1"


def _lanes(shape: tuple) -> tuple[str, str]:
    """(index within the block, lanes mask) of each entry of a block tile, a trailing None for the flat axis.

    A rank-2 block over (a, b) is row-major: entry (i, j) sits at off + i * n_b + j; its index and
    mask are named tiles (`block_lines`) to keep the contractions readable.
    """
    if len(shape) == 1:
        return f"r_{shape[0]}[:, None]", f"m_{shape[0]}[:, None]"
    return f"at2_{shape[0]}_{shape[1]}", f"in2_{shape[0]}_{shape[1]}"


def block_lines(shapes) -> list[str]:
    """The index lines of the blocks' dims, and the named index and mask tiles of each rank-2 shape."""
    from optlang.backends.triton.printer import _index_lines, count

    shapes = list(shapes)
    lines = _index_lines(shapes)
    for a, b in dict.fromkeys(tuple(s) for s in shapes if len(s) == 2):
        lines += [f"at2_{a}_{b} = r_{a}[:, None, None] * {count(b)} + r_{b}[None, :, None]",
                  f"in2_{a}_{b} = m_{a}[:, None, None] & m_{b}[None, :, None]"]
    return lines


def offsets(blocks) -> dict:
    """{name: (offset expression, shape)} for consecutive blocks."""
    out, terms = {}, []
    for name, shape in blocks:
        out[name] = (" + ".join(terms) or "0", tuple(shape))
        terms.append(_size(tuple(shape)))
    return out


def sizes(plan: Plan) -> dict:
    """The printed sizes of the var (NV), the inequality rows (NI) and the equality rows (NE)."""
    total = {"var": [], "ineq": [], "eq": []}
    for b in plan.state:
        total[b.kind].append(_size(tuple(b.shape)))
    return {k: "0" if not v else v[0] if len(v) == 1 else f"({' + '.join(v)})" for k, v in total.items()}


def cut(src: str, off: str, shape: tuple) -> str:
    """The block at `off` of the flat tile `src`, as a tile of its shape."""
    if not shape:
        return f"tl.sum(tl.where(r_flat == {off}, {src}, 0.0), axis=0)"
    at, mask = _lanes(shape)
    at = at if off == "0" else f"{off} + {at}"
    lead = "None, " * len(shape)
    return (f"tl.sum(tl.where((r_flat[{lead}:] == {at}) & {mask}, {src}[{lead}:], 0.0), "
            f"axis={len(shape)})")


def put(val: str, off: str, shape: tuple, got: tuple) -> str:
    """A flat tile holding the block value `val` at `off`, zero elsewhere."""
    from optlang.backends.triton.printer import aligned, tile

    if not shape:
        return f"tl.where(r_flat == {off}, {val}, 0.0)"
    if got != shape:
        val = f"tl.broadcast_to({aligned(val, len(got), len(shape))}, {tile(shape)})"
    at, mask = _lanes(shape)
    at = at if off == "0" else f"{at} + {off}"
    lead = "None, " * len(shape)
    text = f"tl.where(({at} == r_flat[{lead}:]) & {mask}, {val}[{':, ' * len(shape)}None], 0.0)"
    for _ in shape:
        text = f"tl.sum({text}, axis=0)"
    return text


def layouts(plan: Plan) -> dict:
    """Where each kind of flat tile holds its blocks."""
    state = [(b.name, b.shape) for b in plan.state]
    return {"state": offsets(state), "residual": offsets(plan.residual_blocks),
            "ineq": offsets([(b.name, b.shape) for b in plan.state if b.kind == "ineq"]),
            "eq": offsets([(b.name, b.shape) for b in plan.state if b.kind == "eq"])}


def call_lines(fn: Function, layout, where: dict, target: str, source: dict = SOURCE) -> list[str]:
    """Statements ending in `target = fn(...)`, each block argument cut from its flat tile."""
    blocks = [a for a in fn.args if a.role in SOURCE]
    lines = ["r_flat = tl.arange(0, VAR_BLOCK)"] + block_lines(a.shape for a in blocks)
    items = []
    for a in fn.args:
        if a.role in SOURCE:
            off, shape = where["residual" if a.role == "cotangent" else "state"][a.source_name]
            lines.append(f"{a.name} = {cut(source[a.role], off, shape)}")
        items.append(source.get(a.role, a.name) if a.role == "step" else a.name)
    return lines + [f"{target} = {fn.name}({', '.join(items + layout.dev_sig(False))})"]


def adapter(fn: Function, layout, where: dict, adapters: dict = ADAPTERS, source: dict = SOURCE):
    """(name, head, doc, body) of the flat adapter of a Plan function."""
    name, head, into = adapters[fn.name]
    outs = [f"o{i}" for i in range(len(fn.outputs))]
    body = call_lines(fn, layout, where, ", ".join(outs), source)
    if into is None:
        return name, f"{head}, ", f"{fn.doc[0].upper()}{fn.doc[1:]}.", body + [f"return {outs[0]}"]
    places = [(where[into][key], tuple(fn.shape_of(ssa)), out) for (key, ssa), out in zip(fn.outputs, outs)]
    body += [line for line in block_lines(shape for (_, shape), _, _ in places) if line not in body]
    terms = [put(out, off, shape, got) for (off, shape), got, out in places]
    body += [f"out {'+' if i else ''}= {term}" for i, term in enumerate(terms)]
    doc = f"{fn.name} on flat tiles: its blocks put at their offsets ({into} layout), padding zeroed."
    return name, f"{head}, ", doc, body + ["return out"]


def empty_adapter(name: str, head: str):
    return name, f"{head}, ", "No such constraints: an empty (all-zero) tile.", \
        ["return tl.zeros((VAR_BLOCK,), DTYPE)"]


def adapter_lines(plan: Plan, layout) -> list[str]:
    """The kkt kind's adapters on flat tiles, and the gradient stores (cotangent in the residual's layout)."""
    from optlang.backends.triton.printer import _store_grads

    where = layouts(plan)
    out = []
    for key, (name, head, _) in ADAPTERS.items():
        fn = plan.function(key)
        out.append(adapter(fn, layout, where) if fn is not None else empty_adapter(name, head))
    out.append(_store_grads(plan, layout, lambda fn, target: call_lines(fn, layout, where, target)))
    return _emit(out, layout, "the kkt templates")


# The smooth, prox and root kinds' adapters when the var state has several blocks (several vars, or a
# var of rank 2): the same names and heads as printer._flat_adapter's. F and its JVP go in the residual's
# layout (a root over several vars is one equation vector of their total size), the rest in the state's.
BLOCK_ADAPTERS = {
    "residual": ("residual_flat", "x", "residual"), "jvp_x": ("jvp_flat", "x, v", "residual"),
    "gradient": ("gradient_flat", "x", "state"), "hvp": ("hvp_flat", "x, v", "state"),
    "objective": ("objective_flat", "x", None), "prox": ("prox_flat", "z, step", "state"),
    "free_mask": ("free_flat", "x", "state"),
}


def block_adapter_lines(plan: Plan, layout) -> list[str]:
    """The flat adapters of a var state of several blocks (vars in order, each row-major), and the stores."""
    from optlang.backends.triton.printer import _store_grads

    where = {"state": offsets([(b.name, b.shape) for b in plan.state]), "residual": offsets(plan.residual_blocks)}
    out = []
    for fn in plan.functions:
        if fn.name in BLOCK_ADAPTERS:
            source = dict(SOURCE, var="z", step="step") if fn.name == "prox" else SOURCE
            out.append(adapter(fn, layout, where, BLOCK_ADAPTERS, source))
    out.append(_store_grads(plan, layout, lambda fn, target: call_lines(fn, layout, where, target)))
    return _emit(out, layout, "the solver templates")


def _emit(out: list, layout, who: str) -> list[str]:
    lines = ["", "", f"# --- the functions on flat tiles of several blocks: what {who} call ---"]
    for name, head, doc, body in out:
        lines += ["", ""] if len(lines) > 3 else []
        lines += ["@triton.jit", f"def {name}({head}{layout.sig(True)}):", f'    """{doc}"""']
        lines += ["    " + line for line in body]
    return lines


def template_values(plan: Plan) -> dict:
    """The ipm template's placeholders: the blocks' sizes, the regularization, and the constants of
    runtime/kkt.py and result.py (ipm.py's own come with its text)."""
    import torch

    from optlang.runtime.kkt import BALANCE, WEAK
    from optlang.solvers import result

    n = sizes(plan)
    return {"__NV__": n["var"], "__NI__": n["ineq"], "__NE__": n["eq"],
            "__DELTA_DOUBLE__": repr(torch.finfo(torch.float64).eps ** (2 / 3)),
            "__DELTA_SINGLE__": repr(torch.finfo(torch.float32).eps ** (2 / 3)),
            "__WEAK__": repr(WEAK), "__BALANCE__": repr(BALANCE),
            "__INFEASIBLE__": result.INFEASIBLE, "__UNBOUNDED__": result.UNBOUNDED}
