"""Primal-dual interior-point method (Mehrotra predictor-corrector), written once for both backends.

Solves minimize f(x) s.t. g(x) <= 0 (m rows), h(x) = 0 (p rows), f and g
convex and smooth, h affine, in slack form g(x) + s = 0 with s, lam > 0, from
x = 0. Each Newton system is reduced to x and nu (s and lam eliminated) and
eliminated once per iteration (Cholesky on x, then the Schur complement on nu)
for both the predictor and the corrector. The @kernel functions below are the
algorithm, per instance as in newton.py: PyTorch runs them on a batch (`ops.py`
spells the array operations, and the KKT-specific ones at its end), the Triton
printer copies them into the module, where one program runs one instance
(`backends/triton/templates/ipm.py` spells the KKT operations on tiles padded
past the blocks' sizes; `ineq_only` keeps the padding out of the rows).

Stopping: the relative KKT residual is the max of the primal and dual
residuals over their scales (as OSQP's) and, per row, min(s_i, lam_i), each
side over its scale; the corrector aims no deeper than a tenth of tol
(`stop`), so s stays clear of rounding.

With nonlinear g a step is halved until the linearization of g describes it
(`ipm_step`): enough for ||x||^2 <= r^2 and exp(x) <= c from a far start.

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

from dataclasses import dataclass

import torch

from optlang.solvers.ops import (Context, abs_, all_finite_matrix, amax_abs, any_, at_least, at_most, compact,
                                 constraint_jacobians, eliminate, evaluate, finish, finite_point, full, ineq_count,
                                 ineq_only, keep_going, kernel, lagrangian_hessian, least, machine_eps, maximum,
                                 minimum, reduced_solve, regularization, row_amax_abs, sqrt_, system_times, times,
                                 tiny, total, transpose_times, where, where_matrix, zero_count)
from optlang.solvers.result import CONVERGED, FAILED, INFEASIBLE, MAX_ITER, NO_DEADLINE, TIME_LIMIT, UNBOUNDED

FRACTION = 0.99  # fraction to the boundary: s and lam stay positive
TRUST = 0.5  # the relative error allowed to the linearization of a nonlinear g along a step
MAX_BACKTRACKS = 40
CERT = 1e-8  # tolerance of the certificates, relative (the module docstring)
WARM_MARGIN = 1e-2  # a warm start's slacks and inequality duals are moved at least this far inside
INF = float("inf")  # (the Triton module's common template defines its own)


def flags(plan) -> dict:
    """The constant flags (module constexprs on Triton, Context attributes here)."""
    return {"NONLINEAR": not plan.affine_constraints,
            "CONSTANT_HESSIAN": plan.affine_constraints and plan.quadratic}


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


class _Instances:
    """A batch of KKT problems as ops.Context sees one: `kkt` has the problem's functions (runtime/kkt.py's
    KKTView, or anything with its interface), `batch` the one flat batch dim."""

    def __init__(self, kkt):
        self.kkt = kkt
        self.batch = (kkt.batch_size,)
        self.dtype, self.device = kkt.dtype, kkt.device

    def take(self, index: torch.Tensor) -> "_Instances":
        """The instances `index` (ops.compact)."""
        return _Instances(self.kkt.take(index))


def ipm(prob, tol: float, max_iter: int, start=None, deadline=NO_DEADLINE) -> KKTResult:
    """Solve the batch of problems `prob` to relative KKT residual `tol`, on the PyTorch backend.

    `start`: (x, lam, nu) of a previous solution to warm-start from, else the cold start x = 0.
    An interior-point method needs s, lam > 0 strictly: a warm start keeps x and nu and moves the
    slacks and duals at least WARM_MARGIN inside (a solution's are ~0 on active constraints).
    """
    B = prob.batch_size
    # (prob caches a constant Hessian itself: the flag only says when the shared text asks for it)
    constant = {"NONLINEAR": not prob.affine_constraints,
                "CONSTANT_HESSIAN": getattr(prob, "constant_hessian", False)}
    ctx = Context(_Instances(prob), deadline, **constant)
    if start is None:
        x = torch.zeros(B, prob.n, dtype=prob.dtype, device=prob.device)
        lam, nu, margin = x.new_ones(B, prob.m), x.new_zeros(B, prob.p), 1.0
    else:
        (x, lam, nu), margin = start, WARM_MARGIN
    x, lam, nu, status, iterations, res = ipm_solve(x, lam, nu, margin, full(tol, ctx), max_iter, ctx)
    status = status.squeeze(-1)
    if ctx.timed_out:
        status = torch.where(status == MAX_ITER, TIME_LIMIT, status)
    return KKTResult(x, lam, nu, status == CONVERGED, iterations.squeeze(-1), res.squeeze(-1), status)


@kernel
def ipm_solve(x, lam, nu, margin, tol, max_iter, ctx):
    """Predictor-corrector steps from (x, lam, nu), the slacks s = max(-g(x), margin) and lam floored at
    margin (a cold start: x = 0, lam = 1, nu = 0, margin 1); (x, lam, nu, status, iterations, residual).
    On PyTorch the instances that have stopped leave the batch once at most half of it is going
    (ops.compact, after H is built, so that H is at hand whether it is constant or not)."""
    Jg, Jh = constraint_jacobians(x, ctx)
    f, grad, g, Jg, h, Jh = evaluate(x, Jg, Jh, ctx)
    # Slacks make the start feasible in g + s = 0 where g(x) is far inside, else margin.
    s = ineq_only(at_least(-g, margin), 0.0, ctx)
    lam = ineq_only(at_least(lam, margin), 0.0, ctx)
    res = kkt_residual(x, s, lam, nu, grad, g, Jg, h, Jh, ctx)
    status = where(res <= tol, CONVERGED, MAX_ITER)
    # A constant Jacobian with a non-finite entry fails at the start (the steps check vectors only).
    status = where(all_finite_matrix(Jg) & all_finite_matrix(Jh), status, FAILED)
    iterations = zero_count(ctx)
    scale = at_least(maximum(maximum(amax_abs(grad), amax_abs(g)), amax_abs(h)), 1.0)  # for the blow-up tests
    if ctx.CONSTANT_HESSIAN:
        H = lagrangian_hessian(x, lam, nu, ctx)
    going = (status == MAX_ITER) & (iterations < max_iter)
    while keep_going(going, ctx):
        if ctx.CONSTANT_HESSIAN == 0:
            H = lagrangian_hessian(x, lam, nu, ctx)
        x, lam, nu, status, iterations, res, s, grad, g, Jg, h, Jh, tol, scale, going, H = compact(
            going, (x, lam, nu, status, iterations, res), (s, grad, g, Jg, h, Jh, tol, scale, going, H), ctx)
        x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1 = ipm_step(x, s, lam, nu, grad, g, Jg, h, Jh, H, tol, going, ctx)
        finite = finite_point(x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1, ctx)
        keep = going & finite
        x = where(keep, x1, x)
        s = where(keep, s1, s)
        lam = where(keep, lam1, lam)
        nu = where(keep, nu1, nu)
        grad = where(keep, grad1, grad)
        g = where(keep, g1, g)
        Jg = where_matrix(keep, Jg1, Jg)
        h = where(keep, h1, h)
        Jh = where_matrix(keep, Jh1, Jh)
        iterations = iterations + where(going, 1, 0)
        res = where(keep, kkt_residual(x, s, lam, nu, grad, g, Jg, h, Jh, ctx), res)
        infeasible, unbounded = certificates(x, s, lam, nu, grad, g, Jg, h, Jh, H, scale, tol, ctx)
        status = where(going & (finite == 0), FAILED, where(keep & (res <= tol), CONVERGED, status))
        status = where(keep & (status == MAX_ITER) & infeasible, INFEASIBLE, status)
        status = where(keep & (status == MAX_ITER) & unbounded, UNBOUNDED, status)
        going = (status == MAX_ITER) & (iterations < max_iter)
    return finish((x, lam, nu, status, iterations, res), ctx)


@kernel
def scales(x, lam, nu, grad, g, Jg, h, Jh, ctx):
    """(P, D, Pg, G): the primal and dual residuals' scales, and per row of g its terms' and gradient's sizes.

    As OSQP's, each scale is the size of the terms whose cancellation a residual
    measures, at least 1 (absolute for small problems, relative for large ones).
    """
    Jgx = times(Jg, x)
    Jhx = times(Jh, x)
    Pg = maximum(abs_(Jgx), abs_(g - Jgx))
    P = maximum(maximum(amax_abs(Pg), amax_abs(Jhx)), amax_abs(h - Jhx))
    D = maximum(maximum(amax_abs(grad), amax_abs(transpose_times(Jg, lam))), amax_abs(transpose_times(Jh, nu)))
    return at_least(P, 1.0), at_least(D, 1.0), ineq_only(at_least(Pg, 1.0), 1.0, ctx), row_amax_abs(Jg)


@kernel
def kkt_residual(x, s, lam, nu, grad, g, Jg, h, Jh, ctx):
    """Max of relative primal infeasibility, dual infeasibility and complementarity."""
    r_d = grad + transpose_times(Jg, lam) + transpose_times(Jh, nu)
    P, D, Pg, G = scales(x, lam, nu, grad, g, Jg, h, Jh, ctx)
    # A row is complementary once its slack is negligible among its own terms, or its
    # multiplier's pull lam_i |grad g_i| among the dual residual's: min(s, lam), made scale-free.
    comp = minimum(s / Pg, lam * G / D)
    return maximum(maximum(maximum(amax_abs(g + s), amax_abs(h)) / P, amax_abs(r_d) / D), amax_abs(comp))


@kernel
def ipm_step(x, s, lam, nu, grad, g, Jg, h, Jh, H, tol, going, ctx):
    """One Mehrotra predictor-corrector step, for the instances going, safeguarded by halving it where g is
    nonlinear: the new (x, s, lam, nu, f, grad, g, Jg, h, Jh)."""
    r_d = grad + transpose_times(Jg, lam) + transpose_times(Jh, nu)
    r_g = g + s
    Kx, Z, S = eliminate(H, Jg, Jh, s, lam, going, ctx)
    sl = s * lam
    m = ineq_count(ctx)
    mu = total(sl) / m
    dx, ds, dlam, dnu = direction(Kx, Z, S, Jg, Jh, s, lam, r_d, r_g, h, sl, ctx)
    a = max_step(s, lam, ds, dlam, 1.0, ctx)
    mu_aff = total((s + a * ds) * (lam + a * dlam)) / m
    q = at_most(at_least(mu_aff / at_least(mu, tiny(ctx)), 0.0), 1.0)
    sigma = q * q * q
    target = maximum(sigma * mu, stop(x, s, lam, nu, grad, g, Jg, h, Jh, tol, ctx))
    # Corrector: aim at the target and cancel the predictor's second-order term.
    dx, ds, dlam, dnu = direction(Kx, Z, S, Jg, Jh, s, lam, r_d, r_g, h, sl + ds * dlam - target, ctx)
    alpha = max_step(s, lam, ds, dlam, FRACTION, ctx)
    x1, s1, lam1, nu1 = move(x, s, lam, nu, dx, ds, dlam, dnu, alpha)
    f1, grad1, g1, Jg1, h1, Jh1 = evaluate(x1, Jg, Jh, ctx)
    if ctx.NONLINEAR:
        # The Newton step trusts g(x + dx) ~ g(x) + Jg dx; far from the solution that can be off by
        # orders of magnitude (exp), and the step then lands anywhere. A step is kept once the model
        # error in every row is at most TRUST times the size of that row's terms, |Jg dx| + |g| + s, and
        # everything at the new point is finite; it is halved until then, and an instance whose steps
        # never pass takes the smallest one tried.
        Jgdx = times(Jg, dx)
        ok = fits(g1, g, alpha * Jgdx, s, ctx) & finite_point(x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1, ctx)
        accepted = (going == 0) | ok
        tries = 1
        while any_(accepted == 0) & (tries < MAX_BACKTRACKS):
            alpha = where(accepted, alpha, 0.5 * alpha)
            x2, s2, lam2, nu2 = move(x, s, lam, nu, dx, ds, dlam, dnu, alpha)
            f2, grad2, g2, Jg2, h2, Jh2 = evaluate(x2, Jg, Jh, ctx)
            ok = fits(g2, g, alpha * Jgdx, s, ctx) & finite_point(x2, s2, lam2, nu2, f2, grad2, g2, Jg2, h2, Jh2, ctx)
            trying = accepted == 0
            x1 = where(trying, x2, x1)
            s1 = where(trying, s2, s1)
            lam1 = where(trying, lam2, lam1)
            nu1 = where(trying, nu2, nu1)
            f1 = where(trying, f2, f1)
            grad1 = where(trying, grad2, grad1)
            g1 = where(trying, g2, g1)
            Jg1 = where_matrix(trying, Jg2, Jg1)
            h1 = where(trying, h2, h1)
            Jh1 = where_matrix(trying, Jh2, Jh1)
            accepted = accepted | ok
            tries += 1
    return x1, s1, lam1, nu1, f1, grad1, g1, Jg1, h1, Jh1


@kernel
def fits(g_new, g, pred, s, ctx):
    """Whether the linearization of g predicted each row's change within TRUST of its terms' size."""
    err = abs_(g_new - g - pred)
    return least(ineq_only(where(err <= TRUST * (abs_(pred) + abs_(g) + s), 1.0, 0.0), 1.0, ctx)) > 0.5


@kernel
def stop(x, s, lam, nu, grad, g, Jg, h, Jh, tol, ctx):
    """Per row, the s * lam the corrector aims no lower than.

    That is depth * tol on the side that passes the complementarity test (s / Pg for an
    active row, lam G / D for an inactive one), or where the row is now if shallower.
    Deeper, s nears the rounding in g (eps Pg), which dlam = -(r_c + lam ds) / s amplifies
    until the dual residual stalls; hence a shallower depth where tol is within 1e4 eps
    (float32 at 1e-5).
    """
    c = where(tol > 1e4 * machine_eps(ctx), 0.1 * tol, 0.5 * tol)
    P, D, Pg, G = scales(x, lam, nu, grad, g, Jg, h, Jh, ctx)
    cD = c * D
    lam_stop = where(lam * G > cD, cD / where(G > 0.0, G, 1.0), lam)
    return maximum(lam * minimum(c * Pg, s), s * lam_stop)


@kernel
def direction(Kx, Z, S, Jg, Jh, s, lam, r_d, r_g, r_h, r_c, ctx):
    """Newton step (dx, ds, dlam, dnu) driving r_d, r_g, r_h to 0 and s * lam to s * lam - r_c, from the
    reduced system [[Kx, Jh'], [Jh, -d I]] (dx, dnu) = (-r_d - Jg' (lam r_g - r_c) / s, -r_h)."""
    s1 = ineq_only(s, 1.0, ctx)
    r1 = -r_d - transpose_times(Jg, (lam * r_g - r_c) / s1)
    dx, dnu = reduced_solve(Kx, Z, S, Jh, r1, r_h, ctx)
    # One step of iterative refinement with the same factors: with H = 0 (an LP) Kx is nearly singular
    # off the active rows, and the Schur complement's dx = y - Z dnu cancels (LPs with equality rows had
    # taken up to 32 iterations in float32 where the whole system's LU took 9).
    e1 = r1 - system_times(Kx, dx, ctx) - transpose_times(Jh, dnu)
    ddx, ddnu = reduced_solve(Kx, Z, S, Jh, e1, r_h + times(Jh, dx) - regularization(ctx) * dnu, ctx)
    dx = dx + ddx
    dnu = dnu + ddnu
    ds = ineq_only(-r_g - times(Jg, dx), 0.0, ctx)
    dlam = ineq_only(-(r_c + lam * ds) / s1, 0.0, ctx)
    return dx, ds, dlam, dnu


@kernel
def max_step(s, lam, ds, dlam, frac, ctx):
    """Largest step in [0, 1] that keeps s and lam at least (1 - frac) times their values."""
    rs = ineq_only(where(ds < 0.0, -s / where(ds < 0.0, ds, -1.0), INF), INF, ctx)
    rl = ineq_only(where(dlam < 0.0, -lam / where(dlam < 0.0, dlam, -1.0), INF), INF, ctx)
    return at_most(frac * minimum(least(rs), least(rl)), 1.0)


@kernel
def move(x, s, lam, nu, dx, ds, dlam, dnu, a):
    """The point (x, s, lam, nu) + a (dx, ds, dlam, dnu). The step keeps s and lam above (1 - FRACTION) of
    their values; the floor only undoes rounding."""
    s_new = maximum(s + a * ds, (1 - FRACTION) * s)
    lam_new = maximum(lam + a * dlam, (1 - FRACTION) * lam)
    return x + a * dx, s_new, lam_new, nu + a * dnu


@kernel
def certificates(x, s, lam, nu, grad, g, Jg, h, Jh, H, scale, tol, ctx):
    """(infeasible, unbounded): whether the iterate looks infeasible or unbounded (the module docstring)."""
    cert = at_least(tol, CERT)
    blowup = 1.0 / sqrt_(full(1.0, ctx) * machine_eps(ctx))
    y = transpose_times(Jg, lam) + transpose_times(Jh, nu)
    c = total(lam * g) + total(nu * h) - total(y * x)
    duals = maximum(amax_abs(lam), amax_abs(nu))
    infeasible = (duals > blowup * scale) & (c > 0.0) & (amax_abs(y) <= cert * c)
    if ctx.NONLINEAR:
        # Nonlinear g rarely nears a certificate: duals far past any central path's (which
        # can reach 1 / sqrt(eps) on badly scaled rows) while the primal residual stays.
        P, D, Pg, G = scales(x, lam, nu, grad, g, Jg, h, Jh, ctx)
        stalled = maximum(amax_abs(g + s), amax_abs(h)) > P * sqrt_(tol)
        infeasible = infeasible | ((duals > blowup * blowup * scale) & stalled)
    size = amax_abs(x)
    d = x / at_least(size, tiny(ctx))
    slope = -total(grad * d)
    bound = cert * slope
    moves = maximum(amax_abs(at_least(times(Jg, d), 0.0)), amax_abs(times(Jh, d)))
    keeps = (amax_abs(times(H, d)) <= bound) & (moves <= bound)
    unbounded = (size > blowup * scale) & (slope > 0.0) & keeps
    return infeasible, unbounded

