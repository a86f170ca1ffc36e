"""Smart constructors for IR expressions: shapes computed, trivial algebra folded.

Every pass builds expressions through these, so zeros from derivatives vanish
(x*0, x+0, x*1 fold) and the derived code carries no dead arithmetic. The
constructors assume shapes were checked by `ir.build`; a misfit here is a bug.
"""
from __future__ import annotations

import math


from optlang.ir import shapes
from optlang.ir.lazy_sympy import sp
from optlang.ir.nodes import (Broadcast, Const, DimSize, Elementwise, ExpandDims, Expr, Eye, Fill, MatMul,
                              Reduce, SumTo, Transpose)
from optlang.ir.primitives import sympy_partials


# Guards norms in denominators: a prox at z = 0, and norm2's derivative at 0, stay finite (a
# subgradient) instead of 0/0. Representable in float32 (its smallest normal is 1.2e-38).
TINY_NORM = 1e-30


def const(value: float) -> Const:
    return Const(float(value))


def zeros(shape) -> Expr:
    return Const(0.0) if shape == () else Fill(0.0, tuple(shape))


def is_value(e: Expr, value: float) -> bool:
    """True if `e` is a constant or fill equal to `value` everywhere."""
    return isinstance(e, (Const, Fill)) and e.value == value


def is_zero(e: Expr) -> bool:
    return is_value(e, 0.0)


def _bshape(*args) -> tuple:
    out = shapes.broadcast(*(a.shape for a in args))
    if out is None:
        raise AssertionError(f"unchecked broadcast of {[a.shape for a in args]}")
    return out


def broadcast_to(e: Expr, shape) -> Expr:
    shape = tuple(shape)
    if e.shape == shape:
        return e
    if isinstance(e, (Const, Fill)):
        return Const(e.value) if shape == () else Fill(e.value, shape)
    return Broadcast(e, shape)


def sum_to(e: Expr, shape) -> Expr:
    """Sum `e` down to `shape` (the adjoint of broadcasting to e's shape)."""
    shape = tuple(shape)
    if e.shape == shape:
        return e
    if is_zero(e):
        return zeros(shape)
    return SumTo(e, shape)


def _unbroadcast_args(args: tuple, shape) -> tuple:
    """Drop explicit broadcasts that the elementwise op's own broadcasting makes redundant."""
    out = list(args)
    for i, a in enumerate(out):
        if isinstance(a, (Broadcast, Fill)):
            inner = a.a if isinstance(a, Broadcast) else Const(a.value)
            others = [b.shape for j, b in enumerate(out) if j != i]
            if shapes.broadcast(inner.shape, *others) == shape:
                out[i] = inner
    return tuple(out)


def _split_const(e: Expr):
    """(c, y) with e == c * y and c a number; y None when e is a constant."""
    if isinstance(e, Const):
        return e.value, None
    if isinstance(e, Elementwise) and e.op == "mul" and isinstance(e.args[0], Const):
        return e.args[0].value, e.args[1]
    if isinstance(e, Elementwise) and e.op == "negate":
        c, y = _split_const(e.args[0])
        return -c, y
    return 1.0, e


def _mul(a: Expr, b: Expr, shape) -> Expr | None:
    """Gather constant factors to the front: (c1 y1)(c2 y2) = (c1 c2)(y1 y2)."""
    ca, ya = _split_const(a)
    cb, yb = _split_const(b)
    if ya is None and yb is None:
        return None
    c = ca * cb
    if not math.isfinite(c):  # the product overflows: keep the factors apart (their product is computed at run time)
        return None
    if ya is None or yb is None:
        y = ya if yb is None else yb
    else:
        y = Elementwise("mul", (ya, yb), _bshape(ya, yb))
    if c == 0.0:
        return zeros(shape)
    if c == 1.0:
        return broadcast_to(y, shape)
    if c == -1.0:
        return broadcast_to(Elementwise("negate", (y,), y.shape), shape)
    return broadcast_to(Elementwise("mul", (Const(c), y), y.shape), shape)


def _is_op(e: Expr, op: str) -> bool:
    return isinstance(e, Elementwise) and e.op == op


def _small_factors_first(a: Expr, b: Expr, shape) -> Expr | None:
    """(y / s) t and (y s) t as y (t / s) and y (s t) where s and t are arrays broadcast along dims
    that y fills: one full-size product instead of two. Derivatives make these (sparsemax's backward
    scales its support by sum(u s) / |S|, both per row); on a batch of large rows each full-size op
    is a pass over memory. Constants are left to `_mul`, which gathers them to the front."""
    for big, t in ((a, b), (b, a)):
        if not (isinstance(big, Elementwise) and big.op in ("mul", "div") and big.shape == shape):
            continue
        pairs = [big.args] if big.op == "div" else [big.args, big.args[::-1]]
        for y, s in pairs:
            if y.shape != shape or isinstance(s, Const) or isinstance(t, Const) or _bshape(s, t) == shape:
                continue
            return ew("mul", y, ew("div", t, s) if big.op == "div" else ew("mul", s, t))
    return None


