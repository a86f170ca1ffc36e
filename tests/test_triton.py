"""The Triton backend against the PyTorch backend: solutions, gradients, launches, limits, sm_90 builds.

On machines without CUDA the kernels run in Triton's interpreter (tests/conftest.py
sets TRITON_INTERPRET=1), which executes every tile op in NumPy: sizes stay small.
The prox sets and the fixed point are written inline (SOURCES), so these tests do not
move with the examples.
"""
import math
import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optlang
from optlang.backends.triton.executor import TritonExecutor
from optlang.backends.triton.printer import kernel_name, unsupported
from optlang.passes.select import default_solver

pytestmark = pytest.mark.triton

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NAMES = ("ridge", "logistic", "nnls", "box_ls", "kepler")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNELS = ("newton_kernel", "fista_kernel", "anderson_kernel", "backward_direct_kernel", "backward_cg_kernel")
KKT_KERNELS = ("ipm_kernel", "backward_kkt_kernel")
SOURCES = {  # the new prox sets (param box on a scalar, simplex, norm1, norm2, ball) and a fixed point
    "scalar_box": "problem scalar_box\nparam a, lo\nvar x\nminimize 0.5 * square(x - a) + 0.1 * x ^ 4\n"
                  "subject to\n  x >= lo\n",
    "sparsemax": "problem sparsemax\ndim n\nparam v[n]\nvar x[n]\nminimize 0.5 * sumsq(x - v)\n"
                 "subject to\n  x >= 0\n  sum(x) == 1\n",
    "lasso": "problem lasso\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
             "minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n",
    "group": "problem group\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
             "minimize 0.5 * sumsq(X @ w - y) + lam * norm2(w)\n",
    "ball": "problem ball\ndim n, d\nparam X[n, d], y[n], r > 0\nvar w[d]\nminimize 0.5 * sumsq(X @ w - y)\n"
            "subject to\n  norm2(w) <= r\n",
    "deq": "problem deq\ndim d, k\nparam W[d, d], U[d, k], u[k], bias[d]\nvar z[d]\n"
           "fixed_point z = tanh(W @ z + U @ u + bias)\n",
}


def layer(name):
    if name in SOURCES:
        return optlang.compile_string(SOURCES[name], f"{name}.opt")
    return optlang.compile(EXAMPLES / f"{name}.opt")


def data(name, dtype=torch.float64, batch=(3,), seed=0, rows=6, cols=4):
    """Well-conditioned parameters for each example (a rows x cols matrix), some shared by the batch."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.rand(*s, generator=g, dtype=dtype)  # noqa: E731
    randn = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    if name == "ridge":
        out = dict(X=randn(*batch, rows, cols), y=randn(*batch, rows), lam=torch.tensor(0.7, dtype=dtype))
    elif name == "logistic":
        out = dict(X=randn(*batch, rows, cols), y=rand(*batch, rows), lam=0.3 + rand(*batch))
    elif name in ("nnls", "box_ls"):
        A = randn(*batch, rows, cols)
        b = (A @ randn(*batch, cols, 1))[..., 0] + 0.1 * randn(*batch, rows)
        out = dict(A=A, b=b)
        if name == "box_ls":
            out.update(lo=-0.4 * torch.ones(cols, dtype=dtype), hi=0.2 + 0.5 * rand(*batch, cols))
    elif name == "kepler":
        out = dict(M=3 * rand(*batch), e=0.9 * rand(*batch))
    elif name == "scalar_box":  # lo above the unconstrained minimum in some elements
        out = dict(a=randn(*batch), lo=randn(*batch))
    elif name == "sparsemax":  # partial supports
        out = dict(v=1.5 * randn(*batch, cols + 1))
    elif name in ("lasso", "group", "ball"):  # some zero coefficients, a zero solution, an active ball
        out = dict(X=randn(*batch, rows, cols), y=randn(*batch, rows))
        if name == "ball":
            out["r"] = torch.tensor([0.3, 1.0, 100.0], dtype=dtype)[: math.prod(batch)].reshape(batch)
        else:
            out["lam"] = torch.tensor([0.5, 3.0, 100.0], dtype=dtype)[: math.prod(batch)].reshape(batch)
    else:  # deq: W a contraction, a unique equilibrium
        W = randn(cols, cols)
        out = dict(W=0.8 * W / torch.linalg.matrix_norm(W, 2), U=randn(cols, 3), u=randn(*batch, 3), bias=randn(cols))
    return {k: v.to(DEVICE) for k, v in out.items()}


def run(model, params, backend, **options):
    """The solution, the gradient of a fixed scalar loss for every param, and the stats."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    sol = model.solve(**leaves, backend=backend, **options)
    x = sol[model.plan.var.name]
    weights = torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)
    loss = (x * weights).sum() + (x * x).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return x.detach(), dict(zip(leaves, grads)), sol.stats


def assert_close(got, want):
    if want.dtype == torch.float64:
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    else:
        scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_forward_and_backward_match_torch(name, dtype):
    model, params = layer(name), data(name, dtype)
    x_ref, grads_ref, stats_ref = run(model, params, "torch")
    x, grads, stats = run(model, params, "triton")
    assert x.shape == x_ref.shape and x.dtype == dtype
    assert_close(x, x_ref)
    for key in params:
        assert grads[key].shape == params[key].shape
        assert_close(grads[key], grads_ref[key])
    assert stats.converged.all() and stats_ref.converged.all()
    assert stats.iterations.dtype == torch.int64 and stats.iterations.shape == stats_ref.iterations.shape
    if model.plan.kind != "prox":  # pgd.py couples the batch's polishing; Newton's counts are per element
        assert torch.equal(stats.iterations, stats_ref.iterations)


