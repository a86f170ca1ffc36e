"""The methods timed by `ridge.py` (and the shared adapters `lasso_methods.py` builds on).

An adapter has `method`, `settings`, `dtype_name`, `device`; `setup(batch)`
converts the float64 numpy data once (untimed); `forward()` returns w and
`forward_backward()` returns (w, {param: dL/dparam}) for L = sum_i <c_i, w_i>
and every param in PARAMS; `sync(out)` waits for the result; `numpy(t)` brings
one back as float64; `report()` adds method-specific facts to the JSON.

At batch 1 (`batch.unbatched`) every method gets one problem's arrays without
a batch dim (X[n, d], y[n], a scalar lam), as a user with one problem would
call it; otherwise X, y and lam carry a leading batch dim (B, n, d), (B, n), (B,).

The problem is ridge regression:  minimize 0.5 ||X w - y||^2 + 0.5 lam ||w||^2.
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from nnls_methods import TorchVariant, optlang_backends  # dtype, device, sync and numpy plumbing shared with nnls.py

RIDGE_OPT = Path(__file__).resolve().parent.parent / "examples" / "ridge.opt"
PEERS = ("optlang", "torch", "jax", "jaxopt", "cvxpylayers")
PARAMS = ("X", "y", "lam")


def problem_arrays(data):
    """({param: array}, c) of a ridge.Batch, without the batch dim when it is one unbatched problem."""
    params = {"X": data.X, "y": data.y, "lam": data.lam}
    if data.unbatched:
        return {k: v[0] for k, v in params.items()}, data.c[0]
    return params, data.c


# -- torch ---------------------------------------------------------------------------------
class TorchXyLam(TorchVariant):
    """Shared plumbing for methods that take torch tensors: X, y, lam as tensors and as leaves."""

    def setup(self, data) -> None:  # data: a ridge.Batch
        as_t = lambda a: torch.as_tensor(a, dtype=self.torch_dtype, device=self.device)  # noqa: E731
        params, c = problem_arrays(data)
        self.params = {k: as_t(v) for k, v in params.items()}
        self.leaves = {k: v.clone().requires_grad_(True) for k, v in self.params.items()}
        self.c = as_t(c)

    def forward(self):
        with torch.no_grad():
            return self.solve(**self.params)

    def forward_backward(self):
        w = self.solve(**self.leaves)
        grads = torch.autograd.grad((self.c * w).sum(), tuple(self.leaves.values()))
        return w.detach(), dict(zip(self.leaves, grads))


class Optlang(TorchXyLam):
    """An optlang layer compiled from a .opt file with params X, y, lam and var w, at its defaults."""

    method = "optlang"

    def __init__(self, dtype, device, backend: str, path: Path = RIDGE_OPT):
        super().__init__(dtype, device)
        import optlang
        from optlang.solvers.result import default_tol

        self.layer = optlang.compile(path, backend=backend)
        self.solver = _optlang_solver(self.layer)
        solver = f"{self.solver}, " if self.solver else ""
        self.settings = f"{backend} backend, {solver}default tol ({default_tol(dtype):g})"

    def solve(self, X, y, lam):
        self.last = self.layer.solve(X=X, y=y, lam=lam, warn=False)
        return self.last.w

    def report(self) -> dict:
        st = self.last.stats
        out = {"all_converged": st.all_converged, "max_iterations": int(st.iterations.max()),
               "max_residual": float(st.residual.max())}
        solver = getattr(st, "solver", None) or getattr(st, "method", None) or self.solver
        if solver:
            out["solver"] = str(solver)
        return out


def _optlang_solver(layer):
    """The solver optlang picks by default for this layer's problem ("newton", "fista", ...), if it says."""
    try:
        from optlang.passes.select import default_solver

        return str(default_solver(layer.plan, "auto"))
    except Exception:  # an internal API: the benchmark must not depend on it
        return None


class TorchClosedForm(TorchXyLam):
    """w = (X'X + lam I)^{-1} X'y by a Cholesky factorization in PyTorch, gradients by autograd through it."""

    method = "torch"
    settings = "closed form: torch.linalg.cholesky + cholesky_solve, autograd"

    def solve(self, X, y, lam):
        d = X.shape[-1]
        eye = torch.eye(d, dtype=X.dtype, device=X.device)
        M = X.mT @ X + lam[..., None, None] * eye
        L = torch.linalg.cholesky(M)
        return torch.cholesky_solve((X.mT @ y[..., None]), L)[..., 0]


