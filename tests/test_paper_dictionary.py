"""The gradient examples/paper_dictionary.py descends: the outer loss in D and the outer weights.

The outer loss is the script's: a logistic regression (w, b) on the elastic-net codes a(D, x) of a
batch of samples that share one dictionary D by broadcasting, plus weight decay on w. Checked in
float64 at a small size (p = 6 features, k = 4 atoms, 5 samples) for several seeds, against
(1) central finite differences of the loss in every entry of D, w and b, (2) the same loss through an
independent closed form of the codes, and (3) `torch.autograd.gradcheck`, for both backward methods
the elastic net offers (`direct`, and `cg` on the free coordinates).

The elastic-net solution is only piecewise smooth: its derivative jumps where a code's support
changes (a coordinate enters or leaves zero). The problems are therefore drawn away from such points:
every nonzero code is at least MARGIN away from 0 and every zero code's gradient at least MARGIN
inside (-lam1, lam1), redrawing otherwise; and the support is checked again at each perturbed point
the finite differences use. Each problem has zero and nonzero codes, so both pieces of the prox's
derivative are exercised.
"""
import pathlib

import pytest
import torch

import optlang

TOL = 1e-13  # the inner solves' tolerance: finite differences with step 1e-6 need the codes to ~1e-13
EPS = 1e-6
MARGIN = 1e-2
P, K, N = 6, 4, 5
LAM1, LAM2, DECAY = 0.3, 0.1, 1e-2
SEEDS = range(5)

CODER = optlang.compile(pathlib.Path(__file__).resolve().parents[1] / "examples" / "paper_dictionary.opt")


def codes(D, X, backward="auto"):
    sol = CODER.solve(D=D, x=X, lam1=LAM1, lam2=LAM2, tol=TOL, backward=backward)
    assert bool(sol.stats.converged.all()), sol.stats.status_names()
    return sol.a


def outer_loss(A, w, b, y):
    """examples/paper_dictionary.py's outer loss, on codes A."""
    return torch.nn.functional.binary_cross_entropy_with_logits(A @ w + b, y) + DECAY * (w * w).sum()


def closed_form(D, X, A):
    """The codes from their support and signs (taken from A), by the linear system they solve there:
    (D_S' D_S + lam2 I) a_S = D_S' x - lam1 sign(a_S); differentiable in D by plain autograd."""
    rows = []
    for x, a in zip(X, A):
        S = a != 0
        DS = D[:, S]
        aS = torch.linalg.solve(DS.T @ DS + LAM2 * torch.eye(int(S.sum()), dtype=D.dtype), DS.T @ x - LAM1 * a[S].sign())
        rows.append(torch.zeros(K, dtype=D.dtype).index_put((S.nonzero()[:, 0],), aS))
    return torch.stack(rows)


def margin(D, X, A):
    """How far the codes A are from a support change: min over nonzeros |a_j| and over zeros lam1 - |g_j|."""
    g = (X - A @ D.T) @ D - LAM2 * A  # minus the smooth part's gradient; equals lam1 sign(a_j) on the support
    on = A != 0
    return min(float(A.abs()[on].min()), float((LAM1 - g.abs())[~on].min()))


def draw(seed):
    """A problem (D with unit columns, samples X, labels y, outer w, b) whose codes are MARGIN from a support change."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        D = torch.randn(P, K, generator=gen, dtype=torch.float64)
        D = D / D.norm(dim=0)
        X = torch.randn(N, P, generator=gen, dtype=torch.float64)
        A = codes(D, X)
        on = A != 0
        if bool(on.any()) and bool((~on).any()) and margin(D, X, A) >= MARGIN:
            break
    y = (torch.rand(N, generator=gen) < 0.5).double()
    w = torch.randn(K, generator=gen, dtype=torch.float64)
    b = torch.randn((), generator=gen, dtype=torch.float64)
    return D, X, y, w, b, A


@pytest.mark.parametrize("seed", SEEDS)
def test_drawn_codes_are_the_elastic_net_solution(seed):
    """The codes solve the elastic net: the closed form on their support agrees and satisfies the
    optimality conditions (signs on the support, |gradient| < lam1 off it), so it is the minimizer."""
    D, X, _, _, _, A = draw(seed)
    ref = closed_form(D, X, A)
    assert torch.equal(ref != 0, A != 0)
    assert torch.equal(ref.sign(), A.sign())
    assert margin(D, X, ref) >= MARGIN
    assert torch.allclose(A, ref, rtol=0, atol=1e-11), (A - ref).abs().max()


@pytest.mark.parametrize("backward", ["direct", "cg"])
@pytest.mark.parametrize("seed", SEEDS)
def test_outer_gradient_matches_finite_differences_and_closed_form(seed, backward):
    D, X, y, w, b, A = draw(seed)
    support = A != 0
    params = [t.clone().requires_grad_() for t in (D, w, b)]
    outer_loss(codes(params[0], X, backward), *params[1:], y).backward()
    grads = [t.grad for t in params]
    assert float(grads[0].abs().max()) > 1e-3  # D's gradient, which flows only through the codes, is not trivially 0

    # (1) central finite differences in every entry of D, w and b; the support must not move.
    for i, (base, grad) in enumerate(zip((D, w, b), grads)):
        fd = torch.zeros_like(base)
        for j in range(base.numel()):
            values = []
            for sign in (1, -1):
                moved = [t.clone() for t in (D, w, b)]
                moved[i].view(-1)[j] += sign * EPS
                A_moved = codes(moved[0], X)
                assert torch.equal(A_moved != 0, support), "the support changed under the perturbation"
                values.append(float(outer_loss(A_moved, *moved[1:], y)))
            fd.view(-1)[j] = (values[0] - values[1]) / (2 * EPS)
        assert torch.allclose(grad, fd, rtol=1e-6, atol=1e-8), (i, (grad - fd).abs().max())

    # (2) the same loss through the closed form of the codes on their support, by plain autograd.
    ref = [t.clone().requires_grad_() for t in (D, w, b)]
    outer_loss(closed_form(ref[0], X, A), *ref[1:], y).backward()
    for grad, r in zip(grads, ref):
        assert torch.allclose(grad, r.grad, rtol=1e-9, atol=1e-11), (grad - r.grad).abs().max()


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_gradcheck(seed):
    """autograd.gradcheck of the outer loss in (D, w, b), and of the codes themselves in (D, x)."""
    D, X, y, w, b, _ = draw(seed)
    inputs = tuple(t.clone().requires_grad_() for t in (D, w, b))
    assert torch.autograd.gradcheck(lambda D_, w_, b_: outer_loss(codes(D_, X), w_, b_, y), inputs,
                                    eps=EPS, atol=1e-7, rtol=1e-6)
    inputs = (D.clone().requires_grad_(), X.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda D_, X_: codes(D_, X_), inputs, eps=EPS, atol=1e-7, rtol=1e-6)
