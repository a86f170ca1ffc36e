"""Pass `classify`: decide the problem class, or reject what v1 cannot solve.

Assumes a normalized `Problem`. Guarantees a `Classified` whose `kind` is
  "smooth"  a smooth objective, no constraints;
  "prox"    a smooth part plus, per var, a known set (box with param-only
            bounds, simplex, ball) and/or a prox term c * norm1|norm2(var);
  "kkt"     general constraints: affine equalities, convex smooth inequalities
            (also known sets whose duals are asked for by a label);
  "root"    a square system (fixed points arrive as roots).
Anything else raises `NotSupportedError` at its line and column, saying what
is supported and how to rewrite it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from optlang.errors import NotSupportedError
from optlang.ir import algebra as A
from optlang.ir.nodes import Elementwise, Input, Problem, Reduce, children
from optlang.ir.primitives import ELEMENTWISE, REDUCTIONS
from optlang.passes.structure import (ProxTerm, as_prox_term, ball_radius, curvature, is_zero_bound, param_signs,
                                      sign_of, simplex_sum, terms)


@dataclass(frozen=True)
class VarSet:
    """What restricts one var in the prox class: a box, a simplex or a ball, and/or a prox term."""

    var: str
    lower: object = None
    upper: object = None
    simplex: tuple | None = None  # (axis, total): x >= 0, sum(x, axis) == total
    radius: object = None  # norm2(x) <= radius
    term: ProxTerm | None = None

    @property
    def projection(self) -> bool:
        """True when the prox's Jacobian is an orthogonal projection (0/1 diagonal, or on a simplex
        the projection onto {support, sum = 0}): the CG on the free set applies (`backward._cg_prox`)."""
        alone_on_simplex = (self.simplex is not None and self.lower is None and self.upper is None
                            and self.radius is None and self.term is None)
        return self.diagonal or alone_on_simplex

    @property
    def diagonal(self) -> bool:
        """True when the prox's Jacobian is diagonal (boxes, norm1): masked CG applies."""
        return self.simplex is None and self.radius is None and (self.term is None or self.term.op == "norm1")


@dataclass(frozen=True)
class Classified:
    """A problem and its class.

    kind: "smooth" (unconstrained, smooth f), "prox" (smooth part + per-var sets
    and prox terms, solved by proximal gradient), "kkt" (general constraints),
    "root". `smooth` is the objective without its prox terms; `sets` has one
    VarSet per var (prox kind); `why` says how the class was decided.
    """

    problem: Problem
    kind: str
    smooth: object = None
    sets: tuple = ()
    why: str = ""
    local: bool = False  # a smooth objective not provably convex: its solutions are local


def classify(problem: Problem) -> Classified:
    """Tag the problem's class; reject what v1 cannot solve, at its line."""
    where = "fixed_point" if problem.sense == "fixed_point" else "root" if problem.statement == "root" else "objective"
    if problem.statement == "root":
        _reject_nonsmooth(problem.expr, problem.statement_span, where)
        return Classified(problem, "root", why="an equation: its residual is the condition")
    signs = param_signs(problem)
    smooth, prox_terms = _split_objective(problem, signs)
    shape = curvature(smooth, signs)
    if not problem.constraints and not prox_terms:
        if shape in ("const", "affine", "convex"):
            return Classified(problem, "smooth", smooth, why="smooth objective, no constraints")
        return Classified(problem, "smooth", smooth, local=True, why=(
            "smooth objective, no constraints; not provably convex, so the solution is a local one: a "
            "stationary point (gradient 0) that Newton's line search reached from the initial point"))
    _check_convex_objective(problem, shape)
    sets, why_not = _known_sets(problem, prox_terms, signs)
    if sets is not None:
        return Classified(problem, "prox", smooth, sets, why="every constraint and nonsmooth term has a known "
                          "projection or proximal operator")
    if prox_terms:
        term = prox_terms[0]
        raise NotSupportedError(
            f"the nonsmooth term {term.op}({term.var}) cannot be combined with these constraints",
            term.span or problem.statement_span,
            f"{why_not}; " + (
                f"for norm1 use an epigraph var instead: `var t[..]`, `-t <= {term.var} <= t`, and c * sum(t) in "
                "the objective (a linear program the KKT path solves)" if term.op == "norm1" else
                f"norm2 has a known prox only on a var with no constraint: bound it instead with "
                f"`sumsq({term.var}) <= s^2` for a param s, or drop the constraints"),
        )
    problem = replace(problem, constraints=tuple(_smooth_ball(con, problem, signs) for con in problem.constraints))
    for con in problem.constraints:
        _check_kkt_constraint(con, signs)
    return Classified(problem, "kkt", smooth, why=why_not)