# Cancellation of equal terms. Derivatives produce them all the time: the proximal-gradient
# point x - grad f is x - (x - v) for f = 0.5|x - v|^2 (so v, exactly), and a Jacobian of
# x - prox(...) applied to a direction carries v + -v where the prox's argument does not move
# with x. Folded here, sparsemax's residual Jacobian is the identity in the generated code (one
# op instead of twelve, and its backward needs no solve). Equal means structurally equal (the
# IR's nodes compare by value), the same rule SymPy applies to x - x; in floating point the
# folded form is the exact value the longer one rounds.
def _cancel_add(a: Expr, b: Expr, shape) -> Expr | None:
    if (_is_op(b, "negate") and b.args[0] == a) or (_is_op(a, "negate") and a.args[0] == b):
        return zeros(shape)  # a + -a
    if _is_op(a, "sub") and a.args[1] == b:
        return broadcast_to(a.args[0], shape)  # (c - b) + b
    if _is_op(b, "sub") and b.args[1] == a:
        return broadcast_to(b.args[0], shape)  # a + (c - a)
    if _is_op(b, "negate"):
        return ew("sub", a, b.args[0])  # a + -c: one op
    if _is_op(a, "negate"):
        return ew("sub", b, a.args[0])  # -c + b
    return None


def _cancel_sub(a: Expr, b: Expr, shape) -> Expr | None:
    if a == b:
        return zeros(shape)
    if _is_op(b, "sub") and b.args[0] == a:
        return broadcast_to(b.args[1], shape)  # a - (a - c)
    if _is_op(a, "add") and a.args[1] == b:
        return broadcast_to(a.args[0], shape)  # (c + b) - b
    if _is_op(a, "add") and a.args[0] == b:
        return broadcast_to(a.args[1], shape)  # (b + c) - b
    if _is_op(a, "sub") and a.args[0] == b:
        return broadcast_to(ew("negate", a.args[1]), shape)  # (b - c) - b
    if _is_op(b, "negate"):
        return ew("add", a, b.args[0])  # a - -c
    return None


def ew(op: str, *args: Expr) -> Expr:
    """An elementwise primitive with constant folding and unit/zero rules."""
    shape = _bshape(*args)
    args = _unbroadcast_args(args, shape)
    if op == "square" and isinstance(args[0], Elementwise) and args[0].op == "relu":
        return ew("relu2", args[0].args[0])
    if all(isinstance(a, Const) for a in args):
        folded = _fold(op, [a.value for a in args])
        if folded is not None:
            return Const(folded)
    if op == "add":
        a, b = args
        if is_zero(a):
            return broadcast_to(b, shape)
        if is_zero(b):
            return broadcast_to(a, shape)
        cancelled = _cancel_add(a, b, shape)
        if cancelled is not None:
            return cancelled
    elif op == "sub":
        a, b = args
        if is_zero(b):
            return broadcast_to(a, shape)
        if is_zero(a):
            return broadcast_to(ew("negate", b), shape)
        cancelled = _cancel_sub(a, b, shape)
        if cancelled is not None:
            return cancelled
    elif op == "mul":
        a, b = args
        if is_zero(a) or is_zero(b):
            return zeros(shape)
        if is_value(a, 1.0):
            return broadcast_to(b, shape)
        if is_value(b, 1.0):
            return broadcast_to(a, shape)
        if is_value(a, -1.0):
            return broadcast_to(ew("negate", b), shape)
        if is_value(b, -1.0):
            return broadcast_to(ew("negate", a), shape)
        reassociated = _small_factors_first(a, b, shape)
        if reassociated is not None:
            return reassociated
        gathered = _mul(a, b, shape)
        if gathered is not None:
            return gathered
    elif op == "div":
        a, b = args
        if is_zero(a):
            return zeros(shape)
        if is_value(b, 1.0):
            return broadcast_to(a, shape)
    elif op == "step" and _is_op(args[0], "sub"):
        return ew("gt", *args[0].args)  # a - b > 0 exactly where a > b (IEEE, NaN included): one op less
    elif op == "negate":
        (a,) = args
        if is_zero(a):
            return a
        if isinstance(a, Elementwise) and a.op == "negate":
            return a.args[0]
        if isinstance(a, Elementwise) and a.op == "mul" and isinstance(a.args[0], Const):
            return mul(Const(-a.args[0].value), a.args[1])
    elif op == "pow":
        a, b = args
        if is_value(b, 1.0):
            return a
        if is_value(b, 2.0):
            return ew("square", a)
    return Elementwise(op, tuple(args), shape)


FOLDABLE = ("add", "sub", "mul", "div", "pow", "negate", "exp", "log", "sqrt", "square", "sin", "cos", "tanh",
            "abs", "sigmoid", "softplus", "relu", "relu2", "sign", "step", "maximum", "minimum", "ge", "le", "gt")