NEW = [("scalar_box", "fista", torch.float64), ("sparsemax", "fista", torch.float64), ("lasso", "fista", torch.float64),
       ("lasso", "pgd", torch.float64), ("group", "fista", torch.float64), ("ball", "fista", torch.float64),
       ("deq", "anderson", torch.float64), ("deq", "newton", torch.float64), ("sparsemax", "fista", torch.float32)]
# (No float32 Anderson here: it stops at a relative residual of 1e-5 after linear convergence, and
# its small least squares is ill-conditioned in float32, so two correct runs differ by about tol.)


@pytest.mark.parametrize("name,solver,dtype", NEW, ids=[f"{n}-{s}-{str(d)[6:]}" for n, s, d in NEW])
def test_prox_sets_and_fixed_points_match_torch(name, solver, dtype):
    model, params = layer(name), data(name, dtype)
    x_ref, grads_ref, stats_ref = run(model, params, "torch", solver=solver)
    x, grads, stats = run(model, params, "triton", solver=solver)
    assert x.shape == x_ref.shape and x.dtype == dtype
    assert_close(x, x_ref)
    for key in params:
        assert grads[key].shape == params[key].shape
        assert_close(grads[key], grads_ref[key])
    assert stats.converged.all() and stats_ref.converged.all()
    if model.plan.kind != "prox":  # Anderson and Newton mirror the torch solvers iteration for iteration
        assert torch.equal(stats.iterations, stats_ref.iterations)


def test_simplex_threshold_matches_sorting():
    # The kernel's Newton steps (those of backends/torch/support.py::_newton_tau) against the sort: ties,
    # a dominant entry, a constant vector (support everything), a large scale, padding (n = 7).
    from optlang.backends.torch.support import _sorted_tau as simplex_tau

    v = torch.tensor([[0.3, 0.3, 0.3, -1.0, 0.2, 0.3, 0.1], [5.0, 0.1, -0.2, 0.3, 0.0, 0.2, 0.1],
                      [0.5] * 7, [40.0, 39.5, -3.0, 39.9, 12.0, 39.99, 0.0]], dtype=torch.float64, device=DEVICE)
    x = layer("sparsemax")(v=v, backend="triton")
    want = torch.relu(v - simplex_tau(v, (-1,))[:, None])
    torch.testing.assert_close(x, want, rtol=0, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       grid=st.booleans())
def test_simplex_threshold_takes_the_torch_steps(seed, n, scale, grid):
    """The kernel's threshold and the PyTorch helper's (the same Newton steps from max z - 1) agree to
    rounding on random rows (on a coarse grid: many ties), and both match the sort."""
    from optlang.backends.torch.support import _newton_tau, _sorted_tau

    g = torch.Generator().manual_seed(seed)
    v = scale * torch.randn(6, n, dtype=torch.float64, generator=g)
    if grid:
        v = torch.round(v / scale * 2) * scale / 2
    model = optlang.compile_string(f"problem sparsemax_{n}\ndim n\nparam v[n]\nvar x[n]\n"
                                   "minimize 0.5 * sumsq(x - v)\nsubject to\n  x >= 0\n  sum(x) == 1\n")
    x = model(v=v.to(DEVICE), backend="triton").cpu()
    for tau in (_newton_tau(v, (-1,)), _sorted_tau(v, (-1,))):
        torch.testing.assert_close(x, torch.relu(v - tau[:, None]), rtol=0, atol=1e-13 * max(scale, 1.0))


MULTI = {  # several vars (each var a block of the flat state), a var of rank 2 (row-major; svm's in examples/)
    "two_smooth": "problem two_smooth\ndim d\nparam X[d], c\nvar w[d], b\n"
                  "minimize sumsq(w - X) + 0.5 * sumsq(b - c) + 0.1 * sum(w) * b + 0.05 * sum(exp(w)) * b ^ 2\n",
    "two_prox": "problem two_prox\ndim d\nparam X[d], c\nvar w[d], b\n"
                "minimize sumsq(w - X) + 0.5 * sumsq(b - c) + 0.05 * square(sum(w) + b)\nsubject to\n  b >= 0\n  w <= 0.5\n",
    "two_root": "problem two_root\nparam a[2], b[2], c[2]\nvar x, y\nroot a * x + b * y + 0.1 * sin(x * y) - c\n",
    "two_kkt": "problem two_kkt\ndim d\nparam X[d], c\nvar w[d], b\nminimize 0.5 * sumsq(w - X) + 0.5 * square(b - c)\n"
               "subject to\n  sum(w) + b <= 1\n  w - b <= 0.5\n",
    "matrix_kkt": "problem matrix_kkt\ndim m, k\nparam X[m, k]\nvar B[m, k]\n"
                  "minimize 0.5 * sumsq(B - X) + 0.1 * sum(exp(B))\nsubject to\n  sum(B, axis=1) <= 1\n"
                  "  sum(B, axis=0) == 0.5\n",
}


