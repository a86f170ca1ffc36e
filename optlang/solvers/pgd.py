"""Accelerated proximal gradient (FISTA) with backtracking, then semismooth Newton polish,
written once for both backends.

FISTA (Beck & Teboulle) with a per-instance Lipschitz estimate found by
backtracking, and O'Donoghue & Candes' gradient restart; `accelerate=False`
is the plain proximal gradient method ("pgd"). Once the fixed-point residual
is small the active set is (almost always) settled, and semismooth Newton
steps on F(x) = x - prox(x - grad f(x)) reach full accuracy in a few
iterations; a step is kept only where it lowers the residual, so the polish
can never make things worse. `prox_flat(z, step)` is prox_{step r}(z); at step
0 it is the projection onto the sets (the prox terms vanish).

Where f's Hessian is the identity (IDENTITY_HESSIAN: f = |x|^2 / 2 plus terms linear in x, as in
a projection or a prox layer), the first proximal step at step 1 is the solution: the solve
is that step and its residual (a step from there would land on the same point).

Where f is quadratic (QUADRATIC: its Hessian H does not depend on x), H is
built once per solve (on PyTorch once for the whole batch where it reads no
param, e.g. sparsemax's H = I): L starts at H's top eigenvalue (power
iteration), and the quadratic upper bound f(y + d) <= f(y) + g'd + L/2 |d|^2
is checked exactly as d'Hd <= L |d|^2, so f itself is never evaluated (half of
an iteration's work when backtracking). Where H grows no faster than the data
(HESSIAN_GRADIENT), the gradient is H x + grad f(0), in the steps and in the
residuals they are measured by (`step_residual`). Polishing starts earlier
there: Newton on a quadratic is exact once the active set is right. An
instance whose H is not finite (data near the float range) backtracks on f
instead.

The @kernel functions are the algorithm on both backends, as in newton.py. Two
decisions couple a PyTorch batch and are the instance's own in a Triton
program (`batch_all`, `batch_max`, `batch_any`): the polish starts once every
element is ready, and the next threshold follows the batch's worst residual.
With one instance both backends take the same steps.
"""
from __future__ import annotations

import math

import torch

from optlang.solvers.ops import (Context, abs_, all_finite, all_finite_matrix, amax_abs, amax_abs_matrix, any_,
                                 at_least, at_most, batch_all, batch_any, batch_max, cholesky, cholesky_solve,
                                 compact_with_hessian, dot, finish, free_set, free_system, full, gradient_flat, hessian,
                                 identity, is_finite, jacobian, keep_going, keep_hessian, kernel, machine_eps, nested,
                                 objective_flat, objective_gradient_flat, power_start, prox_flat, relative_residual,
                                 residual_flat, rows_times, solve, sqrt_, times, tiny, where, where_matrix, zero_count)
from optlang.solvers.result import NO_DEADLINE, SolveResult

POLISH_AT = 1e-3  # relative residual below which Newton polishing starts
POLISH_AT_QUADRATIC = 0.3  # the same where f is quadratic (a polish step is then cheap and exact)
# ... and where the prox's Jacobian is also diagonal (boxes, norm1: NNLS, the lasso), from the first
# step: the polish's Newton system is then f's Hessian on the free coordinates (nonsingular where f
# is strictly convex), the primal-dual active set method, which settles the active set in a few
# steps where FISTA takes many (NNLS B=64 40x20: 6 FISTA steps + 5 polish rounds became 1 + 5).
# Not on a simplex, whose polish systems can be singular (the SVM dual: 104 iterations became 114).
POLISH_AT_DIAGONAL = 1e30
POLISH_STEPS = 20
POLISH_HALVINGS = 12  # a polish step that does not help at 2^-11 of its length is not taken
POLISH_EVERY = 50  # FISTA iterations between polish attempts while some element is still far off
MAX_BACKTRACK = 60
POWER_STEPS = 10  # a start for L only: the step check doubles it where it is short
NORMALIZE_EVERY = 5  # power steps between normalizations
DENSE_HESSIAN_MAX = 1 << 22  # PyTorch: entries of the batch's Hessians up to which a quadratic's is built


