"""Pass `select`: the forward solver and the backward method, with the reason for each.

Assumes `Functions`. Guarantees ((what, choice, why), ...) for the Plan. A
solver or backward that optlang does not provide for this class is rejected at
the options line. `backward = "auto"` is settled per call, when the state's
size is known (`backward_method`): a dense direct solve up to DIRECT_MAX
entries, a matrix-free Krylov method beyond (CG where the system is symmetric
positive definite, GMRES otherwise).
"""
from __future__ import annotations

from optlang.errors import NotSupportedError
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the runtime imports this module; it must not pull in the passes
    from optlang.passes.functions import Functions

DIRECT_MAX = 256

# kind -> solvers, the first is the default ("fixed_point" is a root written as z = g(z)).
SOLVERS = {
    "smooth": ("newton",),
    "prox": ("fista", "pgd"),
    "kkt": ("ipm",),
    "root": ("newton",),
    "fixed_point": ("anderson", "newton"),
}
BACKWARDS = {
    "smooth": ("direct", "cg", "gmres", "neumann", "unroll"),
    "prox": ("direct", "cg", "gmres", "neumann", "unroll"),
    "kkt": ("direct", "gmres", "unroll"),
    "root": ("direct", "gmres", "unroll"),
    "fixed_point": ("direct", "gmres", "neumann", "unroll"),
}
SOLVER_WHY = {
    "smooth": "smooth unconstrained: Newton on the gradient, backtracking line search on f",
    "prox": "known sets and prox terms: accelerated proximal gradient (FISTA with backtracking and restarts), "
            "then semismooth Newton steps on the fixed point to polish",
    "kkt": "general constraints: batched primal-dual interior point (Mehrotra predictor-corrector) on the "
           "KKT conditions, Newton steps from the symbolic Hessian of the Lagrangian",
    "root": "root equation: Newton on the residual, backtracking on |F|^2",
    "fixed_point": "fixed point: Anderson acceleration (memory 5) with a plain-iteration fallback",
}
BACKWARD_WHY = {
    "smooth": "decided per call: a dense direct solve when the state has at most {max} entries, else "
              "matrix-free conjugate gradients via Hessian-vector products",
    "prox": "decided per call: a dense direct solve when the state has at most {max} entries, else "
            "matrix-free {krylov}",
    "kkt": "decided per call: a dense direct solve of the KKT system when the state (vars and duals) has at most "
           "{max} entries, else matrix-free GMRES",
    "root": "decided per call: a dense direct solve of J^T w = g when the state has at most {max} entries, else "
            "matrix-free GMRES",
    "fixed_point": "decided per call: a dense direct solve of (I - dg/dz)^T w = g when the state has at most "
                   "{max} entries, else matrix-free GMRES",
}


# How messages name the classes: the words of LANGUAGE.md, not the internal kinds.
CLASS_WORDS = {
    "smooth": "an unconstrained smooth problem",
    "prox": "a problem with bounds, simplex or ball sets, or norm terms",
    "kkt": "a problem with general constraints",
    "root": "a root problem",
    "fixed_point": "a fixed point problem",
}


def kind_label(plan_or_problem, kind: str) -> str:
    """The class as the option tables know it: fixed points are roots with their own solvers."""
    return "fixed_point" if getattr(plan_or_problem, "sense", "") == "fixed_point" else kind


