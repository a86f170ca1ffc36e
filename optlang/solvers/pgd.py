"""Accelerated proximal gradient (FISTA) with backtracking, then semismooth Newton polish.

FISTA (Beck & Teboulle) with a per-element Lipschitz estimate found by
backtracking, and O'Donoghue & Candes' gradient restart; `accelerate=False`
is the plain proximal gradient method ("pgd"). Once the fixed-point residual
is small the active set is (almost always) settled, and semismooth Newton
steps on F(x) = x - prox(x - grad f(x)) reach full accuracy in a few
iterations; a step is kept only where it lowers the residual, so the polish
can never make things worse. `prob.prox(z, step)` is prox_{step r}(z); at step
0 it is the projection onto the sets (the prox terms vanish).

Where f is quadratic (`plan.quadratic`: its Hessian H does not depend on x)
and H is small enough to hold densely, H is built once per solve (once for
the whole batch where it reads no param, e.g. sparsemax's H = I): L starts at
H's top eigenvalue (power iteration), and the quadratic upper bound
f(y + d) <= f(y) + g'd + L/2 |d|^2 is checked exactly as d'Hd <= L |d|^2, one
batched product, so f itself is never evaluated (half of an iteration's work
when backtracking). Polishing starts earlier there: Newton on a quadratic
is exact once the active set is right.
"""
from __future__ import annotations

import torch

from optlang.solvers.linalg import solve
from optlang.solvers.result import NO_DEADLINE, SolveResult, relative_residual

POLISH_AT = 1e-3  # relative residual below which Newton polishing starts
POLISH_AT_QUADRATIC = 0.3  # the same where f is quadratic (a polish step is then cheap and exact)
POLISH_STEPS = 20
POLISH_HALVINGS = 12  # a polish step that does not help at 2^-11 of its length is not taken
POLISH_EVERY = 50  # FISTA iterations between polish attempts while some element is still far off
MAX_BACKTRACK = 60
DENSE_HESSIAN_MAX = 1 << 22  # entries of the batch's Hessians up to which a quadratic's is built densely
POWER_STEPS = 10  # a start for L only: the step check doubles it where it is short


def fista(prob, tol: float, max_iter: int, accelerate: bool = True, x0=None, deadline=NO_DEADLINE) -> SolveResult:
    """Minimize f + r, r given by its prox `prob.prox`, from the projection of x0 (default 0)."""
    zero = torch.zeros(prob.batch + (prob.n,), dtype=prob.dtype, device=prob.device)
    x = prob.prox(zero if x0 is None else x0, torch.zeros(prob.batch, dtype=prob.dtype, device=prob.device))
    F = prob.residual(x)
    scale = F.abs().amax(dim=-1)
    res = relative_residual(F, scale)
    done = res <= tol
    iters = torch.zeros(x.shape[:-1], dtype=torch.int64, device=x.device)
    H = _dense_hessian(prob, x)
    L = torch.ones_like(scale) if H is None else _top_eigenvalue(H).expand_as(scale).clone()
    y, t = x.clone(), torch.ones_like(scale)
    it = 0
    polish_at = POLISH_AT if H is None else POLISH_AT_QUADRATIC
    timed_out = False
    while it < max_iter and not bool(done.all()):
        if deadline.passed():
            timed_out = True
            break
        active = ~done
        if H is not None:
            g = prob.gradient(y)
            x_new, L = _quadratic_step(prob, H, y, g, L, active)
            L = torch.where(active, 0.9 * L, L)  # the curvature along the path can be far below H's top
            x, y, t, it, iters, res, done, polish_at = _momentum(
                prob, g, x, x_new, y, t, active, accelerate, it, iters, res, scale, tol, done, polish_at, H)
            continue
        g, fy = prob.gradient(y), prob.objective(y)
        # The extrapolated point y can leave the domain of f (x log x, log, sqrt at or past the
        # boundary of a set): restart there from the last iterate, which every accepted step keeps finite.
        outside = ~(torch.isfinite(fy) & torch.isfinite(g).all(-1))
        if bool(outside.any()):
            y = torch.where(outside[..., None], x, y)
            t = torch.where(outside, torch.ones_like(t), t)
            g, fy = prob.gradient(y), prob.objective(y)
        x_new, L = _backtrack(prob, y, g, fy, L, active)
        L = torch.where(active, 0.9 * L, L)  # let the step grow back
        x, y, t, it, iters, res, done, polish_at = _momentum(
            prob, g, x, x_new, y, t, active, accelerate, it, iters, res, scale, tol, done, polish_at)
    return SolveResult(x, done, iters, res, timed_out=timed_out)


