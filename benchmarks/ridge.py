"""Time and check ridge regression: optlang against closed forms (PyTorch, JAX), JAXopt and cvxpylayers.

For one problem or a batch of problems  min_w 0.5 ||X w - y||^2 + 0.5 lam ||w||^2
(X is n x d, lam > 0) it times the forward solve alone and the forward solve
plus the gradients of the loss  sum_i <c_i, w_i>  with respect to X, y and
lam, and measures every method's accuracy against a float64 reference: the
closed form by Cholesky and its closed-form gradient (checked against finite
differences before anything is timed).

Each peer is optional: one whose import fails is skipped with the reason.
Run `python benchmarks/ridge.py --help` for the options; see benchmarks/README.md.
Timing, thread control and formatting come from nnls.py; `lasso.py` reuses the
rest of this file's machinery (rows, measuring, tables, the main loop).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import nnls, ridge_methods` from elsewhere
from nnls import (_version, fmt_err, fmt_ms, fmt_ratio, limit_threads, machine, rel_err, time_call,  # noqa: E402
                  warn_if_busy, write_json)
from ridge_methods import PARAMS, PEERS, variants  # noqa: E402


# -- data and the reference ----------------------------------------------------------------
@dataclass
class Batch:
    """One batch of problems in float64 numpy (shared with lasso.py), and its reference solution and gradients."""

    X: np.ndarray  # (B, n, d)
    y: np.ndarray  # (B, n)
    lam: np.ndarray  # (B,)
    c: np.ndarray  # (B, d): the loss is sum_i <c_i, w_i>
    unbatched: bool = False  # batch 1: the methods get one problem's arrays without a batch dim
    w: np.ndarray = None
    grads: dict = None  # name -> (B, ...), dL/dparam for every name in PARAMS
    facts: dict = field(default_factory=dict)  # what the reference found out about the batch (printed, in the JSON)

    def head(self, k: int) -> "Batch":
        cut = lambda a: None if a is None else a[:k]  # noqa: E731
        grads = None if self.grads is None else {name: g[:k] for name, g in self.grads.items()}
        return Batch(cut(self.X), cut(self.y), cut(self.lam), cut(self.c), False, cut(self.w), grads, self.facts)


def make_batch(batch: int, n: int, d: int, seed: int) -> Batch:
    """X, y, c standard normal; lam log-uniform in [1, 100] per problem (X'X's eigenvalues are ~50 to 450 at
    the default 200 x 50, so lam matters without dominating)."""
    rng = np.random.default_rng(seed)
    X, y, c = rng.standard_normal((batch, n, d)), rng.standard_normal((batch, n)), rng.standard_normal((batch, d))
    return Batch(X, y, 10.0 ** rng.uniform(0.0, 2.0, batch), c, unbatched=batch == 1)


def reference(X: np.ndarray, y: np.ndarray, lam: float, c: np.ndarray):
    """Ridge solution and the gradient of <c, w> w.r.t. (X, y, lam), for one problem, in closed form.

    With M = X'X + lam I (Cholesky), w = M^{-1} X'y, u = M^{-1} c and r = y - X w,
    differentiating M w = X'y gives
        dL/dy = X u,    dL/dlam = -u'w,    dL/dX = r u' - (X u) w'.
    """
    from scipy.linalg import cho_factor, cho_solve

    M = X.T @ X + lam * np.eye(X.shape[1])
    factor = cho_factor(M)
    w = cho_solve(factor, X.T @ y)
    u = cho_solve(factor, c)
    r = y - X @ w
    Xu = X @ u
    return w, {"X": np.outer(r, u) - np.outer(Xu, w), "y": Xu, "lam": -u @ w}, np.linalg.cond(M)


def attach_reference(data: Batch) -> None:
    outs = [reference(*a) for a in zip(data.X, data.y, data.lam, data.c)]
    data.w = np.stack([o[0] for o in outs])
    data.grads = {k: np.stack([o[1][k] for o in outs]) for k in PARAMS}
    conds = [o[2] for o in outs]
    data.facts = {"cond_min": float(min(conds)), "cond_max": float(max(conds)),
                  "lam_min": float(data.lam.min()), "lam_max": float(data.lam.max())}


def describe(data: Batch) -> str:
    f = data.facts
    return (f"lam in [{f['lam_min']:.3g}, {f['lam_max']:.3g}], cond(X'X + lam I) in "
            f"[{f['cond_min']:.3g}, {f['cond_max']:.3g}]")


def finite_difference_check(reference_fn, make_one, seed: int, problems: int = 4, directions: int = 3) -> float:
    """Central finite differences of `reference_fn`'s solution vs its gradient, all params at once.

    `make_one(rng)` draws (params dict, c); `reference_fn(X, y, lam, c)` returns (w, grads, ...)."""
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for _ in range(problems):
        prm, c = make_one(rng)
        grads = reference_fn(prm["X"], prm["y"], prm["lam"], c)[1]
        loss = lambda q: c @ reference_fn(q["X"], q["y"], q["lam"], c)[0]  # noqa: E731
        for _ in range(directions):
            dirs = {k: rng.standard_normal(np.shape(v)) for k, v in prm.items()}
            step = 1e-6
            plus = loss({k: v + step * dirs[k] for k, v in prm.items()})
            minus = loss({k: v - step * dirs[k] for k, v in prm.items()})
            fd = (plus - minus) / (2 * step)
            exact = sum(float(np.sum(grads[k] * dirs[k])) for k in PARAMS)
            worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-12))
    return worst


def self_check(args) -> float:
    def one(rng):
        b = make_batch(1, args.n, args.d, int(rng.integers(1 << 31)))
        return {"X": b.X[0], "y": b.y[0], "lam": float(b.lam[0])}, b.c[0]

    return finite_difference_check(reference, one, args.seed)


# -- measuring -----------------------------------------------------------------------------
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
    err_x: float = float("nan")  # the solution w's error
    err_grad: dict = field(default_factory=lambda: {k: float("nan") for k in PARAMS})
    note: str = ""
    extra: dict = field(default_factory=dict)


def measure(variant, data: Batch, batch: int, args) -> Row:
    """Time one variant's forward and forward+backward on `data` and score them against the reference."""
    size = data.X.shape[0]
    row = Row(variant.method, variant.settings, variant.dtype_name, variant.device, batch, size)
    row.extra["load_before"] = os.getloadavg()[0]
    try:
        variant.setup(data)
        scale = batch / size
        t, row.reps_fwd, w = time_call(variant.forward, args.warmup, args.reps, args.budget, variant.sync)
        row.fwd_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fwd_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        t, row.reps_fb, (w_fb, grads) = time_call(variant.forward_backward, args.warmup, args.reps, args.budget,
                                                  variant.sync)
        row.fb_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fb_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        row.err_x = max(rel_err(variant.numpy(w), data.w), rel_err(variant.numpy(w_fb), data.w))
        for k in PARAMS:
            row.err_grad[k] = rel_err(variant.numpy(grads[k]), data.grads[k])
        row.extra.update(variant.report())
    except Exception as exc:  # a peer failing must not take the others down
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    row.extra["load_after"] = os.getloadavg()[0]
    return row


