"""Newton's method with a backtracking line search, written once for both backends.

The @kernel functions below are the algorithm: PyTorch runs them on a whole batch
(`ops.py`), the Triton printer copies their text into the generated module, where
one program runs them on one instance (`backends/triton/templates/ops.py` spells
the same names). They are written per instance: every update is masked, so an
element that has converged stops moving, and both backends make the same steps.

For minimize problems the line search is Armijo on the objective (and a
non-descent Newton direction is replaced by the negative gradient); for root
problems it is Armijo on the merit |F|^2 / 2. On a problem not proven convex
(LOCAL) the Hessian is made positive definite first where it is not (a multiple
of the identity added until Cholesky succeeds, Nocedal & Wright's algorithm
3.3): an indefinite Hessian's Newton step points at a saddle, and the negative
gradient alone crawls. A convex quadratic's Hessian (QUADRATIC) is constant and
SPD: it is factored once (Cholesky) and its Newton step is exact, so there is
no line search; an instance whose factorization fails takes the general steps.
"""
from __future__ import annotations

import math

import torch

from optlang.solvers.ops import (Context, abs_, add_diagonal, all_finite, amax_abs, any_, at_least, cholesky,
                                 cholesky_solve, compact, diagonal, dot, finish, full, gradient_flat, identity,
                                 is_finite, jacobian, keep_factor, keep_going, kernel, machine_eps, objective_flat,
                                 objective_gradient_flat, relative_residual, residual_flat, solve, transpose, where,
                                 where_matrix, zero_count)
from optlang.solvers.result import NO_DEADLINE, SolveResult

ARMIJO = 1e-4
MAX_HALVINGS = 40
SHIFT_TRIES = 30  # shifts tau, 10x apart: from 1e-8 to 1e22 times the Hessian's largest diagonal entry


def flags(plan) -> dict:
    """The solver's constant flags for a plan (module constexprs on Triton, Context attributes here)."""
    minimize = plan.kind == "smooth"
    return {"MINIMIZE": minimize, "LOCAL": minimize and plan.local,
            "QUADRATIC": minimize and not plan.local and plan.quadratic}


def newton(prob, x0: torch.Tensor, tol: float, max_iter: int, deadline=NO_DEADLINE) -> SolveResult:
    """Solve residual(x) = 0 by Newton steps from x0, on the PyTorch backend."""
    batch, n = x0.shape[:-1], x0.shape[-1]
    size = math.prod(batch)
    ctx = Context(prob.flat_batch(), deadline, **flags(prob.plan))
    x, res, done, iterations = newton_solve(x0.reshape(size, n), tol, max_iter, ctx)
    return SolveResult(x.reshape(batch + (n,)), done.reshape(batch), iterations.reshape(batch),
                       res.reshape(batch), timed_out=ctx.timed_out,
                       factor=None if ctx.factor is None else ctx.factor.reshape(batch + (n, n)))


@kernel
def newton_solve(x, tol, max_iter, ctx):
    """Newton steps from x to a relative residual <= tol; (x, residual, converged, iterations)."""
    merit, F = merit_and_residual(x, ctx)
    scale = amax_abs(F)
    res = relative_residual(F, scale)
    done = res <= tol
    iterations = zero_count(ctx)
    factored = done & (done == 0)  # per instance: whether its Newton step is the factored one
    chol = factored  # the factor, where QUADRATIC
    if ctx.QUADRATIC:
        chol, factored = cholesky(jacobian(x, ctx), ctx)
        chol = keep_factor(chol, factored, ctx)
    going = (done == 0) & (iterations < max_iter)
    while keep_going(going, ctx):
        x, res, done, iterations, F, merit, scale, factored, chol, going = compact(
            going, (x, res, done, iterations), (F, merit, scale, factored, chol, going), ctx)
        x_new = x
        if ctx.QUADRATIC:
            x_new = x + cholesky_solve(chol, -F, ctx)
        general = going & (factored == 0)
        if any_(general):
            x_new = where(factored, x_new, newton_step(x, F, merit, general, ctx))
        x = where(going, x_new, x)
        merit, F = merit_and_residual(x, ctx)
        iterations = iterations + where(going, 1, 0)
        res = where(going, relative_residual(F, scale), res)
        done = done | (res <= tol)
        going = (done == 0) & (iterations < max_iter)
    return finish((x, res, done, iterations), ctx)


