"""The interior-point solver against cvxpy, scipy's linprog and closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optlang.solvers.ipm import ipm
from optlang.solvers.result import CONVERGED, FAILED, INFEASIBLE, MAX_ITER, UNBOUNDED


class DenseProblem:
    """A batch of f = 0.5 x'Qx + c'x s.t. G x <= h, A x = b, ||x||^2 <= r^2, exp(x) <= e.

    The ball row and the exp rows (one per coordinate) are optional and come
    after the linear rows; with either, the constraints are not affine.
    """

    def __init__(self, Q, c, G=None, h=None, A=None, b=None, radius=None, exp_bound=None):
        self.Q, self.c = Q, c
        self.batch_size, self.n = c.shape
        self.dtype, self.device = c.dtype, c.device
        self.G = G if G is not None else c.new_zeros(self.batch_size, 0, self.n)
        self.h = h if h is not None else c.new_zeros(self.batch_size, 0)
        self.A = A if A is not None else c.new_zeros(self.batch_size, 0, self.n)
        self.b = b if b is not None else c.new_zeros(self.batch_size, 0)
        self.radius, self.exp_bound = radius, exp_bound
        self.m = self.G.shape[1] + (radius is not None) + (self.n if exp_bound is not None else 0)
        self.p = self.A.shape[1]
        self.affine_constraints = radius is None and exp_bound is None

    def objective(self, x):
        return 0.5 * (x * _mv(self.Q, x)).sum(-1) + (self.c * x).sum(-1)

    def gradient(self, x):
        return _mv(self.Q, x) + self.c

    def ineq(self, x):
        rows = [_mv(self.G, x) - self.h]
        if self.radius is not None:
            rows.append((x * x).sum(-1, keepdim=True) - self.radius[:, None] ** 2)
        if self.exp_bound is not None:
            rows.append(torch.exp(x) - self.exp_bound)
        return torch.cat(rows, -1)

    def ineq_jacobian(self, x):
        rows = [self.G]
        if self.radius is not None:
            rows.append(2 * x[:, None, :])
        if self.exp_bound is not None:
            rows.append(torch.diag_embed(torch.exp(x)))
        return torch.cat(rows, 1)

    def eq(self, x):
        return _mv(self.A, x) - self.b

    def eq_jacobian(self, x):
        return self.A

    def lagrangian_hessian(self, x, lam, nu):
        H = self.Q.clone()
        k = self.G.shape[1]
        if self.radius is not None:
            H = H + 2 * lam[:, k, None, None] * torch.eye(self.n, dtype=x.dtype, device=x.device)
            k += 1
        if self.exp_bound is not None:
            H = H + torch.diag_embed(lam[:, k:] * torch.exp(x))
        return H

    def take(self, index):
        """The instances `index` (the solver's compaction drops the ones that have stopped)."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return DenseProblem(self.Q[index], self.c[index], self.G[index], self.h[index], self.A[index],
                            self.b[index], pick(self.radius), pick(self.exp_bound))


def _mv(A, v):
    return (A @ v.unsqueeze(-1)).squeeze(-1)


def _t(a, dtype=torch.float64):
    return torch.tensor(np.asarray(a), dtype=dtype)


def random_qp(rng, batch, n, m, p, lp=False):
    """Strictly convex QP data (or LP data: Q = 0 and a box [-1, 1]^n among the rows), feasible by construction.

    h = G x0 + a positive slack and b = A x0 for a point x0 drawn first.
    """
    M = rng.standard_normal((batch, n, n))
    Q = np.zeros((batch, n, n)) if lp else M @ M.transpose(0, 2, 1) / n + 0.5 * np.eye(n)
    x0 = rng.uniform(-0.5, 0.5, (batch, n))
    G = rng.standard_normal((batch, m, n))
    if lp:
        box = np.broadcast_to(np.eye(n), (batch, n, n))
        G = np.concatenate([G, box, -box], 1)
    h = np.einsum("bmn,bn->bm", G, x0) + rng.uniform(0.1, 1.0, (batch, G.shape[1]))
    A = rng.standard_normal((batch, p, n))
    return dict(Q=Q, c=rng.standard_normal((batch, n)), G=G, h=h, A=A, b=np.einsum("bpn,bn->bp", A, x0))


