"""Count how mutated example programs end: compiled and called, or stopped with an optlang error.

    python benchmarks/fuzz_count.py [--cases 10000]

Each case is a token-level mutation of the valid programs in tests/test_errors.py (its `mutants`
strategy); a program that compiles is called with random data inside its params' domains
(tests/test_hostile.py's `_random_params`), at batch (), (2,) or (0,), with max_iter 50. Prints
the counts of: compile error (an OptError, located), result (a Solution with statuses), call error
(a CallError), and crashes (anything else: listed). Exit status 1 if there is a crash.
"""
from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time
import warnings

import numpy as np

TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    args = ap.parse_args()
    sys.path.insert(0, str(TESTS))
    warnings.simplefilter("ignore")
    from hypothesis import HealthCheck, given, settings, strategies as st

    import optlang
    from optlang.errors import CallError
    from test_errors import mutants
    from test_hostile import _random_params

    counts, crashes = collections.Counter(), []
    started = time.perf_counter()

    @settings(max_examples=args.cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(src=mutants(), seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([(), (2,), (0,)]))
    def case(src, seed, batch):
        try:
            layer = optlang.compile_string(src, name="t.opt")
        except optlang.OptError as err:
            counts["compile error" if str(err).startswith("t.opt:") else "compile error without location"] += 1
            return
        except Exception as exc:  # noqa: BLE001  (what the count is for)
            counts["compile crash"] += 1
            crashes.append((src, repr(exc)[:300]))
            return
        try:
            layer.solve(**_random_params(layer.plan, np.random.default_rng(seed), batch), max_iter=50, warn=False)
            counts["result"] += 1
        except CallError:
            counts["call error"] += 1
        except Exception as exc:  # noqa: BLE001
            counts["call crash"] += 1
            crashes.append((src, repr(exc)[:300]))
        done = sum(counts.values())
        if done % 500 == 0:
            print(f"  {done} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr)

    case()
    for what, n in sorted(counts.items()):
        print(f"{what:32s} {n}")
    for src, err in crashes[:20]:
        print("----", err, src, sep="\n")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