def _fold(op: str, vals: list) -> float | None:
    import math
    try:
        table = {
            "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
            "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "negate": lambda a: -a,
            "exp": math.exp, "log": math.log, "sqrt": math.sqrt, "square": lambda a: a * a,
            "sin": math.sin, "cos": math.cos, "tanh": math.tanh, "abs": abs,
            "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)), "softplus": lambda a: math.log1p(math.exp(a)),
            "relu": lambda a: max(a, 0.0), "relu2": lambda a: max(a, 0.0) ** 2, "sign": lambda a: float((a > 0) - (a < 0)),
            "step": lambda a: float(a > 0), "maximum": max, "minimum": min,
            "ge": lambda a, b: float(a >= b), "le": lambda a, b: float(a <= b), "gt": lambda a, b: float(a > b),
        }
        if op not in table:
            return None
        value = table[op](*vals)
        # Only a finite real folds; anything else (2 / 0, (-1)^0.5, exp(1000)) is left for
        # `has_no_value` to refuse where the expression is written.
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    except (ArithmeticError, ValueError, TypeError):
        return None


def has_no_value(e) -> bool:
    """An elementwise op of constants that did not fold: a constant with no finite real value."""
    return isinstance(e, Elementwise) and bool(e.args) and all(isinstance(a, Const) for a in e.args) \
        and e.op in FOLDABLE


def add(a, b):
    return ew("add", a, b)


def sub(a, b):
    return ew("sub", a, b)


def mul(a, b):
    return ew("mul", a, b)


def div(a, b):
    return ew("div", a, b)


def neg(a):
    return ew("negate", a)


def matmul(a: Expr, b: Expr) -> Expr:
    shape = shapes.matmul(a.shape, b.shape)
    if shape is None:
        raise AssertionError(f"unchecked matmul of {a.shape} and {b.shape}")
    if is_zero(a) or is_zero(b):
        return zeros(shape)
    if isinstance(a, Eye):
        return b
    if isinstance(b, Eye):
        return a
    return MatMul(a, b, shape)


def transpose(a: Expr) -> Expr:
    if len(a.shape) < 2:
        return a
    shape = (a.shape[1], a.shape[0])
    if is_zero(a):
        return zeros(shape)
    if isinstance(a, Transpose):
        return a.a
    if isinstance(a, Eye):
        return a
    return Transpose(a, shape)


def reduce(op: str, a: Expr, axis: int | None = None) -> Expr:
    shape = shapes.reduce(a.shape, axis)
    if a.shape == () and op in ("sum", "max", "min", "logsumexp"):
        return a
    if op == "sum" and is_zero(a):
        return zeros(shape)
    return Reduce(op, a, axis, shape)


def expand_dims(a: Expr, axis: int) -> Expr:
    shape = a.shape[:axis] + (1,) + a.shape[axis:]
    if is_zero(a):
        return zeros(shape)
    return ExpandDims(a, axis, shape)


def expand_dims_to(a: Expr, axis: int, shape) -> Expr:
    """A reduction's result along `axis`, put back in place and broadcast to `shape`."""
    return broadcast_to(expand_dims(a, axis), shape)


def dim_size(d) -> Expr:
    return Const(float(d)) if isinstance(d, int) else DimSize(d)


def count(shape) -> Expr:
    """The number of entries of a shape, as a scalar expression."""
    out: Expr = Const(1.0)
    for d in shape:
        out = mul(out, dim_size(d))
    return out


def eye(n) -> Expr:
    return Eye(n)


def fill(value: float, shape) -> Expr:
    return Const(float(value)) if shape == () else Fill(float(value), tuple(shape))


# ---- elementwise partial derivatives -----------------------------------------------

def partials(e: Elementwise) -> tuple:
    """The partial derivatives of an elementwise node w.r.t. each argument (elementwise)."""
    from optlang.ir.primitives import ELEMENTWISE

    prim = ELEMENTWISE[e.op]
    if prim.rule is not None:
        return prim.rule(e.args, e)
    syms, parts = sympy_partials(e.op)
    env = dict(zip(syms, e.args))
    return tuple(from_sympy(p, env) for p in parts)


def from_sympy(expr, env: dict) -> Expr:
    """Translate a SymPy scalar expression into IR, with `env` mapping symbols to IR."""
    if expr in env:
        return env[expr]
    if expr.is_Number:
        return const(float(expr))
    args = [from_sympy(a, env) for a in expr.args]
    if expr.is_Add:
        out = args[0]
        for a in args[1:]:
            out = add(out, a)
        return out
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = mul(out, a)
        return out
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent == -1:
            return div(const(1.0), args[0])
        if exponent == sp.Rational(1, 2):
            return ew("sqrt", args[0])
        if exponent == -sp.Rational(1, 2):
            return div(const(1.0), ew("sqrt", args[0]))
        return ew("pow", args[0], args[1])
    names = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tanh: "tanh", sp.sign: "sign"}
    for fn, op in names.items():
        if expr.func == fn:
            return ew(op, *args)
    raise NotImplementedError(f"no IR form for SymPy expression {expr}")
