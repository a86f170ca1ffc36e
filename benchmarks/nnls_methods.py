"""The methods timed by `nnls.py`: one adapter per peer and settings, all with the same interface.

An adapter has `method`, `settings`, `dtype_name`, `device`; `setup(batch)`
converts the float64 numpy data once (untimed); `forward()` returns x and
`forward_backward()` returns (x, dL/dA, dL/db) for L = sum_i <c_i, x_i>;
`sync(out)` waits for the result; `numpy(t)` brings one back as float64;
`report()` adds method-specific facts to the JSON.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

NNLS_OPT = Path(__file__).resolve().parent.parent / "examples" / "nnls.opt"
PEERS = ("optlang", "qpth", "cvxpylayers", "jaxopt")


class TorchVariant:
    """Shared plumbing for methods that take torch tensors."""

    def __init__(self, dtype: torch.dtype, device: str):
        self.torch_dtype = dtype
        self.dtype_name = str(dtype).replace("torch.", "")
        self.device = device

    def setup(self, data) -> None:  # data: an nnls.Batch
        as_t = lambda a: torch.as_tensor(a, dtype=self.torch_dtype, device=self.device)  # noqa: E731
        self.A, self.b, self.c = as_t(data.A), as_t(data.b), as_t(data.c)
        self.A_leaf = self.A.clone().requires_grad_(True)
        self.b_leaf = self.b.clone().requires_grad_(True)

    def forward(self):
        with torch.no_grad():
            return self.solve(self.A, self.b)

    def forward_backward(self):
        x = self.solve(self.A_leaf, self.b_leaf)
        gA, gb = torch.autograd.grad((self.c * x).sum(), (self.A_leaf, self.b_leaf))
        return x.detach(), gA, gb

    def sync(self, _out) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    @staticmethod
    def numpy(t):
        return t.detach().to("cpu", torch.float64).numpy()

    def report(self) -> dict:
        return {}


class Optlang(TorchVariant):
    method = "optlang"

    def __init__(self, dtype, device, backend: str):
        super().__init__(dtype, device)
        import optlang
        from optlang.solvers.result import default_tol

        self.layer = optlang.compile(NNLS_OPT, backend=backend)
        self.backend = backend
        self.settings = f"{backend} backend, default tol ({default_tol(dtype):g})"

    def solve(self, A, b):
        self.last = self.layer.solve(A=A, b=b, warn=False)
        return self.last.x

    def report(self) -> dict:
        st = self.last.stats
        return {"all_converged": st.all_converged, "max_iterations": int(st.iterations.max()),
                "max_residual": float(st.residual.max())}


class Qpth(TorchVariant):
    """qpth's batched interior point on Q = A^T A, p = -A^T b, G = -I, h = 0, no equalities."""

    method = "qpth"

    def __init__(self, dtype, device, eps: float, max_iter: int, ridge: float):
        super().__init__(dtype, device)
        from qpth.qp import QPFunction

        self.qp = QPFunction(verbose=-1, eps=eps, maxIter=max_iter)
        self.ridge = ridge
        self.settings = f"PDIPM eps={eps:g}, maxIter={max_iter}" + (f", Q += {ridge:g} I" if ridge else "")

    def solve(self, A, b):
        n = A.shape[-1]
        eye = torch.eye(n, dtype=A.dtype, device=A.device)
        Q = A.transpose(-1, -2) @ A + self.ridge * eye
        p = -(A.transpose(-1, -2) @ b.unsqueeze(-1)).squeeze(-1)
        empty = torch.empty(0, dtype=A.dtype, device=A.device)
        return self.qp(Q, p, -eye, torch.zeros(n, dtype=A.dtype, device=A.device), empty, empty)


class CvxpyLayers(TorchVariant):
    """A CvxpyLayer of the NNLS problem (DPP in A and b); diffcp + SCS by default."""

    method = "cvxpylayers"

    def __init__(self, dtype, m: int, n: int, solver_args: dict, settings: str, jobs: int):
        super().__init__(dtype, "cpu")
        self.jobs = jobs  # diffcp's thread pool
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        A, b, x = cp.Parameter((m, n)), cp.Parameter(m), cp.Variable(n)
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A @ x - b)), [x >= 0])
        assert problem.is_dpp()
        # cvxpylayers builds torch CSR tensors on every call; torch warns about invariant checks each time.
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        self.layer = CvxpyLayer(problem, parameters=[A, b], variables=[x])
        self.solver_args = solver_args
        self.settings = settings

    def solve(self, A, b):
        args = {"n_jobs_forward": self.jobs, "n_jobs_backward": self.jobs, **self.solver_args}
        if not torch.is_grad_enabled():  # diffcp's solve-only path takes no backward options
            args = {k: v for k, v in args.items() if k not in ("mode", "n_jobs_backward")}
        (x,) = self.layer(A, b, solver_args=args)
        return x


