"""Recognize structure the solvers exploit: prox terms of the objective, known sets, curvature.

Pure functions over IR expressions, used by `classify`:
  terms, as_prox_term      f = smooth part + sum of c * norm(var) terms (c >= 0, param-only)
  simplex_sum, ball_radius a constraint that is part of a simplex or a ball on one var
  sign_of, param_signs     signs of param-only expressions, from the params' declared domains
  curvature                "const" | "affine" | "convex" | "concave" | "unknown" (DCP-style rules)
"""
from __future__ import annotations

from dataclasses import dataclass

from optlang.ir import algebra as A
from optlang.ir.nodes import (Broadcast, Const, DimSize, Elementwise, ExpandDims, Fill, Input, MatMul, Reduce, SumTo, Transpose,
                              children)
from optlang.ir.walk import inputs_of, postorder

PROX_NORMS = ("norm1", "norm2")


@dataclass(frozen=True)
class ProxTerm:
    """`coef * op(var)` in the objective: a nonsmooth term with a known proximal operator."""

    var: str
    op: str  # "norm1" | "norm2"
    coef: object  # a param-only, nonnegative scalar expression
    span: object = None


def has_var(e) -> bool:
    return any(i.role == "var" for i in inputs_of(e))


def terms(e, sign: float = 1.0):
    """The additive terms of `e` as (sign, term) pairs."""
    if isinstance(e, Elementwise) and e.op in ("add", "sub"):
        a, b = e.args
        return terms(a, sign) + terms(b, -sign if e.op == "sub" else sign)
    if isinstance(e, Elementwise) and e.op == "negate":
        return terms(e.args[0], -sign)
    if isinstance(e, Broadcast):
        return terms(e.a, sign)
    return [(sign, e)]


def factors(e):
    """The multiplicative factors of `e` (divisions give reciprocal factors)."""
    if isinstance(e, Elementwise) and e.op == "mul":
        return factors(e.args[0]) + factors(e.args[1])
    if isinstance(e, Elementwise) and e.op == "div" and not has_var(e.args[1]):
        return factors(e.args[0]) + [A.div(A.const(1.0), e.args[1])]
    return [e]


def as_prox_term(sign: float, term, signs: dict) -> ProxTerm | str:
    """A ProxTerm if `term` is c * norm(var), else a word for what is wrong with it."""
    parts = factors(term)
    norms = [f for f in parts if isinstance(f, Reduce) and f.op in PROX_NORMS and has_var(f)]
    if len(norms) != 1 or any(has_var(f) for f in parts if f is not norms[0]):
        return "nonsmooth"
    norm = norms[0]
    if not (isinstance(norm.a, Input) and norm.a.role == "var") or norm.axis is not None:
        return "argument"
    coef = A.const(sign)
    for f in parts:
        if f is not norm:
            coef = A.mul(coef, f)
    if coef.shape != () or sign_of(coef, signs) not in ("nonneg", "pos"):
        return "coefficient"
    return ProxTerm(norm.a.name, norm.op, coef, getattr(norm, "span", None))


def sign_of(e, signs: dict) -> str:
    """"pos" | "nonneg" | "unknown" for a param-only expression; `signs` maps params to their domain's sign."""
    if isinstance(e, Const):
        return "pos" if e.value > 0 else "nonneg" if e.value == 0 else "unknown"
    if isinstance(e, Input) and e.role == "param":
        return signs.get(e.name, "unknown")
    if isinstance(e, DimSize):  # a size: mean(x) is sum(x) / n
        return "pos"
    if isinstance(e, Elementwise):
        inner = [sign_of(a, signs) for a in e.args]
        if e.op in ("exp", "sigmoid", "softplus"):
            return "pos"
        if e.op in ("square", "abs", "relu"):
            return "nonneg"
        if e.op in ("mul", "div", "add", "sqrt") and "unknown" not in inner:
            return "pos" if all(s == "pos" for s in inner) else "nonneg"
    if isinstance(e, Broadcast):
        return sign_of(e.a, signs)
    return "unknown"


def param_signs(problem) -> dict:
    """{param name: "pos" | "nonneg"} for params whose declared domain fixes their sign, and
    {("psd", name): True} for params declared psd (what `curvature` needs of quadratic forms)."""
    out = {}
    for p in problem.params:
        dom = p.domain
        if dom.lo is not None and dom.lo >= 0:
            out[p.name] = "pos" if dom.lo > 0 or not dom.lo_closed else "nonneg"
        if dom.psd:
            out[("psd", p.name)] = True
    return out


# ---- known sets ------------------------------------------------------------------------

def simplex_sum(con, var) -> tuple | None:
    """(axis, total) if `con` is `sum(var[, axis=k]) == total` with total param-only, else None."""
    if con.kind != "eq" or not isinstance(con.expr, Elementwise) or con.expr.op != "sub":
        return None
    lhs, rhs = con.expr.args
    if isinstance(lhs, Broadcast):
        lhs = lhs.a
    if not (isinstance(lhs, Reduce) and lhs.op == "sum" and isinstance(lhs.a, Input) and lhs.a.name == var.name):
        return None
    if has_var(rhs) or (lhs.axis is None and rhs.shape != ()):
        return None
    if lhs.axis is not None and len(var.shape) != 2:
        return None
    return lhs.axis, rhs


