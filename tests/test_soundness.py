"""Ways a solve could return a wrong number without saying so, each closed (issue: derivatives that
compose and are never silently wrong): nonconvex objectives, indefinite psd data, solvers leaving
their domain, and one element's failure reaching another's result or gradient."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang
from optlang.errors import CallError, NotSupportedError

SEEDS = st.integers(0, 2**32 - 1)

ENTROPY = """problem entropy
dim n
param v[n]
var x[n]
minimize sum(x * log(x)) - dot(v, x)
subject to
  x >= 0
  sum(x) == 1
"""


# -- convexity: proven by composition rules or refused at the objective's line ---------------------
@pytest.mark.parametrize("objective,found", [
    ("minimize -sumsq(x - v)", "the objective is concave"),
    ("minimize sum(sin(x)) + sumsq(x - v)", "the objective is not provably convex"),
    ("maximize sumsq(x - v)", "the objective is convex: with constraints or nonsmooth terms, maximize needs"),
])
def test_a_nonconvex_objective_with_constraints_is_refused_at_its_line(objective, found):
    src = f"problem p\ndim n\nparam v[n]\nvar x[n]\n{objective}\nsubject to\n  x >= 0\n"
    with pytest.raises(NotSupportedError) as info:
        optlang.compile_string(src, "t.opt")
    text = str(info.value)
    assert found in text and "t.opt:5:1" in text


def test_a_nonconvex_objective_with_a_prox_term_is_refused():
    src = "problem p\ndim n\nparam v[n]\nvar x[n]\nminimize -sumsq(x - v) + norm1(x)\n"
    with pytest.raises(NotSupportedError, match="not provably convex|concave"):
        optlang.compile_string(src)


@pytest.mark.parametrize("objective", [
    "0.5 * quad(x, Q) + dot(v, x)",  # Q declared psd
    "sum(x * log(x)) - dot(v, x)",
    "mean(softplus(x)) + sumsq(x - v)",  # mean divides by a dim: a positive number
    "logsumexp(x) - dot(v, x) + sumsq(x)",
])
def test_convex_objectives_compile(objective):
    src = f"problem p\ndim n\nparam v[n], Q[n, n] psd\nvar x[n]\nminimize {objective}\nsubject to\n  x >= 0.1\n"
    optlang.compile_string(src)


def test_a_smooth_nonconvex_objective_is_a_stated_local_solution():
    src = "problem p\ndim n\nparam v[n]\nvar x[n]\nminimize sum(cos(x)) + 0.1 * sumsq(x - v)\n"
    layer = optlang.compile_string(src)
    assert layer.plan.local
    sol = layer.solve(v=torch.zeros(3, dtype=torch.float64))
    assert "local solution" in sol.stats.note
    convex = optlang.compile_string("problem q\ndim n\nparam v[n]\nvar x[n]\nminimize sumsq(x - v)\n")
    assert not convex.plan.local and convex.solve(v=torch.zeros(3)).stats.note == ""


def test_the_conditions_report_says_local(tmp_path, capsys):
    from optlang.cli import main

    path = tmp_path / "p.opt"
    path.write_text("problem p\ndim n\nparam v[n]\nvar x[n]\nminimize sum(cos(x)) + 0.1 * sumsq(x - v)\n")
    main(["conditions", str(path)])
    assert "not provably convex, so the solution is a local one" in capsys.readouterr().out


# -- psd is checked for real ---------------------------------------------------------------------------
QP = optlang.compile_string("problem qp\ndim n\nparam Q[n, n] psd, c[n]\nvar z[n]\n"
                            "minimize 0.5 * quad(z, Q) + dot(c, z)\nsubject to\n  z >= 0\n")


def test_an_indefinite_psd_param_is_refused():
    Q = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)  # symmetric, positive diagonal, eigenvalue -1
    with pytest.raises(CallError, match=r"parameter 'Q': must be psd but has a negative eigenvalue \(-1"):
        QP.solve(Q=Q, c=torch.ones(2, dtype=torch.float64))


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, n=st.integers(2, 5), batch=st.integers(1, 4))
def test_psd_check_accepts_psd_and_names_the_indefinite_element(seed, n, batch):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((batch, n, n))
    Q = M @ M.transpose(0, 2, 1) / n  # psd (possibly singular up to rounding)
    Q[:, 0, 0] += 1e-3
    c = rng.standard_normal((batch, n))
    QP.solve(Q=torch.tensor(Q), c=torch.tensor(c))
    bad = int(rng.integers(batch))
    w, V = np.linalg.eigh(Q[bad])
    w[0] = -0.5  # one negative eigenvalue, diagonal maybe still positive
    Q[bad] = (V * w) @ V.T
    with pytest.raises(CallError, match="negative eigenvalue" + (rf".* at batch index \({bad},\)")):
        QP.solve(Q=torch.tensor(Q), c=torch.tensor(c))


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, n=st.integers(2, 6))
def test_psd_check_draws_its_line_at_the_tolerance(seed, n):
    """The check passes a matrix by its Cholesky factor with tol I added: a least eigenvalue of -tol/2
    passes, -2 tol is refused (tol = 1e-10 max(1, max |Q|) n in float64), as the eigenvalues say."""
    rng = np.random.default_rng(seed)
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = rng.uniform(0.5, 2.0, n)
    for factor, passes in ((-0.5, True), (-2.0, False)):
        w[0] = 0.0
        tol = 1e-10 * max(1.0, float(np.abs((V * w) @ V.T).max())) * n
        w[0] = factor * tol
        Q = (V * w) @ V.T
        Q = 0.5 * (Q + Q.T)
        c = torch.tensor(rng.standard_normal(n))
        if passes:
            QP.solve(Q=torch.tensor(Q), c=c, warn=False)  # passed the check (the solve may run off: not PSD)
        else:
            with pytest.raises(CallError, match="negative eigenvalue"):
                QP.solve(Q=torch.tensor(Q), c=c)


def test_a_jacobian_singular_to_working_precision_is_warned_about_not_solved_silently():
    """The Crammer-Singer dual with one feature and random labels: its Hessian has rank k = 5 of 60, and
    at the solution dF/dx has a singular value of 1e-17 against 10 (the derivative is not unique). LU
    factors it without an error; the direct backward used to return that number silently. It now says
    so and takes the least-squares (minimum-norm) solution, as for an exactly singular Jacobian."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "examples" / "svm.opt").read_text()
    layer = optlang.compile_string(text, backend="torch", backward="direct")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 1, generator=g, dtype=torch.float64, requires_grad=True)
    Y = torch.nn.functional.one_hot(torch.randint(5, (12,), generator=g), 5).to(torch.float64)
    sol = layer.solve(X=X, Y=Y, lam=torch.tensor(1.0, dtype=torch.float64))
    assert sol.stats.all_converged
    with pytest.warns(RuntimeWarning, match="singular Jacobian in the backward pass"):
        (grad,) = torch.autograd.grad((sol.beta * torch.randn(12, 5, generator=g, dtype=torch.float64)).sum(), X)
    assert torch.isfinite(grad).all()


