"""The symbolic derivatives, checked numerically against PyTorch autograd at random points.

Random smooth objectives are drawn from the primitives; optlang derives their
gradient, Hessian-vector product and VJPs symbolically. The generated
`objective` is plain PyTorch, so autograd of it is an independent reference.
(SymPy-derived rules can go silently wrong, e.g. to 0: STYLE.md asks for this.)
"""
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

import optlang
from optlang.ir import algebra as A
from optlang.ir.nodes import Input
from optlang.ir.primitives import ELEMENTWISE, sympy_partials
from optlang.runtime.executor import TorchExecutor

HEADER = """problem sym
dim n, m
param X[m, n], c[n], s > 0, Q[n, n]
var x[n]
"""


def vec(depth):
    """Strategy for expression text of shape [n]."""
    leaves = st.sampled_from(["x", "c", "2 * x", "x - c", "s * x"])
    if depth == 0:
        return leaves
    sub = vec(depth - 1)
    unary = st.tuples(st.sampled_from(["exp(0.3 * {})", "sin({})", "cos({})", "tanh({})", "sigmoid({})",
                                       "softplus({})", "square({})", "log(1 + square({}))",
                                       "sqrt(1 + square({}))", "({}) ^ 3", "1 / (1 + square({}))",
                                       "transpose(X) @ (X @ ({}))", "Q @ ({})", "-({})",
                                       "sum(X * ({}), axis=0)"]), sub).map(lambda t: t[0].format(t[1]))
    binary = st.tuples(st.sampled_from(["({}) + ({})", "({}) * ({})", "({}) - ({})",
                                        "maximum({}, 0) * 0 + ({})"]), sub, sub).map(
        lambda t: t[0].format(t[1], t[2]) if "maximum" not in t[0] else t[2])
    return st.one_of(leaves, unary, binary)


def scalar(depth):
    v = vec(depth)
    return st.one_of(
        v.map(lambda e: f"sumsq({e})"),
        v.map(lambda e: f"logsumexp({e})"),
        v.map(lambda e: f"mean({e})"),
        st.tuples(v, v).map(lambda t: f"dot({t[0]}, {t[1]})"),
        v.map(lambda e: f"quad({e}, Q)"),
        v.map(lambda e: f"sum(exp(0.2 * ({e})))"),
        v.map(lambda e: f"s * sqrt(sumsq({e}) + 1)"),
    )


def _data(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n, m = 3, 4
    return {
        "X": torch.randn(2, m, n, generator=g, dtype=dtype) * 0.5,
        "c": torch.randn(2, n, generator=g, dtype=dtype) * 0.5,
        "s": torch.rand(2, generator=g, dtype=dtype) + 0.5,
        "Q": torch.randn(n, n, generator=g, dtype=dtype) * 0.5,
    }, torch.randn(2, n, generator=g, dtype=dtype) * 0.5, {"n": n, "m": m}


def _functions(objective_text):
    layer = optlang.compile_string(HEADER + "minimize " + objective_text + "\n", "sym.opt", backend="torch")
    return layer.plan, TorchExecutor().module_for(layer.plan)


@given(expr=st.tuples(scalar(2), scalar(1)).map(lambda t: f"{t[0]} + 0.5 * ({t[1]}) + 0.1 * sumsq(x)"),
       seed=st.integers(0, 10**6))
def test_gradient_hvp_and_vjps_match_autograd(expr, seed):
    plan, mod = _functions(expr)
    params, x, dims = _data(seed)
    like = x
    x = x.clone().requires_grad_(True)
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    args = (x, p["X"], p["c"], p["s"], p["Q"])
    f = mod.objective(*args, dims=dims, like=like)
    (g_ref,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    g = mod.gradient(*args, dims=dims, like=like)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)
    v = torch.randn_like(x)
    (hv_ref,) = torch.autograd.grad((g_ref * v).sum(), x, retain_graph=True)
    torch.testing.assert_close(mod.hvp(*args, v, dims=dims, like=like), hv_ref, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(mod.jvp_x(*args, v, dims=dims, like=like), hv_ref, rtol=1e-8, atol=1e-9)
    u = torch.randn_like(x)
    F = mod.residual(*args, dims=dims, like=like)
    refs = torch.autograd.grad((F * u).sum(), [x, p["X"], p["c"], p["s"], p["Q"]], allow_unused=True)
    torch.testing.assert_close(mod.vjp_x(*args, u, dims=dims, like=like), refs[0], rtol=1e-8, atol=1e-9)
    outs = mod.vjp_theta(*args, u, dims=dims, like=like)
    for name, out, ref in zip(["X", "c", "s", "Q"], outs, refs[1:]):
        ref = torch.zeros_like(p[name]) if ref is None else ref
        # A param without batch dims (Q) gets per-element VJPs; autograd sums them.
        out = out.expand(x.shape[:1] + out.shape[out.dim() - (ref.dim() - (0 if name == "Q" else 1)):])
        out = out.sum_to_size(ref.shape)
        torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-9, msg=f"vjp wrt {name} of {expr}")


def test_hand_rules_agree_with_sympy():
    """Where a primitive carries a hand derivative rule, it equals SymPy's derivative numerically."""
    values = [-2.3, -0.7, 0.4, 1.9]
    for name, prim in ELEMENTWISE.items():
        if prim.rule is None or not prim.smooth:
            continue
        syms, parts = sympy_partials(name)
        args = tuple(Input("var", f"a{i}", ()) for i in range(prim.arity))
        node = A.ew(name, *args)
        hand = A.partials(node)
        for point in values:
            env = {f"a{i}": abs(point) + 0.5 * i + 0.1 if name == "pow" else point + 0.3 * i
                   for i in range(prim.arity)}
            for sym, sym_part, hand_part in zip(syms, parts, hand):
                want = float(sym_part.subs({s: env[str(s)] for s in syms}))
                got = _eval_scalar(hand_part, env)
                assert abs(got - want) <= 1e-10 * max(1.0, abs(want)), (name, sym, point, got, want)


def _eval_scalar(expr, env):
    """Evaluate a scalar IR expression by translating it to SymPy."""
    from optlang.ir.nodes import Const, Elementwise
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Input):
        return env[expr.name]
    assert isinstance(expr, Elementwise)
    args = [sp.Float(_eval_scalar(a, env)) for a in expr.args]
    return float(ELEMENTWISE[expr.op].sympy_def(*args))


