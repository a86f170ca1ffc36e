"""Every example called every bad way: each call ends in a result with statuses or a CallError.

    python benchmarks/call_matrix.py [--examples sparsemax qp ...] [--limit 30]

Rows are the examples of examples/*.opt, columns the calls of CALLS (bad dtypes, devices, values,
shapes, options; the data inside each param's domain otherwise, batch 3, from
tests/test_hostile.py's `_random_params`). A call that returns is also differentiated (the sum of
its outputs, backward to every float param). Each cell is one letter:

    R  a result: finite outputs (or non-finite only where the status says so), finite gradients
    E  a CallError naming what is wrong
    !  a crash: any other exception (listed below the table)
    H  a hang: past --limit seconds
    N  a silent non-finite: a non-finite output reported converged, or a non-finite gradient
    W  a wrong answer: disagrees with the plain float64 call where it must agree (float32 to 1e-3,
       NumPy and strided views to rounding; lists, which take torch's default dtype float32, to
       1e-3), or a status that contradicts the call (time_limit)

Exit status 1 if a cell is !, H, N or W.
"""
from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import time
import warnings

import numpy as np
import torch

from optlang.solvers.result import CONVERGED, TIME_LIMIT

ROOT = pathlib.Path(__file__).resolve().parent.parent
BAD = "!HNW"


def _first(p):
    return next(iter(p))


def _with(p, name, value):
    return {**p, name: value}


def _scaled(p, factor):
    return {k: v * factor for k, v in p.items()}


def _out_of_domain(plan, p):
    """The first param with a bound, set past it; None if no param has one."""
    for q in plan.params:
        d = q.domain
        if d.lo is not None:
            return _with(p, q.name, torch.full_like(p[q.name], d.lo - 1.0))
        if d.hi is not None:
            return _with(p, q.name, torch.full_like(p[q.name], d.hi + 1.0))
    return None


def _indefinite(plan, p):
    """The first psd param made symmetric indefinite; None if no param is declared psd."""
    for q in plan.params:
        if q.domain.psd:
            M = p[q.name].clone()
            M[..., 0, 0] = -10.0 * M.abs().amax()
            return _with(p, q.name, M)
    return None


# name -> (plan, valid params) -> (params, call options) or None (not applicable)
CALLS = {
    "valid": lambda plan, p: (p, {}),
    "float32": lambda plan, p: ({k: v.float() for k, v in p.items()}, {}),
    "mixed 32/64": lambda plan, p: (_with(p, _first(p), p[_first(p)].float()), {}),
    "float16": lambda plan, p: (_with(p, _first(p), p[_first(p)].half()), {}),
    "bfloat16": lambda plan, p: (_with(p, _first(p), p[_first(p)].bfloat16()), {}),
    "int64": lambda plan, p: (_with(p, _first(p), p[_first(p)].round().long()), {}),
    "complex": lambda plan, p: (_with(p, _first(p), p[_first(p)].to(torch.complex128)), {}),
    "bool": lambda plan, p: (_with(p, _first(p), p[_first(p)] > 0), {}),
    "meta": lambda plan, p: (_with(p, _first(p), p[_first(p)].to("meta")), {}),
    "numpy": lambda plan, p: ({k: v.numpy() for k, v in p.items()}, {}),
    "lists": lambda plan, p: ({k: v.tolist() for k, v in p.items()}, {}),
    "strided": lambda plan, p: ({k: v[:1].expand_as(v) if v.dim() else v for k, v in p.items()}, {}),
    "nan entry": lambda plan, p: (_with(p, _first(p), _entry(p[_first(p)], float("nan"))), {}),
    "inf entry": lambda plan, p: (_with(p, _first(p), _entry(p[_first(p)], float("inf"))), {}),
    "1e300 entry": lambda plan, p: (_with(p, _first(p), _entry(p[_first(p)], 1e300)), {}),
    "all * 1e150": lambda plan, p: (_scaled(p, 1e150), {}),
    "all * 1e-150": lambda plan, p: (_scaled(p, 1e-150), {}),
    "out of domain": lambda plan, p: (lambda q: None if q is None else (q, {}))(_out_of_domain(plan, p)),
    "psd indefinite": lambda plan, p: (lambda q: None if q is None else (q, {}))(_indefinite(plan, p)),
    "empty batch": lambda plan, p: ({k: v[:0] for k, v in p.items()}, {}),
    "empty + shared": lambda plan, p: ({k: v[:0] if k == _first(p) else v[0] for k, v in p.items()}, {}),
    "unbatched": lambda plan, p: ({k: v[0] for k, v in p.items()}, {}),
    "batch 3 vs 2": lambda plan, p: (_with(p, _first(p), p[_first(p)][:2]) if len(p) > 1 else None, {}),
    "wrong shape": lambda plan, p: (_with(p, _first(p), torch.cat([p[_first(p)], p[_first(p)][..., :1]], -1))
                                    if p[_first(p)].dim() > 1 else None, {}),
    "missing param": lambda plan, p: ({k: v for k, v in list(p.items())[1:]}, {}),
    "extra param": lambda plan, p: (_with(p, "not_a_param", torch.ones(3)), {}),
    "unknown option": lambda plan, p: (p, {"tolerance": 1e-6}),
    "tol inf": lambda plan, p: (p, {"tol": float("inf")}),
    "tol 0": lambda plan, p: (p, {"tol": 0.0}),
    "tol nan": lambda plan, p: (p, {"tol": float("nan")}),
    "tol str": lambda plan, p: (p, {"tol": "1e-6"}),
    "max_iter 0": lambda plan, p: (p, {"max_iter": 0}),
    "max_iter 1.5": lambda plan, p: (p, {"max_iter": 1.5}),
    "max_iter 1": lambda plan, p: (p, {"max_iter": 1}),
    "time_limit -1": lambda plan, p: (p, {"time_limit": -1.0}),
    "time_limit 1e-9": lambda plan, p: (p, {"time_limit": 1e-9}),
    "solver bogus": lambda plan, p: (p, {"solver": "bogus"}),
    "backward bogus": lambda plan, p: (p, {"backward": "bogus"}),
    "backend bogus": lambda plan, p: (p, {"backend": "bogus"}),
}


