"""The array interface the shared solvers are written against: its PyTorch spellings.

A solver written once (`newton.py`, `anderson.py`) describes one problem instance: a
state vector x, per-instance scalars (a step length, a residual, a mask) and
matrices (a Jacobian). The Triton backend runs that text inside one program per
instance, with `backends/triton/templates/ops.py` spelling each name below in
`tl`; here the same text runs on a whole batch at once, so a vector is (B, n),
a matrix (B, n, n), and a per-instance scalar (B, 1) (a trailing 1, so scalars
broadcast against vectors as they do in a Triton tile).

The rules the shared text keeps, so that it means the same on both backends:
control flow branches only on `any_(mask)` (a Triton scalar, here "any element")
or on the context's constant flags (`ctx.MINIMIZE`: a constexpr there); every
update is masked per instance (`where`), so an element that has stopped keeps
its values; `~` only on masks, never on Python bools; `ctx` is the last argument
of a function that needs the problem (the Triton printer replaces it with the
instance's param tiles and sizes).
"""
from __future__ import annotations

import torch

from optlang.backends.torch.support import matvec, vecmat
from optlang.solvers import linalg


class Context:
    """One flattened batch of problem instances as the shared solvers see it.

    `prob` is a BoundProblem with batch (B,) (or anything with its residual,
    gradient, ... on the flat state; for the interior point, ipm._Instances,
    whose `kkt` has its functions); the upper-case flags are the solver's
    compile-time constants (module constexprs in a Triton module);
    `deadline` is checked once per outer iteration, and `timed_out` records that
    a solve stopped on it.
    """

    def __init__(self, prob, deadline, **flags):
        self.prob = prob
        self.deadline = deadline
        self.timed_out = False
        self.index = torch.arange(prob.batch[0], device=prob.device)  # the instances still in the batch
        self.results = None  # the full batch's results, where compaction has stored some
        self.factor = None  # a constant Jacobian's Cholesky factor for the backward (keep_factor)
        self.hessian = None  # a quadratic's constant Hessian for the backward (keep_hessian)
        for name, value in flags.items():
            setattr(self, name, value)

    def store(self, results, which):
        """Write the results of the instances `which` (a mask on the current batch) into the full batch's."""
        if self.results is None:
            size = int(self.index.max()) + 1 if len(self.index) else 0
            self.results = [torch.empty((size,) + r.shape[1:], dtype=r.dtype, device=r.device) for r in results]
        for out, r in zip(self.results, results):
            out.index_copy_(0, self.index[which], r[which])


def kernel(fn):
    """Marks a function of the shared text: the Triton printer takes it (as a @triton.jit function)."""
    return fn


# -- control flow --------------------------------------------------------------
def any_(mask):
    """Whether any instance's mask is set (a branch or loop condition)."""
    return bool(mask.any())


def keep_going(going, ctx):
    """The outer loop's condition: some instance is still going and the deadline has not passed."""
    if not bool(going.any()):
        return False
    if ctx.deadline.passed():
        ctx.timed_out = True
        return False
    return True


# -- batch scheduling: PyTorch only (one Triton program holds one instance; shared.BATCH_ONLY) --
COMPACT = 0.5  # compact the batch when at most this fraction of it is still going


def compact(going, results, carried, ctx):
    """Drop the instances that have stopped from the batch, once at most COMPACT of it is going.

    `results` are what the solve returns (an instance's final values once it stops), `carried` the
    rest of its loop state; both come back as one tuple, for the instances still going. A few
    stragglers then cost their own iterations, not the whole batch's.
    """
    keep = going.squeeze(-1)
    if int(keep.sum()) > COMPACT * len(keep):
        return tuple(results) + tuple(carried)
    ctx.store(results, ~keep)
    ctx.index = ctx.index[keep]
    ctx.prob = ctx.prob.take(keep.nonzero().squeeze(-1))
    return tuple(v[keep] for v in tuple(results) + tuple(carried))


