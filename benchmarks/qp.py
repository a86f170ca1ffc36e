"""Time and check batched OptNet QPs: optlang against qpth, cvxpylayers and JAXopt.

For a batch of problems  min_z 0.5 z'Qz + c'z  s.t.  G z <= h,  A z = b  (z in R^n,
m inequalities, p equalities) it times the forward solve alone and the forward
solve plus the gradients of the loss  sum_i <w_i, z_i>  with respect to all of
Q, c, G, h, A, b, and measures every method's accuracy against a float64
reference: Clarabel at tight tolerances, made exact on its active set by one
solve of the KKT system there, and the gradient from the transposed KKT system
on that active set (checked against finite differences before anything is timed).

Each peer is optional: one whose import fails is skipped with the reason.
Run `python benchmarks/qp.py --help` for the options; see benchmarks/README.md.
Timing, thread control and formatting come from nnls.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import nnls, qp_methods` from elsewhere
from nnls import (_version, fmt_err, fmt_ms, fmt_ratio, limit_threads, machine, rel_err, time_call,  # noqa: E402
                  warn_if_busy, write_json)
from qp_methods import PARAMS, PEERS, Optlang, variants  # noqa: E402


# -- data and the reference ----------------------------------------------------------------
@dataclass
class Batch:
    """One batch of problems in float64 numpy, and its reference solution, duals and gradients."""

    params: dict  # name -> (B, ...) for every name in PARAMS
    w: np.ndarray  # (B, n): the loss is sum_i <w_i, z_i>
    z: np.ndarray = None
    lam: np.ndarray = None
    nu: np.ndarray = None
    grads: dict = None  # name -> (B, ...), dL/dparam (Q's symmetrized)
    margin: float = None  # the smallest of min lam_active and min slack_inactive
    active: tuple = None  # (min, mean, max) active inequalities per problem

    def head(self, k: int) -> "Batch":
        cut = lambda a: None if a is None else a[:k]  # noqa: E731
        cut_all = lambda d: None if d is None else {name: v[:k] for name, v in d.items()}  # noqa: E731
        return Batch(cut_all(self.params), cut(self.w), cut(self.z), cut(self.lam), cut(self.nu),
                     cut_all(self.grads), self.margin, self.active)


def make_problem(rng, n: int, m: int, p: int, lead: tuple = ()) -> dict:
    """OptNet-style random QPs, feasible by construction: h = G z0 + s0 (s0 > 0), b = A z0."""
    L = rng.standard_normal(lead + (n, n))
    Q = L @ np.swapaxes(L, -1, -2) / n + 0.1 * np.eye(n)
    Q = 0.5 * (Q + np.swapaxes(Q, -1, -2))  # symmetric to the last bit
    G, A = rng.standard_normal(lead + (m, n)), rng.standard_normal(lead + (p, n))
    z0, s0 = rng.standard_normal(lead + (n,)), rng.uniform(0.0, 1.0, lead + (m,))
    h = np.einsum("...ij,...j->...i", G, z0) + s0
    b = np.einsum("...ij,...j->...i", A, z0)
    return {"Q": Q, "c": rng.standard_normal(lead + (n,)), "G": G, "h": h, "A": A, "b": b}


def make_batch(batch: int, n: int, m: int, p: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    params = make_problem(rng, n, m, p, (batch,))
    return Batch(params, rng.standard_normal((batch, n)))


CLARABEL_TIGHT = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10, max_iter=200)


def clarabel_solve(Q, c, G, h, A, b):
    """(z, lam, nu) from Clarabel (cvxpy's default QP solver, called directly: no per-problem canonicalization).

    At tight tolerances first; where Clarabel stalls there (it can end with
    InsufficientProgress near 1e-12), at its defaults (1e-8): only the active
    set is taken from it, and `reference` checks the exact point it leads to.
    """
    import clarabel
    import scipy.sparse as sp

    p, m = A.shape[0], G.shape[0]
    for options in (CLARABEL_TIGHT, {}):
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        for key, value in options.items():
            setattr(settings, key, value)
        solver = clarabel.DefaultSolver(sp.csc_matrix(np.triu(Q)), c, sp.csc_matrix(np.vstack([A, G])),
                                        np.concatenate([b, h]), [clarabel.ZeroConeT(p), clarabel.NonnegativeConeT(m)],
                                        settings)
        sol = solver.solve()
        if str(sol.status) == "Solved":
            break
    else:
        raise RuntimeError(f"reference: Clarabel ended with {sol.status}")
    y = np.asarray(sol.z)  # Qz + c + A'nu + G'lam = 0, the sign convention of qpth and optlang
    return np.asarray(sol.x), y[p:], y[:p]


def reference(Q, c, G, h, A, b, w):
    """Exact solution, duals and the gradient of <w, z> w.r.t. every param, for one problem.

    Clarabel picks the active set S = {lam_i > slack_i}; (z, lam_S, nu) then
    solve the KKT system  K [z; lam_S; nu] = [-c; h_S; b]  with
    K = [[Q, G_S', A'], [G_S, 0, 0], [A, 0, 0]]  (lam = 0 off S). With
    [u; v_S; v_e] = K^{-1} [w; 0; 0] (K is symmetric), differentiating gives
        dL/dc = -u,   dL/dh_S = v_S,   dL/db = v_e,   dL/dh = 0 off S
        dL/dQ = -(u z' + z u') / 2       (Q enters as 0.5 z'Qz: symmetrized)
        dL/dG_S = -(lam_S u' + v_S z'),  dL/dG = 0 off S
        dL/dA = -(nu u' + v_e z')
    valid while S does not change, which strict complementarity guarantees locally.
    """
    n, m, p = Q.shape[0], G.shape[0], A.shape[0]
    z0, lam0, _ = clarabel_solve(Q, c, G, h, A, b)
    S = lam0 > h - G @ z0
    k = int(S.sum())
    K = np.zeros((n + k + p, n + k + p))
    K[:n, :n] = Q
    K[:n, n:n + k], K[n:n + k, :n] = G[S].T, G[S]
    K[:n, n + k:], K[n + k:, :n] = A.T, A
    x = np.linalg.solve(K, np.concatenate([-c, h[S], b]))
    z, lam, nu = x[:n], np.zeros(m), x[n + k:]
    lam[S] = x[n:n + k]
    y = np.linalg.solve(K, np.concatenate([w, np.zeros(k + p)]))
    u, vS, ve = y[:n], y[n:n + k], y[n + k:]
    gG, gh = np.zeros_like(G), np.zeros_like(h)
    gG[S] = -(np.outer(lam[S], u) + np.outer(vS, z))
    gh[S] = vS
    grads = {"Q": -0.5 * (np.outer(u, z) + np.outer(z, u)), "c": -u, "G": gG, "h": gh,
             "A": -(np.outer(nu, u) + np.outer(ve, z)), "b": ve}
    slack = h - G @ z
    margin = min(lam[S].min(initial=np.inf), slack[~S].min(initial=np.inf))
    return z, lam, nu, grads, margin, k


def attach_reference(data: Batch) -> None:
    outs = [reference(*(data.params[k][i] for k in PARAMS), data.w[i]) for i in range(data.w.shape[0])]
    data.z, data.lam, data.nu = (np.stack([o[j] for o in outs]) for j in range(3))
    data.grads = {k: np.stack([o[3][k] for o in outs]) for k in PARAMS}
    data.margin = float(min(o[4] for o in outs))
    active = [o[5] for o in outs]
    data.active = (min(active), float(np.mean(active)), max(active))


def self_check(n: int, m: int, p: int, seed: int, problems: int = 4) -> float:
    """Central finite differences of the reference solution vs the KKT gradient, all params at once."""
    rng = np.random.default_rng(seed + 1)
    worst = 0.0
    for _ in range(problems):
        prm, w = make_problem(rng, n, m, p), rng.standard_normal(n)
        grads = reference(*(prm[k] for k in PARAMS), w)[3]
        loss = lambda q: w @ reference(*(q[k] for k in PARAMS), w)[0]  # noqa: E731
        for _ in range(3):
            d = {k: rng.standard_normal(v.shape) for k, v in prm.items()}
            d["Q"] = 0.5 * (d["Q"] + d["Q"].T)  # Q stays symmetric
            step = 1e-6
            plus = loss({k: v + step * d[k] for k, v in prm.items()})
            minus = loss({k: v - step * d[k] for k, v in prm.items()})
            fd = (plus - minus) / (2 * step)
            exact = sum((grads[k] * d[k]).sum() for k in PARAMS)
            worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-12))
    return worst


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
    err_z: float = float("nan")
    err_grad: dict = field(default_factory=lambda: {k: float("nan") for k in PARAMS})
    note: str = ""
    extra: dict = field(default_factory=dict)


def measure(variant, data: Batch, batch: int, args) -> Row:
    """Time one variant's forward and forward+backward on `data` and score them against the reference."""
    size = data.w.shape[0]
    row = Row(variant.method, variant.settings, variant.dtype_name, variant.device, batch, size)
    row.extra["load_before"] = os.getloadavg()[0]
    try:
        variant.setup(data)
        scale = batch / size
        t, row.reps_fwd, z = time_call(variant.forward, args.warmup, args.reps, args.budget, variant.sync)
        row.fwd_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fwd_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        t, row.reps_fb, (z_fb, grads) = time_call(variant.forward_backward, args.warmup, args.reps, args.budget,
                                                  variant.sync)
        row.fb_ms = 1e3 * t[args.clock] * scale
        row.extra.update({f"fb_{k}_ms": 1e3 * v * scale for k, v in t.items()})
        row.err_z = max(rel_err(variant.numpy(z), data.z), rel_err(variant.numpy(z_fb), data.z))
        per_problem = []
        for k in PARAMS:
            g = variant.numpy(grads[k])
            if k == "Q":  # conventions differ off the symmetric matrices: compare the symmetric parts
                g = 0.5 * (g + np.swapaxes(g, -1, -2))
            row.err_grad[k] = rel_err(g, data.grads[k])
            per_problem.append(rel_errs(g, data.grads[k]))
        row.extra["median_err_z"] = float(np.median(rel_errs(variant.numpy(z_fb), data.z)))
        row.extra["median_err_grad"] = float(np.median(np.max(per_problem, axis=0)))  # worst param, typical problem
        extra = variant.report()
        if "lam" in extra:  # optlang's duals, against the reference's
            extra["err_lam"] = rel_err(extra.pop("lam"), data.lam)
            extra["err_nu"] = rel_err(extra.pop("nu"), data.nu)
        row.extra.update(extra)
    except Exception as exc:  # a peer failing must not take the others down
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    row.extra["load_after"] = os.getloadavg()[0]
    return row


def rel_errs(est, ref) -> np.ndarray:
    """Per problem, ||est - ref||_inf / ||ref||_inf (nnls.rel_err is their max)."""
    est = np.asarray(est, dtype=np.float64).reshape(ref.shape[0], -1)
    ref = ref.reshape(ref.shape[0], -1)
    return np.abs(est - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1), np.finfo(np.float64).tiny)


# -- output --------------------------------------------------------------------------------
def table(rows: list) -> str:
    grads = " | ".join(f"err ∂{k}" for k in PARAMS)
    lines = [f"| method | settings | fwd ms | vs optlang | fwd+bwd ms | vs optlang | err z | {grads} | median err ∇ | reps |",
             "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(PARAMS) + "---:|---:|"]
    base = next((r for r in rows if r.method == "optlang" and r.fwd_ms == r.fwd_ms), None)
    for r in rows:
        scaled = f" (timed on {r.timed_on} problems, ×{r.batch / r.timed_on:.3g} scaled)" if r.timed_on != r.batch else ""
        device = f", {r.device}" if r.device != "cpu" else ""
        settings = r.settings + device + scaled + (f" — {r.note}" if r.note else "")
        errs = " | ".join(fmt_err(r.err_grad[k]) for k in PARAMS)
        lines.append(
            f"| {r.method} | {settings} | {fmt_ms(r.fwd_ms)} | {fmt_ratio(r.fwd_ms, base.fwd_ms if base else float('nan'))} "
            f"| {fmt_ms(r.fb_ms)} | {fmt_ratio(r.fb_ms, base.fb_ms if base else float('nan'))} "
            f"| {fmt_err(r.err_z)} | {errs} | {fmt_err(r.extra.get('median_err_grad', float('nan')))} "
            f"| {r.reps_fwd}/{r.reps_fb} |")
    return "\n".join(lines)


def profile_optlang(data: Batch, args, top: int = 20) -> None:
    """Print where one optlang forward+backward call spends its time: torch ops, then Python functions."""
    import cProfile
    import pstats

    from torch.profiler import ProfilerActivity, profile

    variant = Optlang(torch.float64, args.device, "torch", None)
    variant.setup(data)
    variant.forward_backward()  # warm: the generated module is loaded
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        variant.forward_backward()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    pr = cProfile.Profile()
    pr.runcall(variant.forward_backward)
    pstats.Stats(pr).sort_stats("cumulative").print_stats(top)


def optlang_sources() -> dict:
    """sha256 (first 12 hex digits) of the optlang modules a QP solve runs, as imported by this process:
    the IPM is under development, and this tells which version a results file measured."""
    import hashlib
    import importlib

    out = {}
    for name in ("optlang.solvers.ipm", "optlang.runtime.kkt", "optlang.runtime.layer", "optlang.solvers.backward"):
        try:
            path = Path(importlib.import_module(name).__file__)
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        except Exception as exc:  # optlang missing or broken: the optlang rows will say so
            out[name] = f"unavailable ({type(exc).__name__})"
    return out


# -- main ----------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1024, 128], help="batch sizes, one table each")
    p.add_argument("--n", type=int, default=20, help="variables")
    p.add_argument("--m", type=int, default=20, help="inequality constraints G z <= h")
    p.add_argument("--p", type=int, default=5, help="equality constraints A z = b")
    p.add_argument("--device", default="cpu", help="device for optlang and qpth (cvxpylayers and JAXopt stay on CPU)")
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    p.add_argument("--optlang-tol", type=float, nargs="*", default=[1e-12],
                   help="optlang rows besides its default tolerance (none: only the default)")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions at most (after warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (JIT compiles, caches)")
    p.add_argument("--budget", type=float, default=5.0, help="seconds per measurement after which reps stop (never under 3)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for torch (set_num_threads), BLAS/OpenMP (threadpoolctl), diffcp's pool, and XLA (1 = single-threaded)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time, all threads (with --threads 1, a stand-in "
                        "for the wall time of an idle machine when others share the CPU; meaningless on GPU)")
    p.add_argument("--cvxpylayers-problems", type=int, default=256,
                   help="time cvxpylayers on only this many problems of each batch and scale the time up (0: all)")
    p.add_argument("--profile", action="store_true",
                   help="only profile one optlang forward+backward call at the first batch size (torch profiler, cProfile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write all rows and the machine to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with limit_threads(args.threads):
        if args.profile:
            data = make_batch(args.batch[0], args.n, args.m, args.p, args.seed + args.batch[0])
            profile_optlang(data, args)
            return 0
        return run(args)


def run(args) -> int:
    """Self-check the reference, then time and score every method at every batch size."""
    dtype = torch.float64
    info = machine()
    info["versions"]["clarabel"] = _version("clarabel")
    info["optlang_sources"] = optlang_sources()
    print(f"machine: {info}")
    fd = self_check(args.n, args.m, args.p, args.seed)
    print(f"self-check: KKT reference gradient vs central finite differences, max rel. error {fd:.1e}")
    if fd > 1e-5:
        print("self-check FAILED: the reference gradient is wrong; not timing anything", file=sys.stderr)
        return 1
    skipped, results, tables = [], [], []
    for batch in args.batch:
        data = make_batch(batch, args.n, args.m, args.p, args.seed + batch)
        attach_reference(data)
        print(f"\nbatch {batch}, n={args.n}, m={args.m}, p={args.p}: reference ready (active inequalities "
              f"min/mean/max {data.active[0]}/{data.active[1]:.1f}/{data.active[2]}, smallest complementarity "
              f"margin {data.margin:.1e})", flush=True)
        if not data.margin > 0:
            print("warning: the reference violates the optimality conditions (or strict complementarity) "
                  "for some problem; its errors column is not meaningful", file=sys.stderr)
        rows = []
        for variant, limit in variants(args, dtype, skipped if batch == args.batch[0] else []):
            sub = data.head(limit) if limit and limit < batch else data
            row = measure(variant, sub, batch, args)
            errs = " ".join(f"∂{k} {fmt_err(row.err_grad[k])}" for k in PARAMS)
            print(f"  {row.method:12s} {row.settings[:60]:60s} fwd {fmt_ms(row.fwd_ms):>9s} ms  fwd+bwd "
                  f"{fmt_ms(row.fb_ms):>9s} ms  err z {fmt_err(row.err_z)}  {errs}"
                  f"  load {row.extra['load_before']:.1f}->{row.extra['load_after']:.1f} {row.note}", flush=True)
            rows.append(row)
        results.extend(rows)
        clock = "wall-clock" if args.clock == "wall" else "CPU"
        tables.append(f"### batch {batch}, n={args.n}, m={args.m}, p={args.p}, float64, {clock} time, "
                      f"{args.threads} thread(s)\n\n{table(rows)}")
    print()
    warn_if_busy(results, args.clock)
    for line in skipped:
        print(line)
    for r in results:
        if r.method == "optlang" and "err_lam" in r.extra:
            print(f"optlang {r.settings}, batch {r.batch}: duals err lam {fmt_err(r.extra['err_lam'])}, "
                  f"nu {fmt_err(r.extra['err_nu'])}; iterations mean {r.extra['mean_iterations']:.1f}, "
                  f"max {r.extra['max_iterations']}; all converged: {r.extra['all_converged']}")
    print("\n\n".join(tables))
    if args.json:
        write_json(args.json, info, skipped, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
