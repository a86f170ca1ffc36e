"""The methods timed by `lasso.py`, with the interface of ridge_methods.py (whose adapters they reuse).

The problem is the lasso:  minimize 0.5 ||X w - y||^2 + lam ||w||_1.
At batch 1 every method gets one problem's arrays without a batch dim.

Not timed: jaxopt.BlockCoordinateDescent(fun=objective.least_squares, block_prox=prox_lasso)
(jaxopt's least_squares is the mean, so lam / n). At its defaults (tol 1e-3, maxiter 500) it stopped at
maxiter with gradients off by 30% to 450%; at tol 1e-12 the gradients were right to 1e-9, but one
forward+backward at batch 64 took ~15 s (up to 15,000 sweeps): more than this benchmark's whole budget.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from nnls_methods import optlang_backends
from ridge_methods import CVXPYLAYERS_ROWS, CvxpyLayers, JaxVariant, Optlang, build

LASSO_OPT = Path(__file__).resolve().parent.parent / "examples" / "lasso.opt"
PEERS = ("optlang", "jaxopt", "cvxpylayers")


def lasso_regularizer(cp, w, lam):
    return lam * cp.norm1(w)


class JaxoptProximalGradient(JaxVariant):
    """jaxopt.ProximalGradient(fun = 0.5 ||X w - y||^2, prox = prox_lasso) from w = 0, implicit
    differentiation of its fixed-point residual prox(w - grad f(w), lam) - w.

    Defaults: FISTA with backtracking, tol=1e-3, maxiter=500, backward by normal CG at its default
    tolerance. Tight, as nnls.py's jaxopt row: X, y divided by s = ||X||_2 and lam by s^2 (w is
    unchanged, and w(X/s, y/s, lam/s^2) = w(X, y, lam) for every s > 0, so s needs no gradient), the
    fixed step 1 = 1/L, tol=1e-12, maxiter=20000, backward by normal CG at tol 1e-12. With the default
    backtracking the error stalled near 2e-8 (every problem ran to maxiter=20000, ~20 s per call at
    batch 64) whatever tol; the fixed step reaches ~1e-9 in a few hundred iterations. The backward's
    linear solver hardly matters here: LU, GMRES and BiCGStab came within 10% of normal CG's time (d = 50).
    """

    def __init__(self, dtype, tight: bool):
        super().__init__(dtype)
        from jaxopt import ProximalGradient, linear_solve
        from jaxopt.prox import prox_lasso

        jnp = self.jnp

        def f(w, X, y):
            r = X @ w - y
            return 0.5 * jnp.sum(r * r)

        self.tight = tight
        if tight:
            tol = 1e-12 if self.float64 else 1e-6  # float32 cannot get below ~1e-7
            solve = partial(linear_solve.solve_normal_cg, tol=tol)
            self.solver = ProximalGradient(fun=f, prox=prox_lasso, tol=tol, maxiter=20_000, stepsize=1.0,
                                           implicit_diff_solve=solve)
            self.settings = (f"ProximalGradient(prox_lasso), X, y scaled by 1/‖X‖₂ and lam by 1/‖X‖₂², fixed step 1, "
                             f"tol={tol:g}, maxiter=20000, normal-CG tol={tol:g}")
        else:
            self.solver = ProximalGradient(fun=f, prox=prox_lasso)
            self.settings = ("ProximalGradient(prox_lasso) defaults: FISTA, backtracking, tol=1e-3, maxiter=500, "
                             "normal-CG tol=1e-5")

    def one(self, X, y, lam):
        w0 = self.jnp.zeros(X.shape[-1], X.dtype)
        if self.tight:
            # stop_gradient on X, not on the norm: stop_gradient(norm(X, 2)) still has jax.vjp linearize
            # the SVD (~20x the cost of the whole forward+backward at batch 64, measured).
            s = self.jnp.linalg.norm(self.jax.lax.stop_gradient(X), 2)
            X, y, lam = X / s, y / s, lam / (s * s)
        out = self.solver.run(w0, lam, X, y)
        return out.params, out.state.iter_num


def variants(args, dtype: torch.dtype, skipped: list):
    """Yield (variant, problems to time it on); a peer whose import fails is skipped, with the reason."""
    wanted = set(args.peers)
    makers = []
    if "optlang" in wanted:
        for backend in optlang_backends(args):
            makers.append(("optlang", lambda be=backend: Optlang(dtype, args.device, be, LASSO_OPT), None))
    if "jaxopt" in wanted:
        makers.append(("jaxopt", lambda: JaxoptProximalGradient(dtype, tight=False), None))
        makers.append(("jaxopt", lambda: JaxoptProximalGradient(dtype, tight=True), None))
    if "cvxpylayers" in wanted:
        for solver_args, settings in CVXPYLAYERS_ROWS:
            makers.append(("cvxpylayers", lambda a=solver_args, s=settings: CvxpyLayers(
                dtype, args.n, args.d, a, s, args.threads, lasso_regularizer), args.cvxpylayers_problems))
    yield from build(makers, skipped)