def compact_with_hessian(going, results, carried, H, ctx):
    """compact for FISTA's polish, with its Hessian H carried last: compacted too, unless it is the
    batch's one shared (n, n) Hessian (SHARED_HESSIAN), which every instance keeps reading."""
    if ctx.SHARED_HESSIAN:
        return compact(going, results, carried, ctx) + (H,)
    return compact(going, results, tuple(carried) + (H,), ctx)


def nested(ctx):
    """A Context of its own for a loop inside a solve (the polish inside FISTA): the same instances and
    flags, whose compaction drops instances from that loop only; `finish` there gives back every
    instance the loop began with, in order, and the caller's batch is untouched."""
    inner = Context(ctx.prob, ctx.deadline)
    for name, value in vars(ctx).items():
        if name.isupper():
            setattr(inner, name, value)
    return inner


def keep_factor(chol, factored, ctx):
    """Keep a constant matrix's factor for the implicit solves (which solve with the same matrix), where
    every instance factored; returns chol. Called before the loop, so the batch is still the full one."""
    if bool(factored.all()):
        ctx.factor = chol
    return chol


def keep_hessian(H, quadratic, ctx):
    """Keep a quadratic's constant Hessian for the implicit solves (`linalg.FreeSetSystem`, where the prox's
    Jacobian is a 0/1 mask), where every instance's is finite; returns H. Called before the loop."""
    if ctx.DIAGONAL and bool(quadratic.all()):
        ctx.hessian = H
    return H


def finish(results, ctx):
    """The full batch's results: what compaction stored, and the last values of the instances left."""
    if ctx.results is None:
        return tuple(results)
    ctx.store(results, torch.ones(len(ctx.index), dtype=torch.bool, device=ctx.index.device))
    return tuple(ctx.results)


# -- per-instance scalars and masks ----------------------------------------------
def full(value, ctx):
    return torch.full((ctx.prob.batch[0], 1), value, dtype=ctx.prob.dtype, device=ctx.prob.device)


def zero_count(ctx):
    """A per-instance counter at 0."""
    return torch.zeros((ctx.prob.batch[0], 1), dtype=torch.int64, device=ctx.prob.device)


def where(mask, a, b):
    """a where the instance's mask is set, else b (vectors or scalars)."""
    return torch.where(mask, a, b)


def where_matrix(mask, a, b):
    return torch.where(mask.unsqueeze(-1), a, b)


def is_finite(a):
    return torch.isfinite(a)


def all_finite(v):
    """Whether every entry of the instance's vector is finite."""
    return linalg.finite_over(v, v.dim() - 1).unsqueeze(-1)


def abs_(a):
    return a.abs()


def sqrt_(a):
    return a.sqrt()


def at_most(a, cap):
    return a.clamp(max=cap)


def at_least(a, floor: float):
    return a.clamp(min=floor)


def machine_eps(ctx):
    return torch.finfo(ctx.prob.dtype).eps


def tiny(ctx):
    return torch.finfo(ctx.prob.dtype).tiny


# -- vectors -----------------------------------------------------------------------
def dot(a, b):
    return (a * b).sum(-1, keepdim=True)


def amax_abs(v):
    """max |v| per instance; 0 for an empty vector (a problem without inequalities or equalities)."""
    return v.abs().amax(-1, keepdim=True) if v.shape[-1] else v.new_zeros(v.shape[:-1] + (1,))


def total(v):
    return v.sum(-1, keepdim=True)


def least(v):
    """min v per instance; inf for an empty vector."""
    return v.amin(-1, keepdim=True) if v.shape[-1] else v.new_full(v.shape[:-1] + (1,), float("inf"))


def maximum(a, b):
    return torch.maximum(a, b)


def minimum(a, b):
    return torch.minimum(a, b)


