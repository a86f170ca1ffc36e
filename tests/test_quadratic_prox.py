"""FISTA's quadratic path (pgd._dense_hessian, _top_eigenvalue, _quadratic_step): L close to the top
eigenvalue, the step's upper bound exact whatever L it starts from, and the same solution as backtracking."""
import torch

import optlang
from optlang.solvers import pgd

NNLS = "problem nnls\ndim m, n\nparam A[m, n], b[m]\nvar x[n]\nminimize 0.5 * sumsq(A @ x - b)\nsubject to\n  x >= 0\n"


def test_power_iteration_is_a_close_lower_bound_of_the_top_eigenvalue():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(16, 30, 12, dtype=torch.float64, generator=g)
    H = A.mT @ A
    top = torch.linalg.eigvalsh(H)[..., -1]
    L = pgd._top_eigenvalue(H)
    # POWER_STEPS = 10 gives a start for L (the step check doubles it where short): below, within 15%.
    assert bool((L >= 0.85 * top).all()) and bool((L <= top * (1 + 1e-12)).all())
    torch.testing.assert_close(pgd._top_eigenvalue(H[0]), top[0], rtol=1e-12, atol=0)  # one matrix: eigvalsh


def test_a_short_L_is_doubled_until_the_quadratic_bound_holds(monkeypatch):
    layer = optlang.compile_string(NNLS)
    g = torch.Generator().manual_seed(1)
    A, b = torch.randn(4, 9, 5, dtype=torch.float64, generator=g), torch.randn(4, 9, dtype=torch.float64, generator=g)
    want = layer.solve(A=A, b=b, warn=False).x
    monkeypatch.setattr(pgd, "_top_eigenvalue", lambda H: torch.full(H.shape[:-2], 1e-3, dtype=H.dtype))
    steps = []
    real = pgd._quadratic_step

    def step(prob, H, y, g_, L, active):
        x_new, L_new = real(prob, H, y, g_, L, active)
        d = x_new - y
        curvature = (d * (H @ d.unsqueeze(-1)).squeeze(-1)).sum(-1)
        steps.append(bool((curvature <= L_new * (d * d).sum(-1) * (1 + 1e-9) + 1e-300).all()))
        return x_new, L_new

    monkeypatch.setattr(pgd, "_quadratic_step", step)
    got = layer.solve(A=A, b=b, warn=False)
    assert steps and all(steps) and bool(got.stats.converged.all())
    torch.testing.assert_close(got.x, want, rtol=1e-9, atol=1e-12)


def test_the_quadratic_path_and_backtracking_reach_the_same_solution(monkeypatch):
    layer = optlang.compile_string(NNLS)
    g = torch.Generator().manual_seed(2)
    A, b = torch.randn(6, 12, 7, dtype=torch.float64, generator=g), torch.randn(6, 12, dtype=torch.float64, generator=g)
    quadratic = layer.solve(A=A, b=b, warn=False).x
    monkeypatch.setattr(pgd, "_dense_hessian", lambda prob, x: None)
    torch.testing.assert_close(layer.solve(A=A, b=b, warn=False).x, quadratic, rtol=1e-9, atol=1e-12)
