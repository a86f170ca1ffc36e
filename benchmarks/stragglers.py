"""Newton's stragglers (issue: derivatives that compose, item 4): a batch of 1000 smooth
logsumexp-regularized problems, timed with and without the few elements that need many iterations.

    python benchmarks/stragglers.py [--batch 1000] [--repeat 3]

Prints the forward time of the whole batch, of the batch without its slowest elements (the 1% with
the most iterations), the iteration counts, and their ratio (the goal: at most 2x).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import optlang

SOURCE = """problem lse
dim n, d
param A[n, d], b[d], lam > 0
var x[d]
minimize logsumexp(A @ x) - dot(b, x) + 0.5 * lam * sumsq(x)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    layer = optlang.compile_string(SOURCE)
    A = 2.0 * torch.randn(args.batch, 30, 10, dtype=torch.float64)
    b = torch.randn(args.batch, 10, dtype=torch.float64)
    lam = torch.tensor(1e-2, dtype=torch.float64)

    def timed(A, b):
        times, sol = [], None
        for _ in range(args.repeat):
            start = time.perf_counter()
            sol = layer.solve(A=A, b=b, lam=lam, warn=False)
            times.append(time.perf_counter() - start)
        return statistics.median(times), sol

    full, sol = timed(A, b)
    iters = sol.stats.iterations
    keep = iters.argsort()[: int(0.99 * args.batch)]
    easy, easy_sol = timed(A[keep], b[keep])
    print(f"batch {args.batch}: {1e3 * full:.1f} ms, iterations max {int(iters.max())}, median "
          f"{float(iters.double().median()):.0f}, {int((~sol.stats.converged).sum())} not converged")
    print(f"without the 1% slowest: {1e3 * easy:.1f} ms, iterations max {int(easy_sol.stats.iterations.max())}")
    print(f"ratio {full / easy:.2f} (goal <= 2)")


if __name__ == "__main__":
    main()
