"""Pass `derive_conditions`: the optimality conditions F(state, theta) = 0 of a classified problem.

Assumes a `Classified` problem. Guarantees `Conditions`: the solver's state as
blocks (each var; for KKT also one dual per constraint) and a residual, one
expression per block, zero exactly at the solution:
  smooth:  F_x = grad_x f
  prox:    F_x = x - prox_x(x - grad_x f, 1), prox_x the proximal operator of the
           var's set indicator and prox term (the fixed point of proximal
           gradient with unit step, as in JAXopt)
  kkt:     F_x = grad_x L,  F_lam = lam * g,  F_nu = h
           with L = f + sum(lam * g) + sum(nu * h), g <= 0, h == 0, lam >= 0
  root:    F = the equation (fixed points arrive as z - g(z)).
"""
from __future__ import annotations

from dataclasses import dataclass

from optlang.ir import algebra as A
from optlang.ir.nodes import Input
from optlang.passes.classify import Classified
from optlang.passes.derivatives import grad
from optlang.plan import StateBlock  # noqa: F401 (defined with the Plan: a cached plan unpickles without the passes)

STEP = Input("step", "step", ())


@dataclass(frozen=True)
class Conditions:
    classified: Classified
    blocks: tuple  # StateBlock: vars first, then inequality duals, then equality duals
    residual: tuple  # ((cotangent Input, expr), ...): F, one entry per residual block
    objective: object = None  # f (minimize kinds; the smooth part for prox)
    gradient: tuple = ()  # grad_x f, per var
    prox: tuple = ()  # prox_x(x, step), per var (prox kind): x stands for the point to map
    ineq: tuple = ()  # ((block, g), ...) kkt
    eq: tuple = ()  # ((block, h), ...) kkt
    lagrangian: object = None
    dual_scales: tuple = ()  # ((dual block, factor), ...): written dual = factor * the state's (see classify)

    @property
    def kind(self) -> str:
        return self.classified.kind

    @property
    def problem(self):
        return self.classified.problem

    @property
    def var_blocks(self) -> tuple:
        return tuple(b for b in self.blocks if b.kind == "var")


def derive_conditions(classified: Classified) -> Conditions:
    """Derive the residual whose zero is the solution."""
    problem = classified.problem
    var_blocks = tuple(StateBlock("var", v.name, tuple(v.shape)) for v in problem.vars)
    if classified.kind == "root":
        # One residual block with the equation's shape; its cotangent is keyed by the first var.
        key = Input("cotangent", var_blocks[0].name, tuple(problem.expr.shape))
        return Conditions(classified, var_blocks, ((key, problem.expr),))
    f = classified.smooth
    g = tuple(grad(f, b.name, b.shape) for b in var_blocks)
    if classified.kind == "smooth":
        return Conditions(classified, var_blocks, tuple((b.cotangent, gi) for b, gi in zip(var_blocks, g)),
                          objective=f, gradient=g)
    if classified.kind == "prox":
        prox = tuple(prox_of(vs, b.input, STEP) for vs, b in zip(classified.sets, var_blocks))
        residual = tuple((b.cotangent, A.sub(b.input, prox_of(vs, A.sub(b.input, gi), A.const(1.0))))
                         for vs, b, gi in zip(classified.sets, var_blocks, g))
        return Conditions(classified, var_blocks, residual, objective=f, gradient=g, prox=prox)
    return _kkt(classified, var_blocks, f, g)


def _kkt(classified, var_blocks, f, g) -> Conditions:
    ineq, eq, scales = [], [], []
    for i, con in enumerate(classified.problem.constraints):
        name = con.label if con.label is not None else str(i)
        line = con.span.line if con.span is not None else None
        block = StateBlock(con.kind, name, tuple(con.expr.shape), con.label, line)
        (ineq if con.kind == "ineq" else eq).append((block, con.expr))
        if con.dual_scale is not None and con.label is not None:
            scales.append((block, con.dual_scale))
    L = f
    for block, expr in ineq + eq:
        L = A.add(L, A.reduce("sum", A.mul(block.input, expr)))
    residual = [(b.cotangent, grad(L, b.name, b.shape)) for b in var_blocks]
    residual += [(b.cotangent, A.mul(b.input, expr)) for b, expr in ineq]
    residual += [(b.cotangent, expr) for b, expr in eq]
    blocks = var_blocks + tuple(b for b, _ in ineq) + tuple(b for b, _ in eq)
    return Conditions(classified, blocks, tuple(residual), objective=f, gradient=g, ineq=tuple(ineq),
                      eq=tuple(eq), lagrangian=L, dual_scales=tuple(scales))


def prox_of(vs, z, step):
    """prox_{step * r}(z) for the var's regularizer r: its set's indicator plus its prox term."""
    shape = z.shape
    if vs.term is not None:
        t = A.mul(step, vs.term.coef)
        if vs.term.op == "norm1":  # soft thresholding
            z = A.sub(z, A.ew("minimum", A.ew("maximum", z, A.neg(t)), t))
        else:  # block soft thresholding
            norm = A.ew("maximum", A.reduce("norm2", z), A.const(A.TINY_NORM))
            z = A.mul(z, A.ew("relu", A.sub(A.const(1.0), A.div(t, norm))))
    if vs.lower is not None:  # in 1-D, the prox of |.| plus a box is the box projection of the prox
        z = A.ew("maximum", z, A.broadcast_to(vs.lower, shape))
    if vs.upper is not None:
        z = A.ew("minimum", z, A.broadcast_to(vs.upper, shape))
    if vs.radius is not None:
        norm = A.ew("maximum", A.reduce("norm2", z), A.const(A.TINY_NORM))
        z = A.mul(z, A.ew("minimum", A.const(1.0), A.div(vs.radius, norm)))
    if vs.simplex is not None:
        z = project_simplex(z, *vs.simplex)
    return z


def project_simplex(z, axis, total):
    """The projection onto {x >= 0, sum(x, axis) == total}: relu(z - tau), tau the simplex threshold."""
    spread = lambda t: A.broadcast_to(t, z.shape) if t.shape == () else A.expand_dims_to(t, axis, z.shape)  # noqa: E731
    scaled = not A.is_value(total, 1.0)
    if scaled:  # P_{c * simplex}(z) = c * P_simplex(z / c)
        z = A.div(z, spread(total))
    out = A.ew("relu", A.sub(z, spread(A.reduce("simplex_tau", z, axis))))
    return A.mul(out, spread(total)) if scaled else out
