"""The implicit function theorem's backward pass, apart from any forward solver.

At a solution x*(theta) of F(x, theta) = 0, for a cotangent g on x*:
    solve  (dF/dx)^T w = g,   then   grad_theta = -(dF/dtheta)^T w.
Strategies: "direct" (dense LU of the Jacobian, least squares where it is
singular) and "cg" (matrix-free conjugate gradients through Hessian-vector
products; for bounds, on the free coordinates, see `_cg_bounds`).
"""
from __future__ import annotations

import warnings

import torch

from optlang.solvers.linalg import cg, solve

CG_MAX_ITER = 1000


def adjoint_solve(prob, x: torch.Tensor, g: torch.Tensor, method: str, tol: float) -> torch.Tensor:
    """The w of (dF/dx)^T w = g, by `method`."""
    if method == "direct":
        J = prob.jacobian(x)
        w, singular = solve(J.transpose(-1, -2), g)
        if bool(singular.any()):
            idx = singular.nonzero().tolist()
            warnings.warn(
                f"optlang: singular Jacobian in the backward pass at batch elements {idx[:10]}; "
                "used the least-squares (minimum-norm) solution",
                RuntimeWarning,
                stacklevel=4,
            )
        return w
    if method == "cg":
        if prob.plan.kind == "bounds":
            return _cg_bounds(prob, x, g, tol)
        w, ok = cg(lambda v: prob.hvp(x, v), g, tol, CG_MAX_ITER)
        _warn_cg(ok)
        return w
    raise AssertionError(f"unknown backward method {method}")


def _cg_bounds(prob, x, g, tol):
    """J = I - D + D H (D the free mask); J^T w = g splits by the free set F and active set A:
    H_FF w_F = g_F by CG on D H D + (I - D), then w_A = g_A - (H w_F)_A."""
    D = prob.free_mask(x)
    w_free, ok = cg(lambda v: D * prob.hvp(x, D * v) + (1 - D) * v, D * g, tol, CG_MAX_ITER)
    _warn_cg(ok)
    w_free = D * w_free
    return w_free + (1 - D) * (g - prob.hvp(x, w_free))


def _warn_cg(ok: torch.Tensor) -> None:
    if not bool(ok.all()):
        idx = (~ok).nonzero().tolist()
        warnings.warn(
            f"optlang: conjugate gradients did not converge in the backward pass at batch elements {idx[:10]}",
            RuntimeWarning,
            stacklevel=4,
        )


def param_grads(prob, x: torch.Tensor, w: torch.Tensor) -> dict:
    """-(dF/dtheta)^T w for each param, with the full batch dims in front."""
    return {name: -value for name, value in prob.vjp_theta(x, w).items()}
