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
    "prox": "smooth minimization over known sets / with prox terms (proximal gradient)",
    "kkt": "constrained minimization (KKT conditions)",
    "root": "root equation",
}
WIDTH = 100  # where the reasons in `method` wrap
# How each function's outputs print; outputs are keyed by block (or param) name, shown in brackets
# when a function has several.
OUTPUT_NAMES = {"residual": "F", "jvp_x": "Jv", "vjp_x": "JTu", "objective": "f", "gradient": "g", "hvp": "Hv",
                "prox": "prox", "free_mask": "free", "prox_jvp": "Pv", "ineq": "g", "eq": "h", "jvp_ineq": "Jg_v", "jvp_eq": "Jh_v",
                "hvp_lagrangian": "HLv", "value": "f_all"}


def print_conditions(stages) -> str:
    """The conditions report of a compiled problem (`pipeline.Stages`)."""
    cond = stages.functions.conditions
    problem = cond.problem
    names = direction_names(cond)
    lines = [f"problem {problem.name}  # {problem.source_name}", f"class: {_class_text(problem, cond.kind)}",
             f"  ({cond.classified.why})", ""]
    lines += _condition(cond, stages.functions.get("residual").doc, names)
    lines += _method(stages.plan.choices)
    lines.append("derived functions  (a subexpression used twice is a temporary, named as in `optlang emit`)")
    for spec in stages.functions.functions:
        if spec.name == "objective_gradient":  # the objective and gradient above, fused for the solvers
            continue
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


def direction_names(cond) -> dict:
    """Printed names: `v`/`u` for the tangent and cotangent of a one-block state (v_x, u_x per block
    otherwise, and per residual block), and each dual as its label or lam<i>/nu<i> (i its constraint's index),
    avoiding the file's names."""
    problem = cond.problem
    taken = {d.name for d in problem.dims} | {p.name for p in problem.params} | {v.name for v in problem.vars}
    taken |= {b.label for b in cond.blocks if b.label}

    def fresh(name):
        while name in taken:
            name += "_"
        return name

    out = {}
    for b in cond.blocks:
        if b.kind != "var":
            out[("dual", b.name)] = b.label or fresh(("lam" if b.kind == "ineq" else "nu") + b.name)
    if len(cond.blocks) == 1:
        out["tangent"], out["cotangent"] = fresh("v"), fresh("u")
        return out
    for b in cond.blocks:
        shown = out.get(("dual", b.name), b.name)
        out[("tangent", b.name)] = fresh("v_" + shown)
        out[("cotangent", b.name)] = fresh("u_" + shown)
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
    xs = ", ".join(b.name for b in cond.var_blocks)
    state = ", ".join(names.get(("dual", b.name), b.name) for b in cond.blocks)
    theta = ", ".join(p.name for p in cond.problem.params)
    show = lambda e: format_expr(e, directions=names)  # noqa: E731
    lines = []
    if cond.objective is not None:
        part = "  (its smooth part; the prox terms are in prox below)" if cond.kind == "prox" and any(
            vs.term for vs in cond.classified.sets) else ""
        lines += ["objective", f"  f({xs}) = {show(cond.objective)}{part}", ""]
    if cond.kind == "kkt":
        lines.append("constraints  (g <= 0 with dual lam >= 0; h == 0 with dual nu)")
        for b, e in cond.ineq + cond.eq:
            where = f"  (line {b.line})" if b.line else ""
            lines.append(f"  {'g' if b.kind == 'ineq' else 'h'}[{names[('dual', b.name)]}] = {show(e)}{where}")
        lines += [f"  L = {show(cond.lagrangian)}", ""]
    lines.append(f"optimality condition  F({state}; {theta}) = 0" if theta else f"optimality condition  F({state}) = 0")
    for (key, expr), b in zip(cond.residual, cond.blocks):
        label = "F" if len(cond.residual) == 1 else f"F[{names.get(('dual', b.name), b.name)}]"
        if cond.kind == "smooth":
            text = f"grad_{b.name} f"
        elif cond.kind == "prox":
            text = f"{b.name} - prox_{b.name}({b.name} - grad_{b.name} f, 1)"
        elif cond.kind == "kkt" and b.kind == "var":
            text = f"grad_{b.name} L"
        else:
            text = show(expr)
        lines.append(f"  {label} = {text}")
    if cond.kind == "prox":
        for b, p in zip(cond.var_blocks, cond.prox):
            lines.append(f"  prox_{b.name}({b.name}, step) = {show(p)}")
    lines.append(f"  ({doc})")
    return lines + [""]


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
        label = _output_label(spec, key, names)
        rows.append([label, ": " + fmt(e.shape), "= " + format_expr(e, temps, names)])
    return lines + (columns(rows, sep=" ") if rows else ["  (no outputs)"])


def _output_label(spec, key: str, names: dict) -> str:
    if spec.name == "vjp_theta":
        return f"{key}_bar"
    base = OUTPUT_NAMES[spec.name]
    return base if len(spec.outputs) == 1 else f"{base}[{names.get(('dual', key), key)}]"


def _input_text(node: Input, names: dict) -> str:
    name = names.get((node.role, node.name), names.get(node.role, node.name))
    name = node.name if node.role in ("var", "param", "step") else name
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
