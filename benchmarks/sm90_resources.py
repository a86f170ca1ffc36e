"""Registers and spills of every Triton kernel of the examples at the sizes users run, on sm_90.

    python benchmarks/sm90_resources.py [--dtype fp32 fp64] [--only qp nnls] [--json out.json]

Compiles ahead of time for an H100 (no GPU needed; backends/triton/resources.py) each kernel the
Triton executor would launch for the sizes in SIZES, with the executor's own tile sizes and
num_warps, and prints registers per thread, spill bytes per thread and shared memory, and the
backend the default choice takes there (PyTorch, with the reason, where the kernels would spill).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
# example -> [(dims, kernels)]: the sizes (NNLS A 64 x 32; OptNet QP n = 20 with 20
# inequalities and 5 equalities, and n = 64 with 32 and 8; sparsemax n = 256; DEQ d = 64).
SIZES = {
    "nnls": [({"m": 64, "n": 32}, ("fista_kernel", "backward_cg_kernel", "backward_direct_kernel"))],
    "qp": [({"n": 20, "m": 20, "p": 5}, ("ipm_kernel", "backward_kkt_kernel")),
           ({"n": 64, "m": 32, "p": 8}, ("ipm_kernel", "backward_kkt_kernel"))],
    "sparsemax": [({"n": 256}, ("fista_kernel",))],
    "deq": [({"d": 64, "k": 16}, ("anderson_kernel", "newton_kernel", "backward_direct_kernel"))],
}


def rows(dtypes, only=None) -> list:
    """One dict per kernel and size: the path the default backend choice takes, and on Triton the
    kernel's warps, registers, spill and shared bytes on sm_90."""
    import optlang
    from optlang.backends.triton import resources
    from optlang.backends.triton.executor import refusal
    from optlang.runtime.bound import BoundProblem

    out, specs = [], []
    for name, sizes in SIZES.items():
        if only and name not in only:
            continue
        source = ROOT / "examples" / f"{name}.opt"
        plan = optlang.compile(source, backend="torch").plan
        for dims, kernels in sizes:
            for dtype in dtypes:
                torch_dtype = torch.float32 if dtype == "fp32" else torch.float64
                why = refusal(BoundProblem(None, plan, {}, dims, (1,), torch_dtype, torch.device("cpu")))
                for kernel in kernels:
                    out.append({"example": name, "dims": dims, "kernel": kernel, "dtype": dtype,
                                "path": "pytorch" if why else "triton", "why": why})
                    # Measured either way: a size sent to PyTorch shows what it would have cost.
                    specs.append({"source": str(source), "dims": dims, "dtype": dtype, "kernel": kernel})
    start = time.perf_counter()
    measured = resources.measure(specs)
    for row, r in zip(out, measured):
        row.update(num_warps=r.num_warps, registers=r.registers, spill_bytes=r.spill_bytes, shared_bytes=r.shared_bytes,
                   launchable=r.launchable)
    print(f"(compiled {len(specs)} kernels for sm_90 in {time.perf_counter() - start:.0f} s)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", nargs="+", choices=("fp32", "fp64"), default=["fp32"])
    p.add_argument("--only", nargs="+", choices=sorted(SIZES), default=None)
    p.add_argument("--json", type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    from optlang.backends.triton import resources

    why = resources.available()
    if why is not None:
        print(f"cannot compile for sm_90 here: {why}")
        return 2
    table = rows(args.dtype, args.only)
    print("| example | sizes | kernel | dtype | warps | registers | spill bytes | shared bytes | fits the register file "
          "| default backend |")
    print("|---|---|---|---|---:|---:|---:|---:|---|---|")
    for r in table:
        sizes = " ".join(f"{k}={v}" for k, v in r["dims"].items())
        path = "Triton" if r["path"] == "triton" else f"PyTorch: {r['why']}"
        print(f"| {r['example']} | {sizes} | {r['kernel']} | {r['dtype']} | {r['num_warps']} | {r['registers']} | "
              f"{r['spill_bytes']} | {r['shared_bytes']} | {'yes' if r['launchable'] else 'no'} | {path} |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
