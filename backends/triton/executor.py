"""The Triton executor: one kernel launch for a batch's forward solve, one for its backward.

The forward kernel is the call's solver (`select.default_solver`): newton_kernel
(smooth, root, and fixed points with solver "newton"), fista_kernel (prox; its
constexpr ACCELERATE is off for "pgd"), anderson_kernel (fixed points),
ipm_kernel (the kkt kind; the state is the var then the duals). The backward
kernels are the direct (dense; backward_kkt_kernel for the kkt kind, with the
weakly active rows of runtime/kkt.kkt_jacobian) and, where the system is
symmetric positive definite (smooth, elementwise prox), the CG adjoint solves. "gmres"
and "neumann" have no kernel: they run with the PyTorch backend's generated
functions and solvers (TorchExecutor.backward) on the same tensors, so they
work on CUDA but take many small launches ("unroll" never reaches an executor).

Grid = (B,), one program per problem instance, B = prod(batch). A param whose
batch dims are the full batch goes in contiguous with batch stride = its
element count; one without batch dims (or only unit ones) gets stride 0; any
other partial broadcast is materialized with expand(...).contiguous().
Newton, FISTA/PGD, Anderson, the interior point and the CG adjoint run the
PyTorch solvers' own text (backends/triton/shared.py). Where the backends
differ: dense solves skip exactly-zero pivots (a basic solution) where
torch.linalg falls back to the minimum-norm least-squares one (the IPM's
reduced system, eliminated for every right-hand side where PyTorch factors it
once by Cholesky, included),
FISTA decides when to polish per instance where a PyTorch batch waits for
every element (pgd.py's batch_all), and the simplex threshold comes from
Michelot's iteration, not a sort (the same tau up to rounding).
Triton is imported only here, and only when this backend runs.
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
import weakref

import torch

from optlang.backends.triton.limits import (KKT_SYSTEM_TILE, KKT_TILE_PER_THREAD, MAX_REGISTERS, MAX_TILE,
                                            TILE_PER_THREAD, spill_free_tile)
from optlang.backends.triton.printer import Layout, block, kernel_name, next_pow2, print_plan, unsupported
from optlang.errors import CallError, user_stacklevel
from optlang.passes.select import backward_method, default_solver
from optlang.solvers.result import CONVERGED, SolveResult, where_text

# Every tile lives in one program's registers: limits.MAX_TILE is the hard cap, and when no
# backend was asked for, a call above limits.SPILL_FREE_TILE runs on PyTorch (`refusal`).
_modules: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # plan -> module: print once per plan
_tile_checks: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # plan -> {(dims, n): too_large's answer}


class TritonExecutor:
    """Runs a plan's forward and backward as generated Triton kernels."""

    name = "triton"

    def module_for(self, plan):
        """The generated module for a plan: printed, cached on disk by content hash, imported."""
        module = _modules.get(plan)
        if module is None:
            why = unsupported(plan)
            if why is not None:
                raise CallError(f"problem '{plan.problem}' cannot run on the Triton backend: it {why}; "
                                "use backend=\"torch\"")
            import triton

            from optlang.runtime import cache

            module = _modules[plan] = cache.load(print_plan(plan), "triton", extra=f"triton={triton.__version__}")
        return module

    def solve(self, bound, options: dict) -> SolveResult:
        solver = default_solver(bound.plan, options["solver"])
        launch = _Launch(bound)
        B = launch.B
        # torch.empty, not zeros: the kernel writes every entry, and a fill would be one more launch.
        x = torch.empty((B, bound.n), dtype=bound.dtype, device=bound.device)
        status = torch.empty(B, dtype=torch.int8, device=bound.device)
        iterations = torch.empty(B, dtype=torch.int32, device=bound.device)
        residual = torch.empty(B, dtype=bound.dtype, device=bound.device)
        tol = torch.tensor([options["tol"]], dtype=bound.dtype, device=bound.device)
        consts = {}
        if solver in ("fista", "pgd"):
            consts["ACCELERATE"] = solver == "fista"
        kernel = getattr(bound.module, kernel_name(solver))
        launch.run(kernel, [x, status, iterations, residual, tol, int(options["max_iter"])], **consts)
        batch = bound.batch
        status = status.long().reshape(batch)
        return SolveResult(x.reshape(batch + (bound.n,)), status == CONVERGED, iterations.long().reshape(batch),
                           residual.reshape(batch), status)

    def backward(self, bound, x, g, options: dict, wanted: set, result=None) -> dict:
        method = backward_method(bound.plan, bound.n, options["backward"])
        # A method with no kernel in this module (gmres, neumann; cg on a simplex's free set, whose
        # prox_jvp only the PyTorch functions have) runs the PyTorch backward on the same device.
        # An identity dF/dx (sparsemax) leaves nothing to solve: the PyTorch backward is its (dF/dtheta)^T g,
        # where a kernel would build and eliminate the n x n identity.
        if method in ("gmres", "neumann") or (method == "cg" and not hasattr(bound.module, "backward_cg_kernel")) \
                or bound.plan.identity_jacobian:
            return _torch_backward(bound, x, g, options, wanted)
        launch = _Launch(bound)
        B = launch.B
        x = x.reshape(B, bound.n).to(bound.dtype).contiguous()
        g = g.reshape(B, bound.n).to(bound.dtype).contiguous()
        flags = torch.empty(B, dtype=torch.int8, device=bound.device)
        grads = {p.name: torch.empty((B,) + _concrete(p.shape, bound.dims), dtype=bound.dtype, device=bound.device)
                 for p in bound.plan.params}
        out = [grads[p.name] for p in bound.plan.params]
        if method == "direct" and bound.plan.kind == "kkt":
            from optlang.runtime.kkt import warn_weak

            weak = torch.empty(B, dtype=torch.int8, device=bound.device)
            tol = torch.tensor([options["tol"]], dtype=bound.dtype, device=bound.device)
            launch.run(bound.module.backward_kkt_kernel, [x, g, flags, weak, tol] + out)
            warn_weak(weak.reshape(bound.batch).bool())
            _warn(flags, bound.batch, "singular Jacobian in the backward pass",
                  "zero pivots were skipped (a basic solution, not the minimum-norm one; "
                  "backend=\"torch\" gives the least-squares solution)")
        elif method == "direct":
            launch.run(bound.module.backward_direct_kernel, [x, g, flags] + out)
            _warn(flags, bound.batch, "singular Jacobian in the backward pass",
                  "zero pivots were skipped (a basic solution, not the minimum-norm one; "
                  "backend=\"torch\" gives the least-squares solution)")
        elif method == "cg":
            from optlang.runtime.executor import backward_tol

            tol = torch.tensor([backward_tol(options, bound.dtype)], dtype=bound.dtype, device=bound.device)
            launch.run(bound.module.backward_cg_kernel, [x, g, flags, tol] + out)
            _warn(flags, bound.batch, "conjugate gradients did not converge in the backward pass", "")
        else:
            raise AssertionError(f"unknown backward method {method}")
        return {k: v.reshape(bound.batch + v.shape[1:]) for k, v in grads.items() if k in wanted}