def multi_data(name, dtype=torch.float64, seed=0):
    """Batch (2,): for svm m = 4, d = 3, k = 3 with one-hot labels; c on both sides of b's bound."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    if name == "svm":
        Y = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 4), generator=g), 3).to(dtype)
        out = dict(X=randn(2, 4, 3), Y=Y, lam=torch.tensor([0.5, 2.0], dtype=dtype))
    elif name == "two_root":  # one equation vector over both vars (the residual's layout is not the state's)
        out = dict(a=torch.tensor([1.0, 0.3], dtype=dtype), b=torch.tensor([[0.2, 1.1], [0.1, 0.9]], dtype=dtype),
                   c=randn(2, 2))
    elif name == "matrix_kkt":
        out = dict(X=randn(2, 2, 2))
    else:
        out = dict(X=randn(2, 3), c=torch.tensor([-1.0, 0.7], dtype=dtype))
    return {k: v.to(DEVICE) for k, v in out.items()}


def multi_layer(name):
    return optlang.compile(EXAMPLES / "svm.opt") if name == "svm" else optlang.compile_string(MULTI[name])


def run_vars(model, params, backend, **options):
    """As `run`, with every var: ({var: solution}, {param: gradient of a loss on all vars}, stats)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    sol = model.solve(**leaves, backend=backend, **options)
    xs = {v.name: sol[v.name] for v in model.plan.vars}
    loss = sum((x * torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)).sum()
               + (x * x).sum() for x in xs.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return {k: x.detach() for k, x in xs.items()}, dict(zip(leaves, grads)), sol.stats


@pytest.mark.parametrize("name,backward", [("two_smooth", "direct"), ("two_smooth", "cg"), ("two_prox", "direct"),
                                           ("two_prox", "cg"), ("svm", "direct"), ("two_root", "direct"),
                                           ("two_kkt", "direct"), ("matrix_kkt", "direct")])
def test_several_vars_and_matrix_vars_match_torch(name, backward, monkeypatch):
    model, params = multi_layer(name), multi_data(name)
    assert unsupported(model.plan) is None
    xs_ref, grads_ref, stats_ref = run_vars(model, params, "torch", backward=backward)
    counters = count_launches(model, monkeypatch)
    xs, grads, stats = run_vars(model, params, "triton", backward=backward)
    launches = {k: c.grids for k, c in counters.items() if c.grids}
    backward = "kkt" if model.plan.kind == "kkt" else backward
    assert launches == {kernel_name(default_solver(model.plan, "auto")): [(2,)],
                        f"backward_{backward}_kernel": [(2,)]}
    for key in xs_ref:
        assert xs[key].shape == xs_ref[key].shape
        assert_close(xs[key], xs_ref[key])
    for key in params:
        assert grads[key].shape == params[key].shape
        assert_close(grads[key], grads_ref[key])
    assert stats.converged.all() and stats_ref.converged.all()
    if model.plan.kind != "prox":  # pgd.py couples the batch's polishing
        assert torch.equal(stats.iterations, stats_ref.iterations)


@pytest.mark.parametrize("axis", [1, 0])
def test_simplex_threshold_along_an_axis_matches_sorting(axis):
    # The rows (or columns) of a matrix, each its own simplex (Newton's steps, all at once), against the
    # sort: ties, a dominant entry, a constant row, a large scale; m = 3 and k = 5 pad to 4 and 8.
    from optlang.backends.torch.support import _sorted_tau as simplex_tau

    model = optlang.compile_string("problem rows\ndim m, k\nparam V[m, k]\nvar B[m, k]\nminimize 0.5 * sumsq(B - V)\n"
                                   f"subject to\n  B >= 0\n  sum(B, axis={axis}) == 1\n")
    V = torch.tensor([[[0.3, 0.3, 0.3, -1.0, 0.2], [5.0, 0.1, -0.2, 0.3, 0.0], [0.5] * 5],
                      [[40.0, 39.5, -3.0, 39.9, 12.0], [0.1, 0.2, 0.3, 0.4, 0.5], [-2.0, 7.0, 7.0, 1.0, 6.5]]],
                     dtype=torch.float64, device=DEVICE)
    B = model(V=V, backend="triton")
    want = torch.relu(V - simplex_tau(V, (axis - 2,)).unsqueeze(axis - 2))
    torch.testing.assert_close(B, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["ridge", "nnls", "box_ls", "lasso"])
def test_cg_backward_matches_torch(name):
    model, params = layer(name), data(name)
    _, grads_ref, _ = run(model, params, "torch", backward="cg")
    _, grads, _ = run(model, params, "triton", backward="cg")
    for key in params:
        assert_close(grads[key], grads_ref[key])


@pytest.mark.parametrize("name", ["ridge", "sparsemax", "two_prox"])
def test_gradcheck(name):
    model = multi_layer(name) if name in MULTI else layer(name)
    params = multi_data(name, seed=1) if name in MULTI else data(name, batch=(2,), seed=1, rows=3, cols=2)
    names = list(params)
    inputs = tuple(params[k].clone().requires_grad_() for k in names)

    def solve(*tensors):
        sol = model.solve(**dict(zip(names, tensors)), backend="triton", tol=1e-12)
        return tuple(sol[v.name] for v in model.plan.vars)

    assert torch.autograd.gradcheck(solve, inputs, eps=1e-6, atol=1e-6)


