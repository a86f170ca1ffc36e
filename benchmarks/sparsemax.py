"""Time batched sparsemax, forward + backward: optlang's backward methods against closed forms.

    python benchmarks/sparsemax.py [--batch 1024] [--n 100] [--repeat 15] [--json out.json]

sparsemax(v) = argmin_x ||x - v||^2 over the simplex (examples/sparsemax.opt). Rows:
  optlang auto     the default: CG on the simplex's free set (one iteration here: H = I)
  optlang direct   a dense LU of the n x n fixed-point Jacobian per element (the default before)
  torch closed     sort-based projection and its closed-form backward, hand-written in PyTorch
  jaxopt           jaxopt.projection.projection_simplex under jax.vmap, gradients by jax.vjp
                   (skipped with the reason when jax or jaxopt does not import)
Each row: the median of --repeat runs of forward + backward of sum(c * x), in float64 on the CPU,
and its largest gradient error against the closed form. Prints ratios to optlang auto.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent


def closed_form(v: torch.Tensor) -> torch.Tensor:
    """The projection onto the simplex by sorting (Held et al.), batched over the leading dims."""
    z, _ = torch.sort(v, dim=-1, descending=True)
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype)
    cumulative = z.cumsum(-1) - 1
    support = (z - cumulative / k) > 0
    size = support.sum(-1, keepdim=True)
    tau = cumulative.gather(-1, size - 1) / size.to(v.dtype)
    return torch.relu(v - tau)


class ClosedForm(torch.autograd.Function):
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


def _time(fn, repeat: int) -> tuple[float, torch.Tensor]:
    fn()  # warm up (compiles, caches)
    times, grad = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        grad = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), grad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import optlang

    gen = torch.Generator().manual_seed(0)
    v = torch.randn(args.batch, args.n, generator=gen, dtype=torch.float64)
    c = torch.randn(args.batch, args.n, generator=gen, dtype=torch.float64)
    layer = optlang.compile(ROOT / "examples" / "sparsemax.opt")
    reference = ClosedForm.backward(type("ctx", (), {"saved_tensors": (closed_form(v),)})(), c)

    def optlang_row(backward):
        def run():
            leaf = v.clone().requires_grad_(True)
            (layer(v=leaf, backward=backward) * c).sum().backward()
            return leaf.grad
        return run

    def torch_row():
        leaf = v.clone().requires_grad_(True)
        (ClosedForm.apply(leaf) * c).sum().backward()
        return leaf.grad

    rows = {"optlang auto": optlang_row("auto"), "optlang direct": optlang_row("direct"), "torch closed": torch_row}
    try:
        import jax
        import jax.numpy as jnp
        from jaxopt.projection import projection_simplex

        jax.config.update("jax_enable_x64", True)
        project = jax.jit(lambda a, b: jax.vjp(jax.vmap(projection_simplex), a)[1](b)[0])
        va, ca = jnp.asarray(v.numpy()), jnp.asarray(c.numpy())
        rows["jaxopt"] = lambda: torch.from_numpy(__import__("numpy").asarray(project(va, ca).block_until_ready()))
    except Exception as exc:  # noqa: BLE001  (a peer that does not import is skipped, with why)
        print(f"jaxopt: skipped ({type(exc).__name__}: {exc})")

    results = {}
    for name, fn in rows.items():
        seconds, grad = _time(fn, args.repeat)
        results[name] = {"ms": seconds * 1e3, "grad_err": float((grad - reference).abs().max())}
    base = results["optlang auto"]["ms"]
    print(f"sparsemax B={args.batch} n={args.n} float64 CPU ({torch.get_num_threads()} threads), "
          f"forward + backward, median of {args.repeat}")
    print(f"  {'row':16s} {'ms':>9s} {'vs auto':>8s} {'max grad err':>13s}")
    for name, r in results.items():
        print(f"  {name:16s} {r['ms']:9.2f} {r['ms'] / base:8.2f} {r['grad_err']:13.1e}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
