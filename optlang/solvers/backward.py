"""The implicit function theorem's backward pass, apart from any forward solver.

At a solution x*(theta) of F(x, theta) = 0, for a cotangent g on x*:
    solve  (dF/dx)^T w = g,   then   grad_theta = -(dF/dtheta)^T w.
Strategies:
  "direct"   dense LU of the Jacobian; least squares (minimum norm) where it is singular
  "cg"       conjugate gradients through Hessian-vector products (smooth); for an
             elementwise prox, on the free coordinates (see `_cg_prox`)
  "gmres"    restarted GMRES through vector-Jacobian products (any square system)
  "neumann"  the truncated Neumann series of Lorraine et al. (2020): on the Hessian
             with alpha = 1 / lambda_max (smooth), on (dF/dx)^T with alpha = 1 for
             fixed points (F = z - g(z), so the series sums (dg/dz)^T powers), and
             with alpha = 1 / lambda_max of (dF/dx)^T otherwise
"""
from __future__ import annotations

import warnings

import torch

from optlang.errors import user_stacklevel
from optlang.solvers.krylov import gmres, largest_eigenvalue, neumann
from optlang.solvers.linalg import cg, solve
from optlang.solvers.result import where_text

KRYLOV_MAX_ITER = 1000
CG_MAX_ITER = KRYLOV_MAX_ITER
NEUMANN_MAX_TERMS = 2000


def adjoint_solve(prob, x: torch.Tensor, g: torch.Tensor, method: str, tol: float, J=None) -> torch.Tensor:
    """The w of (dF/dx)^T w = g, by `method` (`J`: a dense Jacobian already at hand, for "direct")."""
    kind = prob.plan.kind
    if method == "direct":
        J = prob.jacobian(x) if J is None else J
        w, singular = solve(J.transpose(-1, -2), g)
        _warn(singular, "singular Jacobian in the backward pass", "used the least-squares (minimum-norm) solution")
        return w
    if method == "cg":
        if kind == "prox":
            return _cg_prox(prob, x, g, tol)
        w, ok = cg(lambda v: prob.hvp(x, v), g, tol, CG_MAX_ITER)
        _warn(~ok, "conjugate gradients did not converge in the backward pass", "")
        return w
    if method == "gmres":
        w, ok = gmres(lambda u: prob.vjp(x, u), g, tol, KRYLOV_MAX_ITER)
        _warn(~ok, "GMRES did not converge in the backward pass", "")
        return w
    if method == "neumann":
        return _neumann(prob, x, g, tol)
    raise AssertionError(f"unknown backward method {method}")


def _cg_prox(prob, x, g, tol):
    """J = I - D + D H (D the prox's diagonal Jacobian, 0/1 on boxes and norm1); J^T w = g splits by
    the free set F and the fixed set A: H_FF w_F = g_F by CG on D H D + (I - D), then w_A = g_A - (H w_F)_A."""
    D = prob.free_mask(x)
    w_free, ok = cg(lambda v: D * prob.hvp(x, D * v) + (1 - D) * v, D * g, tol, CG_MAX_ITER)
    _warn(~ok, "conjugate gradients did not converge in the backward pass", "")
    w_free = D * w_free
    return w_free + (1 - D) * (g - prob.hvp(x, w_free))


def _neumann(prob, x, g, tol):
    if prob.plan.kind == "smooth":
        matvec = lambda v: prob.hvp(x, v)  # noqa: E731  (dF/dx = H is symmetric)
    else:
        matvec = lambda u: prob.vjp(x, u)  # noqa: E731
    if prob.plan.sense == "fixed_point":
        alpha = 1.0
    else:
        alpha = 1.0 / largest_eigenvalue(matvec, g).clamp(min=torch.finfo(g.dtype).tiny)
    w, ok = neumann(matvec, g, alpha, tol, NEUMANN_MAX_TERMS)
    _warn(~ok, "the Neumann series did not converge in the backward pass",
          "it needs the spectral radius of I - alpha J below 1; use backward=\"direct\" or \"gmres\"")
    return w


def _warn(bad: torch.Tensor, what: str, how: str) -> None:
    if bool(bad.any()):
        warnings.warn(f"optlang: {what}{where_text(bad)}" + (f"; {how}" if how else ""), RuntimeWarning,
                      stacklevel=user_stacklevel())


def param_grads(prob, x: torch.Tensor, w: torch.Tensor) -> dict:
    """-(dF/dtheta)^T w for each param, with the full batch dims in front."""
    return {name: -value for name, value in prob.vjp_theta(x, w).items()}