def _torch_backward(bound, x, g, options: dict, wanted: set) -> dict:
    """The adjoint solve by the PyTorch backend (GMRES, Neumann): its generated functions on these tensors."""
    from optlang.runtime.bound import BoundProblem
    from optlang.runtime.executor import TorchExecutor

    executor = TorchExecutor()
    torch_bound = BoundProblem(executor.module_for(bound.plan), bound.plan, bound.params, bound.dims, bound.batch,
                               bound.dtype, bound.device)
    return executor.backward(torch_bound, x, g, options, wanted)


def _concrete(shape: tuple, dims: dict) -> tuple:
    return tuple(d if isinstance(d, int) else dims[d] for d in shape)


class _Launch:
    """One call's kernel arguments: params with batch strides, dims, tile sizes; launches on grid (B,)."""

    def __init__(self, bound):
        self.bound = bound
        self.B = math.prod(bound.batch)
        layout = Layout.of(bound.plan)
        self.args = []
        for name, _, shape in layout.params:
            self.args += _param_arg(bound.params[name], _concrete(shape, bound.dims), bound.batch)
        self.args += [bound.n] + [int(bound.dims[d]) for d in layout.dims]
        self.consts = tile_constexprs(bound)
        self.num_warps = num_warps(bound)
        why = too_large(bound)
        if why is not None:
            raise CallError(f"problem '{bound.plan.problem}' {why}; use backend=\"torch\"")

    def run(self, kernel, head: list, **consts) -> None:
        import triton.language as tl

        if self.B == 0:
            return
        dtype = tl.float64 if self.bound.dtype == torch.float64 else tl.float32
        with _quiet_interpreter():
            # No FMA contraction: each operation rounds as in PyTorch and in the interpreter.
            kernel[(self.B,)](*head, *self.args, **consts, **self.consts, DTYPE=dtype, enable_fp_fusion=False,
                              num_warps=self.num_warps, maxnreg=MAX_REGISTERS)