SPELLINGS = [  # between them, every smooth primitive, each matmul rank pair, axis reductions, sum_to, broadcast
    "0.5 * sumsq(x - c) + 0.1 * sum(tanh(x)) + 0.05 * sum(softplus(X @ x)) + 0.1 * sum(sigmoid(x))"
    " + s * sum((1 + square(x - c)) ^ 1.5) + 0.1 * sumsq((X @ x) @ X)",
    "0.5 * quad(x, transpose(X) @ X + eye[n]) - dot(c, x) + 0.1 * logsumexp(X @ x) + mean(exp(0.3 * (X @ x)))"
    " + 0.1 * sum(sqrt(1 + square(x))) + 0.1 * sum(x ^ 4)",
    "0.5 * sumsq(x - c) + 0.1 * sum(sum(X * exp(0.1 * x), axis=0)) + 0.1 * logsumexp(X * x, axis=1) @ ones[m]"
    " + 0.1 * sum(cos(x)) + 0.1 * sum(log(1 + square(x))) + s * sum(sin(x) / (2 + x * x))",
]


@pytest.mark.parametrize("objective", SPELLINGS, ids=["unary-pow", "matmul-lse", "axis-broadcast"])
def test_op_spellings_match_torch(objective):
    model = optlang.compile_string(f"problem p\ndim n, m\nparam X[m, n], c[n], s > 0\nvar x[n]\nminimize {objective}\n")
    g = torch.Generator().manual_seed(3)
    params = dict(X=torch.randn(2, 5, 3, generator=g, dtype=torch.float64),
                  c=torch.randn(2, 3, generator=g, dtype=torch.float64), s=torch.tensor(0.5, dtype=torch.float64))
    params = {k: v.to(DEVICE) for k, v in params.items()}
    x_ref, grads_ref, _ = run(model, params, "torch", tol=1e-12)
    x, grads, _ = run(model, params, "triton", tol=1e-12)
    assert_close(x, x_ref)
    for key in params:
        assert_close(grads[key], grads_ref[key])


class Counting:
    """Stands in for a kernel: counts launches (kernel[grid]) and records their grids."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


def count_launches(model, monkeypatch) -> dict:
    """Replace the module's kernels with counters; {kernel name: Counting}."""
    module = TritonExecutor().module_for(model.plan)
    counters = {k: Counting(getattr(module, k)) for k in KERNELS + KKT_KERNELS if hasattr(module, k)}
    for k, counter in counters.items():
        monkeypatch.setattr(module, k, counter)
    return counters


@pytest.mark.parametrize("name,backward", [("ridge", "direct"), ("nnls", "cg"), ("kepler", "direct"),
                                           ("lasso", "cg"), ("deq", "direct")])
def test_one_launch_forward_one_backward(name, backward, monkeypatch):
    model, params = layer(name), data(name)
    counters = count_launches(model, monkeypatch)
    run(model, params, "triton", backward=backward)
    launches = {k: c.grids for k, c in counters.items() if c.grids}
    forward = kernel_name(default_solver(model.plan, "auto"))
    assert launches == {forward: [(3,)], f"backward_{backward}_kernel": [(3,)]}


@pytest.mark.parametrize("name,backward", [("deq", "gmres"), ("deq", "neumann"), ("lasso", "gmres"),
                                           ("deq", "unroll"), ("sparsemax", "cg")])
def test_backwards_without_kernels_run_on_torch(name, backward, monkeypatch):
    # GMRES, Neumann and CG on a simplex's free set: the Triton forward kernel, then the PyTorch
    # backend's adjoint solve on its solution; unroll: the layer runs the torch solver under autograd, no kernel at all.
    model, params = layer(name), data(name)
    _, grads_ref, _ = run(model, params, "torch", backward=backward)
    counters = count_launches(model, monkeypatch)
    _, grads, _ = run(model, params, "triton", backward=backward)
    launches = {k: c.grids for k, c in counters.items() if c.grids}
    forward = kernel_name(default_solver(model.plan, "auto"))
    assert launches == ({} if backward == "unroll" else {forward: [(3,)]})
    for key in params:
        assert_close(grads[key], grads_ref[key])


def test_failed_fixed_point_is_reported_like_torch():
    # z = exp(z) + c has no fixed point for c = 3: the iterates overflow, and the instance stops
    # at its last finite iterate with status "failed"; c = -2 converges.
    model = optlang.compile_string("problem blow\nparam c\nvar z\nfixed_point z = exp(z) + c\n")
    c = torch.tensor([3.0, -2.0], dtype=torch.float64, device=DEVICE)
    with pytest.warns(RuntimeWarning, match=r"did not converge at batch elements \[\(0,\)\] \(1 failed;"):
        sol = model.solve(c=c, backend="triton")
    ref = model.solve(c=c, backend="torch", warn=False)
    assert sol.stats.status_names() == ref.stats.status_names() == ["failed", "converged"]
    assert torch.equal(sol.stats.iterations, ref.stats.iterations)
    assert torch.isfinite(sol.z).all()
    assert_close(sol.z[1], ref.z[1])


def kkt_data(name, dtype=torch.float64, n=4, m=3, p=1):
    """A batch of two well-posed instances: active and inactive inequalities, one equality row."""
    g = torch.Generator().manual_seed(1)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    L = randn(2, n, n)
    if name == "qp":
        out = dict(Q=L @ L.mT + 0.5 * torch.eye(n, dtype=dtype), c=randn(2, n), G=randn(2, m, n),
                   h=0.1 + torch.rand(2, m, generator=g, dtype=dtype), A=randn(2, p, n), b=randn(2, p))
    else:  # portfolio: gamma shared by the batch
        out = dict(mu=randn(2, n), Sigma=L @ L.mT / n + 0.1 * torch.eye(n, dtype=dtype),
                   gamma=torch.tensor(2.0, dtype=dtype))
    return {k: v.to(DEVICE) for k, v in out.items()}


