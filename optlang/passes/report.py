"""What `optlang conditions` prints: the problem class, F(x, theta) = 0, the derived functions, the choices.

Each derived function is written in infix form. A subexpression used more
than once in a function is printed once, as a temporary named as in the
Plan's SSA (so `t7` here is `t7` in `optlang emit`), and referred to by name.
"""
from __future__ import annotations

import textwrap
from collections import Counter

from optlang.ir.nodes import Input, children
from optlang.ir.printer import LEAVES, columns, format_expr
from optlang.ir.shapes import fmt
from optlang.ir.walk import postorder

CLASSES = {
    "smooth": "smooth, unconstrained minimization",
    "bounds": "smooth minimization with bounds on the var",
    "root": "root equation",
}
WIDTH = 100  # where the reasons in `method` wrap
OUTPUT_NAMES = {"vjp_theta": "{}_bar"}  # vjp_theta's outputs are keyed by param name


def print_conditions(stages) -> str:
    """The conditions report of a compiled problem (`pipeline.Stages`)."""
    cond = stages.functions.conditions
    problem = cond.problem
    names = direction_names(problem)
    lines = [f"problem {problem.name}  # {problem.source_name}", f"class: {_class_text(problem, cond.kind)}", ""]
    lines += _condition(cond, stages.functions.get("residual").doc, names)
    lines += _method(stages.plan.choices)
    lines.append("derived functions  (a subexpression used twice is a temporary, named as in `optlang emit`)")
    for spec in stages.functions.functions:
        lines.append("")
        lines += print_function(spec, stages.plan.function(spec.name), names)
    return "\n".join(lines).rstrip() + "\n"


def _method(choices) -> list:
    """The solver and backward method picked, each with its reason (wrapped)."""
    lines = ["method"]
    for what, choice, why in choices:
        lines.append(f"  {what} = {choice}")
        lines.extend(textwrap.wrap(why, width=WIDTH, initial_indent="    ", subsequent_indent="    "))
    return lines + [""]


def direction_names(problem) -> dict:
    """The printed names of the tangent and cotangent: `v` and `u`, unless the file declares those names."""
    taken = {d.name for d in problem.dims} | {p.name for p in problem.params} | {v.name for v in problem.vars}
    out = {}
    for role, base in (("tangent", "v"), ("cotangent", "u")):
        name = base
        while name in taken:
            name += "_"
        out[role] = name
    return out


def _class_text(problem, kind: str) -> str:
    text = CLASSES[kind]
    if problem.sense == "maximize":
        text += " (written as maximize f: minimizes -f)"
    elif problem.sense == "fixed_point":
        text = "fixed point (solved as the root of z - g(z))"
    return text


def _condition(cond, doc: str, names: dict) -> list:
    """The objective (if any) and the residual F whose zero is the solution."""
    x = cond.x.name
    theta = ", ".join(p.name for p in cond.problem.params)
    lines = []
    if cond.objective is not None:
        lines += ["objective", f"  f({x}) = {format_expr(cond.objective, directions=names)}", ""]
    lines.append(f"optimality condition  F({x}; {theta}) = 0" if theta else f"optimality condition  F({x}) = 0")
    if cond.kind == "smooth":
        lines.append(f"  F = grad f({x})")
    elif cond.kind == "bounds":
        lines.append(f"  F = {x} - P({x} - grad f({x}))")
        lines.append(f"  P(z) = {_projection(cond, names)}  (the projection onto the bounds)")
    else:
        lines.append(f"  F = {format_expr(cond.residual, directions=names)}")
    lines.append(f"  ({doc})")
    return lines + [""]


def _projection(cond, names: dict) -> str:
    text = "z"
    if cond.lower is not None:
        text = f"maximum({text}, {format_expr(cond.lower, directions=names)})"
    if cond.upper is not None:
        text = f"minimum({text}, {format_expr(cond.upper, directions=names)})"
    return text


# ---- one derived function --------------------------------------------------------------

def print_function(spec, lowered, names: dict) -> list:
    """One derived function: signature, doc, shared temporaries, then each output in infix form."""
    args = ", ".join(_input_text(i, names) for i in spec.inputs)
    lines = [f"{spec.name}({args})", f"  # {spec.doc}"]
    roots = [e for _, e in spec.outputs]
    ssa = ssa_names(spec, lowered)
    shared = shared_nodes(roots)
    temps: dict = {}
    rows = []
    for node in postorder(*roots):
        if node in shared:
            rows.append([ssa[node], ": " + fmt(node.shape), "= " + format_expr(node, temps, names)])
            temps[node] = ssa[node]
    for key, e in spec.outputs:
        label = OUTPUT_NAMES.get(spec.name, "{}").format(key)
        rows.append([label, ": " + fmt(e.shape), "= " + format_expr(e, temps, names)])
    return lines + (columns(rows, sep=" ") if rows else ["  (no outputs)"])


def _input_text(node: Input, names: dict) -> str:
    name = names[node.role] if node.role in ("tangent", "cotangent") else node.name
    return f"{name}: {fmt(node.shape)}"


def shared_nodes(roots: list) -> set:
    """The compound subexpressions used more than once (by several operands or outputs)."""
    uses: Counter = Counter(roots)
    for node in postorder(*roots):
        uses.update(children(node))
    return {n for n, count in uses.items() if count > 1 and not isinstance(n, LEAVES)}


def ssa_names(spec, lowered) -> dict:
    """Each compound node's SSA name in the lowered function (t0, t1, ... in lowering order)."""
    inputs = set(spec.inputs)
    nodes = [n for n in postorder(*(e for _, e in spec.outputs)) if n not in inputs]
    ops = lowered.ops if lowered is not None else ()
    if len(ops) == len(nodes) and all(tuple(op.shape) == tuple(n.shape) for op, n in zip(ops, nodes)):
        return {n: op.out for n, op in zip(nodes, ops)}
    return {n: f"t{i}" for i, n in enumerate(nodes)}  # not lowered alike: number them here
