"""Anderson acceleration (type II) for fixed points x = G(x), written once for both backends.

With residuals f_k = G(x_k) - x_k and the differences dX_i = x_{i+1} - x_i,
dF_i = f_{i+1} - f_i of the last MEMORY steps (Walker & Ni 2011; the form used
for deep equilibrium models), each instance solves the small regularized
least-squares problem  min_gamma |f_k - dF gamma|^2 + reg |D gamma|^2  and
steps to  x_k + beta f_k - (dX + beta dF) gamma  (beta = MIXING).

Safeguard: the Anderson candidate is kept only where its residual is finite
and smaller than that of the plain damped step x_k + beta f_k; elsewhere the
plain step is taken and the instance's history restarts from it. Each
iteration therefore costs two evaluations of G. Converged instances stop
changing; an instance whose iterate or residual turns non-finite stops at its
last finite iterate with status FAILED.

The @kernel functions are the algorithm on both backends, as in newton.py: the
PyTorch backend runs them on a batch (`ops.py`), the Triton module holds their
text. A history is MEMORY rows of the state's size, the newest last.
"""
from __future__ import annotations

import math

import torch

from optlang.solvers.ops import (Context, all_finite, amax_abs, any_, at_most, combine, divide_rows, dot, gram,
                                 history, history_rows, is_finite, keep_going, kernel, relative_residual,
                                 residual_flat, roll_in, row_dots, row_norms, solve_history, sqrt_, where,
                                 where_matrix, zero_count)
from optlang.solvers.result import CONVERGED, FAILED, MAX_ITER, NO_DEADLINE, SolveResult

MEMORY = 5  # the defaults: the Triton module's constants, the PyTorch driver's keyword defaults
MIXING = 1.0
REGULARIZATION = 1e-10


def anderson(fixed_map, x0: torch.Tensor, tol: float, max_iter: int, memory: int = MEMORY, mixing: float = MIXING,
             regularization: float = REGULARIZATION, deadline=NO_DEADLINE) -> SolveResult:
    """Solve x = fixed_map(x) from x0 (*batch, N) on the PyTorch backend; `residual` is relative_residual
    of x - fixed_map(x).

    `memory` is Walker & Ni's m: the number of past steps (m + 1 iterates)
    in the least squares; 0 gives the plain damped iteration.
    `regularization` is relative to the column-scaled Gram matrix (unit
    diagonal), so it does not depend on the scale of the problem.
    """
    batch = x0.shape[:-1]
    return solve_fixed_point(_MapProblem(fixed_map, batch, math.prod(batch), x0), x0, tol, max_iter, memory,
                             mixing, regularization, deadline)


def solve_fixed_point(prob, x0: torch.Tensor, tol: float, max_iter: int, memory: int = MEMORY,
                      mixing: float = MIXING, regularization: float = REGULARIZATION,
                      deadline=NO_DEADLINE) -> SolveResult:
    """Solve residual(x) = 0, i.e. x = x - residual(x), by Anderson steps from x0 (*batch, N).

    `prob` has `residual` on the flattened batch (a BoundProblem taken to it, or a _MapProblem)."""
    batch, n = x0.shape[:-1], x0.shape[-1]
    ctx = Context(prob, deadline, MEMORY=memory, MIXING=mixing, REGULARIZATION=regularization)
    x, res, done, failed, iterations = anderson_solve(x0.reshape(-1, n), tol, max_iter, ctx)
    converged = done & ~failed
    status = None
    if bool(failed.any()):
        status = torch.where(failed, FAILED, torch.where(converged, CONVERGED, MAX_ITER)).to(torch.int64)
        status = status.reshape(batch)
    return SolveResult(x.reshape(batch + (n,)), converged.reshape(batch), iterations.reshape(batch),
                       res.reshape(batch), status, timed_out=ctx.timed_out)


