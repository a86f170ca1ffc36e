"""Count how fuzzed programs end: compiled and called, or stopped with an optlang error.

    python benchmarks/fuzz_count.py [--cases 10000]

Two corpora of `--cases` each: token-level mutations of the valid programs in tests/test_errors.py
(its `mutants` strategy) and grammar-aware random programs (tests/fuzz_programs.py). A case that
runs past 10 s counts as a hang. A program that compiles is called with random data inside its params' domains
(tests/test_hostile.py's `_random_params`), at batch (), (2,) or (0,), with max_iter 50. Prints
the counts of: compile error (an OptError, located), result (a Solution with statuses), call error
(a CallError), silent non-finite (a non-finite solution reported converged), and crashes
(anything else: listed). Exit status 1 if there is a crash, a hang or a silent non-finite result.
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

    from fuzz_programs import programs

    bad = 0
    for label, strategy in (("mutants", mutants()), ("random programs", programs())):
        counts, crashes = _run(strategy, args.cases, optlang, CallError, _random_params, given, settings, st,
                               HealthCheck)
        print(f"{label}: {sum(counts.values())} cases")
        for what, n in sorted(counts.items()):
            print(f"  {what:32s} {n}")
        for src, err in crashes[:20]:
            print("----", err, src, sep="\n")
        bad += len(crashes)
    return 1 if bad else 0


def _run(strategy, cases, optlang, CallError, random_params, given, settings, st, HealthCheck):
    import signal

    import torch

    counts, crashes = collections.Counter(), []
    started = time.perf_counter()

    class Hang(Exception):
        pass

    def alarm(*_):
        raise Hang()

    signal.signal(signal.SIGALRM, alarm)

    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(src=strategy, seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([(), (2,), (0,)]))
    def case(src, seed, batch):
        stage = "compile"
        signal.alarm(10)
        try:
            layer = optlang.compile_string(src, name="t.opt")
            stage = "call"
            sol = layer.solve(**random_params(layer.plan, np.random.default_rng(seed), batch), max_iter=50,
                              warn=False)
            finite = all(bool(torch.isfinite(v).all()) for v in sol._values.values())
            if sol.stats.all_converged and not finite:
                counts["silent non-finite"] += 1
                crashes.append((src, "a non-finite solution reported converged"))
            else:
                counts["result"] += 1
        except optlang.OptError as err:
            located = str(err).startswith("t.opt:")
            counts["compile error" if located else "compile error without location"] += 1
            if not located:
                crashes.append((src, str(err)[:300]))
        except CallError:
            counts["call error"] += 1
        except Hang:
            counts[f"{stage} hang"] += 1
            crashes.append((src, f"{stage} hang (> 10 s)"))
        except Exception as exc:  # noqa: BLE001  (what the count is for)
            counts[f"{stage} crash"] += 1
            crashes.append((src, repr(exc)[:300]))
        finally:
            signal.alarm(0)
        done = sum(counts.values())
        if done % 1000 == 0:
            print(f"  {done} cases, {time.perf_counter() - started:.0f} s", file=sys.stderr)

    case()
    return counts, crashes


if __name__ == "__main__":
    raise SystemExit(main())