def tile_constexprs(bound) -> dict:
    """The kernels' tile sizes: BLOCK_<dim> per dim and VAR_BLOCK for the flat state, powers of two."""
    consts = {f"BLOCK_{d}": next_pow2(bound.dims[d]) for d in Layout.of(bound.plan).dims}
    consts["VAR_BLOCK"] = next_pow2(bound.n)
    if bound.plan.kind == "kkt":
        consts.update(kkt_blocks(bound))
    return consts


def kkt_sizes(bound) -> dict:
    """{"var": NV, "ineq": NI, "eq": NE}: the entries of the var, the inequality rows and the equality rows."""
    sizes = {"var": 0, "ineq": 0, "eq": 0}
    for b in bound.plan.state:
        sizes[b.kind] += math.prod(_concrete(tuple(b.shape), bound.dims))
    return sizes


def kkt_blocks(bound) -> dict:
    """The interior-point kernel's own tiles (templates/ipm.py): X_BLOCK for the var (and its
    system Kx), I_BLOCK for the inequality rows, E_BLOCK for the equality rows."""
    n = kkt_sizes(bound)
    return {"X_BLOCK": next_pow2(max(n["var"], 1)), "I_BLOCK": next_pow2(max(n["ineq"], 1)),
            "E_BLOCK": next_pow2(max(n["eq"], 1))}


def _param_arg(t: torch.Tensor, shape: tuple, batch: tuple) -> list:
    """(tensor, batch stride): shared params once, full-batch params as they are, others expanded."""
    own = tuple(t.shape[: t.dim() - len(shape)])
    numel = math.prod(shape)
    if math.prod(own) == 1:
        return [t.reshape(shape).contiguous(), 0]
    if own != tuple(batch):
        t = t.expand(tuple(batch) + shape)
    return [t.contiguous(), numel]


def refusal(bound) -> str | None:
    """Why the default backend choice runs this CUDA call on PyTorch (a phrase after "problem 'p' "), or None:
    a class without kernels, tiles above the hard cap, or tiles whose kernels would spill registers."""
    why = unsupported(bound.plan)
    if why is not None:
        return f"cannot run on the Triton backend: it {why}"
    return too_large(bound) or spills(bound)


def too_large(bound) -> str | None:
    """Why a tile of this call would not fit on chip (see MAX_TILE), or None.

    Memoized per plan and concrete dims: the walk over every op runs once per size, not per call.
    """
    key = (tuple(sorted(bound.dims.items())), bound.n)
    per_plan = _tile_checks.setdefault(bound.plan, {})
    if key not in per_plan:
        per_plan[key] = _too_large(bound)
    return per_plan[key]