def _momentum(prob, g, x, x_new, y, t, active, accelerate, it, iters, res, scale, tol, done, polish_at, H=None):
    """Take the step to x_new and extrapolate; check convergence and polish when the time has come."""
    # Restart momentum where it points uphill (gradient restart).
    uphill = (g * (x_new - x)).sum(-1) > 0
    t = torch.where(uphill, torch.ones_like(t), t)
    t_next = 0.5 * (1 + torch.sqrt(1 + 4 * t * t)) if accelerate else torch.ones_like(t)
    y_new = x_new + ((t - 1) / t_next)[..., None] * (x_new - x)
    x = torch.where(active[..., None], x_new, x)
    y = torch.where(active[..., None], y_new, y)
    t = torch.where(active, t_next, t)
    it += 1
    iters = iters + active.long()
    F = prob.residual(x)
    res = torch.where(active, relative_residual(F, scale), res)
    done = done | (res <= tol)
    if bool(((res <= polish_at) | done).all()) or it % POLISH_EVERY == 0:
        before = res
        x, res, done, iters = _polish(prob, x, res, scale, tol, done, iters, H)
        y = x.clone()
        t = torch.ones_like(t)
        # Polish again only after FISTA has made a decade of progress; where this polish gained nothing
        # (a singular Newton system, as in the SVM dual), not before the usual POLISH_AT either.
        polish_at = 0.1 * float(torch.where(done, torch.zeros_like(res), res).max().detach())
        if not bool((res < before).any()):
            polish_at = min(polish_at, POLISH_AT)
    return x, y, t, it, iters, res, done, polish_at


def _dense_hessian(prob, x):
    """A quadratic f's constant Hessian, (*batch, n, n), or (n, n) where it reads no param; else None.

    None where f is not quadratic, the batch's Hessians would exceed DENSE_HESSIAN_MAX entries, or
    some entry is not finite."""
    if not prob.plan.quadratic:
        return None
    if not prob.plan.function("hvp").reads("param"):
        H = prob.jacobian(x.new_zeros(prob.n), which="hvp")
    elif x[..., 0].numel() * prob.n * prob.n > DENSE_HESSIAN_MAX:
        return None
    else:
        H = prob.jacobian(x, which="hvp")
    # Data near the float range can overflow H: backtracking on f, with its domain checks, copes there.
    return H if bool(torch.isfinite(H).all()) else None


def _top_eigenvalue(H):
    """The largest eigenvalue of each symmetric PSD H by power iteration (a lower bound, close), or 1
    where it is not a positive finite number (the step check then doubles L as backtracking would).

    H is scaled to entries at most 1 first: data near the float range must not overflow the norms."""
    tiny = torch.finfo(H.dtype).tiny
    size = torch.clamp(H.abs().amax(dim=(-1, -2)), min=tiny)
    Hs = H / size[..., None, None]
    if H.dim() == 2:  # one matrix (an unbatched problem, or H shared by the batch): one eigvalsh is cheaper
        top = torch.linalg.eigvalsh(Hs)[-1] * size
    else:
        v = torch.ones(H.shape[:-1] + (1,), dtype=H.dtype, device=H.device)
        v = v + 0.01 * torch.arange(v.shape[-2], dtype=H.dtype, device=H.device)[:, None]  # not orthogonal to the top
        for _ in range(POWER_STEPS):
            v = Hs @ v
            v = v / (v.norm(dim=-2, keepdim=True) + tiny)
        top = (v * (Hs @ v)).sum((-2, -1)) * size
    return torch.where(torch.isfinite(top) & (top > 0), top, torch.ones_like(top))