def run_kkt(model, params, backend, **options):
    """The var, the duals by label, the gradients of a loss on both, and the stats (converged elements only)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    sol = model.solve(**leaves, backend=backend, warn=False, **options)
    x = sol[model.plan.var.name]
    ok = sol.stats.converged
    weights = torch.linspace(-1, 1, x[0].numel(), dtype=x.dtype, device=x.device).reshape(x[0].shape)
    loss = (x[ok] * weights).sum() + (x[ok] * x[ok]).sum()
    loss = loss + sum((d[ok] * d[ok]).sum() for d in sol.duals.values())
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True, materialize_grads=True)
    return x.detach(), {k: v.detach() for k, v in sol.duals.items()}, dict(zip(leaves, grads)), sol.stats


@pytest.mark.parametrize("name,sizes", [("qp", (4, 3, 1)), ("qp", (6, 8, 2)), ("qp", (5, 2, 3)), ("qp", (20, 20, 5)),
                                        ("portfolio", (4, 3, 1))],
                         ids=["qp", "qp-6-8-2", "qp-5-2-3", "qp-optnet-20-20-5", "portfolio"])
def test_kkt_matches_torch_in_one_launch_each_way(name, sizes, monkeypatch):
    # The interior-point kernel against solvers/ipm.py, step for step: the same iteration counts;
    # the direct KKT backward (runtime/kkt.kkt_jacobian) for every param, through the duals too.
    # QP n = 6 with 8/2 and n = 5 with 2/3 hold the state in a 16-lane tile and the system in the vars
    # in an 8 x 8 one, Jg in 8 x 8 and 2 x 8, the equality rows in 2 and 4 lanes; OptNet's n = 20 with
    # 20/5 is the size the default choice now runs on Triton in float32 (about 25 s interpreted).
    n, m, p = sizes
    model, params = layer(name), kkt_data(name, n=n, m=m, p=p)
    x_ref, duals_ref, grads_ref, stats_ref = run_kkt(model, params, "torch")
    counters = count_launches(model, monkeypatch)
    x, duals, grads, stats = run_kkt(model, params, "triton")
    launches = {k: c.grids for k, c in counters.items() if c.grids}
    assert launches == {"ipm_kernel": [(2,)], "backward_kkt_kernel": [(2,)]}
    assert stats.status_names() == stats_ref.status_names() == ["converged", "converged"]
    assert torch.equal(stats.iterations, stats_ref.iterations)
    torch.testing.assert_close(x, x_ref, rtol=1e-8, atol=1e-8)
    assert duals.keys() == duals_ref.keys() and duals
    for key in duals:
        torch.testing.assert_close(duals[key], duals_ref[key], rtol=1e-8, atol=1e-8)
    for key in params:
        assert grads[key].shape == params[key].shape
        torch.testing.assert_close(grads[key], grads_ref[key], rtol=1e-8, atol=1e-8)


KKT_SOURCES = {  # infeasible and unbounded instances next to solvable ones; a nonlinear g on a scalar var
    "boxcap": "problem boxcap\ndim n\nparam c[n], a\nvar x[n]\nminimize 0.5 * sumsq(x - c)\nsubject to\n"
              "  lo: x >= a\n  cap: sum(x) <= 0\n",
    "ray": "problem ray\ndim n\nparam c[n]\nvar x[n]\nminimize dot(c, x)\nsubject to\n  lo: x >= 0\n",
    "expcap": "problem expcap\nparam c, u\nvar x\nminimize 0.5 * square(x - c)\nsubject to\n  e: exp(x) <= u\n",
}


@pytest.mark.parametrize("name,params,status", [
    ("boxcap", dict(c=[[1.0, 2.0, 0.5], [0.3, -1.0, 0.2]], a=[1.0, -1.0]), ["infeasible", "converged"]),
    ("ray", dict(c=[[1.0, -2.0, 0.5], [0.3, 1.0, 0.2]]), ["unbounded", "converged"]),
    ("expcap", dict(c=[3.0, -1.0], u=[2.0, 5.0]), ["converged", "converged"]),
], ids=["boxcap", "ray", "expcap"])
def test_kkt_certificates_and_nonlinear_constraints_like_torch(name, params, status):
    model = optlang.compile_string(KKT_SOURCES[name], f"{name}.opt")
    params = {k: torch.tensor(v, dtype=torch.float64, device=DEVICE) for k, v in params.items()}
    with warnings.catch_warnings(record=True) as ref_record:
        warnings.simplefilter("always")
        x_ref, duals_ref, grads_ref, stats_ref = run_kkt(model, params, "torch")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x, duals, grads, stats = run_kkt(model, params, "triton")
    # boxcap's second instance has a weakly active row: both backends say so, naming it.
    assert [str(w.message) for w in record] == [str(w.message) for w in ref_record]
    assert stats.status_names() == stats_ref.status_names() == status
    assert torch.equal(stats.iterations, stats_ref.iterations)
    ok = stats.converged
    torch.testing.assert_close(x[ok], x_ref[ok], rtol=1e-8, atol=1e-8)
    for key in duals:
        torch.testing.assert_close(duals[key][ok], duals_ref[key][ok], rtol=1e-8, atol=1e-8)
    for key in params:
        torch.testing.assert_close(grads[key], grads_ref[key], rtol=1e-8, atol=1e-8)


def test_broadcast_params_match_torch():
    # batch (2, 3): X shared by all, y batched over the first dim only (expanded),
    # lam with the full batch (passed as it is).
    g = torch.Generator().manual_seed(2)
    params = dict(X=torch.randn(5, 3, generator=g, dtype=torch.float64),
                  y=torch.randn(2, 1, 5, generator=g, dtype=torch.float64),
                  lam=0.2 + torch.rand(2, 3, generator=g, dtype=torch.float64))
    params = {k: v.to(DEVICE) for k, v in params.items()}
    model = layer("ridge")
    x_ref, grads_ref, _ = run(model, params, "torch")
    x, grads, _ = run(model, params, "triton")
    assert x.shape == (2, 3, 3)
    assert_close(x, x_ref)
    for key in params:
        assert grads[key].shape == params[key].shape
        assert_close(grads[key], grads_ref[key])


def test_rank0_var_without_batch():
    model = layer("kepler")
    M = torch.tensor(1.3, dtype=torch.float64, device=DEVICE)
    e = torch.tensor(0.6, dtype=torch.float64, device=DEVICE)
    x_ref, grads_ref, _ = run(model, dict(M=M, e=e), "torch")
    x, grads, stats = run(model, dict(M=M, e=e), "triton")
    assert x.shape == () and stats.converged.shape == ()
    assert abs(float(x - e * torch.sin(x) - M)) < 1e-12
    assert_close(x, x_ref)
    for key in ("M", "e"):
        assert_close(grads[key], grads_ref[key])


def test_nonconvergence_is_reported_like_torch():
    model, params = layer("logistic"), data("logistic")
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sol = model.solve(**params, backend="triton", max_iter=1)
    ref = model.solve(**params, backend="torch", max_iter=1, warn=False)
    assert not sol.stats.converged.any()
    assert torch.equal(sol.stats.iterations, ref.stats.iterations)
    assert_close(sol.stats.residual, ref.stats.residual)


def test_singular_backward_warns_and_skips_zero_pivots():
    # F = c E^2 has its root at E = 0, where dF/dE = 0: the adjoint system is singular.
    model = optlang.compile_string("problem sq\nparam c\nvar E\nroot c * E * E\n")
    c = torch.tensor([1.0, 2.0], dtype=torch.float64, device=DEVICE, requires_grad=True)
    with pytest.warns(RuntimeWarning, match=r"singular Jacobian .* elements \[\[0\], \[1\]\]"):
        model(c=c, backend="triton").sum().backward()
    assert torch.equal(c.grad, torch.zeros_like(c))


@pytest.mark.parametrize("lam, singular", [(1e-3, False), (1e-15, True)])
def test_a_backward_singular_to_working_precision_warns_like_torch(lam, singular):
    """dF/dx = X'X + lam I of a rank-one X: at lam = 1e-15 (condition 3e16) elimination meets no zero
    pivot, and the in-kernel direct backward returned a number with no correct digits silently. The
    kernel's pivots, rows scaled to 1, now flag it as the PyTorch backend does; at lam = 1e-3 neither
    warns and the gradients agree."""
    model = optlang.compile_string("problem ridge\ndim n, d\nparam X[n, d], y[n]\nparam lam > 0\nvar w[d]\n"
                                   "minimize 0.5 * sumsq(X @ w - y) + 0.5 * lam * sumsq(w)\n")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(8, 1, generator=g, dtype=torch.float64) @ torch.randn(1, 5, generator=g, dtype=torch.float64)
    grads = {}
    for backend in ("triton", "torch"):
        y = torch.randn(8, generator=torch.Generator().manual_seed(1), dtype=torch.float64, device=DEVICE)
        y.requires_grad_(True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            w = model(X=X.to(DEVICE), y=y, lam=torch.tensor(lam, dtype=torch.float64, device=DEVICE),
                      backend=backend)
            (grads[backend],) = torch.autograd.grad(w.sum(), y)
        assert any("singular Jacobian" in str(c.message) for c in caught) == singular, backend
    if not singular:
        assert_close(grads["triton"], grads["torch"])


def test_user_names_cannot_collide_with_generated_ones():
    # Each generated name has a prefix of its own: p_X's pointer is ptr_p_X (not p_X_ptr,
    # which param X_ptr would own), and the var's flat tile is VAR_BLOCK (dim N owns BLOCK_N).
    model = optlang.compile_string("problem clash\ndim N\nparam X_ptr[N], X[N], bs > 0\nvar new[N]\n"
                                   "minimize 0.5 * sumsq(new - X) + 0.5 * bs * sumsq(new - X_ptr)\n")
    g = torch.Generator().manual_seed(4)
    params = {k: torch.randn(2, 3, generator=g, dtype=torch.float64).to(DEVICE) for k in ("X_ptr", "X")}
    params["bs"] = torch.tensor([0.5, 2.0], dtype=torch.float64, device=DEVICE)
    x, grads, _ = run(model, params, "triton")
    bs = params["bs"][:, None]
    assert_close(x, (params["X"] + bs * params["X_ptr"]) / (1 + bs))
    x_ref, grads_ref, _ = run(model, params, "torch")
    for key in params:
        assert_close(grads[key], grads_ref[key])


def test_tiles_above_the_cap_raise_call_error():
    model = layer("ridge")
    X = torch.randn(2, 200, dtype=torch.float64, device=DEVICE)
    with pytest.raises(optlang.CallError, match=r'Jacobian is 256 x 256 .* cap of 16384 .* backend="torch"'):
        model(X=X, y=torch.zeros(2, dtype=torch.float64, device=DEVICE), lam=1.0, backend="triton")
    # A matrix var is cut out of the flat state through a [BLOCK_m, BLOCK_k, VAR_BLOCK] tile: 16 * 16 * 128.
    svm = optlang.compile(EXAMPLES / "svm.opt")
    X, Y = torch.randn(9, 2, dtype=torch.float64, device=DEVICE), torch.zeros(9, 9, dtype=torch.float64, device=DEVICE)
    with pytest.raises(optlang.CallError, match=r"cutting 'beta' out of the flat state takes a tile of 32768 elements"):
        svm(X=X, Y=Y, lam=1.0, backend="triton")


TORCH_ONLY = {  # source, params, what the message says after "problem 'NAME' cannot run on the Triton backend: it "
    "params_rank3": ("problem params_rank3\ndim n\nparam T[n, n, n], c[n]\nvar x[n]\n"
                     "minimize 0.5 * sumsq(x - c) + sum(sum(T, axis=0) @ x)\n",
                     dict(T=(2, 2, 2), c=(2,)),
                     "has param 'T' of rank 3; the Triton backend handles params of rank <= 2"),
    "rows": ("problem rows\ndim m, k\nparam V[m, k], c[k]\nvar x[k]\nminimize 0.5 * sumsq(x - c)\nsubject to\n"
             "  cap: V * x <= 1\n",
             dict(V=(2, 3), c=(3,)),
             "has a constraint of rank 2 ('cap'); the Triton backend handles constraints of rank 0 and 1"),
    "var_rank3": ("problem var_rank3\ndim a\nparam c[a]\nvar T[a, a, a]\nminimize 0.5 * sumsq(T - 1) + sum(c)\n",
                  dict(c=(2,)),
                  "has var 'T' of rank 3; the Triton backend handles vars of rank <= 2"),
    "simplex_matrix": ("problem simplex_matrix\ndim m, k\nparam V[m, k]\nvar B[m, k]\nminimize 0.5 * sumsq(B - V)\n"
                       "subject to\n  B >= 0\n  sum(B) == 1\n",
                       dict(V=(2, 3)),
                       "projects a whole matrix onto one simplex in residual; the Triton backend's simplex "
                       "threshold runs along one axis"),
}


@pytest.mark.parametrize("name", sorted(TORCH_ONLY))
def test_torch_only_problems_raise_call_error(name):
    source, shapes, why = TORCH_ONLY[name]
    model = optlang.compile_string(source)
    params = {k: torch.rand(*shape, dtype=torch.float64, device=DEVICE) for k, shape in shapes.items()}
    with pytest.raises(optlang.CallError) as info:
        model(**params, backend="triton")
    assert str(info.value) == f"problem '{name}' cannot run on the Triton backend: it {why}; use backend=\"torch\""
    model(**params, backend="torch")  # the PyTorch backend solves it


def _python(script, **env) -> subprocess.CompletedProcess:
    """Run a script (text, or a file's path) in a fresh interpreter, compiling for real: no TRITON_INTERPRET."""
    environ = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environ.update(env)
    args = [str(script)] if isinstance(script, pathlib.Path) else ["-c", textwrap.dedent(script)]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=environ,
                          timeout=600)


