"""The solvers written once for both backends take the same steps on both.

A shared solver (`backends/triton/shared.py`: SHARED) is one text: the PyTorch
backend runs it on the batch, the Triton module holds a copy spelled for `tl`.
Each class is solved with max_iter = 1, 2, ... on both backends (the Triton
interpreter on CPU): after every iteration the iterates agree to rounding and
the iteration counts exactly, until every instance has converged.
"""
import ast
import pathlib
import warnings

import pytest
import torch

import optlang
from optlang.backends.triton import shared
from optlang.backends.triton.printer import print_plan
from optlang.solvers import ops

pytestmark = pytest.mark.triton

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

SPARSEMAX = "problem sparsemax\ndim n\nparam v[n]\nvar x[n]\nminimize 0.5 * sumsq(x - v)\nsubject to\n  x >= 0\n  sum(x) == 1\n"

SOURCES = {  # (source, solver): every path of newton.py, pgd.py, anderson.py and ipm.py
    "quadratic": ("problem quadratic\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
                  "minimize 0.5 * sumsq(X @ w - y) + 0.5 * lam * sumsq(w)\n", "newton"),
    "smooth": ("problem smooth\ndim d\nparam a[d], c[d]\nvar x[d]\n"
               "minimize sum(exp(a * x)) + 0.5 * sumsq(x - c) + 0.1 * sum(x ^ 4)\n", "newton"),
    "nonconvex": ("problem nonconvex\ndim d\nparam c[d]\nvar x[d]\nminimize sum(cos(x) + 0.1 * x ^ 2 + c * x)\n",
                  "newton"),
    "root": ("problem kepler\nparam M, e\nvar E\nroot E - e * sin(E) - M\n", "newton"),
    "fixed_point": ("problem equilibrium\ndim d, k\nparam W[d, d], U[d, k], u[k], bias[d]\nvar z[d]\n"
                    "fixed_point z = tanh(W @ z + U @ u + bias)\n", "newton"),
    "nnls": ("problem nnls\ndim m, n\nparam A[m, n], b[m]\nvar x[n]\nminimize 0.5 * sumsq(A @ x - b)\n"
             "subject to\n  x >= 0\n", "fista"),
    "lasso": ("problem lasso\ndim n, d\nparam X[n, d], y[n], lam >= 0\nvar w[d]\n"
              "minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n", "pgd"),
    # On the simplex with a Hessian A'A (sparsemax's is the identity: solved by the first step, below).
    "simplex": ("problem simplex\ndim n, m\nparam A[m, n], v[m]\nvar x[n]\nminimize 0.5 * sumsq(A @ x - v)\n"
                "subject to\n  x >= 0\n  sum(x) == 1\n", "fista"),
    "box": ("problem box\ndim d\nparam a[d], c[d]\nvar x[d]\n"
            "minimize sum(exp(a * x)) + 0.5 * sumsq(x - c)\nsubject to\n  x >= 0\n", "fista"),
    # The interior point: a QP with active and inactive rows and an equality.
    "qp": ((ROOT / "examples" / "qp.opt").read_text(), "ipm"),
    # ... and with a nonlinear g, whose steps are halved until its linearization holds (from a far start).
    "nonlinear_kkt": ("problem expcap\nparam c, u\nvar x\nminimize 0.5 * square(x - c)\nsubject to\n"
                      "  e: exp(x) <= u\n", "ipm"),
    "anderson": ("problem equilibrium\ndim d, k\nparam W[d, d], U[d, k], u[k], bias[d]\nvar z[d]\n"
                 "fixed_point z = tanh(W @ z + U @ u + bias)\n", "anderson"),
}


