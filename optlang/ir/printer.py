"""Readable text of the typed IR: expressions in infix form, and whole problems with shapes.

`format_expr` writes an expression in the `.opt` language's own infix syntax
(its precedence, so the text parses back to the same value) extended with the
IR's internal nodes (`broadcast`, `sum_to`, `expand_dims`, the derivative
primitives `sign`, `step`, `ge`, `le`). `print_problem` is `optlang ir`.
Everything here is deterministic: declaration order, then post-order.
"""
from __future__ import annotations

from optlang.ir.nodes import (Broadcast, Const, DimSize, Elementwise, ExpandDims, Eye, Fill, Input, MatMul,
                              Problem, Reduce, SumTo, Transpose)
from optlang.ir.shapes import fmt
from optlang.ir.walk import postorder

# Binding strength, loosest first, as in grammar/opt.lark.
SUM, PRODUCT, UNARY, POWER, POSTFIX, ATOM = range(1, 7)
INFIX = {"add": ("+", SUM), "sub": ("-", SUM), "mul": ("*", PRODUCT), "div": ("/", PRODUCT)}
LEAVES = (Input, Const, DimSize, Fill, Eye)


def format_number(value: float) -> str:
    """A number as written in `.opt` source: `2`, `0.5`, `1e-10`."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"  # 1e-06 -> 1e-6
    return text


def format_expr(e, names: dict | None = None) -> str:
    """An expression in infix form; `names` maps nodes (or Input roles) to the text printed for them."""
    return _fmt(e, names or {})[0]


def input_name(node: Input, names: dict) -> str:
    """The text of an input: its name, or what `names` gives for its role ("tangent" -> "v")."""
    return names.get(node.role, node.name) if node.role in ("tangent", "cotangent") else node.name


def _fmt(e, names: dict) -> tuple:
    """(text, binding strength) of `e`."""
    if e in names:
        return names[e], ATOM
    if isinstance(e, Input):
        return input_name(e, names), ATOM
    if isinstance(e, Const):
        text = format_number(e.value)
        return text, UNARY if text.startswith("-") else ATOM
    if isinstance(e, DimSize):
        return str(e.dim), ATOM
    if isinstance(e, Fill):
        kind = {0.0: "zeros", 1.0: "ones"}.get(e.value)
        return (f"{kind}{fmt(e.shape)}" if kind else f"fill({format_number(e.value)}, {fmt(e.shape)})"), ATOM
    if isinstance(e, Eye):
        return f"eye[{e.n}]", ATOM
    if isinstance(e, Elementwise):
        return _elementwise(e, names)
    if isinstance(e, MatMul):
        return f"{_at(e.a, PRODUCT, names)} @ {_at(e.b, UNARY, names)}", PRODUCT
    if isinstance(e, Transpose):
        return f"{_at(e.a, POSTFIX, names)}'", POSTFIX
    if isinstance(e, Reduce):
        axis = "" if e.axis is None else f", axis={e.axis}"
        return f"{e.op}({format_expr(e.a, names)}{axis})", ATOM
    if isinstance(e, (Broadcast, SumTo)):
        what = "broadcast" if isinstance(e, Broadcast) else "sum_to"
        return f"{what}({format_expr(e.a, names)}, {fmt(e.shape)})", ATOM
    if isinstance(e, ExpandDims):
        return f"expand_dims({format_expr(e.a, names)}, axis={e.axis})", ATOM
    raise AssertionError(f"no text for IR node {type(e).__name__}")


def _elementwise(e: Elementwise, names: dict) -> tuple:
    if e.op in INFIX:
        sym, level = INFIX[e.op]
        right = e.args[1]
        # Left-associative: the right operand binds tighter, except that a + (b + c)
        # and a * (b * c) print without parentheses (same value, easier to read).
        loose = isinstance(right, Elementwise) and right.op == e.op and e.op in ("add", "mul")
        return f"{_at(e.args[0], level, names)} {sym} {_at(right, level if loose else level + 1, names)}", level
    if e.op == "negate":
        return f"-{_at(e.args[0], UNARY, names)}", UNARY
    if e.op == "pow":
        # Right-associative, and the exponent may be a unary: x^-2.
        return f"{_at(e.args[0], POSTFIX, names)}^{_at(e.args[1], UNARY, names)}", POWER
    return f"{e.op}({', '.join(format_expr(a, names) for a in e.args)})", ATOM


def _at(e, level: int, names: dict) -> str:
    """The text of `e` as an operand that must bind at least as tightly as `level`."""
    text, own = _fmt(e, names)
    return text if own >= level else f"({text})"


def split_terms(e) -> list:
    """The top-level terms of a sum, with their signs: [("+", t1), ("-", t2), ...]."""
    if isinstance(e, Elementwise) and e.op in ("add", "sub"):
        left = split_terms(e.args[0])
        sign = "+" if e.op == "add" else "-"
        return left + [(sign, e.args[1])]
    return [("+", e)]


def tensor_subexpressions(*roots) -> list:
    """The distinct compound subexpressions that are not scalars, operands first."""
    return [n for n in postorder(*roots) if not isinstance(n, LEAVES) and tuple(n.shape) != ()]


def columns(rows: list, indent: str = "  ", sep: str = "  ") -> list:
    """Rows of cells as lines, each column padded to its widest cell (trailing spaces dropped)."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    return [(indent + sep.join(c.ljust(widths[i]) for i, c in enumerate(r))).rstrip() for r in rows]