def relative_residual(F, scale):
    """max|F| / max(1, scale), as optlang.solvers.result.relative_residual."""
    return F.abs().amax(-1, keepdim=True) / scale.clamp(min=1.0)


# -- couplings of a PyTorch batch (a Triton program's own instance: identities there) -------
def batch_all(mask):
    """Whether the mask holds for every instance of the batch."""
    return mask.all()


def batch_any(mask):
    return mask.any()


def batch_max(a):
    return a.max()


# -- matrices (a matrix shared by the batch may be 2-d: one for all instances) -----------------
def identity(A, ctx):
    return torch.eye(A.shape[-1], dtype=A.dtype, device=A.device).expand(A.shape)


def times(A, v):
    """A v per instance: support.matvec, the generated code's product (a shared A multiplies the batch
    as one matrix product; a batch of A is bmm with v as a row)."""
    return matvec(A, v)


def transpose_times(A, v):
    """A' v per instance."""
    return vecmat(v, A)


def row_amax_abs(A):
    """max |A_ij| over each row's entries."""
    return A.abs().amax(-1)


def rows_times(d, A):
    """diag(d) A: row i of A times d_i."""
    return d.unsqueeze(-1) * A


def free_system(H, D, ctx):
    """D H D + (I - D), D a 0/1 mask: H on the free set, the identity off it."""
    return linalg.free_system(H, D)


def all_finite_matrix(A):
    return linalg.finite_over(A, 0) if A.dim() == 2 else linalg.finite_over(A, A.dim() - 2).unsqueeze(-1)


def amax_abs_matrix(A):
    return A.abs().amax() if A.dim() == 2 else A.abs().amax((-2, -1)).unsqueeze(-1)


def power_start(A, x, ctx):
    """A start for power iteration on A, not orthogonal to its top eigenvector: 1 + 0.01 i."""
    shape = A.shape[-1:] if A.dim() == 2 else x.shape
    return 1.0 + 0.01 * torch.arange(A.shape[-1], dtype=A.dtype, device=A.device).expand(shape)


def transpose(A):
    return A.transpose(-1, -2)


def diagonal(A, ctx):
    return A.diagonal(dim1=-2, dim2=-1)


def add_diagonal(A, s, ctx):
    """A + s I, s a per-instance scalar."""
    return A + s.unsqueeze(-1) * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)


def solve(A, b, ctx):
    """(x, singular) with A x = b: LU with partial pivoting, least squares where A is singular."""
    x, singular = linalg.solve(A, b)
    return x, singular.unsqueeze(-1)


def cholesky(A, ctx):
    """(L, ok): the lower Cholesky factor of A, and whether A was numerically positive definite."""
    L, info = torch.linalg.cholesky_ex(A)
    return L, ((info == 0) & linalg.finite_over(L, L.dim() - 2)).unsqueeze(-1)


def cholesky_solve(L, b, ctx):
    return linalg.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)


# -- the problem's functions on the flat state -----------------------------------------
def residual_flat(x, ctx):
    return ctx.prob.residual(x)


def gradient_flat(x, ctx):
    return ctx.prob.gradient(x)


def objective_flat(x, ctx):
    return ctx.prob.objective(x).unsqueeze(-1)


def objective_gradient_flat(x, ctx):
    """(objective_flat(x), gradient_flat(x)) from one generated function."""
    f, g = ctx.prob.objective_gradient(x)
    return f.unsqueeze(-1), g


def jacobian(x, ctx):
    return ctx.prob.jacobian(x)


def hvp_flat(x, v, ctx):
    return ctx.prob.hvp(x, v)


def hessian(x, ctx):
    """The dense Hessian of f at x from n HVPs: (B, n, n), or (n, n) where it reads no param
    (ctx.SHARED_HESSIAN: one for the whole batch)."""
    if ctx.SHARED_HESSIAN:
        return ctx.prob.jacobian(x.new_zeros(ctx.prob.n), which="hvp")
    return ctx.prob.jacobian(x, which="hvp")


