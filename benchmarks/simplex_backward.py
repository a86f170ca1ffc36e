"""The backward of a simplex-constrained problem: the dense direct solve against CG on the free set.

For problems whose prox is a projection onto simplices (and so whose residual Jacobian is not the
identity: a non-trivial Hessian), it times the backward pass alone (`torch.autograd.grad` of a loss of
the solution, the forward solved once) with backward="direct" (the dense fixed-point Jacobian from
one batched JVP call, then LU) and backward="cg" (conjugate gradients on the support with sum zero),
and prints how far the two gradients are apart and which method warned (a singular or
unconverged system: there the derivative is not unique, or not there at all, and the two may
differ). Cases: the Crammer-Singer SVM dual of examples/svm.opt (one problem, m samples, d = 20,
k = 5 classes: the state has m k entries, one simplex per sample) and a quadratic over the
probability simplex (`SIMPLEX_QP` below: a long-only, fully invested mean-variance portfolio; a
batch of B problems, n assets). benchmarks/RESULTS.md (eighth session) reads it: why "auto" stays
CG on the free set for simplices.

    python benchmarks/simplex_backward.py [--reps 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch

import optlang

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
F64 = torch.float64
SIMPLEX_QP = """problem simplex_qp
dim n
param Sigma[n, n] psd, mu[n]
var w[n]
minimize 0.5 * quad(w, Sigma) - dot(mu, w)
subject to
  w >= 0
  sum(w) == 1
"""


def svm_case(m: int, seed: int, d: int = 20, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d, generator=g, dtype=F64)
    labels = torch.randint(k, (m,), generator=g)
    Y = torch.nn.functional.one_hot(labels, k).to(F64)
    params = {"X": X.requires_grad_(), "Y": Y, "lam": torch.tensor(1.0, dtype=F64, requires_grad=True)}
    return (EXAMPLES / "svm.opt").read_text(), f"SVM m={m} d={d} k={k}", m * k, 1, params, ("X", "lam")


def simplex_qp_case(batch: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(batch, n, n, generator=g, dtype=F64)
    Sigma = A @ A.transpose(-1, -2) / n + 0.1 * torch.eye(n, dtype=F64)
    params = {"Sigma": Sigma.requires_grad_(), "mu": torch.randn(batch, n, generator=g, dtype=F64).requires_grad_()}
    return SIMPLEX_QP, f"simplex QP B={batch} n={n}", n, batch, params, ("Sigma", "mu")


def backward_ms(layer, params: dict, wanted: tuple, reps: int):
    """(median ms of the backward alone, the gradients): the forward is solved once and kept."""
    out = layer(**params)
    out = out[0] if isinstance(out, tuple) else out
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    loss = (weights * out).sum()
    inputs = [params[name] for name in wanted]
    grads = torch.autograd.grad(loss, inputs, retain_graph=True)
    times = []
    for _ in range(reps):
        start = time.process_time()
        torch.autograd.grad(loss, inputs, retain_graph=True)
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times), grads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = [svm_case(m, 0) for m in (25, 50, 100, 200)]
    cases += [simplex_qp_case(b, n, 0) for b, n in ((1, 50), (1, 200), (64, 20), (64, 50), (16, 100))]
    print("| problem | state entries | batch | direct ms | cg ms | cg / direct | max rel. difference | warned |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for source, label, n, batch, params, wanted in cases:
        ms, grads, warned = {}, {}, []
        for method in ("direct", "cg"):
            layer = optlang.compile_string(source, backend="torch", backward=method)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ms[method], grads[method] = backward_ms(layer, params, wanted, args.reps)
            if caught:
                warned.append(method)
        diff = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))
                   for a, b in zip(grads["direct"], grads["cg"]))
        print(f"| {label} | {n} | {batch} | {ms['direct']:.2f} | {ms['cg']:.2f} | {ms['cg'] / ms['direct']:.2f} "
              f"| {diff:.1e} | {', '.join(warned) or 'neither'} |", flush=True)


if __name__ == "__main__":
    main()