def _check_convex_objective(problem, shape: str) -> None:
    """With constraints or prox terms the solvers need a convex objective (their stopping tests are
    optimality certificates only then): prove it by composition rules, or refuse at its line."""
    if shape in ("const", "affine", "convex"):
        return
    maximize = problem.sense == "maximize"
    found = ("convex" if maximize else "concave") if shape == "concave" else (
        "not provably " + ("concave" if maximize else "convex"))
    need = "maximize needs a concave objective" if maximize else "minimize needs a convex objective"
    raise NotSupportedError(
        f"the objective is {found}: with constraints or nonsmooth terms, {need}",
        problem.statement_span,
        "optlang proves convexity by composition rules: sums and nonnegative multiples of convex terms, affine "
        "expressions inside sumsq, square, exp, softplus, logsumexp, norms and quad(x, Q) with Q declared psd, "
        "x * log(x), and -log, -sqrt of affine ones; a nonconvex objective has local solutions the solvers "
        "cannot certify",
    )


def _smooth_ball(con, problem, signs: dict):
    """A ball norm2(x) <= r on the KKT path becomes sumsq(x) <= r^2 (smooth; equal for r >= 0).

    Where the ball is active, lam_written * x / r = lam_squared * 2 x, so the written
    constraint's dual is 2 r times the rewritten one's (both 0 where inactive).
    """
    var = next((v for v in problem.vars if ball_radius(con, v) is not None), None)
    if var is None:
        return con
    radius = ball_radius(con, var)
    _check_radius(radius, con, signs)
    if con.label is not None and sign_of(radius, signs) != "pos":
        raise NotSupportedError(
            "a labelled ball needs a positive radius",
            con.span,
            "at r = 0 the dual of norm2(x) <= r is not defined (it is 2r times the dual of sumsq(x) <= r^2, "
            "which optlang solves); declare the radius's params with `> 0`",
        )
    x = Input("var", var.name, var.shape)
    expr = A.sub(A.reduce("sum", A.ew("square", x)), A.ew("square", radius))
    return replace(con, expr=expr, cls="other", dual_scale=A.mul(A.const(2.0), radius))


def _check_radius(radius, con, signs: dict) -> None:
    if sign_of(radius, signs) not in ("pos", "nonneg"):
        raise NotSupportedError(
            "the radius of a ball must be provably nonnegative",
            con.span,
            "declare its params with `>= 0` or `> 0` (e.g. `param r > 0`); a negative radius leaves no point",
        )


def _split_objective(problem, signs: dict):
    """(the smooth part of f, its prox terms); raise at a nonsmooth term that has no known prox."""
    smooth, prox_terms = A.const(0.0), []
    for sign, term in terms(problem.expr):
        if _nonsmooth_at(term) is None:
            smooth = A.add(smooth, term) if sign > 0 else A.sub(smooth, term)
            continue
        found = as_prox_term(sign, term, signs)
        if isinstance(found, ProxTerm):
            if any(t.var == found.var for t in prox_terms):
                raise NotSupportedError(
                    f"a second nonsmooth term on the var '{found.var}'",
                    found.span or problem.statement_span,
                    "give each var at most one norm1 or norm2 term",
                )
            prox_terms.append(found)
            continue
        node, span = _nonsmooth_at(term)
        name = _written_name(span) or node.op
        hint = PROX_HINTS[found].format(name=name)
        if found == "coefficient" and problem.sense == "maximize" and sign < 0:
            hint = f"in a maximize a norm term is a penalty: subtract it (maximize g - c * {name}(x), c >= 0)"
        raise NotSupportedError(f"the nonsmooth function {name} is not supported here", span or problem.statement_span,
                                hint)
    return smooth, tuple(prox_terms)


PROX_HINTS = {
    "nonsmooth": "a nonsmooth function may appear only as a term c * norm1(var) or c * norm2(var) of the "
                 "objective (c a nonnegative scalar of params); write {name} as constraints instead, e.g. with "
                 "an epigraph var",
    "argument": "{name} has a known prox only applied to a var itself, as in lam * {name}(w); for {name} of an "
                "expression e use an epigraph var t: -t <= e <= t as constraints and c * sum(t) in the objective",
    "coefficient": "the coefficient of {name} must be a nonnegative scalar: a number, or params declared "
                   "with `>= 0` or `> 0` (e.g. `param lam >= 0`)",
}


