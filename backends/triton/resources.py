"""Registers, spills and shared memory of a plan's Triton kernels on sm_90, compiled ahead of time.

No GPU needed: `triton.compile` targets `GPUTarget("cuda", 90, 128)` (an H100) and the wheel's
own `cuobjdump --dump-resource-usage` reads the cubin. Spilled registers live in the stack
frame (`STACK`, bytes per thread) and local memory (`LOCAL`); both must be 0 for a kernel to
keep its tiles on chip. Used by tests/test_sm90_resources.py and benchmarks/sm90_resources.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from optlang.backends.triton.limits import MAX_REGISTERS

TARGET_ARCH, WARP_SIZE = 90, 32
# sm_90's register file: 64K 32-bit registers per SM, given out per warp in blocks of 256 (8 a thread).
# A program's threads must hold their registers at once: ptxas reports what one thread uses (up to
# maxnreg) whatever the warps, so a kernel can compile without spilling and still fail to launch.
REGISTER_FILE, REGISTER_GRANULE = 65536, 8
# The kernels' scalar arguments that are not float tensors: everything else named *_ptr or
# grad_* is a float tensor of the call's dtype, every other non-constexpr argument an int32.
INT8_POINTERS = ("status_ptr", "flag_ptr", "weak_ptr")
INT32_POINTERS = ("iterations_ptr",)


@dataclass(frozen=True)
class KernelResources:
    kernel: str
    dtype: str  # "fp32" | "fp64"
    num_warps: int
    registers: int  # per thread
    spill_bytes: int  # STACK + LOCAL per thread: 0 when every value stays in registers
    shared_bytes: int

    @property
    def launchable(self) -> bool:
        """Whether one program's threads fit sm_90's register file together at this register count."""
        per_thread = -(-self.registers // REGISTER_GRANULE) * REGISTER_GRANULE
        return per_thread * WARP_SIZE * self.num_warps <= REGISTER_FILE

    @property
    def on_chip(self) -> bool:
        """No spill, and launchable: what a kernel the default backend choice runs must be."""
        return self.spill_bytes == 0 and self.launchable

    def line(self) -> str:
        return (f"{self.kernel:24s} {self.dtype} warps={self.num_warps:<2d} registers={self.registers:<3d} "
                f"spill={self.spill_bytes:<5d} shared={self.shared_bytes} launchable={self.launchable}")


def cuobjdump() -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")


def available() -> str | None:
    """Why an ahead-of-time sm_90 compile cannot run here (None: it can)."""
    try:
        import triton  # noqa: F401
        from triton.backends.compiler import GPUTarget  # noqa: F401
    except ImportError as exc:
        return f"triton does not import ({exc})"
    if not os.access(cuobjdump(), os.X_OK):
        return "the triton wheel has no cuobjdump"
    return None


def compile_kernel(kernel, constexprs: dict, dtype: str, num_warps: int) -> KernelResources:
    """Compile one @triton.jit kernel for sm_90 with these constexprs and read its resource usage."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    signature = {}
    for p in kernel.params:
        if p.is_constexpr:
            signature[p.name] = "constexpr"
        elif p.name in INT8_POINTERS:
            signature[p.name] = "*i8"
        elif p.name in INT32_POINTERS:
            signature[p.name] = "*i32"
        elif p.name.endswith("_ptr") or p.name.startswith(("ptr_", "grad_")):
            signature[p.name] = "*" + dtype
        else:
            signature[p.name] = "i32"
    consts = {"DTYPE": tl.float32 if dtype == "fp32" else tl.float64}
    consts.update({k: v for k, v in constexprs.items() if signature.get(k) == "constexpr"})
    source = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=consts)
    compiled = triton.compile(source, target=GPUTarget("cuda", TARGET_ARCH, WARP_SIZE),
                              options={"num_warps": num_warps, "enable_fp_fusion": False, "maxnreg": MAX_REGISTERS})
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as fh:
        fh.write(compiled.asm["cubin"])
    try:
        out = subprocess.run([cuobjdump(), "--dump-resource-usage", fh.name], capture_output=True, text=True,
                             check=True).stdout
    finally:
        os.unlink(fh.name)
    usage = dict(re.findall(r"\b(REG|STACK|LOCAL|SHARED):(\d+)", out))
    return KernelResources(kernel.fn.__name__, dtype, compiled.metadata.num_warps, int(usage.get("REG", 0)),
                           int(usage.get("STACK", 0)) + int(usage.get("LOCAL", 0)), int(compiled.metadata.shared))


SOLVER_CONSTEXPRS = {"ACCELERATE": True}  # FISTA's momentum on: the larger of its two codes


def measure(specs: list) -> list:
    """KernelResources for each spec {"source": .opt path, "dims": {...}, "dtype": "fp32"|"fp64",
    "kernel": name, "num_warps": int or None (the executor's choice)}, with the executor's tiles.

    Compiled in a child process without TRITON_INTERPRET: an interpreted kernel (the CPU tests
    run that way) cannot be compiled for a GPU."""
    import json
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "optlang.backends.triton.resources"], input=json.dumps(specs),
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the sm_90 compile failed:\n{out.stderr[-3000:]}")
    return [KernelResources(**r) for r in json.loads(out.stdout.strip().splitlines()[-1])]


def _measure_here(specs: list) -> list:
    import dataclasses

    import torch

    import optlang
    from optlang.backends.triton.executor import TritonExecutor, num_warps, tile_constexprs
    from optlang.runtime.bound import BoundProblem

    rows = []
    for spec in specs:
        plan = optlang.compile(spec["source"], backend="torch").plan
        dtype = torch.float32 if spec["dtype"] == "fp32" else torch.float64
        bound = BoundProblem(None, plan, {}, spec["dims"], (1,), dtype, torch.device("cpu"))
        kernel = getattr(TritonExecutor().module_for(plan), spec["kernel"])
        warps = spec.get("num_warps") or num_warps(bound)
        r = compile_kernel(kernel, {**tile_constexprs(bound), **SOLVER_CONSTEXPRS}, spec["dtype"], warps)
        rows.append(dataclasses.asdict(dataclasses.replace(r, kernel=spec["kernel"])))
    return rows


if __name__ == "__main__":
    import json
    import sys
    import warnings

    warnings.simplefilter("ignore")
    print(json.dumps(_measure_here(json.loads(sys.stdin.read()))))
