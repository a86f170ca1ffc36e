"""FISTA's quadratic path (pgd.top_eigenvalue, quadratic_step, the QUADRATIC flag): L close to the top
eigenvalue, the step's upper bound exact whatever L it starts from, and the same solution as backtracking."""
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optlang
from optlang.solvers import ops, pgd

NNLS = "problem nnls\ndim m, n\nparam A[m, n], b[m]\nvar x[n]\nminimize 0.5 * sumsq(A @ x - b)\nsubject to\n  x >= 0\n"


def test_power_iteration_is_a_close_lower_bound_of_the_top_eigenvalue():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(16, 30, 12, dtype=torch.float64, generator=g)
    H = A.mT @ A
    top = torch.linalg.eigvalsh(H)[..., -1:]
    ctx = ops.Context(types.SimpleNamespace(batch=(16,), dtype=H.dtype, device=H.device), None)
    x = torch.zeros(16, 12, dtype=H.dtype)
    # POWER_STEPS = 10 gives a start for L (the step check doubles it where short): below, within 15%.
    for L, want in ((pgd.top_eigenvalue(H, x, ctx), top), (pgd.top_eigenvalue(H[0], x, ctx), top[0])):  # batch; shared
        assert bool((L >= 0.85 * want).all()) and bool((L <= want * (1 + 1e-12)).all())


def test_a_short_L_is_doubled_until_the_quadratic_bound_holds(monkeypatch):
    layer = optlang.compile_string(NNLS)
    g = torch.Generator().manual_seed(1)
    A, b = torch.randn(4, 9, 5, dtype=torch.float64, generator=g), torch.randn(4, 9, dtype=torch.float64, generator=g)
    want = layer.solve(A=A, b=b, warn=False).x
    monkeypatch.setattr(pgd, "top_eigenvalue", lambda H, x, ctx: torch.full(x.shape[:-1] + (1,), 1e-3, dtype=H.dtype))
    steps = []
    real = pgd.quadratic_step

    def step(H, y, g_, L, active, ctx):
        x_new, L_new = real(H, y, g_, L, active, ctx)
        d = x_new - y
        curvature = (d * ops.times(H, d)).sum(-1, keepdim=True)
        steps.append(bool((curvature <= L_new * (d * d).sum(-1, keepdim=True) * (1 + 1e-9) + 1e-300).all()))
        return x_new, L_new

    monkeypatch.setattr(pgd, "quadratic_step", step)
    got = layer.solve(A=A, b=b, warn=False)
    assert steps and all(steps) and bool(got.stats.converged.all())
    torch.testing.assert_close(got.x, want, rtol=1e-9, atol=1e-12)


def test_the_quadratic_path_and_backtracking_reach_the_same_solution(monkeypatch):
    layer = optlang.compile_string(NNLS)
    g = torch.Generator().manual_seed(2)
    A, b = torch.randn(6, 12, 7, dtype=torch.float64, generator=g), torch.randn(6, 12, dtype=torch.float64, generator=g)
    quadratic = layer.solve(A=A, b=b, warn=False).x
    flags = pgd.flags
    monkeypatch.setattr(pgd, "flags", lambda plan: dict(flags(plan), QUADRATIC=False))
    torch.testing.assert_close(layer.solve(A=A, b=b, warn=False).x, quadratic, rtol=1e-9, atol=1e-12)


POINT_PROXES = {  # f = |x - v|^2 / 2 with a set or prox term: the solution is that prox of v, in closed form
    "soft_threshold": ("problem st\ndim n\nparam v[n], lam >= 0\nvar x[n]\n"
                       "minimize 0.5 * sumsq(x - v) + lam * norm1(x)\n",
                       lambda p: torch.sign(p["v"]) * torch.relu(p["v"].abs() - p["lam"][..., None])),
    "box": ("problem box\ndim n\nparam v[n], lo[n], hi[n]\nvar x[n]\nminimize 0.5 * sumsq(x - v)\n"
            "subject to\n  x >= lo\n  x <= hi\n", lambda p: torch.minimum(torch.maximum(p["v"], p["lo"]), p["hi"])),
    "ball": ("problem ball\ndim n\nparam v[n], r > 0\nvar x[n]\nminimize 0.5 * sumsq(x - v)\n"
             "subject to\n  norm2(x) <= r\n",
             lambda p: p["v"] * torch.clamp(p["r"][..., None] / p["v"].norm(dim=-1, keepdim=True), max=1.0)),
}


