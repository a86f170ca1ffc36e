"""Helpers the generated PyTorch code calls: shape moves that need the batch dims.

Generated code carries any number of leading batch dims; these helpers know
only the declared rank of their operand and count dims from the right.
"""
from __future__ import annotations

import contextlib
import threading

import torch
from torch.autograd import forward_ad


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
# call by matmul (einsum's planning costs about 8 us a call, most of a small product); so is a
# dense Jacobian's batch of directions (x (..., k, j)) against one matrix per instance (a
# (..., 1, i, j), as BoundProblem.jacobian lays the params out): the k directions are the rows of
# one matrix-matrix product per instance (a third faster than einsum's plan for logistic's 64 x
# 200 x 20). Other batch layouts go through einsum, which finds one matrix-matrix product where
# matmul's broadcasting would copy the matrix.
def _directions_against(a, x) -> bool:
    """Whether x (..., k, j) holds k vectors against a (..., 1, i, j), one matrix per leading index."""
    return a.dim() >= 3 and x.dim() == a.dim() - 1 and a.shape[-3] == 1 and a.shape[:-3] == x.shape[:-2]


def matvec(a, x):
    """a (..., i, j) times x (..., j): (..., i)."""
    if a.dim() == 2:
        return torch.matmul(x, a.transpose(0, 1))
    if a.shape[:-2] == x.shape[:-1]:
        # x as a row times a': MKL's batched product with one row is 2-3x faster on the CPU than with
        # one column (a 64 x 40 x 20 batch 17 us against 30, 1024 x 100 x 100 3.6 ms against 11.8);
        # one batch dim is bmm itself, without the six small ops matmul adds around it
        if a.dim() == 3:
            return torch.bmm(x.unsqueeze(1), a.transpose(1, 2)).squeeze(1)
        return torch.matmul(x.unsqueeze(-2), a.transpose(-1, -2)).squeeze(-2)
    if _directions_against(a, x):
        return torch.matmul(x, a.squeeze(-3).transpose(-1, -2))
    return torch.einsum('...ij,...j->...i', a, x)


def vecmat(x, a):
    """x (..., i) times a (..., i, j): (..., j)."""
    if a.dim() == 2:
        return torch.matmul(x, a)
    if a.shape[:-2] == x.shape[:-1]:
        if a.dim() == 3:
            return torch.bmm(x.unsqueeze(1), a).squeeze(1)
        return torch.matmul(x.unsqueeze(-2), a).squeeze(-2)
    if _directions_against(a, x):
        return torch.matmul(x, a.squeeze(-3))
    return torch.einsum('...i,...ij->...j', x, a)


def matmat(a, b):
    """a (..., i, j) times b (..., j, k): (..., i, k)."""
    if a.shape[:-2] == b.shape[:-2] or b.dim() == 2:
        return torch.matmul(a, b)
    return torch.einsum('...ij,...jk->...ik', a, b)


def mask(cond, like):
    """A 0/1 tensor of `like`'s dtype."""
    return cond.to(like.dtype) if isinstance(like, torch.Tensor) else cond.to(torch.get_default_dtype())


class TauMemo:
    """simplex_tau's last value: (z, z's version counter then or None, dims, tau), or None.

    z is the tensor itself, not a copy: an in-place write to it bumps its version counter, and the
    value is then not given again. An inference-mode tensor counts no versions: a copy is kept."""

    last = None


class _Current(threading.local):
    memo = None  # the TauMemo of the `memo_scope` this thread is in


_current = _Current()


@contextlib.contextmanager
def memo_scope(memo: TauMemo | None = None):
    """Let simplex_tau keep its last value in `memo` (a new one by default) while in the scope.

    A solve asks for the threshold at the same point several times (the prox step, then the
    residual at the solution, then the backward's param gradients at the same params), so the
    last value is given again for an input bitwise equal to the last one. A layer call's forward
    and backward share one memo (the executor keeps it on the SolveResult); a value never carries
    over to another call, whatever its inputs (a benchmark repeating one input would otherwise
    time a comparison instead of the threshold)."""
    outer = _current.memo
    _current.memo = TauMemo() if memo is None else memo
    try:
        yield _current.memo
    finally:
        _current.memo = outer


