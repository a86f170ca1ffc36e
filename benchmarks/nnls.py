"""Time and check batched nonnegative least squares: optlang against qpth, cvxpylayers and JAXopt.

For a batch of problems  min_x 0.5 * ||A x - b||^2  s.t.  x >= 0  (A is m x n)
it times the forward solve alone and the forward solve plus the gradients of
the loss  sum_i <c_i, x_i>  with respect to A and b, and measures every
method's accuracy against a float64 reference: scipy's active-set NNLS, made
exact on its free set, and the closed-form gradient on that free set (checked
against finite differences before anything is timed).

Each peer is optional: one whose import fails is skipped with the reason.
Run `python benchmarks/nnls.py --help` for the options; see benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import nnls_methods` when imported from elsewhere
from nnls_methods import PEERS, variants  # noqa: E402


# -- data and the reference ----------------------------------------------------------------
@dataclass
class Batch:
    """One batch of problems in float64 numpy, and its reference solution and gradients."""

    A: np.ndarray  # (B, m, n)
    b: np.ndarray  # (B, m)
    c: np.ndarray  # (B, n): the loss is sum_i <c_i, x_i>
    x: np.ndarray = None
    gA: np.ndarray = None
    gb: np.ndarray = None
    margin: float = None  # the smallest of min x_F and min grad_f on the active set

    def head(self, k: int) -> "Batch":
        cut = lambda a: None if a is None else a[:k]  # noqa: E731
        return Batch(*(cut(getattr(self, f)) for f in ("A", "b", "c", "x", "gA", "gb")), self.margin)


def make_batch(batch: int, m: int, n: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(rng.standard_normal((batch, m, n)), rng.standard_normal((batch, m)), rng.standard_normal((batch, n)))


def reference(A: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Exact NNLS solution and the gradient of <c, x> w.r.t. (A, b), for one problem.

    scipy's active-set NNLS picks the free set F = {x_j > 0}; x_F is then
    re-solved by least squares on A_F, x_A = 0. With M = A_F^T A_F,
    u = M^{-1} c_F and r = b - A x, differentiating x_F = M^{-1} A_F^T b gives
        d<c, x>/db       = A_F u
        d<c, x>/dA[:, F] = r u^T - (A_F u) x_F^T,     d<c, x>/dA[:, A] = 0
    (x_A stays 0 and x_F does not involve A's active columns while the active
    set does not change, which strict complementarity guarantees locally).
    """
    from scipy.optimize import nnls

    x0, _ = nnls(A, b, maxiter=50 * A.shape[1])
    free = x0 > 0
    AF = A[:, free]
    x = np.zeros_like(x0)
    x[free] = np.linalg.lstsq(AF, b, rcond=None)[0]
    r = b - A @ x
    grad_f = -(A.T @ r)  # >= 0 on the active set at the optimum
    margin = min(x[free].min(initial=np.inf), grad_f[~free].min(initial=np.inf))
    u = np.linalg.solve(AF.T @ AF, c[free])
    Au = AF @ u
    gA = np.zeros_like(A)
    gA[:, free] = np.outer(r, u) - np.outer(Au, x[free])
    return x, gA, Au, margin


def attach_reference(data: Batch) -> None:
    outs = [reference(A, b, c) for A, b, c in zip(data.A, data.b, data.c)]
    data.x = np.stack([o[0] for o in outs])
    data.gA = np.stack([o[1] for o in outs])
    data.gb = np.stack([o[2] for o in outs])
    data.margin = float(min(o[3] for o in outs))


