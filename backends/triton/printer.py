"""Print a Plan as one Triton module: a device function per Plan function, kernels from templates.

One program handles one problem instance. Every value is a register tile of
its declared shape: a declared dim d is a runtime int `n_d` and a constexpr
`BLOCK_d` (the next power of two); a literal dim k is printed as k and its
power of two. Loads are masked with other=0, every reduction and contraction
masks its reduced dim with tl.where (padded lanes may hold anything, e.g.
exp(0) = 1 or NaN), and the var's flat state keeps its padded lanes at 0.
Backends print; they decide no math: each op below is a spelling of the
PyTorch printer's. Nothing here imports Triton, so printing works without it.

A module holds the forward kernel of every solver the plan's class allows
(`select.SOLVERS`: a fixed point gets Anderson and Newton), the direct
backward, and the CG backward where the class allows CG; the executor picks
by the call's options. What has no kernel yet is refused by `unsupported`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources

from optlang.errors import NotSupportedError
from optlang.plan import Function, Plan

from optlang.backends.triton import shared
from optlang.backends.triton.shared import SHARED

UNARY = {
    "negate": "-{a}", "exp": "tl.exp({a})", "log": "tl.log({a})", "sqrt": "tl.sqrt({a})",
    "sin": "tl.sin({a})", "cos": "tl.cos({a})", "tanh": "tanh_({a}, DTYPE)", "square": "{a} * {a}",
    "sigmoid": "tl.sigmoid({a})", "softplus": "softplus_({a})", "abs": "tl.abs({a})",
    "relu": "tl.maximum({a}, 0.0)", "relu2": "tl.maximum({a}, 0.0) * tl.maximum({a}, 0.0)", "sign": "sign_({a}, DTYPE)", "step": "({a} > 0.0).to(DTYPE)",
}
BINARY = {
    "add": "{a} + {b}", "sub": "{a} - {b}", "mul": "{a} * {b}", "div": "{a} / {b}", "pow": "pow_({a}, {b})",
    "maximum": "tl.maximum({a}, {b})", "minimum": "tl.minimum({a}, {b})",
    "ge": "({a} >= {b}).to(DTYPE)", "le": "({a} <= {b}).to(DTYPE)", "gt": "({a} > {b}).to(DTYPE)",
}
# Constant exponents that torch.pow computes exactly by products or sqrt.
POWERS = {1.0: "{a}", 2.0: "{a} * {a}", 3.0: "{a} * {a} * {a}", 0.5: "tl.sqrt({a})", -1.0: "1.0 / {a}"}
REDUCE = {  # (masked fill, spelling of the reduction of the masked tile w)
    "sum": ("0.0", "tl.sum({w}, axis={axis})"),
    "max": ("-INF", "tl.max({w}, axis={axis})"),
    "min": ("INF", "tl.min({w}, axis={axis})"),
    "logsumexp": ("-INF", "logsumexp_({w}, {axis})"),
    "norm1": ("0.0", "tl.sum(tl.abs({w}), axis={axis})"),
    "norm2": ("0.0", "tl.sqrt(tl.sum({w} * {w}, axis={axis}))"),
    "norminf": ("0.0", "tl.max(tl.abs({w}), axis={axis})"),
}
MATMUL = {  # operand ranks: (the first operand's contracted axis, spelling)
    (2, 1): (1, "tl.sum(tl.where({m}[None, :], {a} * {b}[None, :], 0.0), axis=1)"),
    (1, 2): (0, "tl.sum(tl.where({m}[:, None], {a}[:, None] * {b}, 0.0), axis=0)"),
    (2, 2): (1, "tl.sum(tl.where({m}[None, :, None], {a}[:, :, None] * {b}[None, :, :], 0.0), axis=1)"),
    (1, 1): (0, "tl.sum(tl.where({m}, {a} * {b}, 0.0), axis=0)"),
}
# solver -> the template holding its forward kernel, and the kernel ("pgd" is FISTA without momentum).
FORWARD = {"newton": ("newton", "newton_kernel"), "fista": ("fista", "fista_kernel"),
           "pgd": ("fista", "fista_kernel"), "anderson": ("anderson", "anderson_kernel"), "ipm": ("ipm", "ipm_kernel")}


def block(d) -> str:
    """The constexpr tile size of a dim: BLOCK_d, or a literal's power of two."""
    return f"BLOCK_{d}" if isinstance(d, str) else str(next_pow2(d))