def flags(plan) -> dict:
    """The constant flags (module constexprs on Triton, Context attributes here)."""
    identity = plan.quadratic and plan.function("hvp").is_identity_in("tangent")
    return {"QUADRATIC": plan.quadratic, "DIAGONAL": plan.function("free_mask") is not None,
            "IDENTITY_HESSIAN": identity, "HESSIAN_GRADIENT": plan.quadratic and hessian_within_data(plan)}


def hessian_within_data(plan) -> bool:
    """Whether f's dense Hessian grows no faster with the dims than the largest param: (n x n) against
    A (m x n) in NNLS and the lasso, Q in a QP. There grad f(x) = H x + grad f(0) reads no more than the
    generated gradient, which reads the data (twice, for a least squares). Not for the SVM dual, whose
    Hessian (m k)^2 is a kron of X X' and outgrows X (m x d): there the generated gradient is the cheap one."""
    def degree(shape):
        return sum(1 for d in shape if not isinstance(d, int))

    state = max((degree(v.shape) for v in plan.vars), default=0)
    data = max((degree(p.shape) for p in plan.params), default=0)
    return 2 * state <= data


def fista(prob, tol: float, max_iter: int, accelerate: bool = True, x0=None, deadline=NO_DEADLINE) -> SolveResult:
    """Minimize f + r, r given by its prox, from the projection of x0 (default 0), on the PyTorch backend."""
    batch, n = prob.batch, prob.n
    size = math.prod(batch)
    values = flags(prob.plan)
    # Batched dense Hessians past DENSE_HESSIAN_MAX entries are not built: backtracking on f instead.
    shared = not prob.plan.function("hvp").reads("param") if values["QUADRATIC"] else False
    values["QUADRATIC"] = values["QUADRATIC"] and (shared or size * n * n <= DENSE_HESSIAN_MAX)
    values["HESSIAN_GRADIENT"] = values["HESSIAN_GRADIENT"] and values["QUADRATIC"]
    ctx = Context(prob.flat_batch(), deadline, SHARED_HESSIAN=shared, **values)
    start = torch.zeros(size, n, dtype=prob.dtype, device=prob.device) if x0 is None else x0.reshape(size, n)
    x, res, done, iterations = fista_solve(start, tol, max_iter, accelerate, ctx)
    hessian = ctx.hessian if ctx.hessian is None or shared else ctx.hessian.reshape(batch + (n, n))
    return SolveResult(x.reshape(batch + (n,)), done.reshape(batch), iterations.reshape(batch), res.reshape(batch),
                       timed_out=ctx.timed_out, hessian=hessian)


@kernel
def fista_solve(x0, tol, max_iter, accelerate, ctx):
    """FISTA steps (and polish) from the projection of x0; (x, residual, converged, iterations)."""
    zero = 0.0 * full(1.0, ctx)
    if ctx.IDENTITY_HESSIAN:
        # f = |x|^2 / 2 + terms linear in x: x - grad f(x) is the same point for every x, and one
        # proximal step at step 1 from anywhere is the minimizer (sparsemax, a projection, a prox).
        # The residual x - prox(x - grad f(x), 1) takes that step, on the point as derived (x - (x - v)
        # is v there, no pass), so the minimizer is x0 - F(x0): exactly the prox of that point from
        # x0 = 0. A FISTA or Newton step from it would land on it again, so none is taken (an instance
        # that rounding left short of the tolerance reports so), and the kernel holds no n x n Hessian.
        x = x0 - residual_flat(x0, ctx)
        F = residual_flat(x, ctx)
        size = amax_abs(F)
        res = size / at_least(size, 1.0)  # relative_residual(F, max |F|), without a second pass over F
        done = res <= tol
        iterations = zero_count(ctx)
    else:
        x, res, done, iterations = fista_iterate(prox_flat(x0, zero, ctx), tol, max_iter, accelerate, ctx)
    return x, res, done, iterations


