"""Anderson acceleration and the matrix-free linear solvers against dense references.

Fresh random problems per hypothesis example (a seed and the sizes are drawn,
the tensors come from a torch.Generator), float64 unless said otherwise.
"""
import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optlang.solvers.anderson import anderson
from optlang.solvers.krylov import gmres, largest_eigenvalue, neumann
from optlang.solvers.result import CONVERGED, FAILED, MAX_ITER, default_tol

F64 = torch.float64
BATCHES = [(), (3,), (2, 2)]
seeds = st.integers(0, 2**32 - 1)
batches = st.sampled_from(BATCHES)
DOTTIE = 0.7390851332151607  # the fixed point of cos


def _rng(seed):
    return torch.Generator().manual_seed(seed)


def _apply(M):
    return lambda v: (M @ v[..., None])[..., 0]


def _contraction(g, batch, n, norm):
    """A random (*batch, n, n) matrix of spectral norm `norm`."""
    M = torch.randn(*batch, n, n, generator=g, dtype=F64)
    return norm * M / torch.linalg.matrix_norm(M, ord=2)[..., None, None]


def _symmetric(g, batch, n, eigs):
    """Q diag(eigs) Q^T with a random orthogonal Q; eigs broadcasts against (*batch, n)."""
    Q, _ = torch.linalg.qr(torch.randn(*batch, n, n, generator=g, dtype=F64))
    return Q @ torch.diag_embed(eigs.expand(*batch, n)) @ Q.transpose(-1, -2)


def _affine(g, batch, n, norm):
    """The map x -> M x + c, and its fixed point by a dense solve."""
    M = _contraction(g, batch, n, norm)
    c = torch.randn(*batch, n, generator=g, dtype=F64)
    return (lambda x: _apply(M)(x) + c), torch.linalg.solve(torch.eye(n, dtype=F64) - M, c)


def _plain_iterations(G, x, tol, max_iter):
    """How many steps x <- G(x) take to bring max|x - G(x)| to tol * max(1, that at x)."""
    f = G(x) - x
    scale = max(1.0, float(f.abs().max()))
    for k in range(max_iter):
        if float(f.abs().max()) <= tol * scale:
            return k
        x = G(x)
        f = G(x) - x
    return max_iter


# -- Anderson --------------------------------------------------------------------------------
@given(seed=seeds, batch=batches, n=st.integers(1, 12), memory=st.integers(1, 8),
       norm=st.floats(0.1, 0.9), mixing=st.sampled_from([0.5, 1.0]))
def test_anderson_affine_matches_closed_form(seed, batch, n, memory, norm, mixing):
    G, x_star = _affine(_rng(seed), batch, n, norm)
    r = anderson(G, torch.zeros_like(x_star), 1e-12, 500, memory=memory, mixing=mixing)
    assert r.converged.shape == r.iterations.shape == r.residual.shape == batch
    assert bool(r.converged.all()) and r.status is None
    assert bool((r.residual <= 1e-12).all())
    assert torch.allclose(r.x, x_star, rtol=0, atol=1e-10 * (1 + float(x_star.abs().max())))


