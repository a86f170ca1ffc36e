"""What the Triton kernels keep on chip, in elements of a call's largest tile (a power-of-two square).

Measured on sm_90 by compiling ahead of time (benchmarks/sm90_resources.py; tests/test_sm90_resources.py
keeps it true): at `executor.num_warps`'s warps, every kernel compiles without spilling a register up
to SPILL_FREE_TILE. The interior point holds several KKT-sized tiles (the system, its elimination,
the step), so its limit is lower. No Triton import: `optlang conditions` quotes these numbers.
"""
from __future__ import annotations

MAX_TILE = 16384  # above this a kernel is refused outright (a 128 x 128 Jacobian: compiles, but spills)
SPILL_FREE_TILE = {  # (kind, dtype) -> largest tile without spills; "kkt" is the interior point's
    ("kkt", "float32"): 1024,  # KKT state (vars and duals) up to 32 entries
    ("kkt", "float64"): 256,  # up to 16 entries (32 spills 32 bytes at 8 warps)
    ("other", "float32"): 8192,  # e.g. a 64 x 64 Jacobian, NNLS A 128 x 64 (a 128 x 128 Jacobian spills)
    ("other", "float64"): 4096,  # a 64 x 64 Jacobian at 8 warps
}
# Registers a thread may use (launch option maxnreg; sm_90's most). Left to itself ptxas capped the FISTA
# kernel of NNLS 64 x 32 in float32 at 128 registers and spilled 24 bytes; with this cap it takes 148, no spill.
MAX_REGISTERS = 255
TILE_PER_THREAD = 32  # float32 elements of the largest tile per thread that num_warps aims at (float64: half)


def spill_free_tile(kind: str, dtype: str) -> int:
    return SPILL_FREE_TILE[("kkt" if kind == "kkt" else "other", dtype)]
