"""The backward pass by conjugate gradients, written once for both backends.

At a solution x, (dF/dx)^T w = g. Where F is a gradient (smooth), dF/dx = H is
symmetric and CG runs on H through Hessian-vector products. Where F is the
proximal-gradient fixed point x - prox(x - grad f(x)) (PROX), J = I - P + P H
with P the prox's Jacobian, a projection onto the free directions (a 0/1
diagonal on boxes and norm1; on a simplex, onto the support with sum zero):
J^T w = g splits into w = a + b with a = P w, b = (I - P) w, and
P H a = P g is solved by CG on P H P + (I - P) (SPD: H on the free directions,
the identity across them), then b = g - H a. The work is CG on the free set:
for sparsemax (H = I) one iteration.

The @kernel functions run on both backends, as in newton.py; the PyTorch
backend also solves the untransposed (tangent) system with the same CG.
"""
from __future__ import annotations

import math

import torch

from optlang.solvers.ops import (Context, any_, at_least, dot, free_projection, free_set, hvp_flat, kernel, sqrt_,
                                 tiny, where)
from optlang.solvers.result import NO_DEADLINE

CG_MAX_ITER = 1000


def adjoint(prob, x: torch.Tensor, g: torch.Tensor, tol: float):
    """(w, converged) with (dF/dx)^T w = g, on the PyTorch backend: x and g of shape (*batch, N)."""
    ctx, flat = _context(prob, x)
    w, ok = adjoint_cg(flat(x), flat(g), tol, ctx)
    return w.reshape(g.shape), ok.reshape(g.shape[:-1])


def tangent(prob, x: torch.Tensor, v: torch.Tensor, tol: float):
    """(z, converged) with (dF/dx) z = v: for a prox, b = (I - P) z = (I - P) v across the free
    directions and P H a = P (v - H b) for a = P z by the same CG; on H itself for a smooth F."""
    ctx, flat = _context(prob, x)
    shape = v.shape
    x, v = flat(x), flat(v)
    if not ctx.PROX:
        z, ok = cg(x, None, v, tol, ctx)
        return z.reshape(shape), ok.reshape(shape[:-1])
    D = free_set(x, ctx)
    b = v - free_projection(x, D, v, ctx)
    a, ok = cg(x, D, free_projection(x, D, v - hvp_flat(x, b, ctx), ctx), tol, ctx)
    return (a + b).reshape(shape), ok.reshape(shape[:-1])


def flags(plan) -> dict:
    """The constant flags (module constexprs on Triton, Context attributes here)."""
    return {"PROX": plan.kind == "prox"}


def _context(prob, x):
    size = math.prod(prob.batch)
    flat_prob = prob.flat_batch()
    return Context(flat_prob, NO_DEADLINE, **flags(prob.plan)), lambda t: t.reshape(size, t.shape[-1])


@kernel
def adjoint_cg(x, g, tol, ctx):
    """(w, converged) with (dF/dx)^T w = g at the solution x."""
    if ctx.PROX:
        D = free_set(x, ctx)
        a, ok = cg(x, D, free_projection(x, D, g, ctx), tol, ctx)
        w = a + g - hvp_flat(x, a, ctx)
    else:
        w, ok = cg(x, g, g, tol, ctx)  # (no free set: the second argument is not read)
    return w, ok


@kernel
def cg_operator(x, D, v, ctx):
    """The operator CG inverts: H v, or P H P v + (I - P) v with P the projection onto the free set D.

    It maps the free directions into themselves, so CG from 0 on a right-hand side there stays
    there: its solution needs no final projection."""
    if ctx.PROX:
        pv = free_projection(x, D, v, ctx)
        out = free_projection(x, D, hvp_flat(x, pv, ctx), ctx) + v - pv
    else:
        out = hvp_flat(x, v, ctx)
    return out


@kernel
def cg(x, D, b, tol, ctx):
    """Conjugate gradients from 0 on cg_operator, to |r| <= tol |b|; (solution, converged)."""
    w = 0.0 * b
    r = b
    p = r
    rs = dot(r, r)
    floor = tiny(ctx)
    target = (tol * at_least(sqrt_(dot(b, b)), floor)) * (tol * at_least(sqrt_(dot(b, b)), floor))
    done = rs <= target
    steps = 0
    while any_(done == 0) & (steps < CG_MAX_ITER):
        Ap = cg_operator(x, D, p, ctx)
        pAp = dot(p, Ap)
        # A direction of non-positive curvature (a singular free-set Hessian) stops the instance.
        alpha = where(done | (pAp <= 0.0), 0.0 * rs, rs / where(pAp == 0.0, 1.0 + 0.0 * pAp, pAp))
        w = w + alpha * p
        r = r - alpha * Ap
        rs_new = dot(r, r)
        p = r + where(done, 0.0 * rs, rs_new / at_least(rs, floor)) * p
        rs = rs_new
        done = done | (rs <= target) | (pAp <= 0.0)
        steps += 1
    return w, rs <= target
