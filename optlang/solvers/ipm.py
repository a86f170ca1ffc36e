"""Batched primal-dual interior-point method (Mehrotra predictor-corrector).

Solves minimize f(x) s.t. g(x) <= 0 (m rows), h(x) = 0 (p rows), f and g
convex and smooth, h affine, in slack form g(x) + s = 0 with s, lam > 0, from
x = 0. Each Newton system is reduced to x and nu (s and lam eliminated) and
eliminated once per iteration (Cholesky on x, then the Schur complement on nu)
for both the predictor and the corrector, as the Triton kernel does. Every
tensor has one leading batch dim; finished elements freeze.

Stopping: the relative KKT residual is the max of the primal and dual
residuals over their scales (as OSQP's) and, per row, min(s_i, lam_i), each
side over its scale; the corrector aims no deeper than a tenth of tol
(`_stop`), so s stays clear of rounding.

With nonlinear g a step is halved until the linearization of g describes it
(`_backtrack`): enough for ||x||^2 <= r^2 and exp(x) <= c from a far start.

Detection (heuristics: the method is not self-dual, so it proves nothing on
its own). Both tests wait until a quantity has grown past 1 / sqrt(eps) times
the data's scale, far beyond a well-posed solution, and then ask for a
certificate that holds to within a relative CERT (or tol, if looser):
- infeasible, the duals blew up: lam >= 0 and nu with ||Jg' lam + Jh' nu||
  <= CERT * c, where c = lam.g(x) + nu.h(x) - (Jg' lam + Jh' nu).x > 0 (a
  Farkas certificate in the affine case). For convex g and affine h,
  lam.g(y) + nu.h(y) >= c + (Jg' lam + Jh' nu).y for every y, so no feasible
  point has a norm below about 1 / CERT. Nonlinear g rarely gets that close:
  there duals past 1 / eps times the scale with the primal residual above
  sqrt(tol) also count.
- unbounded, x blew up: its direction d = x / ||x|| decreases f (grad f.d < 0)
  with no curvature (||H d|| <= CERT |grad f.d|) and keeps the constraints
  (Jg d <= CERT |grad f.d|, |Jh d| <= CERT |grad f.d|): a recession direction.
  A problem both infeasible and unbounded along a free direction may be
  reported either way.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from optlang.solvers.linalg import finite_over
from optlang.solvers.result import CONVERGED, FAILED, INFEASIBLE, MAX_ITER, NO_DEADLINE, TIME_LIMIT, UNBOUNDED

FRACTION = 0.99  # fraction to the boundary: s and lam stay positive
TRUST = 0.5  # the relative error allowed to the linearization of a nonlinear g along a step
MAX_BACKTRACKS = 40
CERT = 1e-8  # tolerance of the certificates, relative (the module docstring)


@dataclass
class KKTResult:
    """Per element: the primal-dual point, and how the solve ended (codes in result.STATUS)."""

    x: torch.Tensor  # (B, n)
    lam: torch.Tensor  # (B, m), >= 0
    nu: torch.Tensor  # (B, p)
    converged: torch.Tensor  # (B,) bool
    iterations: torch.Tensor  # (B,) int64
    residual: torch.Tensor  # (B,) relative KKT residual at the end
    status: torch.Tensor  # (B,) int64


@dataclass
class _Point:
    """An iterate: primal x and slack s, duals lam and nu, and f, g, h and derivatives at x."""

    x: torch.Tensor
    s: torch.Tensor
    lam: torch.Tensor
    nu: torch.Tensor
    f: torch.Tensor
    grad: torch.Tensor
    g: torch.Tensor
    Jg: torch.Tensor
    h: torch.Tensor
    Jh: torch.Tensor


WARM_MARGIN = 1e-2  # a warm start's slacks and inequality duals are moved at least this far inside


def ipm(prob, tol: float, max_iter: int, start=None, deadline=NO_DEADLINE) -> KKTResult:
    """Solve the batch of problems `prob` to relative KKT residual `tol`.

    `start`: (x, lam, nu) of a previous solution to warm-start from, else the cold start x = 0.
    An interior-point method needs s, lam > 0 strictly: a warm start keeps x and nu and moves the
    slacks and duals at least WARM_MARGIN inside (a solution's are ~0 on active constraints).
    """
    B, n = prob.batch_size, prob.n
    x = torch.zeros(B, n, dtype=prob.dtype, device=prob.device) if start is None else start[0]
    nu = x.new_zeros(B, prob.p) if start is None else start[2]
    pt = _point(prob, x, None, None, nu)
    if start is None:
        # Slacks make the start feasible in g + s = 0 where g(0) is far inside, else 1.
        pt = replace(pt, s=torch.clamp(-pt.g, min=1.0), lam=torch.ones_like(pt.g))
    else:
        pt = replace(pt, s=torch.clamp(-pt.g, min=WARM_MARGIN), lam=torch.clamp(start[1], min=WARM_MARGIN))
    res = _kkt_residual(pt)
    status = torch.where(res <= tol, CONVERGED, MAX_ITER).to(torch.int64)
    iters = torch.zeros(B, dtype=torch.int64, device=x.device)
    scale = torch.clamp(_norm(pt.grad, pt.g, pt.h), min=1.0)  # for the blow-up tests
    for _ in range(max_iter):
        running = status == MAX_ITER
        if not bool(running.any()):
            break
        if deadline.passed():
            status = torch.where(running, TIME_LIMIT, status)
            break
        H = prob.lagrangian_hessian(pt.x, pt.lam, pt.nu)
        new = _step(prob, pt, H, running, tol)
        finite = _finite(new)
        status = torch.where(running & ~finite, FAILED, status)
        keep = running & finite
        pt = _where(keep, new, pt)
        iters = iters + running.long()
        res = torch.where(keep, _kkt_residual(pt), res)
        status = torch.where(keep & (res <= tol), CONVERGED, status)
        infeasible, unbounded = _certificates(pt, H, scale, tol, prob.affine_constraints)
        status = torch.where(keep & (status == MAX_ITER) & infeasible, INFEASIBLE, status)
        status = torch.where(keep & (status == MAX_ITER) & unbounded, UNBOUNDED, status)
    return KKTResult(pt.x, pt.lam, pt.nu, status == CONVERGED, iters, res, status)


def _point(prob, x, s, lam, nu) -> _Point:
    """Evaluate f, g, h and their derivatives at x; no calls for empty g or h."""
    B, n = x.shape
    g, Jg = (prob.ineq(x), prob.ineq_jacobian(x)) if prob.m else (x.new_zeros(B, 0), x.new_zeros(B, 0, n))
    h, Jh = (prob.eq(x), prob.eq_jacobian(x)) if prob.p else (x.new_zeros(B, 0), x.new_zeros(B, 0, n))
    return _Point(x, s, lam, nu, prob.objective(x), prob.gradient(x), g, Jg, h, Jh)


def _where(mask, a: _Point, b: _Point) -> _Point:
    """Per element, a where mask else b."""
    pick = lambda u, v: torch.where(mask.view(-1, *[1] * (u.dim() - 1)), u, v)  # noqa: E731
    return _Point(*(pick(getattr(a, f.name), getattr(b, f.name)) for f in fields(_Point)))


VECTOR_FIELDS = ("x", "s", "lam", "nu", "f", "grad", "g", "h")


def _finite(pt: _Point):
    """Per element: is the point finite. The Jacobians are not checked: a non-finite Jacobian makes
    the next step, and so the next point, non-finite (and checking them costs (m + p) n per element)."""
    B = pt.x.shape[0]
    return torch.stack([finite_over(getattr(pt, f).reshape(B, -1), 1) for f in VECTOR_FIELDS]).all(0)


def _mv(A, v):
    """Batched matrix-vector product."""
    return (A @ v.unsqueeze(-1)).squeeze(-1)


def _norm(*ts):
    """Max-abs over the last dims of several (B, k) tensors, 0 where all are empty."""
    return torch.cat([ts[0].new_zeros(ts[0].shape[0], 1), *ts], dim=-1).abs().amax(-1)


def _residuals(pt: _Point):
    """Dual residual grad f + Jg' lam + Jh' nu, and primal residuals g + s and h."""
    r_d = pt.grad + _mv(pt.Jg.mT, pt.lam) + _mv(pt.Jh.mT, pt.nu)
    return r_d, pt.g + pt.s, pt.h


def _kkt_residual(pt: _Point):
    """Max of relative primal infeasibility, dual infeasibility and complementarity."""
    r_d, r_g, r_h = _residuals(pt)
    P, D, Pg, G = _scales(pt)
    # A row is complementary once its slack is negligible among its own terms, or its
    # multiplier's pull lam_i |grad g_i| among the dual residual's: min(s, lam), made scale-free.
    comp = torch.minimum(pt.s / Pg, pt.lam * G / D[:, None])
    return torch.maximum(torch.maximum(_norm(r_g, r_h) / P, _norm(r_d) / D), _norm(comp))


def _scales(pt: _Point):
    """(P, D, Pg, G): the primal and dual residuals' scales, and per row of g its terms' and gradient's sizes.

    As OSQP's, each scale is the size of the terms whose cancellation a residual
    measures, at least 1 (absolute for small problems, relative for large ones).
    """
    Jgx, Jhx = _mv(pt.Jg, pt.x), _mv(pt.Jh, pt.x)
    Pg = torch.maximum(Jgx.abs(), (pt.g - Jgx).abs())
    P = _norm(Pg, Jhx, pt.h - Jhx)
    D = _norm(pt.grad, _mv(pt.Jg.mT, pt.lam), _mv(pt.Jh.mT, pt.nu))
    return torch.clamp(P, min=1.0), torch.clamp(D, min=1.0), torch.clamp(Pg, min=1.0), pt.Jg.abs().amax(-1)


def _step(prob, pt: _Point, H, running, tol: float) -> _Point:
    """One Mehrotra predictor-corrector step from pt, safeguarded by `_backtrack` when g is nonlinear."""
    r_d, r_g, r_h = _residuals(pt)
    solve = _factorize(H, pt, running)
    sl = pt.s * pt.lam
    m = max(sl.shape[-1], 1)
    mu = sl.sum(-1) / m
    aff = _direction(solve, pt, r_d, r_g, r_h, sl)
    a = _max_step(pt, aff, 1.0)[:, None]
    mu_aff = ((pt.s + a * aff[1]) * (pt.lam + a * aff[2])).sum(-1) / m
    sigma = torch.clamp(mu_aff / torch.clamp(mu, min=torch.finfo(mu.dtype).tiny), 0.0, 1.0) ** 3
    target = torch.maximum((sigma * mu)[:, None], _stop(pt, tol))
    # Corrector: aim at the target and cancel the predictor's second-order term.
    d = _direction(solve, pt, r_d, r_g, r_h, sl + aff[1] * aff[2] - target)
    alpha = _max_step(pt, d, FRACTION)
    if prob.affine_constraints:
        return _move(prob, pt, d, alpha)
    return _backtrack(prob, pt, d, alpha, running)


def _stop(pt: _Point, tol: float):
    """Per row, the s * lam the corrector aims no lower than.

    That is depth * tol on the side that passes the complementarity test (s / Pg for an
    active row, lam G / D for an inactive one), or where the row is now if shallower.
    Deeper, s nears the rounding in g (eps Pg), which dlam = -(r_c + lam ds) / s amplifies
    until the dual residual stalls; hence a shallower depth where tol is within 1e4 eps
    (float32 at 1e-5).
    """
    c = (0.1 if tol > 1e4 * torch.finfo(pt.s.dtype).eps else 0.5) * tol
    _, D, Pg, G = _scales(pt)
    cD = c * D[:, None]
    lam_stop = torch.where(pt.lam * G > cD, cD / torch.where(G > 0, G, 1.0), pt.lam)
    return torch.maximum(pt.lam * torch.minimum(c * Pg, pt.s), pt.s * lam_stop)


def _factorize(H, pt: _Point, running):
    """The regularized reduced KKT system, eliminated; returns solve(r1, r_h) -> (dx, dnu) reusing it.

    The system is [[Kx, Jh'], [Jh, -d I]] (dx, dnu) = (r1, -r_h) with Kx = H + Jg' diag(lam / s) Jg
    + d I. It is quasi-definite for any d > 0, so LPs (H = 0, Kx singular but for d off the active
    rows) and redundant equality rows still factor. The step is then inexact, but the right-hand
    sides are the true residuals: the iterates still converge to the exact KKT point. d = eps^(2/3)
    is far above rounding yet small enough that the inexactness costs no iterations; sqrt(eps)
    stalled float32 on ill-conditioned Jh.

    Eliminated as the Triton kernel does (and as qpth and OSQP use their structure): Kx, symmetric
    positive definite for convex f and g, by Cholesky, then the Schur complement S = Jh Kx^-1 Jh' +
    d I on the equality duals, SPD as well: dnu = S^-1 (Jh y + r_h) and dx = y - Kx^-1 Jh' dnu, with
    y = Kx^-1 r1. Half the work of the whole system's LU, and no factor spans both x and nu.
    """
    n, p = pt.x.shape[-1], pt.h.shape[-1]
    delta = torch.finfo(H.dtype).eps ** (2 / 3)
    Kx = H + pt.Jg.mT @ ((pt.lam / pt.s)[..., None] * pt.Jg) + delta * torch.eye(n, dtype=H.dtype, device=H.device)
    # Frozen elements get a harmless system: their (extreme) scaling must not break the batch.
    solve_x = _spd_solver(torch.where(running[:, None, None], Kx, torch.eye(n, dtype=H.dtype, device=H.device)))
    if p == 0:
        return lambda r1, r_h: (solve_x(r1), r_h)
    Z = solve_x(pt.Jh.mT)  # Kx^-1 Jh', (B, n, p)
    S = pt.Jh @ Z + delta * torch.eye(p, dtype=H.dtype, device=H.device)
    solve_s = _spd_solver(torch.where(running[:, None, None], S, torch.eye(p, dtype=H.dtype, device=H.device)))

    def solve(r1, r_h):
        y = solve_x(r1)
        dnu = solve_s(_mv(pt.Jh, y) + r_h)
        return y - _mv(Z, dnu), dnu

    return solve


def _spd_solver(A):
    """solve(b) with A x = b per element, b a vector (B, k) or a block (B, k, c), A (B, k, k) symmetric
    positive definite in exact arithmetic: Cholesky; LU where it does not factor (rounding), and the
    minimum-norm least-squares solution where that has a zero pivot too."""
    L, info = torch.linalg.cholesky_ex(A)
    bad = (info != 0) | ~finite_over(L, 1)
    if not bool(bad.any()):
        return lambda b: _columns(lambda c: torch.cholesky_solve(c, L), b)
    LU, piv, lu_info = torch.linalg.lu_factor_ex(torch.where(bad[:, None, None], A, torch.eye(
        A.shape[-1], dtype=A.dtype, device=A.device)))
    broken = bad & ((lu_info != 0) | ~finite_over(LU, 1)) & finite_over(A, 1)
    pinv = torch.linalg.pinv(A[broken]) if bool(broken.any()) else None

    def solve(b):
        x = _columns(lambda c: torch.cholesky_solve(c, L), b)
        x = torch.where(bad.view(-1, *[1] * (b.dim() - 1)), _columns(lambda c: torch.linalg.lu_solve(LU, piv, c), b), x)
        if pinv is not None:
            x[broken] = _columns(lambda c: pinv @ c, b[broken])
        return x

    return solve


def _columns(solve_block, b):
    """solve_block on a block of columns (B, k, c); a vector right-hand side (B, k) as one column."""
    return solve_block(b.unsqueeze(-1)).squeeze(-1) if b.dim() == 2 else solve_block(b)


def _direction(solve, pt: _Point, r_d, r_g, r_h, r_c):
    """Newton step (dx, ds, dlam, dnu) driving r_d, r_g, r_h to 0 and s * lam to s * lam - r_c."""
    dx, dnu = solve(-r_d - _mv(pt.Jg.mT, (pt.lam * r_g - r_c) / pt.s), r_h)
    ds = -r_g - _mv(pt.Jg, dx)
    dlam = -(r_c + pt.lam * ds) / pt.s
    return dx, ds, dlam, dnu


def _max_step(pt: _Point, d, frac: float):
    """Largest step in [0, 1] that keeps s and lam at least (1 - frac) times their values."""
    v, dv = torch.cat([pt.s, pt.lam], -1), torch.cat([d[1], d[2]], -1)
    ratio = torch.where(dv < 0, -v / torch.where(dv < 0, dv, -1.0), torch.inf)
    return torch.clamp(frac * torch.cat([v.new_full((v.shape[0], 1), torch.inf), ratio], -1).amin(-1), max=1.0)


def _move(prob, pt: _Point, d, alpha) -> _Point:
    """The point pt + alpha * d, evaluated."""
    a = alpha[:, None]
    # The step keeps s and lam above (1 - FRACTION) of their values; the floor only undoes rounding.
    s = torch.maximum(pt.s + a * d[1], (1 - FRACTION) * pt.s)
    lam = torch.maximum(pt.lam + a * d[2], (1 - FRACTION) * pt.lam)
    return _point(prob, pt.x + a * d[0], s, lam, pt.nu + a * d[3])


def _backtrack(prob, pt: _Point, d, alpha, running) -> _Point:
    """Halve the step until the linearization of g still describes it (g nonlinear).

    The Newton step trusts g(x + dx) ~ g(x) + Jg dx; far from the solution that can
    be off by orders of magnitude (exp), and the step then lands anywhere. A step is
    kept once the model error in every row is at most TRUST times the size of that
    row's terms, |Jg dx| + |g| + s, and everything at the new point is finite.
    """
    accepted = ~running
    new = None
    for _ in range(MAX_BACKTRACKS):
        trial = _move(prob, pt, d, alpha)
        pred = alpha[:, None] * _mv(pt.Jg, d[0])
        err = (trial.g - pt.g - pred).abs()
        ok = (err <= TRUST * (pred.abs() + pt.g.abs() + pt.s)).all(-1) & _finite(trial)
        new = trial if new is None else _where(ok & ~accepted, trial, new)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        alpha = torch.where(accepted, alpha, 0.5 * alpha)
    # Elements that never passed take the smallest step tried.
    return _where(accepted, new, trial)


def _certificates(pt: _Point, H, scale, tol: float, affine: bool):
    """Masks of elements whose iterates look infeasible or unbounded (module docstring)."""
    cert = max(tol, CERT)
    blowup = torch.finfo(pt.x.dtype).eps ** -0.5
    y = _mv(pt.Jg.mT, pt.lam) + _mv(pt.Jh.mT, pt.nu)
    c = (pt.lam * pt.g).sum(-1) + (pt.nu * pt.h).sum(-1) - (y * pt.x).sum(-1)
    duals = _norm(pt.lam, pt.nu)
    infeasible = (duals > blowup * scale) & (c > 0) & (_norm(y) <= cert * c)
    if not affine:
        # Nonlinear g rarely nears a certificate: duals far past any central path's (which
        # can reach 1 / sqrt(eps) on badly scaled rows) while the primal residual stays.
        stalled = _norm(*_residuals(pt)[1:]) > _scales(pt)[0] * tol ** 0.5
        infeasible = infeasible | ((duals > blowup**2 * scale) & stalled)
    size = _norm(pt.x)
    d = pt.x / torch.clamp(size, min=torch.finfo(size.dtype).tiny)[:, None]
    slope = -(pt.grad * d).sum(-1)
    bound = cert * slope
    keeps = (_norm(_mv(H, d)) <= bound) & (_norm(torch.relu(_mv(pt.Jg, d)), _mv(pt.Jh, d)) <= bound)
    unbounded = (size > blowup * scale) & (slope > 0) & keeps
    return infeasible, unbounded
