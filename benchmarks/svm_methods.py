"""The methods timed by `svm.py`: one adapter per peer and settings, all with the same interface.

An adapter has `method`, `settings`, `dtype_name`, `device`; `setup(batch)`
converts the float64 numpy data once (untimed; a batch of 1 becomes one
unbatched problem); `forward()` returns {"W": W, "beta": beta} and
`forward_backward()` returns ({"W": W, "beta": beta}, {"X": dL/dX, "lam": dL/dlam})
for L = sum_i <C_i, W_i>, where W = X'(Y - beta)/lam is computed from the method's
dual solution beta (qpth, which solves the primal, returns W itself and beta None);
`sync(out)` waits for the result; `numpy(t)` brings one back as float64;
`report()` adds method-specific facts to the JSON.

The problem is the multiclass (Crammer-Singer) SVM dual of examples/svm.opt,
    minimize 0.5/lam ||X'(Y - beta)||^2 + <beta, Y>   s.t.  each row of beta in the simplex,
with X (m x d) the features, Y (m x k) the one-hot labels, lam > 0.
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

from nnls_methods import TorchVariant, optlang_backends  # dtype, device, sync and numpy plumbing shared with nnls.py

SVM_OPT = Path(__file__).resolve().parent.parent / "examples" / "svm.opt"
PEERS = ("optlang", "qpth", "cvxpylayers", "jaxopt")
PARAMS = ("X", "lam")  # differentiated; Y holds labels and is not


def primal_weights(X, Y, beta, lam):
    """W = X'(Y - beta) / lam, batched over leading dims (lam has the batch shape)."""
    return X.transpose(-1, -2) @ (Y - beta) / lam[..., None, None]


class TorchSVM(TorchVariant):
    """Shared plumbing for methods that take torch tensors: X and lam as tensors and as leaves."""

    def setup(self, data) -> None:  # data: an svm.Batch
        cut = (lambda a: a[0]) if data.unbatched else (lambda a: a)  # noqa: E731
        as_t = lambda a: torch.as_tensor(cut(a), dtype=self.torch_dtype, device=self.device)  # noqa: E731
        self.X, self.Y, self.lam, self.C = as_t(data.X), as_t(data.Y), as_t(data.lam), as_t(data.C)
        self.X_leaf = self.X.clone().requires_grad_(True)
        self.lam_leaf = self.lam.clone().requires_grad_(True)

    def weights(self, X, Y, lam):
        """(W, beta): the dual methods solve for beta and map it to W."""
        beta = self.solve(X, Y, lam)
        return primal_weights(X, Y, beta, lam), beta

    def forward(self):
        with torch.no_grad():
            W, beta = self.weights(self.X, self.Y, self.lam)
        return {"W": W, "beta": beta}

    def forward_backward(self):
        W, beta = self.weights(self.X_leaf, self.Y, self.lam_leaf)
        gX, glam = torch.autograd.grad((self.C * W).sum(), (self.X_leaf, self.lam_leaf))
        return {"W": W.detach(), "beta": None if beta is None else beta.detach()}, {"X": gX, "lam": glam}

    @staticmethod
    def numpy(t):
        return None if t is None else t.detach().to("cpu", torch.float64).numpy()


class Optlang(TorchSVM):
    """`examples/svm.opt` as compiled by optlang, at its defaults."""

    method = "optlang"

    def __init__(self, dtype, device, backend: str):
        super().__init__(dtype, device)
        import optlang
        from optlang.solvers.result import default_tol

        self.layer = optlang.compile(SVM_OPT, backend=backend)
        self.settings = f"{backend} backend, default tol ({default_tol(dtype):g})"

    def solve(self, X, Y, lam):
        self.last = self.layer.solve(X=X, Y=Y, lam=lam, warn=False)
        return self.last.beta

    def report(self) -> dict:
        st = self.last.stats
        return {"all_converged": bool(st.all_converged), "max_iterations": int(st.iterations.max()),
                "mean_iterations": float(st.iterations.double().mean()), "max_residual": float(st.residual.max())}