def dense(data, dtype=torch.float64, **nonlinear):
    tensors = {k: _t(v, dtype) for k, v in {**data, **nonlinear}.items()}
    return DenseProblem(**tensors)


def kkt_violation(data, r):
    """Max violation of the QP's KKT conditions at the result, computed apart from the solver (float64)."""
    Q, c, G, h, A, b = (np.asarray(data[k]) for k in ("Q", "c", "G", "h", "A", "b"))
    x, lam, nu = (t.double().numpy() for t in (r.x, r.lam, r.nu))
    g = np.einsum("bmn,bn->bm", G, x) - h
    grad = np.einsum("bij,bj->bi", Q, x) + c + np.einsum("bmn,bm->bn", G, lam) + np.einsum("bpn,bp->bn", A, nu)
    h_res = np.einsum("bpn,bn->bp", A, x) - b
    parts = [np.abs(grad), np.maximum(g, 0), np.abs(h_res), np.abs(lam * g), np.maximum(-lam, 0)]
    return max(float(np.max(q, initial=0.0)) for q in parts)


def cvxpy_qp(data, i):
    """Element i solved by cvxpy with Clarabel at tight tolerances: (x, lam, nu)."""
    cp = pytest.importorskip("cvxpy")
    Q, c, G, h, A, b = (np.asarray(data[k])[i] for k in ("Q", "c", "G", "h", "A", "b"))
    x = cp.Variable(c.shape[0])
    cons = [G @ x <= h] + ([A @ x == b] if b.size else [])
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(Q)) + c @ x), cons).solve(
        solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)  # tighter can fail
    return x.value, cons[0].dual_value, cons[1].dual_value if b.size else np.zeros(0)


@given(seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([1, 5]), n=st.integers(2, 8), data=st.data())
def test_qp_matches_cvxpy(seed, batch, n, data):
    m, p = data.draw(st.integers(1, 2 * n), label="m"), data.draw(st.integers(0, n - 1), label="p")
    qp = random_qp(np.random.default_rng(seed), batch, n, m, p)
    r = ipm(dense(qp), 1e-10, 50)
    assert (r.status == CONVERGED).all() and r.converged.all()
    assert (r.residual <= 1e-10).all() and (r.lam >= 0).all()
    assert kkt_violation(qp, r) < 1e-8
    for i in range(batch):
        x, lam, nu = cvxpy_qp(qp, i)
        np.testing.assert_allclose(r.x[i].numpy(), x, atol=1e-6)
        np.testing.assert_allclose(r.lam[i].numpy(), lam, atol=1e-6)
        np.testing.assert_allclose(r.nu[i].numpy(), nu, atol=1e-6)


@given(seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([1, 5]), n=st.integers(2, 8), data=st.data())
def test_lp_matches_linprog(seed, batch, n, data):
    from scipy.optimize import linprog

    m, p = data.draw(st.integers(0, n), label="m"), data.draw(st.integers(0, n - 1), label="p")
    lp = random_qp(np.random.default_rng(seed), batch, n, m, p, lp=True)
    r = ipm(dense(lp), 1e-10, 50)
    assert (r.status == CONVERGED).all()
    assert kkt_violation(lp, r) < 1e-8
    for i in range(batch):
        ref = linprog(lp["c"][i], lp["G"][i], lp["h"][i], lp["A"][i] if p else None, lp["b"][i] if p else None,
                      bounds=(None, None), method="highs")
        assert abs(float(lp["c"][i] @ r.x[i].numpy()) - ref.fun) <= 1e-8 * (1 + abs(ref.fun))
        # A random c makes the solution a unique vertex (almost surely).
        np.testing.assert_allclose(r.x[i].numpy(), ref.x, atol=1e-6)
        np.testing.assert_allclose(r.lam[i].numpy(), -ref.ineqlin.marginals, atol=1e-6)