def data(name, batch=3, d=4):
    g = torch.Generator().manual_seed(7)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    if name == "quadratic":
        out = dict(X=randn(batch, 6, d), y=randn(batch, 6), lam=torch.tensor([0.1, 1.0, 5.0]))
    elif name == "smooth":
        out = dict(a=randn(batch, d), c=3 * randn(batch, d))
    elif name == "nonconvex":  # from x = 0, where the Hessian is -0.8 I: the shifted Newton steps
        out = dict(c=randn(batch, 3))
    elif name == "nnls":
        A = randn(batch, 6, d)
        out = dict(A=A, b=(A @ randn(batch, d, 1))[..., 0] + 0.3 * randn(batch, 6))
    elif name == "lasso":
        out = dict(X=randn(batch, 6, d), y=randn(batch, 6), lam=torch.tensor([0.3, 1.0, 2.0]))
    elif name == "simplex":
        out = dict(A=randn(batch, 6, 5), v=1.5 * randn(batch, 6))
    elif name == "sparsemax":
        out = dict(v=1.5 * randn(batch, 5))
    elif name == "box":
        out = dict(a=0.5 * randn(batch, d), c=randn(batch, d))
    elif name == "qp":  # active and inactive inequalities, one equality row
        L = randn(batch, d, d)
        out = dict(Q=L @ L.mT + 0.5 * torch.eye(d, dtype=torch.float64), c=randn(batch, d), G=randn(batch, 3, d),
                   h=0.1 + torch.rand(batch, 3, generator=g, dtype=torch.float64), A=randn(batch, 1, d),
                   b=randn(batch, 1))
    elif name == "nonlinear_kkt":  # exp(x) <= u active, and inactive and active far from x = 0: steps halved
        out = dict(c=torch.tensor([3.0, -20.0, 60.0]), u=torch.tensor([2.0, 5.0, 1.5]))
    elif name == "root":
        out = dict(M=torch.tensor([0.3, 2.0, 5.5], dtype=torch.float64), e=torch.tensor([0.1, 0.6, 0.95]))
    else:  # a contraction: a unique equilibrium
        W = randn(d, d)
        out = dict(W=0.9 * W / torch.linalg.matrix_norm(W, 2), U=randn(d, 2), u=randn(batch, 2), bias=randn(d))
    return {k: v.to(torch.float64).to(DEVICE) for k, v in out.items()}