def test_printing_is_deterministic_and_needs_no_triton():
    proc = _python(f"""
        import sys
        sys.modules["triton"] = None  # importing triton now fails
        from optlang.passes.pipeline import run
        from optlang.backends.triton.printer import print_plan
        sources = {{name: open(f"examples/{{name}}.opt").read() for name in {NAMES + ("qp", "portfolio")!r}}}
        sources.update({SOURCES!r})
        sources.update({KKT_SOURCES!r})
        for name, source in sources.items():
            plan = run(source, name).plan
            first, second = print_plan(plan), print_plan(plan)
            assert first == second and "@triton.jit" in first, name
            compile(first, name, "exec")
        print("printed")
    """)
    assert proc.returncode == 0 and "printed" in proc.stdout, proc.stderr


AOT = """
    import concurrent.futures, sys, torch, optlang
    import triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from optlang.backends.triton.executor import TritonExecutor, kkt_blocks
    from optlang.runtime.bound import BoundProblem
    from optlang.backends.triton.printer import next_pow2

    TARGET = GPUTarget("cuda", 90, 128)  # Hopper (H100/H200); ptxas ships in the triton wheel
    POINTERS = {"status_ptr": "*i8", "flag_ptr": "*i8", "weak_ptr": "*i8", "iterations_ptr": "*i32"}

    @triton.jit
    def probe(x_ptr):
        tl.store(x_ptr, tl.load(x_ptr) + 1.0)

    try:
        triton.compile(triton.compiler.ASTSource(fn=probe, signature={"x_ptr": "*fp32"}), target=TARGET)
    except Exception as exc:  # no CUDA toolchain in this triton install
        print("SKIP", type(exc).__name__, exc)
        sys.exit(0)
    jobs = []
    for name, source, dims, kernels, fps in CASES:
        plan = optlang.compile_string(source, name).plan
        module = TritonExecutor().module_for(plan)
        dims = dict(dims)
        n = next_pow2(dims.pop("N") if "N" in dims else dims.get(plan.var.shape[0], 1) if plan.var.shape else 1)
        for kernel_name in kernels:
            kernel = getattr(module, kernel_name, None)
            if kernel is None:
                continue
            for dtype, fp in ((tl.float64, "fp64"), (tl.float32, "fp32")):
                if fp not in fps:
                    continue
                signature, constexprs = {}, {"DTYPE": dtype, "VAR_BLOCK": n}
                for p in kernel.params:
                    if p.is_constexpr:
                        signature[p.name] = "constexpr"
                    elif p.name.endswith("_ptr") or p.name.startswith(("ptr_", "grad_")):
                        signature[p.name] = POINTERS.get(p.name, "*" + fp)
                    else:
                        signature[p.name] = "i32"
                constexprs.update({f"BLOCK_{d}": next_pow2(v) for d, v in dims.items()})
                if plan.kind == "kkt":  # the interior point's own tiles
                    bound = BoundProblem(None, plan, {}, dims, (1,), torch.float64, torch.device("cpu"))
                    constexprs.update(kkt_blocks(bound))
                if "ACCELERATE" in signature:  # FISTA's momentum
                    constexprs["ACCELERATE"] = True
                source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
                jobs.append(((name, kernel_name, fp), source))

    def build(job):
        label, source = job
        assert triton.compile(source, target=TARGET).asm["cubin"], label
        return label

    # ptxas runs as a subprocess: two threads keep two cores busy.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for label in pool.map(build, jobs):
            print("compiled", *label)
"""