@given(seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([1, 5]), n=st.integers(2, 8))
def test_ball_constraint_closed_form(seed, batch, n):
    # min 0.5 ||x - x0||^2 s.t. ||x||^2 <= r^2: x = r x0 / ||x0|| and lam = (||x0|| / r - 1) / 2 for x0 outside,
    # x = x0 and lam = 0 inside (the last element).
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((batch, n))
    x0 *= rng.uniform(0.5, 3.0, (batch, 1)) / np.linalg.norm(x0, axis=1, keepdims=True)
    norm = np.linalg.norm(x0, axis=1)
    radius = norm * rng.uniform(0.1, 0.9, batch)
    radius[-1] = 1.5 * norm[-1]
    eye = np.broadcast_to(np.eye(n), (batch, n, n))
    r = ipm(dense(dict(Q=eye, c=-x0), radius=radius), 1e-10, 50)
    assert (r.status == CONVERGED).all()
    x = np.where((norm > radius)[:, None], radius[:, None] * x0 / norm[:, None], x0)
    lam = np.maximum(norm / radius - 1, 0) / 2
    np.testing.assert_allclose(r.x.numpy(), x, atol=1e-9)
    np.testing.assert_allclose(r.lam[:, 0].numpy(), lam, atol=1e-8)


@given(seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([1, 5]), n=st.integers(2, 8))
def test_exp_constraint_closed_form(seed, batch, n):
    # min 0.5 ||x - x0||^2 s.t. exp(x) <= e: x = min(x0, log e), lam = (x0 - x) / e where active;
    # log e is at least 0.2 from x0, so complementarity is strict.
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-3.0, 3.0, (batch, n))
    e = np.exp(x0 + rng.choice([-1.0, 1.0], (batch, n)) * rng.uniform(0.2, 2.0, (batch, n)))
    eye = np.broadcast_to(np.eye(n), (batch, n, n))
    r = ipm(dense(dict(Q=eye, c=-x0), exp_bound=e), 1e-10, 50)
    assert (r.status == CONVERGED).all()
    x = np.minimum(x0, np.log(e))
    np.testing.assert_allclose(r.x.numpy(), x, atol=1e-8)
    lam = (x0 - x) / np.exp(x)
    np.testing.assert_allclose(r.lam.numpy(), lam, atol=1e-8 * max(1.0, lam.max()))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8), data=st.data())
def test_float32_converges(seed, n, data):
    m, p = data.draw(st.integers(1, 2 * n), label="m"), data.draw(st.integers(0, n - 1), label="p")
    rng = np.random.default_rng(seed)
    qp = random_qp(rng, 5, n, m, p)
    r64 = ipm(dense(qp), 1e-10, 50)
    r32 = ipm(dense(qp, torch.float32), 1e-5, 50)
    assert r32.x.dtype == torch.float32 and (r32.status == CONVERGED).all()
    assert (r32.residual <= 1e-5).all()
    np.testing.assert_allclose(r32.x.double().numpy(), r64.x.numpy(), atol=1e-3)
    # The nonlinear rows in float32 too: the ball, then exp(x) <= e.
    x0 = 3 * rng.standard_normal((5, n))
    eye = np.broadcast_to(np.eye(n), (5, n, n))
    for nonlinear in (dict(radius=np.full(5, 1.0)), dict(exp_bound=np.full((5, n), 0.5))):
        r32 = ipm(dense(dict(Q=eye, c=-x0), torch.float32, **nonlinear), 1e-5, 50)
        r64 = ipm(dense(dict(Q=eye, c=-x0), **nonlinear), 1e-10, 50)
        assert (r32.status == CONVERGED).all()
        np.testing.assert_allclose(r32.x.double().numpy(), r64.x.numpy(), atol=1e-3)