def _point_prox_params(name, seed, batch, n):
    """Params away from the prox's kinks (|v| = lam, v at a bound, |v| = r), so finite differences hold."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(batch + (n,), generator=g) < 0.5, -1.0, 1.0).double()
    v = sign * (0.2 + 2 * torch.rand(batch + (n,), generator=g, dtype=torch.float64))
    if name == "soft_threshold":  # |v| in [0.2, 2.2] away from lam = 1.2 by >= 0.1 (or all on one side)
        v = torch.where((v.abs() - 1.2).abs() < 0.1, v * 2.5, v)
        return {"v": v, "lam": torch.full(batch, 1.2, dtype=torch.float64)}
    if name == "box":
        lo, hi = torch.full_like(v, -1.0), torch.full_like(v, 1.0)
        v = torch.where(((v.abs() - 1.0).abs() < 0.1), v * 1.5, v)
        return {"v": v, "lo": lo, "hi": hi}
    norm = v.norm(dim=-1)
    return {"v": v, "r": 0.5 * norm if seed % 2 == 0 else 2.0 * norm}  # outside the ball, or inside


@pytest.mark.parametrize("name", sorted(POINT_PROXES))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.sampled_from([(1,), (3,), (2, 2)]), n=st.integers(1, 7))
def test_a_prox_of_a_point_is_its_closed_form_with_exact_gradients(name, seed, batch, n):
    """f's Hessian is the identity (IDENTITY_HESSIAN) and so is the residual's Jacobian: the forward is
    one prox step (no iteration), the backward solves nothing; the solution is the closed form, and
    gradcheck in float64 holds the derivatives of every param."""
    source, closed_form = POINT_PROXES[name]
    layer = optlang.compile_string(source)
    assert pgd.flags(layer.plan)["IDENTITY_HESSIAN"] and layer.plan.identity_jacobian
    params = _point_prox_params(name, seed, batch, n)
    sol = layer.solve(**params)
    assert bool(sol.stats.converged.all()) and not bool(sol.stats.iterations.any())
    torch.testing.assert_close(sol.x, closed_form(params), rtol=1e-12, atol=1e-13)
    names = sorted(params)

    def x_of(*values):
        return layer(**dict(zip(names, values)))

    inputs = tuple(params[k].clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(x_of, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 5), n=st.integers(1, 9), shared=st.booleans())
def test_the_free_set_step_solves_the_polish_newton_system(seed, batch, n, shared):
    """pgd.free_set_step's symmetric system on the free set gives the semismooth Newton step of the
    nonsymmetric Jacobian I - D (I - H) (D a 0/1 mask, H SPD, one per instance or shared), and factors."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(1 if shared else batch, n + 2, n, dtype=torch.float64, generator=g)
    H = A.mT @ A + 0.1 * torch.eye(n, dtype=torch.float64)
    H = H[0] if shared else H
    D = (torch.rand(batch, n, generator=g) < 0.5).to(torch.float64)
    F = torch.randn(batch, n, dtype=torch.float64, generator=g)
    ctx = ops.Context(types.SimpleNamespace(batch=(batch,), dtype=H.dtype, device=H.device), None)
    dx, factored = pgd.free_set_step(H, D, F, ctx)
    eye = torch.eye(n, dtype=torch.float64)
    J = eye - D.unsqueeze(-1) * (eye - H)
    assert bool(factored.all())
    torch.testing.assert_close((J @ dx.unsqueeze(-1)).squeeze(-1), -F, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(dx * (1.0 - D), -F * (1.0 - D), rtol=0, atol=0)  # off the free set exactly -F


@pytest.mark.parametrize("seed", [6, 7])
def test_a_singular_hessian_polishes_by_lu_and_reaches_the_solution(monkeypatch, seed):
    """NNLS with more columns than rows: H = A'A is singular, the free-set system may not factor, and
    those instances take LU (pgd.polish): every instance meets the optimality conditions within a few
    rounds (at these seeds 4 and 8 at most; with the LU steps left out, 341 and 109)."""
    layer = optlang.compile_string(NNLS)
    g = torch.Generator().manual_seed(seed)
    A, b = torch.randn(6, 4, 9, dtype=torch.float64, generator=g), torch.randn(6, 4, dtype=torch.float64, generator=g)
    calls = []
    real = pgd.free_set_step

    def step(H, D, F, ctx):
        dx, factored = real(H, D, F, ctx)
        calls.append(bool(factored.all()))
        return dx, factored

    monkeypatch.setattr(pgd, "free_set_step", step)
    sol = layer.solve(A=A, b=b, backend="torch")
    assert calls and not all(calls)  # some system did not factor: the LU branch ran
    assert bool(sol.stats.converged.all()) and int(sol.stats.iterations.max()) <= 20
    x = sol.x
    grad = (A.mT @ (A @ x.unsqueeze(-1) - b.unsqueeze(-1))).squeeze(-1)
    # KKT of NNLS: x >= 0, grad >= 0, and grad = 0 where x > 0 (to the solve's tolerance).
    assert bool((x >= 0).all())
    assert float(grad.clamp(max=0).abs().max()) < 1e-6 and float((grad * x).abs().max()) < 1e-6


HESSIAN_GRADIENT_EXAMPLES = ("nnls", "lasso", "box_ls", "elastic_net")


def _example_params(name: str, batch: tuple, m: int, n: int, g) -> dict:
    """Random params of an example's least squares (A or X: m x n), inside their domains."""
    def r(*shape):
        return torch.randn(batch + shape, dtype=torch.float64, generator=g)

    if name in ("nnls", "box_ls"):
        params = {"A": r(m, n), "b": r(m)}
        if name == "box_ls":
            lo = -r(n).abs()
            params.update(lo=lo, hi=lo + r(n).abs() + 0.1)
        return params
    scale = torch.rand(batch, dtype=torch.float64, generator=g)
    params = {"X": r(m, n), "y": r(m)}
    return dict(params, lam=scale) if name == "lasso" else dict(params, lam1=scale, lam2=0.5 * scale)


def test_the_hessian_gradient_is_used_where_the_hessian_is_no_larger_than_the_data():
    """NNLS, the lasso, a box and the elastic net: H (n x n) against A (m x n). The SVM dual: H is
    (m k)^2, a kron of X X', against X (m x d); sparsemax solves in one step and needs neither."""
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in HESSIAN_GRADIENT_EXAMPLES:
        assert pgd.flags(optlang.compile(examples / f"{name}.opt").plan)["HESSIAN_GRADIENT"], name
    for name in ("svm", "sparsemax"):
        assert not pgd.flags(optlang.compile(examples / f"{name}.opt").plan)["HESSIAN_GRADIENT"], name


@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(HESSIAN_GRADIENT_EXAMPLES),
       batch=st.sampled_from([(1,), (3,), (2, 2)]), m=st.integers(1, 9), n=st.integers(1, 7))
