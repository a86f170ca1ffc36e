"""The methods timed by `qp.py`: one adapter per peer and settings, all with the same interface.

An adapter has `method`, `settings`, `dtype_name`, `device`; `setup(batch)`
converts the float64 numpy data once (untimed); `forward()` returns z and
`forward_backward()` returns (z, {param: dL/dparam}) for L = sum_i <w_i, z_i>
and every param in PARAMS; `sync(out)` waits for the result; `numpy(t)` brings
one back as float64; `report()` adds method-specific facts to the JSON.

The problem is OptNet's:  minimize 0.5 z'Qz + c'z  s.t.  G z <= h,  A z = b.
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from nnls_methods import TorchVariant  # dtype, device, sync and numpy plumbing shared with nnls.py

QP_OPT = Path(__file__).resolve().parent.parent / "examples" / "qp.opt"
PEERS = ("optlang", "qpth", "cvxpylayers", "jaxopt")
PARAMS = ("Q", "c", "G", "h", "A", "b")


class TorchQP(TorchVariant):
    """Shared plumbing for methods that take torch tensors: the six params as tensors and as leaves."""

    def setup(self, data) -> None:  # data: a qp.Batch
        as_t = lambda a: torch.as_tensor(a, dtype=self.torch_dtype, device=self.device)  # noqa: E731
        self.params = {k: as_t(data.params[k]) for k in PARAMS}
        self.leaves = {k: v.clone().requires_grad_(True) for k, v in self.params.items()}
        self.w = as_t(data.w)

    def forward(self):
        with torch.no_grad():
            return self.solve(**self.params)

    def forward_backward(self):
        z = self.solve(**self.leaves)
        grads = torch.autograd.grad((self.w * z).sum(), tuple(self.leaves.values()))
        return z.detach(), dict(zip(self.leaves, grads))


class Optlang(TorchQP):
    """`examples/qp.opt`: batched Mehrotra interior point, IFT backward on the KKT system."""

    method = "optlang"

    def __init__(self, dtype, device, backend: str, tol: float | None):
        super().__init__(dtype, device)
        import optlang
        from optlang.solvers.result import default_tol

        self.layer = optlang.compile(QP_OPT, backend=backend)
        self.options = {} if tol is None else {"tol": tol}
        shown = f"default tol ({default_tol(dtype):g})" if tol is None else f"tol={tol:g}"
        self.settings = f"{backend} backend, IPM, {shown}"

    def solve(self, **params):
        self.last = self.layer.solve(**params, warn=False, **self.options)
        return self.last.z

    def report(self) -> dict:
        st = self.last.stats
        return {"all_converged": st.all_converged, "max_iterations": int(st.iterations.max()),
                "mean_iterations": float(st.iterations.double().mean()), "max_residual": float(st.residual.max()),
                "lam": self.numpy(self.last.duals["ineq"]), "nu": self.numpy(self.last.duals["eq"])}


class Qpth(TorchQP):
    """qpth's QPFunction (batched primal-dual interior point, OptNet's layer)."""

    method = "qpth"

    def __init__(self, dtype, device, eps: float, max_iter: int):
        super().__init__(dtype, device)
        from qpth.qp import QPFunction

        self.qp = QPFunction(verbose=-1, eps=eps, maxIter=max_iter)
        self.settings = f"PDIPM eps={eps:g}, maxIter={max_iter}"

    def solve(self, Q, c, G, h, A, b):
        return self.qp(Q, c, G, h, A, b)


class CvxpyLayers(TorchQP):
    """A CvxpyLayer of the QP with Q = L L' entering as 0.5 ||L' z||^2 (DPP in L, c, G, h, A, b).

    diffcp (cvxpylayers' CPU default) takes no parametric quadratic objective:
    quad_form(z, Q) with Q a Parameter is not DPP there, so the layer is
    parametrized by L = cholesky(Q), computed by torch inside the timed call
    (so the gradient reaches Q through the Cholesky factor's backward).
    """

    method = "cvxpylayers"

    def __init__(self, dtype, n: int, m: int, p: int, solver_args: dict, settings: str, jobs: int):
        super().__init__(dtype, "cpu")
        self.jobs = jobs  # diffcp's thread pool
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        L, c, G, h, A, b = (cp.Parameter((n, n)), cp.Parameter(n), cp.Parameter((m, n)), cp.Parameter(m),
                            cp.Parameter((p, n)), cp.Parameter(p))
        z = cp.Variable(n)
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(L.T @ z) + c @ z), [G @ z <= h, A @ z == b])
        assert problem.is_dpp()
        # cvxpylayers builds torch CSR tensors on every call; torch warns about invariant checks each time.
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        self.layer = CvxpyLayer(problem, parameters=[L, c, G, h, A, b], variables=[z])
        self.solver_args = solver_args
        self.settings = settings

    def solve(self, Q, c, G, h, A, b):
        args = {"n_jobs_forward": self.jobs, "n_jobs_backward": self.jobs, **self.solver_args}
        if not torch.is_grad_enabled():  # diffcp's solve-only path takes no backward options
            args = {k: v for k, v in args.items() if k not in ("mode", "n_jobs_backward")}
        (z,) = self.layer(torch.linalg.cholesky(Q), c, G, h, A, b, solver_args=args)
        return z


class Jaxopt:
    """JAXopt's OSQP (ADMM on the box form, implicit diff of its KKT conditions), jit + vmap over the batch."""

    method = "jaxopt"
    device = "cpu"

    def __init__(self, dtype: torch.dtype, tight: bool):
        import jax

        jax.config.update("jax_enable_x64", dtype == torch.float64)
        import jax.numpy as jnp
        from jaxopt import OSQP, linear_solve

        self.jax, self.jnp = jax, jnp
        self.np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.dtype_name = "float64" if dtype == torch.float64 else "float32"
        if tight:
            # solve_lu cannot take OSQP's pytree (KKTSolution) system; GMRES at 1e-12 gave O(1) errors.
            tol = 1e-10 if dtype == torch.float64 else 1e-5
            cg_tol = 1e-12 if dtype == torch.float64 else 1e-6
            solve = partial(linear_solve.solve_normal_cg, tol=cg_tol, maxiter=10_000)
            solver = OSQP(tol=tol, maxiter=TIGHT_OSQP_MAXITER, eq_qp_solve="lu", implicit_diff_solve=solve)
            self.settings = (f"OSQP tol={tol:g}, maxiter={TIGHT_OSQP_MAXITER}, eq_qp_solve=lu, "
                             f"implicit-diff normal CG tol={cg_tol:g}")
        else:
            solver = OSQP()
            self.settings = "OSQP defaults: tol=1e-3, maxiter=4000, eq_qp_solve=cg, implicit-diff normal CG (tol 1e-5)"

        def one(Q, c, G, h, A, b):
            out = solver.run(params_obj=(Q, c), params_eq=(A, b), params_ineq=(G, h))
            return out.params.primal, out.state.iter_num

        batched = jax.vmap(one)

        def fwd(*params):
            return batched(*params)

        def fb(w, *params):
            z, vjp, iters = jax.vjp(batched, *params, has_aux=True)
            return (z, vjp(w), iters)

        self._fwd, self._fb = jax.jit(fwd), jax.jit(fb)

    def setup(self, data) -> None:  # data: a qp.Batch
        self.params = tuple(self.jnp.asarray(data.params[k].astype(self.np_dtype)) for k in PARAMS)
        self.w = self.jnp.asarray(data.w.astype(self.np_dtype))

    def forward(self):
        z, self._iters = self._fwd(*self.params)
        return z

    def forward_backward(self):
        z, grads, self._iters = self._fb(self.w, *self.params)
        return z, dict(zip(PARAMS, grads))

    def sync(self, out) -> None:
        self.jax.block_until_ready(out)

    @staticmethod
    def numpy(a):
        return np.asarray(a, dtype=np.float64)

    def report(self) -> dict:
        iters = np.asarray(self._iters)
        return {"max_iterations": int(iters.max()), "mean_iterations": float(iters.mean())}


TIGHT_OSQP_MAXITER = 100_000
SCS_TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000, "mode": "dense"}


def variants(args, dtype: torch.dtype, skipped: list):
    """Yield (variant, problems to time it on); a peer whose import fails is skipped, with the reason."""
    wanted = set(args.peers)
    makers = []
    if "optlang" in wanted:
        for tol in (None, *args.optlang_tol):
            makers.append(("optlang", lambda t=tol: Optlang(dtype, args.device, "torch", t), None))
    if "qpth" in wanted:
        makers.append(("qpth", lambda: Qpth(dtype, args.device, 1e-12, 20), None))
        makers.append(("qpth", lambda: Qpth(dtype, args.device, 1e-14, 50), None))
    if "cvxpylayers" in wanted:
        shape = (args.n, args.m, args.p)
        rows = [({}, "defaults: SCS eps=1e-4, lsqr derivative"),
                (SCS_TIGHT, "SCS eps_abs=eps_rel=1e-10, dense derivative")]
        # Not timed: diffcp's Clarabel (solve_method="Clarabel"): on this SOC form it ends "AlmostSolved"
        # on some problems whatever its tolerances (1e-9: z off by up to 3e-5), SCS at 1e-10 does not.
        for solver_args, settings in rows:
            makers.append(("cvxpylayers", lambda a=solver_args, s=settings: CvxpyLayers(dtype, *shape, a, s, args.threads),
                           args.cvxpylayers_problems))
    if "jaxopt" in wanted:
        makers.append(("jaxopt", lambda: Jaxopt(dtype, tight=False), None))
        makers.append(("jaxopt", lambda: Jaxopt(dtype, tight=True), None))
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