# -- solvers stay in their domain; failures stay with their element ----------------------------------
def _softmax_vjp(x, g):
    return x * (g - (x * g).sum(-1, keepdim=True))


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, n=st.integers(2, 8), batch=st.integers(1, 6), scale=st.sampled_from([1.0, 3.0, 10.0]))
def test_entropy_on_the_simplex_converges_by_default(seed, n, batch, scale):
    """The solution is softmax(v - 1) = softmax(v); its gradient is softmax's Jacobian."""
    layer = optlang.compile_string(ENTROPY)
    rng = np.random.default_rng(seed)
    v = torch.tensor(scale * rng.standard_normal((batch, n)), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sol = layer.solve(v=v)
    assert sol.stats.all_converged
    x = sol.x
    want = torch.softmax(v.detach(), -1)
    assert float((x.detach() - want).abs().max()) <= 1e-8
    g = torch.tensor(rng.standard_normal((batch, n)))
    (grad,) = torch.autograd.grad((x * g).sum(), v)
    assert float((grad - _softmax_vjp(want, g)).abs().max()) <= 1e-7


def test_a_failed_element_keeps_to_itself():
    """An element that cannot converge (its solution underflows to the simplex's boundary, where
    x log x has no derivative) is flagged with finite outputs; the other element's solution and
    gradient are what they are alone."""
    layer = optlang.compile_string(ENTROPY)
    good = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64, requires_grad=True)
    hard = torch.tensor([[1e150, -1e150, 0.5]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    alone = layer.solve(v=good)
    (grad_alone,) = torch.autograd.grad((alone.x * g).sum(), good)
    with pytest.warns(RuntimeWarning, match=r"did not converge at batch elements \[\(1,\)\]"):
        both = layer.solve(v=torch.cat([good, hard]))
    assert both.stats.converged.tolist() == [True, False] and torch.isfinite(both.x).all()
    assert torch.allclose(both.x[0], alone.x[0], atol=1e-10, rtol=0)
    v = torch.cat([good, hard]).detach().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sol = layer.solve(v=v)
        (grad,) = torch.autograd.grad((sol.x * torch.cat([g, g])).sum(), v)
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad[0], grad_alone[0], atol=1e-8, rtol=0)


def test_a_non_finite_jacobian_element_gets_a_zero_gradient_and_a_warning_not_a_torch_error():
    from optlang.solvers.linalg import solve

    A = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    A[1, 0, 0] = float("nan")
    b = torch.ones(3, 3, dtype=torch.float64)
    x, bad = solve(A, b)
    assert bad.tolist() == [False, True, False]
    assert torch.isfinite(x).all() and torch.equal(x[0], b[0]) and torch.equal(x[2], b[2])


def test_a_non_finite_residual_ends_failed_not_max_iter():
    from optlang.solvers.result import FAILED, MAX_ITER, SolveResult

    x = torch.zeros(3, 2)
    res = SolveResult(x, torch.tensor([True, False, False]), torch.zeros(3, dtype=torch.int64),
                      torch.tensor([0.0, 1.0, float("nan")]))
    assert res.status_codes().tolist() == [0, MAX_ITER, FAILED]


def test_newton_compacts_the_batch_so_stragglers_iterate_alone(monkeypatch):
    """Once most elements have converged, the Jacobians are built for the stragglers only."""
    from optlang.runtime.bound import BoundProblem

    layer = optlang.compile_string("problem p\ndim n\nparam a[n], c\nvar x[n]\n"
                                   "minimize sum(exp(c * x)) - dot(a, x) + 0.01 * sumsq(x)\n")
    a = torch.full((8, 3), 0.5, dtype=torch.float64)
    c = torch.ones(8, dtype=torch.float64)
    c[5] = 25.0  # steep: Newton needs many more steps here
    sizes = []
    jacobian = BoundProblem.jacobian

    def recording(self, x, which="jvp_x", size=None):
        sizes.append(x.shape[0])
        return jacobian(self, x, which, size)

    monkeypatch.setattr(BoundProblem, "jacobian", recording)
    sol = layer.solve(a=a, c=c)
    assert sol.stats.all_converged
    assert int(sol.stats.iterations[5]) > int(sol.stats.iterations[0])
    assert sizes[0] == 8 and sizes[-1] == 1
    alone = layer.solve(a=a[5], c=c[5])
    assert torch.allclose(sol.x[5], alone.x, atol=1e-12, rtol=0)


# ---- Newton on a problem not proven convex -------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_the_modified_newton_step_is_newtons_where_the_hessian_is_positive_definite_else_a_descent_one(n, seed):
    """`newton.modified_newton_step`: for a positive definite H the plain Newton step -H^-1 F; for an
    indefinite one -(H + tau I)^-1 F with H + tau I positive definite, so a descent direction."""
    from optlang.solvers.newton import modified_newton_step

    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    positive = rng.uniform(0.1, 10.0, n)
    mixed = positive * np.where(np.arange(n) % 2 == 0, -1.0, 1.0)  # at least one negative eigenvalue
    H = torch.tensor(np.stack([Q @ np.diag(positive) @ Q.T, Q @ np.diag(mixed) @ Q.T]))
    F = torch.tensor(rng.standard_normal((2, n)))
    step = modified_newton_step(H, F, None)  # the PyTorch spellings need no context here
    torch.testing.assert_close(step[0], -torch.linalg.solve(H[0], F[0]), rtol=1e-10, atol=1e-12)
    assert float((step[1] * F[1]).sum()) < 0  # descends the objective whose gradient is F
    # the shift is the smallest tried: the step solves (H + tau I) step = -F with H + tau I > 0
    residual = -F[1] - H[1] @ step[1]
    tau = float(residual @ step[1] / (step[1] @ step[1]))
    least = -float(torch.linalg.eigvalsh(H[1]).min())
    assert least < tau <= 10 * least * (1 + 1e-9)  # tau steps by 10x: the first that works is within 10x
    torch.testing.assert_close(residual, tau * step[1], rtol=1e-8, atol=1e-10)