def test_the_hessian_gradient_residual_is_the_generated_residual_to_rounding(seed, name, batch, m, n):
    """step_residual (x - prox(x - (H x + grad f(0)))) against the generated residual, at random points
    of the sets and off them: equal up to rounding of the gradient's size (eps |A|^2 |x| and eps |A'b|)."""
    from pathlib import Path

    from optlang.runtime.bound import BoundProblem
    from optlang.runtime.executor import TorchExecutor
    from optlang.solvers.result import NO_DEADLINE

    layer = optlang.compile(Path(__file__).resolve().parent.parent / "examples" / f"{name}.opt")
    g = torch.Generator().manual_seed(seed)
    params = _example_params(name, batch, m, n, g)
    dims = {"m": m, "n": n} if "A" in params else {"n": m, "d": n}
    bound = BoundProblem(TorchExecutor().module_for(layer.plan), layer.plan, params, dims, batch, torch.float64,
                         torch.device("cpu")).flat_batch()
    ctx = ops.Context(bound, NO_DEADLINE, SHARED_HESSIAN=False, **pgd.flags(layer.plan))
    size = bound.batch[0]
    x = 3.0 * torch.randn(size, n, dtype=torch.float64, generator=g)
    H = ops.hessian(x, ctx)
    g0 = ops.gradient_flat(0.0 * x, ctx)
    quadratic = torch.ones(size, 1, dtype=torch.bool)
    generated = pgd.residual_flat
    for point in (x, ops.prox_flat(x, torch.zeros(size, 1, dtype=torch.float64), ctx)):
        pgd.residual_flat = None  # the H path must not call it (a TypeError if it does)
        try:
            got = pgd.step_residual(point, H, g0, quadratic, ctx)
        finally:
            pgd.residual_flat = generated
        want = ops.residual_flat(point, ctx)
        data = max(float(v.abs().max()) for v in params.values())
        size_of_terms = data * data * (1.0 + float(point.abs().max())) * m * n
        torch.testing.assert_close(got, want, rtol=0, atol=64 * torch.finfo(torch.float64).eps * size_of_terms)


