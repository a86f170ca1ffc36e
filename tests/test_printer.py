"""The IR printer and the conditions report: infix text that reads back to the same value, shared temporaries."""
from __future__ import annotations

from pathlib import Path

import pytest

from optlang.ir.nodes import Const, Elementwise, Input
from optlang.ir.printer import format_expr, format_number, print_problem, split_terms, tensor_subexpressions
from optlang.passes.pipeline import check_source, run
from optlang.passes.report import direction_names, print_conditions, shared_nodes, ssa_names
from optlang.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(f"examples/{p.name}" for p in (ROOT / "examples").glob("*.opt"))

HEADER = "problem p\ndim n, m\nparam A[m, n], b[m], c[n], s > 0, t\nvar x[n]\n"


def objective(text: str):
    """The IR of `minimize TEXT` in a fixed context."""
    return check_source(HEADER + f"minimize {text}\n", "p.opt").expr


@pytest.mark.parametrize("text, printed", [
    ("sum(x) - (s - t)", "sum(x) - (s - t)"),
    ("sum(x) - s - t", "sum(x) - s - t"),
    ("s * (t * sum(x))", "s * t * sum(x)"),
    ("s / (t * sum(x))", "s / (t * sum(x))"),
    ("(s + t) * sum(x)", "(s + t) * sum(x)"),
    ("-(s + t) * sum(x)", "-((s + t) * sum(x))"),
    ("sum(-x ^ 2)", "sum(-square(x))"),
    ("(-s) ^ t + sum(x)", "(-s)^t + sum(x)"),
    ("s ^ (-t) + sum(x)", "s^-t + sum(x)"),
    ("s ^ t ^ 2 + sum(x)", "s^square(t) + sum(x)"),
    ("s ^ t ^ 3 + sum(x)", "s^t^3 + sum(x)"),
    ("(s ^ t) ^ 2 + sum(x)", "square(s^t) + sum(x)"),
    ("sumsq(A @ x - b)", "sum(square(A @ x - b))"),
    ("c' @ x", "c @ x"),
    ("sum(A' @ (A @ x))", "sum(A' @ (A @ x))"),
    ("sum((A @ x)' @ A)", "sum(A @ x @ A)"),
    ("sum(x * 1e-3) + 2.5e10 * s", "sum(0.001 * x) + 25000000000 * s"),
    ("logsumexp(x) + sum(exp(x), axis=0)", "logsumexp(x) + sum(exp(x), axis=0)"),
])
def test_infix(text, printed):
    assert format_expr(objective(text)) == printed


@pytest.mark.parametrize("text", [
    "sum(x) - (s - t)", "s / (t * sum(x))", "-(s + t) * sum(x)", "(-s) ^ t + sum(x)", "s ^ (-t) + sum(x)",
    "s ^ t ^ 3 + sum(x)", "sum(A' @ (A @ x)) / s - t", "mean(softplus(A @ x) - b * (A @ x)) + s * sumsq(x)",
])
def test_printed_text_reads_back_to_the_same_ir(text):
    """Printing is a fixed point of print -> parse -> build for surface-language expressions."""
    once = objective(text)
    assert objective(format_expr(once)) == once


def test_numbers():
    assert [format_number(v) for v in (2.0, 0.5, -3.0, 1e-6, 1e20, 2.5e-10)] == \
        ["2", "0.5", "-3", "1e-6", "1e20", "2.5e-10"]


def test_direction_names_avoid_declared_names():
    cond = run("problem p\nparam v, u\nvar x\nroot x - v - u\n", "p.opt").functions.conditions
    assert direction_names(cond) == {"tangent": "v_", "cotangent": "u_"}


def test_direction_names_of_several_blocks():
    src = ("problem p\ndim n\nparam c[n]\nvar x[n], y\nminimize sumsq(x - c) + y^2\nsubject to\n"
           "  budget: sum(x) == y\n  x >= 0\n")
    cond = run(src, "p.opt").functions.conditions
    assert direction_names(cond) == {
        ("dual", "budget"): "budget", ("dual", "1"): "lam1",
        ("tangent", "x"): "v_x", ("cotangent", "x"): "u_x", ("tangent", "y"): "v_y", ("cotangent", "y"): "u_y",
        ("tangent", "budget"): "v_budget", ("cotangent", "budget"): "u_budget", ("tangent", "1"): "v_lam1",
        ("cotangent", "1"): "u_lam1"}


def test_shared_nodes_counts_uses():
    e = objective("exp(t * s) * exp(t * s) + exp(s) * sum(x) + sum(x)")
    shared = {format_expr(n) for n in shared_nodes([e])}
    assert shared == {"exp(t * s)", "sum(x)"}
    assert Input("var", "x", ("n",)) not in shared_nodes([objective("sum(x * x)")])


