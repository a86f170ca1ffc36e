"""Pass `derive_functions`: every function the solvers and the backward pass call.

Assumes `Conditions`. Guarantees `Functions`: named IR functions of the state
blocks `x` (vars, and duals for KKT), the params `theta`, and a tangent `v`
(one per state block) or a cotangent `u` (one per residual block):
  residual(x, theta)          F
  jvp_x(x, theta, v)          dF/dx v        (Newton steps, dense Jacobians, GMRES)
  vjp_x(x, theta, u)          (dF/dx)^T u    (the IFT's adjoint system)
  vjp_theta(x, theta, u)      (dF/dtheta)^T u for each param
  objective, gradient, hvp    f, grad f, grad^2 f v          (smooth and prox kinds)
  value                       the whole objective, prox terms included   (prox kind with prox terms)
  prox(x, theta, step)        prox_{step r}(x) per var        (prox kind)
  free_mask(x, theta)         diag of prox's Jacobian at x - grad f  (prox kind, diagonal prox only)
  prox_jvp(x, theta, v)       prox's Jacobian at x - grad f applied to v (prox kind, a simplex)
  ineq, eq, jvp_ineq, jvp_eq  g, h and their Jacobians in x applied to v   (kkt kind)
  hvp_lagrangian(x, theta, v) the Hessian of the Lagrangian in the vars applied to v  (kkt kind)
  duals(x, theta)             the labelled duals as written, where classify rewrote a constraint (kkt kind)
"""
from __future__ import annotations

from dataclasses import dataclass

from optlang.ir import algebra as A
from optlang.ir.nodes import Input
from optlang.ir.walk import substitute
from optlang.passes.conditions import STEP, Conditions, prox_of
from optlang.passes.derivatives import jvp, vjp


@dataclass(frozen=True)
class FunctionSpec:
    """One derived function: its inputs (in call order), named outputs, and what it computes."""

    name: str
    inputs: tuple
    outputs: tuple  # ((key, expr), ...)
    doc: str

    def is_identity_in(self, role: str) -> bool:
        """True if it returns its `role` inputs unchanged, block for block (as plan.Function's, before lowering)."""
        inputs = {i.name: i for i in self.inputs if i.role == role}
        return len(self.outputs) == len(inputs) and all(expr == inputs.get(key) for key, expr in self.outputs)


@dataclass(frozen=True)
class Functions:
    conditions: Conditions
    functions: tuple  # FunctionSpec, in a fixed order

    def get(self, name: str) -> FunctionSpec | None:
        return next((f for f in self.functions if f.name == name), None)


def derive_functions(cond: Conditions) -> Functions:
    """Differentiate the conditions symbolically into the solver's and backward's functions."""
    problem = cond.problem
    state = tuple(b.input for b in cond.blocks)
    xs = tuple(b.input for b in cond.var_blocks)
    theta = tuple(Input("param", p.name, p.shape) for p in problem.params)
    v_all = tuple(b.tangent for b in cond.blocks)
    v_vars = tuple(b.tangent for b in cond.var_blocks)
    us = tuple(key for key, _ in cond.residual)
    F = tuple(expr for _, expr in cond.residual)
    along_all = {b.name: b.tangent for b in cond.blocks}
    along_vars = {b.name: b.tangent for b in cond.var_blocks}
    adj_x = _vjp_many(F, us, {b.name for b in cond.blocks})
    adj_theta = _vjp_many(F, us, {p.name for p in theta})
    fns = [
        FunctionSpec("residual", state + theta, _keyed(us, F), _doc(cond)),
        FunctionSpec("jvp_x", state + theta + v_all, _keyed(us, [jvp(e, along_all) for e in F]),
                     "the Jacobian of the residual in the state, applied to v"),
        FunctionSpec("vjp_x", state + theta + us,
                     tuple((b.name, adj_x.get(b.name, A.zeros(b.shape))) for b in cond.blocks),
                     "the transposed Jacobian of the residual in the state, applied to u"),
        FunctionSpec("vjp_theta", state + theta + us,
                     tuple((p.name, adj_theta.get(p.name, A.zeros(p.shape))) for p in theta),
                     "the transposed Jacobian of the residual in each param, applied to u"),
    ]
    if cond.objective is not None:
        names = [b.name for b in cond.var_blocks]
        fns.append(FunctionSpec("objective", xs + theta, (("f", cond.objective),),
                                "the objective (minimized)" if cond.kind != "prox" else
                                "the smooth part of the objective (minimized)"))
        fns.append(FunctionSpec("gradient", xs + theta, tuple(zip(names, cond.gradient)),
                                "the gradient of the objective's smooth part in the vars"))
        if cond.kind in ("smooth", "prox"):
            # Both at one point, as the line searches need them: eager PyTorch then computes their
            # common terms (X @ w) once. Triton kernels call objective and gradient, whose inlined
            # terms the compiler shares, so their modules leave this one out (nothing calls it there).
            fns.append(FunctionSpec("objective_gradient", xs + theta,
                                    (("f", cond.objective),) + tuple(zip(names, cond.gradient)),
                                    "the objective's smooth part and its gradient in the vars, in one pass"))
        if cond.kind != "kkt":
            fns.append(FunctionSpec("hvp", xs + theta + v_vars,
                                    tuple((n, jvp(g, along_vars)) for n, g in zip(names, cond.gradient)),
                                    "the Hessian of the objective's smooth part in the vars, applied to v"))
    if cond.kind == "prox" and any(vs.term is not None for vs in cond.classified.sets):
        # The objective as written (prox terms included, minimized form): what `sol.objective` reports.
        fns.append(FunctionSpec("value", xs + theta, (("f", problem.expr),),
                                "the whole objective, nonsmooth terms included (minimized)"))
    if cond.kind == "prox":
        fns += _prox_functions(cond, xs, theta, v_vars, along_vars)
    if cond.kind == "kkt":
        fns += _kkt_functions(cond, state, xs, theta, v_vars, along_vars)
    return Functions(cond, tuple(fns))


