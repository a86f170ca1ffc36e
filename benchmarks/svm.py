"""Time and check the multiclass SVM dual: optlang against qpth, cvxpylayers and JAXopt.

For a batch of Crammer-Singer SVM duals (examples/svm.opt, the JAXopt paper's experiment)
    minimize 0.5/lam ||X'(Y - beta)||^2 + <beta, Y>  s.t.  every row of beta in the simplex
(X: m samples x d features, Y: m x k one-hot labels, lam > 0) it times the forward solve
alone and the forward solve plus the gradients of the loss  sum_i <C_i, W_i>, where
W = X'(Y - beta)/lam are the primal weights computed from each method's beta, with
respect to X and lam; and it measures every method's accuracy against a float64
reference: Clarabel on the primal QP at tight tolerances, made exact on its active
set by one solve of the KKT system there, and the gradient from the transposed KKT
system on that active set (checked against finite differences before anything is timed).

Each peer is optional: one whose import fails is skipped with the reason.
Run `python benchmarks/svm.py --help` for the options; see benchmarks/README.md.
Timing, thread control and formatting come from nnls.py; `Row`, `measure` and
`table` here are generic and are also used by sparsemax.py.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import nnls, svm_methods` from elsewhere
from nnls import (_version, fmt_err, fmt_ms, fmt_ratio, limit_threads, machine, rel_err, time_call,  # noqa: E402
                  warn_if_busy, write_json)
from svm_methods import PARAMS, PEERS, variants  # noqa: E402


# -- data and the reference ----------------------------------------------------------------
@dataclass
class Batch:
    """One batch of problems in float64 numpy, its reference solution and gradients.

    `ref` holds the reference outputs by name (the first, "W", is the scored solution),
    `grads` the reference gradients by parameter name. `unbatched`: a batch of 1 that the
    methods get as one problem without a batch dimension.
    """

    X: np.ndarray  # (B, m, d)
    Y: np.ndarray  # (B, m, k), one-hot
    lam: np.ndarray  # (B,)
    C: np.ndarray  # (B, d, k): the loss is sum_i <C_i, W_i>
    unbatched: bool = False
    ref: dict = None  # "W": (B, d, k), "beta": (B, m, k)
    grads: dict = None  # "X": (B, m, d), "lam": (B,)
    margin: float = None  # the smallest of min beta on the active set and min slack off it
    stats: dict = field(default_factory=dict)  # active-set counts, for the console and the JSON

    @property
    def size(self) -> int:
        return self.X.shape[0]

    def head(self, k: int) -> "Batch":
        cut = lambda d: None if d is None else {name: v[:k] for name, v in d.items()}  # noqa: E731
        return Batch(self.X[:k], self.Y[:k], self.lam[:k], self.C[:k], self.unbatched and k == 1,
                     cut(self.ref), cut(self.grads), self.margin, self.stats)


def make_problem(rng, m: int, d: int, k: int, noise: float, lead: tuple = ()):
    """X standard normal; labels argmax(X W0 + noise * N(0, 1)) of a random linear model W0 (standard normal).

    The noise keeps the data from being linearly separable: on separable data (all slacks 0
    at the solution, the hard-margin SVM) W does not depend on lam, dL/dlam = 0 and its
    relative error means nothing (with noise 1, 1 problem in 16 was separable)."""
    X = rng.standard_normal(lead + (m, d))
    W0 = rng.standard_normal(lead + (d, k))
    labels = np.argmax(X @ W0 + noise * rng.standard_normal(lead + (m, k)), axis=-1)
    return X, np.eye(k)[labels]


def make_batch(batch: int, m: int, d: int, k: int, lam: float, noise: float, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    X, Y = make_problem(rng, m, d, k, noise, (batch,))
    return Batch(X, Y, np.full(batch, lam), rng.standard_normal((batch, d, k)), unbatched=batch == 1)


CLARABEL_TIGHT = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10, max_iter=200)


def primal_rows(X, Y) -> np.ndarray:
    """The (m*k, d*k) constraint rows on vec(W) (row-major): row (i, j) is x_i (e_j - e_{y_i})'."""
    m, d = X.shape
    k = Y.shape[1]
    G = np.zeros((m, k, d, k))
    for j in range(k):
        G[:, j, :, j] += X
    G[np.arange(m), :, :, Y.argmax(1)] -= X[:, None, :]
    return G.reshape(m * k, d * k)


