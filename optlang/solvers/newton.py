"""Newton's method with a backtracking line search, batched.

For minimize problems the line search is Armijo on the objective (and a
non-descent Newton direction is replaced by the negative gradient); for root
problems it is Armijo on the merit |F|^2 / 2. Converged elements stop moving.
"""
from __future__ import annotations

import torch

from optlang.solvers.linalg import solve
from optlang.solvers.result import SolveResult, relative_residual

ARMIJO = 1e-4
MAX_HALVINGS = 40


def newton(prob, x0: torch.Tensor, tol: float, max_iter: int, minimize: bool) -> SolveResult:
    """Solve residual(x) = 0 by Newton steps from x0."""
    x = x0.clone()
    F = prob.residual(x)
    scale = F.abs().amax(dim=-1)
    res = relative_residual(F, scale)
    done = res <= tol
    iters = torch.zeros(x.shape[:-1], dtype=torch.int64, device=x.device)
    for _ in range(max_iter):
        if bool(done.all()):
            break
        J = prob.jacobian(x)
        dx, _ = solve(J, -F)
        if minimize:
            slope = (F * dx).sum(-1)
            dx = torch.where((slope < 0)[..., None], dx, -F)
            merit0 = prob.objective(x)
            slope = (F * dx).sum(-1)
        else:
            merit0 = 0.5 * (F * F).sum(-1)
            slope = -2.0 * merit0
        dx = torch.where(done[..., None], torch.zeros_like(dx), dx)
        x = _line_search(prob, x, dx, merit0, slope, minimize, done)
        F = prob.residual(x)
        iters = iters + (~done).long()
        res = relative_residual(F, scale)
        done = done | (res <= tol)
    return SolveResult(x, done, iters, res)


def _line_search(prob, x, dx, merit0, slope, minimize, done):
    """Per-element backtracking: halve the step until the Armijo condition holds."""
    t = torch.ones_like(merit0)
    accepted = done.clone()
    x_new = x.clone()
    for _ in range(MAX_HALVINGS):
        trial = x + t[..., None] * dx
        if minimize:
            merit = prob.objective(trial)
        else:
            Ft = prob.residual(trial)
            merit = 0.5 * (Ft * Ft).sum(-1)
        # The slack of a few ulps of the merit lets a step that is exact up to
        # rounding through, instead of halving it away near the solution.
        slack = 8 * torch.finfo(merit.dtype).eps * merit0.abs()
        ok = torch.isfinite(merit) & (merit <= merit0 + ARMIJO * t * slope + slack)
        newly = ok & ~accepted
        x_new = torch.where(newly[..., None], trial, x_new)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, 0.5 * t)
    # Elements that never satisfied Armijo take the smallest step tried: progress
    # near the solution is limited by rounding, and the residual test decides.
    return torch.where(accepted[..., None], x_new, x + t[..., None] * dx)