def _prox_functions(cond, xs, theta, v_vars, along_vars) -> list:
    names = [b.name for b in cond.var_blocks]
    out = [FunctionSpec("prox", xs + theta + (STEP,), tuple(zip(names, cond.prox)),
                        "the proximal operator of step * (each var's set indicator and prox term)")]
    if all(vs.diagonal for vs in cond.classified.sets):
        # prox is elementwise here: its Jacobian at z = x - grad f is diagonal, given by a JVP along ones.
        at = {x: A.sub(x, g) for x, g in zip(xs, cond.gradient)}
        ones = {b.name: A.fill(1.0, b.shape) for b in cond.var_blocks}
        masks = tuple((n, substitute(jvp(prox_of(vs, x, A.const(1.0)), ones), at))
                      for n, vs, x in zip(names, cond.classified.sets, xs))
        out.append(FunctionSpec("free_mask", xs + theta, masks,
                                "the diagonal of the prox's Jacobian at x - grad f (1 where x is free)"))
    elif all(vs.projection for vs in cond.classified.sets):
        # A simplex: the Jacobian is the projection onto {the support, sum = 0}, applied to v.
        at = {x: A.sub(x, g) for x, g in zip(xs, cond.gradient)}
        applied = tuple((n, substitute(jvp(prox_of(vs, x, A.const(1.0)), along_vars), at))
                        for n, vs, x in zip(names, cond.classified.sets, xs))
        out.append(FunctionSpec("prox_jvp", xs + theta + v_vars, applied,
                                "the prox's Jacobian at x - grad f applied to v (a projection onto the free set)"))
    return out


def _kkt_functions(cond, state, xs, theta, v_vars, along_vars) -> list:
    out = []
    for which, pairs in (("ineq", cond.ineq), ("eq", cond.eq)):
        if not pairs:
            continue
        word = "inequality constraints g (<= 0)" if which == "ineq" else "equality constraints h (== 0)"
        out.append(FunctionSpec(which, xs + theta, tuple((b.name, e) for b, e in pairs), f"the {word}"))
        out.append(FunctionSpec(f"jvp_{which}", xs + theta + v_vars,
                                tuple((b.name, jvp(e, along_vars)) for b, e in pairs),
                                f"the Jacobian of the {word} in the vars, applied to v"))
    if cond.dual_scales:
        labelled = [b for b in cond.blocks if b.kind != "var" and b.label is not None]
        factor = {b.name: e for b, e in cond.dual_scales}
        out.append(FunctionSpec("duals", state + theta,
                                tuple((b.name, A.mul(factor[b.name], b.input) if b.name in factor else b.input)
                                      for b in labelled),
                                "the labelled constraints' duals as written (rewritten constraints scale theirs)"))
    grad_L = tuple(expr for _, expr in cond.residual[: len(cond.var_blocks)])
    out.append(FunctionSpec("hvp_lagrangian", state + theta + v_vars,
                            tuple((b.name, jvp(g, along_vars)) for b, g in zip(cond.var_blocks, grad_L)),
                            "the Hessian of the Lagrangian in the vars, applied to v"))
    return out


def _vjp_many(outputs, cotangents, wrt: set) -> dict:
    """Adjoints of `wrt` for several outputs with their cotangents, summed."""
    total: dict = {}
    for expr, u in zip(outputs, cotangents):
        for name, adj in vjp(expr, u, wrt).items():
            total[name] = adj if name not in total else A.add(total[name], adj)
    return total


def _keyed(us, exprs) -> tuple:
    return tuple((u.name, e) for u, e in zip(us, exprs))


def _doc(cond: Conditions) -> str:
    if cond.problem.sense == "fixed_point":
        return "the fixed-point equation z - g(z), zero at the equilibrium"
    return {
        "smooth": "stationarity: the gradient of the objective, zero at the minimum",
        "prox": "the proximal-gradient fixed point x - prox(x - grad f(x)), zero at the minimum",
        "kkt": "the KKT conditions: stationarity of the Lagrangian, complementarity lam * g, feasibility h",
        "root": "the root equation",
    }[cond.kind]