def self_check(m: int, n: int, seed: int, problems: int = 4) -> float:
    """Central finite differences of the reference solution vs the closed-form gradient."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for _ in range(problems):
        A, b, c = rng.standard_normal((m, n)), rng.standard_normal(m), rng.standard_normal(n)
        _, gA, gb, _ = reference(A, b, c)
        loss = lambda A_, b_: c @ reference(A_, b_, c)[0]  # noqa: E731
        for _ in range(3):
            dA, db = rng.standard_normal((m, n)), rng.standard_normal(m)
            h = 1e-6
            fd = (loss(A + h * dA, b + h * db) - loss(A - h * dA, b - h * db)) / (2 * h)
            exact = (gA * dA).sum() + gb @ db
            worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-12))
        assert np.allclose(reference(A, b, c)[0], nnls(A, b)[0], atol=1e-10)
    return worst


# -- timing --------------------------------------------------------------------------------
def time_call(fn, warmup: int, reps: int, budget_s: float, sync):
    """Median wall and CPU seconds of `fn` after `warmup` calls; fewer reps (never under 3) if over budget.

    CPU seconds are this process's, all its threads together (`time.process_time`).
    """
    for _ in range(warmup):
        out = fn()
        sync(out)
    wall, cpu = [], []
    start = time.perf_counter()
    while len(wall) < reps and (len(wall) < 3 or time.perf_counter() - start < budget_s):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync(out)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}, len(wall), out


def rel_err(est, ref) -> float:
    """max over problems of ||est - ref||_inf / ||ref||_inf."""
    est = np.asarray(est, dtype=np.float64).reshape(ref.shape[0], -1)
    ref = ref.reshape(ref.shape[0], -1)
    scale = np.maximum(np.abs(ref).max(axis=1), np.finfo(np.float64).tiny)
    return float((np.abs(est - ref).max(axis=1) / scale).max())


@dataclass
class Row:
    method: str
    settings: str
    dtype: str
    device: str
    batch: int
    timed_on: int  # problems actually solved per call; times are scaled by batch / timed_on
    reps_fwd: int = 0
    reps_fb: int = 0
    fwd_ms: float = float("nan")
    fb_ms: float = float("nan")
    err_x: float = float("nan")
    err_gA: float = float("nan")
    err_gb: float = float("nan")
    note: str = ""
    extra: dict = field(default_factory=dict)


def measure(variant, data: Batch, batch: int, args) -> Row:
    """Time one variant's forward and forward+backward on `data` and score them against the reference."""
    row = Row(variant.method, variant.settings, variant.dtype_name, variant.device, batch, data.A.shape[0])
    row.extra["load_before"] = os.getloadavg()[0]
    try:
        variant.setup(data)
        scale = batch / data.A.shape[0]
        t, row.reps_fwd, x = time_call(variant.forward, args.warmup, args.reps, args.budget, variant.sync)
        row.fwd_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fwd_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        t, row.reps_fb, (x_fb, gA, gb) = time_call(variant.forward_backward, args.warmup, args.reps, args.budget, variant.sync)
        row.fb_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fb_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        row.err_x = max(rel_err(variant.numpy(x), data.x), rel_err(variant.numpy(x_fb), data.x))
        row.err_gA = rel_err(variant.numpy(gA), data.gA)
        row.err_gb = rel_err(variant.numpy(gb), data.gb)
        row.extra.update(variant.report())
    except Exception as exc:  # a peer failing must not take the others down
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    row.extra["load_after"] = os.getloadavg()[0]
    return row


# -- output --------------------------------------------------------------------------------
def fmt_ms(v: float) -> str:
    return "—" if v != v else (f"{v:.1f}" if v < 1000 else f"{v:,.0f}")


def fmt_err(v: float) -> str:
    return "—" if v != v else f"{v:.1e}"


def fmt_ratio(v: float, base: float) -> str:
    return "—" if v != v or base != base else f"{v / base:.2f}×"