def _quadratic_step(prob, H, y, g, L, active):
    """The prox step from y at 1/L, L doubled per element until d'Hd <= L |d|^2 (f's upper bound, exact)."""
    accepted = ~active
    x_new = y.clone()
    for _ in range(MAX_BACKTRACK):
        trial = prob.prox(y - g / L[..., None], 1 / L)
        d = trial - y
        curvature = (d * _times(H, d)).sum(-1)
        ok = curvature <= L * (d * d).sum(-1) * (1 + 1e3 * torch.finfo(L.dtype).eps)
        x_new = torch.where((ok & ~accepted)[..., None], trial, x_new)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        L = torch.where(accepted, L, 2 * L)
    return x_new, L


def _times(H, d):
    """H d per element: one matrix product where H is shared by the batch (a broadcast H @ d would
    copy H once per element)."""
    if H.dim() == 2:
        return d @ H.transpose(-1, -2)
    return (H @ d.unsqueeze(-1)).squeeze(-1)


def _backtrack(prob, y, g, fy, L, active):
    """Find per element the smallest tried L with the quadratic upper bound satisfied."""
    accepted = ~active
    x_new = y.clone()
    for _ in range(MAX_BACKTRACK):
        trial = prob.prox(y - g / L[..., None], 1 / L)
        d = trial - y
        bound = fy + (g * d).sum(-1) + 0.5 * L * (d * d).sum(-1)
        slack = 8 * torch.finfo(fy.dtype).eps * fy.abs()
        f_trial = prob.objective(trial)
        ok = torch.isfinite(f_trial) & (f_trial <= bound + slack)  # a trial outside f's domain backtracks
        newly = ok & ~accepted
        x_new = torch.where(newly[..., None], trial, x_new)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        L = torch.where(accepted, L, 2 * L)
    return x_new, L


def _polish(prob, x, res, scale, tol, done, iters, H=None):
    """Semismooth Newton on the proximal-gradient fixed point; keep only improving steps.

    With a quadratic's dense Hessian H at hand and a diagonal prox Jacobian D (`free_mask`), the
    Jacobian I - D (I - H) is built from them, not from n directional derivatives."""
    from_hessian = H is not None and prob.plan.function("free_mask") is not None
    eye = torch.eye(prob.n, dtype=x.dtype, device=x.device) if from_hessian else None
    for _ in range(POLISH_STEPS):
        active = ~done
        if not bool(active.any()):
            break
        F = prob.residual(x)
        J = eye - prob.free_mask(x)[..., :, None] * (eye - H) if from_hessian else prob.jacobian(x)
        dx, _ = solve(J, -F)
        # Damped: halve the step where the full one leaves f's domain (x log x next to a bound) or
        # does not lower the residual; each element keeps its first improving step.
        better = torch.zeros_like(active)
        step = torch.ones_like(res)
        for _ in range(POLISH_HALVINGS):
            trial = prob.prox(x + step[..., None] * dx, torch.zeros_like(res))
            res_trial = relative_residual(prob.residual(trial), scale)
            newly = active & ~better & torch.isfinite(res_trial) & (res_trial < res)
            x = torch.where(newly[..., None], trial, x)
            res = torch.where(newly, res_trial, res)
            better = better | newly
            if bool((better | ~active).all()):
                break
            step = torch.where(better, step, 0.5 * step)
        iters = iters + better.long()
        done = done | (res <= tol)
        if not bool(better.any()):
            break
    return x, res, done, iters