@given(seed=seeds, batch=batches, n=st.integers(2, 10))
def test_anderson_tanh_matches_plain_iteration(seed, batch, n):
    g = _rng(seed)
    W = _contraction(g, batch, n, 0.9)
    b = torch.randn(*batch, n, generator=g, dtype=F64)
    G = lambda x: torch.tanh(_apply(W)(x) + b)  # noqa: E731
    ref = torch.zeros_like(b)
    for _ in range(400):  # 0.9^400 ~ 5e-19: converged to rounding
        ref = G(ref)
    r = anderson(G, torch.zeros_like(b), 1e-12, 300)
    assert bool(r.converged.all())
    assert torch.allclose(r.x, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("batch", BATCHES, ids=str)
def test_anderson_batch_elements_are_independent(batch):
    """Each element gives what it gives alone, though the elements converge at different speeds."""
    g = _rng(7)
    norms = torch.linspace(0.2, 0.9, math.prod(batch)).reshape(batch)
    M = torch.randn(*batch, 6, 6, generator=g, dtype=F64)
    M = norms[..., None, None] * M / torch.linalg.matrix_norm(M, ord=2)[..., None, None]
    c = torch.randn(*batch, 6, generator=g, dtype=F64)
    r = anderson(lambda x: _apply(M)(x) + c, torch.zeros_like(c), 1e-12, 500)
    assert bool(r.converged.all())
    for idx in itertools.product(*map(range, batch)):
        alone = anderson(lambda x: M[idx] @ x + c[idx], torch.zeros(6, dtype=F64), 1e-12, 500)
        assert torch.allclose(r.x[idx], alone.x, rtol=0, atol=1e-12)
        assert abs(int(r.iterations[idx]) - int(alone.iterations)) <= 1


@given(seed=seeds, n=st.integers(10, 30))
def test_anderson_beats_plain_iteration_on_slow_contraction(seed, n):
    g = _rng(seed)
    eigs = 0.95 * torch.rand(n, generator=g, dtype=F64)
    eigs[0] = 0.95  # spectral norm 0.95: about 500 plain steps to 1e-10
    M = _symmetric(g, (), n, eigs)
    c = torch.randn(n, generator=g, dtype=F64)
    G = lambda x: M @ x + c  # noqa: E731
    x0 = torch.zeros(n, dtype=F64)
    plain = _plain_iterations(G, x0, 1e-10, 2000)
    r = anderson(G, x0, 1e-10, 2000)
    assert bool(r.converged)
    assert int(r.iterations) <= plain // 2
    assert int(anderson(G, x0, 1e-10, 2000, memory=0).iterations) == plain


def test_anderson_float32():
    g = _rng(3)
    G64, x_star = _affine(g, (4,), 8, 0.8)
    G = lambda x: G64(x.double()).float()  # noqa: E731
    r = anderson(G, torch.zeros(4, 8), default_tol(torch.float32), 200)
    assert r.x.dtype == torch.float32 and bool(r.converged.all())
    assert torch.allclose(r.x.double(), x_star, rtol=0, atol=1e-4 * (1 + float(x_star.abs().max())))


def test_anderson_scalar_history_is_singular():
    """N = 1: every history column is parallel, the Gram matrix has rank one."""
    x0 = torch.tensor([[-2.0], [0.0], [0.5], [3.0]], dtype=F64)
    for memory, regularization in [(1, 1e-10), (5, 1e-10), (5, 0.0)]:
        r = anderson(torch.cos, x0, 1e-13, 100, memory=memory, regularization=regularization)
        assert bool(r.converged.all())
        assert torch.allclose(r.x, torch.full_like(x0, DOTTIE), rtol=0, atol=1e-12)


def test_anderson_memory_above_n_without_regularization():
    """More history than dimensions: the differences are linearly dependent."""
    G, x_star = _affine(_rng(11), (3,), 4, 0.9)
    r = anderson(G, torch.zeros_like(x_star), 1e-12, 200, memory=12, regularization=0.0)
    assert bool(r.converged.all())
    assert torch.allclose(r.x, x_star, rtol=0, atol=1e-10 * (1 + float(x_star.abs().max())))


def test_anderson_falls_back_to_plain_steps():
    """A map defined only on its own plain orbit: every Anderson candidate is NaN, so every step
    falls back, and the solve is the plain iteration exactly."""
    G, x_star = _affine(_rng(5), (), 6, 0.7)
    orbit = [torch.zeros(6, dtype=F64)]
    rejected = []

    def on_orbit_only(x):
        if min(float((x - p).abs().max()) for p in orbit) > 1e-15:  # a few ulps
            rejected.append(x)
            return torch.full_like(x, math.nan)
        y = G(x)
        orbit.append(y)
        return y

    r = anderson(on_orbit_only, orbit[0].clone(), 1e-12, 200, memory=5)
    assert rejected and r.status is None and bool(r.converged)
    assert int(r.iterations) == _plain_iterations(G, torch.zeros(6, dtype=F64), 1e-12, 200)
    assert torch.allclose(r.x, x_star, rtol=0, atol=1e-10)


def test_anderson_non_finite_fails_at_last_finite_iterate():
    """Element 0 converges, 1 is NaN from the start, 2 steps by +1 until G is inf past 5.5,
    3 has no fixed point (x + 1, exact on integers) and runs out of iterations."""
    x0 = torch.tensor([[0.0], [0.0], [0.0], [-1000.0]], dtype=F64)

    def G(x):
        return torch.stack([0.5 * x[0] + 1, x[1] + math.nan, torch.where(x[2] < 5.5, x[2] + 1, math.inf),
                            x[3] + 1])

    r = anderson(G, x0, 1e-12, 50, memory=3)
    assert r.status.tolist() == [CONVERGED, FAILED, FAILED, MAX_ITER]
    assert r.converged.tolist() == [True, False, False, False]
    assert r.iterations.tolist()[1:] == [0, 6, 50]
    assert r.x[1:, 0].tolist() == [0.0, 5.0, -950.0]
    assert float(r.x[0, 0]) == pytest.approx(2.0, abs=1e-12)


# -- GMRES -----------------------------------------------------------------------------------
def _nonsymmetric(g, batch, n):
    """SPD part with eigenvalues in [1, 4] plus a skew part of norm about 2: nonnormal but with
    0 outside the field of values, so restarted GMRES converges for any restart (Elman)."""
    S = _symmetric(g, batch, n, 1 + 3 * torch.rand(*batch, n, generator=g, dtype=F64))
    K = torch.randn(*batch, n, n, generator=g, dtype=F64)
    K = (K - K.transpose(-1, -2)) / math.sqrt(2 * n)
    return S + K


class _Counted:
    """A matvec that counts its calls."""

    def __init__(self, A):
        self.A, self.calls = A, 0

    def __call__(self, v):
        self.calls += 1
        return _apply(self.A)(v)


@given(seed=seeds, batch=batches, n=st.integers(3, 25), restart=st.integers(2, 30))
def test_gmres_matches_dense_solve(seed, batch, n, restart):
    g = _rng(seed)
    A = _nonsymmetric(g, batch, n)
    b = torch.randn(*batch, n, generator=g, dtype=F64)
    mv = _Counted(A)
    x, ok = gmres(mv, b, 1e-12, 2000, restart=min(restart, n - 1))
    assert ok.shape == batch and bool(ok.all())
    assert mv.calls <= 2000
    ref = torch.linalg.solve(A, b)
    assert torch.allclose(x, ref, rtol=0, atol=1e-9 * float(ref.abs().max()))


@given(seed=seeds, n=st.integers(2, 20))
def test_gmres_without_restart_needs_at_most_n_steps(seed, n):
    A = _nonsymmetric(_rng(seed), (2,), n)
    b = torch.randn(2, n, generator=_rng(seed + 1), dtype=F64)
    mv = _Counted(A)
    x, ok = gmres(mv, b, 1e-10, 10 * n, restart=n)
    assert bool(ok.all()) and mv.calls <= n + 1
    assert torch.linalg.vector_norm(b - _apply(A)(x), dim=-1).le(1e-10 * torch.linalg.vector_norm(b, dim=-1)).all()


def test_gmres_reports_non_convergence_within_max_iter():
    g = _rng(2)
    A = _nonsymmetric(g, (3,), 30)
    b = torch.randn(3, 30, generator=g, dtype=F64)
    b[1] = 0.0  # zero right-hand side: converged at once, x = 0
    mv = _Counted(A)
    x, ok = gmres(mv, b, 1e-12, 6, restart=4)
    assert ok.tolist() == [False, True, False]
    assert mv.calls <= 6
    assert bool(torch.isfinite(x).all()) and bool((x[1] == 0).all())


# -- Neumann series and power iteration ------------------------------------------------------
@given(seed=seeds, batch=batches, n=st.integers(2, 15))
def test_neumann_matches_dense_solve_on_spd(seed, batch, n):
    g = _rng(seed)
    S = _symmetric(g, batch, n, 1 + 9 * torch.rand(*batch, n, generator=g, dtype=F64))  # cond <= 10
    b = torch.randn(*batch, n, generator=g, dtype=F64)
    lam = largest_eigenvalue(_apply(S), b, iters=100)
    x, ok = neumann(_apply(S), b, 1 / lam, 1e-12, 2000)
    assert ok.shape == batch and bool(ok.all())
    ref = torch.linalg.solve(S, b)
    assert torch.allclose(x, ref, rtol=0, atol=1e-8 * float(ref.abs().max()))


def test_neumann_on_a_fixed_point_jacobian_with_alpha_one():
    """A = I - dG for a contraction G: alpha = 1, a float."""
    J = _contraction(_rng(4), (2,), 8, 0.5)
    A = torch.eye(8, dtype=F64) - J
    b = torch.randn(2, 8, generator=_rng(5), dtype=F64)
    x, ok = neumann(_apply(A), b, 1.0, 1e-14, 200)
    assert bool(ok.all())
    assert torch.allclose(x, torch.linalg.solve(A, b), rtol=0, atol=1e-12)


def test_neumann_flags_divergence():
    """alpha = 3 / lambda_max makes |1 - alpha lambda_max| = 2: the series diverges."""
    g = _rng(6)
    S = _symmetric(g, (2,), 6, torch.linspace(1, 4, 6, dtype=F64))
    b = torch.randn(2, 6, generator=g, dtype=F64)
    alpha = torch.tensor([0.25, 0.75], dtype=F64)  # per element: 1 / lambda_max, then 3 / lambda_max
    x, ok = neumann(_apply(S), b, alpha, 1e-12, 300)
    assert ok.tolist() == [True, False]
    assert torch.allclose(x[0], torch.linalg.solve(S[0], b[0]), rtol=0, atol=1e-9)


@given(seed=seeds, batch=batches, n=st.integers(2, 20), sign=st.sampled_from([1.0, -1.0]))
def test_largest_eigenvalue_matches_eigvalsh(seed, batch, n, sign):
    """A gap |lambda_2 / lambda_1| <= 0.7 makes 30 iterations accurate to 0.7^60 ~ 5e-10."""
    g = _rng(seed)
    eigs = 2.8 * torch.rand(*batch, n, generator=g, dtype=F64) - 1.4
    eigs[..., 0] = sign * 2 * (1 + torch.rand(batch, generator=g, dtype=F64))
    S = _symmetric(g, batch, n, eigs)
    lam = largest_eigenvalue(_apply(S), torch.zeros(*batch, n, dtype=F64))
    ref = torch.linalg.eigvalsh(S).abs().amax(dim=-1)
    assert lam.shape == batch
    assert torch.allclose(lam, ref, rtol=1e-6, atol=0)
    assert bool((lam <= ref * (1 + 1e-12)).all())


def test_largest_eigenvalue_of_a_laplacian():
    """The path graph Laplacian: ones is its null vector, so the start vector must not be ones."""
    n = 12
    L = torch.diag(torch.full((n,), 2.0, dtype=F64)) - torch.diag(torch.ones(n - 1, dtype=F64), 1) - torch.diag(
        torch.ones(n - 1, dtype=F64), -1)
    L[0, 0] = L[-1, -1] = 1.0
    lam = largest_eigenvalue(_apply(L), torch.zeros(n, dtype=F64), iters=300)
    assert float(lam) == pytest.approx(float(torch.linalg.eigvalsh(L)[-1]), rel=1e-3)


@given(seed=seeds, batch=st.sampled_from([(1,), (4,), (2, 3)]), n=st.integers(1, 12))
def test_solve_spd_matches_lu_and_hands_what_it_cannot_factor_to_it(seed, batch, n):
    """Cholesky where the matrix is SPD; a singular PSD element and a non-finite one get `solve`'s
    least-squares answer and flag, exactly as LU would give them."""
    from optlang.solvers.linalg import solve, solve_spd

    g = torch.Generator().manual_seed(seed)
    M = torch.randn(batch + (n, n), generator=g, dtype=torch.float64)
    A = M @ M.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(batch + (n,), generator=g, dtype=torch.float64)
    flat = A.reshape(-1, n, n)
    flat[0] = 0.0
    flat[0, 0, 0] = 1.0  # PSD, singular when n > 1
    if flat.shape[0] > 1:
        flat[-1, 0, 0] = float("nan")
    x, singular = solve_spd(A, b)
    want, want_singular = solve(A, b)
    assert torch.equal(singular, want_singular)
    assert torch.allclose(x, want, rtol=1e-9, atol=1e-9)
    assert torch.isfinite(x).all()


@given(seed=seeds, n=st.integers(3, 30), scale=st.sampled_from([1.0, 1e-20, 1e15]), spd=st.booleans())
def test_a_precise_solve_flags_what_is_singular_to_working_precision_and_not_a_bad_scale(seed, n, scale, spd):
    """solve/solve_spd with `precise` (the backward's): an element of rank n - 1 up to a singular value
    of 1e-18 relative factors without an error, and plain LU hands back rounding amplified past 1/eps;
    it is flagged and gets the least-squares (minimum-norm) solution. Well-conditioned elements whose
    rows (LU) or rows and columns (Cholesky) are scaled by 1e-20 or 1e15 are not flagged: the check
    looks at the pivots of the equilibrated matrix."""
    from optlang.solvers.linalg import solve, solve_spd

    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(3, n, n, generator=g, dtype=F64))
    V = U if spd else torch.linalg.qr(torch.randn(3, n, n, generator=g, dtype=F64))[0]
    s = torch.rand(3, n, generator=g, dtype=F64) + 0.5
    s[1, -1] = 1e-18
    A = U @ torch.diag_embed(s) @ V.transpose(-1, -2)
    if spd:
        A = 0.5 * (A + A.transpose(-1, -2))
    d = torch.logspace(0, math.log10(scale), n, dtype=F64)  # element 2: badly scaled, well conditioned
    A[2] = d[:, None] * A[2] * d[None, :] if spd else d[:, None] * A[2]
    b = torch.randn(3, n, generator=g, dtype=F64)
    x, singular = (solve_spd if spd else solve)(A, b, precise=True)
    assert singular.tolist() == [False, True, False]
    assert torch.allclose(x[1], torch.linalg.pinv(A[1]) @ b[1], rtol=1e-8, atol=1e-8)
    for i in (0, 2):
        residual = (A[i] @ x[i] - b[i]).abs().max() / (A[i].abs().max() * x[i].abs().max() + b[i].abs().max())
        assert residual < 1e-12
    plain, plain_singular = (solve_spd if spd else solve)(A, b)
    assert not plain_singular[1]  # what the check is for: the factorization alone does not see it