class CvxpyLayers(TorchXyLam):
    """A CvxpyLayer of  0.5 ||X w - y||^2 + reg(w, lam)  with Parameters X, y, lam (DPP); diffcp + SCS by default."""

    method = "cvxpylayers"

    def __init__(self, dtype, n: int, d: int, solver_args: dict, settings: str, jobs: int, regularizer):
        super().__init__(dtype, "cpu")
        self.jobs = jobs  # diffcp's thread pool
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        X, y, lam, w = cp.Parameter((n, d)), cp.Parameter(n), cp.Parameter(nonneg=True), cp.Variable(d)
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X @ w - y) + regularizer(cp, w, lam)))
        assert problem.is_dpp()
        # cvxpylayers builds torch CSR tensors on every call; torch warns about invariant checks each time.
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        self.layer = CvxpyLayer(problem, parameters=[X, y, lam], variables=[w])
        self.solver_args = solver_args
        self.settings = settings

    def solve(self, X, y, lam):
        args = {"n_jobs_forward": self.jobs, "n_jobs_backward": self.jobs, **self.solver_args}
        if not torch.is_grad_enabled():  # diffcp's solve-only path takes no backward options
            args = {k: v for k, v in args.items() if k not in ("mode", "n_jobs_backward")}
        (w,) = self.layer(X, y, lam, solver_args=args)
        return w


def ridge_regularizer(cp, w, lam):
    return 0.5 * lam * cp.sum_squares(w)


# -- JAX -----------------------------------------------------------------------------------
class JaxVariant:
    """Shared plumbing for JAX methods: `self.one(X, y, lam) -> (w, iterations or None)` for one problem,
    run as `jax.jit(one)` on one unbatched problem and `jax.jit(jax.vmap(one))` on a batch; the gradient
    by `jax.vjp` inside the same `jit`."""

    method = "jaxopt"
    device = "cpu"

    def __init__(self, dtype: torch.dtype):
        import jax

        jax.config.update("jax_enable_x64", dtype == torch.float64)
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.float64 = dtype == torch.float64
        self.np_dtype = np.float64 if self.float64 else np.float32
        self.dtype_name = "float64" if self.float64 else "float32"
        self._compiled = {}
        self._iters = None

    def _functions(self, batched: bool):
        if batched not in self._compiled:
            jax = self.jax
            solve = jax.vmap(self.one) if batched else self.one

            def fb(c, X, y, lam):
                w, vjp, iters = jax.vjp(solve, X, y, lam, has_aux=True)
                return w, dict(zip(PARAMS, vjp(c))), iters

            self._compiled[batched] = (jax.jit(solve), jax.jit(fb))
        return self._compiled[batched]

    def setup(self, data) -> None:  # data: a ridge.Batch
        params, c = problem_arrays(data)
        self.params = tuple(self.jnp.asarray(np.asarray(params[k], dtype=self.np_dtype)) for k in PARAMS)
        self.c = self.jnp.asarray(np.asarray(c, dtype=self.np_dtype))
        self._fwd, self._fb = self._functions(not data.unbatched)

    def forward(self):
        w, self._iters = self._fwd(*self.params)
        return w

    def forward_backward(self):
        w, grads, self._iters = self._fb(self.c, *self.params)
        return w, grads

    def sync(self, out) -> None:
        self.jax.block_until_ready(out)

    @staticmethod
    def numpy(a):
        return np.asarray(a, dtype=np.float64)

    def report(self) -> dict:
        if self._iters is None:
            return {}
        iters = np.asarray(self._iters)
        return {"max_iterations": int(iters.max()), "mean_iterations": float(iters.mean())}


class JaxClosedForm(JaxVariant):
    """w = jnp.linalg.solve(X'X + lam I, X'y), gradients by JAX's autodiff through the solve."""

    method = "jax"
    settings = "closed form: jnp.linalg.solve, autodiff"

    def one(self, X, y, lam):
        jnp = self.jnp
        M = X.T @ X + lam * jnp.eye(X.shape[-1], dtype=X.dtype)
        return jnp.linalg.solve(M, X.T @ y), None


