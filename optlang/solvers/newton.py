"""Newton's method with a backtracking line search, batched.

For minimize problems the line search is Armijo on the objective (and a
non-descent Newton direction is replaced by the negative gradient); for root
problems it is Armijo on the merit |F|^2 / 2. Converged elements stop moving.
On a problem not proven convex (`local`) the Hessian is made positive definite
first where it is not (a multiple of the identity added until Cholesky succeeds,
Nocedal & Wright's algorithm 3.3): an indefinite Hessian's Newton step points
at a saddle, and the negative gradient alone crawls.
"""
from __future__ import annotations

import math

import torch

from optlang.solvers.linalg import solve
from optlang.solvers.result import NO_DEADLINE, SolveResult, relative_residual

ARMIJO = 1e-4
MAX_HALVINGS = 40
COMPACT = 0.5  # compact the batch when at most this fraction of it is still unconverged


def newton(prob, x0: torch.Tensor, tol: float, max_iter: int, minimize: bool, deadline=NO_DEADLINE,
           local: bool = False) -> SolveResult:
    """Solve residual(x) = 0 by Newton steps from x0.

    Converged elements leave the batch (compaction): once at most COMPACT of the elements still
    iterating are unconverged, the others are written back and the rest go on as a smaller batch,
    so a few stragglers cost their own iterations, not the whole batch's.
    """
    batch, n = x0.shape[:-1], x0.shape[-1]
    size = math.prod(batch)
    index = torch.arange(size, device=x0.device)
    sub = prob.take(index)
    x = x0.reshape(size, n).clone()
    F = sub.residual(x)
    scale = F.abs().amax(dim=-1)
    res = relative_residual(F, scale)
    done = res <= tol
    iters = torch.zeros(size, dtype=torch.int64, device=x.device)
    out_x, out_res, out_done, out_iters = x, res, done, iters
    timed_out = False
    # A convex quadratic's Hessian is constant and SPD: factored once (Cholesky), and its Newton step is
    # exact, so no line search; further steps only refine rounding. Where Cholesky fails, the general path.
    quadratic = minimize and not local and prob.plan.quadratic
    chol = None
    for _ in range(max_iter):
        if bool(done.all()):
            break
        if deadline.passed():
            timed_out = True
            break
        if int((~done).sum()) <= COMPACT * len(index):
            out_x, out_res, out_done, out_iters = (o.index_copy(0, index, v) for o, v in
                                                   ((out_x, x), (out_res, res), (out_done, done), (out_iters, iters)))
            keep = ~done
            index, x, F, scale, res, done, iters = (v[keep] for v in (index, x, F, scale, res, done, iters))
            sub = prob.take(index)
            chol = None
        if quadratic:
            if chol is None:
                chol, info = torch.linalg.cholesky_ex(sub.jacobian(x))
                quadratic = bool((info == 0).all()) and bool(torch.isfinite(chol).all())
            if quadratic:
                dx = torch.cholesky_solve(-F.unsqueeze(-1), chol).squeeze(-1)
                x = torch.where(done[..., None], x, x + dx)
                F = sub.residual(x)
                iters = iters + (~done).long()
                res = torch.where(done, res, relative_residual(F, scale))
                done = done | (res <= tol)
                continue
        J = sub.jacobian(x)
        dx = _modified_newton_step(J, F) if local and minimize else solve(J, -F)[0]
        if minimize:
            slope = (F * dx).sum(-1)
            dx = torch.where((slope < 0)[..., None], dx, -F)
            merit0 = sub.objective(x)
            slope = (F * dx).sum(-1)
        else:
            merit0 = 0.5 * (F * F).sum(-1)
            slope = -2.0 * merit0
        dx = torch.where(done[..., None], torch.zeros_like(dx), dx)
        x = _line_search(sub, x, dx, merit0, slope, minimize, done)
        F = sub.residual(x)
        iters = iters + (~done).long()
        res = relative_residual(F, scale)
        done = done | (res <= tol)
    out_x, out_res, out_done, out_iters = (o.index_copy(0, index, v) for o, v in
                                           ((out_x, x), (out_res, res), (out_done, done), (out_iters, iters)))
    return SolveResult(out_x.reshape(batch + (n,)), out_done.reshape(batch), out_iters.reshape(batch),
                       out_res.reshape(batch), timed_out=timed_out)


SHIFT_TRIES = 30  # shifts tau, 10x apart: from 1e-8 to 1e22 times the Hessian's largest diagonal entry


def _modified_newton_step(H, F):
    """-(H + tau I)^-1 F per element, tau = 0 where H is positive definite, else the smallest of
    1e-8, 1e-7, ... times max(1, max |H_ii|) that makes Cholesky succeed."""
    H = 0.5 * (H + H.transpose(-1, -2))
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    chol, info = torch.linalg.cholesky_ex(H)
    bad = (info != 0) | ~torch.isfinite(chol).all(-1).all(-1)
    tau = 1e-8 * H.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp(min=1.0)
    for _ in range(SHIFT_TRIES):
        if not bool(bad.any()):
            break
        shifted, info = torch.linalg.cholesky_ex(H + (tau * bad)[..., None, None] * eye)
        ok = bad & (info == 0) & torch.isfinite(shifted).all(-1).all(-1)
        chol = torch.where(ok[..., None, None], shifted, chol)
        bad = bad & ~ok
        tau = 10.0 * tau
    # An element no shift repaired (a non-finite Hessian) takes the negative gradient.
    chol = torch.where(bad[..., None, None], eye, chol)
    return torch.cholesky_solve(-F.unsqueeze(-1), chol).squeeze(-1)


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
        if minimize:
            # Near the minimum the decrease a step predicts (-slope) is below the rounding of the
            # objective, and comparing objective values is noise (cancellation): there the full step is
            # judged by the gradient instead, which must shrink.
            flat = -slope <= 64 * torch.finfo(merit.dtype).eps * torch.clamp(merit0.abs(), min=1.0)
            Ft = prob.gradient(trial) if bool(flat.any()) else None
            if Ft is not None:
                shrinks = (Ft.abs().amax(-1) < prob.gradient(x).abs().amax(-1)) & torch.isfinite(Ft).all(-1)
                ok = ok | (flat & shrinks)
        newly = ok & ~accepted
        x_new = torch.where(newly[..., None], trial, x_new)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, 0.5 * t)
    # Elements that never satisfied Armijo take the smallest step tried: progress
    # near the solution is limited by rounding, and the residual test decides. A non-finite
    # step (a broken direction) is not taken: the element keeps its finite point and ends failed.
    smallest = x + t[..., None] * dx
    smallest = torch.where(torch.isfinite(smallest).all(-1, keepdim=True), smallest, x)
    return torch.where(accepted[..., None], x_new, smallest)