def prox_flat(z, step, ctx):
    """prox_{step r}(z); step a per-instance scalar (0: the projection onto the sets)."""
    return ctx.prob.prox(z, step.squeeze(-1))


def free_set(x, ctx):
    """A prox's free set at x as what free_projection takes: its 0/1 mask where the prox is elementwise
    (`free_mask`), else None (a simplex: the projection is the generated prox_jvp)."""
    return ctx.prob.free_mask(x) if ctx.prob.plan.function("free_mask") is not None else None


def free_projection(x, D, v, ctx):
    """P v, P the prox's Jacobian at x - grad f(x): a projection onto the free directions."""
    return D * v if D is not None else ctx.prob.prox_jvp(x, v)


# -- a history: MEMORY rows of the state's size, the newest last (Anderson) -----------------
def history(x, ctx):
    return x.new_zeros(x.shape[0], ctx.MEMORY, x.shape[-1])


def history_rows(count, ctx):
    """The rows holding an instance's last `count` differences."""
    return torch.arange(ctx.MEMORY, device=count.device) >= ctx.MEMORY - count


def row_norms(H):
    return torch.linalg.vector_norm(H, dim=-1)


def divide_rows(H, d):
    return H / d.unsqueeze(-1)


def row_dots(H, v):
    return (H * v.unsqueeze(-2)).sum(-1)


def combine(H, gamma):
    """sum_i gamma_i H_i: the rows weighted by gamma."""
    return (H * gamma.unsqueeze(-1)).sum(-2)


def gram(Q, valid, regularization: float, ctx):
    """Q Q^T on the valid rows, the identity elsewhere, plus regularization times the identity."""
    eye = torch.eye(Q.shape[-2], dtype=Q.dtype, device=Q.device)
    both = valid.unsqueeze(-1) & valid.unsqueeze(-2)
    return torch.where(both, Q @ Q.transpose(-1, -2), eye) + regularization * eye


def solve_history(A, b, ctx):
    return solve(A, b, ctx)


def roll_in(H, v, restart):
    """H's rows moved up one, v the newest; where `restart`, v alone (the older rows zeroed)."""
    if H.shape[-2] == 0:  # MEMORY 0: the plain damped iteration keeps no history
        return H
    older = H[..., 1:, :] * (~restart).unsqueeze(-1)
    return torch.cat([older, v.unsqueeze(-2)], dim=-2)


# -- the interior point's KKT blocks (ipm.py); `ctx.prob.kkt` is runtime/kkt.py's KKTView -------
# The state is x (B, n), the inequality rows' s, lam, g (B, m), the equality rows' nu, h (B, p); Jg is
# (B, m, n), Jh (B, p, n), H (B, n, n). A Triton tile is padded past each block's size: `ineq_only`
# keeps the padding out there; here every entry is a row.
def ineq_only(v, fill, ctx):
    """v on the inequality rows, `fill` on a Triton tile's padding: v itself here."""
    return v


def ineq_count(ctx):
    """The number of inequality rows, at least 1 (mu's denominator)."""
    return float(max(ctx.prob.kkt.m, 1))


def constraint_jacobians(x, ctx):
    """(Jg, Jh) at x; empty blocks where there are no rows."""
    prob, (B, n) = ctx.prob.kkt, x.shape
    Jg = prob.ineq_jacobian(x) if prob.m else x.new_zeros(B, 0, n)
    Jh = prob.eq_jacobian(x) if prob.p else x.new_zeros(B, 0, n)
    return Jg, Jh