def simplex_tau(z, dims: tuple):
    """The threshold tau with sum(relu(z - tau)) == 1 over `dims` (negative, declared dims).

    A plain tensor takes Newton's steps (`_newton_tau`, no sort), and inside a `memo_scope` the
    value for an input bitwise equal to the last one is the last value (a comparison costs O(n);
    for the same memory, unwritten since, none).
    A tensor that some derivative follows (autograd, forward AD, a torch.func transform) takes the
    sorting formula instead: branch-free, so autograd differentiates it (d tau/dz = s / |S|) and
    vmap batches it, where the steps stop on the data. Both find the same threshold, to rounding.
    """
    if _followed(z):
        return _sorted_tau(z, dims)
    memo = _current.memo
    last = None if memo is None else memo.last
    if last is not None:
        held, version, held_dims, tau = last
        if held_dims == dims and held.shape == z.shape and held.dtype == z.dtype and held.device == z.device \
                and (version is None or held._version == version):
            if version is not None and _same_memory(held, z):  # the backward's params: no pass over them
                return tau
            if torch.equal(held, z):
                _remember(memo, z, dims, tau)  # the params, after the prox's own copy of them
                return tau
    tau = _newton_tau(z, dims)
    if memo is not None:
        _remember(memo, z, dims, tau)
    return tau


def _remember(memo: TauMemo, z, dims: tuple, tau) -> None:
    memo.last = (z.clone(), None, dims, tau) if z.is_inference() else (z, z._version, dims, tau)


def _same_memory(a, b) -> bool:
    """Whether a and b read the same elements of the same memory (b a detached view of a, say)."""
    return a.data_ptr() == b.data_ptr() and a.stride() == b.stride()


def _followed(z) -> bool:
    """Whether a derivative follows z: reverse mode, a forward-AD dual, or a torch.func transform."""
    return (z.requires_grad and torch.is_grad_enabled()) or torch._C._functorch.is_functorch_wrapped_tensor(z) \
        or forward_ad.unpack_dual(z).tangent is not None


def _last_dim(z, dims: tuple):
    """z with the reduced dims moved last and flattened into one."""
    moved = torch.movedim(z, dims, tuple(range(-len(dims), 0)))
    return moved.reshape(moved.shape[: moved.dim() - len(dims)] + (-1,))


def _sorted_tau(z, dims: tuple):
    """By sorting (Held et al.; Duchi et al. 2008): the support is the k largest entries for the
    largest k with z_(k) > (sum_{i<=k} z_(i) - 1) / k."""
    flat = _last_dim(z, dims)
    ordered, _ = torch.sort(flat, dim=-1, descending=True)
    partial = ordered.cumsum(-1) - 1
    k = torch.arange(1, flat.shape[-1] + 1, dtype=z.dtype, device=z.device)
    size = (ordered - partial / k > 0).sum(-1, keepdim=True).clamp(min=1)
    return (partial.gather(-1, size - 1) / size.to(z.dtype)).squeeze(-1)


def _newton_tau(z, dims: tuple):
    """Newton's method on phi(t) = sum(relu(z - t)) - 1 from t = max z - 1, no sort (the Triton
    backend's simplex_tau_ takes the same steps).

    phi is convex, piecewise linear and decreasing, and max z - 1 <= tau, so each step
    t + phi(t) / #{z > t} lands at or below tau, and the count of entries above t only falls: at
    most n steps, and as many as the support's size changes, a handful in practice. Once the count
    stays the same, the step came from tau's linear piece and landed on tau. Each step is four
    passes over one buffer: relu(z - t) in place, its sum, and its count as the sum of its signs
    (a float sum; comparing into a bool tensor and counting that costs twice as much). Six steps
    on sparsemax's 1024 x 100 take about a third of a sort's time (0.78 against 2.3 ms).
    """
    flat = _last_dim(z, dims)
    t = flat.amax(-1, keepdim=True) - 1.0
    d = flat - t  # one buffer for relu(z - t), one for its signs, over all the steps
    signs = torch.empty_like(d)
    count = None
    for _ in range(flat.shape[-1] + 1):
        d.clamp_(min=0)
        # sign(NaN) is 0: a NaN row counts no support, as a comparison would, and stops with the others
        new_count = torch.sign(d, out=signs).sum(-1, keepdim=True)
        if count is not None and torch.equal(new_count, count):
            break
        count = new_count
        t = t + (d.sum(-1, keepdim=True) - 1.0) / count.clamp(min=1)
        torch.sub(flat, t, out=d)
    return t.squeeze(-1)