def count(d) -> str:
    """The runtime size of a dim: n_d, or the literal."""
    return f"n_{d}" if isinstance(d, str) else str(d)


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def tile(shape: tuple) -> str:
    items = [block(d) for d in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def literal(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "INF - INF"
    return repr(v) if math.isfinite(v) else ("INF" if v > 0 else "-INF")


def axis_mask(shape: tuple, axis: int) -> str:
    """The lanes mask of dim `axis` of a tile of `shape`, aligned to broadcast against it."""
    index = ", ".join(":" if i == axis else "None" for i in range(len(shape)))
    name = f"m_{shape[axis]}"
    return name if len(shape) == 1 else f"{name}[{index}]"


def full_mask(shape: tuple) -> str:
    return " & ".join(axis_mask(shape, i) for i in range(len(shape)))


def aligned(name: str, rank: int, out_rank: int) -> str:
    """Index a rank-`rank` tile with None so it broadcasts right-aligned against rank `out_rank`."""
    if rank in (0, out_rank):
        return name
    return f"{name}[{', '.join(['None'] * (out_rank - rank) + [':'] * rank)}]"


@dataclass(frozen=True)
class Layout:
    """Argument lists shared by the printed module and the executor that launches it."""

    params: tuple  # ((source name, generated name, declared shape), ...) in plan order
    dims: tuple  # the plan's dim names, in order
    blocks: tuple = ()  # the solver's own tile sizes past VAR_BLOCK (the interior point's: KKT_BLOCKS)

    @classmethod
    def of(cls, plan: Plan) -> "Layout":
        return cls(tuple((p.name, "p_" + p.name, tuple(p.shape)) for p in plan.params),
                   tuple(d.name for d in plan.dims), KKT_BLOCKS if plan.kind == "kkt" else ())

    def dev_sig(self, typed: bool) -> list:
        c = ": tl.constexpr" if typed else ""
        return [f"n_{d}" for d in self.dims] + [f"BLOCK_{d}{c}" for d in self.dims] + [f"DTYPE{c}"]

    def sig(self, typed: bool) -> str:
        c = ": tl.constexpr" if typed else ""
        names = [g for _, g, _ in self.params] + ["N"] + [f"n_{d}" for d in self.dims]
        return ", ".join(names + [f"BLOCK_{d}{c}" for d in self.dims] + [f"{b}{c}" for b in self.blocks]
                         + [f"VAR_BLOCK{c}", f"DTYPE{c}"])

    def const_sig(self) -> str:
        """A kernel's trailing constexprs: the tile sizes and the dtype."""
        return ", ".join([f"BLOCK_{d}: tl.constexpr" for d in self.dims] + [f"{b}: tl.constexpr" for b in self.blocks]
                         + ["VAR_BLOCK: tl.constexpr", "DTYPE: tl.constexpr"])


# The interior-point kernel's tiles (templates/ipm.py; executor.kkt_blocks sets them): the var (and its
# system), the inequality rows, the equality rows.
KKT_BLOCKS = ("X_BLOCK", "I_BLOCK", "E_BLOCK")


def unsupported(plan: Plan) -> str | None:
    """Why this plan cannot run on the Triton backend yet (a sentence to follow "problem 'p' "), or None."""
    for v in plan.vars:
        if len(v.shape) > 2:
            return f"has var '{v.name}' of rank {len(v.shape)}; the Triton backend handles vars of rank <= 2"
    for b in plan.duals:
        if len(b.shape) > 1:
            which = f"'{b.label}'" if b.label else f"on line {b.line}"
            return (f"has a constraint of rank {len(b.shape)} ({which}); the Triton backend handles constraints "
                    "of rank 0 and 1")
    for p in plan.params:
        if len(p.shape) > 2:
            return f"has param '{p.name}' of rank {len(p.shape)}; the Triton backend handles params of rank <= 2"
    for fn in plan.functions:
        for op in fn.ops:
            if len(op.shape) > 2:
                return f"computes a rank-{len(op.shape)} value in {fn.name}; the Triton backend handles rank <= 2"
            if op.prim == "reduce" and op.attrs[0] == "simplex_tau" and len(fn.shape_of(op.args[0])) > 1 \
                    and op.attrs[1] is None:
                return (f"projects a whole matrix onto one simplex in {fn.name}; the Triton backend's simplex "
                        "threshold runs along one axis")
    return None


def print_function(fn: Function, layout: Layout) -> list[str]:
    """One device function: tiles of declared shapes in, tiles out."""
    lines = ["@triton.jit", f"def {fn.name}({', '.join([a.name for a in fn.args] + layout.dev_sig(True))}):",
             f'    """{fn.doc[0].upper()}{fn.doc[1:]}."""']
    need: list = []
    body = []
    for op in fn.ops:
        note = f"  # {op.note}" if op.note else ""
        body.append(f"    {op.out} = {_op_text(op, fn, need)}{note}")
    for d in need:
        lines += [f"    r_{d} = tl.arange(0, {block(d)})", f"    m_{d} = r_{d} < {count(d)}"]
    lines += body
    outs = [name for _, name in fn.outputs]
    if outs:
        lines.append(f"    return {', '.join(outs)}")
    return lines


def _op_text(op, fn: Function, need: list) -> str:
    shapes = [tuple(fn.shape_of(a)) for a in op.args]

    def mark(shape, axes):
        for i in axes:
            if shape[i] not in need:
                need.append(shape[i])

    if op.prim == "const":
        return f"tl.full((), {literal(op.attrs[0])}, DTYPE)"
    if op.prim == "dim":
        return f"tl.full((), {count(op.attrs[0])}, DTYPE)"
    if op.prim == "fill":
        return f"tl.full({tile(op.shape)}, {literal(op.attrs[0])}, DTYPE)"
    if op.prim == "eye":
        mark(op.shape, [0])
        return f"(r_{op.shape[0]}[:, None] == r_{op.shape[0]}[None, :]).to(DTYPE)"
    if op.prim in UNARY:
        return UNARY[op.prim].format(a=op.args[0])
    if op.prim in BINARY:
        a, b = (aligned(n, len(s), len(op.shape)) for n, s in zip(op.args, shapes))
        if op.prim == "pow":
            exponent = _const_value(fn, op.args[1])
            if exponent in POWERS:
                return POWERS[exponent].format(a=a)
        return BINARY[op.prim].format(a=a, b=b)
    if op.prim == "matmul":
        return _matmul(op.args, shapes, mark)
    if op.prim == "transpose":
        return f"tl.trans({op.args[0]})"
    if op.prim == "reduce":
        return _reduce(op, shapes[0], mark)
    if op.prim == "broadcast":
        return f"tl.broadcast_to({aligned(op.args[0], len(shapes[0]), len(op.shape))}, {tile(op.shape)})"
    if op.prim == "sum_to":
        return _sum_to(op.args[0], shapes[0], tuple(op.shape), mark)
    if op.prim == "expand_dims":
        if not shapes[0]:
            return f"tl.broadcast_to({op.args[0]}, (1,))"
        return f"tl.expand_dims({op.args[0]}, {op.attrs[0]})"
    raise AssertionError(f"no Triton spelling for op {op.prim}")


def _const_value(fn: Function, name: str):
    op = next((o for o in fn.ops if o.out == name), None)
    return float(op.attrs[0]) if op is not None and op.prim == "const" else None


def _matmul(args, shapes, mark) -> str:
    """Contraction as a masked broadcast product and sum (no tl.dot: small tiles, float64)."""
    axis, spelling = MATMUL[tuple(len(s) for s in shapes)]
    mark(shapes[0], [axis])
    return spelling.format(m=f"m_{shapes[0][axis]}", a=args[0], b=args[1])


def _reduce(op, shape: tuple, mark) -> str:
    kind, axis = op.attrs
    a = op.args[0]
    if not shape:  # a reduction of a scalar is the scalar (its absolute value for norms)
        return f"tl.abs({a})" if kind.startswith("norm") else a
    axes = range(len(shape)) if axis is None else [axis]
    mark(shape, axes)
    mask = full_mask(shape) if axis is None else axis_mask(shape, axis)
    if kind == "simplex_tau" and len(shape) == 1:  # a threshold over the whole vector
        return f"simplex_tau_({a}, {mask}, DTYPE)"
    if kind == "simplex_tau":  # a matrix along one axis (see `unsupported`): one threshold per row or column
        mark(shape, range(len(shape)))
        return f"simplex_tau_axis_({a}, {full_mask(shape)}, {axis}, DTYPE)"
    fill, spelling = REDUCE[kind]
    masked = f"tl.where({mask}, {a}, {fill})"
    return spelling.format(w=masked, axis="None" if axis is None else axis)


def _sum_to(a: str, shape: tuple, target: tuple, mark) -> str:
    """The adjoint of broadcasting: sum the leading dims away, then the dims that are 1 in target."""
    text, cur = a, shape
    while len(cur) > len(target):
        mark(cur, [0])
        text = f"tl.sum(tl.where({axis_mask(cur, 0)}, {text}, 0.0), axis=0)"
        cur = cur[1:]
    for i, (want, got) in enumerate(zip(target, cur)):
        if want == 1 and got != 1:
            mark(cur, [i])
            text = f"tl.sum(tl.where({axis_mask(cur, i)}, {text}, 0.0), axis={i}, keep_dims=True)"
    return text


def _param_offsets(shape: tuple) -> tuple[str, str]:
    """Row-major offsets and lanes mask of a param tile within one instance."""
    if len(shape) == 1:
        return f"r_{shape[0]}", f"m_{shape[0]}"
    if len(shape) == 2:
        return f"r_{shape[0]}[:, None] * {count(shape[1])} + r_{shape[1]}[None, :]", full_mask(shape)
    return "", ""


def _index_lines(shapes) -> list[str]:
    seen = []
    for shape in shapes:
        for d in shape:
            if d not in seen:
                seen.append(d)
    return [line for d in seen for line in (f"r_{d} = tl.arange(0, {block(d)})", f"m_{d} = r_{d} < {count(d)}")]


def load_lines(layout: Layout) -> list[str]:
    """The kernel statements that load this instance's param tiles (batch stride 0 when shared)."""
    lines = _index_lines(shape for _, _, shape in layout.params)
    for _, g, shape in layout.params:
        offs, mask = _param_offsets(shape)
        if shape:
            lines.append(f"{g} = tl.load(ptr_{g} + pid * bs_{g} + {offs}, mask={mask}, other=0.0)")
        else:
            lines.append(f"{g} = tl.load(ptr_{g} + pid * bs_{g})")
    return lines


def adapter_lines(plan: Plan, layout: Layout) -> list[str]:
    """Each function on the flat state (what the templates call), and the gradient stores.

    The lanes mask is computed inline rather than by calling var_lanes: each call
    of a jit function costs the interpreter a re-patch, and compiles to the same.
    """
    from optlang.backends.triton import kkt

    if plan.kind == "kkt":
        return kkt.adapter_lines(plan, layout)
    if blocked(plan):
        return kkt.block_adapter_lines(plan, layout)
    lanes = f"lanes = tl.arange(0, VAR_BLOCK) < {var_size(plan)}"
    out = [_flat_adapter(fn, layout, lanes) for fn in plan.functions if fn.name in FLAT_NAMES]
    out.append(_store_grads(plan, layout))
    lines = ["", "", "# --- the functions on the flat state: what the solver templates call ---"]
    for name, head, doc, body in out:
        lines += ["", ""] if len(lines) > 3 else []
        lines += ["@triton.jit", f"def {name}({head}{layout.sig(True)}):", f'    """{doc}"""']
        lines += ["    " + line for line in "\n".join(body).split("\n")]
    return lines


def blocked(plan: Plan) -> bool:
    """Whether the flat state has several blocks to cut (several vars, a var of rank 2, the kkt kind's duals)."""
    return plan.kind == "kkt" or len(plan.vars) > 1 or len(plan.var.shape) > 1


def var_size(plan: Plan) -> str:
    """The flat state's size: the var's, or N (every block: the vars and the kkt kind's duals)."""
    if blocked(plan):
        return "N"
    return count(plan.var.shape[0]) if plan.var.shape else "1"


FLAT_NAMES = {"residual": "residual_flat", "jvp_x": "jvp_flat", "gradient": "gradient_flat", "hvp": "hvp_flat",
              "objective": "objective_flat", "prox": "prox_flat", "free_mask": "free_flat"}
# The flat adapters' names for each argument role: the state (z for the point a prox maps), a tangent
# v, a cotangent w, the prox's step (a scalar); params pass through under their own names.
STATE = {"var": "x", "tangent": "v", "cotangent": "w", "step": "step"}


def _call(fn: Function, layout: Layout, scalar_var: bool, target: str = "out", state: dict = STATE) -> list[str]:
    """Statements ending in `target = fn(...)` from the flat state (a rank-0 var is summed out of lane 0)."""
    lines, items = [], []
    for a in fn.args:
        if a.role in ("var", "tangent", "cotangent") and scalar_var:
            lines.append(f"{state[a.role]}0 = tl.sum(tl.where(lanes, {state[a.role]}, 0.0), axis=0)")
            items.append(state[a.role] + "0")
        else:
            items.append(state.get(a.role, a.name))
    return lines + [f"{target} = {fn.name}({', '.join(items + layout.dev_sig(False))})"]


def _flat_adapter(fn: Function, layout: Layout, lanes: str):
    scalar_var = not any(a.shape for a in fn.args if a.role == "var")
    state = dict(STATE, var="z") if fn.name == "prox" else STATE
    roles = [a.role for a in fn.args]
    head = "".join(f"{state[r]}, " for r in ("var", "tangent", "step") if r in roles)
    body = [lanes] + _call(fn, layout, scalar_var, state=state)
    if fn.name == "objective":
        body = body[int(not scalar_var):]  # a scalar out: lanes only to unflatten a rank-0 var
        return FLAT_NAMES[fn.name], head, f"{fn.doc[0].upper()}{fn.doc[1:]}.", body + ["return out"]
    doc = f"{fn.name} on the flat state, padding zeroed."
    if fn.name == "prox":
        doc = "prox_{step r}(z) on the flat state (the projection onto the sets at step 0), padding zeroed."
    return FLAT_NAMES[fn.name], head, doc, body + ["return tl.where(lanes, out, 0.0)"]


def _store_grads(plan: Plan, layout: Layout, call=None):
    """Store -(dF/dtheta)^T w for each param into its gradient buffer (full batch in front)."""
    # call(fn, target): the statements calling vjp_theta on flat tiles of several blocks (kkt).
    fn = plan.function("vjp_theta")
    lanes = f"lanes = tl.arange(0, VAR_BLOCK) < {var_size(plan)}"
    body = _index_lines(shape for _, _, shape in layout.params)
    outs = [f"d_{g}" for _, g, _ in layout.params]
    if outs and call is not None:
        body += [line for line in call(fn, ", ".join(outs)) if line not in body]
    elif outs:
        body += ([] if plan.var.shape else [lanes]) + _call(fn, layout, not plan.var.shape, ", ".join(outs))
    by_key = dict(fn.outputs)
    for (src, g, shape), d in zip(layout.params, outs):
        got = tuple(fn.shape_of(by_key[src]))
        value = d if got == shape else f"tl.broadcast_to({aligned(d, len(got), len(shape))}, {tile(shape)})"
        numel = " * ".join(count(s) for s in shape) or "1"
        offs, mask = _param_offsets(shape)
        where = f"grad_{g} + pid * ({numel})" + (f" + {offs}" if offs else "")
        body.append(f"tl.store({where}, -{value}" + (f", mask={mask})" if mask else ")"))
    grads = "".join(f"grad_{g}, " for _, g, _ in layout.params)
    return "store_grads", f"x, w, pid, {grads}", _store_grads.__doc__.strip(), body or ["pass"]


def fill_template(text: str, values: dict) -> str:
    """Replace __NAME__ placeholders outside comments; a placeholder alone on a line takes a list of lines."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not stripped.startswith("#:"):  # "#:" marks notes on the template itself
                out.append(line)
            continue
        line = line.replace("  # noqa: E501", "")  # templates keep their long signatures on one line
        if re.fullmatch(r"__[A-Z_]+__", stripped):
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + item for item in values[stripped]]
        else:
            line = re.sub(r", (__[A-Z_]+__)", lambda m: f", {values[m.group(1)]}" if values[m.group(1)] else "", line)
            out.append(re.sub(r"__[A-Z_]+__", lambda m: str(values[m.group(0)]), line))
    return "\n".join(out)


def template(name: str) -> str:
    return resources.files("optlang.backends.triton").joinpath("templates", name + ".py").read_text("utf-8")


def template_values(plan: Plan, layout: Layout) -> dict:
    """What the templates' placeholders stand for: argument lists, loads and the solvers' constants."""
    from optlang.solvers import anderson, result

    from optlang.backends.triton import kkt

    grads = [f"grad_{g}" for _, g, _ in layout.params]
    return kkt.template_values(plan) | {
        "__SIG__": layout.sig(True), "__ARGS__": layout.sig(False),
        "__KERNEL_SIG__": ", ".join([f"{s}_{g}" for _, g, _ in layout.params for s in ("ptr", "bs")]
                                    + ["N"] + [f"n_{d}" for d in layout.dims]),
        "__CONST_SIG__": layout.const_sig(),
        "__GRAD_SIG__": ", ".join(grads), "__GRAD_ARGS__": ", ".join(grads),
        "__LOAD_PARAMS__": load_lines(layout), "__VAR_SIZE__": var_size(plan),
        "__CONVERGED__": result.CONVERGED, "__MAX_ITER__": result.MAX_ITER, "__FAILED__": result.FAILED,

        "__MEMORY_BLOCK__": next_pow2(anderson.MEMORY),
    }


def templates(plan: Plan) -> list[str]:
    """The templates a plan's module holds: a forward kernel per solver its class allows, the backwards."""
    from optlang.passes.select import SOLVERS, allowed_backwards, kind_label

    label = kind_label(plan, plan.kind)
    if plan.kind == "kkt":  # the ipm template holds the forward and the direct backward
        return ["common", "flat", "ops", "ipm"]
    forward = [FORWARD[s][0] for s in SOLVERS[label]]
    parts = sorted(set(forward), key=forward.index)
    # An identity dF/dx (sparsemax) leaves the backward nothing to solve: it runs on the PyTorch
    # functions (executor.backward), and the module holds no backward kernel.
    if not plan.identity_jacobian:
        parts.append("backward")
        # The in-kernel CG takes the free set as a mask; a simplex's (prox_jvp) runs on the PyTorch functions.
        if "cg" in allowed_backwards(label, plan.function("free_mask") is not None):
            parts.append("backward_cg")
    # The shared solvers' array interface before them, if the module holds one.
    return ["common", "flat"] + (["ops"] if set(parts) & set(SHARED) else []) + parts


def print_plan(plan: Plan) -> str:
    """The whole generated module for a plan: deterministic, readable text."""
    why = unsupported(plan)
    if why is not None:
        raise NotSupportedError(f"the Triton backend cannot print problem '{plan.problem}': it {why}",
                                detail='use backend="torch"')
    layout = Layout.of(plan)
    values = template_values(plan, layout)
    parts = templates(plan)
    kind = "fixed point" if plan.sense == "fixed_point" else plan.kind
    head = [
        f"# Generated by optlang for problem '{plan.problem}' ({kind}); backend: triton.",
        "# One program per problem instance: the forward kernel runs every iteration of its solve,",
        "# a backward kernel one implicit-function-theorem solve. Tiles hold declared shapes padded",
        "# to powers of two (n_d runtime, BLOCK_d constexpr); reductions mask their padded lanes.",
        "import triton",
        "import triton.language as tl",
    ]
    flags = flag_lines(plan, parts)
    head += [""] + flags if flags else []
    functions = [(fn.name, ["", "", f"# --- {fn.name}: {fn.doc} ---"] + print_function(fn, layout))
                 for fn in plan.functions if fn.name not in LAYER_ONLY]
    flat = fill_template(template(parts[1]), values)
    adapters = "\n".join(adapter_lines(plan, layout))
    solvers = []
    for part in parts[2:]:
        if part in SHARED:  # the solver's own text, then the kernel around it
            solvers += ["", "", fill_template(shared.render(SHARED[part]), values)]
        if part != "ops":
            solvers += ["", "", fill_template(template(part), values)]
    solver_text = "\n".join(solvers)
    ops = fill_template(template("ops"), values) if "ops" in parts else ""
    common = fill_template(template(parts[0]), values)
    # The module holds only what its kernels call, directly or through one another: no backward
    # function where no backward kernel is (sparsemax), no fused objective_gradient (ops calls
    # objective_flat and gradient_flat, whose inlined terms the compiler shares).
    everything = "\n".join([common, *(line for _, chunk in functions for line in chunk), flat, adapters, ops,
                            solver_text])
    kernels = {name for name in shared.defined(solver_text) if name.endswith("_kernel")}
    needed = shared.reachable(everything, kernels)
    problem = [line for name, chunk in functions if name in needed for line in chunk]
    problem += ["", "", shared.keep_called(flat, needed), shared.keep_called(adapters, needed)]
    ops = shared.keep_called(ops, needed) if ops else ""
    lines = head + ["", "", shared.keep_called(common, needed)] + problem + (["", "", ops] if ops else []) + solvers
    return "\n".join(wrap(line) for line in "\n".join(lines).split("\n")).rstrip() + "\n"


FLAG_NOTES = {"MINIMIZE": "Newton's merit: the objective, else |F|^2 / 2",
              "LOCAL": "not proven convex: an indefinite Hessian is shifted positive definite",
              "QUADRATIC": "a convex quadratic: its constant Hessian is factored once",
              "PROX": "a prox's fixed point: the backward's CG runs on the free set",
              "DIAGONAL": "an elementwise prox: its Jacobian is the 0/1 free mask",
              "IDENTITY_HESSIAN": "f's Hessian is the identity: one prox step at step 1 solves",
              "HESSIAN_GRADIENT": "grad f(x) = H x + grad f(0): H is no larger than the data",
              "NONLINEAR": "some constraint is not affine: steps are halved, certificates widened",
              "CONSTANT_HESSIAN": "affine constraints and a quadratic f: the Lagrangian's Hessian is built once"}


def flag_lines(plan: Plan, parts: list) -> list[str]:
    """The shared solvers' constant flags (their Context attributes on the PyTorch backend) as constexprs."""
    import importlib

    lines = []
    for part in parts:
        if part in SHARED:
            module = importlib.import_module(f"optlang.solvers.{SHARED[part]}")
            flags = module.flags(plan) if hasattr(module, "flags") else {}
            lines += [f"{name} = tl.constexpr({value})  # {FLAG_NOTES[name]}" for name, value in flags.items()
                      if f"{name} = " not in "".join(lines)]
    return lines


# Functions the layer evaluates with the PyTorch backend on any backend (a few ops after the solve,
# under autograd): no kernel calls them.
LAYER_ONLY = ("duals", "value", "prox_jvp")  # prox_jvp: the PyTorch CG backward's


def wrap(line: str, width: int = 110) -> str:
    """Break a long code line after commas inside brackets (never in comments or strings): at the
    outermost brackets first, then inside a piece that is still too long. A trailing comment that
    makes the line too long goes on a line of its own above it."""
    code, sep, comment = line.partition("  # ")
    if len(line) <= width or code.lstrip().startswith("#") or not code.strip() or '"' in code or "'" in code:
        return line
    lead = code[: len(code) - len(code.lstrip())]
    above = [f"{lead}# {comment}"] if sep else []
    return "\n".join(above + _fit(code, width, lead + " " * 8))


def _fit(line: str, width: int, indent: str) -> list[str]:
    """The line as lines of at most `width` where commas inside brackets allow."""
    if len(line) <= width:
        return [line]
    for depth in (1, 2, 3):
        pieces, level, start = [], 0, 0
        for i, ch in enumerate(line):
            level += (ch in "([") - (ch in ")]")
            if ch == "," and level == depth and line[i + 1: i + 2] == " ":
                pieces.append(line[start: i + 1])
                start = i + 2
        pieces.append(line[start:])
        if len(pieces) == 1:
            continue
        out, cur = [], pieces[0]
        for piece in pieces[1:]:
            if len(cur) + 1 + len(piece) > width:
                out.append(cur)
                cur = indent + piece.lstrip()
            else:
                cur += " " + piece
        out.append(cur)
        if len(out) > 1:  # each line shorter than `line`: the recursion ends
            return [part for text in out for part in _fit(text, width, indent + " " * 4)]
    return [line]


def kernel_name(solver: str) -> str:
    """The forward kernel the executor launches for a solver (as `select.default_solver` settles it)."""
    return FORWARD[solver][1]