def _finite(r):
    return all(torch.isfinite(t).all() for t in (r.x, r.lam, r.nu))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_infeasible_is_reported(dtype, tol):
    # x1 >= 1 and x1 <= 0, under a strictly convex objective and under an LP one (whose cost
    # leaves x2 alone: with c2 != 0 the LP would be unbounded as well, and may be reported so).
    G = np.array([[[-1.0, 0.0], [1.0, 0.0]]] * 2)
    h = np.array([[-1.0, 0.0]] * 2)
    Q = np.stack([np.eye(2), np.zeros((2, 2))])
    r = ipm(dense(dict(Q=Q, c=np.array([[1.0, 1.0], [1.0, 0.0]]), G=G, h=h), dtype), tol, 100)
    assert (r.status == INFEASIBLE).all() and not r.converged.any()
    assert _finite(r)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_unbounded_is_reported(dtype, tol):
    # min -x1 s.t. x >= 0; then the same with x1 = x2 as an equality row.
    data = dict(Q=np.zeros((1, 2, 2)), c=np.array([[-1.0, 0.0]]), G=-np.eye(2)[None], h=np.zeros((1, 2)))
    for extra in ({}, dict(A=np.array([[[1.0, -1.0]]]), b=np.zeros((1, 1)))):
        r = ipm(dense({**data, **extra}, dtype), tol, 100)
        assert (r.status == UNBOUNDED).all() and not r.converged.any()
        assert _finite(r)


def test_mixed_batch_feasible_element_still_converges():
    rng = np.random.default_rng(0)
    qp = random_qp(rng, 2, 2, 2, 0)
    qp["G"][1], qp["h"][1] = [[-1.0, 0.0], [1.0, 0.0]], [-1.0, 0.0]  # element 1: x1 >= 1 and x1 <= 0
    r = ipm(dense(qp), 1e-10, 100)
    assert r.status.tolist() == [CONVERGED, INFEASIBLE]
    assert _finite(r)
    alone = ipm(dense({k: v[:1] for k, v in qp.items()}), 1e-10, 100)
    np.testing.assert_allclose(r.x[0].numpy(), alone.x[0].numpy(), atol=1e-12)
    assert kkt_violation({k: v[:1] for k, v in qp.items()}, alone) < 1e-8


def test_non_finite_data_fails_alone():
    qp = random_qp(np.random.default_rng(1), 2, 3, 4, 1)
    qp["c"][1, 0] = np.nan
    r = ipm(dense(qp), 1e-10, 50)
    assert r.status.tolist() == [CONVERGED, FAILED]
    assert _finite(r)


def test_max_iter_is_reported():
    r = ipm(dense(random_qp(np.random.default_rng(2), 3, 4, 6, 1)), 1e-10, 2)
    assert (r.status == MAX_ITER).all() and (r.iterations == 2).all() and not r.converged.any()


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 8))
def test_weakly_active_constraint(seed, n):
    # The constraint a.x <= a.xu passes exactly through the unconstrained minimizer xu: x = xu and
    # lam = 0 without strict complementarity (s and lam shrink together, convergence is linear).
    rng = np.random.default_rng(seed)
    qp = random_qp(rng, 3, n, 1, 0)
    xu = -np.linalg.solve(qp["Q"], qp["c"][..., None])[..., 0]
    qp["h"] = np.einsum("bmn,bn->bm", qp["G"], xu)
    for dtype, tol, atol in [(torch.float64, 1e-10, 1e-8), (torch.float32, 1e-5, 1e-3)]:
        r = ipm(dense(qp, dtype), tol, 50)
        assert (r.status == CONVERGED).all()
        np.testing.assert_allclose(r.x.double().numpy(), xu, atol=atol)
        assert (r.lam.abs() < 100 * atol).all()  # s or lam passes the test first, the other trails


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    qp = random_qp(np.random.default_rng(4), 5, 6, 8, 2)
    cpu = ipm(dense(qp), 1e-10, 50)
    gpu = ipm(DenseProblem(**{k: _t(v).cuda() for k, v in qp.items()}), 1e-10, 50)
    assert gpu.x.device.type == "cuda" and (gpu.status == CONVERGED).all()
    np.testing.assert_allclose(gpu.x.cpu().numpy(), cpu.x.numpy(), atol=1e-8)