@given(seed=seeds, batch=st.sampled_from([(), (1,), (6,), (2, 3)]), n=st.sampled_from([1, 5, 23, 24, 40]),
       columns=st.integers(1, 3), dtype=st.sampled_from([torch.float64, torch.float32]),
       shared=st.booleans())
def test_cholesky_solve_gives_torchs_numbers_on_either_side_of_its_switch(seed, batch, n, columns, dtype, shared):
    """linalg.cholesky_solve, two triangular solves from TRIANGULAR_SOLVES_FROM rows on the CPU, gives
    torch.cholesky_solve's numbers bitwise, for a factor per element or one broadcast to the batch."""
    from optlang.solvers import linalg

    g = torch.Generator().manual_seed(seed)
    M = torch.randn(((1,) if shared and batch else batch) + (n, n), generator=g, dtype=dtype)
    L = torch.linalg.cholesky(M @ M.transpose(-1, -2) + n * torch.eye(n, dtype=dtype))
    b = torch.randn(batch + (n, columns), generator=g, dtype=dtype)
    assert torch.equal(linalg.cholesky_solve(b, L), torch.cholesky_solve(b, L))


@given(seed=seeds, batch=st.sampled_from([(1,), (5,), (2, 3)]), n=st.integers(1, 9), start=st.integers(0, 3),
       dtype=st.sampled_from([torch.float64, torch.float32]),
       planted=st.lists(st.sampled_from(["inf", "-inf", "nan", "huge", "-huge", "inf-inf"]), max_size=4))
