"""Matrix-free batched linear solvers: restarted GMRES, the Neumann series, power iteration.

Each works on a batch of systems given by `matvec`: (*batch, N) -> (*batch, N),
with a convergence mask per element; an element that has converged stops
changing while the others go on (the matvec still sees the whole batch).
"""
from __future__ import annotations

import torch

from optlang.solvers.linalg import solve


def gmres(matvec, b: torch.Tensor, tol: float, max_iter: int, restart: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """GMRES(restart) for A x = b from x = 0; returns (x, converged) with converged = |b - A x| <= tol |b|.

    `max_iter` bounds the matvecs in total: the Arnoldi steps and the one
    that computes the true residual after each cycle (the convergence flag
    is always checked on the true residual, never on the recurrence alone).
    """
    x = torch.zeros_like(b)
    r = b
    target = tol * torch.linalg.vector_norm(b, dim=-1)
    used = 0
    while True:
        rnorm = torch.linalg.vector_norm(r, dim=-1)
        done = rnorm <= target
        steps = min(restart, max_iter - used - 1)
        if bool(done.all()) or steps < 1:
            return x, done
        # Converged elements enter the cycle with a zero residual, so their update is zero.
        r = torch.where(done[..., None], torch.zeros_like(r), r)
        dx, taken = _cycle(matvec, r, target, steps)
        x = x + dx
        r = b - matvec(x)
        used += taken + 1


def _cycle(matvec, r: torch.Tensor, target: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """One GMRES cycle of at most `steps` Arnoldi steps from residual r; returns (dx, steps taken).

    Arnoldi by modified Gram-Schmidt; the Hessenberg least squares is kept
    triangular by Givens rotations, whose |g_{j+1}| is the residual norm after
    step j. Each element uses the first k of its basis vectors, k the step at
    which its residual reached the target or its Krylov space became invariant.
    """
    beta = torch.linalg.vector_norm(r, dim=-1)
    tiny = torch.finfo(r.dtype).tiny
    V = [r / torch.clamp(beta, min=tiny)[..., None]]
    R = []  # columns of the rotated Hessenberg matrix, each (*batch, j + 1)
    cs, sn = [], []
    g = [beta]
    k = torch.zeros(beta.shape, dtype=torch.int64, device=r.device)
    frozen = beta <= target
    for j in range(steps):
        w = matvec(V[j])
        wnorm = torch.linalg.vector_norm(w, dim=-1)
        h = []
        for v in V:
            hij = (w * v).sum(dim=-1)
            w = w - hij[..., None] * v
            h.append(hij)
        h_next = torch.linalg.vector_norm(w, dim=-1)
        for i in range(j):
            h[i], h[i + 1] = cs[i] * h[i] + sn[i] * h[i + 1], -sn[i] * h[i] + cs[i] * h[i + 1]
        rho = torch.sqrt(h[j] * h[j] + h_next * h_next)
        safe = torch.clamp(rho, min=tiny)
        c = torch.where(rho > 0, h[j] / safe, torch.ones_like(rho))
        s = torch.where(rho > 0, h_next / safe, torch.zeros_like(rho))
        cs.append(c)
        sn.append(s)
        h[j] = rho
        R.append(torch.stack(h, dim=-1))
        g.append(-s * g[j])
        g[j] = c * g[j]
        # A vanishing h_next (relative to |A v_j|) means the Krylov space is invariant: the
        # least squares is then exact, and the next basis vector would be noise.
        invariant = h_next <= 4 * torch.finfo(r.dtype).eps * wnorm
        k = torch.where(frozen, k, k + 1)
        frozen = frozen | (g[j + 1].abs() <= target) | invariant
        V.append(w / torch.clamp(h_next, min=tiny)[..., None])
        if bool(frozen.all()):
            break
    n = len(R)
    if n == 0:
        return torch.zeros_like(r), 0
    Rmat = torch.stack([torch.cat([col, col.new_zeros(*col.shape[:-1], n - col.shape[-1])], dim=-1) for col in R],
                       dim=-1)
    used = torch.arange(n, device=r.device) < k[..., None]
    eye = torch.eye(n, dtype=r.dtype, device=r.device)
    Rmat = torch.where(used[..., None, :] & used[..., :, None], Rmat, eye)
    rhs = torch.where(used, torch.stack(g[:n], dim=-1), torch.zeros_like(used, dtype=r.dtype))
    y, _ = solve(Rmat, rhs)
    return sum(y[..., i, None] * V[i] for i in range(n)), n


def neumann(matvec, b: torch.Tensor, alpha, tol: float, max_terms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = alpha sum_{k<K} (I - alpha A)^k b ~ A^{-1} b; returns (x, converged).

    The inverse-Hessian approximation of Lorraine et al. (2020). The series
    converges only when the spectral radius of I - alpha A is below 1: for
    SPD A, when 0 < alpha < 2 / lambda_max (alpha = 1 / largest_eigenvalue is
    the usual pick); for A = I - dG of a contractive fixed-point map G, with
    alpha = 1. An element stops, converged, once the term it adds is at most
    tol |x|; after `max_terms` terms it is reported not converged. The tail
    left out is about |term| rho / (1 - rho), so for rho near 1 the error is
    well above tol |x|: choose tol accordingly.
    `alpha` is a float or a tensor of the batch shape.
    """
    alpha = torch.as_tensor(alpha, dtype=b.dtype, device=b.device)[..., None]
    term = alpha * b
    x = term.clone()
    done = _small(term, x, tol)
    for _ in range(max_terms - 1):
        if bool(done.all()):
            break
        term = term - alpha * matvec(term)
        term = torch.where(done[..., None], torch.zeros_like(term), term)
        x = x + term
        done = done | _small(term, x, tol)
    return x, done


def _small(term: torch.Tensor, x: torch.Tensor, tol: float) -> torch.Tensor:
    return torch.linalg.vector_norm(term, dim=-1) <= tol * torch.linalg.vector_norm(x, dim=-1)


def largest_eigenvalue(matvec, shape_like: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """Power-iteration estimate of the spectral radius |lambda|_max of A, per batch element.

    Returns |A v| for the last unit iterate v: for symmetric A it approaches
    |lambda|_max from below, at the rate (lambda_2 / lambda_1)^(2 iters). The
    start vector is fixed pseudo-random (the same on every device), not
    ones: ones is orthogonal to the top eigenvector of common Hessians such
    as graph Laplacians and difference penalties.
    """
    n = shape_like.shape[-1]
    start = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = (start / torch.linalg.vector_norm(start)).to(dtype=shape_like.dtype, device=shape_like.device)
    v = v.expand(shape_like.shape).clone()
    lam = torch.zeros(shape_like.shape[:-1], dtype=shape_like.dtype, device=shape_like.device)
    for _ in range(iters):
        w = matvec(v)
        lam = torch.linalg.vector_norm(w, dim=-1)
        # A v = 0 leaves v in place (and the estimate 0) instead of dividing by zero.
        v = torch.where((lam > 0)[..., None], w / torch.clamp(lam, min=torch.finfo(lam.dtype).tiny)[..., None], v)
    return lam
