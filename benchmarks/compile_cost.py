"""What compiling costs on sources built to make it blow up, and on the fuzz corpora.

    python benchmarks/compile_cost.py [--fuzz 2000] [--limit 60]

Part 1: families of programs that grow one way each (a chain of `let`s that uses the previous one
twice, `let` chains through exp/softplus, long sums, long products, deep nesting), compiled and
called once at n = 3 (the generated code is printed on the first call), at growing sizes, each in
a subprocess-free alarm of `--limit` s. Prints seconds per size or the optlang error it ends in.
Part 2: the slowest compiles among `--fuzz` cases of each fuzz corpus (tests/fuzz_programs.py and
the mutants of tests/test_errors.py). Exit status 1 if a case runs past the limit or crashes.
"""
from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import time
import warnings

TESTS = pathlib.Path(__file__).resolve().parent.parent / "tests"
HEAD = "problem p\ndim n\nparam c[n]\nvar x[n]\n"


def _lets(k: int, step: str) -> str:
    body = "\n".join(f"let a{i + 1} = {step.format(p=f'a{i}')}" for i in range(k))
    return f"{HEAD}let a0 = x\n{body}\n"


FAMILIES = {
    # each `let` uses the previous one twice: a tree of 2^k nodes, a DAG of k
    "let a = p * p + p": lambda k: _lets(k, "{p} * {p} + {p}") + f"minimize sum(square(a{k})) + dot(c, x)\n",
    "let a = p + p": lambda k: _lets(k, "{p} + {p}") + f"minimize sumsq(a{k}) + dot(c, x)\n",
    "let a = exp(p) + p": lambda k: _lets(k, "exp({p}) + {p}") + f"minimize sum(a{k}) + dot(c, x)\n",
    "let a = softplus(p) + p, constrained": lambda k: _lets(k, "softplus({p}) + {p}")
    + f"minimize sum(a{k}) + sumsq(x)\nsubject to sum(x) == 1\n",
    "sum of k terms": lambda k: HEAD + "minimize " + " + ".join(f"{i + 1} * sumsq(x - {i})" for i in range(k)) + "\n",
    "product of k factors": lambda k: HEAD + "minimize sum(" + " * ".join(["exp(x)"] * k) + ") + dot(c, x)\n",
    "k nested softplus": lambda k: HEAD + "minimize sum(" + "softplus(" * k + "x" + ")" * k + ") + dot(c, x)\n",
}
SIZES = (4, 16, 64, 256, 1024)


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def _compile_and_call(optlang, src: str) -> str:
    import torch

    layer = optlang.compile_string(src, name="t.opt")
    params = {p.name: torch.rand(*[3] * len(p.shape), dtype=torch.float64) + 0.5 for p in layer.plan.params}
    layer.solve(**params, max_iter=5, warn=False)
    return "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=2000, help="cases per fuzz corpus")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds before a case counts as a hang")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    import optlang

    bad = 0
    print("part 1: families (seconds to compile + first call at n = 3, or how it ended)")
    print(f"  {'family':38s}" + "".join(f"{k:>10d}" for k in SIZES))
    for label, make in FAMILIES.items():
        cells = []
        for k in SIZES:
            signal.setitimer(signal.ITIMER_REAL, args.limit)
            started = time.perf_counter()
            try:
                _compile_and_call(optlang, make(k))
                cells.append(f"{time.perf_counter() - started:9.2f}s")
            except optlang.OptError as err:
                first = str(err).splitlines()[0]
                cells.append(f"{'error':>9s}*" if first.startswith("t.opt:") else "  UNLOCATED")
                bad += not first.startswith("t.opt:")
                print(f"    ({label}, k={k}: {first[:120]})", file=sys.stderr)
            except Hang:
                cells.append("      HANG")
                bad += 1
            except Exception as exc:  # noqa: BLE001  (what the table is for)
                cells.append("     CRASH")
                print(f"    ({label}, k={k}: {exc!r}"[:200] + ")", file=sys.stderr)
                bad += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        print(f"  {label:38s}" + "".join(f"{c:>10s}" for c in cells), flush=True)
    print("  (* = refused with a located optlang error; the reason is on stderr)")

    if args.fuzz:
        bad += _fuzz(optlang, args.fuzz, args.limit)
    return 1 if bad else 0


def _fuzz(optlang, cases: int, limit: float) -> int:
    sys.path.insert(0, str(TESTS))
    from hypothesis import HealthCheck, given, settings

    from fuzz_programs import programs
    from test_errors import mutants

    bad = 0
    print(f"part 2: the slowest compiles of {cases} cases per fuzz corpus")
    for label, strategy in (("mutants", mutants()), ("random programs", programs())):
        times = []

        @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(src=strategy)
        def case(src):
            nonlocal bad
            signal.setitimer(signal.ITIMER_REAL, limit)
            started = time.perf_counter()
            try:
                optlang.compile_string(src, name="t.opt")
            except optlang.OptError:
                pass
            except Hang:
                bad += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            times.append((time.perf_counter() - started, len(src), src))

        case()
        times.sort(reverse=True)
        total = sum(t for t, _, _ in times)
        print(f"  {label}: {len(times)} cases, {total:.1f} s in all, median "
              f"{sorted(t for t, _, _ in times)[len(times) // 2] * 1e3:.1f} ms; slowest:")
        for seconds, size, src in times[:3]:
            print(f"    {seconds:7.3f} s  ({size} characters) {src[:100]!r}")
    return bad


if __name__ == "__main__":
    raise SystemExit(main())