@kernel
def fista_iterate(x, tol, max_iter, accelerate, ctx):
    """FISTA steps (and polish) from x, a point of the sets."""
    F = residual_flat(x, ctx)
    scale = amax_abs(F)
    res = relative_residual(F, scale)
    done = res <= tol
    iterations = zero_count(ctx)
    L = full(1.0, ctx)
    polish_at = full(POLISH_AT, ctx)
    quadratic = done & (done == 0)  # per instance: whether its steps use the dense Hessian
    H = L  # the Hessian, where QUADRATIC
    g0 = x  # the gradient at 0, where HESSIAN_GRADIENT: grad f(x) = H x + g0
    if ctx.QUADRATIC:
        H = hessian(x, ctx)
        quadratic = all_finite_matrix(H) | quadratic
        H = keep_hessian(H, quadratic, ctx)
        if ctx.HESSIAN_GRADIENT:
            g0 = gradient_flat(0.0 * x, ctx)
        L = where(quadratic, top_eigenvalue(H, x, ctx), L)
        polish_at = where(quadratic, POLISH_AT_QUADRATIC, polish_at)
        if ctx.DIAGONAL:
            polish_at = where(quadratic, POLISH_AT_DIAGONAL, polish_at)
    y = x
    t = full(1.0, ctx)
    steps = 0
    going = (done == 0) & (steps < max_iter)
    while keep_going(going, ctx):
        x_new = y
        if ctx.QUADRATIC:
            g = quadratic_gradient(y, H, g0, quadratic, ctx)
            x_new, L = quadratic_step(H, y, g, L, going & quadratic, ctx)
        else:
            fy, g = objective_gradient_flat(y, ctx)  # backtracking needs both at y
        general = going & (quadratic == 0)
        if any_(general):
            if ctx.QUADRATIC:  # an instance whose dense Hessian is not finite
                fy = objective_flat(y, ctx)
            # The extrapolated point y can leave the domain of f (x log x, log, sqrt at or past the
            # boundary of a set): restart there from the last iterate, which every accepted step keeps finite.
            outside = general & ((is_finite(fy) & all_finite(g)) == 0)
            if any_(outside):
                y = where(outside, x, y)
                t = where(outside, 1.0, t)
                fy, g = objective_gradient_flat(y, ctx)
            x_general, L = backtrack(y, g, fy, L, general, ctx)
            x_new = where(general, x_general, x_new)
        # The curvature along the path can be far below the bound found: let the step grow back.
        L = where(going, 0.9 * L, L)
        # Restart the momentum where it points uphill (gradient restart).
        t = where(dot(g, x_new - x) > 0.0, 1.0, t)
        t_next = full(1.0, ctx)
        if accelerate:
            t_next = 0.5 * (1.0 + sqrt_(1.0 + 4.0 * t * t))
        y_new = x_new + ((t - 1.0) / t_next) * (x_new - x)
        x = where(going, x_new, x)
        y = where(going, y_new, y)
        t = where(going, t_next, t)
        steps += 1
        iterations = iterations + where(going, 1, 0)
        F = step_residual(x, H, g0, quadratic, ctx)
        res = where(going, relative_residual(F, scale), res)
        done = done | (res <= tol)
        ready = going & (batch_all((res <= polish_at) | done) | (steps % POLISH_EVERY == 0))
        if any_(ready):
            before = res
            polished = polish(x, F, res, scale, tol, max_iter, done, iterations, ready, H, g0, quadratic, ctx)
            x, res, done, iterations = polished
            y = where(ready, x, y)
            t = where(ready, 1.0, t)
            # Polish again only after FISTA has made a decade of progress; where this polish gained nothing
            # (a singular Newton system, as in the SVM dual), not before the usual POLISH_AT either.
            polish_at = where(ready, 0.1 * batch_max(where(done, 0.0, res)), polish_at)
            fruitless = ready & (batch_any(res < before) == 0)
            polish_at = where(fruitless, at_most(polish_at, POLISH_AT), polish_at)
        going = (done == 0) & (steps < max_iter)
    return x, res, done, iterations