class JaxoptLBFGS(JaxVariant):
    """jaxopt.LBFGS on the ridge objective from w = 0, implicit differentiation of grad f(w) = 0.

    Defaults: tol=1e-3 (on ||grad f||), maxiter=500, zoom line search, history 10, backward by
    normal CG at its default tolerance. Tight: tol=1e-10 and maxiter=10000, backward by CG (the
    Hessian X'X + lam I is symmetric positive definite) at tol 1e-12. Tried (n=200, d=50, batch 64):
    tol 1e-8 left the lam gradient off by ~1e-8, tol 1e-10 gets every gradient to ~1e-10 at hardly more
    cost; dividing X, y by ||X||_2 (as nnls.py does for jaxopt) made it worse here.
    """

    def __init__(self, dtype, tight: bool):
        super().__init__(dtype)
        from jaxopt import LBFGS, linear_solve

        jnp = self.jnp

        def f(w, X, y, lam):
            r = X @ w - y
            return 0.5 * jnp.sum(r * r) + 0.5 * lam * jnp.sum(w * w)

        if tight:
            tol, cg_tol = (1e-10, 1e-12) if self.float64 else (1e-5, 1e-6)
            self.solver = LBFGS(fun=f, tol=tol, maxiter=10_000,
                                implicit_diff_solve=partial(linear_solve.solve_cg, tol=cg_tol))
            self.settings = f"LBFGS tol={tol:g}, maxiter=10000, implicit-diff CG tol={cg_tol:g}"
        else:
            self.solver = LBFGS(fun=f)
            self.settings = "LBFGS defaults: tol=1e-3, maxiter=500, zoom line search, implicit-diff normal CG (tol 1e-5)"

    def one(self, X, y, lam):
        out = self.solver.run(self.jnp.zeros(X.shape[-1], X.dtype), X, y, lam)
        return out.params, out.state.iter_num


# -- the rows ------------------------------------------------------------------------------
SCS_TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000, "mode": "dense"}
CVXPYLAYERS_ROWS = (({}, "defaults: SCS eps=1e-4, lsqr derivative"),
                    (SCS_TIGHT, "SCS eps_abs=eps_rel=1e-10, dense derivative"))


def variants(args, dtype: torch.dtype, skipped: list):
    """Yield (variant, problems to time it on); a peer whose import fails is skipped, with the reason."""
    wanted = set(args.peers)
    makers = []
    if "optlang" in wanted:
        for backend in optlang_backends(args):
            makers.append(("optlang", lambda be=backend: Optlang(dtype, args.device, be, RIDGE_OPT), None))
    if "torch" in wanted:
        makers.append(("torch", lambda: TorchClosedForm(dtype, args.device), None))
    if "jax" in wanted:
        makers.append(("jax", lambda: JaxClosedForm(dtype), None))
    if "jaxopt" in wanted:
        makers.append(("jaxopt", lambda: JaxoptLBFGS(dtype, tight=False), None))
        makers.append(("jaxopt", lambda: JaxoptLBFGS(dtype, tight=True), None))
    if "cvxpylayers" in wanted:
        for solver_args, settings in CVXPYLAYERS_ROWS:
            makers.append(("cvxpylayers", lambda a=solver_args, s=settings: CvxpyLayers(
                dtype, args.n, args.d, a, s, args.threads, ridge_regularizer), args.cvxpylayers_problems))
    yield from build(makers, skipped)


def build(makers, skipped: list):
    """Build each (peer, make, limit); an ImportError skips the peer's remaining rows, any other error that row."""
    failed = set()
    for peer, make, limit in makers:
        if peer in failed:
            continue
        try:
            variant = make()
        except ImportError as exc:
            failed.add(peer)
            skipped.append(f"{peer}: skipped, import failed ({exc})")
            continue
        except Exception as exc:  # a peer that cannot even be built must not stop the others
            skipped.append(f"{peer}: one setting skipped, building it failed ({type(exc).__name__}: {exc})")
            continue
        yield variant, limit
