"""The implicit solves reuse the forward's Cholesky factor of a convex quadratic's constant Hessian.

Reverse mode, forward mode and the second-order backward must give what a fresh dense solve of the
same system gives (the path taken without a factor), and the factor must only be kept when every
element of the batch factored."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang
import optlang.runtime.executor as executor
from optlang.runtime.executor import TorchExecutor
from optlang.solvers.linalg import CholeskyFactor

RIDGE = optlang.compile_string("problem ridge\ndim n, d\nparam X[n, d], y[n]\nparam lam > 0\nvar w[d]\n"
                               "minimize 0.5 * sumsq(X @ w - y) + 0.5 * lam * sumsq(w)\n")


def _derivatives(params):
    """Reverse-mode gradients, a forward-mode tangent and a second derivative of one loss."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    sol = RIDGE.solve(**leaves)
    weights = torch.linspace(-1.0, 1.0, sol.w.numel(), dtype=torch.float64).reshape(sol.w.shape)
    loss = (sol.w * weights).sum() + 0.5 * sol.w.square().sum()
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
    (second,) = torch.autograd.grad(grads[2].sum(), leaves["lam"])  # d/dlam of dloss/dlam
    tangents = {k: torch.ones_like(v) for k, v in params.items()}
    _, tangent = torch.func.jvp(lambda *ts: RIDGE(**dict(zip(params, ts))), tuple(params.values()),
                                tuple(tangents.values()))
    return [g.detach() for g in grads] + [second, tangent]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
       n=st.integers(1, 12), d=st.integers(1, 8))
def test_derivatives_with_the_kept_factor_match_a_fresh_solve(seed, batch, n, d):
    g = torch.Generator().manual_seed(seed)
    params = dict(X=torch.randn(batch + (n, d), generator=g, dtype=torch.float64),
                  y=torch.randn(batch + (n,), generator=g, dtype=torch.float64),
                  lam=torch.rand(batch, generator=g, dtype=torch.float64) + 0.1)
    with pytest.MonkeyPatch.context() as mp:  # (hypothesis runs many examples per function-scoped fixture)
        systems = []
        real = executor.implicit_system
        mp.setattr(executor, "implicit_system", lambda *a: systems.append(real(*a)) or systems[-1])
        kept = _derivatives(params)
        assert systems and all(m == "direct" and isinstance(J, CholeskyFactor) for m, _, J in systems)
        # The same calls with no factor kept by the forward: dense Jacobians, LU or Cholesky afresh.
        mp.setattr("optlang.solvers.newton.keep_factor", lambda chol, factored, ctx: chol)
        systems.clear()
        fresh = _derivatives(params)
        assert systems and all(not isinstance(J, CholeskyFactor) for _, _, J in systems)
    for a, b in zip(kept, fresh):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


def test_the_factor_is_kept_only_where_every_element_factored():
    from optlang.runtime.bound import BoundProblem
    from optlang.solvers.newton import newton

    plan = RIDGE.plan
    module = TorchExecutor().module_for(plan)
    X = torch.randn(2, 5, 3, dtype=torch.float64)
    y = torch.randn(2, 5, dtype=torch.float64)
    dims = {"n": 5, "d": 3}

    def solve(lam):
        bound = BoundProblem(module, plan, dict(X=X, y=y, lam=lam), dims, (2,), torch.float64, torch.device("cpu"))
        return newton(bound, torch.zeros(2, 3, dtype=torch.float64), 1e-10, 50)

    assert solve(torch.tensor([0.5, 1.0], dtype=torch.float64)).factor.shape == (2, 3, 3)
    # lam < 0 past the smallest eigenvalue of X'X makes the second Hessian indefinite: no factor.
    assert solve(torch.tensor([0.5, -1e6], dtype=torch.float64)).factor is None


@pytest.mark.parametrize("backward", ["cg", "gmres"])
def test_an_explicit_krylov_backward_does_not_take_the_factor(backward, monkeypatch):
    seen = []
    real = executor.adjoint_solve
    monkeypatch.setattr(executor, "adjoint_solve", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    leaves = dict(X=torch.randn(6, 3, dtype=torch.float64), y=torch.randn(6, dtype=torch.float64),
                  lam=torch.tensor(0.5, dtype=torch.float64, requires_grad=True))
    RIDGE.solve(**leaves, backward=backward).w.sum().backward()
    assert seen == [backward]


@pytest.mark.parametrize("lam, singular", [(1e-3, False), (1e-15, True)])
def test_a_factor_singular_to_working_precision_takes_least_squares_and_warns(lam, singular):
    """The forward factors X'X + lam I of a rank-one X: at lam = 1e-15 (condition 3e16) Cholesky succeeds
    with pivots of rounding's size, and the backward used to solve with that factor silently. It now
    warns and takes the least-squares (minimum-norm) solution, which is the well-posed limit lam -> 0;
    at lam = 1e-3 it solves with the factor, as the closed form does."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 1, generator=g, dtype=torch.float64) @ torch.randn(1, 5, generator=g, dtype=torch.float64)
    y = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    sol = RIDGE.solve(X=X, y=y, lam=torch.tensor(lam, dtype=torch.float64))
    assert sol.stats.all_converged
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (grad,) = torch.autograd.grad(sol.w.sum(), y)
    assert any("singular Jacobian" in str(w.message) for w in caught) == singular
    H = X.T @ X + (0.0 if singular else lam) * torch.eye(5, dtype=torch.float64)
    want = X @ (torch.linalg.pinv(H) @ torch.ones(5, dtype=torch.float64))  # d sum(w) / dy = X H^+ 1
    torch.testing.assert_close(grad, want, rtol=1e-6, atol=1e-8)


def test_an_expanded_factor_carries_its_check_and_solves_like_a_fresh_one():
    """CholeskyFactor.expand (a vmapped tangent's batch dims in front) keeps the precision check it made
    once; the expanded factor solves as a fresh factor of the expanded matrices, the imprecise element
    (a factor with a pivot of 1e-24 against 1) included, by least squares."""
    g = torch.Generator().manual_seed(2)
    L = torch.tril(torch.randn(3, 4, 4, generator=g, dtype=torch.float64), -1) + torch.eye(4, dtype=torch.float64)
    L[1, 3, 3] = 1e-12
    factor = CholeskyFactor(L)
    assert factor.imprecise.tolist() == [False, True, False]
    wide = factor.expand((5, 3, 4, 4))
    assert wide.imprecise.shape == (5, 3)
    b = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    got, singular = wide.solve(b)
    want, want_singular = CholeskyFactor(L.expand(5, 3, 4, 4)).solve(b)
    assert singular.tolist() == want_singular.tolist() == [[False, True, False]] * 5
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    A = L @ L.transpose(-1, -2)
    torch.testing.assert_close(got[:, 0], torch.linalg.solve(A[0], b[:, 0].T).T)  # a fine element: the solve
