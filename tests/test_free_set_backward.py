"""The implicit solves of a quadratic with a box or norm1 prox eliminate the bound coordinates.

FISTA keeps the constant Hessian H it built; the backward then solves dF/dx = (I - D) + D H on the
free set by Cholesky (linalg.FreeSetSystem) in place of the dense Jacobian from n JVPs and LU.
Reverse mode, forward mode and the second-order backward must give what the dense path gives, and
elements whose free block is singular must take the dense path's least squares, flagged."""
from __future__ import annotations

import pathlib

import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang
import optlang.runtime.executor as executor
from optlang.solvers.linalg import FreeSetSystem, solve

F64 = torch.float64
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
LAYERS = {name: optlang.compile(EXAMPLES / f"{name}.opt") for name in ("nnls", "lasso", "box_ls", "elastic_net")}


def _params(name, batch, rows, cols, g):
    A = torch.randn(batch + (rows, cols), generator=g, dtype=F64)
    b = torch.randn(batch + (rows,), generator=g, dtype=F64)
    if name == "nnls":
        return dict(A=A, b=b)
    lam = 0.3 * torch.rand(batch, generator=g, dtype=F64) + 0.05
    if name == "lasso":
        return dict(X=A, y=b, lam=lam)
    if name == "elastic_net":
        return dict(X=A, y=b, lam1=lam, lam2=0.1 * lam)
    lo = -0.3 * torch.rand(batch + (cols,), generator=g, dtype=F64)
    return dict(A=A, b=b, lo=lo, hi=lo + 0.5)


def _derivatives(layer, params):
    """Reverse-mode gradients, a second derivative and a forward-mode tangent of one loss."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    x = layer(**leaves)
    weights = torch.linspace(-1.0, 1.0, x.numel(), dtype=F64).reshape(x.shape)
    loss = (x * weights).sum() + 0.5 * x.square().sum()
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
    first = next(iter(leaves))
    second = torch.autograd.grad(grads[0].sum(), leaves[first], allow_unused=True)[0]
    tangents = tuple(torch.ones_like(v) for v in params.values())
    _, tangent = torch.func.jvp(lambda *ts: layer(**dict(zip(params, ts))), tuple(params.values()), tangents)
    second = torch.zeros_like(params[first]) if second is None else second
    return [g.detach() for g in grads] + [second, tangent]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(sorted(LAYERS)),
       batch=st.sampled_from([(), (1,), (4,), (2, 3)]), cols=st.integers(1, 8), extra=st.integers(0, 6))
def test_derivatives_on_the_free_set_match_the_dense_path(seed, name, batch, cols, extra):
    # At least as many rows as columns: H is positive definite, so the derivative is unique (a singular
    # free block has none, and the two paths' factorizations may then land on different garbage; the
    # fallback is the next test's).
    layer = LAYERS[name]
    params = _params(name, batch, cols + extra, cols, torch.Generator().manual_seed(seed))
    with pytest.MonkeyPatch.context() as mp:
        systems = []
        real = executor.implicit_system
        mp.setattr(executor, "implicit_system", lambda *a: systems.append(real(*a)) or systems[-1])
        kept = _derivatives(layer, params)
        assert systems and all(m == "direct" and isinstance(J, FreeSetSystem) for m, _, J in systems)
        # The same calls with no Hessian kept by the forward: dense Jacobians from JVPs, LU.
        mp.setattr("optlang.solvers.pgd.keep_hessian", lambda H, quadratic, ctx: H)
        systems.clear()
        dense = _derivatives(layer, params)
        assert systems and all(not isinstance(J, FreeSetSystem) for _, _, J in systems)
    for a, b in zip(kept, dense):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10), (a - b).abs().max()


def _dense(H, D):
    eye = torch.eye(D.shape[-1], dtype=D.dtype)
    return eye - D.unsqueeze(-1) * (eye - H)


@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("shared", [True, False])
def test_free_set_system_solves_the_dense_system_and_falls_back_where_singular(transpose, shared):
    g = torch.Generator().manual_seed(3)
    n = 6
    M = torch.randn(4, n + 2, n, generator=g, dtype=F64)
    H = M.transpose(-1, -2) @ M
    H[2, 3, :] = H[2, :, 3] = 0.0  # element 2's coordinate 3 is free and H has nothing on it: singular
    D = torch.tensor([[1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=F64)
    if shared:  # one H for the batch: element 2 singular still
        H = H[2]
    b = torch.randn(4, n, generator=g, dtype=F64)
    system = FreeSetSystem(H, D)
    y, singular = system.solve(b, transpose)
    J = _dense(H.expand(4, n, n), D)
    expected, expected_singular = solve(J.transpose(-1, -2) if transpose else J, b)
    assert singular.tolist() == expected_singular.tolist() == [False, False, True, False]
    assert torch.allclose(y, expected, rtol=1e-9, atol=1e-9)
    # the singular element's answer is least squares (minimum norm), not Cholesky's garbage
    assert torch.isfinite(y).all()


def test_free_set_system_expands_for_more_batch_dims():
    """A vmapped tangent's batch dims in front (runtime.function's second-order forward mode) reuse the factor."""
    g = torch.Generator().manual_seed(4)
    M = torch.randn(3, 7, 4, generator=g, dtype=F64)
    H, D = M.transpose(-1, -2) @ M, torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=F64)
    b = torch.randn(5, 3, 4, generator=g, dtype=F64)
    wide = FreeSetSystem(H, D).expand((5, 3, 4, 4))
    for transpose in (True, False):
        y, _ = wide.solve(b, transpose)
        J = _dense(H, D).expand(5, 3, 4, 4)
        assert torch.allclose(y, torch.linalg.solve(J.transpose(-1, -2) if transpose else J, b), atol=1e-10)