def table(rows: list) -> str:
    lines = ["| method | settings | dtype | fwd ms | vs optlang | fwd+bwd ms | vs optlang | err x | err ∂A | err ∂b | reps |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = next((r for r in rows if r.method == "optlang" and r.fwd_ms == r.fwd_ms), None)
    for r in rows:
        scaled = f" (timed on {r.timed_on} problems, ×{r.batch / r.timed_on:.3g} scaled)" if r.timed_on != r.batch else ""
        device = f", {r.device}" if r.device != "cpu" else ""
        settings = r.settings + device + scaled + (f" — {r.note}" if r.note else "")
        lines.append(
            f"| {r.method} | {settings} | {r.dtype} | {fmt_ms(r.fwd_ms)} | {fmt_ratio(r.fwd_ms, base.fwd_ms if base else float('nan'))} "
            f"| {fmt_ms(r.fb_ms)} | {fmt_ratio(r.fb_ms, base.fb_ms if base else float('nan'))} "
            f"| {fmt_err(r.err_x)} | {fmt_err(r.err_gA)} | {fmt_err(r.err_gb)} | {r.reps_fwd}/{r.reps_fb} |")
    return "\n".join(lines)


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
    except OSError:
        pass
    info = {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_avg_1min": os.getloadavg()[0]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info["versions"] = {name: _version(name) for name in VERSIONED}
    return info


VERSIONED = ("optlang-diff", "torch", "triton", "numpy", "scipy", "qpth", "cvxpylayers", "cvxpy", "diffcp", "scs",
             "jax", "jaxlib", "jaxopt")


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# -- main ----------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1024, 128], help="batch sizes, one table each")
    p.add_argument("--m", type=int, default=64, help="rows of A")
    p.add_argument("--n", type=int, default=32, help="columns of A (the size of x)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", default="cpu", help="device for the torch-based methods (cvxpylayers and JAXopt stay on CPU)")
    p.add_argument("--backend", choices=("auto", "torch", "triton", "both"), default="auto",
                   help="optlang backend: auto = torch on CPU, triton and torch on CUDA")
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    p.add_argument("--reps", type=int, default=10, help="timed repetitions at most (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (JIT compiles, caches)")
    p.add_argument("--budget", type=float, default=10.0, help="seconds per measurement after which reps stop (never under 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for torch (set_num_threads), BLAS/OpenMP (threadpoolctl), diffcp's pool, and XLA (1 = single-threaded)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time, all threads (with --threads 1, a stand-in "
                        "for the wall time of an idle machine when others share the CPU; meaningless on GPU)")
    p.add_argument("--cvxpylayers-problems", type=int, default=None,
                   help="time cvxpylayers on only this many problems of each batch and scale the time up")
    p.add_argument("--qpth-ridge", type=float, default=0.0,
                   help="added to Q = A^T A (qpth needs Q positive definite: m >= n makes it so for random A)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write all rows and the machine to this file")
    return p.parse_args(argv)


def limit_threads(n: int):
    """Hold every library to `n` threads; returns a context manager for BLAS/OpenMP (threadpoolctl)."""
    torch.set_num_threads(n)
    if n == 1:  # read when jax first initializes its CPU backend, i.e. after this
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def main(argv=None) -> int:
    args = parse_args(argv)
    with limit_threads(args.threads):
        return run(args)


def run(args) -> int:
    """Self-check the reference, then time and score every method at every batch size."""
    dtype = getattr(torch, args.dtype)
    info = machine()
    print(f"machine: {info}")
    fd = self_check(args.m, args.n, args.seed)
    print(f"self-check: closed-form reference gradient vs central finite differences, max rel. error {fd:.1e}")
    if fd > 1e-5:
        print("self-check FAILED: the reference gradient is wrong; not timing anything", file=sys.stderr)
        return 1
    skipped, results, tables = [], [], []
    for batch in args.batch:
        data = make_batch(batch, args.m, args.n, args.seed + batch)
        attach_reference(data)
        print(f"\nbatch {batch}, A {args.m}x{args.n}: reference ready (smallest complementarity margin {data.margin:.1e})",
              flush=True)
        if not data.margin > 0:
            print("warning: the reference violates the optimality conditions (or strict complementarity) "
                  "for some problem; its errors column is not meaningful", file=sys.stderr)
        rows = []
        for variant, limit in variants(args, dtype, skipped if batch == args.batch[0] else []):
            sub = data.head(limit) if limit and limit < batch else data
            row = measure(variant, sub, batch, args)
            print(f"  {row.method:12s} {row.settings[:60]:60s} fwd {fmt_ms(row.fwd_ms):>9s} ms  fwd+bwd {fmt_ms(row.fb_ms):>9s} ms"
                  f"  err x {fmt_err(row.err_x)}  ∂A {fmt_err(row.err_gA)}  ∂b {fmt_err(row.err_gb)}"
                  f"  load {row.extra['load_before']:.1f}->{row.extra['load_after']:.1f} {row.note}", flush=True)
            rows.append(row)
        results.extend(rows)
        clock = "wall-clock" if args.clock == "wall" else "CPU"
        tables.append(f"### batch {batch}, A {args.m}×{args.n}, {args.dtype}, {clock} time, {args.threads} thread(s)"
                      f"\n\n{table(rows)}")
    print()
    warn_if_busy(results, args.clock)
    for line in skipped:
        print(line)
    print("\n\n".join(tables))
    if args.json:
        write_json(args.json, info, skipped, results)
    return 0


def warn_if_busy(results, clock: str) -> None:
    """Say so when other processes loaded the CPU during the measurements (recorded per row)."""
    busy = max(max(r.extra["load_before"], r.extra["load_after"]) for r in results) if results else 0.0
    if busy > 1.5 * (os.cpu_count() or 1):
        print(f"warning: 1-minute load average reached {busy:.1f} on {os.cpu_count()} cores during the run; "
              "other processes competed for the CPU" + ("; wall times are not trustworthy (try --threads 1 --clock cpu)"
                                                        if clock == "wall" else "; CPU times suffer less than wall times"))


def write_json(path, info: dict, skipped: list, results: list) -> None:
    """The machine, the command line, what was skipped and every row, as JSON."""
    path.write_text(json.dumps({"machine": info, "argv": sys.argv, "skipped": skipped,
                                "rows": [asdict(r) for r in results]}, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