def test_finite_over_is_isfinite_all_also_where_a_sum_would_overflow(seed, batch, n, start, dtype, planted):
    """finite_over is isfinite(t).all(over the trailing dims), exactly: entries near the dtype's largest
    value (whose sum overflows to inf), a +inf beside a -inf (whose sum is NaN), NaNs, and clean rows."""
    from optlang.solvers.linalg import finite_over

    g = torch.Generator().manual_seed(seed)
    t = torch.randn(batch + (n,), generator=g, dtype=torch.float64).to(dtype)
    flat = t.view(-1)
    big = torch.finfo(dtype).max
    for i, kind in enumerate(planted):
        at = int(torch.randint(flat.numel(), (1,), generator=g))
        if kind == "inf-inf":
            flat[at] = float("inf")
            flat[(at + 1) % flat.numel()] = float("-inf")
        elif kind.endswith("huge"):
            flat[at] = -big if kind.startswith("-") else big
            flat[(at + 1) % flat.numel()] = flat[at]  # two of them overflow a sum
        else:
            flat[at] = float(kind)
    start = min(start, t.dim())
    dims = tuple(range(start, t.dim()))
    want = torch.isfinite(t).all(dim=dims) if dims else torch.isfinite(t)
    assert torch.equal(finite_over(t, start), want)


