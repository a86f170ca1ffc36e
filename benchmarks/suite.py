"""The benchmark suite: optlang against qpth, cvxpylayers and JAXopt on issue 8's problems, in one run.

    python benchmarks/suite.py [--quick] [--threads 1 --clock cpu] [--device cuda] [--out DIR]

Runs each problem's script (ridge.py, nnls.py, qp.py, sparsemax.py, svm.py, lasso.py: each times
optlang and every peer that imports, at its defaults and at tight settings, against a float64
reference) at the sizes of PROBLEMS, writes each script's JSON under --out, and prints one
summary: per problem, optlang's forward + backward time, the fastest peer whose gradients are
right to --accurate (max relative error over the batch and the params, default 1e-6), the
fastest peer of any accuracy, and the ratios (above 1x: optlang is faster). Hand-written closed
forms (rows whose settings say "closed form") are reference points, not peers. Progress: each
script prints its rows as they are measured. `--quick` skips the two large batched problems
(QP B=4096 n=64, NNLS B=1024 64x32). The summary is also saved as summary.json and summary.md.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# name -> (script module, its arguments, large): issue 8's six problems, then the two large batches.
PROBLEMS = [
    ("ridge n=200 d=50", "ridge", ["--batch", "1", "--n", "200", "--d", "50"], False),
    ("NNLS B=64 A 40x20", "nnls", ["--batch", "64", "--m", "40", "--n", "20"], False),
    ("OptNet QP B=128 n=32, 16 ineq, 4 eq", "qp", ["--batch", "128", "--n", "32", "--m", "16", "--p", "4"], False),
    ("sparsemax B=1024 n=100", "sparsemax", ["--batch", "1024", "--n", "100"], False),
    ("Crammer-Singer SVM m=100 d=20 k=5", "svm", ["--batch", "1", "--m", "100", "--d", "20", "--k", "5"], False),
    ("lasso n=100 d=50", "lasso", ["--batch", "1", "--n", "100", "--d", "50"], False),
    ("QP B=4096 n=64, 32 ineq, 8 eq", "qp", ["--batch", "4096", "--n", "64", "--m", "32", "--p", "8",
                                             "--cvxpylayers-problems", "64"], True),
    ("NNLS B=1024 A 64x32", "nnls", ["--batch", "1024", "--m", "64", "--n", "32", "--cvxpylayers-problems", "64"], True),
]


def grad_error(row: dict) -> float:
    """The worst gradient error of a row, whichever script wrote it (nan if it has none)."""
    errs = row.get("err_grad")
    if isinstance(errs, dict):
        values = list(errs.values())
    else:
        values = [v for k, v in row.items() if k.startswith("err_g")]
    values = [float(v) for v in values if v is not None]
    return max(values) if values and all(v == v for v in values) else float("nan")


def summarize(label: str, rows: list, accurate: float) -> dict:
    ok = [r for r in rows if r.get("fb_ms") == r.get("fb_ms") and not r.get("note")]
    ours = [r for r in ok if r["method"] == "optlang"]
    base = min(ours, key=lambda r: r["fb_ms"]) if ours else None
    # Hand-written closed forms (a Cholesky solve, a sort) are reference points, not layers a user
    # could put any problem into: shown in each script's table, not counted as peers here.
    peers = [r for r in ok if r["method"] != "optlang" and "closed form" not in r["settings"]
             and "closed-form" not in r["settings"]]
    right = [r for r in peers if grad_error(r) <= accurate]
    best_right = min(right, key=lambda r: r["fb_ms"]) if right else None
    best_any = min(peers, key=lambda r: r["fb_ms"]) if peers else None
    out = {"problem": label, "optlang_fb_ms": base["fb_ms"] if base else None,
           "optlang_grad_err": grad_error(base) if base else None,
           "optlang_settings": base["settings"] if base else None}
    for key, r in (("accurate_peer", best_right), ("fastest_peer", best_any)):
        out[key] = None if r is None else {"method": r["method"], "settings": r["settings"], "fb_ms": r["fb_ms"],
                                           "grad_err": grad_error(r),
                                           "ratio": r["fb_ms"] / base["fb_ms"] if base else None}
    return out


def table(summary: list, accurate: float) -> str:
    lines = [f"| problem | optlang fwd+bwd ms | optlang ∇ err | fastest peer with ∇ err ≤ {accurate:g} | its ms | "
             "optlang is | fastest peer (any accuracy) | its ms | its ∇ err | optlang is |",
             "|---|---:|---:|---|---:|---:|---|---:|---:|---:|"]
    for s in summary:
        def cells(p):
            if p is None or s["optlang_fb_ms"] is None:
                return ["—", "—", "—"] if p is None else [f"{p['method']}: {p['settings'][:60]}", f"{p['fb_ms']:.1f}", "—"]
            return [f"{p['method']}: {p['settings'][:60]}", f"{p['fb_ms']:.1f}", f"{p['ratio']:.2f}×"]
        a, f = cells(s["accurate_peer"]), cells(s["fastest_peer"])
        ours = "—" if s["optlang_fb_ms"] is None else f"{s['optlang_fb_ms']:.1f}"
        err = "—" if s["optlang_grad_err"] is None else f"{s['optlang_grad_err']:.1e}"
        ferr = "—" if s["fastest_peer"] is None else f"{s['fastest_peer']['grad_err']:.1e}"
        lines.append(f"| {s['problem']} | {ours} | {err} | {a[0]} | {a[1]} | {a[2]} | {f[0]} | {f[1]} | {ferr} | {f[2]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="skip the two large batched problems")
    p.add_argument("--only", nargs="+", default=None, help="script names to run (ridge nnls qp sparsemax svm lasso)")
    p.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "suite")
    p.add_argument("--accurate", type=float, default=1e-6, help="gradient error up to which a peer counts as accurate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=("wall", "cpu"), default=None)
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--budget", type=float, default=None)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device]
    for flag in ("threads", "clock", "reps", "budget"):
        if getattr(args, flag) is not None:
            common += [f"--{flag}", str(getattr(args, flag))]
    summary, started = [], time.perf_counter()
    chosen = [pr for pr in PROBLEMS if not (args.quick and pr[3]) and (not args.only or pr[1] in args.only)]
    for i, (label, script, flags, _) in enumerate(chosen, 1):
        path = args.out / f"{i:02d}_{script}.json"
        print(f"\n=== [{i}/{len(chosen)}] {label}: {script}.py {' '.join(flags + common)} "
              f"({time.perf_counter() - started:.0f} s so far)", flush=True)
        module = __import__(script)
        code = module.main(flags + common + ["--json", str(path)])
        rows = json.loads(path.read_text())["rows"] if path.exists() else []
        if code != 0 or not rows:
            print(f"warning: {script}.py exited with {code}", file=sys.stderr)
        summary.append(summarize(label, rows, args.accurate))
    text = table(summary, args.accurate)
    print(f"\n=== summary (forward + backward; ratio = peer time / optlang time), {time.perf_counter() - started:.0f} s, "
          f"1-minute load average {os.getloadavg()[0]:.1f}\n\n{text}")
    (args.out / "summary.md").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps({"argv": sys.argv, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