class Jaxopt:
    """JAXopt's projected gradient on x >= 0 with implicit diff, jit + vmap over the batch.

    Defaults: `ProjectedGradient(fun, projection_non_negative)` as documented.
    Tight: the same algorithm through `ProximalGradient` with the projection as
    its prox, because jaxopt 0.8.5's ProjectedGradient does not pass
    `implicit_diff_solve` on to the ProximalGradient it wraps (its backward
    always uses normal CG at tol 1e-5); and with a fixed step, because the
    default backtracking stalls near an error of 1e-6 in float64.
    """

    method = "jaxopt"
    device = "cpu"

    def __init__(self, dtype: torch.dtype, tight: bool):
        import jax

        jax.config.update("jax_enable_x64", dtype == torch.float64)
        import jax.numpy as jnp
        from jaxopt import ProjectedGradient, ProximalGradient, linear_solve
        from jaxopt.projection import projection_non_negative
        from jaxopt.prox import make_prox_from_projection

        self.jax, self.jnp = jax, jnp
        self.np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.dtype_name = "float64" if dtype == torch.float64 else "float32"

        def f(x, A, b):
            r = A @ x - b
            return 0.5 * jnp.sum(r * r)

        tol = 1e-12 if dtype == torch.float64 else 1e-6  # float32 cannot get below ~1e-7
        if tight:
            solve = lambda mv, rhs: linear_solve.solve_normal_cg(mv, rhs, tol=tol)  # noqa: E731
            pg = ProximalGradient(fun=f, prox=make_prox_from_projection(projection_non_negative), tol=tol,
                                  maxiter=20000, stepsize=1.0, implicit_diff_solve=solve)
        else:
            pg = ProjectedGradient(fun=f, projection=projection_non_negative)

        def one(A, b):
            x0 = jnp.zeros(A.shape[-1], A.dtype)
            if not tight:
                return pg.run(x0, None, A, b).params
            # Dividing A and b by s = ||A||_2 leaves x unchanged and makes the fixed
            # step 1 equal to 1/L; s needs no gradient, as x(A/s, b/s) = x(A, b) for all s > 0.
            s = jax.lax.stop_gradient(jnp.linalg.norm(A, 2))
            return pg.run(x0, None, A / s, b / s).params

        batched = jax.vmap(one)

        def fb(A, b, c):
            x, vjp = jax.vjp(batched, A, b)
            return (x,) + vjp(c)

        self._fwd, self._fb = jax.jit(batched), jax.jit(fb)
        self.settings = (f"ProximalGradient(prox = projection), A, b scaled by 1/‖A‖₂, fixed step 1, tol={tol:g}, "
                         f"maxiter=20000, normal-CG tol={tol:g}" if tight
                         else "ProjectedGradient defaults: backtracking, tol=1e-3, maxiter=500, normal-CG tol=1e-5")

    def setup(self, data) -> None:  # data: an nnls.Batch
        self.A, self.b, self.c = (self.jnp.asarray(a.astype(self.np_dtype)) for a in (data.A, data.b, data.c))

    def forward(self):
        return self._fwd(self.A, self.b)

    def forward_backward(self):
        return self._fb(self.A, self.b, self.c)

    def sync(self, out) -> None:
        self.jax.block_until_ready(out)

    @staticmethod
    def numpy(a):
        return np.asarray(a, dtype=np.float64)

    def report(self) -> dict:
        return {}


SCS_TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000, "mode": "dense"}


def variants(args, dtype: torch.dtype, skipped: list):
    """Yield (variant, problems to time it on); a peer whose import fails is skipped, with the reason."""
    wanted = set(args.peers)
    makers = []
    if "optlang" in wanted:
        for backend in optlang_backends(args):
            makers.append(("optlang", lambda be=backend: Optlang(dtype, args.device, be), None))
    if "qpth" in wanted:
        makers.append(("qpth", lambda: Qpth(dtype, args.device, 1e-12, 20, args.qpth_ridge), None))
        # Tighter than the defaults (eps=1e-12, maxIter=20): its backward clamps the duals and
        # slacks at 1e-8, which bounds the gradients' accuracy whatever the forward does.
        makers.append(("qpth", lambda: Qpth(dtype, args.device, 1e-14, 50, args.qpth_ridge), None))
    if "cvxpylayers" in wanted:
        makers.append(("cvxpylayers", lambda: CvxpyLayers(dtype, args.m, args.n, {}, "defaults: SCS eps=1e-4, lsqr derivative",
                                                          args.threads),
                       args.cvxpylayers_problems))
        makers.append(("cvxpylayers", lambda: CvxpyLayers(dtype, args.m, args.n, SCS_TIGHT,
                                                          "SCS eps_abs=eps_rel=1e-10, dense derivative", args.threads),
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


def optlang_backends(args):
    if args.backend == "auto":
        return ("triton", "torch") if args.device.startswith("cuda") else ("torch",)
    return ("triton", "torch") if args.backend == "both" else (args.backend,)