def _known_sets(problem, prox_terms, signs: dict) -> tuple:
    """(one VarSet per var, None) if every constraint is a known set, else (None, why not)."""
    by_var = {v.name: VarSet(v.name) for v in problem.vars}
    for t in prox_terms:
        by_var[t.var] = replace(by_var[t.var], term=t)
    sums = {}
    for con in problem.constraints:
        if con.label is not None:
            return None, f"the constraint labelled '{con.label}' asks for its dual, which the KKT path returns"
        if con.cls == "bound":
            vs = by_var[con.var]
            which = "lower" if con.lower is not None else "upper"
            if getattr(vs, which) is not None:
                return None, f"the var '{con.var}' has two {which} bounds"
            by_var[con.var] = replace(vs, **{which: con.lower if which == "lower" else con.upper})
            continue
        var = next((v for v in problem.vars if simplex_sum(con, v) or ball_radius(con, v) is not None), None)
        if var is None:
            return None, f"the constraint on line {con.span.line if con.span else '?'} is not a bound, a simplex or a " \
                         "ball on one var"
        vs = by_var[var.name]
        radius = ball_radius(con, var)
        if radius is not None:
            _check_radius(radius, con, signs)
        if radius is not None and vs.radius is None:
            by_var[var.name] = replace(vs, radius=ball_radius(con, var))
        elif simplex_sum(con, var) and var.name not in sums:
            sums[var.name] = simplex_sum(con, var)
        else:
            return None, f"the var '{var.name}' has more than one set constraint"
    for name, (axis, total) in sums.items():
        vs = by_var[name]
        if vs.lower is None or not is_zero_bound(vs.lower) or vs.upper is not None:
            return None, f"sum({name}) == ... is a simplex only together with {name} >= 0 and no other bound"
        if sign_of(total, signs) != "pos":
            return None, f"the total of sum({name}) is not provably positive (declare its params `> 0`)"
        by_var[name] = replace(vs, lower=None, simplex=(axis, total))
    for vs in by_var.values():
        shapes_ok = vs.radius is None or (vs.lower is None and vs.upper is None and vs.simplex is None)
        term_ok = vs.term is None or (vs.radius is None and vs.simplex is None and
                                      (vs.term.op == "norm1" or (vs.lower is None and vs.upper is None)))
        if not (shapes_ok and term_ok):
            return None, f"the var '{vs.var}' combines sets or terms whose joint prox is not known"
        for side in (vs.lower, vs.upper, vs.radius):
            if side is not None:
                _reject_nonsmooth(side, problem.statement_span, "bound")
    return tuple(by_var[v.name] for v in problem.vars), ""


def _check_kkt_constraint(con, signs: dict) -> None:
    """KKT constraints are smooth; equalities affine, inequalities g <= 0 with g convex."""
    _reject_nonsmooth(con.expr, con.span, "constraint")
    shape = curvature(con.expr, signs)
    if con.kind == "eq" and shape not in ("affine", "const"):
        raise NotSupportedError(
            "a nonlinear equality constraint is not supported",
            con.span,
            "the interior-point solver needs affine equalities (A @ x == b); write a convex inequality instead",
        )
    if con.kind == "ineq" and shape not in ("affine", "convex", "const"):
        found = "concave" if shape == "concave" else "not provably convex"
        raise NotSupportedError(
            f"this constraint is {found}: as g <= 0, g must be convex",
            con.span,
            "the interior-point solver handles convex g <= 0 (e.g. sumsq(x) <= r^2, exp(x) <= c); optlang checks "
            "convexity by composition rules (affine inside convex increasing, sums, nonnegative scaling)",
        )


NONSMOOTH_HINTS = {
    "bound": "bounds, radii and simplex totals must be smooth in the params; compute this one outside the "
             "problem and pass it as a param",
    "constraint": "general constraints must be smooth (the interior-point method uses their derivatives); "
                  "rewrite {name} with linear inequalities, e.g. abs(x) <= c as -c <= x <= c, or norm1(x) <= c "
                  "with an epigraph var t: -t <= x <= t and sum(t) <= c",
    "root": "a root equation must be smooth (Newton and the backward pass use its Jacobian); replace {name} "
            "with a smooth function",
    "fixed_point": "a fixed-point map must be smooth (the backward pass uses its Jacobian); replace {name} "
                   "with a smooth function such as softplus",
}


def _nonsmooth_at(root, span=None):
    """(node, span) of the first nonsmooth function in `root`, or None."""
    stack, seen = [(root, span)], set()
    while stack:
        node, near = stack.pop()
        if node in seen:  # a shared subexpression is looked at once (a tree walk is exponential in lets)
            continue
        seen.add(node)
        near = getattr(node, "span", None) or near
        if (isinstance(node, Elementwise) and not ELEMENTWISE[node.op].smooth) or (
                isinstance(node, Reduce) and not REDUCTIONS[node.op]):
            return node, near
        stack.extend((c, near) for c in children(node))
    return None


def _reject_nonsmooth(root, span, where: str) -> None:
    """Raise at the first nonsmooth function where only smooth ones are allowed."""
    found = _nonsmooth_at(root, span)
    if found is not None:
        node, near = found
        name = _written_name(near) or node.op
        hint = NONSMOOTH_HINTS[where].format(name=name)
        if where == "constraint" and name == "norm2":
            hint = ("general constraints must be smooth (the interior-point method uses their derivatives); write "
                    "norm2(e) <= r as sumsq(e) <= r^2")
        raise NotSupportedError(f"the nonsmooth function {name} is not supported here", near, hint)


def _written_name(span) -> str | None:
    """The function name as the user wrote it at the start of `span` (clip, neg, pos, ...)."""
    if span is None or span.source is None:
        return None
    match = re.match(r"[A-Za-z_][A-Za-z_0-9]*", span.source.line(span.line)[span.col - 1:])
    return match.group(0) if match else None
