"""FISTA's quadratic path (pgd.top_eigenvalue, quadratic_step, the QUADRATIC flag): L close to the top
eigenvalue, the step's upper bound exact whatever L it starts from, and the same solution as backtracking."""
import types

import torch

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
