"""`expand(x, axis=k)` (pairwise constructions by broadcasting) and `square(pos(u))` (smooth)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang

SMOOTHING = """problem smoothing
dim n
param a[n], c > 0
var x[n]
minimize sumsq(x - a) + c * sum(square(expand(x, axis=1) - expand(x, axis=0)))
"""


def _smoothing_closed_form(a: np.ndarray, c: float) -> np.ndarray:
    """grad = 2 (x - a) + 4 c (n x - sum(x)) = 0, solved directly."""
    n = a.shape[-1]
    M = (1 + 2 * c * n) * np.eye(n) - 2 * c * np.ones((n, n))
    return np.linalg.solve(M, a[..., None])[..., 0]


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 7), batch=st.sampled_from([(), (1,), (3,), (2, 2)]), seed=st.integers(0, 2**31 - 1))
def test_pairwise_differences_solve_to_the_closed_form_and_gradcheck(n, batch, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch + (n,))
    c = float(rng.uniform(0.05, 2.0))
    layer = optlang.compile_string(SMOOTHING)
    x = layer(a=torch.tensor(a), c=torch.tensor(c, dtype=torch.float64))
    np.testing.assert_allclose(x.numpy(), _smoothing_closed_form(a, c), rtol=1e-9, atol=1e-10)
    ta = torch.tensor(a, requires_grad=True)
    tc = torch.tensor(c, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a_, c_: layer(a=a_, c=c_), (ta, tc))


def test_expand_puts_a_unit_axis_where_asked():
    from optlang.passes.pipeline import check_source

    problem = check_source("problem p\ndim n, m\nparam A[n, m]\nvar x[n]\n"
                           "minimize sumsq(x) + sum(expand(A, axis=2) * expand(expand(x, axis=1), axis=2))\n")
    inner = problem.expr.args[1].a  # the elementwise product inside the sum
    assert inner.shape == ("n", "m", 1)


@pytest.mark.parametrize("call, message, caret", [
    ("expand(x)", "expand needs axis=k: where the new axis goes", "^^^^^^^^^"),
    ("expand(x, axis=2)", "axis=2 is out of range for expand of [n]", "^"),
])
def test_expand_errors_are_located(call, message, caret):
    src = f"problem p\ndim n\nparam a[n]\nvar x[n]\nminimize sumsq(x - a) + sum({call})\n"
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(src, "t.opt")
    head, _, carets = str(info.value).splitlines()[:3]
    assert message in head and head.startswith("t.opt:5:")
    assert carets.strip() == caret


def test_square_of_pos_is_smooth_with_the_derivatives_of_relu_squared():
    layer = optlang.compile_string("problem p\ndim n\nparam a[n], b[n]\nvar x[n]\n"
                                   "minimize sumsq(x - a) + 3 * sum(square(pos(x - b)))\n")
    assert not layer.plan.local  # square(pos(affine)) is convex: the composition rules know it
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    b = torch.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    x = layer(a=a, b=b)
    # Closed form per entry: x = a where a <= b, else (a + 3 b) / 4.
    expected = torch.where(a <= b, a, (a + 3 * b) / 4)
    torch.testing.assert_close(x, expected, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda a_, b_: layer(a=a_, b=b_), (a, b))


def test_square_of_pos_is_allowed_with_constraints_and_in_a_power():
    layer = optlang.compile_string("problem p\ndim n\nparam a[n]\nvar x[n]\n"
                                   "minimize sum(pos(x - a)^2) + sumsq(x)\nsubject to\n  sum(x) == 1\n")
    x = layer(a=torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(x, torch.full((3,), 1 / 3, dtype=torch.float64))
