"""The soft-sphere packing of examples/paper_md.opt: its derivatives in the diameter scale and the
sizes, forward and reverse, against finite differences of re-solved packings (float64, small N)."""
from __future__ import annotations

import math
import pathlib

import torch
from hypothesis import given, settings, strategies as st

import optlang

OPT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "paper_md.opt"


def _packing(n: int, seed: int, fraction: float):
    gen = torch.Generator().manual_seed(seed)
    s = torch.where(torch.arange(n) % 2 == 0, 1.0, 1.4).double()
    sigma = torch.tensor(math.sqrt(fraction / (math.pi / 4 * float((s * s).sum()))), dtype=torch.float64)
    fixed = dict(x0=torch.rand(n, 2, generator=gen, dtype=torch.float64),
                 L=torch.tensor(1.0, dtype=torch.float64), k=torch.tensor(1e-3, dtype=torch.float64))
    layer = optlang.compile(OPT)
    sol = layer.solve(**fixed, s=s, sigma=sigma)  # from u = 0: the discs at x0
    assert sol.stats.status_names() == "converged"
    return layer, fixed, s, sigma, sol.u


@settings(max_examples=4, deadline=None)
@given(n=st.integers(3, 7), seed=st.integers(0, 2**31 - 1), fraction=st.sampled_from([0.7, 0.85, 0.95]))
def test_the_sensitivity_to_the_diameter_matches_re_solved_packings(n, seed, fraction):
    layer, fixed, s, sigma, x = _packing(n, seed, fraction)
    _, dx = torch.func.jvp(lambda t: layer(**fixed, s=s, sigma=t, init={"u": x}), (sigma,), (torch.ones_like(sigma),))
    h = 1e-6 * float(sigma)
    plus = layer.solve(**fixed, s=s, sigma=sigma + h, init={"u": x}, tol=1e-13).u
    minus = layer.solve(**fixed, s=s, sigma=sigma - h, init={"u": x}, tol=1e-13).u
    fd = (plus - minus) / (2 * h)
    assert float((dx - fd).abs().max()) <= 1e-6 * (1 + float(fd.abs().max()))
    # Reverse mode gives the same column: d(sum(w * x))/dsigma = <w, dx/dsigma>.
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    t = sigma.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((w * layer(**fixed, s=s, sigma=t, init={"u": x})).sum(), t)
    assert abs(float(grad) - float((w * dx).sum())) <= 1e-8 * (1 + abs(float(grad)))


def test_gradcheck_in_the_diameter_scale_and_the_sizes():
    layer, fixed, s, sigma, x = _packing(5, 3, 0.9)
    f = lambda t, sizes: layer(**fixed, s=sizes, sigma=t, init={"u": x}, tol=1e-13)  # noqa: E731
    assert torch.autograd.gradcheck(f, (sigma.clone().requires_grad_(True), s.clone().requires_grad_(True)),
                                    atol=1e-6, rtol=1e-5)