@given(seed=seeds, sizes=st.lists(st.integers(0, 6), min_size=1, max_size=4),
       dtype=st.sampled_from([torch.float64, torch.float32]),
       planted=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["inf", "-inf", "nan", "huge", "-huge"])),
                        max_size=4))
def test_all_finite_of_several_tensors_is_each_isfinite_all(seed, sizes, dtype, planted):
    """all_finite(*ts), one sum read back, is whether every entry of every tensor is finite: also
    where each tensor's sum is finite and their total overflows (a huge entry in two of them)."""
    from optlang.solvers.linalg import all_finite

    g = torch.Generator().manual_seed(seed)
    ts = [torch.randn(size, generator=g, dtype=torch.float64).to(dtype) for size in sizes]
    big = torch.finfo(dtype).max
    for which, kind in planted:
        t = ts[which % len(ts)]
        if t.numel():
            t[int(torch.randint(t.numel(), (1,), generator=g))] = (
                (-big if kind.startswith("-") else big) if kind.endswith("huge") else float(kind))
    assert all_finite(*ts) == all(bool(torch.isfinite(t).all()) for t in ts)
    assert all_finite() is True


@given(seed=seeds, batch=st.sampled_from([(1,), (4,), (2, 3)]), n=st.integers(1, 8),
       planted=st.lists(st.sampled_from(["A-nan", "A-inf", "b-inf", "A-huge", "singular"]), max_size=3))