class Qpth(TorchSVM):
    """qpth's batched interior point on the *primal* QP in z = (vec W, xi):

        minimize lam/2 ||W||^2 + sum(xi) + ridge/2 ||xi||^2
        s.t.     x_i'W (e_j - e_{y_i}) - xi_i <= Y_ij - 1   for every sample i and class j.

    qpth needs Q positive definite; the dual's Q = kron(XX', I_k)/lam has rank
    <= d*k (100 of 500 here), and with a ridge small enough not to move the
    solution qpth's PDIPM returned W off by 100% (ridge 1e-8, 1e-10), with 1e-6
    W was off by 6e-7 and the gradients by 14% to 55%. The primal's Q is
    diag(lam I, ridge I): only the slacks xi need the ridge, which moves W by
    O(ridge). Its constraint multipliers are beta, which qpth does not return.
    """

    method = "qpth"

    def __init__(self, dtype, device, eps: float, max_iter: int, ridge: float):
        super().__init__(dtype, device)
        from qpth.qp import QPFunction

        self.qp = QPFunction(verbose=-1, eps=eps, maxIter=max_iter)
        self.ridge = ridge
        self.settings = f"primal QP, PDIPM eps={eps:g}, maxIter={max_iter}, ridge {ridge:g} on the slacks"

    def weights(self, X, Y, lam):
        m, d = X.shape[-2:]
        k = Y.shape[-1]
        lead = X.shape[:-2]
        opts = {"dtype": X.dtype, "device": X.device}
        diff = torch.eye(k, **opts) - Y[..., :, None, :]  # (..., m, k, k): row j is e_j - e_{y_i}
        Gw = (X[..., :, None, :, None] * diff[..., :, :, None, :]).reshape(*lead, m * k, d * k)
        Gxi = -torch.eye(m, **opts).repeat_interleave(k, dim=0).expand(*lead, m * k, m)
        G = torch.cat([Gw, Gxi], -1)
        h = (Y - 1).reshape(*lead, m * k)
        Q = torch.diag_embed(torch.cat([lam[..., None].expand(*lead, d * k),
                                        torch.full((*lead, m), self.ridge, **opts)], -1))
        q = torch.cat([torch.zeros(d * k, **opts), torch.ones(m, **opts)]).expand(*lead, d * k + m)
        empty = torch.empty(0, **opts)
        z = self.qp(Q, q, G, h, empty, empty)  # (B, n), B = 1 for one unbatched problem
        W = z[..., : d * k].reshape(*lead, d, k) if lead else z[0, : d * k].reshape(d, k)
        return W, None


class CvxpyLayers(TorchSVM):
    """A CvxpyLayer of the dual with the primal weights as an auxiliary variable (DPP):

        minimize lam/2 ||W||^2 + <Y, beta>  s.t.  lam W = XY - X'beta,  beta >= 0,  beta 1 = 1

    with parameters X, XY = X'Y, Y, lam (XY is computed by torch inside the timed
    call: X'(Y - beta) with both X and Y parameters is not DPP). W is then
    recomputed from the returned beta as for every method.
    """

    method = "cvxpylayers"

    def __init__(self, dtype, m: int, d: int, k: int, solver_args: dict, settings: str, jobs: int):
        super().__init__(dtype, "cpu")
        self.jobs = jobs  # diffcp's thread pool
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        X, XY, Y, lam = cp.Parameter((m, d)), cp.Parameter((d, k)), cp.Parameter((m, k)), cp.Parameter(nonneg=True)
        beta, W = cp.Variable((m, k)), cp.Variable((d, k))
        problem = cp.Problem(cp.Minimize(lam / 2 * cp.sum_squares(W) + cp.sum(cp.multiply(Y, beta))),
                             [lam * W == XY - X.T @ beta, beta >= 0, cp.sum(beta, axis=1) == 1])
        assert problem.is_dpp()
        # cvxpylayers builds torch CSR tensors on every call; torch warns about invariant checks each time.
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        self.layer = CvxpyLayer(problem, parameters=[X, XY, Y, lam], variables=[beta])
        self.solver_args = solver_args
        self.settings = settings

    def solve(self, X, Y, lam):
        args = {"n_jobs_forward": self.jobs, "n_jobs_backward": self.jobs, **self.solver_args}
        if not torch.is_grad_enabled():  # diffcp's solve-only path takes no backward options
            args = {k: v for k, v in args.items() if k not in ("mode", "n_jobs_backward")}
        (beta,) = self.layer(X, X.transpose(-1, -2) @ Y, Y, lam, solver_args=args)
        return beta