def test_kernels_compile_for_sm90(tmp_path):
    """Ahead-of-time builds for a Hopper GPU: no driver needed, only the wheel's LLVM and ptxas.

    Every kernel of every example and the kernels the inline prox sets and fixed point
    add (Michelot's loop, the prox adapters, Anderson's history), in float64 and float32;
    the forward and direct backward kernels of the op-spelling problems in float64 (their
    spellings do not depend on the dtype, and they are the slowest builds); the interior-point
    and KKT backward kernels of qp and portfolio in both, of a nonlinear constraint in float64;
    the kernels of the several-block states (two vars, svm's matrix var and its row-wise simplex).
    """
    dims = {"ridge": {"n": 6, "d": 4}, "logistic": {"n": 6, "d": 3}, "nnls": {"m": 6, "n": 4},
            "box_ls": {"m": 6, "n": 4}, "kepler": {}}
    both = ("fp64", "fp32")
    cases = [(name, (EXAMPLES / f"{name}.opt").read_text(), dims[name], KERNELS, both) for name in NAMES]
    cases += [(f"spelling{i}", f"problem p\ndim n, m\nparam X[m, n], c[n], s > 0\nvar x[n]\nminimize {objective}\n",
               {"n": 3, "m": 5}, ("newton_kernel", "backward_direct_kernel"), ("fp64",))
              for i, objective in enumerate(SPELLINGS)]
    cases += [("scalar_box", SOURCES["scalar_box"], {}, ("fista_kernel",), both),
              ("sparsemax", SOURCES["sparsemax"], {"n": 5}, ("fista_kernel",), both),
              ("lasso", SOURCES["lasso"], {"n": 6, "d": 4}, ("fista_kernel", "backward_cg_kernel"), both),
              ("deq", SOURCES["deq"], {"d": 4, "k": 3}, ("anderson_kernel", "newton_kernel"), both)]
    # The kkt kind: the state (var, duals) sets VAR_BLOCK; portfolio has a scalar equality row,
    # expcap a nonlinear g on a scalar var (step halving, widened certificates).
    cases += [("qp", (EXAMPLES / "qp.opt").read_text(), {"n": 4, "m": 3, "p": 1, "N": 8}, KKT_KERNELS, both),
              ("portfolio", (EXAMPLES / "portfolio.opt").read_text(), {"n": 4, "N": 9}, KKT_KERNELS, both),
              ("expcap", KKT_SOURCES["expcap"], {"N": 2}, KKT_KERNELS, ("fp64",))]
    # Several blocks in the smooth and prox kinds' state: two vars (w, b), and svm's matrix var with
    # its row-wise simplex threshold.
    cases += [("two_smooth", MULTI["two_smooth"], {"d": 3, "N": 4},
               ("newton_kernel", "backward_direct_kernel", "backward_cg_kernel"), ("fp64",)),
              ("two_prox", MULTI["two_prox"], {"d": 3, "N": 4}, ("fista_kernel", "backward_cg_kernel"), both),
              ("svm", (EXAMPLES / "svm.opt").read_text(), {"m": 4, "d": 3, "k": 3, "N": 12},
               ("fista_kernel", "backward_direct_kernel"), both),
              ("two_root", MULTI["two_root"], {"N": 2}, ("newton_kernel", "backward_direct_kernel"), ("fp64",)),
              ("matrix_kkt", MULTI["matrix_kkt"], {"m": 2, "k": 2, "N": 8}, KKT_KERNELS, ("fp64",))]
    script = tmp_path / "aot.py"  # @triton.jit reads its source from a file
    script.write_text(f"CASES = {cases!r}\n" + textwrap.dedent(AOT))
    proc = _python(script, TRITON_DEFAULT_FP_FUSION="0")  # as the executor's launches
    if proc.returncode == 0 and proc.stdout.startswith("SKIP"):
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = {tuple(line.split()[1:]) for line in proc.stdout.splitlines() if line.startswith("compiled")}
    wanted = {(name, kernel, fp) for name, _, _, kernels, fps in cases for kernel in kernels for fp in fps}
    wanted -= {(name, kernel, fp) for name, kernel, fp in wanted  # kernels that class has no use for
               if (name == "kepler" and kernel in ("fista_kernel", "anderson_kernel", "backward_cg_kernel"))
               or (name in ("ridge", "logistic") and kernel in ("fista_kernel", "anderson_kernel"))
               or (name in ("nnls", "box_ls") and kernel in ("newton_kernel", "anderson_kernel"))}
    assert built == wanted