def test_the_hessian_gradient_path_and_the_generated_gradient_reach_the_same_solution(monkeypatch):
    """NNLS and the lasso solved with grad f = H x + grad f(0) and with the generated gradient: the same
    solutions to the tolerance, and the gradients through them."""
    g = torch.Generator().manual_seed(3)
    flags = pgd.flags
    for name in ("nnls", "lasso"):
        from pathlib import Path

        layer = optlang.compile(Path(__file__).resolve().parent.parent / "examples" / f"{name}.opt")
        params = _example_params(name, (8,), 12, 6, g)
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        runs = []
        for on in (True, False):
            monkeypatch.setattr(pgd, "flags", lambda plan, on=on: dict(flags(plan), HESSIAN_GRADIENT=on))
            sol = layer.solve(**leaves)
            x = sol[layer.plan.vars[0].name]
            grads = torch.autograd.grad(x.sum(), tuple(leaves.values()))
            assert bool(sol.stats.converged.all())
            runs.append((x.detach(), grads))
        torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-9, atol=1e-11)
        for a, b in zip(runs[0][1], runs[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_the_polish_drops_the_instances_that_have_stopped_and_keeps_their_results(monkeypatch):
    """The polish runs on its own batch (ops.nested) and compacts it: its later rounds factor the
    instances still polishing only, and every instance ends where it ends without compaction (the
    same iterates), the caller's batch and order intact."""
    layer = optlang.compile_string(NNLS)
    g = torch.Generator().manual_seed(4)
    A, b = torch.randn(32, 14, 8, dtype=torch.float64, generator=g), torch.randn(32, 14, dtype=torch.float64, generator=g)
    sizes = []
    real = pgd.free_set_step

    def step(H, D, F, ctx):
        sizes.append(D.shape[0])
        return real(H, D, F, ctx)

    monkeypatch.setattr(pgd, "free_set_step", step)
    compacted = layer.solve(A=A, b=b, backend="torch")
    assert compacted.stats.all_converged and sizes[0] == 32 and min(sizes) < 16  # stragglers polished alone
    monkeypatch.setattr(ops, "COMPACT", 0.0)  # never compact (while one instance is going)
    sizes.clear()
    whole = layer.solve(A=A, b=b, backend="torch")
    assert set(sizes) == {32}
    torch.testing.assert_close(compacted.x, whole.x, rtol=0, atol=1e-14)
    assert torch.equal(compacted.stats.iterations, whole.stats.iterations)


SETS = {  # more prox classes with HESSIAN_GRADIENT: a simplex with a psd Q, a ball, two vars in boxes
    "simplex": ("problem p\ndim n\nparam Q[n, n] psd, c[n]\nvar x[n]\nminimize 0.5 * dot(x, Q @ x) + dot(c, x)\n"
                "subject to\n  x >= 0\n  sum(x) == 1\n", {"n": 4}),
    "ball": ("problem p\ndim m, n\nparam A[m, n], b[m], r > 0\nvar x[n]\nminimize 0.5 * sumsq(A @ x - b)\n"
             "subject to\n  norm2(x) <= r\n", {"m": 7, "n": 4}),
    "two vars": ("problem p\ndim m, n\nparam A[m, n], B[m, n], b[m]\nvar x[n], y[n]\n"
                 "minimize 0.5 * sumsq(A @ x + B @ y - b)\nsubject to\n  x >= 0\n  y >= 0\n", {"m": 9, "n": 4}),
}


@pytest.mark.parametrize("name", sorted(SETS))
def test_the_hessian_gradient_residual_agrees_on_a_simplex_a_ball_and_two_vars(name):
    from optlang.runtime.bound import BoundProblem
    from optlang.runtime.executor import TorchExecutor

    text, dims = SETS[name]
    layer = optlang.compile_string(text)
    assert pgd.flags(layer.plan)["HESSIAN_GRADIENT"]
    g = torch.Generator().manual_seed(0)
    params = {}
    for p in layer.plan.params:
        t = torch.randn((5,) + tuple(dims.get(d, d) for d in p.shape), dtype=torch.float64, generator=g)
        params[p.name] = t @ t.mT if p.name == "Q" else (t.abs() + 0.1 if p.name == "r" else t)
    bound = BoundProblem(TorchExecutor().module_for(layer.plan), layer.plan, params, dims, (5,), torch.float64,
                         torch.device("cpu")).flat_batch()
    ctx = ops.Context(bound, None, SHARED_HESSIAN=False, **pgd.flags(layer.plan))
    x = 2.0 * torch.randn(5, bound.n, dtype=torch.float64, generator=g)
    H, g0 = ops.hessian(x, ctx), ops.gradient_flat(0.0 * x, ctx)
    got = pgd.step_residual(x, H, g0, torch.ones(5, 1, dtype=torch.bool), ctx)
    torch.testing.assert_close(got, ops.residual_flat(x, ctx), rtol=0, atol=1e-12)
    assert bool(layer.solve(**params).stats.converged.all())
