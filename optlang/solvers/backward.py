"""The implicit function theorem's backward pass, apart from any forward solver.

At a solution x*(theta) of F(x, theta) = 0, for a cotangent g on x*:
    solve  (dF/dx)^T w = g,   then   grad_theta = -(dF/dtheta)^T w.
Forward mode (and the second-order backward) solves the untransposed system
    (dF/dx) z = v   (`tangent_solve`), e.g. v = -(dF/dtheta) dtheta for a tangent dtheta,
by the same strategy. Strategies:
  "direct"   dense LU of the Jacobian (Cholesky of a convex f's Hessian); least squares
             (minimum norm) where it is singular
  "cg"       conjugate gradients through Hessian-vector products (smooth); for a
             prox, on the free set (see adjoint_cg.py)
  "gmres"    restarted GMRES through vector-Jacobian products (any square system)
  "neumann"  the truncated Neumann series of Lorraine et al. (2020): on the Hessian
             with alpha = 1 / lambda_max (smooth), on (dF/dx)^T with alpha = 1 for
             fixed points (F = z - g(z), so the series sums (dg/dz)^T powers), and
             with alpha = 1 / lambda_max of (dF/dx)^T otherwise
"""
from __future__ import annotations

import math

import warnings

import torch

from optlang.errors import user_stacklevel
from optlang.solvers.krylov import gmres, largest_eigenvalue, neumann
from optlang.solvers import adjoint_cg
from optlang.solvers.linalg import CholeskyFactor, FreeSetSystem, all_finite, finite_over, solve, solve_spd
from optlang.solvers.result import where_text

KRYLOV_MAX_ITER = 1000
NEUMANN_MAX_TERMS = 2000


def adjoint_solve(prob, x: torch.Tensor, g: torch.Tensor, method: str, tol: float, J=None) -> torch.Tensor:
    """The w of (dF/dx)^T w = g, by `method` (`J`, for "direct": a dense Jacobian already at hand, or
    a `CholeskyFactor` of it)."""
    return _linear_solve(prob, x, g, method, tol, J, transpose=True)


def tangent_solve(prob, x: torch.Tensor, v: torch.Tensor, method: str, tol: float, J=None) -> torch.Tensor:
    """The z of (dF/dx) z = v, by `method`: the adjoint's system, untransposed."""
    return _linear_solve(prob, x, v, method, tol, J, transpose=False)


def _linear_solve(prob, x, b, method: str, tol: float, J, transpose: bool) -> torch.Tensor:
    """(dF/dx)^T y = b (transpose) or (dF/dx) y = b, one strategy per method for both."""
    where = "the backward pass" if transpose else "a tangent solve"
    if prob.plan.identity_jacobian:  # dF/dx = I (a projection or prox of a point): nothing to solve
        return b.view_as(b)  # a view: autograd.Functions may not save an input returned as it is
    if method == "direct":
        if isinstance(J, (CholeskyFactor, FreeSetSystem)):
            y, singular = J.solve(b) if isinstance(J, CholeskyFactor) else J.solve(b, transpose)
            _warn(singular, f"singular Jacobian in {where}", "used the least-squares (minimum-norm) solution")
            return y
        J = prob.jacobian(x) if J is None else J
        # `precise`: a Jacobian singular to working precision (a derivative that is not unique) factors
        # without an error; it takes the least-squares solution and the warning, as a singular one does.
        if prob.plan.kind == "smooth" and not prob.plan.local:  # a convex f's Hessian: SPD, symmetric
            y, singular = solve_spd(J, b, precise=True)
        else:
            y, singular = solve(J.transpose(-1, -2) if transpose else J, b, precise=True)
        _warn(singular, f"singular Jacobian in {where}", "used the least-squares (minimum-norm) solution")
        return y
    if method == "cg":  # adjoint_cg.py, shared with the Triton backend
        y, ok = (adjoint_cg.adjoint if transpose else adjoint_cg.tangent)(prob, x, b, tol)
        _warn(~ok, f"conjugate gradients did not converge in {where}", "")
        return y
    if method == "gmres":
        y, ok = gmres(lambda u: prob.vjp(x, u) if transpose else prob.jvp(x, u), b, tol, KRYLOV_MAX_ITER)
        _warn(~ok, f"GMRES did not converge in {where}", "")
        return y
    if method == "neumann":
        return _neumann(prob, x, b, tol, transpose)
    raise AssertionError(f"unknown backward method {method}")


