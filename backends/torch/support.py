"""Helpers the generated PyTorch code calls: shape moves that need the batch dims.

Generated code carries any number of leading batch dims; these helpers know
only the declared rank of their operand and count dims from the right.
"""
from __future__ import annotations

import torch


def align(a, rank: int, out_rank: int):
    """Insert unit dims after the batch dims so a rank-`rank` operand broadcasts to `out_rank`."""
    if not isinstance(a, torch.Tensor) or rank == out_rank:
        return a
    index = (Ellipsis,) + (None,) * (out_rank - rank) + (slice(None),) * rank
    return a[index]


def broadcast_to(a, rank: int, shape: tuple, like: torch.Tensor):
    """Broadcast a rank-`rank` operand to the declared `shape`, keeping its batch dims."""
    if not isinstance(a, torch.Tensor):
        return torch.full(shape, float(a), dtype=like.dtype, device=like.device)
    a = align(a, rank, len(shape))
    batch = a.shape[: a.dim() - len(shape)]
    return a.expand(*batch, *shape)


def sum_to(a, rank: int, shape: tuple):
    """Sum a rank-`rank` operand down to the declared `shape` (the adjoint of broadcasting)."""
    lead = rank - len(shape)
    if lead:
        a = a.sum(dim=tuple(range(-rank, -rank + lead)))
    keep = [-len(shape) + i for i, d in enumerate(shape) if d == 1 and a.shape[-len(shape) + i] != 1]
    if keep:
        a = a.sum(dim=tuple(keep), keepdim=True)
    return a


def full(shape: tuple, value: float, like: torch.Tensor):
    return torch.full(shape, value, dtype=like.dtype, device=like.device)


def eye(n: int, like: torch.Tensor):
    return torch.eye(n, dtype=like.dtype, device=like.device)


# Products. A matrix without batch dims, or with the same batch dims as the vector, is one BLAS
# call by matmul (einsum's planning costs about 8 us a call, most of a small product); other
# batch layouts (a dense Jacobian's direction dim against a batch of matrices) go through einsum,
# which finds one matrix-matrix product where matmul's broadcasting would copy the matrix.
def matvec(a, x):
    """a (..., i, j) times x (..., j): (..., i)."""
    if a.dim() == 2:
        return torch.matmul(x, a.transpose(0, 1))
    if a.shape[:-2] == x.shape[:-1]:
        return torch.matmul(a, x.unsqueeze(-1)).squeeze(-1)
    return torch.einsum('...ij,...j->...i', a, x)


def vecmat(x, a):
    """x (..., i) times a (..., i, j): (..., j)."""
    if a.dim() == 2:
        return torch.matmul(x, a)
    if a.shape[:-2] == x.shape[:-1]:
        return torch.matmul(x.unsqueeze(-2), a).squeeze(-2)
    return torch.einsum('...i,...ij->...j', x, a)


def matmat(a, b):
    """a (..., i, j) times b (..., j, k): (..., i, k)."""
    if a.shape[:-2] == b.shape[:-2] or b.dim() == 2:
        return torch.matmul(a, b)
    return torch.einsum('...ij,...jk->...ik', a, b)


def mask(cond, like):
    """A 0/1 tensor of `like`'s dtype."""
    return cond.to(like.dtype) if isinstance(like, torch.Tensor) else cond.to(torch.get_default_dtype())


_last_tau = None  # (a copy of z, dims, tau): simplex_tau's last value computed outside autograd


def simplex_tau(z, dims: tuple):
    """The threshold tau with sum(relu(z - tau)) == 1 over `dims` (negative, declared dims).

    By sorting (Held et al.; Duchi et al. 2008): the support is the k largest
    entries for the largest k with z_(k) > (sum_{i<=k} z_(i) - 1) / k.

    A solve asks for it at the same point many times (the residual at the
    solution, then each free-set projection of the backward's conjugate
    gradients, then the param gradients): the last value is kept, and given
    again for an input bitwise equal to the last one (a comparison costs O(n),
    the sort O(n log n) and most of a sparsemax layer's time). Never under
    autograd, whose graph must be built from the input at hand.
    """
    global _last_tau
    tracked = z.requires_grad and torch.is_grad_enabled()
    last = _last_tau
    if not tracked and last is not None and last[1] == dims and last[0].shape == z.shape \
            and last[0].dtype == z.dtype and last[0].device == z.device and torch.equal(last[0], z):
        return last[2]
    tau = _simplex_tau(z, dims)
    if not tracked:
        _last_tau = (z.clone(), dims, tau)
    return tau


def _simplex_tau(z, dims: tuple):
    moved = torch.movedim(z, dims, tuple(range(-len(dims), 0)))
    flat = moved.reshape(moved.shape[: moved.dim() - len(dims)] + (-1,))
    ordered, _ = torch.sort(flat, dim=-1, descending=True)
    partial = ordered.cumsum(-1) - 1
    k = torch.arange(1, flat.shape[-1] + 1, dtype=z.dtype, device=z.device)
    size = (ordered - partial / k > 0).sum(-1, keepdim=True).clamp(min=1)
    return (partial.gather(-1, size - 1) / size.to(z.dtype)).squeeze(-1)