# -- output --------------------------------------------------------------------------------
def table(rows: list) -> str:
    grads = " | ".join(f"err ∂{k}" for k in PARAMS)
    lines = [f"| method | settings | dtype | fwd ms | vs optlang | fwd+bwd ms | vs optlang | err w | {grads} | reps |",
             "|---|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(PARAMS) + "---:|"]
    base = next((r for r in rows if r.method == "optlang" and r.fwd_ms == r.fwd_ms), None)
    for r in rows:
        scaled = f" (timed on {r.timed_on} problems, ×{r.batch / r.timed_on:.3g} scaled)" if r.timed_on != r.batch else ""
        device = f", {r.device}" if r.device != "cpu" else ""
        settings = r.settings + device + scaled + (f" — {r.note}" if r.note else "")
        errs = " | ".join(fmt_err(r.err_grad[k]) for k in PARAMS)
        lines.append(
            f"| {r.method} | {settings} | {r.dtype} | {fmt_ms(r.fwd_ms)} "
            f"| {fmt_ratio(r.fwd_ms, base.fwd_ms if base else float('nan'))} "
            f"| {fmt_ms(r.fb_ms)} | {fmt_ratio(r.fb_ms, base.fb_ms if base else float('nan'))} "
            f"| {fmt_err(r.err_x)} | {errs} | {r.reps_fwd}/{r.reps_fb} |")
    return "\n".join(lines)


# -- main (shared with lasso.py) -----------------------------------------------------------
@dataclass
class Problem:
    """What differs between ridge.py and lasso.py; the main loop is the same."""

    name: str
    make_batch: Callable  # (batch, n, d, seed) -> Batch
    attach_reference: Callable  # (Batch) -> None
    describe: Callable  # (Batch) -> str, printed once the reference is ready
    self_check: Callable  # (args) -> max rel. error of the reference gradient vs finite differences
    variants: Callable  # (args, dtype, skipped) -> iterable of (variant, problems to time it on)
    versions: tuple = ()  # packages whose versions go into the machine report besides nnls.py's
    suspicious: Callable = lambda data: None  # (Batch) -> a warning about the reference, or None


def parser(doc: str, n: int, d: int, peers: tuple, budget: float = 5.0) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64],
                   help="batch sizes, one table each (1: one problem, unbatched arrays)")
    p.add_argument("--n", type=int, default=n, help="rows of X (samples)")
    p.add_argument("--d", type=int, default=d, help="columns of X (the size of w)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", default="cpu", help="device for the torch-based methods (cvxpylayers and JAX stay on CPU)")
    p.add_argument("--backend", choices=("auto", "torch", "triton", "both"), default="auto",
                   help="optlang backend: auto = torch on CPU, triton and torch on CUDA")
    p.add_argument("--peers", nargs="+", choices=peers, default=list(peers))
    p.add_argument("--reps", type=int, default=10, help="timed repetitions at most (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (JIT compiles, caches)")
    p.add_argument("--budget", type=float, default=budget,
                   help="seconds per measurement after which reps stop (never under 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for torch (set_num_threads), BLAS/OpenMP (threadpoolctl), diffcp's pool, and XLA (1 = single-threaded)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time, all threads (with --threads 1, a stand-in "
                        "for the wall time of an idle machine when others share the CPU; meaningless on GPU)")
    p.add_argument("--cvxpylayers-problems", type=int, default=None,
                   help="time cvxpylayers on only this many problems of each batch and scale the time up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write all rows and the machine to this file")
    return p


