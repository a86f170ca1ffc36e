"""optlang alone on issue 8's six problems: forward + backward and forward CPU time, and iterations.

    python benchmarks/six.py [ridge nnls qp sparsemax svm lasso] [--reps 60]

For before/after comparisons at the same moment: put another checkout first on the path (its own
`backends/` linked in as `optlang/backends`, and a fresh `OPTLANG_CACHE_DIR`), run both trees in
turn, twice. The data, sizes and optlang adapters are the suite's (`*_methods.py`, the issue's
sizes, float64, the torch backend); one thread; medians of `--reps` calls (the QP 9, the SVM 5:
they take 0.1-0.3 s a call) after three warm-up calls, and the 10th percentile beside them.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import lasso
import lasso_methods
import nnls
import nnls_methods
import qp
import qp_methods
import ridge
import ridge_methods
import sparsemax
import svm
import svm_methods

F64 = torch.float64
SLOW = {"qp": 9, "svm": 5}  # repetitions of the problems that take 0.1 s or more a call


def method_and_data(name: str):
    """The suite's optlang adapter and one batch of the issue's size (seed 1)."""
    if name == "ridge":
        return ridge_methods.Optlang(F64, "cpu", "torch"), ridge.make_batch(1, 200, 50, 1)
    if name == "nnls":
        return nnls_methods.Optlang(F64, "cpu", "torch"), nnls.make_batch(64, 40, 20, 1)
    if name == "qp":
        return qp_methods.Optlang(F64, "cpu", "torch", None), qp.make_batch(128, 32, 16, 4, 1)
    if name == "sparsemax":
        return sparsemax.Optlang(F64, "cpu", "torch", "auto"), sparsemax.make_batch(1024, 100, 1)
    if name == "svm":
        return svm_methods.Optlang(F64, "cpu", "torch"), svm.make_batch(1, 100, 20, 5, 1.0, 3.0, 1)
    return ridge_methods.Optlang(F64, "cpu", "torch", lasso_methods.LASSO_OPT), lasso.make_batch(1, 100, 50, 1)


def cpu_ms(call, reps: int) -> list:
    out = []
    for _ in range(reps):
        start = time.process_time()
        call()
        out.append((time.process_time() - start) * 1e3)
    return out


def main(argv=None) -> int:
    names = ("ridge", "nnls", "qp", "sparsemax", "svm", "lasso")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", default=list(names), help=" ".join(names))
    p.add_argument("--reps", type=int, default=60)
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        p.error(f"unknown problem {unknown[0]!r}; choose from {', '.join(names)}")
    torch.set_num_threads(1)
    import optlang

    print(f"optlang from {optlang.__file__}")
    for name in args.names:
        method, data = method_and_data(name)
        method.setup(data)
        for _ in range(3):
            method.forward_backward()
        reps = SLOW.get(name, args.reps)
        both, forward = cpu_ms(method.forward_backward, reps), cpu_ms(method.forward, reps)
        report = method.report()
        print(f"{name:10s} fwd+bwd {statistics.median(both):8.2f} ms (p10 {sorted(both)[len(both) // 10]:8.2f})  "
              f"fwd {statistics.median(forward):8.2f} ms  iterations {report.get('max_iterations')}  "
              f"converged {report.get('all_converged')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