def test_equality_only_unconstrained_and_redundant_rows():
    rng = np.random.default_rng(3)
    qp = random_qp(rng, 2, 4, 3, 2)
    # No inequalities: the KKT system in closed form.
    eq = dict(qp, G=np.zeros((2, 0, 4)), h=np.zeros((2, 0)))
    r = ipm(dense(eq), 1e-10, 50)
    K = np.block([[qp["Q"], qp["A"].transpose(0, 2, 1)], [qp["A"], np.zeros((2, 2, 2))]])
    sol = np.linalg.solve(K, np.concatenate([-qp["c"], qp["b"]], 1)[..., None])[..., 0]
    assert (r.status == CONVERGED).all() and r.lam.shape == (2, 0)
    np.testing.assert_allclose(torch.cat([r.x, r.nu], 1).numpy(), sol, atol=1e-9)
    # No constraints at all.
    r = ipm(dense(dict(Q=qp["Q"], c=qp["c"])), 1e-10, 50)
    assert (r.status == CONVERGED).all() and r.nu.shape == (2, 0)
    np.testing.assert_allclose(r.x.numpy(), -np.linalg.solve(qp["Q"], qp["c"][..., None])[..., 0], atol=1e-9)
    # Each equality row twice: same x, and the split duals add up.
    base = ipm(dense(qp), 1e-10, 50)
    twice = ipm(dense(dict(qp, A=np.concatenate([qp["A"]] * 2, 1), b=np.concatenate([qp["b"]] * 2, 1))), 1e-10, 50)
    assert (twice.status == CONVERGED).all()
    np.testing.assert_allclose(twice.x.numpy(), base.x.numpy(), atol=1e-8)
    np.testing.assert_allclose((twice.nu[:, :2] + twice.nu[:, 2:]).numpy(), base.nu.numpy(), atol=1e-7)