def ball_radius(con, var):
    """r if `con` is `norm2(var) <= r` with r param-only, else None."""
    if con.kind != "ineq" or not isinstance(con.expr, Elementwise) or con.expr.op != "sub":
        return None
    lhs, rhs = con.expr.args
    if isinstance(lhs, Reduce) and lhs.op == "norm2" and lhs.axis is None and isinstance(lhs.a, Input) \
            and lhs.a.name == var.name and not has_var(rhs) and rhs.shape == ():
        return rhs
    return None


def is_zero_bound(e) -> bool:
    return isinstance(e, (Const, Fill)) and e.value == 0.0 or isinstance(e, Broadcast) and is_zero_bound(e.a)


# ---- curvature ---------------------------------------------------------------------------

CONVEX_INCREASING = {"exp", "softplus", "relu", "relu2"}
CONCAVE_INCREASING = {"log", "sqrt"}
CONVEX_REDUCTIONS = {"norm1", "norm2", "norminf", "max", "logsumexp"}


def curvature(e, signs: dict) -> str:
    """The curvature of `e` in the vars by composition rules; "unknown" when they do not decide.

    One pass over the DAG in post-order (a `let` used twice is one node, visited once: a recursive
    walk of the tree would be exponential in a chain of such lets)."""
    memo: dict = {}
    for node in postorder(e):
        memo[node] = _curvature_of(node, [memo[k] for k in children(node)], signs, memo)
    return memo[e]


def _curvature_of(e, cs: list, signs: dict, memo: dict) -> str:
    if isinstance(e, Input):
        return "affine" if e.role == "var" else "const"
    if all(c == "const" for c in cs):
        return "const"
    if isinstance(e, (Broadcast, Transpose, SumTo, ExpandDims)):
        return cs[0]
    if isinstance(e, MatMul):
        if cs[0] == "const":
            return cs[1] if cs[1] in ("const", "affine") else "unknown"
        if cs[1] == "const":
            return cs[0] if cs[0] in ("const", "affine") else "unknown"
        return "unknown"
    if isinstance(e, Reduce):
        if e.op == "sum":
            return "convex" if _psd_quadratic_form(e.a, signs, memo) else cs[0]
        if e.op in CONVEX_REDUCTIONS:
            return "convex" if cs[0] in ("affine", "const") or (cs[0] == "convex" and e.op in ("max", "logsumexp")) \
                else "unknown"
        if e.op == "min":
            return "concave" if cs[0] in ("affine", "concave") else "unknown"
        return "unknown"
    if isinstance(e, Elementwise):
        return _elementwise_curvature(e, cs, signs, memo)
    return "unknown"


def _psd_quadratic_form(e, signs: dict, memo: dict) -> bool:
    """e = a * (Q @ a) (either order), a affine in the vars, Q a param declared psd: sum(e) = a' Q a."""
    if not (isinstance(e, Elementwise) and e.op == "mul"):
        return False
    for a, product in (e.args, e.args[::-1]):
        Q = product.a if isinstance(product, MatMul) else None
        Q = Q.a if isinstance(Q, Broadcast) else Q
        if (isinstance(Q, Input) and Q.role == "param" and signs.get(("psd", Q.name)) and product.b == a
                and memo[a] == "affine"):
            return True
    return False


def _is_entropy(e, memo: dict) -> bool:
    """e = a * log(a) (either order), a affine in the vars: convex where it is defined (a > 0)."""
    return (e.op == "mul" and any(isinstance(l, Elementwise) and l.op == "log" and l.args[0] == a
                                  and memo[a] == "affine" for a, l in (e.args, e.args[::-1])))


def _elementwise_curvature(e, cs, signs, memo) -> str:
    op = e.op
    if _is_entropy(e, memo):
        return "convex"
    if op == "add":
        return _combine(cs)
    if op == "sub":
        return _combine([cs[0], _flip(cs[1])])
    if op == "negate":
        return _flip(cs[0])
    if op in ("mul", "div"):
        const_side = 1 if op == "div" or cs[1] == "const" else 0 if cs[0] == "const" else None
        if const_side is None or (op == "div" and cs[1] != "const"):
            return "unknown"
        other = cs[1 - const_side] if op == "mul" else cs[0]
        if other in ("affine", "const"):
            return other
        factor = e.args[const_side]
        if isinstance(factor, Const):
            return other if factor.value >= 0 else _flip(other)
        return other if sign_of(factor, signs) in ("pos", "nonneg") else "unknown"
    if op in ("square", "abs"):
        return "convex" if cs[0] in ("affine", "const") else "unknown"
    if op == "pow" and isinstance(e.args[1], Const) and cs[1] == "const":
        p = e.args[1].value
        if p == 1:
            return cs[0]
        if p >= 1 and float(p).is_integer() and int(p) % 2 == 0 and cs[0] == "affine":
            return "convex"
        return "unknown"
    if op in CONVEX_INCREASING:
        return "convex" if cs[0] in ("affine", "convex", "const") else "unknown"
    if op in CONCAVE_INCREASING:
        return "concave" if cs[0] in ("affine", "concave", "const") else "unknown"
    if op == "maximum":
        return "convex" if all(c in ("affine", "convex", "const") for c in cs) else "unknown"
    if op == "minimum":
        return "concave" if all(c in ("affine", "concave", "const") for c in cs) else "unknown"
    return "unknown"


def _flip(c: str) -> str:
    return {"convex": "concave", "concave": "convex"}.get(c, c)


def _combine(cs) -> str:
    kinds = {c for c in cs if c != "const"}
    if not kinds:
        return "const"
    if kinds <= {"affine"}:
        return "affine"
    if kinds <= {"affine", "convex"}:
        return "convex"
    if kinds <= {"affine", "concave"}:
        return "concave"
    return "unknown"