@kernel
def merit_flat(x, ctx):
    """The line search's merit: the objective, or |F|^2 / 2 for a root."""
    if ctx.MINIMIZE:
        merit = objective_flat(x, ctx)
    else:
        F = residual_flat(x, ctx)
        merit = 0.5 * dot(F, F)
    return merit


@kernel
def merit_and_residual(x, ctx):
    """(the line search's merit, F) at x: for a minimize problem f and its gradient, from one call
    that computes their common terms once; for a root |F|^2 / 2. A convex quadratic's factored steps
    need no merit: there F alone (newton_step evaluates f for an instance that steps otherwise)."""
    if ctx.MINIMIZE & (ctx.QUADRATIC == 0):
        merit, F = objective_gradient_flat(x, ctx)
    else:
        F = residual_flat(x, ctx)
        if ctx.MINIMIZE:  # a convex quadratic: newton_step evaluates f where an instance needs it
            merit = full(0.0, ctx)
        else:
            merit = 0.5 * dot(F, F)
    return merit, F


@kernel
def newton_step(x, F, merit0, going, ctx):
    """One damped Newton step from x, where (merit0, F) = merit_and_residual(x), for the instances going."""
    J = jacobian(x, ctx)
    if ctx.LOCAL:
        dx = modified_newton_step(J, F, ctx)
    else:
        dx, singular = solve(J, -F, ctx)
    if ctx.MINIMIZE:
        # A step that does not descend on f is replaced by the negative gradient.
        dx = where(dot(F, dx) < 0.0, dx, -F)
        if ctx.QUADRATIC:
            merit0 = objective_flat(x, ctx)
        slope = dot(F, dx)
    else:
        slope = -2.0 * merit0
    return line_search(x, dx, merit0, slope, going, ctx)


@kernel
def modified_newton_step(H, F, ctx):
    """-(H + tau I)^-1 F per instance, tau = 0 where H is positive definite, else the smallest of
    1e-8, 1e-7, ... times max(1, max |H_ii|) that makes Cholesky succeed."""
    H = 0.5 * (H + transpose(H))
    chol, ok = cholesky(H, ctx)
    bad = ok == 0
    tau = 1e-8 * at_least(amax_abs(diagonal(H, ctx)), 1.0)
    tries = 0
    while any_(bad) & (tries < SHIFT_TRIES):
        shifted, ok = cholesky(add_diagonal(H, where(bad, tau, 0.0 * tau), ctx), ctx)
        chol = where_matrix(bad & ok, shifted, chol)
        bad = bad & (ok == 0)
        tau = 10.0 * tau
        tries += 1
    # An instance no shift repaired (a non-finite Hessian) takes the negative gradient.
    chol = where_matrix(bad, identity(H, ctx), chol)
    return cholesky_solve(chol, -F, ctx)


@kernel
def line_search(x, dx, merit0, slope, going, ctx):
    """Per-instance backtracking: halve the step until the Armijo condition holds."""
    t = full(1.0, ctx)
    eps = machine_eps(ctx)
    # The slack of a few ulps of the merit lets a step that is exact up to
    # rounding through, instead of halving it away near the solution.
    slack = 8.0 * eps * abs_(merit0)
    # Near the minimum the decrease a step predicts (-slope) is below the rounding of the
    # objective, and comparing objective values is noise (cancellation): there the step is
    # judged by the gradient instead, which must shrink.
    flat = -slope <= 64.0 * eps * at_least(abs_(merit0), 1.0)
    accepted = going == 0
    x_new = x
    halvings = 0
    while any_(accepted == 0) & (halvings < MAX_HALVINGS):
        trial = x + t * dx
        merit = merit_flat(trial, ctx)
        ok = is_finite(merit) & (merit <= merit0 + ARMIJO * t * slope + slack)
        if ctx.MINIMIZE:
            if any_(flat & (accepted == 0)):
                g_trial = gradient_flat(trial, ctx)
                shrinks = (amax_abs(g_trial) < amax_abs(gradient_flat(x, ctx))) & all_finite(g_trial)
                ok = ok | (flat & shrinks)
        x_new = where(ok & (accepted == 0), trial, x_new)
        accepted = accepted | ok
        t = where(accepted, t, 0.5 * t)
        halvings += 1
    # Instances that never satisfied Armijo take the smallest step tried: progress near the
    # solution is limited by rounding, and the residual test decides. A non-finite step (a broken
    # direction) is not taken: the instance keeps its finite point and ends failed.
    smallest = x + t * dx
    smallest = where(all_finite(smallest), smallest, x)
    return where(accepted, x_new, smallest)