def _line(span) -> str:
    return f"line {span.line}" if span is not None else ""


# ---- the whole problem --------------------------------------------------------------

def print_problem(problem: Problem) -> str:
    """The typed IR of a problem as text: what `optlang ir` prints."""
    lines = [f"problem {problem.name}  # {problem.source_name}", ""]
    for section in (_dims, _params, _vars, _statement, _constraints, _options):
        lines.extend(section(problem))
    return "\n".join(lines).rstrip() + "\n"


def _dims(problem: Problem) -> list:
    if not problem.dims:
        return []
    rows = [[d.name, "bound at call time" if d.value is None else f"= {d.value}", _line(d.span)]
            for d in problem.dims]
    return ["dims"] + columns(rows) + [""]


def _params(problem: Problem) -> list:
    if not problem.params:
        return ["params (none)", ""]
    rows = [[p.name, fmt(p.shape), p.domain.describe(), _line(p.span)] for p in problem.params]
    return ["params"] + columns(rows) + [""]


def _vars(problem: Problem) -> list:
    rows = [[v.name, fmt(v.shape), _line(v.span)] for v in problem.vars]
    return ["vars"] + columns(rows) + [""]


def _statement(problem: Problem) -> list:
    e = problem.expr
    head = f"fixed_point {problem.fixed_var} =" if problem.statement == "fixed_point" else problem.statement
    out = [f"{head}  ({_line(problem.statement_span)})" if problem.statement_span else head]
    out.extend(columns([[format_expr(e), ": " + fmt(e.shape)]]))
    terms = split_terms(e)
    if len(terms) > 1:
        out.append("  terms")
        out.extend(columns([[sign, format_expr(t), ": " + fmt(t.shape)] for sign, t in terms], "    "))
    tensors = tensor_subexpressions(e)
    if tensors:
        out.append("  tensor subexpressions")
        out.extend(columns([[format_expr(t), ": " + fmt(t.shape)] for t in tensors], "    "))
    return out + [""]


def _constraints(problem: Problem) -> list:
    if not problem.constraints:
        return []
    rows = []
    for con in problem.constraints:
        rel = "<= 0" if con.kind == "ineq" else "== 0"
        label = f"{con.label}:" if con.label else ""
        rows.append([label, f"{format_expr(con.expr)} {rel}", ": " + fmt(con.expr.shape), _class(con),
                     _line(con.span)])
    return ["subject to  (normalized: g <= 0, h == 0)"] + columns(rows) + [""]


def _class(con) -> str:
    if con.cls != "bound":
        return con.cls
    if con.lower is not None:
        return f"bound ({con.var} >= {format_expr(con.lower)})"
    return f"bound ({con.var} <= {format_expr(con.upper)})"


def _options(problem: Problem) -> list:
    if not problem.options:
        return ["options (none: the defaults)"]
    rows = [[key, "=", f'"{value}"' if isinstance(value, str) else format_number(value), _line(span)]
            for key, value, span in problem.options]
    return ["options"] + columns(rows)


__all__ = ["format_expr", "format_number", "print_problem", "split_terms", "tensor_subexpressions", "columns"]
