"""Every Triton kernel the default backend choice launches at the sizes users run stays in registers
on sm_90: compiled ahead of time for an H100 (no GPU needed), zero spill bytes; a size above the
measured limit goes to PyTorch on purpose, and the limit is where spilling starts."""
import pytest
import torch

import optlang
from optlang.backends.triton import resources
from optlang.backends.triton.executor import num_warps, refusal
from optlang.runtime.bound import BoundProblem

pytestmark = [pytest.mark.triton, pytest.mark.skipif(resources.available() is not None,
                                                     reason=str(resources.available()))]

# (example, dims, dtype, kernels the call launches): issue 8's sizes (NNLS A 64 x 32, DEQ d = 64,
# sparsemax n = 256: one prox step, no n x n tile, and a PyTorch backward with nothing to solve, OptNet's
# QP n = 20 with 20/5 in float32: a 32 x 32 system in the vars, a 64 x 64 state tile) and the largest
# float64 QP that fits (a 16 x 16 system, a 32 x 32 state tile).
ON_CHIP = [
    ("nnls", {"m": 64, "n": 32}, "fp32", ("fista_kernel", "backward_cg_kernel", "backward_direct_kernel")),
    ("nnls", {"m": 64, "n": 32}, "fp64", ("fista_kernel",)),
    ("deq", {"d": 64, "k": 16}, "fp32", ("anderson_kernel", "newton_kernel", "backward_direct_kernel")),
    ("deq", {"d": 64, "k": 16}, "fp64", ("newton_kernel",)),
    ("qp", {"n": 10, "m": 10, "p": 2}, "fp32", ("ipm_kernel", "backward_kkt_kernel")),
    ("qp", {"n": 20, "m": 20, "p": 5}, "fp32", ("ipm_kernel", "backward_kkt_kernel")),
    ("qp", {"n": 12, "m": 12, "p": 4}, "fp64", ("ipm_kernel", "backward_kkt_kernel")),
    ("sparsemax", {"n": 256}, "fp32", ("fista_kernel",)),
    ("sparsemax", {"n": 256}, "fp64", ("fista_kernel",)),
]
# Sizes the default choice sends to PyTorch: the QP n = 64 with 32/8 (a 128 x 128 state tile, a 64 x 64
# system in the vars), n = 20 with 20/5 in float64, and one power of two past each interior-point tile
# limit in float32 (Jg 64 x 32; a 64 x 64 system).
ON_PYTORCH = [("qp", {"n": 64, "m": 32, "p": 8}, "fp32"), ("qp", {"n": 64, "m": 32, "p": 8}, "fp64"),
              ("qp", {"n": 20, "m": 20, "p": 5}, "fp64"), ("qp", {"n": 20, "m": 40, "p": 4}, "fp32"),
              ("qp", {"n": 40, "m": 16, "p": 8}, "fp32")]


def bound_for(example, dims, dtype):
    plan = optlang.compile(f"examples/{example}.opt", backend="torch").plan
    torch_dtype = torch.float32 if dtype == "fp32" else torch.float64
    return BoundProblem(None, plan, {}, dims, (1,), torch_dtype, torch.device("cpu"))


def compile_for_sm90(example, dims, dtype, kernels, warps=None):
    return resources.measure([{"source": f"examples/{example}.opt", "dims": dims, "dtype": dtype, "kernel": k,
                               "num_warps": warps} for k in kernels])


@pytest.mark.parametrize("example,dims,dtype,kernels", ON_CHIP,
                         ids=[f"{e}-{'-'.join(map(str, d.values()))}-{t}" for e, d, t, _ in ON_CHIP])
def test_kernels_at_users_sizes_compile_without_spilling(example, dims, dtype, kernels):
    bound = bound_for(example, dims, dtype)
    assert refusal(bound) is None  # the default choice runs these on Triton
    for r in compile_for_sm90(example, dims, dtype, kernels):
        assert r.on_chip and r.registers <= 255, r.line()


@pytest.mark.parametrize("example,dims,dtype", ON_PYTORCH,
                         ids=[f"{e}-{'-'.join(map(str, d.values()))}-{t}" for e, d, t in ON_PYTORCH])
def test_sizes_that_would_spill_run_on_pytorch_and_say_why(example, dims, dtype):
    why = refusal(bound_for(example, dims, dtype))
    assert why is not None and ("would spill registers" in why or "too large" in why), why


@pytest.mark.parametrize("dims", [{"n": 20, "m": 40, "p": 4}, {"n": 40, "m": 16, "p": 8}], ids=["Jg", "system"])
def test_the_interior_point_limits_are_where_spilling_starts(dims):
    # One power of two above KKT_SYSTEM_TILE in float32 (Jg 64 x 32; a 64 x 64 system in the vars) the
    # interior-point kernel does not fit at the warps it would get, nor at twice as many (it spills, or
    # its registers exceed the register file: ptxas does not count the warps): the limit is not arbitrary.
    bound = bound_for("qp", dims, "fp32")
    for warps in (num_warps(bound), 2 * num_warps(bound)):
        (r,) = compile_for_sm90("qp", dims, "fp32", ["ipm_kernel"], warps)
        assert not r.on_chip, r.line()


def test_a_kernel_that_does_not_spill_can_still_overflow_the_register_file():
    fits = resources.KernelResources("k", "fp32", 8, 255, 0, 0)  # 256 x 256 threads: all 64K registers
    too_many = resources.KernelResources("k", "fp32", 16, 129, 0, 0)  # 136 (rounded) x 512 threads
    assert fits.on_chip and not too_many.launchable and not too_many.on_chip


def test_conditions_state_the_backend_rule_with_its_limits(capsys):
    from optlang.cli import main

    assert main(["conditions", "examples/qp.opt"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "backend = auto" in text and "without spilling on sm_90 (4096 in float32, 1024 in float64;" in text
    assert "system in the vars, or its inequality Jacobian, no more than 1024 in float32, 256 in float64)" in text
