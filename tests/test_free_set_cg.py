"""CG on the free set of a simplex: the backward sparsemax-like problems take by default, at every size.

For sparsemax H = I and dF/dx = I (folded so by ir.algebra), so the adjoint is w = g with no solve,
and this checks the path (the default, vjp_theta, forward mode) and the threshold it reads; the CG
itself on a nontrivial H is svm's, which test_classes and test_transforms run under backward="cg"
(gradcheck, references, second order)."""
from __future__ import annotations

import numpy as np
import pytest
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


def _sorted_tau(z: torch.Tensor) -> torch.Tensor:
    """The simplex threshold by sorting (Held et al.): the reference for support.simplex_tau."""
    ordered = torch.sort(z, dim=-1, descending=True).values
    partial = ordered.cumsum(-1) - 1
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    size = (ordered - partial / k > 0).sum(-1, keepdim=True)
    return (partial.gather(-1, size - 1) / size.to(z.dtype)).squeeze(-1)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), rows=st.integers(1, 6), scale=st.sampled_from([1e-6, 1e-2, 1.0, 30.0, 1e6]),
       ties=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_the_simplex_threshold_is_the_sorted_one(n, rows, scale, ties, seed):
    """Newton's steps on sum(relu(z - t)) = 1 land on the threshold sorting finds, ties, one entry,
    tiny and huge spreads included; a row of equal entries takes tau = z - 1/n."""
    from optlang.backends.torch.support import _newton_tau

    rng = np.random.default_rng(seed)
    z = scale * rng.standard_normal((rows, n))
    if ties:
        z = np.round(z / scale * 2) * scale / 2  # many equal entries
    z = torch.tensor(z)
    tau = _newton_tau(z, (-1,))
    torch.testing.assert_close(tau, _sorted_tau(z), rtol=1e-13, atol=1e-13 * (1 + float(z.abs().max())))
    x = torch.relu(z - tau[:, None])
    torch.testing.assert_close(x.sum(-1), torch.ones(rows, dtype=z.dtype), rtol=0,
                               atol=1e-12 * (1 + float(z.abs().max())))
    flat = torch.full((2, n), 3.0, dtype=torch.float64)
    torch.testing.assert_close(_newton_tau(flat, (-1,)), torch.full((2,), 3.0 - 1.0 / n, dtype=torch.float64))



