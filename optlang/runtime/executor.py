"""The PyTorch executor: batched solvers and backward strategies in Python over generated functions."""
from __future__ import annotations

import torch

from optlang.backends.torch.support import memo_scope
from optlang.passes.select import backward_method, default_solver
from optlang.solvers.anderson import solve_fixed_point
from optlang.solvers.backward import adjoint_solve, finite_param_grads
from optlang.solvers.linalg import CholeskyFactor, FreeSetSystem
from optlang.solvers.newton import newton
from optlang.solvers.pgd import fista
from optlang.solvers.result import Deadline

_modules: dict = {}  # plan -> generated module: printing and hashing happen once per plan


def backward_tol(options: dict, dtype) -> float:
    """The adjoint solve's tolerance: at least as tight as the forward's, tighter by default."""
    return min(options["tol"], 1e-12 if dtype == torch.float64 else 1e-6)


def implicit_system(bound, x, options: dict, result=None) -> tuple:
    """(method, tolerance, J) of the implicit function theorem's linear solves at x: J is what a
    direct solve starts from where it is at hand (the KKT matrix; the forward's Cholesky factor of
    a constant Hessian, from `result`), else None."""
    factor = None if result is None else result.factor
    method = backward_method(bound.plan, bound.n, options["backward"], factored=factor is not None)
    J = None
    if method == "direct" and factor is not None:
        J = CholeskyFactor(factor)
    elif method == "direct" and getattr(result, "hessian", None) is not None:
        J = FreeSetSystem(result.hessian, bound.free_mask(x))
    elif method == "direct" and bound.plan.kind == "kkt":
        from optlang.runtime.kkt import kkt_jacobian

        J = kkt_jacobian(bound, x, options["tol"])
    return method, backward_tol(options, bound.dtype), J


class TorchExecutor:
    """Runs a plan's forward and backward with the PyTorch backend's generated functions."""

    name = "torch"

    def module_for(self, plan):
        """The generated module for a plan: printed, cached on disk by content hash, imported."""
        module = _modules.get(plan)
        if module is None:
            from optlang.backends.torch.printer import print_plan
            from optlang.runtime import cache

            module = _modules.setdefault(plan, cache.load(print_plan(plan), "torch"))
        return module

    def solve(self, bound, options: dict):
        with memo_scope() as memo:
            result = self._solve(bound, options)
        result.memo = memo  # for this call's backward
        return result

    def _solve(self, bound, options: dict):
        plan = bound.plan
        tol, max_iter = options["tol"], options["max_iter"]
        solver = default_solver(plan, options["solver"])
        init = options.get("init")  # a flat state to start from (a warm start), or None
        deadline = Deadline(options.get("time_limit"))
        if plan.kind == "prox":
            return fista(bound, tol, max_iter, accelerate=solver == "fista", x0=init, deadline=deadline)
        if plan.kind == "kkt":
            from optlang.runtime.kkt import solve_kkt

            return solve_kkt(bound, tol, max_iter, init, deadline)
        x0 = torch.zeros(bound.batch + (bound.n,), dtype=bound.dtype, device=bound.device) if init is None else init
        if solver == "anderson":
            flat = bound.flat_batch()
            return solve_fixed_point(flat, x0, tol, max_iter, deadline=deadline)
        return newton(bound, x0, tol, max_iter, deadline=deadline)

    def backward(self, bound, x, g, options: dict, wanted: set, result=None) -> dict:
        """The params' gradients for cotangent g at solution x (`result`: the forward's SolveResult)."""
        with memo_scope(getattr(result, "memo", None)):
            method, tol, J = implicit_system(bound, x, options, result)
            w = adjoint_solve(bound, x, g, method, tol, J)
            grads = finite_param_grads(bound, x, w)
        return {k: v for k, v in grads.items() if k in wanted}
