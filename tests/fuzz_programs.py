"""A hypothesis strategy of grammar-aware random `.opt` programs (for the fuzz tests).

Each program declares a few dims, params (scalars, vectors, matrices; some with a domain) and vars,
and states a problem of a drawn kind (minimize with or without constraints, maximize, root,
fixed_point) built from random, mostly well-typed expressions over them: the programs exercise
the type checker, the classifier and the derivations, not only the parser.
"""
from __future__ import annotations

from hypothesis import strategies as st

UNARY = ["exp", "log", "sqrt", "abs", "square", "tanh", "sigmoid", "softplus", "relu", "sin", "cos", "neg"]
REDUCE = ["sum", "sumsq", "mean", "norm1", "norm2", "norminf", "logsumexp", "max", "min"]
NUMBERS = ["0", "1", "2", "0.5", "1e-3", "3.25", "1e300", "-1"]


@st.composite
def programs(draw) -> str:
    n_dims = draw(st.integers(1, 2))
    dims = ["n", "m"][:n_dims]
    scalar_params = draw(st.lists(st.sampled_from(["a", "lam", "c"]), min_size=1, max_size=3, unique=True))
    vec_params = draw(st.lists(st.sampled_from(["u", "v", "b"]), min_size=1, max_size=2, unique=True))
    mat = draw(st.booleans())
    domains = {p: draw(st.sampled_from(["", " > 0", " >= 0", " in [0, 1]", " in (0, 2)"])) for p in scalar_params}
    decl = [f"{p}{domains[p]}" for p in scalar_params] + [f"{p}[{dims[0]}]" for p in vec_params]
    if mat:
        decl.append(f"A[{dims[-1]}, {dims[0]}]" + draw(st.sampled_from(["", " psd" if n_dims == 1 else ""])))
    vec_var = draw(st.sampled_from(["x", "w"]))
    scalar_var = draw(st.sampled_from([None, "s"]))
    vars_ = [f"{vec_var}[{dims[0]}]"] + ([scalar_var] if scalar_var else [])

    def leaf(want_vector: bool):
        if want_vector:
            choices = [vec_var] + vec_params + ([f"A' @ ({vec_var} - {vec_params[0]})"] if mat and n_dims == 1 else [])
        else:
            choices = scalar_params + NUMBERS + ([scalar_var] if scalar_var else []) + [f"dot({vec_var}, {vec_params[0]})"]
        return draw(st.sampled_from(choices))

    def expr(depth: int, want_vector: bool) -> str:
        if depth == 0:
            return leaf(want_vector)
        kind = draw(st.sampled_from(["leaf", "unary", "binary", "reduce", "pow"] if not want_vector else
                                    ["leaf", "unary", "binary", "pow"]))
        if kind == "leaf":
            return leaf(want_vector)
        if kind == "unary":
            return f"{draw(st.sampled_from(UNARY))}({expr(depth - 1, want_vector)})"
        if kind == "pow":
            return f"({expr(depth - 1, want_vector)})^{draw(st.sampled_from(['2', '3', '0.5', '-1']))}"
        if kind == "reduce":
            return f"{draw(st.sampled_from(REDUCE))}({expr(depth - 1, True)})"
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({expr(depth - 1, want_vector)} {op} {expr(depth - 1, want_vector)})"

    depth = draw(st.integers(1, 4))
    statement = draw(st.sampled_from(["minimize", "minimize", "maximize", "root", "fixed_point"]))
    lines = ["problem fuzz", f"dim {', '.join(dims)}", f"param {', '.join(decl)}", f"var {', '.join(vars_)}"]
    if statement in ("minimize", "maximize"):
        body = f"sumsq({vec_var} - {vec_params[0]}) + {expr(depth, False)}"
        if scalar_var:
            body += f" + square({scalar_var} - 1)"
        lines.append(f"{statement} {body if statement == 'minimize' else '-(' + body + ')'}")
        constraints = draw(st.lists(st.sampled_from([
            f"{vec_var} >= 0", f"{vec_var} <= 1", f"sum({vec_var}) == 1", f"norm2({vec_var}) <= 2",
            f"lbl: sumsq({vec_var}) <= 4", f"{expr(1, False)} <= {vec_var}", f"exp({vec_var}) <= 3",
        ]), max_size=3, unique=True))
        if constraints:
            lines.append("subject to")
            lines += [f"  {c}" for c in constraints]
    elif statement == "root":
        lines.append(f"root {vec_var} - {expr(depth, True)}" + ("" if not scalar_var else ""))
        if scalar_var:
            lines[3] = f"var {vec_var}[{dims[0]}]"
    else:
        lines[3] = f"var {vec_var}[{dims[0]}]"
        lines.append(f"fixed_point {vec_var} = 0.5 * tanh({expr(depth, True)})")
    return "\n".join(lines) + "\n"
