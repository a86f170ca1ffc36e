"""Pass `select`: the forward solver and the backward method, with the reason for each.

Assumes `Functions`. Guarantees ((what, choice, why), ...) for the Plan. A
solver or backward that v1 does not provide for this class is rejected at the
options line. `backward = "auto"` is settled per call, when the var's size is
known: a dense direct solve up to DIRECT_MAX entries, matrix-free CG beyond
(CG needs a symmetric positive definite system: minimize kinds only).
"""
from __future__ import annotations

from optlang.errors import NotSupportedError
from optlang.passes.functions import Functions

DIRECT_MAX = 256
SOLVERS = {"smooth": ("newton",), "root": ("newton",), "bounds": ("pgd", "fista")}
BACKWARDS = {"smooth": ("direct", "cg"), "root": ("direct",), "bounds": ("direct", "cg")}


def select(fns: Functions) -> tuple:
    """Choose and justify the solver and the backward method."""
    problem = fns.conditions.problem
    kind = fns.conditions.kind
    label = "fixed_point" if problem.sense == "fixed_point" else kind  # what the user wrote
    solver = problem.option("solver", "auto")
    if solver == "auto":
        solver = SOLVERS[kind][0] if kind != "bounds" else "fista"
        why = {
            "smooth": "smooth unconstrained: Newton on the gradient, backtracking line search on f",
            "root": "root equation: Newton on the residual, backtracking on |F|^2",
            "bounds": "bounds on the var: accelerated projected gradient (FISTA with backtracking and "
                      "restarts), then semismooth Newton steps on the fixed point to polish",
        }[kind]
    elif solver not in SOLVERS[kind]:
        raise NotSupportedError(
            f'solver "{solver}" is not supported for this problem yet',
            problem.option_span("solver"),
            f"for a {label} problem use " + " or ".join(f'"{s}"' for s in ("auto",) + SOLVERS[kind]),
        )
    else:
        why = "set in the options block"
    backward = problem.option("backward", "auto")
    if backward == "auto":
        if kind == "root":
            bwhy = "root equation (nonsymmetric Jacobian): dense direct solve of J^T w = g"
        else:
            bwhy = (f"decided per call: dense direct solve when the var has at most {DIRECT_MAX} entries, "
                    "else matrix-free conjugate gradients via the Hessian-vector product")
    elif backward not in BACKWARDS[kind]:
        raise NotSupportedError(
            f'backward "{backward}" is not supported for this problem yet',
            problem.option_span("backward"),
            f"for a {label} problem use " + " or ".join(f'"{b}"' for b in ("auto",) + BACKWARDS[kind]),
        )
    else:
        bwhy = "set in the options block"
    return (("solver", solver, why), ("backward", backward, bwhy))
