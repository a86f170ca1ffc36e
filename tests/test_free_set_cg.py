"""CG on the free set of a simplex: the backward sparsemax-like problems take by default, at every size.

For sparsemax H = I, so the adjoint is w = g whatever the CG returns and this checks the path (the
default, prox_jvp's projection through vjp_theta, forward mode); the CG itself on a nontrivial H is
svm's, which test_classes and test_transforms run under backward="cg" (gradcheck, references,
second order)."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from optlang.passes.select import backward_method
from test_classes import example


def _sparsemax_jacobian_times(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """J c for J = diag(s) - s s' / |s|, s the support of x (J is symmetric: also J' c)."""
    s = (x > 0).to(c.dtype)
    return s * (c - (s * c).sum(-1, keepdim=True) / s.sum(-1, keepdim=True))


@settings(max_examples=8, deadline=None)
@given(n=st.sampled_from([2, 5, 40, 300]), batch=st.sampled_from([(), (3,), (2, 4)]),
       scale=st.sampled_from([0.1, 1.0, 10.0]), seed=st.integers(0, 2**31 - 1))
def test_sparsemax_gradient_and_tangent_by_default_are_the_closed_form(n, batch, scale, seed):
    layer = example("sparsemax")
    assert backward_method(layer.plan, n, "auto") == "cg"
    rng = np.random.default_rng(seed)
    v = torch.tensor(scale * rng.standard_normal(batch + (n,)), requires_grad=True)
    c = torch.tensor(rng.standard_normal(batch + (n,)))
    x = layer(v=v)
    (grad,) = torch.autograd.grad((x * c).sum(), v)
    expected = _sparsemax_jacobian_times(x.detach(), c)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12 * (1 + float(c.abs().max())))
    _, tangent = torch.func.jvp(lambda t: layer(v=t), (v.detach(),), (c,))
    torch.testing.assert_close(tangent, expected, rtol=0, atol=1e-12 * (1 + float(c.abs().max())))


def test_the_simplex_threshold_reuses_only_a_bitwise_equal_input():
    """support.simplex_tau keeps its last value: given again for an equal input, recomputed for any
    other (an input changed in place since included), and never reused under autograd."""
    from optlang.backends.torch.support import _simplex_tau, simplex_tau

    z = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    first = simplex_tau(z, (-1,))
    assert simplex_tau(z.clone(), (-1,)) is first
    z[2, z[2].argmax()] += 1.0  # the same tensor, other values (the top entry is in the support: tau moves)
    torch.testing.assert_close(simplex_tau(z, (-1,)), _simplex_tau(z, (-1,)), rtol=0, atol=0)
    assert not torch.equal(simplex_tau(z, (-1,)), first)
    tracked = z.clone().requires_grad_()
    tau = simplex_tau(tracked, (-1,))
    (grad,) = torch.autograd.grad(tau.sum(), tracked)
    support = (z - _simplex_tau(z, (-1,))[:, None] > 0).to(z.dtype)
    torch.testing.assert_close(grad, support / support.sum(-1, keepdim=True))  # d tau / dz: 1/|S| on S
