"""Pass `derive_conditions`: the optimality conditions F(x, theta) = 0 of a classified problem.

Assumes a `Classified` problem. Guarantees `Conditions` whose `residual` is
zero exactly at the solution:
  smooth:  F = grad f(x)
  bounds:  F = x - P(x - grad f(x)), P the projection onto [lower, upper]
           (the projected-gradient fixed point with unit step, as in JAXopt)
  root:    F = the root expression (fixed points arrive as z - g(z)).
"""
from __future__ import annotations

from dataclasses import dataclass

from optlang.ir import algebra as A
from optlang.ir.nodes import Input
from optlang.passes.classify import Classified
from optlang.passes.derivatives import grad


@dataclass(frozen=True)
class Conditions:
    classified: Classified
    x: Input
    residual: object
    objective: object = None
    gradient: object = None
    lower: object = None
    upper: object = None

    @property
    def kind(self) -> str:
        return self.classified.kind

    @property
    def problem(self):
        return self.classified.problem


def project(z, lower, upper):
    """The projection onto the box [lower, upper] (either side may be None)."""
    if lower is not None:
        z = A.ew("maximum", z, lower)
    if upper is not None:
        z = A.ew("minimum", z, upper)
    return z


def derive_conditions(classified: Classified) -> Conditions:
    """Derive the residual whose zero is the solution."""
    problem = classified.problem
    var = problem.vars[0]
    x = Input("var", var.name, var.shape)
    if classified.kind == "root":
        return Conditions(classified, x, problem.expr)
    f = problem.expr
    g = grad(f, var.name, var.shape)
    if classified.kind == "smooth":
        return Conditions(classified, x, g, objective=f, gradient=g)
    lower = None if classified.lower is None else A.broadcast_to(classified.lower, var.shape)
    upper = None if classified.upper is None else A.broadcast_to(classified.upper, var.shape)
    residual = A.sub(x, project(A.sub(x, g), lower, upper))
    return Conditions(classified, x, residual, objective=f, gradient=g, lower=lower, upper=upper)
