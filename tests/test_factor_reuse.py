"""The backward reuses the forward's Cholesky factor of a convex quadratic's constant Hessian.

Its gradients must equal those of a fresh dense solve of the same system (the path taken without a
factor), and the factor must only be kept when every element of the batch factored."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang
from optlang.runtime.executor import TorchExecutor

RIDGE = optlang.compile_string("problem ridge\ndim n, d\nparam X[n, d], y[n]\nparam lam > 0\nvar w[d]\n"
                               "minimize 0.5 * sumsq(X @ w - y) + 0.5 * lam * sumsq(w)\n")


def _grads(layer, params, backward):
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    sol = layer.solve(**leaves, backward=backward)
    weights = torch.linspace(-1.0, 1.0, sol.w.numel(), dtype=torch.float64).reshape(sol.w.shape)
    return torch.autograd.grad((sol.w * weights).sum(), list(leaves.values()))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
       n=st.integers(1, 12), d=st.integers(1, 8))
def test_gradients_with_the_kept_factor_match_a_fresh_solve(seed, batch, n, d):
    g = torch.Generator().manual_seed(seed)
    params = dict(X=torch.randn(batch + (n, d), generator=g, dtype=torch.float64),
                  y=torch.randn(batch + (n,), generator=g, dtype=torch.float64),
                  lam=torch.rand(batch, generator=g, dtype=torch.float64) + 0.1)
    with pytest.MonkeyPatch.context() as mp:  # (hypothesis runs many examples per function-scoped fixture)
        import optlang.runtime.executor as ex

        solves = []
        real = ex.adjoint_solve
        mp.setattr(ex, "adjoint_solve", lambda *a, **k: solves.append(a[3]) or real(*a, **k))
        kept = _grads(RIDGE, params, "auto")
        assert solves == []  # the factor was used: no adjoint system was built
        # The same call with the factor dropped from the forward's result: a dense LU of the Hessian.
        original = TorchExecutor.backward
        mp.setattr(TorchExecutor, "backward",
                   lambda self, bound, x, g, options, wanted, result=None: original(self, bound, x, g, options,
                                                                                    wanted, None))
        fresh = _grads(RIDGE, params, "auto")
        assert solves == ["direct"]
    for a, b in zip(kept, fresh):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


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
    lam = torch.tensor([0.5, -1e6], dtype=torch.float64)
    assert solve(lam).factor is None


@pytest.mark.parametrize("backward", ["cg", "gmres"])
def test_an_explicit_krylov_backward_does_not_take_the_factor(backward, monkeypatch):
    import optlang.runtime.executor as ex

    seen = []
    real = ex.adjoint_solve
    monkeypatch.setattr(ex, "adjoint_solve", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    params = dict(X=torch.randn(6, 3, dtype=torch.float64), y=torch.randn(6, dtype=torch.float64),
                  lam=torch.tensor(0.5, dtype=torch.float64))
    _grads(RIDGE, params, backward)
    assert seen == [backward]