class Jaxopt:
    """JAXopt's block coordinate descent on the dual, as in the JAXopt paper and its
    multiclass_linear_svm example: `BlockCoordinateDescent(fun=objective.multiclass_linear_svm_dual,
    block_prox=prox.make_prox_from_projection(projection.projection_simplex))`, started at
    beta = 1/k, implicit differentiation of its fixed point; `jax.jit(jax.vmap(...))` over the
    batch (no vmap for one unbatched problem), gradients by `jax.vjp` inside one `jit`.

    jaxopt 0.8.5's `multiclass_linear_svm_dual.columnwise_lipschitz_const` returns ||x_i||^2,
    not ||x_i||^2 / lam, so BCD's steps are lam times 1/L: exact only at lam = 1.
    """

    method = "jaxopt"
    device = "cpu"

    def __init__(self, dtype: torch.dtype, tight: bool):
        import jax

        jax.config.update("jax_enable_x64", dtype == torch.float64)
        import jax.numpy as jnp
        from jaxopt import BlockCoordinateDescent, linear_solve, objective, projection, prox

        self.jax, self.jnp = jax, jnp
        self.np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.dtype_name = "float64" if dtype == torch.float64 else "float32"
        block_prox = prox.make_prox_from_projection(projection.projection_simplex)
        fun = objective.multiclass_linear_svm_dual
        if tight:
            # tol 1e-9 left the gradients at ~1e-6, 1e-10 reaches ~2e-9; solve_lu and GMRES backward
            # solves gave the same accuracy, slower.
            tol, cg_tol = (1e-10, 1e-12) if dtype == torch.float64 else (1e-5, 1e-6)
            solver = BlockCoordinateDescent(fun=fun, block_prox=block_prox, tol=tol, maxiter=TIGHT_MAXITER,
                                            implicit_diff_solve=partial(linear_solve.solve_normal_cg, tol=cg_tol,
                                                                        maxiter=TIGHT_MAXITER))
            self.settings = (f"BlockCoordinateDescent tol={tol:g}, maxiter={TIGHT_MAXITER}, "
                             f"implicit-diff normal CG tol={cg_tol:g}")
        else:
            solver = BlockCoordinateDescent(fun=fun, block_prox=block_prox)
            self.settings = "BlockCoordinateDescent defaults: tol=1e-4, maxiter=500, implicit-diff normal CG (tol 1e-5)"

        def one(X, Y, lam):
            beta0 = jnp.ones(Y.shape, X.dtype) / Y.shape[-1]
            out = solver.run(beta0, 1.0, lam, (X, Y))  # hyperparams_prox = 1.0: the simplex's sum
            beta = out.params
            return (X.T @ (Y - beta) / lam, beta), out.state.iter_num

        self._one, self._batched = one, jax.vmap(one)

        def fwd(X, Y, lam, unbatched):
            return (one if unbatched else self._batched)(X, Y, lam)

        def fb(X, Y, lam, C, unbatched):
            f = one if unbatched else self._batched
            (W, beta), vjp, iters = jax.vjp(lambda X_, lam_: f(X_, Y, lam_), X, lam, has_aux=True)
            gX, glam = vjp((C, jnp.zeros_like(beta)))
            return W, beta, gX, glam, iters

        self._fwd = jax.jit(fwd, static_argnums=3)
        self._fb = jax.jit(fb, static_argnums=4)

    def setup(self, data) -> None:  # data: an svm.Batch
        self.unbatched = data.unbatched
        cut = (lambda a: a[0]) if data.unbatched else (lambda a: a)  # noqa: E731
        self.X, self.Y, self.lam, self.C = (self.jnp.asarray(cut(a).astype(self.np_dtype))
                                            for a in (data.X, data.Y, data.lam, data.C))

    def forward(self):
        (W, beta), self._iters = self._fwd(self.X, self.Y, self.lam, self.unbatched)
        return {"W": W, "beta": beta}

    def forward_backward(self):
        W, beta, gX, glam, self._iters = self._fb(self.X, self.Y, self.lam, self.C, self.unbatched)
        return {"W": W, "beta": beta}, {"X": gX, "lam": glam}

    def sync(self, out) -> None:
        self.jax.block_until_ready(out)

    @staticmethod
    def numpy(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    def report(self) -> dict:
        iters = np.asarray(self._iters)
        return {"max_iterations": int(iters.max()), "mean_iterations": float(iters.mean())}


TIGHT_MAXITER = 20_000
SCS_TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000, "mode": "dense"}


def variants(args, dtype: torch.dtype, skipped: list):
    """Yield (variant, problems to time it on); a peer whose import fails is skipped, with the reason."""
    wanted = set(args.peers)
    makers = []
    if "optlang" in wanted:
        for backend in optlang_backends(args):
            makers.append(("optlang", lambda be=backend: Optlang(dtype, args.device, be), None))
    if "qpth" in wanted:
        # One row: eps=1e-14, maxIter=50 gave the same errors (its backward clamps duals and slacks at
        # 1e-8, which bounds the gradients' accuracy) and costs ~1.5x more.
        makers.append(("qpth", lambda: Qpth(dtype, args.device, 1e-12, 20, args.qpth_ridge), None))
    if "cvxpylayers" in wanted:
        shape = (args.m, args.d, args.k)
        rows = [({}, "defaults: SCS eps=1e-4, lsqr derivative"),
                (SCS_TIGHT, "SCS eps_abs=eps_rel=1e-10, dense derivative")]
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