def clarabel_primal(X, Y, lam):
    """(W, xi, beta) of the primal QP from Clarabel (called directly: no per-problem canonicalization),

        minimize lam/2 ||W||^2 + sum(xi)  s.t.  x_i'W (e_j - e_{y_i}) - xi_i <= Y_ij - 1  for all i, j,

    whose multipliers are the dual's beta. At tight tolerances first; where Clarabel stalls
    there, at its defaults: only the active set is taken from it (`reference` makes it exact).
    """
    import clarabel
    import scipy.sparse as sp

    m, d = X.shape
    k = Y.shape[1]
    A = np.hstack([primal_rows(X, Y), -np.kron(np.eye(m), np.ones((k, 1)))])
    P = sp.diags(np.concatenate([np.full(d * k, lam), np.zeros(m)])).tocsc()
    q = np.concatenate([np.zeros(d * k), np.ones(m)])
    for options in (CLARABEL_TIGHT, {}):
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        for key, value in options.items():
            setattr(settings, key, value)
        sol = clarabel.DefaultSolver(P, q, sp.csc_matrix(A), (Y - 1).reshape(-1),
                                     [clarabel.NonnegativeConeT(m * k)], settings).solve()
        if str(sol.status) == "Solved":
            break
    else:
        raise RuntimeError(f"reference: Clarabel ended with {sol.status}")
    x = np.asarray(sol.x)
    return x[: d * k].reshape(d, k), x[d * k:], np.asarray(sol.z).reshape(m, k)


def reference(X, Y, lam, C):
    """Exact W, beta and the gradient of <C, W> w.r.t. X and lam, for one problem.

    Clarabel picks the active set S = {(i, j): beta_ij > slack_ij}; then z = (w, xi, beta_S)
    solves the KKT system of the primal with S's constraints as equalities,

        K z = [0; -1; Y_S - 1],   K = [[lam I, 0, G_S'], [0, 0, -E_S'], [G_S, -E_S, 0]]

    (G_S: S's rows of `primal_rows`, E_S: which sample each row belongs to; beta = 0 off S).
    W is unique; beta is unique when K is nonsingular (the active rows independent, i.e.
    |S| <= m + d(k-1)), else lstsq picks one. With p = (P_W, p_xi, p_S) = K^+ [vec C; 0; 0]
    (K is symmetric) and dL = -p' dK z,

        dL/dlam = -<P_W, W>
        dL/dX   = -(beta - Y) P_W' - (P_b - diag(P_b 1) Y) W'      (P_b: p_S on S, 0 elsewhere)

    valid while S does not change, which strict complementarity guarantees locally.
    """
    m, d = X.shape
    k = Y.shape[1]
    dk = d * k
    W0, xi0, beta0 = clarabel_primal(X, Y, lam)
    G = primal_rows(X, Y)
    E = np.kron(np.eye(m), np.ones((k, 1)))
    h = (Y - 1).reshape(-1)
    S = beta0.reshape(-1) > h - (G @ W0.reshape(-1) - E @ xi0)
    na = int(S.sum())
    n = dk + m + na
    K = np.zeros((n, n))
    K[:dk, :dk] = lam * np.eye(dk)
    K[:dk, dk + m:], K[dk + m:, :dk] = G[S].T, G[S]
    K[dk:dk + m, dk + m:], K[dk + m:, dk:dk + m] = -E[S].T, -E[S]
    rank = np.linalg.matrix_rank(K)
    solve = (lambda r: np.linalg.solve(K, r)) if rank == n else (lambda r: np.linalg.lstsq(K, r, rcond=None)[0])
    z = solve(np.concatenate([np.zeros(dk), -np.ones(m), h[S]]))
    W, xi = z[:dk].reshape(d, k), z[dk:dk + m]
    beta = np.zeros(m * k)
    beta[S] = z[dk + m:]
    beta = beta.reshape(m, k)
    p = solve(np.concatenate([C.reshape(-1), np.zeros(m + na)]))
    PW = p[:dk].reshape(d, k)
    Pb = np.zeros(m * k)
    Pb[S] = p[dk + m:]
    Pb = Pb.reshape(m, k)
    gX = -(beta - Y) @ PW.T - (Pb - Pb.sum(1, keepdims=True) * Y) @ W.T
    glam = -float((PW * W).sum())
    slack = h - (G @ W.reshape(-1) - E @ xi)
    margin = min(beta.reshape(-1)[S].min(initial=np.inf), slack[~S].min(initial=np.inf))
    at_vertex = int((S.reshape(m, k).sum(1) == 1).sum())
    violators = int((xi > 1e-9).sum())  # samples with a positive slack (margin below 1)
    return W, beta, gX, glam, margin, {"active": na, "at_vertex": at_vertex, "violators": violators,
                                       "rank_deficiency": n - rank}