def _entry(t, value):
    t = t.clone()
    t.view(-1)[0] = value
    return t


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang()


def _cell(CallError, layer, plan, valid, call: str, reference) -> tuple[str, str]:
    """The letter of one call, and what went wrong for the bad ones."""
    made = CALLS[call](plan, {k: v.clone() for k, v in valid.items()})
    if made is None or made[0] is None:
        return "-", ""
    params, options = made
    for v in params.values():
        if isinstance(v, torch.Tensor) and v.dtype.is_floating_point and v.device.type != "meta":
            v.requires_grad_(True)
    try:
        sol = layer.solve(**params, warn=False, **options)
    except CallError:
        return "E", ""
    values = list(sol._values.values())
    finite = all(bool(torch.isfinite(v).all()) for v in values)
    if not finite and sol.stats.all_converged:
        return "N", "a non-finite output reported converged"
    ended = sol.stats.status
    if call == "time_limit 1e-9" and not bool(((ended == CONVERGED) | (ended == TIME_LIMIT)).all()):
        return "W", f"time_limit 1e-9 gave statuses {sol.stats.status_names()}"
    if call == "strided":  # a view with stride 0 must solve like its contiguous copy
        reference = layer.solve(**{k: v.detach().contiguous() for k, v in params.items()}, warn=False, **options)
    if call in ("float32", "numpy", "lists", "strided"):
        ok = sol.stats.converged & reference.stats.converged
        for name in sol._values:
            a, b = sol._values[name].detach().double(), reference._values[name].double()
            # lists are Python numbers: they take torch's default dtype (float32), as README says
            tol = (1e-3 if sol._values[name].dtype == torch.float32 else 1e-12) * (1 + float(b.abs().max()))
            off = (a - b).abs().amax(tuple(range(ok.dim(), a.dim()))) if a.dim() > ok.dim() else (a - b).abs()
            if bool((off > tol)[ok].any()):
                return "W", f"{call}: '{name}' differs from the float64 call by {float(off[ok].max()):.3g}"
    tracked = [v for v in params.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    if tracked and values and any(v.requires_grad for v in values):
        loss = sum(torch.where(torch.isfinite(v), v, 0.0).sum() for v in values)
        try:
            grads = torch.autograd.grad(loss, tracked, allow_unused=True)
        except CallError:
            return "E", ""
        if not all(g is None or bool(torch.isfinite(g).all()) for g in grads):
            return "N", "a non-finite gradient"
    return "R", ""


def run(examples: list, limit: float, out=sys.stdout) -> dict:
    """{(example, call): (letter, detail)} for the examples named (all of examples/ if empty)."""
    import optlang
    from optlang.errors import CallError

    sys.path.insert(0, str(ROOT / "tests"))
    from test_hostile import _random_params

    paths = sorted((ROOT / "examples").glob("*.opt"))
    if examples:
        paths = [p for p in paths if p.stem in examples]
    signal.signal(signal.SIGALRM, _alarm)
    cells = {}
    width = max(len(c) for c in CALLS)
    print(f"{'':{width}s} " + " ".join(f"{p.stem[:8]:>8s}" for p in paths), file=out)
    columns = {}
    for path in paths:
        layer = optlang.compile(path)
        valid = _random_params(layer.plan, np.random.default_rng(0), (3,))
        reference = layer.solve(**valid, warn=False)
        for call in CALLS:
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cell = _cell(CallError, layer, layer.plan, valid, call, reference)
            except Hang:
                cell = ("H", f"past {limit:g} s")
            except Exception as exc:  # noqa: BLE001  (what the matrix is for)
                cell = ("!", repr(exc)[:300])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            cells[(path.stem, call)] = cell
        columns[path.stem] = [cells[(path.stem, c)][0] for c in CALLS]
    for i, call in enumerate(CALLS):
        print(f"{call:{width}s} " + " ".join(f"{columns[p.stem][i]:>8s}" for p in paths), file=out)
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", nargs="*", default=[], help="stems of examples/*.opt (default: all)")
    ap.add_argument("--limit", type=float, default=30.0, help="seconds before a call counts as a hang")
    args = ap.parse_args()
    started = time.perf_counter()
    cells = run(args.examples, args.limit)
    counts = {}
    for letter, _ in cells.values():
        counts[letter] = counts.get(letter, 0) + 1
    print("counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
          f"  ({len(cells)} calls, {time.perf_counter() - started:.0f} s)")
    bad = {k: v for k, v in cells.items() if v[0] in BAD}
    for (example, call), (letter, detail) in bad.items():
        print(f"  {letter} {example} / {call}: {detail}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
