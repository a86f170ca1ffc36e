"""Pass `classify`: decide the problem class, or reject what v1 cannot solve.

Assumes a normalized `Problem`. Guarantees a `Classified` whose `kind` is
"smooth" (unconstrained, smooth objective), "bounds" (smooth objective, the
only constraints are bounds on the var whose bounds are param-only) or "root"
(a square system), with the bounds gathered. Anything else raises
`NotSupportedError` at its line and column, saying what is supported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from optlang.errors import NotSupportedError
from optlang.ir.nodes import Elementwise, Problem, Reduce, children
from optlang.ir.primitives import ELEMENTWISE, REDUCTIONS


@dataclass(frozen=True)
class Classified:
    """A problem and its class; `lower`/`upper` are the var's bounds (None: unbounded)."""

    problem: Problem
    kind: str
    lower: object = None
    upper: object = None


def classify(problem: Problem) -> Classified:
    """Tag the problem's class; reject constructs that v1 does not solve yet."""
    if len(problem.vars) > 1:
        raise NotSupportedError(
            "several vars in one problem are not supported yet",
            problem.vars[1].span,
            "this version solves for one var; stack them into one vector var for now",
        )
    var = problem.vars[0]
    if len(var.shape) > 1:
        raise NotSupportedError(
            f"a var of rank {len(var.shape)} is not supported yet",
            var.span,
            "this version solves for a scalar or vector var; flatten the var into a vector",
        )
    where = "fixed_point" if problem.sense == "fixed_point" else "root" if problem.statement == "root" else "objective"
    _reject_nonsmooth(problem.expr, problem.statement_span, where)
    if problem.statement == "root":
        return Classified(problem, "root")
    if not problem.constraints:
        return Classified(problem, "smooth")
    lower = upper = None
    for con in problem.constraints:
        if con.cls != "bound":
            what = {"linear_eq": "linear equality", "linear_ineq": "linear inequality"}.get(con.cls, "general")
            raise NotSupportedError(
                f"{what} constraints are not supported yet",
                con.span,
                "this version handles bounds on the var (x >= lo, x <= hi, lo <= x <= hi) "
                "with param-only bounds; KKT-based constraints come in a later version",
            )
        if con.label is not None:
            raise NotSupportedError(
                "duals of bound constraints are not returned yet",
                con.span,
                f"drop the label '{con.label}:'; this version returns the var only",
            )
        if con.lower is not None:
            lower = _one_bound(lower, con.lower, con, "lower")
        if con.upper is not None:
            upper = _one_bound(upper, con.upper, con, "upper")
    return Classified(problem, "bounds", lower, upper)


def _one_bound(prev, new, con, which: str):
    if prev is not None:
        raise NotSupportedError(
            f"a second {which} bound on the var is not supported yet",
            con.span,
            f"give one {which} bound; combine them with maximum/minimum of params outside the problem",
        )
    _reject_nonsmooth(new, con.span, "bound")
    return new


NONSMOOTH_HINTS = {
    "objective": "this version needs a smooth objective (proximal terms such as lam * norm1(w) come in a "
                 "later version); for bounds on the var write them as constraints",
    "bound": "this version needs bounds that are smooth in the params; compute this bound outside the "
             "problem and pass it as a param",
    "root": "this version needs a smooth root equation (Newton uses its Jacobian); replace {name} with a "
            "smooth function",
    "fixed_point": "this version needs a smooth fixed-point map (Newton uses its Jacobian); replace {name} "
                   "with a smooth function such as softplus",
}


def _reject_nonsmooth(root, span, where: str) -> None:
    """Raise at the first nonsmooth function: v1 handles only smooth problems."""
    stack = [(root, span)]
    while stack:
        node, near = stack.pop()
        near = getattr(node, "span", None) or near
        bad = (isinstance(node, Elementwise) and not ELEMENTWISE[node.op].smooth) or (
            isinstance(node, Reduce) and not REDUCTIONS[node.op]
        )
        if bad:
            name = _written_name(near) or node.op
            raise NotSupportedError(
                f"the nonsmooth function {name} is not supported yet",
                near,
                NONSMOOTH_HINTS[where].format(name=name),
            )
        stack.extend((c, near) for c in children(node))


def _written_name(span) -> str | None:
    """The function name as the user wrote it at the start of `span` (clip, neg, pos, ...)."""
    if span is None or span.source is None:
        return None
    match = re.match(r"[A-Za-z_][A-Za-z_0-9]*", span.source.line(span.line)[span.col - 1:])
    return match.group(0) if match else None