def attach_reference(data: Batch) -> None:
    outs = [reference(data.X[i], data.Y[i], data.lam[i], data.C[i]) for i in range(data.size)]
    data.ref = {"W": np.stack([o[0] for o in outs]), "beta": np.stack([o[1] for o in outs])}
    data.grads = {"X": np.stack([o[2] for o in outs]), "lam": np.array([o[3] for o in outs])}
    data.margin = float(min(o[4] for o in outs))
    for key in ("active", "at_vertex", "violators", "rank_deficiency"):
        values = [o[5][key] for o in outs]
        data.stats[key] = (min(values), float(np.mean(values)), max(values))


def self_check(m: int, d: int, k: int, lam: float, noise: float, seed: int, problems: int = 3) -> float:
    """Central finite differences of the reference W (Clarabel + the exact active-set solve) vs the
    KKT gradient, in X and lam at once."""
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for _ in range(problems):
        X, Y = make_problem(rng, m, d, k, noise)
        C = rng.standard_normal((d, k))
        _, _, gX, glam, _, _ = reference(X, Y, lam, C)
        loss = lambda X_, lam_: (C * reference(X_, Y, lam_, C)[0]).sum()  # noqa: E731
        for _ in range(3):
            dX, dlam = rng.standard_normal(X.shape), rng.standard_normal()
            step = 1e-6
            fd = (loss(X + step * dX, lam + step * dlam) - loss(X - step * dX, lam - step * dlam)) / (2 * step)
            exact = (gX * dX).sum() + glam * dlam
            worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-12))
    return worst


# -- measuring (generic: also used by sparsemax.py) ----------------------------------------
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
    err_x: float = float("nan")  # the scored solution's (svm: W; sparsemax: x)
    err_grad: dict = field(default_factory=dict)  # param -> max over the batch of the relative error
    note: str = ""
    extra: dict = field(default_factory=dict)


def measure(variant, data, batch: int, args, params) -> Row:
    """Time one variant's forward and forward+backward on `data` and score them against the reference.

    `variant.forward()` returns a dict of outputs (the first is scored as err_x, the others go
    to extra["err_<name>"]; a None output is not scored); `forward_backward()` returns
    (outputs, {param: gradient}). `data` has `size`, `ref` and `grads` (dicts of arrays).
    """
    size = data.size
    row = Row(variant.method, variant.settings, variant.dtype_name, variant.device, batch, size,
              err_grad={k: float("nan") for k in params})
    row.extra["load_before"] = os.getloadavg()[0]
    try:
        variant.setup(data)
        scale = batch / size
        t, row.reps_fwd, outs = time_call(variant.forward, args.warmup, args.reps, args.budget, variant.sync)
        row.fwd_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fwd_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        t, row.reps_fb, (outs_fb, grads) = time_call(variant.forward_backward, args.warmup, args.reps, args.budget,
                                                     variant.sync)
        row.fb_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fb_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        for i, (name, ref) in enumerate(data.ref.items()):
            got = [variant.numpy(o[name]) for o in (outs, outs_fb) if o.get(name) is not None]
            if not got:
                continue
            err = max(rel_err(g, ref) for g in got)
            if i == 0:
                row.err_x = err
                row.extra["median_err_x"] = float(np.median(rel_errs(got[-1], ref)))
            else:
                row.extra[f"err_{name}"] = err
        per_problem = []
        for k in params:
            g = variant.numpy(grads[k])
            row.err_grad[k] = rel_err(g, data.grads[k])
            per_problem.append(rel_errs(g, data.grads[k]))
        row.extra["median_err_grad"] = float(np.median(np.max(per_problem, axis=0)))  # worst param, typical problem
        row.extra.update(variant.report())
    except Exception as exc:  # a peer failing must not take the others down
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    row.extra["load_after"] = os.getloadavg()[0]
    return row


