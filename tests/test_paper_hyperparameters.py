"""The hypergradient of examples/paper_hyperparameters.opt (Lorraine et al. 2020): d validation loss / d lam.

The inner problem is a logistic regression with one L2 penalty per feature; the outer loss is the
cross-entropy of its solution on a validation set. Float64, random data, seeds drawn by hypothesis.
Checked against central finite differences of the validation loss (inner solves at tol 1e-13):
  - direct and cg to a relative error (2-norm over the vector) of 1e-7, against the finite
    differences' own accuracy here of about 1e-9 (a margin of 100); cg to 1e-8 against direct;
  - neumann to the same 1e-7, and to 1e-8 against direct: the series stops once a term is below
    1e-12 of the sum and leaves a tail of about kappa times that (measured 1e-11 to 4e-11 at
    kappa 10 to 20), so with the Hessian's condition number kappa below 50 (draws above are
    skipped, so the test stays in the regime it claims) 1e-8 is honest;
  - past kappa ~ 70 the series needs more than the 2000 terms optlang allows: it must warn;
  - torch.autograd.gradcheck of the direct hypergradient in lam and in the training features.
Each comparison is also shown to reject a slightly wrong gradient (the one at lam * 1.001).
"""
import pathlib

import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import optlang

OPT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "paper_hyperparameters.opt"
FD_TOL, NEUMANN_VS_DIRECT = 1e-7, 1e-8
SEEDS = st.integers(0, 2**31 - 1)


@pytest.fixture(scope="module")
def layer():
    return optlang.compile(OPT)


def draw(seed, n=40, n_val=30, d=6, lam_range=(0.01, 1.0), corr=0.9):
    """Training and validation sets from a logistic model whose last half of features is noise, the
    features correlated (`corr`, as real ones are: kappa 10 to 30 with the penalties), and a penalty
    vector log-uniform in lam_range."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    w_true[d // 2:] = 0

    def sample(m):
        common = torch.randn(m, 1, generator=g, dtype=torch.float64)
        X = (1 - corr**2) ** 0.5 * torch.randn(m, d, generator=g, dtype=torch.float64) + corr * common
        return X, (torch.rand(m, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w_true + 0.3)).double()

    lo, hi = torch.tensor(lam_range, dtype=torch.float64).log()
    lam = torch.exp(lo + (hi - lo) * torch.rand(d, generator=g, dtype=torch.float64))
    return sample(n), sample(n_val), lam


def val_loss(layer, train, val, lam, **options):
    sol = layer.solve(X=train[0], y=train[1], lam=lam, **options)
    assert bool(sol.stats.converged.all())
    return torch.nn.functional.binary_cross_entropy_with_logits(val[0] @ sol.w, val[1]), sol


def hypergradient(layer, train, val, lam, backward):
    lam = lam.clone().requires_grad_()
    loss, _ = val_loss(layer, train, val, lam, backward=backward)
    return torch.autograd.grad(loss, lam)[0]


def finite_differences(layer, train, val, lam, h=1e-6):
    with torch.no_grad():
        return torch.stack([(val_loss(layer, train, val, lam + h * e, tol=1e-13)[0]
                             - val_loss(layer, train, val, lam - h * e, tol=1e-13)[0]) / (2 * h)
                            for e in torch.eye(len(lam), dtype=lam.dtype)])


def relative_error(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def kappa(train, sol, lam):
    X = train[0]
    s = torch.sigmoid(X @ sol.w)
    H = X.T @ ((s * (1 - s) / len(X))[:, None] * X) + torch.diag(lam)
    eig = torch.linalg.eigvalsh(H)
    return float(eig[-1] / eig[0])


@settings(max_examples=8, deadline=None)
@given(seed=SEEDS)
def test_hypergradient_matches_finite_differences(layer, seed):
    train, val, lam = draw(seed)
    _, sol = val_loss(layer, train, val, lam)
    assume(kappa(train, sol, lam) < 50)  # the regime in which NEUMANN_VS_DIRECT is claimed (all but rare draws)
    fd = finite_differences(layer, train, val, lam)
    assert float(fd.norm()) > 1e-4  # a gradient worth comparing, not a vacuous zero
    grads = {m: hypergradient(layer, train, val, lam, m) for m in ("direct", "cg", "neumann")}
    for method, grad in grads.items():
        assert relative_error(grad, fd) < FD_TOL, method
    assert relative_error(grads["cg"], grads["direct"]) < NEUMANN_VS_DIRECT
    assert relative_error(grads["neumann"], grads["direct"]) < NEUMANN_VS_DIRECT
    # The same comparisons reject the hypergradient of a penalty 0.1% off: they can fail.
    wrong = hypergradient(layer, train, val, lam * 1.001, "direct")
    assert relative_error(wrong, fd) > FD_TOL
    assert relative_error(wrong, grads["direct"]) > NEUMANN_VS_DIRECT


def test_neumann_warns_past_its_condition_number(layer):
    """Penalties 100 on the noise features and 1e-3 on the others: kappa ~ 1e3, more than the
    ~ 2000 / ln(1e12) ~ 70 the series can sum to 1e-12 in optlang's 2000 terms."""
    train, val, _ = draw(0)
    lam = torch.tensor([1e-3] * 3 + [100.0] * 3, dtype=torch.float64)
    _, sol = val_loss(layer, train, val, lam)
    assert kappa(train, sol, lam) > 500
    with pytest.warns(RuntimeWarning, match="Neumann series did not converge"):
        grad = hypergradient(layer, train, val, lam, "neumann")
    assert relative_error(grad, hypergradient(layer, train, val, lam, "direct")) > NEUMANN_VS_DIRECT  # truly off


class _Skewed(torch.autograd.Function):
    """The identity, with a backward 0.1% too large: what gradcheck must catch."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, g):
        return 1.001 * g


@settings(max_examples=3, deadline=None)
@given(seed=SEEDS)
def test_gradcheck_direct(layer, seed):
    train, val, lam = draw(seed, n=20, n_val=15, d=4)
    inputs = (lam.clone().requires_grad_(), train[0].clone().requires_grad_())

    def loss(lam, X):
        return val_loss(layer, (X, train[1]), val, lam, backward="direct", tol=1e-13)[0]

    check = dict(eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradcheck(loss, inputs, **check)
    # gradcheck can fail: the same check where the gradient reaching lam is 0.1% off.
    assert not torch.autograd.gradcheck(lambda lam, X: loss(_Skewed.apply(lam), X), inputs, raise_exception=False, **check)
