"""The passes in order, from source text to Plan, with each stage available for printing.

    parse -> build (names, shapes) -> normalize -> classify -> derive_conditions
          -> derive_functions -> select -> lower
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

from optlang.errors import OptError

from optlang.ir.build import build
from optlang.ir.check import is_affine
from optlang.ir.walk import postorder
from optlang.passes.classify import classify
from optlang.passes.conditions import derive_conditions
from optlang.passes.functions import Functions, derive_functions
from optlang.passes.lower import lower_function
from optlang.passes.normalize import normalize
from optlang.passes.select import select
from optlang.plan import Plan
from optlang.syntax.parser import parse


@dataclass(frozen=True)
class Stages:
    """The output of every stage, for the CLI and for tests."""

    program: object
    problem: object
    functions: Functions
    plan: Plan


MAX_DEPTH = 10_000  # recursion limit while compiling: long sums nest one level per term
# Distinct subexpressions of a problem (a `let` used twice counts once). Every pass after `build`
# is linear in this up to a constant factor (the derived functions have about 20 operations per
# node): at the limit a compile takes a few seconds (benchmarks/compile_cost.py); the examples
# have at most a few hundred.
MAX_NODES = 10_000


@contextlib.contextmanager
def deep_expressions(name: str, text: str | None = None):
    """Allow deeply nested expressions, and report the ones past even that as an OptError located
    at the innermost point of the deepest nesting (where the limit was exceeded)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, MAX_DEPTH))
    try:
        yield
    except RecursionError:
        span = None if text is None else _deepest_span(text, name)
        raise OptError("an expression is nested too deeply" if span else f"{name}: an expression is nested too deeply",
                       span, "split it with `let` into named parts") from None
    finally:
        sys.setrecursionlimit(old)


def _deepest_span(text: str, name: str):
    """The span of the token deepest in the parse tree (an iterative walk: no recursion here)."""
    from optlang.errors import Source, Span
    from optlang.syntax.parser import _lark

    try:
        tree = _lark().parse(text)
    except Exception:  # noqa: BLE001  (only a location is wanted; without one the error still stands)
        return None
    best, best_depth = None, -1
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        children = getattr(node, "children", None)
        if children is None:
            if depth > best_depth and getattr(node, "line", None) is not None:
                best, best_depth = node, depth
            continue
        stack.extend((c, depth + 1) for c in children)
    if best is None:
        return None
    return Span(best.line, best.column, best.end_line, best.end_column, Source(name, text))


def check_size(problem, limit: int | None = None) -> None:
    """Refuse a problem whose expressions are too large to compile in bounded time, at its statement."""
    limit = MAX_NODES if limit is None else limit
    roots = [problem.expr] + [c.expr for c in problem.constraints]
    nodes = len(postorder(*roots))
    if nodes > limit:
        raise OptError(f"this problem has {nodes} distinct subexpressions, more than optlang compiles "
                       f"(at most {limit})", problem.statement_span,
                       "a problem this large is usually one written out term by term: use a param array "
                       "and vector operations (sum, @, dot) instead of one term per entry")


def check_source(text: str, name: str = "<string>"):
    """Parse and type-check only (what `optlang check` and `optlang ir` need)."""
    with deep_expressions(name, text):
        return build(parse(text, name))


def run(text: str, name: str = "<string>") -> Stages:
    """Run every pass; raises OptError (with file:line:col) on the first problem."""
    with deep_expressions(name, text):
        return _run(text, name)


def _run(text: str, name: str) -> Stages:
    program = parse(text, name)
    problem = build(program)
    check_size(problem)
    fns = derive_functions(derive_conditions(classify(normalize(problem))))
    choices = select(fns)
    cond = fns.conditions
    plan = Plan(
        problem=problem.name,
        source_name=name,
        kind=cond.kind,
        vars=problem.vars,
        state=cond.blocks,
        residual_blocks=tuple((u.name, u.shape) for u, _ in cond.residual),
        params=problem.params,
        dims=problem.dims,
        functions=tuple(lower_function(spec) for spec in fns.functions),
        options=tuple((k, v) for k, v, _ in problem.options),
        choices=choices,
        sense=cond.problem.sense,
        affine_constraints=all(c.cls != "other" for c in cond.problem.constraints),
        local=cond.classified.local,
        quadratic=cond.kind in ("kkt", "prox", "smooth") and all(is_affine(g) for g in cond.gradient),
    )
    return Stages(program, problem, fns, plan)
