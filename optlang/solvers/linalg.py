"""Batched dense linear solves that degrade gracefully on singular systems."""
from __future__ import annotations

import math

import torch

from optlang.backends.torch.support import matvec


def finite_over(t: torch.Tensor, start: int) -> torch.Tensor:
    """Per index of t's first `start` dims: whether every entry past them is finite.

    Exact. A sum is finite only where every entry is (an inf or a NaN anywhere makes it inf or NaN),
    so one sum settles it wherever it comes out finite: one pass over t, where isfinite(t).all(...)
    allocates a bool tensor and reduces it (about ten times the time on the CPU, and the checks run
    on every call). Where it is not finite, finite entries may have overflowed it: those indices are
    checked again by t * 0, which is 0 where t is finite and NaN where it is not. On the CPU the
    second look is taken only when needed (reading the flag back is free there); elsewhere always."""
    if start >= t.dim():
        return torch.isfinite(t)
    dims = tuple(range(start, t.dim()))
    if t.device.type == "cpu":
        finite = torch.isfinite(t.sum(dim=dims))
        if bool(finite.all()):
            return finite
    return torch.isfinite((t * 0).sum(dim=dims))


# From this many rows on, the CPU solves with a Cholesky factor as two batched triangular solves.
TRIANGULAR_SOLVES_FROM = 24