def test_a_nan_row_gets_a_nan_threshold_and_leaves_the_others_alone(monkeypatch):
    """A row with a NaN counts no support (as a comparison would), so it stops with the others in a
    handful of steps instead of running n; its tau is NaN, the other rows' the sorted threshold."""
    from optlang.backends.torch import support

    z = torch.randn(5, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    z[2, 17] = float("nan")
    steps = []
    real_sub = torch.sub
    monkeypatch.setattr(support.torch, "sub", lambda *a, **k: steps.append(1) or real_sub(*a, **k))
    tau = support._newton_tau(z, (-1,))
    monkeypatch.undo()
    assert torch.isnan(tau[2]) and len(steps) < 20
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(tau[keep], _sorted_tau(z[keep]), rtol=1e-13, atol=1e-13)

def test_the_simplex_threshold_reuses_only_a_bitwise_equal_input_within_a_scope():
    """support.simplex_tau keeps its last value inside a memo_scope: given again for an equal input,
    recomputed for any other (an input changed in place since included), never reused under autograd,
    and never outside the scope (a value must not carry over from one layer call to the next)."""
    from optlang.backends.torch.support import _newton_tau, memo_scope, simplex_tau

    z = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert simplex_tau(z, (-1,)) is not simplex_tau(z, (-1,))  # no scope: computed each time
    with memo_scope() as memo:
        first = simplex_tau(z, (-1,))
        assert simplex_tau(z.clone(), (-1,)) is first
        z[2, z[2].argmax()] += 1.0  # the same tensor, other values (the top entry is in the support: tau moves)
        torch.testing.assert_close(simplex_tau(z, (-1,)), _newton_tau(z, (-1,)), rtol=0, atol=0)
        assert not torch.equal(simplex_tau(z, (-1,)), first)
        tracked = z.clone().requires_grad_()
        tau = simplex_tau(tracked, (-1,))
        (grad,) = torch.autograd.grad(tau.sum(), tracked)
        support = (z - _newton_tau(z, (-1,))[:, None] > 0).to(z.dtype)
        torch.testing.assert_close(grad, support / support.sum(-1, keepdim=True))  # d tau / dz: 1/|S| on S
        kept = simplex_tau(z, (-1,))
    with memo_scope(memo):  # the same memo again (a call's backward): the forward's value
        assert simplex_tau(z.clone(), (-1,)) is kept
    with memo_scope():
        assert simplex_tau(z.clone(), (-1,)) is not kept


def test_the_simplex_threshold_matches_the_same_memory_without_a_pass_and_sees_writes(monkeypatch):
    """The memo holds its input itself, not a copy: a tensor over the same memory (the backward's
    detached params) is matched without comparing values, until a write in place bumps the version
    counter; an inference tensor counts no versions, so a copy is kept and compared by value."""
    from optlang.backends.torch import support

    z = torch.randn(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with support.memo_scope():
        first = support.simplex_tau(z, (-1,))
        with monkeypatch.context() as patch:
            patch.setattr(support.torch, "equal", lambda a, b: pytest.fail("compared values"))
            assert support.simplex_tau(z.detach(), (-1,)) is first
        z[1, z[1].argmax()] -= 0.5  # a write in place: the same memory, other values
        again = support.simplex_tau(z.detach(), (-1,))
        assert again is not first
        torch.testing.assert_close(again, support._newton_tau(z, (-1,)), rtol=0, atol=0)
    with torch.inference_mode():
        frozen = z.clone()
    with support.memo_scope(), torch.inference_mode():
        first = support.simplex_tau(frozen, (-1,))
        assert support.simplex_tau(frozen.clone(), (-1,)) is first
        frozen[0, frozen[0].argmax()] += 1.0  # no version counter to see this: the kept copy differs
        torch.testing.assert_close(support.simplex_tau(frozen, (-1,)), support._newton_tau(frozen, (-1,)),
                                   rtol=0, atol=0)


def test_a_sparsemax_call_finds_the_threshold_once_and_the_next_call_again(monkeypatch):
    """Forward and backward of one call share the threshold (the residual, the prox and vjp_theta
    all ask for it at v); a second call with the same v computes it afresh."""
    from optlang.backends.torch import support

    calls = []
    original = support._newton_tau
    monkeypatch.setattr(support, "_newton_tau", lambda z, dims: calls.append(1) or original(z, dims))
    layer = example("sparsemax")
    v = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    for expected in (1, 2):
        x = layer(v=v)
        x.sum().backward()
        assert len(calls) == expected


def test_an_identity_jacobian_needs_no_solve_whatever_the_backward(monkeypatch):
    """sparsemax's dF/dx folds to the identity: every backward method returns the closed-form
    gradient without running its solver (the CG and the dense solve are made to fail here), and
    `optlang conditions` says so; NNLS's dF/dx is not the identity."""
    from optlang.passes.report import print_conditions
    from optlang.passes.pipeline import run
    from optlang.solvers import adjoint_cg, backward
    from test_classes import EXAMPLES

    layer = example("sparsemax")
    assert layer.plan.identity_jacobian and not example("nnls").plan.identity_jacobian

    def refuse(*args, **kwargs):
        raise AssertionError("a linear solve ran")

    monkeypatch.setattr(adjoint_cg, "adjoint", refuse)
    monkeypatch.setattr(backward, "solve", refuse)
    monkeypatch.setattr(backward, "gmres", refuse)
    v = torch.randn(3, 11, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 11, dtype=torch.float64)
    for method in ("auto", "direct", "cg", "gmres", "neumann"):
        x = layer.solve(v=v, backward=method).x
        (grad,) = torch.autograd.grad((x * c).sum(), v)
        torch.testing.assert_close(grad, _sparsemax_jacobian_times(x.detach(), c), rtol=0, atol=1e-12)
    text = print_conditions(run((EXAMPLES / "sparsemax.opt").read_text(), "sparsemax.opt"))
    assert "the residual's Jacobian in the vars is the identity" in " ".join(text.split())