def main_loop(args, problem: Problem) -> int:
    """Self-check the reference, then time and score every method at every batch size."""
    with limit_threads(args.threads):
        return _run(args, problem)


def _run(args, problem: Problem) -> int:
    dtype = getattr(torch, args.dtype)
    info = machine()
    for name in problem.versions:
        info["versions"][name] = _version(name)
    print(f"machine: {info}")
    fd = problem.self_check(args)
    print(f"self-check: closed-form reference gradient vs central finite differences, max rel. error {fd:.1e}")
    if not fd <= 1e-5:
        print("self-check FAILED: the reference gradient is wrong; not timing anything", file=sys.stderr)
        return 1
    skipped, results, tables, facts = [], [], [], {}
    for batch in args.batch:
        data = problem.make_batch(batch, args.n, args.d, args.seed + batch)
        problem.attach_reference(data)
        facts[str(batch)] = data.facts
        shape = "one problem, unbatched" if data.unbatched else f"batch {batch}"
        print(f"\n{shape}, X {args.n}x{args.d}: reference ready ({problem.describe(data)})", flush=True)
        warning = problem.suspicious(data)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        rows = []
        for variant, limit in problem.variants(args, dtype, skipped if batch == args.batch[0] else []):
            sub = data.head(limit) if limit and limit < batch else data
            row = measure(variant, sub, batch, args)
            errs = " ".join(f"∂{k} {fmt_err(row.err_grad[k])}" for k in PARAMS)
            print(f"  {row.method:12s} {row.settings[:60]:60s} fwd {fmt_ms(row.fwd_ms):>9s} ms  fwd+bwd "
                  f"{fmt_ms(row.fb_ms):>9s} ms  err w {fmt_err(row.err_x)}  {errs}"
                  f"  load {row.extra['load_before']:.1f}->{row.extra['load_after']:.1f} {row.note}", flush=True)
            rows.append(row)
        results.extend(rows)
        clock = "wall-clock" if args.clock == "wall" else "CPU"
        what = "batch 1 (one problem, unbatched arrays)" if data.unbatched else f"batch {batch}"
        tables.append(f"### {problem.name}, {what}, X {args.n}×{args.d}, {args.dtype}, {clock} time, "
                      f"{args.threads} thread(s)\n\n{table(rows)}")
    print()
    warn_if_busy(results, args.clock)
    for line in skipped:
        print(line)
    print("\n\n".join(tables))
    if args.json:
        write_json(args.json, info, skipped, results)
        # nnls.write_json writes machine, argv, skipped and rows; the problem, its sizes and what the
        # reference found out about each batch (by batch size) go in too.
        doc = json.loads(args.json.read_text())
        doc = {"problem": problem.name, "sizes": {"n": args.n, "d": args.d}, **doc, "reference": facts}
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0


RIDGE = Problem("ridge", make_batch, attach_reference, describe, self_check, variants)


def main(argv=None) -> int:
    args = parser(__doc__, n=200, d=50, peers=PEERS).parse_args(argv)
    return main_loop(args, RIDGE)


if __name__ == "__main__":
    sys.exit(main())