@kernel
def quadratic_gradient(x, H, g0, quadratic, ctx):
    """grad f(x) = H x + g0 where HESSIAN_GRADIENT and the instance's Hessian H is at hand (`quadratic`),
    else the generated one."""
    g = x
    if ctx.HESSIAN_GRADIENT:
        g = times(H, x) + g0
        if any_(quadratic == 0):
            g = where(quadratic, g, gradient_flat(x, ctx))
    else:
        g = gradient_flat(x, ctx)
    return g


@kernel
def step_residual(x, H, g0, quadratic, ctx):
    """The fixed-point residual F(x) = x - prox(x - grad f(x)) at step 1, as the generated residual is,
    where HESSIAN_GRADIENT with grad f(x) = H x + g0 from the Hessian already built: one pass over H
    instead of the problem's data, which a least-squares gradient reads twice (A x - b, then A' r). On
    a batch past the cache that is most of an iteration's memory traffic (NNLS B=1024 A 64 x 32: 4 x
    less), and on a small one fewer ops. The two agree to rounding (a test checks it on the prox classes)."""
    F = x
    if ctx.HESSIAN_GRADIENT:
        z = x - quadratic_gradient(x, H, g0, quadratic, ctx)
        F = x - prox_flat(z, full(1.0, ctx), ctx)
    else:
        F = residual_flat(x, ctx)
    return F


@kernel
def own_residual(x, F, ctx):
    """The problem's own residual at x for an LU solve, given F = step_residual(x) (the same where that
    is not H x + g0). An LU system can be singular (more free coordinates than rows of A), and the
    solve amplifies the right-hand side's rounding outside the system's range. The generated
    residual's rounding lies in the range of the data, which is the system's; H x + g0's does not:
    with it, NNLS 4 x 9 (360 instances) took 15 iterations on average instead of 9 (p90 39, not 18).
    The Cholesky solves, of nonsingular systems, take F as it is."""
    if ctx.HESSIAN_GRADIENT:
        F = residual_flat(x, ctx)
    return F


