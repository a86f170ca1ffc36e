"""What a forward solve returns: the solution and per-element statistics."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from optlang.solvers.linalg import finite_over

# Per-element outcome codes, `SolveResult.status` holds their index.
STATUS = ("converged", "max_iter", "infeasible", "unbounded", "failed", "time_limit")
CONVERGED, MAX_ITER, INFEASIBLE, UNBOUNDED, FAILED, TIME_LIMIT = range(len(STATUS))
DEFAULT_TIME_LIMIT = 600.0  # seconds a forward solve may run (option time_limit): a safety net, not a budget


class Deadline:
    """The wall-clock end of a solve. Solvers look at it once per iteration and stop when it has
    passed: the elements still running end "time_limit". It bounds a solve whose iterations are each
    slow (huge data, an ill-conditioned line search) where max_iter alone would take hours; an
    iteration that has started is not interrupted."""

    def __init__(self, seconds: float | None):
        self.at = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


NO_DEADLINE = Deadline(None)  # the solvers' default: they never stop on time


@dataclass
class SolveResult:
    """`x` is the flat state (*batch, N); the stats have the batch shape.

    `status` (int64, codes in STATUS) says why an element stopped; None means
    "converged" where `converged`, else "max_iter".
    """

    x: torch.Tensor
    converged: torch.Tensor  # bool
    iterations: torch.Tensor  # int64
    residual: torch.Tensor  # the relative residual at the end
    status: torch.Tensor | None = None
    timed_out: bool = False  # the solve stopped at its Deadline: "max_iter" elements are "time_limit"
    # The Cholesky factor (*batch, n, n) of dF/dx where it is constant and SPD (a convex
    # quadratic's Hessian) and every element factored: the backward solves with it instead of
    # building and factoring the same matrix again.
    factor: torch.Tensor | None = None
    # A quadratic's constant Hessian (*batch, n, n), or (n, n) for the whole batch, where FISTA built it
    # and the prox's Jacobian is a 0/1 mask (boxes, norm1): dF/dx = (I - D) + D H, which the backward
    # solves on the free set (linalg.FreeSetSystem) instead of building it from n JVPs and LU.
    hessian: torch.Tensor | None = None
    # What the backend's helpers kept from the forward for this call's backward (the PyTorch
    # backend's simplex_tau memo); never read by the solvers.
    memo: object = None

    def status_codes(self) -> torch.Tensor:
        """The codes; an element that ended with a non-finite residual or state is "failed"."""
        status = self.status
        if status is None:
            status = torch.where(self.converged, CONVERGED, MAX_ITER).to(torch.int64)
        if self.timed_out:
            status = torch.where(status == MAX_ITER, TIME_LIMIT, status)
        if bool(self.converged.all()):
            return status  # nothing failed
        broken = ~self.converged & ~(torch.isfinite(self.residual) & finite_over(self.x, self.x.dim() - 1))
        return torch.where(broken, FAILED, status)


def default_tol(dtype) -> float:
    """The stopping tolerance on the relative residual when the user sets none.

    Chosen so solutions and gradients are accurate to about 1e-6 relative
    (float64) or as float32 allows, on well-conditioned problems.
    """
    return 1e-10 if dtype == torch.float64 else 1e-5


def relative_residual(F: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """max|F| / max(1, scale): scale-free for large problems, absolute for small ones."""
    return F.abs().amax(dim=-1) / torch.clamp(scale, min=1.0)


def where_text(mask: torch.Tensor, limit: int = 10) -> str:
    """ "at batch elements [...]" for the True entries of a batch-shaped mask ("" without batch dims)."""
    if mask.dim() == 0:
        return ""
    idx = mask.nonzero().tolist()
    return f" at batch elements {idx[:limit]}{' ...' if len(idx) > limit else ''}"