@pytest.mark.parametrize("block", [False, True])
def test_spd_solver_falls_back_per_element(block):
    """linalg.spd_solver, the reduced system's factor: Cholesky where the block is SPD, linalg.solve's LU
    for an element that rounding (here: an indefinite matrix) keeps from factoring, and its minimum-norm
    least-squares solution for a singular one; each element's solution is its own."""
    from optlang.solvers.linalg import spd_solver

    g = torch.Generator().manual_seed(5)
    M = torch.randn(4, 4, generator=g, dtype=torch.float64)
    spd = M @ M.T + torch.eye(4, dtype=torch.float64)
    indefinite = torch.diag(torch.tensor([2.0, -1.0, 3.0, 0.5], dtype=torch.float64))
    singular = torch.diag(torch.tensor([1.0, 0.0, 2.0, 0.0], dtype=torch.float64))
    A = torch.stack([spd, indefinite, singular])
    b = torch.randn(3, 4, 2, generator=g, dtype=torch.float64) if block else \
        torch.randn(3, 4, generator=g, dtype=torch.float64)
    x = spd_solver(A)(b)
    want = torch.linalg.pinv(A) @ (b if block else b.unsqueeze(-1))
    torch.testing.assert_close(x, want if block else want.squeeze(-1), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(x).all()


def test_lps_with_equality_rows_take_few_iterations():
    """An LP's x block is nearly singular (H = 0), and the Schur complement's dx = y - Z dnu cancels:
    one step of iterative refinement (ipm.direction) brings the iterations back to those of the whole
    system's LU. Without it the worst of these float32 LPs took 32 iterations, the mean 8.4."""
    counts = []
    for seed in range(6):
        qp = random_qp(np.random.default_rng(seed), 16, 8, 12, 3, lp=True)
        out = ipm(dense(qp, torch.float32), 1e-5, 100)
        assert bool(out.converged.all())
        counts += out.iterations.tolist()
    assert max(counts) <= 14 and np.mean(counts) <= 7.5, counts


def test_the_interior_point_drops_the_instances_that_have_stopped_and_keeps_their_results(monkeypatch):
    """Once at most half the batch is still going, the steps run on the instances still going
    (ops.compact): the same iterates as without compaction, results in the batch's order
    (KKTView.take keeps what was built once for them: the constant Jacobians and Hessian)."""
    from pathlib import Path

    import optlang
    from optlang.solvers import ipm as ipm_module
    from optlang.solvers import ops

    sizes = []
    real = ipm_module.ipm_step

    def step(x, *args):
        sizes.append(x.shape[0])
        return real(x, *args)

    monkeypatch.setattr(ipm_module, "ipm_step", step)
    layer = optlang.compile(Path(__file__).resolve().parent.parent / "examples" / "qp.opt")
    g = torch.Generator().manual_seed(5)
    B, n, m, p = 24, 6, 9, 2
    M = torch.randn(B, n, n, dtype=torch.float64, generator=g)
    scale = torch.logspace(-3, 3, B, dtype=torch.float64)[:, None, None]  # conditioning spreads the counts
    params = {"Q": scale * (M @ M.mT) + 1e-3 * torch.eye(n, dtype=torch.float64),
              "c": torch.randn(B, n, dtype=torch.float64, generator=g),
              "G": torch.randn(B, m, n, dtype=torch.float64, generator=g),
              "h": torch.rand(B, m, dtype=torch.float64, generator=g),
              "A": torch.randn(B, p, n, dtype=torch.float64, generator=g), "b": torch.zeros(B, p, dtype=torch.float64)}
    compacted = layer.solve(**params, backend="torch")
    assert compacted.stats.all_converged and sizes[0] == B and min(sizes) <= B // 2
    assert len(set(compacted.stats.iterations.tolist())) > 1
    monkeypatch.setattr(ops, "COMPACT", 0.0)
    sizes.clear()
    whole = layer.solve(**params, backend="torch")
    assert set(sizes) == {B}
    torch.testing.assert_close(compacted.z, whole.z, rtol=0, atol=1e-12)
    assert torch.equal(compacted.stats.iterations, whole.stats.iterations)


def test_compaction_keeps_what_was_built_once_for_a_nonlinear_problem(monkeypatch):
    """With a nonlinear inequality the Jacobians are rebuilt each step, the equality's from KKTView's
    cache: after compaction that cache must hold the instances left (KKTView.take), or the shapes clash."""
    import optlang
    from optlang.solvers import ops

    layer = optlang.compile_string("problem p\ndim n\nparam a[n], r > 0\nvar x[n]\nminimize sumsq(x - a)\n"
                                   "subject to\n  sumsq(x) <= r\n  sum(x) == 1\n")
    assert not layer.plan.affine_constraints
    g = torch.Generator().manual_seed(0)
    a = 3.0 * torch.randn(16, 4, dtype=torch.float64, generator=g)
    r = torch.logspace(-0.5, 2.0, 16, dtype=torch.float64)
    compacted = layer.solve(a=a, r=r, backend="torch")
    assert compacted.stats.all_converged and len(set(compacted.stats.iterations.tolist())) > 1
    monkeypatch.setattr(ops, "COMPACT", 0.0)
    whole = layer.solve(a=a, r=r, backend="torch")
    torch.testing.assert_close(compacted.x, whole.x, rtol=0, atol=1e-12)
    assert torch.equal(compacted.stats.iterations, whole.stats.iterations)