def num_warps(bound) -> int:
    """Warps per program: enough threads for about TILE_PER_THREAD elements of the largest tile
    each (KKT_TILE_PER_THREAD for the interior point; a float64 counts twice), 4 to 16. On sm_90 (benchmarks/sm90_resources.py) a 64 x 64
    Jacobian fits at 4 warps in float32 and spills about 300 bytes a thread at 4 in float64, none at 8."""
    tile, _ = largest_tile(bound)
    width = 2 if bound.dtype == torch.float64 else 1
    per_thread = KKT_TILE_PER_THREAD if bound.plan.kind == "kkt" else TILE_PER_THREAD
    return min(16, max(4, next_pow2(-(-tile * width // (32 * per_thread)))))


def spills(bound) -> str | None:
    """Why this call's kernels would spill registers on sm_90 (a phrase after "problem 'p' "), or None."""
    tile, what = largest_tile(bound)
    dtype = "float64" if bound.dtype == torch.float64 else "float32"
    cap = spill_free_tile(bound.plan.kind, dtype)
    solver = "interior-point " if bound.plan.kind == "kkt" else ""
    if tile > cap:
        return (f"would spill registers in the Triton {solver}kernels at this size: {what}, above the {cap} "
                f"elements that stay on chip in {dtype}")
    if bound.plan.kind == "kkt":
        blocks, cap = kkt_blocks(bound), KKT_SYSTEM_TILE[dtype]
        k, i = blocks["X_BLOCK"], blocks["I_BLOCK"]
        if max(k * k, i * k) > cap:
            return (f"would spill registers in the Triton interior-point kernel at this size: its system in the "
                    f"vars is {k} x {k} and the inequality Jacobian {i} x {k}, above the {cap} elements a tile of "
                    f"them may hold on chip in {dtype}")
    return None


def largest_tile(bound) -> tuple:
    """(elements, what it is) of the largest tile a kernel of this call holds; memoized per plan and size."""
    key = (tuple(sorted(bound.dims.items())), bound.n, "largest")
    per_plan = _tile_checks.setdefault(bound.plan, {})
    if key not in per_plan:
        per_plan[key] = _largest_tile(bound)
    return per_plan[key]


def _too_large(bound) -> str | None:
    tile, what = largest_tile(bound)
    if tile <= MAX_TILE:
        return None
    return (f"is too large for the Triton backend's on-chip tiles: {what}, above the cap of {MAX_TILE} "
            "elements per tile")


def _largest_tile(bound) -> tuple:
    n = next_pow2(bound.n)
    plan = bound.plan
    what = (f"var '{plan.var.name}' has" if len(plan.vars) == 1 else
            f"vars {', '.join(v.name for v in plan.vars)} have")
    worst = (n * n, f"the dense Jacobian is {n} x {n} ({what} {bound.n} entries)")
    if _solved_by_one_prox_step(plan):
        worst = (n, f"{what} {bound.n} entries")
    if plan.kind == "kkt":
        worst = (n * n, f"the dense Jacobian is {n} x {n} (the vars and duals have {bound.n} entries)")
    blocks = {d: next_pow2(v) for d, v in bound.dims.items() if v is not None}

    def size(shape):
        return math.prod(blocks[d] if isinstance(d, str) else int(block(d)) for d in shape)

    for b in plan.state:  # a block of rank 2 is cut from the flat state through a [rows, cols, VAR_BLOCK] tile
        if len(b.shape) == 2 and size(b.shape) * n > worst[0]:
            worst = (size(b.shape) * n, f"cutting '{b.name}' out of the flat state takes a tile of "
                                        f"{size(b.shape) * n} elements")

    for fn in bound.plan.functions:
        for a in fn.args:
            if size(a.shape) > worst[0]:
                worst = (size(a.shape), f"{a.name} is a tile of {size(a.shape)} elements")
        for op in fn.ops:
            shape = tuple(op.shape)
            if op.prim == "matmul" and all(len(fn.shape_of(a)) == 2 for a in op.args):
                shape = tuple(fn.shape_of(op.args[0])) + (fn.shape_of(op.args[1])[1],)
            if size(shape) > worst[0]:
                worst = (size(shape), f"{fn.name} holds a tile of {size(shape)} elements ({op.out})")
    return worst


def _solved_by_one_prox_step(plan) -> bool:
    """Whether no kernel of the plan holds an n x n tile: FISTA's IDENTITY_HESSIAN solve is one prox
    step and its residual, and the backward of an identity dF/dx runs no kernel (`backward`)."""
    from optlang.solvers import pgd

    return plan.kind == "prox" and plan.identity_jacobian and pgd.flags(plan)["IDENTITY_HESSIAN"]


def _warn(flags: torch.Tensor, batch: tuple, what: str, how: str) -> None:
    flags = flags.reshape(batch).bool()
    if bool(flags.any()):
        warnings.warn(f"optlang: {what}{where_text(flags)}" + (f"; {how}" if how else ""), RuntimeWarning,
                      stacklevel=user_stacklevel())


@contextlib.contextmanager
def _quiet_interpreter():
    """Under TRITON_INTERPRET=1 tiles are NumPy arrays: padded lanes may divide by zero harmlessly."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        yield
        return
    import numpy as np

    with np.errstate(all="ignore"):
        yield
