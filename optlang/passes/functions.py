"""Pass `derive_functions`: every function the solvers and the backward pass call.

Assumes `Conditions`. Guarantees `Functions`: named IR functions of the var
`x`, the params `theta`, and a tangent `v` or cotangent `u` of the var's shape:
  residual(x, theta)          F
  jvp_x(x, theta, v)          dF/dx v        (Newton steps, CG backward)
  vjp_x(x, theta, u)          (dF/dx)^T u    (the IFT's adjoint system)
  vjp_theta(x, theta, u)      (dF/dtheta)^T u for each param
  objective, gradient, hvp    f, grad f, grad^2 f v   (minimize kinds)
  lower, upper                the bounds              (bounds kind)
  free_mask(x, theta)         1 where the projection is inactive (bounds kind)
"""
from __future__ import annotations

from dataclasses import dataclass

from optlang.ir import algebra as A
from optlang.ir.nodes import Input
from optlang.passes.conditions import Conditions
from optlang.passes.derivatives import jvp, vjp


@dataclass(frozen=True)
class FunctionSpec:
    """One derived function: its inputs (in call order), named outputs, and what it computes."""

    name: str
    inputs: tuple
    outputs: tuple  # ((key, expr), ...)
    doc: str


@dataclass(frozen=True)
class Functions:
    conditions: Conditions
    functions: tuple  # FunctionSpec, in a fixed order

    def get(self, name: str) -> FunctionSpec | None:
        return next((f for f in self.functions if f.name == name), None)


def derive_functions(cond: Conditions) -> Functions:
    """Differentiate the conditions symbolically into the solver's and backward's functions."""
    problem = cond.problem
    x = cond.x
    theta = tuple(Input("param", p.name, p.shape) for p in problem.params)
    v = Input("tangent", x.name, x.shape)
    u = Input("cotangent", x.name, x.shape)
    F = cond.residual
    Jv = jvp(F, {x.name: v})
    adj_x = vjp(F, u, {x.name})
    adj_theta = vjp(F, u, {p.name for p in theta})
    fns = [
        FunctionSpec("residual", (x,) + theta, (("F", F),), _doc(cond)),
        FunctionSpec("jvp_x", (x,) + theta + (v,), (("Jv", Jv),), "the Jacobian of the residual in x, applied to v"),
        FunctionSpec("vjp_x", (x,) + theta + (u,), (("JTu", adj_x.get(x.name, A.zeros(x.shape))),),
                     "the transposed Jacobian of the residual in x, applied to u"),
        FunctionSpec("vjp_theta", (x,) + theta + (u,),
                     tuple((p.name, adj_theta.get(p.name, A.zeros(p.shape))) for p in theta),
                     "the transposed Jacobian of the residual in each param, applied to u"),
    ]
    if cond.objective is not None:
        fns.append(FunctionSpec("objective", (x,) + theta, (("f", cond.objective),), "the objective (minimized)"))
        fns.append(FunctionSpec("gradient", (x,) + theta, (("g", cond.gradient),), "the objective's gradient in x"))
        fns.append(FunctionSpec("hvp", (x,) + theta + (v,), (("Hv", jvp(cond.gradient, {x.name: v})),),
                                "the objective's Hessian in x, applied to v"))
    if cond.kind == "bounds":
        if cond.lower is not None:
            fns.append(FunctionSpec("lower", theta, (("lo", cond.lower),), "the lower bound of the var"))
        if cond.upper is not None:
            fns.append(FunctionSpec("upper", theta, (("hi", cond.upper),), "the upper bound of the var"))
        fns.append(FunctionSpec("free_mask", (x,) + theta, (("free", _free_mask(cond)),),
                                "1 where the projection leaves x - grad f free (its Jacobian's diagonal)"))
    return Functions(cond, tuple(fns))


def _free_mask(cond: Conditions):
    z = A.sub(cond.x, cond.gradient)
    mask = A.fill(1.0, cond.x.shape)
    if cond.lower is not None:
        mask = A.mul(mask, A.ew("ge", z, cond.lower))
    if cond.upper is not None:
        mask = A.mul(mask, A.ew("le", z, cond.upper))
    return mask


def _doc(cond: Conditions) -> str:
    return {
        "smooth": "stationarity: the gradient of the objective, zero at the minimum",
        "bounds": "the projected-gradient fixed point x - P(x - grad f(x)), zero at the minimum",
        "root": "the root equation",
    }[cond.kind]