def select(fns: Functions) -> tuple:
    """Choose and justify the solver and the backward method."""
    problem = fns.conditions.problem
    label = kind_label(problem, fns.conditions.kind)
    free_set = has_free_set(fns.get)
    solver = problem.option("solver", "auto")
    if solver == "auto":
        solver, why = SOLVERS[label][0], SOLVER_WHY[label]
    elif solver not in SOLVERS[label]:
        missing = not any(solver in s for s in SOLVERS.values())
        raise NotSupportedError(
            f'solver "{solver}" is not provided by this version of optlang' if missing else
            f'solver "{solver}" is not available for this problem',
            problem.option_span("solver"),
            f"for {CLASS_WORDS[label]} use " + " or ".join(f'"{s}"' for s in ("auto",) + SOLVERS[label]),
        )
    else:
        why = "set in the options block"
    backward = problem.option("backward", "auto")
    allowed = allowed_backwards(label, free_set)
    jvp = fns.get("jvp_x")
    if backward in ("auto", *allowed) and backward != "unroll" and jvp is not None and jvp.is_identity_in("tangent"):
        bwhy = ("none needed: the residual's Jacobian in the vars is the identity (the solution is a projection "
                "or prox of a point), so the adjoint is the cotangent itself, whatever the method")
    elif backward == "auto" and fns.get("prox_jvp") is not None:
        bwhy = ("conjugate gradients on the simplex's free set (the support, sum zero) at every size: at most "
                "|support| iterations of Hessian-vector products, where a dense solve factors the whole state")
    elif backward == "auto":
        bwhy = BACKWARD_WHY[label].format(max=DIRECT_MAX, krylov="conjugate gradients on the free coordinates"
                                          if free_set else "GMRES on the fixed point's Jacobian")
    elif backward not in allowed:
        raise NotSupportedError(
            f'backward "{backward}" is not available for this problem',
            problem.option_span("backward"),
            f"for {CLASS_WORDS[label]} use " + " or ".join(f'"{b}"' for b in ("auto",) + allowed)
            + _why_not(label, backward),
        )
    else:
        bwhy = "set in the options block"
    return (("solver", solver, why), ("backward", backward, bwhy), ("backend", "auto", _backend_why(label)))


def _backend_why(label: str) -> str:
    """The default backend's rule, with the on-chip limits it applies to this class (measured on sm_90)."""
    from optlang.backends.triton.limits import KKT_SYSTEM_TILE, spill_free_tile

    if label in ("fixed_point", "root", "smooth"):
        what = "dense Jacobian"
    elif label == "prox":
        what = "dense Jacobian or data tile"
    else:
        what = "KKT Jacobian over the vars and duals"
    dtypes = ("float32", "float64")
    caps = ", ".join(f"{spill_free_tile(label, d)} in {d}" for d in dtypes)
    if label not in ("fixed_point", "root", "smooth", "prox"):
        system = ", ".join(f"{KKT_SYSTEM_TILE[d]} in {d}" for d in dtypes)
        caps += (f"; and the interior point's system in the vars, or its inequality Jacobian, no more than "
                 f"{system}")
    return (f"Triton kernels on CUDA tensors, PyTorch on the CPU. On CUDA, a call whose largest tile (the {what}, "
            f"padded to powers of two) has more elements than its kernels keep in registers without spilling on "
            f"sm_90 ({caps}) runs on the PyTorch backend instead, with a warning; backend=\"triton\" runs it anyway")


def allowed_backwards(label: str, free_set: bool) -> tuple:
    """The backward methods for a class; CG on a prox problem needs the free set (`has_free_set`)."""
    out = BACKWARDS[label]
    return out if label != "prox" or free_set else tuple(b for b in out if b != "cg")


FREE_SET_FUNCTIONS = ("free_mask", "prox_jvp")  # the prox's Jacobian as a mask, or as a projection


def has_free_set(function_named) -> bool:
    """True when the prox's Jacobian is a projection the CG backward can use (`backward._cg_prox`);
    `function_named` looks a derived function up by name (`Functions.get` or `Plan.function`)."""
    return any(function_named(name) is not None for name in FREE_SET_FUNCTIONS)


def _why_not(label: str, backward: str) -> str:
    if backward == "cg":
        return (" (CG needs a symmetric positive definite system: a Hessian, or a prox whose Jacobian is a "
                "projection: boxes, norm1, a simplex)")
    if backward == "neumann":
        return " (the Neumann series converges for Hessians and contractive fixed points, not for KKT systems " \
               "or general roots)"
    return ""


def backward_method(plan, n: int, requested: str, factored: bool = False) -> str:
    """Settle backward = "auto" now that the state's size is known (`factored`: the forward left
    dF/dx factored, so a direct solve costs two triangular solves at any size)."""
    if requested != "auto":
        return requested
    if factored:
        return "direct"
    if plan.kind == "prox" and plan.function("prox_jvp") is not None:
        return "cg"  # the free set of a simplex: see `select`
    if n <= DIRECT_MAX:
        return "direct"
    if plan.kind == "smooth" or (plan.kind == "prox" and has_free_set(plan.function)):
        return "cg"
    return "gmres"


def default_solver(plan, requested: str) -> str:
    return SOLVERS[kind_label(plan, plan.kind)][0] if requested == "auto" else requested