class _MapProblem:
    """A fixed map on the flattened batch as the residual x - G(x) the shared text calls."""

    def __init__(self, fixed_map, batch: tuple, size: int, like: torch.Tensor):
        self.fixed_map, self.shape = fixed_map, batch
        self.batch, self.dtype, self.device = (size,), like.dtype, like.device

    def residual(self, x):
        n = x.shape[-1]
        return x - self.fixed_map(x.reshape(self.shape + (n,))).reshape(x.shape)


@kernel
def map_residual(x, ctx):
    """f = G(x) - x, with G(x) = x - residual(x) (rounded as G's own value would be)."""
    g = x - residual_flat(x, ctx)
    return g - x


@kernel
def anderson_solve(x, tol, max_iter, ctx):
    """Anderson steps from x to a relative residual <= tol; (x, residual, done, failed, iterations)."""
    f = map_residual(x, ctx)
    scale = amax_abs(f)
    res = relative_residual(f, scale)
    failed = (is_finite(res) == 0) | (all_finite(x) == 0)
    done = failed | (res <= tol)
    iterations = zero_count(ctx)
    dX = history(x, ctx)
    dF = history(x, ctx)
    count = zero_count(ctx)  # valid history rows, the newest last
    going = (done == 0) & (iterations < max_iter)
    while keep_going(going, ctx):
        x_plain = x + ctx.MIXING * f
        f_plain = map_residual(x_plain, ctx)
        x_new = x_plain
        f_new = f_plain
        accelerated = count < 0
        if any_(going & (count > 0)):
            gamma = coefficients(dF, f, count, ctx)
            x_aa = x_plain - combine(dX + ctx.MIXING * dF, gamma)
            f_aa = map_residual(x_aa, ctx)
            norm_aa = sqrt_(dot(f_aa, f_aa))
            norm_plain = sqrt_(dot(f_plain, f_plain))
            # A NaN plain norm compares False, so such an instance goes on to fail below.
            accelerated = (count > 0) & is_finite(norm_aa) & all_finite(x_aa) & (norm_aa < norm_plain)
            x_new = where(accelerated, x_aa, x_plain)
            f_new = where(accelerated, f_aa, f_plain)
        ok = all_finite(f_new) & all_finite(x_new)
        step = going & ok
        dX, dF, count = push(dX, dF, count, x_new - x, f_new - f, step, accelerated, ctx)
        x = where(step, x_new, x)
        f = where(step, f_new, f)
        iterations = iterations + where(going, 1, 0)
        res = where(step, relative_residual(f, scale), res)
        failed = failed | (going & (ok == 0))
        done = failed | (res <= tol)
        going = (done == 0) & (iterations < max_iter)
    return x, res, done, failed, iterations


@kernel
def coefficients(dF, f, count, ctx):
    """gamma minimizing |f - dF^T gamma|^2 + reg |D gamma|^2, D the row norms of the history dF.

    Normal equations on the Gram matrix scaled to unit diagonal: the
    differences shrink geometrically as the iteration converges, and without
    the scaling the newest rows would be drowned by the oldest. Rows outside an
    instance's history get an identity row and a zero right-hand side, hence a
    zero coefficient.
    """
    valid = history_rows(count, ctx)
    norms = row_norms(dF)
    d = where(valid & (norms > 0.0), norms, 1.0)
    Q = divide_rows(dF, d)
    rhs = where(valid, row_dots(Q, f), 0.0)
    y, singular = solve_history(gram(Q, valid, ctx.REGULARIZATION, ctx), rhs, ctx)
    return y / d


@kernel
def push(dX, dF, count, dx, df, step, accelerated, ctx):
    """Append the newest differences where `step`; after a plain step, restart the history from them."""
    restart = step & (accelerated == 0)
    count_new = at_most(where(restart, 1, count + 1), ctx.MEMORY)  # MEMORY 0: no history, the plain iteration
    return (where_matrix(step, roll_in(dX, dx, restart), dX), where_matrix(step, roll_in(dF, df, restart), dF),
            where(step, count_new, count))