def evaluate(x, Jg, Jh, ctx):
    """f, grad f, g, Jg, h, Jh at x: the Jacobians given (affine constraints: constant) or rebuilt."""
    prob, B = ctx.prob.kkt, x.shape[0]
    g = prob.ineq(x) if prob.m else x.new_zeros(B, 0)
    h = prob.eq(x) if prob.p else x.new_zeros(B, 0)
    if ctx.NONLINEAR:
        Jg, Jh = constraint_jacobians(x, ctx)
    return prob.objective(x).unsqueeze(-1), prob.gradient(x), g, Jg, h, Jh


def lagrangian_hessian(x, lam, nu, ctx):
    return ctx.prob.kkt.lagrangian_hessian(x, lam, nu)


def finite_point(x, s, lam, nu, f, grad, g, Jg, h, Jh, ctx):
    """Whether the point is finite per instance: its vectors (a constant Jacobian was checked at the
    start), and the Jacobians where they change (nonlinear g)."""
    B = x.shape[0]
    ok = linalg.finite_over(torch.cat([x, s, lam, nu, f, grad, g, h], dim=-1).reshape(B, -1), 1)
    if ctx.NONLINEAR:
        ok = ok & linalg.finite_over(Jg, 1) & linalg.finite_over(Jh, 1)
    return ok.unsqueeze(-1)


def eliminate(H, Jg, Jh, s, lam, going, ctx):
    """The regularized reduced system [[Kx, Jh'], [Jh, -d I]] with Kx = H + Jg' diag(lam / s) Jg + d I,
    d = eps^(2/3), eliminated: (Kx factored, Z = Kx^-1 Jh', S = Jh Z + d I factored).

    Quasi-definite for any d > 0, so LPs (H = 0) and redundant equality rows still factor; Kx and S
    are symmetric positive definite for convex f and g: Cholesky (LU where rounding breaks it, the
    pseudo-inverse past a zero pivot). An instance not going gets the identity: its (extreme)
    scaling must not break the batch."""
    n, p = H.shape[-1], Jh.shape[-2]
    delta = torch.finfo(H.dtype).eps ** (2 / 3)
    eye_n = torch.eye(n, dtype=H.dtype, device=H.device)
    everyone = bool(going.all())  # then no instance's matrix is replaced
    weighted = (lam / s).unsqueeze(-1) * Jg
    if Jg.dim() == 3:  # (H + d I) + Jg' diag(lam / s) Jg in one product
        Kx = torch.baddbmm(H + delta * eye_n, Jg.transpose(1, 2), weighted)
    else:
        Kx = H + Jg.transpose(-1, -2) @ weighted + delta * eye_n
    Kx = _Factored(Kx if everyone else torch.where(going.unsqueeze(-1), Kx, eye_n))
    if p == 0:
        return Kx, None, None
    Z = Kx(Jh.transpose(-1, -2))
    eye_p = torch.eye(p, dtype=H.dtype, device=H.device)
    S = Jh @ Z + delta * eye_p
    return Kx, Z, _Factored(S if everyone else torch.where(going.unsqueeze(-1), S, eye_p))


def system_times(K, v, ctx):
    """K v for a matrix `eliminate` factored."""
    return times(K.matrix, v)


def regularization(ctx):
    """d = eps^(2/3), the reduced system's regularization."""
    return torch.finfo(ctx.prob.dtype).eps ** (2 / 3)


class _Factored:
    """A matrix and its solver (`linalg.spd_solver`): calling it solves."""

    def __init__(self, matrix):
        self.matrix = matrix
        self.solve = linalg.spd_solver(matrix)

    def __call__(self, b):
        return self.solve(b)


def reduced_solve(Kx, Z, S, Jh, r1, r_h, ctx):
    """(dx, dnu) with [[Kx, Jh'], [Jh, -d I]] (dx, dnu) = (r1, -r_h), from `eliminate`: dnu = S^-1 (Jh y
    + r_h) and dx = y - Z dnu, y = Kx^-1 r1."""
    y = Kx(r1)
    if Z is None:
        return y, r_h
    dnu = S(times(Jh, y) + r_h)
    return y - times(Z, dnu), dnu
