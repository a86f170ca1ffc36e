"""Derivatives of every example: gradcheck, references, closed forms, finite differences, float32.

Parametrized over problem x batch shape x backward method (x backend): `cg`
is offered for the minimize problems, `direct` for all. The data come from
`problems.py` (well conditioned, strictly complementary by construction);
the references share no code with optlang.
"""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from problems import (BACKENDS, BATCHES, CUDA, MARGIN, PROBLEMS, case, check_gradients, device_for, fd_directional, grads,
                      layer, make_case, rel_err, var_name)

TIGHT = 1e-12

SOLVE_CASES = [pytest.param(p, b, id=f"{p.name}-{b}") for p in PROBLEMS for b in BATCHES]
GRAD_CASES = [pytest.param(p, b, bw, id=f"{p.name}-{b}-{bw}")
              for p in PROBLEMS for b in BATCHES for bw in p.backwards]


def _solve(problem, tensors, **options):
    sol = layer(problem.name).solve(**tensors, **options)
    return sol[var_name(problem)], sol


# -- the problem table itself ---------------------------------------------------------------
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@given(data=st.data())
def test_reference_is_optimal_and_strictly_complementary(problem, data):
    """The references solve the problems, and the planted data leave room for finite differences."""
    c = data.draw(case(problem))
    p, x = c.params, c.reference()
    if problem.name in ("ridge", "logistic"):
        X, y, lam = p["X"], p["y"], float(p["lam"])
        if problem.name == "ridge":
            grad = X.T @ (X @ x - y) + lam * x
        else:
            grad = X.T @ (1 / (1 + np.exp(-(X @ x))) - y) / len(y) + lam * x
        assert np.abs(grad).max() <= 1e-12 * max(1.0, np.abs(X).max() ** 2 * max(1.0, np.abs(x).max()))
    elif problem.name == "kepler":
        assert abs(x - p["e"] * np.sin(x) - p["M"]) <= 1e-14 * max(1.0, abs(p["M"]))
    else:
        A, b = p["A"], p["b"]
        lo = p.get("lo", np.zeros(A.shape[1]))
        hi = p.get("hi", np.full(A.shape[1], np.inf))
        grad = A.T @ (A @ x - b)
        at_lo, at_hi = x == lo, x == hi
        free = ~(at_lo | at_hi)
        assert np.all(x >= lo) and np.all(x <= hi)
        assert np.all(np.abs(grad[free]) <= 1e-10)
        assert np.all(grad[at_lo] >= MARGIN - 1e-9) and np.all(-grad[at_hi] >= MARGIN - 1e-9)
        assert np.all(x[free] - lo[free] >= MARGIN - 1e-9) and np.all(hi[free] - x[free] >= MARGIN - 1e-9)


# -- (a) gradcheck, float64, every parameter, contiguous inputs --------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem,batch,backward", GRAD_CASES)
def test_gradcheck(problem, batch, backward, backend):
    c = make_case(problem, seed=1234, batch=batch)
    ts = c.tensors(requires_grad=True, device=device_for(backend))
    inputs = tuple(ts[n] for n in problem.params)
    assert all(t.is_contiguous() for t in inputs)

    def f(*args):
        x, sol = _solve(problem, dict(zip(problem.params, args)), tol=TIGHT, backward=backward, backend=backend)
        assert sol.stats.all_converged
        return x

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


# -- (b) solutions against the references --------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem,batch", SOLVE_CASES)
@given(data=st.data())
def test_solution_matches_reference(problem, batch, backend, data):
    c = data.draw(case(problem, batch))
    x, sol = _solve(problem, c.tensors(device=device_for(backend)), tol=TIGHT, backend=backend)
    x = x.cpu()
    assert x.dtype == torch.float64
    assert tuple(x.shape) == batch + problem.var_shape(c.size)
    assert sol.stats.converged.shape == batch and bool(sol.stats.converged.all())
    assert float(sol.stats.residual.max()) <= TIGHT
    ref = c.reference()
    for idx in np.ndindex(*batch):
        assert rel_err(x.numpy()[idx], ref[idx]) <= 1e-9, idx


# -- (c) gradients against closed forms, or finite differences of the references ----------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("problem,batch,backward", GRAD_CASES)
@given(data=st.data())
def test_gradient_matches_reference(problem, batch, backward, backend, data):
    c = data.draw(case(problem, batch))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed of g and directions"))
    g = rng.standard_normal(batch + problem.var_shape(c.size))
    x, got, stats = grads(problem, c, g, tol=TIGHT, backward=backward, backend=backend, device=device_for(backend))
    assert stats.all_converged
    for name in problem.params:
        assert got[name].shape == c.params[name].shape, name
    check_gradients(problem, c, x, got, g, rng, rtol=1e-8)


@pytest.mark.parametrize("problem", [p for p in PROBLEMS if p.vjp is not None], ids=lambda p: p.name)
@given(data=st.data())
def test_closed_form_agrees_with_finite_differences(problem, data):
    """The closed forms in the table are right (so the comparisons above mean something)."""
    c = data.draw(case(problem))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = c.reference()
    g = rng.standard_normal(np.shape(x))
    want = problem.vjp(c.params, x, g)
    for name in problem.params:
        direction = rng.uniform(-1.0, 1.0, np.shape(c.params[name]))
        fd = fd_directional(problem, c.params, name, direction, g)
        assert abs(float(np.sum(want[name] * direction)) - fd) <= 1e-6 * max(1.0, abs(fd)), name


# -- (d) float32 against float64 -------------------------------------------------------------------
@pytest.mark.parametrize("problem,batch", SOLVE_CASES)
@given(data=st.data())
def test_float32_matches_float64(problem, batch, data):
    c = data.draw(case(problem, batch))
    g = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(batch + problem.var_shape(c.size))
    x64, g64, _ = grads(problem, c, g, dtype=torch.float64)
    x32, g32, _ = grads(problem, c, g, dtype=torch.float32)
    assert x32.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in g32.values())
    # Within what float32 and its default tolerance promise: the relative residual stops at
    # 1e-5 and the table's Jacobians have condition numbers up to 100 (cond(A) <= 10 in A'A),
    # so 1e-3; far from the float32 noise a wrong cast or a float64-only constant gives.
    for idx in np.ndindex(*batch):
        assert rel_err(x32.numpy()[idx], x64.numpy()[idx]) <= 1e-3, idx
        for name in problem.params:
            assert rel_err(g32[name].numpy()[idx], g64[name].numpy()[idx]) <= 1e-3, (idx, name)


# -- Triton in its interpreter (no CUDA): one fixed case per problem and backward ------------------
@pytest.mark.triton
@pytest.mark.skipif(CUDA, reason="with CUDA the whole matrix above runs on Triton")
@pytest.mark.parametrize("problem,backward", [pytest.param(p, bw, id=f"{p.name}-{bw}") for p in PROBLEMS
                                              for bw in p.backwards])
def test_triton_interpreted_matches_references(problem, backward):
    batch = (2, 2)
    c = make_case(problem, seed=99, batch=batch)
    rng = np.random.default_rng(99)
    g = rng.standard_normal(batch + problem.var_shape(c.size))
    x, got, stats = grads(problem, c, g, tol=TIGHT, backward=backward, backend="triton")
    assert stats.all_converged
    ref = c.reference()
    for idx in np.ndindex(*batch):
        assert rel_err(x.numpy()[idx], ref[idx]) <= 1e-9, idx
    check_gradients(problem, c, x, got, g, rng, rtol=1e-8)
