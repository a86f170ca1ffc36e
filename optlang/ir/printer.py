"""Readable text of the typed IR: expressions in infix form, and whole problems with shapes.

`format_expr` writes an expression in the `.opt` language's own infix syntax
(its precedence, so the text parses back to the same value) extended with the
IR's internal nodes (`broadcast`, `sum_to`, `expand_dims`, the derivative
primitives `sign`, `step`, `ge`, `le`, `gt`). `print_problem` is `optlang ir`.
Everything here is deterministic: declaration order, then post-order.
"""
from __future__ import annotations

from optlang.ir.nodes import (Broadcast, Const, DimSize, Elementwise, ExpandDims, Eye, Fill, Input, MatMul,
                              Problem, Reduce, SumTo, Transpose, children)
from optlang.ir.shapes import fmt

# Binding strength, loosest first, as in grammar/opt.lark.
SUM, PRODUCT, UNARY, POWER, POSTFIX, ATOM = range(1, 7)
INFIX = {"add": ("+", SUM), "sub": ("-", SUM), "mul": ("*", PRODUCT), "div": ("/", PRODUCT)}
LEAVES = (Input, Const, DimSize, Fill, Eye)
SHORT = 100  # `optlang ir` lists the tensor subexpressions up to this long (longer ones combine listed ones)


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


def format_expr(e, temps: dict | None = None, directions: dict | None = None, limit: int | None = None) -> str:
    """An expression in infix form; `temps` maps nodes to names printed instead, `directions` roles to names.

    `directions` names the tangent and cotangent inputs ({"tangent": "v"});
    without it they print under the var's name.

    Iterative, so expressions nested thousands deep print; with `limit`, the
    text stops after about that many characters and ends in "...".
    """
    names = (temps or {}, directions or {})
    out, size = [], 0
    stack = [(e, 0)]  # pieces still to print, last first: text, or (node, binding it needs)
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            node, need = item
            own, parts = _pieces(node, names)
            stack.extend(reversed(parts if own >= need else ["(", *parts, ")"]))
            continue
        out.append(item)
        size += len(item)
        if limit is not None and size > limit:
            return "".join(out)[:limit] + "..."
    return "".join(out)


def _pieces(e, names: tuple) -> tuple:
    """(binding strength of e, its pieces: text, or (operand, the binding the operand needs))."""
    temps, directions = names
    if temps and e in temps:  # only when there are temps: a node's hash recurses through its operands
        return ATOM, [temps[e]]
    if isinstance(e, LEAVES):
        text = _leaf(e, directions)
        return (UNARY if text.startswith("-") else ATOM), [text]
    if isinstance(e, Elementwise):
        return _elementwise(e)
    if isinstance(e, MatMul):
        return PRODUCT, [(e.a, PRODUCT), " @ ", (e.b, UNARY)]
    if isinstance(e, Transpose):
        return POSTFIX, [(e.a, POSTFIX), "'"]
    if isinstance(e, Reduce):
        return ATOM, [f"{e.op}(", (e.a, 0), "" if e.axis is None else f", axis={e.axis}", ")"]
    if isinstance(e, (Broadcast, SumTo)):
        return ATOM, ["broadcast(" if isinstance(e, Broadcast) else "sum_to(", (e.a, 0), f", {fmt(e.shape)})"]
    if isinstance(e, ExpandDims):
        return ATOM, ["expand(", (e.a, 0), f", axis={e.axis})"]  # as the language spells it
    raise AssertionError(f"no text for IR node {type(e).__name__}")


def _leaf(e, directions: dict) -> str:
    if isinstance(e, Input):
        return directions.get((e.role, e.name), directions.get(e.role, e.name))
    if isinstance(e, Const):
        return format_number(e.value)
    if isinstance(e, DimSize):
        return str(e.dim)
    if isinstance(e, Fill):
        kind = {0.0: "zeros", 1.0: "ones"}.get(e.value)
        return f"{kind}{fmt(e.shape)}" if kind else f"fill({format_number(e.value)}, {fmt(e.shape)})"
    return f"eye[{e.n}]"


def _elementwise(e: Elementwise) -> tuple:
    if e.op in INFIX:
        sym, level = INFIX[e.op]
        right = e.args[1]
        # Left-associative: the right operand binds tighter, except that a + (b + c)
        # and a * (b * c) print without parentheses (same value, easier to read).
        loose = isinstance(right, Elementwise) and right.op == e.op and e.op in ("add", "mul")
        return level, [(e.args[0], level), f" {sym} ", (right, level if loose else level + 1)]
    if e.op == "negate":
        return UNARY, ["-", (e.args[0], UNARY)]
    if e.op == "pow":
        # Right-associative, and the exponent may be a unary: x^-2.
        return POWER, [(e.args[0], POSTFIX), "^", (e.args[1], UNARY)]
    if e.op == "relu2":  # an internal primitive: shown as the user writes it
        return ATOM, ["square(relu(", (e.args[0], 0), "))"]
    parts = [f"{e.op}("]
    for i, a in enumerate(e.args):
        parts += ([", "] if i else []) + [(a, 0)]
    return ATOM, parts + [")"]


def split_terms(e) -> list:
    """The top-level terms of a sum, with their signs: [("+", t1), ("-", t2), ...]."""
    terms = []
    while isinstance(e, Elementwise) and e.op in ("add", "sub"):
        terms.append(("+" if e.op == "add" else "-", e.args[1]))
        e = e.args[0]
    return [("+", e)] + terms[::-1]


def tensor_subexpressions(root) -> list:
    """(text, shape) of each compound non-scalar subexpression up to SHORT long, operands first, texts once.

    Walks by object identity and builds each text from its operands' texts,
    never hashing IR nodes (a node's hash recurses through its operands).
    """
    short: dict = {}  # id(node) -> its text, or None when longer than SHORT
    texts, out = set(), []
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            if id(node) not in short:
                short[id(node)] = None
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(children(node)))
            continue
        text = short[id(node)] = _short_text(node, short)
        if text is not None and not isinstance(node, LEAVES) and tuple(node.shape) != () and text not in texts:
            texts.add(text)
            out.append((text, node.shape))
    return out


def _short_text(node, short: dict) -> str | None:
    """The text of `node` from its operands' texts in `short`; None if longer than SHORT."""
    buf = []
    for piece in _pieces(node, ({}, {}))[1]:
        if isinstance(piece, str):
            buf.append(piece)
            continue
        child, need = piece
        text = short[id(child)]
        if text is None:
            return None
        buf.append(text if _pieces(child, ({}, {}))[0] >= need else f"({text})")
    text = "".join(buf)
    return text if len(text) <= SHORT else None


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
        out.extend(columns([[text, ": " + fmt(shape)] for text, shape in tensors], "    "))
    return out + [""]


def _constraints(problem: Problem) -> list:
    if not problem.constraints:
        return []
    labelled = any(con.label for con in problem.constraints)
    rows = []
    for con in problem.constraints:
        rel = "<= 0" if con.kind == "ineq" else "== 0"
        label = [f"{con.label}:" if con.label else ""] if labelled else []
        rows.append(label + [f"{format_expr(con.expr)} {rel}", ": " + fmt(con.expr.shape), _class(con),
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