def rel_errs(est, ref) -> np.ndarray:
    """Per problem, ||est - ref||_inf / ||ref||_inf (nnls.rel_err is their max)."""
    ref = ref.reshape(ref.shape[0], -1)
    est = np.asarray(est, dtype=np.float64).reshape(ref.shape[0], -1)
    return np.abs(est - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1), np.finfo(np.float64).tiny)


def progress(row: Row, x_name: str) -> str:
    errs = " ".join(f"∂{k} {fmt_err(v)}" for k, v in row.err_grad.items())
    return (f"  {row.method:12s} {row.settings[:60]:60s} fwd {fmt_ms(row.fwd_ms):>9s} ms  fwd+bwd "
            f"{fmt_ms(row.fb_ms):>9s} ms  err {x_name} {fmt_err(row.err_x)}  {errs}"
            f"  load {row.extra['load_before']:.1f}->{row.extra['load_after']:.1f} {row.note}")


# -- output --------------------------------------------------------------------------------
def table(rows: list, x_name: str, params, extra_errs=()) -> str:
    """Markdown: times with ratios to the first optlang row, errors (`extra_errs`: names of extra["err_<name>"])."""
    heads = " | ".join([f"err {x_name}"] + [f"err ∂{k}" for k in params] + [f"err {e}" for e in extra_errs])
    ncols = 1 + len(params) + len(extra_errs)
    lines = [f"| method | settings | fwd ms | vs optlang | fwd+bwd ms | vs optlang | {heads} | median err ∇ | reps |",
             "|---|---|---:|---:|---:|---:|" + "---:|" * ncols + "---:|---:|"]
    base = next((r for r in rows if r.method == "optlang" and r.fwd_ms == r.fwd_ms), None)
    nan = float("nan")
    for r in rows:
        scaled = f" (timed on {r.timed_on} problems, ×{r.batch / r.timed_on:.3g} scaled)" if r.timed_on != r.batch else ""
        device = f", {r.device}" if r.device != "cpu" else ""
        settings = r.settings + device + scaled + (f" — {r.note}" if r.note else "")
        errs = " | ".join([fmt_err(r.err_x)] + [fmt_err(r.err_grad.get(k, nan)) for k in params]
                          + [fmt_err(r.extra.get(f"err_{e}", nan)) for e in extra_errs])
        lines.append(
            f"| {r.method} | {settings} | {fmt_ms(r.fwd_ms)} | {fmt_ratio(r.fwd_ms, base.fwd_ms if base else nan)} "
            f"| {fmt_ms(r.fb_ms)} | {fmt_ratio(r.fb_ms, base.fb_ms if base else nan)} "
            f"| {errs} | {fmt_err(r.extra.get('median_err_grad', nan))} | {r.reps_fwd}/{r.reps_fb} |")
    return "\n".join(lines)


def write_results(path: Path, info: dict, skipped: list, results: list, problem: str, sizes: dict) -> None:
    """nnls.write_json's file (machine, argv, skipped, rows), with the keys "problem" and "sizes" added."""
    write_json(path, info, skipped, results)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({"problem": problem, "sizes": sizes, **doc}, indent=1, default=str))


# -- main ----------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16],
                   help="batch sizes, one table each (1: one unbatched problem)")
    p.add_argument("--m", type=int, default=100, help="samples (rows of X)")
    p.add_argument("--d", type=int, default=20, help="features (columns of X)")
    p.add_argument("--k", type=int, default=5, help="classes")
    p.add_argument("--lam", type=float, default=1.0, help="the regularization lam of every problem")
    p.add_argument("--label-noise", type=float, default=3.0,
                   help="labels are argmax(X W0 + noise * N(0,1)); X W0 has standard deviation sqrt(d)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", default="cpu", help="device for optlang and qpth (cvxpylayers and JAXopt stay on CPU)")
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
    p.add_argument("--cvxpylayers-problems", type=int, default=2,
                   help="time cvxpylayers on only this many problems of each batch and scale the time up (0: all)")
    p.add_argument("--qpth-ridge", type=float, default=1e-8,
                   help="ridge on the slacks of qpth's primal QP (qpth needs Q positive definite; moves W by ~ridge)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write all rows and the machine to this file")
    return p.parse_args(argv)


