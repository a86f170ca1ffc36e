"""KKT problems on the PyTorch backend: the interior-point method's view of a bound problem,
and the dense KKT Jacobian with weakly active constraints made explicit.

The state of a KKT problem is (vars, lam, nu): the vars' blocks, then one dual
block per inequality, then one per equality, in the order of the file.
"""
from __future__ import annotations

import math
import warnings

import torch

from optlang.errors import user_stacklevel

from optlang.solvers.ipm import ipm
from optlang.solvers.result import NO_DEADLINE, SolveResult, where_text

# A constraint is weakly active when its dual and its slack are both small (at most WEAK sqrt(tol))
# and neither dominates the other (the smaller is at least BALANCE times the larger). An interior-point
# solution drives one of the two to ~tol on every row that has a side; a strictly active constraint
# with a small dual (1e-4, say) still has a slack many decades below it, and stays active.
WEAK = 10.0
BALANCE = 1e-3


class KKTView:
    """`ipm`'s interface over a BoundProblem: one flat batch dim B, the vars only as x."""

    def __init__(self, bound):
        self.bound = bound
        self.batch_size = math.prod(bound.batch)
        self.n = bound.n_vars
        sizes = {"ineq": 0, "eq": 0}
        for b in bound.plan.state:
            if b.kind != "var":
                sizes[b.kind] += bound.state[b.name][1]
        self.m, self.p = sizes["ineq"], sizes["eq"]
        self.dtype, self.device = bound.dtype, bound.device
        self.affine_constraints = bound.plan.affine_constraints
        # Affine constraints have constant Jacobians, and with a quadratic objective the Hessian of
        # the Lagrangian is constant too (a QP or LP): build each once per solve, not per iteration.
        self._constant = {}
        self.constant_hessian = bound.plan.affine_constraints and bound.plan.quadratic

    def take(self, index: torch.Tensor) -> "KKTView":
        """The instances `index` of the flat batch (ops.compact), with what was built once for them."""
        view = KKTView(self.bound.flat_batch().take(index))
        view._constant = {key: value[index] for key, value in self._constant.items()}
        return view

    def _once(self, key: str, build, constant: bool):
        if not constant:
            return build()
        if key not in self._constant:
            self._constant[key] = build()
        return self._constant[key]

    def _in(self, t):
        return t.reshape(self.bound.batch + t.shape[1:])

    def _out(self, t):
        return t.reshape((self.batch_size,) + t.shape[len(self.bound.batch):])

    def objective(self, x):
        return self._out(self.bound.objective(self._in(x)))

    def gradient(self, x):
        return self._out(self.bound.gradient(self._in(x)))

    def ineq(self, x):
        return self._out(self.bound.flat("ineq", self.bound.batch, state=self._in(x)))

    def eq(self, x):
        return self._out(self.bound.flat("eq", self.bound.batch, state=self._in(x)))

    def ineq_jacobian(self, x):
        build = lambda: self._out(self.bound.jacobian(self._in(x), "jvp_ineq", self.n))  # noqa: E731
        return self._once("ineq", build, self.affine_constraints)

    def eq_jacobian(self, x):
        return self._once("eq", lambda: self._out(self.bound.jacobian(self._in(x), "jvp_eq", self.n)), True)

    def lagrangian_hessian(self, x, lam, nu):
        state = torch.cat([x, lam, nu], dim=-1)
        build = lambda: self._out(self.bound.jacobian(self._in(state), "hvp_lagrangian", self.n))  # noqa: E731
        return self._once("hessian", build, self.constant_hessian)


def solve_kkt(bound, tol: float, max_iter: int, x0=None, deadline=NO_DEADLINE) -> SolveResult:
    """The interior-point solve, returned as the flat state (vars, lam, nu) with per-element stats;
    `x0`: a flat state (*batch, N) to warm-start from."""
    view = KKTView(bound)
    start = None
    if x0 is not None:
        flat = view._out(x0)
        start = (flat[:, :view.n], flat[:, view.n: view.n + view.m], flat[:, view.n + view.m:])
    out = ipm(view, tol, max_iter, start, deadline)
    state = torch.cat([out.x, out.lam, out.nu], dim=-1).reshape(bound.batch + (bound.n,))
    shape = bound.batch
    return SolveResult(state, out.converged.reshape(shape), out.iterations.reshape(shape),
                       out.residual.reshape(shape), out.status.reshape(shape))


def kkt_jacobian(bound, state, tol: float):
    """The dense Jacobian of the KKT residual, with weakly active constraints treated as inactive.

    Row i of the complementarity block is lam_i dg_i + g_i dlam_i. Where lam_i and
    g_i are both about 0 (weakly active) that row vanishes and the solution map
    has no derivative (only one-sided ones); the row is replaced by dlam_i = 0,
    the derivative of the side where the constraint is inactive, and a warning
    names the batch elements.
    """
    J = bound.jacobian(state)
    n = bound.n_vars
    m = sum(bound.state[b.name][1] for b in bound.plan.state if b.kind == "ineq")
    if m == 0:
        return J
    lam = state[..., n: n + m]
    g = bound.flat("ineq", state.shape[:-1], state=state)
    small, large = torch.minimum(lam.abs(), g.abs()), torch.maximum(lam.abs(), g.abs())
    weak = (large <= WEAK * math.sqrt(tol)) & (small >= BALANCE * large)
    if bool(weak.any()):
        rows = torch.zeros_like(J[..., n: n + m, :])
        rows[..., torch.arange(m), n + torch.arange(m)] = -1.0
        J = J.clone()
        J[..., n: n + m, :] = torch.where(weak[..., None], rows, J[..., n: n + m, :])
        warn_weak(weak.any(-1))
    return J


def warn_weak(weak) -> None:
    """Warn about the batch elements (a bool mask) with a weakly active constraint, if any."""
    if bool(weak.any()):
        warnings.warn(f"optlang: a constraint is weakly active (its dual and its slack are both ~0)"
                      f"{where_text(weak)}: the solution is not differentiable there; the gradient treats "
                      "the constraint as inactive", RuntimeWarning, stacklevel=user_stacklevel())
