"""One entry per primitive: arity, smoothness, meaning in SymPy, derivative rule.

Elementwise derivative rules come from SymPy: `sympy.diff` of the primitive's
definition, translated back into IR. Where SymPy's form is numerically poor
(it writes sigmoid' as exp(-u)/(1+exp(-u))^2, which is nan for large u) the
entry carries a hand rule instead, and tests check the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from optlang.ir.lazy_sympy import sp


@dataclass(frozen=True)
class Elementwise:
    """An elementwise primitive."""

    name: str
    arity: int
    smooth: bool
    sympy_def: Callable  # SymPy args -> SymPy expression (the meaning)
    # Optional hand rule: (args, out) -> partials, built with `optlang.ir.algebra`.
    rule: Callable | None = None


def _heaviside(u):
    return sp.Heaviside(u, 1)


ELEMENTWISE: dict[str, Elementwise] = {}


def _add(name, arity, smooth, sympy_def, rule=None):
    ELEMENTWISE[name] = Elementwise(name, arity, smooth, sympy_def, rule)


def _sigmoid_rule(args, out):
    from optlang.ir import algebra as A
    return (A.mul(out, A.sub(A.const(1.0), out)),)


def _softplus_rule(args, out):
    from optlang.ir import algebra as A
    return (A.ew("sigmoid", args[0]),)


def _abs_rule(args, out):
    from optlang.ir import algebra as A
    return (A.ew("sign", args[0]),)


def _relu_rule(args, out):
    from optlang.ir import algebra as A
    return (A.ew("step", args[0]),)


def _relu2_rule(args, out):
    from optlang.ir import algebra as A
    return (A.mul(A.const(2.0), A.ew("relu", args[0])),)


def _maximum_rule(args, out):
    from optlang.ir import algebra as A
    first = A.ew("ge", args[0], args[1])  # ties go to the first argument
    return (first, A.sub(A.const(1.0), first))


def _minimum_rule(args, out):
    from optlang.ir import algebra as A
    first = A.ew("le", args[0], args[1])
    return (first, A.sub(A.const(1.0), first))


def _pow_rule(args, out):
    from optlang.ir import algebra as A
    # b * a^(b-1), not SymPy's b * a^b / a, which is 0/0 at a = 0.
    base, exponent = args
    d_base = A.mul(exponent, A.ew("pow", base, A.sub(exponent, A.const(1.0))))
    return (d_base, A.mul(out, A.ew("log", base)))


def _zero_rule(args, out):
    from optlang.ir import algebra as A
    return tuple(A.zeros(out.shape) for _ in args)


_add("negate", 1, True, lambda u: -u)
_add("exp", 1, True, lambda u: sp.exp(u))
_add("log", 1, True, lambda u: sp.log(u))
_add("sqrt", 1, True, lambda u: sp.sqrt(u))
_add("sin", 1, True, lambda u: sp.sin(u))
_add("cos", 1, True, lambda u: sp.cos(u))
_add("tanh", 1, True, lambda u: sp.tanh(u))
_add("square", 1, True, lambda u: u**2)
_add("sigmoid", 1, True, lambda u: 1 / (1 + sp.exp(-u)), _sigmoid_rule)
_add("softplus", 1, True, lambda u: sp.log(1 + sp.exp(u)), _softplus_rule)
_add("abs", 1, False, lambda u: sp.Abs(u), _abs_rule)
_add("relu", 1, False, lambda u: sp.Max(u, 0), _relu_rule)
# square(relu(u)), which `algebra.ew` writes for square(pos(u)) and pos(u)^2: continuously
# differentiable, so it is smooth for the solvers and the implicit function theorem (its second
# derivative jumps where u = 0: a soft-sphere pair exactly at contact).
_add("relu2", 1, True, lambda u: sp.Max(u, 0)**2, _relu2_rule)
_add("sign", 1, False, lambda u: sp.sign(u), _zero_rule)
_add("step", 1, False, _heaviside, _zero_rule)  # 1.0 where u > 0, else 0.0
_add("add", 2, True, lambda a, b: a + b)
_add("sub", 2, True, lambda a, b: a - b)
_add("mul", 2, True, lambda a, b: a * b)
_add("div", 2, True, lambda a, b: a / b)
_add("pow", 2, True, lambda a, b: a**b, _pow_rule)
_add("maximum", 2, False, lambda a, b: sp.Max(a, b), _maximum_rule)
_add("minimum", 2, False, lambda a, b: sp.Min(a, b), _minimum_rule)
_add("ge", 2, False, lambda a, b: sp.Piecewise((1, a >= b), (0, True)), _zero_rule)  # 1.0 where a >= b
_add("le", 2, False, lambda a, b: sp.Piecewise((1, a <= b), (0, True)), _zero_rule)  # 1.0 where a <= b
_add("gt", 2, False, lambda a, b: sp.Piecewise((1, a > b), (0, True)), _zero_rule)  # 1.0 where a > b: step(a - b)

# Reductions: name -> smooth. Their derivative rules live in passes/derivatives.
REDUCTIONS = {
    "sum": True,
    "logsumexp": True,
    "max": False,
    "min": False,
    "norm1": False,
    "norm2": False,
    "norminf": False,
    # Internal: tau with sum(relu(x - tau)) == 1 along the axis (the simplex projection's threshold).
    "simplex_tau": False,
}

# Functions of the surface language that map to one elementwise primitive.
SURFACE_ELEMENTWISE = {
    "exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "abs", "sin": "sin",
    "cos": "cos", "tanh": "tanh", "sigmoid": "sigmoid", "softplus": "softplus",
    "relu": "relu", "square": "square", "pos": "relu", "maximum": "maximum",
    "minimum": "minimum",
}

# Functions that are nonsmooth in v1's sense (LANGUAGE.md "Meaning").
NONSMOOTH_SURFACE = frozenset(
    {"norm1", "norm2", "norminf", "abs", "max", "min", "relu", "maximum", "minimum", "clip", "pos", "neg"}
)


@lru_cache(maxsize=None)
def sympy_partials(name: str) -> tuple:
    """SymPy's partial derivatives of a primitive, as (symbols, partial expressions)."""
    prim = ELEMENTWISE[name]
    syms = sp.symbols(" ".join(f"a{i}" for i in range(prim.arity)), real=True)
    syms = syms if isinstance(syms, tuple) else (syms,)
    expr = prim.sympy_def(*syms)
    return syms, tuple(sp.diff(expr, s) for s in syms)
