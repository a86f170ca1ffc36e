"""Does torch.compile of the generated functions pay on CPU? The lasso layer (n=100, d=50), one thread.

    python benchmarks/torch_compile.py [--reps 30]

Times forward + backward (CPU time, median) with the PyTorch backend's generated functions as
printed, then with each of them wrapped in torch.compile(dynamic=True), and prints the compile
time. The solvers' loops are not compiled: their per-instance control flow would break the graph
at every iteration.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import torch

import optlang
from optlang.runtime.executor import TorchExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATED = ("residual", "prox", "gradient", "objective", "hvp", "jvp_x", "vjp_x", "vjp_theta", "free_mask")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = dict(X=torch.randn(100, 50, generator=g, dtype=torch.float64),
                y=torch.randn(100, generator=g, dtype=torch.float64), lam=torch.tensor(2.0, dtype=torch.float64))
    layer = optlang.compile(ROOT / "examples" / "lasso.opt")

    def forward_backward():
        leaves = {k: v.clone().requires_grad_() for k, v in data.items()}
        sol = layer.solve(**leaves, warn=False)
        torch.autograd.grad(sol.w.sum(), list(leaves.values()))

    def median_ms():
        forward_backward()
        times = []
        for _ in range(args.reps):
            start = time.process_time()
            forward_backward()
            times.append(time.process_time() - start)
        return 1e3 * statistics.median(times)

    print(f"eager generated functions: {median_ms():.2f} ms forward + backward")
    module = TorchExecutor().module_for(layer.plan)
    for name in GENERATED:
        if hasattr(module, name):
            setattr(module, name, torch.compile(getattr(module, name), dynamic=True))
    start = time.time()
    forward_backward()
    print(f"torch.compile: first call {time.time() - start:.1f} s (compiling)")
    print(f"compiled generated functions: {median_ms():.2f} ms forward + backward")


if __name__ == "__main__":
    main()