@kernel
def top_eigenvalue(H, x, ctx):
    """The largest eigenvalue of the symmetric PSD H by power iteration (a lower bound, close), or 1
    where it is not a positive finite number (the step check then doubles L as backtracking would).

    H is scaled to entries at most 1 (data near the float range must not overflow the norms); its top
    eigenvalue is then between 1 (its largest entry is on the diagonal) and n, so v is normalized only
    every NORMALIZE_EVERY steps (growing at most n^5 in between): half the operations of a step."""
    inverse = 1.0 / at_least(amax_abs_matrix(H), tiny(ctx))
    v = power_start(H, x, ctx)
    for _ in range(POWER_STEPS // NORMALIZE_EVERY):
        for _ in range(NORMALIZE_EVERY):
            v = times(H, v) * inverse
        v = v / (sqrt_(dot(v, v)) + tiny(ctx))
    top = dot(v, times(H, v))
    return where(is_finite(top) & (top > 0.0), top, 1.0)


@kernel
def quadratic_step(H, y, g, L, active, ctx):
    """The prox step from y at 1/L, L doubled per instance until d'Hd <= L |d|^2 (f's upper bound, exact)."""
    accepted = active == 0
    x_new = y
    tries = 0
    while any_(accepted == 0) & (tries < MAX_BACKTRACK):
        trial = prox_flat(y - g / L, 1.0 / L, ctx)
        d = trial - y
        ok = dot(d, times(H, d)) <= L * dot(d, d) * (1.0 + 1e3 * machine_eps(ctx))
        x_new = where(ok & (accepted == 0), trial, x_new)
        accepted = accepted | ok
        L = where(accepted, L, 2.0 * L)
        tries += 1
    return x_new, L


@kernel
def backtrack(y, g, fy, L, active, ctx):
    """Per instance the smallest L tried (doubling) with the quadratic upper bound satisfied at the step."""
    accepted = active == 0
    x_new = y
    slack = 8.0 * machine_eps(ctx) * abs_(fy)
    tries = 0
    while any_(accepted == 0) & (tries < MAX_BACKTRACK):
        trial = prox_flat(y - g / L, 1.0 / L, ctx)
        d = trial - y
        bound = fy + dot(g, d) + 0.5 * L * dot(d, d)
        f_trial = objective_flat(trial, ctx)
        ok = is_finite(f_trial) & (f_trial <= bound + slack)  # a trial outside f's domain backtracks
        x_new = where(ok & (accepted == 0), trial, x_new)
        accepted = accepted | ok
        L = where(accepted, L, 2.0 * L)
        tries += 1
    return x_new, L


@kernel
def polish(x, F, res, scale, tol, max_iter, done, iterations, ready, H, g0, quadratic, ctx):
    """Semismooth Newton on the proximal-gradient fixed point for the instances `ready`, from x and its
    residual F; each keeps only improving steps, and stops at the first step that does not improve (from
    the same point the next would be the same). A round counts as an iteration, so no instance passes
    max_iter.

    With a quadratic's dense Hessian H and a diagonal prox Jacobian D (`free_mask`), the Jacobian
    I - D (I - H) is built from them, not from n directional derivatives, and its system is solved
    on the free set by Cholesky (`free_set_step`); LU takes the instances that do not factor.

    On PyTorch the instances that have stopped polishing leave the batch (its own Context, `nested`),
    as they leave a Newton solve's: the rounds' factorizations and trials then cost the instances
    still at work. NNLS B=1024 A 64 x 32 polishes 12 rounds, in most of which a few instances are left."""
    active = ready & (done == 0) & (iterations < max_iter)
    ctx = nested(ctx)
    rounds = 0
    while any_(active) & (rounds < POLISH_STEPS):
        x, res, done, iterations, F, scale, quadratic, g0, active, H = compact_with_hessian(
            active, (x, res, done, iterations), (F, scale, quadratic, g0, active), H, ctx)
        if ctx.QUADRATIC & ctx.DIAGONAL:
            D = free_set(x, ctx)
            dx, factored = free_set_step(H, D, F, ctx)
            unfactored = active & ((factored & quadratic) == 0)
            if any_(unfactored):
                eye = identity(H, ctx)
                J = eye - rows_times(D, eye - H)
                if any_(active & (quadratic == 0)):
                    J = where_matrix(quadratic, J, jacobian(x, ctx))
                F_own = own_residual(x, F, ctx)
                dx_lu, singular = solve(J, -F_own, ctx)
                dx = where(unfactored, dx_lu, dx)
        else:
            F_own = own_residual(x, F, ctx)
            dx, singular = solve(jacobian(x, ctx), -F_own, ctx)
        # Damped: halve the step where the full one leaves f's domain (x log x next to a bound) or
        # does not lower the residual; each instance keeps its first improving step.
        better = active & (active == 0)
        step = full(1.0, ctx)
        halvings = 0
        while any_(active & (better == 0)) & (halvings < POLISH_HALVINGS):
            trial = prox_flat(x + step * dx, 0.0 * step, ctx)
            F_trial = step_residual(trial, H, g0, quadratic, ctx)
            res_trial = relative_residual(F_trial, scale)
            newly = active & (better == 0) & is_finite(res_trial) & (res_trial < res)
            x = where(newly, trial, x)
            F = where(newly, F_trial, F)
            res = where(newly, res_trial, res)
            better = better | newly
            step = where(better, step, 0.5 * step)
            halvings += 1
        iterations = iterations + where(better, 1, 0)
        done = done | (res <= tol)
        active = better & (done == 0) & (iterations < max_iter)
        rounds += 1
    return finish((x, res, done, iterations), ctx)


@kernel
def free_set_step(H, D, F, ctx):
    """(dx, factored): the solution of (I - D (I - H)) dx = -F, D a 0/1 mask (boxes and norm1), by
    Cholesky where it factors. Off the free set dx = -F; on it H_FF dx_F = -F_F - H_FA dx_A: the
    system D H D + (I - D) with right-hand side D H ((1 - D) F) - F, symmetric positive definite
    where H is, where the Jacobian itself is not symmetric."""
    L, factored = cholesky(free_system(H, D, ctx), ctx)
    return cholesky_solve(L, D * times(H, (1.0 - D) * F) - F, ctx), factored
