"""Time and check batched sparsemax: optlang against a closed form in PyTorch, JAXopt and cvxpylayers.

For a batch of projections onto the probability simplex (examples/sparsemax.opt,
Martins & Astudillo 2016)
    sparsemax(v) = argmin_x 0.5 ||x - v||^2  s.t.  x >= 0,  sum(x) = 1     (v in R^n)
it times the forward solve alone and the forward solve plus the gradient of the
loss  sum_i <c_i, x_i>  with respect to v, and measures every method's accuracy
against a float64 reference in numpy (independent of optlang): the sort-based
closed form and its closed-form backward (checked against finite differences
before anything is timed).

Rows: optlang's default (backward "auto": CG on the simplex's free set) and
backward="direct" (a dense LU of the n x n fixed-point Jacobian per problem, the
old default); the hand-written sort-based projection with its closed-form backward
in PyTorch; jaxopt.projection.projection_simplex under jit + vmap with jax.vjp;
cvxpylayers at its defaults and tight (on --cvxpylayers-problems problems, scaled).
Each peer is optional: one whose import fails is skipped with the reason.
Run `python benchmarks/sparsemax.py --help` for the options; see benchmarks/README.md.
Timing, thread control and formatting come from nnls.py, `Row`, `measure` and `table` from svm.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import nnls, svm` from elsewhere
from nnls import fmt_err, machine, warn_if_busy  # noqa: E402
from nnls_methods import TorchVariant, optlang_backends  # noqa: E402
from svm import measure, progress, table, thread_limits, write_results  # noqa: E402

SPARSEMAX_OPT = Path(__file__).resolve().parent.parent / "examples" / "sparsemax.opt"
PEERS = ("optlang", "torch", "cvxpylayers", "jaxopt")
PARAMS = ("v",)


# -- data and the reference ----------------------------------------------------------------
@dataclass
class Batch:
    """One batch of problems in float64 numpy and its reference; `unbatched`: a batch of 1 given
    to the methods as one problem without a batch dimension."""

    v: np.ndarray  # (B, n)
    c: np.ndarray  # (B, n): the loss is sum_i <c_i, x_i>
    unbatched: bool = False
    ref: dict = None  # "x": (B, n)
    grads: dict = None  # "v": (B, n)
    margin: float = None  # the smallest of min x on the support and min (tau - v) off it
    stats: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.v.shape[0]

    def head(self, k: int) -> "Batch":
        cut = lambda d: None if d is None else {name: a[:k] for name, a in d.items()}  # noqa: E731
        return Batch(self.v[:k], self.c[:k], self.unbatched and k == 1, cut(self.ref), cut(self.grads),
                     self.margin, self.stats)


def make_batch(batch: int, n: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(rng.standard_normal((batch, n)), rng.standard_normal((batch, n)), unbatched=batch == 1)


def reference(v: np.ndarray, c: np.ndarray):
    """Sparsemax by sorting (Held et al. 1974) and the gradient of <c, x> w.r.t. v, batched over rows.

    With z = v sorted decreasingly, the support size is rho = max{j: z_j - (sum_{i<=j} z_i - 1)/j > 0},
    tau = (sum_{i<=rho} z_i - 1)/rho and x = max(v - tau, 0). On the support S the Jacobian is
    dx/dv = diag(s) - s s'/|S| (s the indicator of S), so d<c, x>/dv = s * (c - <s, c>/|S|)
    (valid while S does not change: strict complementarity, x_S > 0 and v < tau off S).
    """
    n = v.shape[-1]
    z = -np.sort(-v, axis=-1)
    cumulative = np.cumsum(z, axis=-1) - 1
    rho = ((z - cumulative / np.arange(1, n + 1)) > 0).sum(-1, keepdims=True)
    tau = np.take_along_axis(cumulative, rho - 1, axis=-1) / rho
    x = np.maximum(v - tau, 0.0)
    s = (v > tau).astype(v.dtype)
    grad = s * (c - (s * c).sum(-1, keepdims=True) / s.sum(-1, keepdims=True))
    on = np.where(s > 0, x, np.inf).min(-1)
    off = np.where(s > 0, np.inf, tau - v).min(-1)
    return x, grad, np.minimum(on, off), rho[..., 0]


def attach_reference(data: Batch) -> None:
    x, g, margin, rho = reference(data.v, data.c)
    data.ref, data.grads, data.margin = {"x": x}, {"v": g}, float(margin.min())
    data.stats["support"] = (int(rho.min()), float(rho.mean()), int(rho.max()))


def self_check(n: int, seed: int, problems: int = 8) -> float:
    """Central finite differences of the closed-form solution vs its closed-form gradient."""
    rng = np.random.default_rng(seed + 1)
    v, c = rng.standard_normal((problems, n)), rng.standard_normal((problems, n))
    grad = reference(v, c)[1]
    worst = 0.0
    for _ in range(3):
        dv, step = rng.standard_normal((problems, n)), 1e-6
        fd = ((c * reference(v + step * dv, c)[0]).sum(-1) - (c * reference(v - step * dv, c)[0]).sum(-1)) / (2 * step)
        exact = (grad * dv).sum(-1)
        worst = max(worst, float((np.abs(fd - exact) / np.maximum(np.abs(exact), 1e-12)).max()))
    return worst


# -- the methods ---------------------------------------------------------------------------
class TorchSparsemax(TorchVariant):
    """Shared plumbing for methods that take torch tensors."""

    def setup(self, data) -> None:  # data: a Batch
        cut = (lambda a: a[0]) if data.unbatched else (lambda a: a)  # noqa: E731
        as_t = lambda a: torch.as_tensor(cut(a), dtype=self.torch_dtype, device=self.device)  # noqa: E731
        self.v, self.c = as_t(data.v), as_t(data.c)
        self.v_leaf = self.v.clone().requires_grad_(True)

    def forward(self):
        with torch.no_grad():
            return {"x": self.solve(self.v)}

    def forward_backward(self):
        x = self.solve(self.v_leaf)
        (g,) = torch.autograd.grad((self.c * x).sum(), (self.v_leaf,))
        return {"x": x.detach()}, {"v": g}


class Optlang(TorchSparsemax):
    """`examples/sparsemax.opt` as compiled by optlang; `backward` as the per-call option."""

    method = "optlang"

    def __init__(self, dtype, device, backend: str, backward: str):
        super().__init__(dtype, device)
        import optlang
        from optlang.solvers.result import default_tol

        self.layer = optlang.compile(SPARSEMAX_OPT, backend=backend)
        self.options = {} if backward == "auto" else {"backward": backward}
        how = ('backward "auto" (default: CG on the free set)' if backward == "auto"
               else f'backward="{backward}" (dense LU of the n×n Jacobian)')
        self.settings = f"{backend} backend, default tol ({default_tol(dtype):g}), {how}"

    def solve(self, v):
        self.last = self.layer.solve(v=v, warn=False, **self.options)
        return self.last.x

    def report(self) -> dict:
        st = self.last.stats
        return {"all_converged": bool(st.all_converged), "max_iterations": int(st.iterations.max()),
                "mean_iterations": float(st.iterations.double().mean()), "max_residual": float(st.residual.max())}


def closed_form(v: torch.Tensor) -> torch.Tensor:
    """The projection onto the simplex by sorting, batched over the leading dims."""
    z, _ = torch.sort(v, dim=-1, descending=True)
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    cumulative = z.cumsum(-1) - 1
    size = ((z - cumulative / k) > 0).sum(-1, keepdim=True)
    tau = cumulative.gather(-1, size - 1) / size.to(v.dtype)
    return torch.relu(v - tau)


class ClosedFormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):
        x = closed_form(v)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = (x > 0).to(g.dtype)
        return s * (g - (s * g).sum(-1, keepdim=True) / s.sum(-1, keepdim=True))


class TorchClosed(TorchSparsemax):
    method = "torch"
    settings = "sort-based closed form, closed-form backward (hand-written autograd.Function)"

    def solve(self, v):
        return ClosedFormFn.apply(v)


class CvxpyLayers(TorchSparsemax):
    """A CvxpyLayer of min 0.5 ||x - v||^2 s.t. x >= 0, sum(x) = 1 (DPP in v); diffcp + SCS."""

    method = "cvxpylayers"

    def __init__(self, dtype, n: int, solver_args: dict, settings: str, jobs: int):
        super().__init__(dtype, "cpu")
        self.jobs = jobs  # diffcp's thread pool
        import cvxpy as cp
        from cvxpylayers.torch import CvxpyLayer

        v, x = cp.Parameter(n), cp.Variable(n)
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - v)), [x >= 0, cp.sum(x) == 1])
        assert problem.is_dpp()
        # cvxpylayers builds torch CSR tensors on every call; torch warns about invariant checks each time.
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        self.layer = CvxpyLayer(problem, parameters=[v], variables=[x])
        self.solver_args = solver_args
        self.settings = settings

    def solve(self, v):
        args = {"n_jobs_forward": self.jobs, "n_jobs_backward": self.jobs, **self.solver_args}
        if not torch.is_grad_enabled():  # diffcp's solve-only path takes no backward options
            args = {k: val for k, val in args.items() if k not in ("mode", "n_jobs_backward")}
        (x,) = self.layer(v, solver_args=args)
        return x


class Jaxopt:
    """jaxopt.projection.projection_simplex (sort-based, exact), jax.jit(jax.vmap(...)) over the
    batch (no vmap for one unbatched problem), the gradient by jax.vjp inside the same jit."""

    method = "jaxopt"
    device = "cpu"
    settings = "projection.projection_simplex (sort-based), jit + vmap, jax.vjp"

    def __init__(self, dtype: torch.dtype):
        import jax

        jax.config.update("jax_enable_x64", dtype == torch.float64)
        import jax.numpy as jnp
        from jaxopt.projection import projection_simplex

        self.jax, self.jnp = jax, jnp
        self.np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.dtype_name = "float64" if dtype == torch.float64 else "float32"

        def project(v, unbatched):
            return projection_simplex(v) if unbatched else jax.vmap(projection_simplex)(v)

        def fb(v, c, unbatched):
            x, vjp = jax.vjp(lambda a: project(a, unbatched), v)
            return x, vjp(c)[0]

        self._fwd = jax.jit(project, static_argnums=1)
        self._fb = jax.jit(fb, static_argnums=2)

    def setup(self, data) -> None:
        self.unbatched = data.unbatched
        cut = (lambda a: a[0]) if data.unbatched else (lambda a: a)  # noqa: E731
        self.v, self.c = (self.jnp.asarray(cut(a).astype(self.np_dtype)) for a in (data.v, data.c))

    def forward(self):
        return {"x": self._fwd(self.v, self.unbatched)}

    def forward_backward(self):
        x, g = self._fb(self.v, self.c, self.unbatched)
        return {"x": x}, {"v": g}

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
            for backward in ("auto", "direct"):
                makers.append(("optlang", lambda be=backend, bw=backward: Optlang(dtype, args.device, be, bw), None))
    if "torch" in wanted:
        makers.append(("torch", lambda: TorchClosed(dtype, args.device), None))
    if "cvxpylayers" in wanted:
        rows = [({}, "defaults: SCS eps=1e-4, lsqr derivative"),
                (SCS_TIGHT, "SCS eps_abs=eps_rel=1e-10, dense derivative")]
        for solver_args, settings in rows:
            makers.append(("cvxpylayers", lambda a=solver_args, s=settings: CvxpyLayers(dtype, args.n, a, s, args.threads),
                           args.cvxpylayers_problems))
    if "jaxopt" in wanted:
        makers.append(("jaxopt", lambda: Jaxopt(dtype), None))
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


# -- main ----------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1024], help="batch sizes, one table each (1: one unbatched problem)")
    p.add_argument("--n", type=int, default=100, help="the size of v and x")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", default="cpu",
                   help="device for optlang and the PyTorch closed form (cvxpylayers and JAXopt stay on CPU)")
    p.add_argument("--backend", choices=("auto", "torch", "triton", "both"), default="auto",
                   help="optlang backend: auto = torch on CPU, triton and torch on CUDA")
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    p.add_argument("--reps", type=int, default=10, help="timed repetitions at most (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (JIT compiles, caches)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds per measurement after which reps stop (never under 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for torch (set_num_threads), BLAS/OpenMP (threadpoolctl), diffcp's pool, and XLA (1 = single-threaded)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time, all threads (with --threads 1, a stand-in "
                        "for the wall time of an idle machine when others share the CPU; meaningless on GPU)")
    p.add_argument("--cvxpylayers-problems", type=int, default=64,
                   help="time cvxpylayers on only this many problems of each batch and scale the time up (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write all rows and the machine to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with thread_limits(args.threads):
        return run(args)


def run(args) -> int:
    """Self-check the reference, then time and score every method at every batch size."""
    dtype = getattr(torch, args.dtype)
    info = machine()
    print(f"machine: {info}")
    fd = self_check(args.n, args.seed)
    print(f"self-check: closed-form reference gradient vs central finite differences, max rel. error {fd:.1e}")
    if fd > 1e-5:
        print("self-check FAILED: the reference gradient is wrong; not timing anything", file=sys.stderr)
        return 1
    skipped, results, tables = [], [], []
    for batch in args.batch:
        data = make_batch(batch, args.n, args.seed + batch)
        attach_reference(data)
        sup = data.stats["support"]
        print(f"\nbatch {batch}{' (one unbatched problem)' if data.unbatched else ''}, n={args.n}: reference ready "
              f"(support size min/mean/max {sup[0]}/{sup[1]:.1f}/{sup[2]}, smallest complementarity margin "
              f"{data.margin:.1e})", flush=True)
        if not data.margin > 0:
            print("warning: strict complementarity fails for some problem; its errors are not meaningful", file=sys.stderr)
        rows = []
        for variant, limit in variants(args, dtype, skipped if batch == args.batch[0] else []):
            sub = data.head(limit) if limit and limit < batch else data
            row = measure(variant, sub, batch, args, PARAMS)
            print(progress(row, "x"), flush=True)
            rows.append(row)
        results.extend(rows)
        clock = "wall-clock" if args.clock == "wall" else "CPU"
        what = "1 (one unbatched problem)" if data.unbatched else str(batch)
        tables.append(f"### batch {what}, n={args.n}, {args.dtype}, {clock} time, {args.threads} thread(s)"
                      f"\n\n{table(rows, 'x', PARAMS)}")
    print()
    warn_if_busy(results, args.clock)
    for line in skipped:
        print(line)
    for r in results:
        if r.method == "optlang" and "max_iterations" in r.extra:
            print(f"optlang {r.settings}, batch {r.batch}: iterations mean {r.extra['mean_iterations']:.1f}, "
                  f"max {r.extra['max_iterations']}; all converged: {r.extra['all_converged']}; "
                  f"max residual {fmt_err(r.extra['max_residual'])}")
    print("\n\n".join(tables))
    if args.json:
        write_results(args.json, info, skipped, results, "sparsemax", {"n": args.n})
    return 0


if __name__ == "__main__":
    sys.exit(main())