def iterate(model, params, backend, solver, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" after k < the needed iterations
        sol = model.solve(**params, backend=backend, solver=solver, max_iter=k)
    return sol[model.plan.var.name], sol.stats


# FISTA's polish waits for the whole PyTorch batch (pgd.py's batch_all): one instance per call there.
ONE_AT_A_TIME = ("fista", "pgd")


def cases():
    for name, (_, solver) in SOURCES.items():
        yield from ([(name, 0), (name, 1)] if solver in ONE_AT_A_TIME else [(name, None)])


@pytest.mark.parametrize("name,instance", list(cases()))
def test_both_backends_take_the_same_steps(name, instance):
    source, solver = SOURCES[name]
    model = optlang.compile_string(source, f"{name}.opt")
    params = data(name)
    if instance is not None:
        rank = {p.name: len(p.shape) for p in model.plan.params}
        params = {k: v[instance] if v.dim() > rank[k] else v for k, v in params.items()}
    for k in range(1, 40):
        x_torch, stats_torch = iterate(model, params, "torch", solver, k)
        x_triton, stats_triton = iterate(model, params, "triton", solver, k)
        torch.testing.assert_close(x_triton, x_torch, rtol=1e-9, atol=1e-11, msg=lambda m: f"iteration {k}: {m}")
        assert torch.equal(stats_triton.iterations, stats_torch.iterations), k
        assert torch.equal(stats_triton.converged, stats_torch.converged), k
        if bool(stats_torch.converged.all()):
            break
    assert bool(stats_torch.converged.all()) and bool((stats_torch.iterations >= 1).all())  # steps were compared


def test_an_identity_hessian_is_solved_by_the_first_prox_step_on_both_backends():
    """sparsemax (f = |x - v|^2 / 2): both backends start at prox(v), the solution, and take no step."""
    model = optlang.compile_string(SPARSEMAX, "sparsemax.opt")
    params = data("sparsemax")
    x_torch, stats_torch = iterate(model, params, "torch", "fista", 5)
    x_triton, stats_triton = iterate(model, params, "triton", "fista", 5)
    torch.testing.assert_close(x_triton, x_torch, rtol=1e-12, atol=1e-14)
    v = params["v"]
    ordered = torch.sort(v, dim=-1, descending=True).values
    partial = ordered.cumsum(-1) - 1
    size = (ordered - partial / torch.arange(1, 6, dtype=v.dtype) > 0).sum(-1, keepdim=True)
    torch.testing.assert_close(x_torch, torch.relu(v - partial.gather(-1, size - 1) / size), rtol=0, atol=1e-14)
    for stats in (stats_torch, stats_triton):
        assert bool(stats.converged.all()) and not bool(stats.iterations.any())


def test_the_nonconvex_case_shifts_the_hessian():
    """The nonconvex source starts where its Hessian is indefinite, so it runs the shifted steps."""
    model = optlang.compile_string(SOURCES["nonconvex"][0], "nonconvex.opt")
    assert model.plan.local
    x, stats = iterate(model, data("nonconvex"), "torch", "newton", 50)
    H = torch.diag_embed(0.2 - torch.cos(x))
    assert bool(stats.converged.all()) and bool((torch.linalg.eigvalsh(H) > 0).all())  # local minima


def test_the_module_holds_the_shared_text():
    """The generated module runs the file's own functions: each @kernel function appears, spelled for tl."""
    for name, example in (("newton", "smooth"), ("anderson", "anderson"), ("adjoint_cg", "smooth")):
        text = print_plan(optlang.compile_string(SOURCES[example][0], f"{example}.opt").plan)
        tree = ast.parse(shared.source(name))
        kernels = [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
                   and any(getattr(d, "id", None) == "kernel" for d in f.decorator_list)]
        assert kernels
        for fn in kernels:
            assert f"@triton.jit\ndef {fn}(" in text
        assert "ctx" not in shared.render(name).replace("__SIG__", "").replace("__ARGS__", "")


def test_both_spellings_of_the_interface_define_the_same_names():
    """Every name of optlang/solvers/ops.py has a tl spelling in the Triton templates (ops, common, ipm's
    KKT blocks, flat and the printed adapters), so a shared solver calling it compiles on both backends
    (its private helpers, `_name`, are PyTorch's own)."""
    templates = ROOT / "backends" / "triton" / "templates"
    triton_names = set()
    for part in ("ops", "common", "ipm"):
        tree = ast.parse((templates / f"{part}.py").read_text())
        triton_names |= {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    adapters = {"residual_flat", "gradient_flat", "objective_flat", "hvp_flat", "prox_flat"}  # printed per problem
    torch_names = {name for name, value in vars(ops).items()
                   if callable(value) and value.__module__ == ops.__name__ and not name.startswith("_")}
    assert torch_names - {"Context", "kernel"} - set(shared.BATCH_ONLY) - adapters <= triton_names


@pytest.mark.parametrize("name", ["smooth", "nnls", "lasso"])
def test_the_cg_backward_gives_the_same_gradients_on_both_backends(name):
    """adjoint_cg.py on both backends (a smooth Hessian; a box's and a norm1's free set): the same CG steps,
    so the gradients agree to rounding, far below the solve's tolerance."""
    source, solver = SOURCES[name]
    model = optlang.compile_string(source, f"{name}.opt")
    grads = {}
    for backend in ("torch", "triton"):
        leaves = {k: v.clone().requires_grad_() for k, v in data(name).items()}
        x = model.solve(**leaves, backend=backend, backward="cg")[model.plan.var.name]
        weights = torch.linspace(-1, 1, x.numel(), dtype=x.dtype, device=x.device).reshape(x.shape)
        grads[backend] = torch.autograd.grad((x * weights).sum(), list(leaves.values()))
    for got, want in zip(grads["triton"], grads["torch"]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
