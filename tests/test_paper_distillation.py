"""The gradient examples/paper_distillation.py descends: the outer loss w.r.t. the distilled images.

At a small size (6 features, 3 classes, 4 distilled images, 30 "real" points; random data drawn
by hypothesis' seeds), in float64:

- the layer's W is the minimizer: it matches an independent damped Newton method written here in
  plain PyTorch (torch.func Hessians), run to machine precision;
- d(outer loss)/d(images) by the implicit derivative (backward "auto", i.e. direct at this size,
  "direct", and "cg", the example's) matches central finite differences of the outer loss through
  that independent solver, so the reference shares no code with optlang;
- torch.autograd.gradcheck on the whole Jacobian dW/dX (with a leading batch dim, as the
  example's random draws use) and on the outer loss w.r.t. the images and lam together;
- a warm start (init=, as in the example's loop) changes neither W nor the gradient.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optlang

OPT = Path(__file__).resolve().parents[1] / "examples" / "paper_distillation.opt"
DT = torch.float64
M, D, K, N = 4, 6, 3, 30  # distilled images, features, classes, real training points


@pytest.fixture(scope="module")
def layer():
    return optlang.compile(OPT)


def draw(seed: int):
    """Distilled images X (with labels Y: every class at least once), lam, and real data."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(M, D, generator=g, dtype=DT)
    Y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, int(torch.randint(K, (), generator=g))]), K).to(DT)
    lam = 0.05 + 0.95 * torch.rand((), generator=g, dtype=DT)
    X_real = torch.randn(N, D, generator=g, dtype=DT)
    y_real = torch.randint(K, (N,), generator=g)
    return X, Y, lam, X_real, y_real


def inner_objective(W, X, Y, lam):
    S = X @ W
    return (torch.logsumexp(S, dim=1) - (Y * S).sum(1)).mean() + 0.5 * lam * (W * W).sum()


def reference_W(X, Y, lam):
    """argmin_W of the inner objective by Newton (no optlang): the closed-form gradient and Hessian
    of multinomial logistic regression, a backtracking line search while far away, full steps
    near the answer (where comparing objective values is rounding noise), to a gradient of 1e-13."""
    W = torch.zeros(D, K, dtype=DT)
    for _ in range(100):
        P = torch.softmax(X @ W, dim=1)
        G = X.T @ (P - Y) / M + lam * W
        if float(G.abs().max()) < 1e-13:
            break
        Q = torch.diag_embed(P) - P[:, :, None] * P[:, None, :]  # (M, K, K)
        H = torch.einsum("ia,ic,ibe->abce", X, X, Q).reshape(D * K, D * K) / M + lam * torch.eye(D * K, dtype=DT)
        step = torch.linalg.solve(H, -G.reshape(-1)).reshape(D, K)
        t = 1.0
        if float(G.abs().max()) > 1e-6:
            f0, slope = inner_objective(W, X, Y, lam), float((G * step).sum())
            while float(inner_objective(W + t * step, X, Y, lam)) > float(f0) + 1e-4 * t * slope and t > 1e-8:
                t *= 0.5
        W = W + t * step
    assert float(G.abs().max()) < 1e-13, "the reference Newton did not converge"
    return W


def outer_loss(W, X_real, y_real):
    """The example's outer loss: cross-entropy of W on the real data."""
    return torch.nn.functional.cross_entropy(X_real @ W, y_real)


SEEDS = st.integers(0, 2**31 - 1)


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS)
def test_solution_is_the_minimizer(layer, seed):
    X, Y, lam, _, _ = draw(seed)
    sol = layer.solve(X=X, Y=Y, lam=lam)
    assert bool(sol.stats.converged.all())
    W_ref = reference_W(X, Y, lam)
    assert torch.allclose(sol.W, W_ref, rtol=1e-8, atol=1e-10), float((sol.W - W_ref).abs().max())


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS)
def test_outer_gradient_matches_central_differences(layer, seed):
    X, Y, lam, X_real, y_real = draw(seed)
    h = 1e-5
    fd = torch.zeros_like(X)
    with torch.no_grad():
        for i in range(M):
            for j in range(D):
                E = torch.zeros(M, D, dtype=DT)
                E[i, j] = h
                up = outer_loss(reference_W(X + E, Y, lam), X_real, y_real)
                down = outer_loss(reference_W(X - E, Y, lam), X_real, y_real)
                fd[i, j] = (up - down) / (2 * h)
    scale = float(fd.abs().max())
    assert scale > 1e-4, "the check would be vacuous: the outer gradient is about zero"
    X = X.requires_grad_()
    for backward in ("auto", "direct", "cg"):
        W = layer(X=X, Y=Y, lam=lam, backward=backward)
        (grad,) = torch.autograd.grad(outer_loss(W, X_real, y_real), X)
        error = float((grad - fd).abs().max()) / scale
        assert error < 1e-6, f"backward={backward}: implicit gradient vs central differences, {error:.2e} relative"


@pytest.mark.parametrize("backward", ["auto", "direct", "cg"])
def test_gradcheck(layer, backward):
    X, Y, lam, X_real, y_real = draw(7)
    X2 = torch.stack([X, X.flip(0)]).requires_grad_()  # a leading batch dim of 2
    assert torch.autograd.gradcheck(lambda X_: layer(X=X_, Y=Y, lam=lam, backward=backward, tol=1e-13),
                                    (X2,), eps=1e-6, atol=1e-6, rtol=1e-5)
    lam = lam.clone().requires_grad_()
    X = X.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda X_, lam_: outer_loss(layer(X=X_, Y=Y, lam=lam_, backward=backward, tol=1e-13), X_real, y_real),
        (X, lam), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_warm_start_changes_nothing(layer):
    X, Y, lam, X_real, y_real = draw(3)
    X = X.requires_grad_()
    cold = layer.solve(X=X, Y=Y, lam=lam, backward="cg")
    (g_cold,) = torch.autograd.grad(outer_loss(cold.W, X_real, y_real), X)
    start = {"W": cold.W.detach() + 0.3 * torch.randn(D, K, dtype=DT, generator=torch.Generator().manual_seed(0))}
    warm = layer.solve(X=X, Y=Y, lam=lam, backward="cg", init=start)
    assert int(warm.stats.iterations) > 0  # it did start away from the answer
    (g_warm,) = torch.autograd.grad(outer_loss(warm.W, X_real, y_real), X)
    assert torch.allclose(warm.W, cold.W, rtol=1e-9, atol=1e-11)
    assert torch.allclose(g_warm, g_cold, rtol=1e-8, atol=1e-11)