def test_equal_terms_cancel_and_a_negated_term_is_one_op():
    """ir.algebra folds the cancellations derivatives produce (x - (x - v) is v: the proximal-gradient
    point of 0.5 |x - v|^2; v + -v is 0), structurally equal terms only, keeping the result's shape."""
    x, v, c = (Input(role, name, ("n",)) for role, name in (("var", "x"), ("param", "v"), ("param", "c")))
    s = Input("param", "s", ())
    assert A.sub(x, A.sub(x, v)) == v
    assert A.is_zero(A.add(x, A.neg(x))) and A.is_zero(A.add(A.neg(x), x)) and A.is_zero(A.sub(x, x))
    assert A.add(A.sub(c, v), v) == c and A.add(v, A.sub(c, v)) == c
    assert A.sub(A.add(c, v), v) == c and A.sub(A.add(v, c), v) == c
    assert A.sub(A.sub(v, c), v) == A.neg(c)
    assert A.add(x, A.neg(v)) == A.sub(x, v) and A.add(A.neg(v), x) == A.sub(x, v)
    assert A.sub(x, A.neg(v)) == A.add(x, v)
    assert A.sub(x, A.sub(x, s)).shape == ("n",)  # the scalar comes back broadcast to x's shape
    assert A.sub(x, x).shape == ("n",)
    assert A.sub(x, A.sub(v, x)) != v  # x - (v - x) = 2x - v: not a cancellation
    assert A.sub(A.mul(A.const(2.0), x), x) != x  # only structurally equal terms cancel


def test_a_step_of_a_difference_is_a_comparison_and_small_factors_multiply_first():
    """step(a - b) is written gt(a, b) (one op, equal in IEEE arithmetic, NaN included), and (y / s) t,
    (y s) t with s, t broadcast along y's rows as y (t / s), y (s t): one full-size op instead of two
    (sparsemax's backward). A full-size or constant factor keeps the usual form."""
    y, w = (Input("var", name, ("n", "m")) for name in ("y", "w"))
    s, t = (Input("param", name, ("n", 1)) for name in ("s", "t"))
    assert A.ew("step", A.sub(y, w)) == A.ew("gt", y, w)
    assert A.mul(A.div(y, s), t) == A.mul(y, A.div(t, s)) and A.mul(t, A.div(y, s)) == A.mul(y, A.div(t, s))
    assert A.mul(A.mul(y, s), t) == A.mul(y, A.mul(s, t)) and A.mul(A.mul(s, y), t) == A.mul(y, A.mul(s, t))
    for kept in (A.mul(A.div(y, s), w), A.mul(A.div(y, w), t)):  # full-size factors: as written
        assert kept.op == "mul" and kept.args[0].op == "div"
    assert A.mul(A.div(y, s), A.const(2.0)).args[0] == A.const(2.0)  # a constant goes to the front
    values = torch.tensor([-1.0, 0.0, 1.0, float("inf"), float("nan"), 5e-324])
    a, b = torch.meshgrid(values, values, indexing="ij")
    torch.testing.assert_close(((a - b) > 0).double(), (a > b).double(), rtol=0, atol=0)