def test_solve_is_lu_per_element_with_its_fallbacks_on_every_path(seed, batch, n, planted):
    """linalg.solve element by element: LU where A is invertible and A, b finite; the least-squares
    answer, flagged, where A is singular; x = 0, flagged, where A or b is not finite. Huge finite
    entries (whose sum overflows) leave the one-sum fast path for the checked one, with the same answers."""
    from optlang.solvers.linalg import solve

    g = torch.Generator().manual_seed(seed)
    A = torch.randn(batch + (n, n), generator=g, dtype=torch.float64) + 3.0 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(batch + (n,), generator=g, dtype=torch.float64)
    flat_A, flat_b = A.view(-1, n, n), b.view(-1, n)
    for kind in planted:
        at = int(torch.randint(flat_A.shape[0], (1,), generator=g))
        if kind == "A-nan":
            flat_A[at, 0, -1] = float("nan")
        elif kind == "A-inf":
            flat_A[at, -1, 0] = float("inf")
        elif kind == "b-inf":
            flat_b[at, 0] = float("-inf")
        elif kind == "A-huge":
            flat_A[at] = torch.finfo(torch.float64).max / 2 * torch.eye(n, dtype=torch.float64)
            flat_A[at, 0, 0] = torch.finfo(torch.float64).max  # a sum over A overflows; the element is fine
        else:
            flat_A[at] = 0.0
    x, singular = solve(A, b)
    assert x.shape == b.shape and singular.shape == batch
    for i in range(flat_A.shape[0]):
        Ai, bi, xi, si = flat_A[i], flat_b[i], x.view(-1, n)[i], bool(singular.view(-1)[i])
        if not (torch.isfinite(Ai).all() and torch.isfinite(bi).all()):
            assert si and torch.equal(xi, torch.zeros_like(xi))
        elif not bool((Ai != 0).any()):
            assert si and torch.equal(xi, torch.zeros_like(xi))  # the least-squares answer of A = 0
        else:
            assert not si
            torch.testing.assert_close(xi, torch.linalg.solve(Ai, bi), rtol=1e-12, atol=0)
