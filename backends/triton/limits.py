"""What the Triton kernels keep on chip, in elements of a call's largest tile (a power-of-two square).

Measured on sm_90 by compiling ahead of time (benchmarks/sm90_resources.py; tests/test_sm90_resources.py
keeps it true): at `executor.num_warps`'s warps, every kernel compiles without spilling a register up
to SPILL_FREE_TILE. The interior point holds several tiles of its system in the vars (H, the system,
its elimination, Jg) besides the state's: KKT_SYSTEM_TILE bounds those. No Triton import: `optlang conditions` quotes these numbers.
"""
from __future__ import annotations

MAX_TILE = 16384  # above this a kernel is refused outright (a 128 x 128 Jacobian: compiles, but spills)
SPILL_FREE_TILE = {  # (kind, dtype) -> largest tile without spills; "kkt": the KKT state tile (vars and duals)
    ("kkt", "float32"): 4096,  # up to 64 entries: OptNet's QP n = 20 with 20/5 (the direct backward's tile)
    ("kkt", "float64"): 1024,  # up to 32 entries (QP n = 12 with 12/4: 226 registers; n = 20 does not launch)
    ("other", "float32"): 8192,  # e.g. a 64 x 64 Jacobian, NNLS A 128 x 64 (a 128 x 128 Jacobian spills)
    ("other", "float64"): 4096,  # a 64 x 64 Jacobian at 8 warps
}
# The interior point's own tiles (its system in the vars, the equality duals eliminated by a Schur
# complement, and Jg: inequality rows by vars) up to this many elements, besides the state tile. One
# power of two past it, QP n = 20 with 40/4 (Jg 64 x 32) and n = 40 with 16/8 (a 64 x 64 system) do
# not fit in float32 (tests/test_sm90_resources.py).
KKT_SYSTEM_TILE = {"float32": 1024, "float64": 256}
# Registers a thread may use (launch option maxnreg; sm_90's most). Left to itself ptxas capped the FISTA
# kernel of NNLS 64 x 32 in float32 at 128 registers and spilled 24 bytes; with this cap it takes 148, no spill.
MAX_REGISTERS = 255
TILE_PER_THREAD = 32  # float32 elements of the largest tile per thread that num_warps aims at (float64: half)
# The interior point holds several tiles of its reduced system besides the state's (H, the system, its
# elimination, Jg): half as many elements a thread. QP n = 20 with 20/5 in float32 (a 64 x 64 state tile,
# a 32 x 32 system): 255 registers and spill bytes at 4 warps, 184 and none at 8.
KKT_TILE_PER_THREAD = 16


def spill_free_tile(kind: str, dtype: str) -> int:
    return SPILL_FREE_TILE[("kkt" if kind == "kkt" else "other", dtype)]