def cholesky_solve(b: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """torch.cholesky_solve(b, L): A^-1 b for A = L L', b a block of columns (..., n, k).

    LAPACK's potrs is the two triangular solves L y = b, L' x = y, and gives the same numbers (bitwise,
    checked); but batched on the CPU, MKL's potrs costs up to 2.7 times as much as two batched trsm
    calls: 4096 x 64 x 64 takes 73 ms against 27, 128 x 32 x 32 214 us against 153 (one thread). Below
    about 24 rows the two are even, and one call has less overhead. Elsewhere (CUDA) as torch does it."""
    if L.device.type != "cpu" or L.shape[-1] < TRIANGULAR_SOLVES_FROM:
        return torch.cholesky_solve(b, L)
    y = torch.linalg.solve_triangular(L, b, upper=False)
    return torch.linalg.solve_triangular(L.transpose(-1, -2), y, upper=True)


def _imprecise(pivots: torch.Tensor) -> torch.Tensor:
    """Per element, from the absolute pivots of a factorization (*batch, n): whether the matrix is
    singular to working precision, the smallest pivot at most n eps times the largest. That is
    LAPACK's rcond < eps warning, with the condition number estimated by the pivots: an exactly or
    numerically rank-deficient matrix (a derivative that is not unique) factors without an error, and
    its solution is rounding amplified past 1 / eps, a number with no correct digits."""
    largest = pivots.amax(-1)
    return (pivots.amin(-1) <= pivots.shape[-1] * torch.finfo(pivots.dtype).eps * largest) | ~torch.isfinite(largest)


def _scaled_pivots(A: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The pivots of the Cholesky factorization of S A S, S = diag(A)^(-1/2) (unit diagonal: a scale-free
    measure of A's conditioning, as `solve`'s row scaling), from A's own factor L: L_ii^2 / A_ii."""
    diagonal = torch.diagonal(A, dim1=-2, dim2=-1)
    return torch.diagonal(L, dim1=-2, dim2=-1).square() / diagonal.clamp(min=torch.finfo(A.dtype).tiny)


def _finite_sum(*ts: torch.Tensor) -> bool:
    """Whether the sum of all entries of ts is finite (so each entry is): read back, as a bool."""
    total = ts[0].detach().sum()
    for t in ts[1:]:
        total = total + t.detach().sum()
    return math.isfinite(float(total))


def all_finite(*ts: torch.Tensor) -> bool:
    """Whether every entry of every t is finite: one sum read back where it comes out finite (as
    finite_over's), however many tensors (a read each had cost a sync each on the CPU as well)."""
    if not ts:
        return True
    if ts[0].device.type == "cpu" and _finite_sum(*ts):
        return True
    return all(bool(torch.isfinite(t).all()) for t in ts)


def solve(A: torch.Tensor, b: torch.Tensor, precise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A x = b per batch element; returns (x, singular mask).

    LU with partial pivoting first; elements whose factorization fails or
    gives non-finite values are re-solved by least squares (the minimum-norm
    solution), and flagged so the caller can report them. An element whose
    A or b is itself non-finite has no solution to give: its x is 0 (finite,
    flagged), and it never reaches a factorization that would fail the batch.
    `precise`: so are the elements singular to working precision (`_imprecise`),
    which LU factors without an error (the implicit function theorem's solves).
    """
    if A.shape[:-2] != b.shape[:-1]:
        A, b = torch.broadcast_tensors(A, b.unsqueeze(-1))
        b = b[..., 0]
    if precise:
        # Rows scaled to a largest entry of 1 first (the same solutions): the pivots then measure A's
        # conditioning, not its rows' scales (a free block of a tiny Hessian beside identity rows).
        # The least squares below are of the system as given, as the general path's.
        rows = 1.0 / A.abs().amax(-1).clamp(min=torch.finfo(A.dtype).tiny)
        LU, pivots, info = torch.linalg.lu_factor_ex(A * rows.unsqueeze(-1))
        x = torch.linalg.lu_solve(LU, pivots, (b * rows).unsqueeze(-1)).squeeze(-1)
        bad = (info != 0) | _imprecise(torch.diagonal(LU, dim1=-2, dim2=-1).abs()) | ~finite_over(x, x.dim() - 1)
        if not bool(bad.any()):
            return x, bad
        x, flagged = solve(A, b)  # the general path takes the non-finite elements and those LU fails
        near = bad & ~flagged & finite_over(A, A.dim() - 2) & finite_over(b, b.dim() - 1)
        if bool(near.any()):
            x = x.clone()
            x[near] = (torch.linalg.pinv(A[near]) @ b[near].unsqueeze(-1)).squeeze(-1)
        return x, flagged | near
    if A.device.type == "cpu" and _finite_sum(A, b):
        # A and b are finite (their sum is finite exactly then, up to an overflow, which takes the
        # checks below), and the common case is settled in two more reads (free on the CPU): every
        # factorization succeeded and x is finite. A small system's checks had cost more than its LU.
        x, info = torch.linalg.solve_ex(A, b.unsqueeze(-1))
        x = x.squeeze(-1)
        if _finite_sum(x) and not bool(info.any()):
            return x, torch.zeros(A.shape[:-2], dtype=torch.bool)
        finite = torch.ones(A.shape[:-2], dtype=torch.bool)
    else:
        finite = finite_over(A, A.dim() - 2) & finite_over(b, b.dim() - 1)
        if not bool(finite.all()):
            eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
            A = torch.where(finite[..., None, None], A, eye)
            b = torch.where(finite[..., None], b, torch.zeros_like(b))
        x, info = torch.linalg.solve_ex(A, b.unsqueeze(-1))
        x = x.squeeze(-1)
    bad = (info != 0) | ~finite_over(x, x.dim() - 1)
    if bad.any():
        pinv = torch.linalg.pinv(A[bad])
        x = x.clone()
        x[bad] = (pinv @ b[bad].unsqueeze(-1)).squeeze(-1)
    return x, bad | ~finite


class CholeskyFactor:
    """dF/dx already factored (a convex quadratic's constant Hessian, factored by the forward Newton
    solve): what the direct linear solves take in place of the dense Jacobian. L is (*batch, n, n)
    and broadcasts against a right-hand side with more batch dims. dF/dx is symmetric, so the
    transposed system is the same one."""

    def __init__(self, L: torch.Tensor, imprecise: torch.Tensor | None = None):
        self.L = L
        if imprecise is None:  # singular to working precision (`solve`'s `precise`): A_ii = |row i of L|^2
            rows = L.square().sum(-1).clamp(min=torch.finfo(L.dtype).tiny)
            imprecise = _imprecise(torch.diagonal(L, dim1=-2, dim2=-1).square() / rows)
        self.imprecise = imprecise

    @property
    def shape(self):
        return self.L.shape

    def expand(self, shape) -> "CholeskyFactor":
        """The same factor for more batch dims in front (a vmapped tangent's), checked once."""
        return CholeskyFactor(self.L.expand(shape), self.imprecise.expand(shape[:-2]))

    def solve(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, singular): dF/dx y = b. Where the factor says dF/dx is singular to working precision (a
        Hessian that Cholesky factored with pivots of rounding's size), `solve` of L L' with `precise`:
        the least-squares solution, flagged."""
        y = cholesky_solve(b.unsqueeze(-1), self.L).squeeze(-1)
        if not bool(self.imprecise.any()):
            return y, torch.zeros(y.shape[:-1], dtype=torch.bool, device=y.device)
        return solve(self.L @ self.L.transpose(-1, -2), b, precise=True)


def free_system(H: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """D H D + (I - D), D a 0/1 mask: H on the free set, the identity off it (SPD where H is).

    I - D is added to the product's diagonal in place: the product is a new tensor, and a dense
    diag_embed(1 - D) and its addition were two more full-size passes (64 x 20 x 20: 60 us against 31)."""
    system = D.unsqueeze(-1) * H * D.unsqueeze(-2)
    system.diagonal(dim1=-2, dim2=-1).add_(1.0 - D)
    return system


class FreeSetSystem:
    """dF/dx = (I - D) + D H of a proximal-gradient fixed point F = x - prox(x - grad f(x)) whose prox
    Jacobian D is a 0/1 mask (boxes, norm1) and whose f has the constant Hessian H: what the direct
    linear solves take in place of the dense Jacobian. Off the free set a solution is read off, on it
    H_FF is factored by Cholesky, as S = D H D + (I - D) (SPD where H is positive definite on the free
    set): a transposed system J'w = b is u = S^-1 D b, w = u + (I - D)(b - H u); an untransposed one
    J z = v is a = (I - D) v, z = a + S^-1 D (v - H a). The elements S does not factor (H singular on
    the free set: more free coordinates than data) take `solve` of the dense J, least squares where
    it is singular, as they would without this."""

    def __init__(self, H: torch.Tensor, D: torch.Tensor, factored=None):
        self.H, self.D = H, D
        if factored is None:
            system = free_system(H, D)
            L, info = torch.linalg.cholesky_ex(system)
            imprecise = _imprecise(_scaled_pivots(system, L))  # see `solve`'s `precise`
            factored = L, (info != 0) | ~finite_over(L, L.dim() - 2) | imprecise
        self.L, self.bad = factored

    @property
    def shape(self):
        return self.L.shape

    def expand(self, shape) -> "FreeSetSystem":
        """The same system for more batch dims in front (a vmapped tangent's), factored once."""
        return FreeSetSystem(self.H, self.D.expand(shape[:-1]), (self.L.expand(shape), self.bad.expand(shape[:-2])))

    def _times_H(self, v):
        return matvec(self.H, v)

    def _solve_S(self, b):
        return cholesky_solve(b.unsqueeze(-1), self.L).squeeze(-1)

    def solve(self, b: torch.Tensor, transpose: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, singular): J'y = b (transpose) or J y = b, b (*batch, n)."""
        D = self.D
        if transpose:
            u = self._solve_S(D * b)
            y = u + (1.0 - D) * (b - self._times_H(u))
        else:
            a = (1.0 - D) * b
            y = a + self._solve_S(D * (b - self._times_H(a)))
        bad = self.bad | ~finite_over(y, y.dim() - 1)
        singular = torch.zeros_like(bad)
        if bool(bad.any()):
            H = self.H.expand(D.shape + D.shape[-1:])[bad]
            J = torch.eye(D.shape[-1], dtype=D.dtype, device=D.device) - D[bad].unsqueeze(-1) * (
                torch.eye(D.shape[-1], dtype=D.dtype, device=D.device) - H)
            y = y.clone()
            y[bad], singular[bad] = solve(J.transpose(-1, -2) if transpose else J, b[bad], precise=True)
        return y, singular


def solve_spd(A: torch.Tensor, b: torch.Tensor, precise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`solve` for a matrix known to be symmetric positive semidefinite (a convex objective's Hessian):
    Cholesky, half the work of LU; the elements it cannot factor (singular, not finite) take `solve`,
    and with `precise` so do those singular to working precision (Cholesky's pivots are L_ii^2)."""
    if A.shape[:-2] != b.shape[:-1]:
        A, b = torch.broadcast_tensors(A, b.unsqueeze(-1))
        b = b[..., 0]
    L, info = torch.linalg.cholesky_ex(A)
    x = cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)
    imprecise = _imprecise(_scaled_pivots(A, L)) if precise else None
    if x.device.type == "cpu" and _finite_sum(x) and not bool(info.any()) \
            and (imprecise is None or not bool(imprecise.any())):
        return x, torch.zeros(x.shape[:-1], dtype=torch.bool)  # as `solve`'s common case
    bad = (info != 0) | ~finite_over(x, x.dim() - 1)
    bad = bad if imprecise is None else bad | imprecise
    singular = torch.zeros_like(bad)
    if bool(bad.any()):
        x = x.clone()
        x[bad], singular[bad] = solve(A[bad], b[bad], precise)
    return x, singular


def spd_solver(A: torch.Tensor):
    """`solve_spd` factored once: solve(b) for several right-hand sides b, each a vector (B, k) or a block
    of columns (B, k, c), A (B, k, k) symmetric positive definite in exact arithmetic (the interior
    point's reduced blocks). Cholesky; the elements it cannot factor (rounding) take `solve`."""
    L, info = torch.linalg.cholesky_ex(A)
    bad = (info != 0) | ~finite_over(L, 1)
    bad = bad if bool(bad.any()) else None

    def solve_(b):
        block = b.dim() == 3
        x = cholesky_solve(b if block else b.unsqueeze(-1), L)
        x = x if block else x.squeeze(-1)
        if bad is not None:
            A_bad, b_bad = A[bad], b[bad]
            if block:  # the columns as one more batch dim of `solve`
                A_bad = A_bad.unsqueeze(1).expand(-1, b.shape[-1], -1, -1)
                x[bad] = solve(A_bad, b_bad.transpose(-1, -2))[0].transpose(-1, -2)
            else:
                x[bad] = solve(A_bad, b_bad)[0]
        return x

    return solve_
