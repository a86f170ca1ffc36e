"""Anderson acceleration (type II) for fixed points x = G(x), batched and safeguarded.

With residuals f_k = G(x_k) - x_k and the differences dX_i = x_{i+1} - x_i,
dF_i = f_{i+1} - f_i of the last `memory` steps (Walker & Ni 2011; the form
used for deep equilibrium models), each element solves the small regularized
least-squares problem  min_gamma |f_k - dF gamma|^2 + reg |D gamma|^2  and
steps to  x_k + beta f_k - (dX + beta dF) gamma  (beta = `mixing`).

Safeguard: the Anderson candidate is kept only where its residual is finite
and smaller than that of the plain damped step x_k + beta f_k; elsewhere the
plain step is taken and the element's history restarts from it. Each
iteration therefore costs two evaluations of G. Converged elements stop
changing; an element whose iterate or residual turns non-finite stops at its
last finite iterate with status FAILED.
"""
from __future__ import annotations

import torch

from optlang.solvers.linalg import solve
from optlang.solvers.result import CONVERGED, FAILED, MAX_ITER, NO_DEADLINE, SolveResult, relative_residual


MEMORY = 5  # the defaults, shared with the Triton backend's anderson template
MIXING = 1.0
REGULARIZATION = 1e-10


def anderson(fixed_map, x0: torch.Tensor, tol: float, max_iter: int, memory: int = MEMORY, mixing: float = MIXING,
             regularization: float = REGULARIZATION, deadline=NO_DEADLINE) -> SolveResult:
    """Solve x = fixed_map(x) from x0 (*batch, N); `residual` is relative_residual of x - fixed_map(x).

    `memory` is Walker & Ni's m: the number of past steps (m + 1 iterates)
    in the least squares; 0 gives the plain damped iteration.
    `regularization` is relative to the column-scaled Gram matrix (unit
    diagonal), so it does not depend on the scale of the problem.
    """
    x = x0.clone()
    f = fixed_map(x) - x
    scale = f.abs().amax(dim=-1)
    res = relative_residual(f, scale)
    failed = ~torch.isfinite(res) | ~torch.isfinite(x).all(dim=-1)
    done = failed | (res <= tol)
    iters = torch.zeros(x.shape[:-1], dtype=torch.int64, device=x.device)
    dX = x.new_zeros(*x.shape[:-1], memory, x.shape[-1])
    dF = torch.zeros_like(dX)
    count = torch.zeros_like(iters)  # valid history columns, the newest last
    timed_out = False
    for _ in range(max_iter):
        if bool(done.all()):
            break
        if deadline.passed():
            timed_out = True
            break
        active = ~done
        x_plain = x + mixing * f
        f_plain = fixed_map(x_plain) - x_plain
        x_new, f_new = x_plain, f_plain
        accelerated = torch.zeros_like(active)
        if memory > 0 and bool((active & (count > 0)).any()):
            gamma = _coefficients(dF, f, count, regularization)
            x_aa = x_plain - ((dX + mixing * dF) * gamma[..., None]).sum(dim=-2)
            f_aa = fixed_map(x_aa) - x_aa
            norm_aa = torch.linalg.vector_norm(f_aa, dim=-1)
            norm_plain = torch.linalg.vector_norm(f_plain, dim=-1)
            # A NaN plain norm compares False, so such elements go on to fail below.
            accelerated = (count > 0) & torch.isfinite(norm_aa) & torch.isfinite(x_aa).all(dim=-1) & (
                norm_aa < norm_plain)
            x_new = torch.where(accelerated[..., None], x_aa, x_plain)
            f_new = torch.where(accelerated[..., None], f_aa, f_plain)
        ok = torch.isfinite(f_new).all(dim=-1) & torch.isfinite(x_new).all(dim=-1)
        step = active & ok
        if memory > 0:
            dX, dF, count = _push(dX, dF, count, x_new - x, f_new - f, step, accelerated)
        x = torch.where(step[..., None], x_new, x)
        f = torch.where(step[..., None], f_new, f)
        iters = iters + active.long()
        res = torch.where(step, relative_residual(f, scale), res)
        failed = failed | (active & ~ok)
        done = done | failed | (res <= tol)
    converged = done & ~failed
    status = None
    if bool(failed.any()):
        status = torch.where(failed, FAILED, torch.where(converged, CONVERGED, MAX_ITER)).to(torch.int64)
    return SolveResult(x, converged, iters, res, status, timed_out=timed_out)


def _coefficients(dF: torch.Tensor, f: torch.Tensor, count: torch.Tensor, regularization: float) -> torch.Tensor:
    """gamma (*batch, m) minimizing |f - dF^T gamma|^2 + reg |D gamma|^2, D the column norms.

    Normal equations on the Gram matrix scaled to unit diagonal: the
    differences shrink geometrically as the iteration converges, and without
    the scaling the newest columns would be drowned by the oldest. Columns
    outside an element's history get an identity row and a zero right-hand
    side, hence a zero coefficient.
    """
    m = dF.shape[-2]
    valid = torch.arange(m, device=dF.device) >= (m - count)[..., None]
    norms = torch.linalg.vector_norm(dF, dim=-1)
    d = torch.where(valid & (norms > 0), norms, torch.ones_like(norms))
    Q = dF / d[..., None]
    gram = Q @ Q.transpose(-1, -2)
    eye = torch.eye(m, dtype=dF.dtype, device=dF.device)
    gram = torch.where(valid[..., None, :] & valid[..., :, None], gram, eye) + regularization * eye
    rhs = torch.where(valid, (Q * f[..., None, :]).sum(dim=-1), torch.zeros_like(norms))
    y, _ = solve(gram, rhs)
    return y / d


def _push(dX, dF, count, dx, df, step, accelerated):
    """Append the newest differences where `step`; where the step was plain, restart the history from it."""
    restart = step & ~accelerated
    keep = ~restart[..., None, None]
    rolled_X = torch.cat([dX[..., 1:, :] * keep, dx[..., None, :]], dim=-2)
    rolled_F = torch.cat([dF[..., 1:, :] * keep, df[..., None, :]], dim=-2)
    m = dX.shape[-2]
    count_new = torch.where(restart, torch.ones_like(count), torch.clamp(count + 1, max=m))
    mask = step[..., None, None]
    return torch.where(mask, rolled_X, dX), torch.where(mask, rolled_F, dF), torch.where(step, count_new, count)