def thread_limits(n: int):
    """nnls.limit_threads(n), but without torch.set_num_threads(n) where torch already runs n > 1 threads.

    With torch 2.13's CPU wheel on an Intel Xeon, any torch.set_num_threads(n >= 2) (even to the
    count torch already uses) turns MKL's dynamic threading off, and then a batched LU of large
    matrices (optlang's polish on the SVM: 500 x 500 per problem) runs dgetrf on several threads at
    once and hangs with "Intel oneMKL ERROR: Parameter 6 was incorrect on entry to DLASWP"
    (pytorch/pytorch#141358, #142815; the same with MKL_DYNAMIC=FALSE). Leaving torch's default
    count alone avoids it; threadpoolctl still holds BLAS/OpenMP to n.
    """
    if n == 1 or n != torch.get_num_threads():
        if n > 1:
            print(f"warning: torch.set_num_threads({n}) may hang batched LU solves of large matrices "
                  "(MKL DLASWP errors, pytorch/pytorch#141358)", file=sys.stderr)
        return limit_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def main(argv=None) -> int:
    args = parse_args(argv)
    with thread_limits(args.threads):
        return run(args)


def run(args) -> int:
    """Self-check the reference, then time and score every method at every batch size."""
    dtype = getattr(torch, args.dtype)
    info = machine()
    info["versions"]["clarabel"] = _version("clarabel")
    print(f"machine: {info}")
    fd = self_check(args.m, args.d, args.k, args.lam, args.label_noise, args.seed)
    print(f"self-check: KKT reference gradient vs central finite differences, max rel. error {fd:.1e}")
    if fd > 1e-5:
        print("self-check FAILED: the reference gradient is wrong; not timing anything", file=sys.stderr)
        return 1
    sizes = {"m": args.m, "d": args.d, "k": args.k, "lam": args.lam, "label_noise": args.label_noise}
    skipped, results, tables = [], [], []
    for batch in args.batch:
        data = make_batch(batch, args.m, args.d, args.k, args.lam, args.label_noise, args.seed + batch)
        attach_reference(data)
        st = data.stats
        print(f"\nbatch {batch}{' (one unbatched problem)' if data.unbatched else ''}, m={args.m}, d={args.d}, "
              f"k={args.k}, lam={args.lam:g}: reference ready (active constraints min/mean/max "
              f"{st['active'][0]}/{st['active'][1]:.1f}/{st['active'][2]} of m*k={args.m * args.k}, samples at a vertex "
              f"{st['at_vertex'][0]}/{st['at_vertex'][1]:.1f}/{st['at_vertex'][2]}, margin violators "
              f"{st['violators'][0]}/{st['violators'][1]:.1f}/{st['violators'][2]}, KKT rank deficiency max "
              f"{st['rank_deficiency'][2]}, smallest complementarity margin {data.margin:.1e}, smallest |dL/dlam| "
              f"{np.abs(data.grads['lam']).min():.1e})", flush=True)
        if not data.margin > 0:
            print("warning: the reference violates the optimality conditions (or strict complementarity) "
                  "for some problem; its errors column is not meaningful", file=sys.stderr)
        if st["violators"][0] == 0:
            print("warning: some problem is linearly separable (no margin violators): its dL/dlam is 0 and the "
                  "relative err ∂lam is not meaningful; raise --label-noise", file=sys.stderr)
        if st["rank_deficiency"][2]:
            print("note: beta is not unique for some problem (singular KKT system); err beta is not meaningful there")
        rows = []
        for variant, limit in variants(args, dtype, skipped if batch == args.batch[0] else []):
            sub = data.head(limit) if limit and limit < batch else data
            row = measure(variant, sub, batch, args, PARAMS)
            print(progress(row, "W"), flush=True)
            rows.append(row)
        results.extend(rows)
        clock = "wall-clock" if args.clock == "wall" else "CPU"
        what = "1 (one unbatched problem)" if data.unbatched else str(batch)
        tables.append(f"### batch {what}, m={args.m}, d={args.d}, k={args.k}, lam={args.lam:g}, {args.dtype}, "
                      f"{clock} time, {args.threads} thread(s)\n\n{table(rows, 'W', PARAMS, ('beta',))}")
    print()
    warn_if_busy(results, args.clock)
    for line in skipped:
        print(line)
    for r in results:
        if r.method == "optlang" and "max_iterations" in r.extra:
            print(f"optlang {r.settings}, batch {r.batch}: iterations mean {r.extra['mean_iterations']:.1f}, "
                  f"max {r.extra['max_iterations']}; all converged: {r.extra['all_converged']}")
    print("\n\n".join(tables))
    if args.json:
        write_results(args.json, info, skipped, results, "svm", sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
