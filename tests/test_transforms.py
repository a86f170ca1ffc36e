"""The layer inside PyTorch's autodiff: second order, forward mode and torch.func, on every class.

gradgradcheck (float64) on every example under the default backward and each method that claims
second order; torch.func.jacrev / jacfwd / vmap / jvp against torch.autograd.functional.jacobian.
The data are the shared tables' planted cases (strict complementarity with margin, so the solution
map is smooth where it is differentiated), the seeds drawn by hypothesis.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

import problems as P
import references as R
from test_classes import TABLE, TIGHT, example

SEEDS = st.integers(0, 2**32 - 1)


def _inputs(ex, seed: int, batch=()):
    params, _ = R.draw(ex.sample, seed, ex.fixed_size, batch)
    return tuple(torch.tensor(params[n], dtype=torch.float64, requires_grad=True) for n in ex.params)


def _fn(ex, **options):
    """The example's outputs (var, then labelled duals) as one flat tensor of its params."""
    layer = example(ex.name)

    def f(*args):
        kw = dict(zip(ex.params, args))
        for name in ex.psd:  # a psd param enters as (M + M')/2 of a free M
            kw[name] = 0.5 * (kw[name] + kw[name].transpose(-1, -2))
        sol = layer.solve(**kw, tol=TIGHT, **options)
        outs = [sol[ex.outputs[0]]] + [sol.duals[k] for k in ex.outputs[1:]]
        return torch.cat([o.reshape(-1) for o in outs])

    return f


SECOND_ORDER = [pytest.param(ex, bw, id=f"{ex.name}-{bw}") for ex in TABLE for bw in ("auto",) + ex.backwards]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("ex,backward", SECOND_ORDER)
@settings(max_examples=2, deadline=None)
@given(seed=SEEDS)
def test_gradgradcheck(ex, backward, seed):
    inputs = _inputs(ex, seed)
    assert torch.autograd.gradgradcheck(_fn(ex, backward=backward), inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("problem,backward", [pytest.param(p, bw, id=f"{p.name}-{bw}") for p in P.PROBLEMS
                                              for bw in ("auto",) + p.backwards])
@settings(max_examples=2, deadline=None)
@given(seed=SEEDS)
def test_gradgradcheck_problems(problem, backward, seed):
    c = P.make_case(problem, seed)
    ts = c.tensors(requires_grad=True)
    layer = P.layer(problem.name)

    def f(*args):
        return layer(**dict(zip(problem.params, args)), tol=TIGHT, backward=backward)

    assert torch.autograd.gradgradcheck(f, tuple(ts[n] for n in problem.params), eps=1e-6, atol=1e-5, rtol=1e-4)


def _close(a, b, tol=1e-8):
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    assert float((a - b).abs().max()) <= tol * scale if b.numel() else True


FORWARD_MODE = [pytest.param(ex, bw, id=f"{ex.name}-{bw}") for ex in TABLE for bw in ("auto",) + ex.backwards]


@pytest.mark.parametrize("ex,backward", FORWARD_MODE)
@settings(max_examples=1, deadline=None)
@given(seed=SEEDS)
def test_torch_func_jacobians_agree(ex, backward, seed):
    inputs = tuple(t.detach() for t in _inputs(ex, seed))
    f = _fn(ex, backward=backward)
    argnums = tuple(range(len(inputs)))
    want = torch.autograd.functional.jacobian(f, inputs)
    for got in (torch.func.jacrev(f, argnums=argnums)(*inputs), torch.func.jacfwd(f, argnums=argnums)(*inputs)):
        for a, b in zip(got, want):
            _close(a, b)
    tangents = tuple(torch.randn_like(t) for t in inputs)
    _, jv = torch.func.jvp(f, inputs, tangents)
    _close(jv, sum((J.reshape(J.shape[0], -1) @ t.reshape(-1)) for J, t in zip(want, tangents)))


@pytest.mark.parametrize("ex", TABLE, ids=repr)
def test_vmap_is_the_batched_call(ex):
    """vmap over a stack of elements (and nested vmap) equals the layer's own batched call."""
    batch, _ = R.draw(ex.sample, 7, ex.fixed_size, (2, 3))
    stacked = tuple(torch.tensor(batch[n], dtype=torch.float64) for n in ex.params)
    layer = example(ex.name)
    direct = layer.solve(**dict(zip(ex.params, stacked)), tol=TIGHT)[ex.outputs[0]]
    f = lambda *args: layer.solve(**dict(zip(ex.params, args)), tol=TIGHT)[ex.outputs[0]]  # noqa: E731
    _close(torch.func.vmap(f)(*stacked), direct)
    _close(torch.func.vmap(torch.func.vmap(f))(*stacked), direct)


def test_forward_ad_dual_tensors():
    """torch.autograd.forward_ad: the tangent of the solution is J dtheta (ridge, closed form)."""
    import torch.autograd.forward_ad as fwAD

    c = P.make_case(P.BY_NAME["ridge"], 3)
    X, y, lam = (c.tensors()[n] for n in ("X", "y", "lam"))
    dlam = torch.tensor(1.0, dtype=torch.float64)
    with fwAD.dual_level():
        w = P.layer("ridge")(X=X, y=y, lam=fwAD.make_dual(lam, dlam), tol=TIGHT)
        tangent = fwAD.unpack_dual(w).tangent
    A = X.T @ X + lam * torch.eye(X.shape[1], dtype=X.dtype)
    want = -torch.linalg.solve(A, torch.linalg.solve(A, X.T @ y))  # dw/dlam = -A^-1 w
    _close(tangent, want)


def test_third_derivatives_raise_instead_of_returning_zero():
    c = P.make_case(P.BY_NAME["ridge"], 2)
    ts = c.tensors(requires_grad=True)
    w = P.layer("ridge")(**ts)
    (g,) = torch.autograd.grad(w.sum(), ts["lam"], create_graph=True)
    (h,) = torch.autograd.grad(g, ts["lam"], create_graph=True)
    with pytest.raises(RuntimeError, match="above second order"):
        torch.autograd.grad(h, ts["lam"])


@pytest.mark.parametrize("ex", TABLE, ids=repr)
@settings(max_examples=1, deadline=None)
@given(seed=SEEDS)
def test_torch_func_hessian_forward_over_reverse_agrees(ex, seed):
    """hessian = jacfwd(jacrev): forward mode through the second-order backward (AdjointTangent, the KKT
    Jacobian's rows included) against reverse over reverse."""
    inputs = tuple(t.detach() for t in _inputs(ex, seed))
    f = _fn(ex)
    weights = torch.linspace(-1.0, 1.0, f(*inputs).numel(), dtype=torch.float64)
    loss = lambda *args: (weights * f(*args)).sum() + 0.5 * f(*args).square().sum()  # noqa: E731
    argnums = tuple(range(len(inputs)))
    got = torch.func.hessian(loss, argnums=argnums)(*inputs)
    want = torch.autograd.functional.hessian(loss, inputs)
    for i in argnums:
        for j in argnums:
            _close(got[i][j], want[i][j], 1e-7)
