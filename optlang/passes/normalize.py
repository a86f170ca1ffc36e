"""Pass `normalize`: one sense and one equation form.

Assumes a checked `Problem`. Guarantees: `maximize f` becomes `minimize -f`
(statement "minimize"; `sense` records what was written), and `fixed_point z = g(z)` becomes `root z - g(z)`.
"""
from __future__ import annotations

from dataclasses import replace

from optlang.ir import algebra as A
from optlang.ir.nodes import Input, Problem


def normalize(problem: Problem) -> Problem:
    """Rewrite maximize into minimize and fixed points into roots."""
    if problem.statement == "maximize":
        return replace(problem, statement="minimize", expr=A.neg(problem.expr), sense="maximize")
    if problem.statement == "fixed_point":
        var = problem.var(problem.fixed_var)
        z = Input("var", var.name, var.shape)
        return replace(problem, statement="root", expr=A.sub(z, problem.expr), sense="fixed_point")
    return problem
