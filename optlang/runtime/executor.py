"""The PyTorch executor: batched solvers and backward strategies in Python over generated functions."""
from __future__ import annotations

import torch

from optlang.passes.select import DIRECT_MAX
from optlang.solvers.backward import adjoint_solve, param_grads
from optlang.solvers.newton import newton
from optlang.solvers.pgd import fista


def backward_method(plan, n: int, requested: str) -> str:
    """Settle backward = "auto" now that the var's size is known."""
    if requested != "auto":
        return requested
    if plan.kind == "root" or n <= DIRECT_MAX:
        return "direct"
    return "cg"


_modules: dict = {}  # plan -> generated module: printing and hashing happen once per plan


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
        plan = bound.plan
        tol, max_iter = options["tol"], options["max_iter"]
        if plan.kind == "bounds":
            return fista(bound, tol, max_iter)
        x0 = torch.zeros(bound.batch + (bound.n,), dtype=bound.dtype, device=bound.device)
        return newton(bound, x0, tol, max_iter, minimize=plan.kind == "smooth")

    def backward(self, bound, x, g, options: dict, wanted: set) -> dict:
        method = backward_method(bound.plan, bound.n, options["backward"])
        tol = min(options["tol"], 1e-12 if bound.dtype == torch.float64 else 1e-6)
        w = adjoint_solve(bound, x, g, method, tol)
        grads = param_grads(bound, x, w)
        return {k: v for k, v in grads.items() if k in wanted}