def _neumann(prob, x, g, tol, transpose: bool = True):
    if prob.plan.kind == "smooth":
        matvec = lambda v: prob.hvp(x, v)  # noqa: E731  (dF/dx = H is symmetric)
    elif transpose:
        matvec = lambda u: prob.vjp(x, u)  # noqa: E731
    else:
        matvec = lambda u: prob.jvp(x, u)  # noqa: E731
    if prob.plan.sense == "fixed_point":
        alpha = 1.0
    else:
        alpha = 1.0 / largest_eigenvalue(matvec, g).clamp(min=torch.finfo(g.dtype).tiny)
    w, ok = neumann(matvec, g, alpha, tol, NEUMANN_MAX_TERMS)
    if prob.plan.kind == "smooth":
        # H is SPD and alpha = 1 / lambda_max: the series always converges, at rate 1 - 1/kappa, so
        # what runs out is the term budget (about kappa * ln(1/tol) terms are needed).
        why = (f"with alpha = 1/lambda_max each term gains a factor 1 - 1/kappa, so it needs about "
               f"kappa * ln(1/tol) terms and stopped at {NEUMANN_MAX_TERMS} (kappa above about "
               f"{NEUMANN_MAX_TERMS / max(1.0, math.log(1 / tol)):.0f}); use backward=\"cg\" or \"direct\"")
    else:
        why = "it needs the spectral radius of I - alpha J below 1; use backward=\"direct\" or \"gmres\""
    _warn(~ok, "the Neumann series did not converge in the backward pass", why)
    return w


def _warn(bad: torch.Tensor, what: str, how: str) -> None:
    if bool(bad.any()):
        warnings.warn(f"optlang: {what}{where_text(bad)}" + (f"; {how}" if how else ""), RuntimeWarning,
                      stacklevel=user_stacklevel())


def param_grads(prob, x: torch.Tensor, w: torch.Tensor) -> dict:
    """-(dF/dtheta)^T w for each param, with the full batch dims in front: (dF/dtheta)^T (-w), as
    vjp_theta is linear in its cotangent (the same numbers: negation is exact), one pass over w
    where negating each param's gradient would pass over every param's size."""
    return prob.vjp_theta(x, -w)


def finite_param_grads(prob, x: torch.Tensor, w: torch.Tensor) -> dict:
    """`param_grads`, with the elements where it is not finite (a state or adjoint that broke: a
    failed forward element) set to 0 and warned about, so they never reach a shared param's sum."""
    grads = param_grads(prob, x, w)
    if prob.device.type == "cpu" and all_finite(*grads.values()):
        return grads  # the common case, in one read
    batch_rank = len(prob.batch)
    broken = torch.zeros(prob.batch, dtype=torch.bool, device=prob.device)
    for value in grads.values():
        broken = broken | ~finite_over(value, batch_rank)
    if bool(broken.any()):
        _warn(broken, "the gradient is not finite (the forward solve failed there)", "it is set to 0")
        for name, value in grads.items():
            mask = broken.reshape(prob.batch + (1,) * (value.dim() - batch_rank))
            grads[name] = torch.where(mask, torch.zeros_like(value), value)
    return grads


def param_tangent(prob, x: torch.Tensor, tangents: dict) -> torch.Tensor:
    """(dF/dtheta) dtheta, in the residual's layout, for tangents {param name: dtheta}.

    The generated `vjp_theta` is linear in its cotangent u, so (dF/dtheta) dtheta is the
    gradient in u of sum_p <vjp_theta_p(u), dtheta_p>: one reverse pass through it.
    """
    u = torch.zeros(prob.batch + (prob.n,), dtype=prob.dtype, device=prob.device, requires_grad=True)
    with torch.enable_grad():
        outs = prob.vjp_theta(x.detach(), u)
        total = sum((outs[name] * t).sum() for name, t in tangents.items() if name in outs)
        if not isinstance(total, torch.Tensor) or not total.requires_grad:
            return torch.zeros_like(u).detach()
        (du,) = torch.autograd.grad(total, u, allow_unused=True)
    return torch.zeros_like(u).detach() if du is None else du