@pytest.mark.parametrize("example", EXAMPLES)
def test_temporaries_are_named_as_in_the_plan(example):
    """The report's `tK` is the Plan's `tK`: the same op, of the same shape."""
    stages = run((ROOT / example).read_text(), example)
    assert isinstance(stages.plan, Plan)
    for spec in stages.functions.functions:
        lowered = stages.plan.function(spec.name)
        names = ssa_names(spec, lowered)
        ops = {op.out: op for op in lowered.ops}
        assert len(names) == len(ops)
        for node, name in names.items():
            assert ops[name].shape == tuple(node.shape)


def test_conditions_report_for_a_maximize_and_a_fixed_point():
    concave = run("problem c\nparam a\nvar x\nmaximize -square(x - a)\n", "c.opt")
    assert "class: smooth, unconstrained minimization (written as maximize f: minimizes -f)" in \
        print_conditions(concave)
    fixed = run("problem f\ndim d\nparam W[d, d], b[d]\nvar z[d]\nfixed_point z = tanh(W @ z + b)\n", "f.opt")
    text = print_conditions(fixed)
    assert "class: fixed point (solved as the root of z - g(z))" in text
    assert "  F = z - tanh(W @ z + b)" in text


def test_ir_shows_constraints_normalized_and_classified():
    text = print_problem(check_source(
        "problem q\ndim n\nparam lo[n], G[n, n], h[n]\nvar x[n]\nminimize sumsq(x)\nsubject to\n"
        "  x >= lo\n  lim: G @ x <= h\n  sum(x) == 1\n  sum(exp(x)) <= 2\n"
        "options\n  tol = 1e-8\n  solver = \"newton\"\n", "q.opt"))
    assert "subject to  (normalized: g <= 0, h == 0)" in text
    assert "lo - x <= 0" in text and "bound (x >= lo)" in text
    assert "lim:  G @ x - h <= 0" in text and "linear_ineq" in text
    assert "sum(x) - 1 == 0" in text and "linear_eq" in text
    assert "sum(exp(x)) - 2 <= 0" in text and "other" in text
    assert 'solver  =  "newton"' in text and "tol     =  1e-8" in text


def test_no_params_prints():
    stages = run("problem p\nvar x\nroot x - 1\n", "p.opt")
    assert "params (none)" in print_problem(stages.problem)
    assert ("vjp_theta(x: scalar, u: scalar)\n"
            "  # the transposed Jacobian of the residual in each param, applied to u\n"
            "  (no outputs)\n") in print_conditions(stages)


def test_deep_expressions_print_without_recursion():
    """A sum of thousands of terms prints at the default recursion limit (no node is hashed)."""
    x = Input("var", "x", ("n",))
    e = x
    for i in range(5000):
        e = Elementwise("add", (e, Elementwise("mul", (Const(float(i)), x), ("n",))), ("n",))
    text = format_expr(e)
    assert text.startswith("x + 0 * x + 1 * x + ") and text.endswith(" + 4999 * x")
    assert format_expr(e, limit=20) == "x + 0 * x + 1 * x + ..."
    subexpressions = tensor_subexpressions(e)
    assert subexpressions[0] == ("0 * x", ("n",)) and all(len(t) <= 100 for t, _ in subexpressions)
    assert len(split_terms(e)) == 5001


@pytest.mark.parametrize("a_batch, v_batch", [((), ()), ((), (4,)), ((3,), (3,)), ((2, 3), (2, 3)),
                                              ((3,), (5, 3)), ((3, 1), (3, 4)), ((1,), (4,)), ((2, 3, 1), (2, 3, 5))])
def test_generated_products_agree_with_einsum_on_every_batch_layout(a_batch, v_batch):
    """support.matvec/vecmat/matmat take matmul or einsum by the operands' batch dims: every layout
    the generated code meets (shared matrix, same batch, a Jacobian's extra direction dim) gives
    einsum's product."""
    import torch

    from optlang.backends.torch.support import matmat, matvec, vecmat

    g = torch.Generator().manual_seed(0)
    A = torch.randn(a_batch + (4, 3), generator=g, dtype=torch.float64)
    x = torch.randn(v_batch + (3,), generator=g, dtype=torch.float64)
    u = torch.randn(v_batch + (4,), generator=g, dtype=torch.float64)
    B = torch.randn(v_batch + (3, 2), generator=g, dtype=torch.float64)
    assert torch.allclose(matvec(A, x), torch.einsum("...ij,...j->...i", A, x), rtol=1e-14)
    assert torch.allclose(vecmat(u, A), torch.einsum("...i,...ij->...j", u, A), rtol=1e-14)
    assert torch.allclose(matmat(A, B), torch.einsum("...ij,...jk->...ik", A, B), rtol=1e-14)
    assert torch.allclose(matmat(A, B[(0,) * len(v_batch)]), torch.einsum("...ij,jk->...ik", A, B[(0,) * len(v_batch)]),
                          rtol=1e-14)
