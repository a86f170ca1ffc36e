"""Typed IR: shaped tensor expressions and the problem that holds them.

Shapes are declared shapes only; batch dims never appear in the IR (every
backend carries them in front). A shape entry is an int or a dim name.
Expressions are frozen and hashable, and compare structurally (spans are not
compared), so equal subexpressions are one node: the lowering shares them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Union

from optlang.errors import Span

Dim = Union[int, str]
Shape = tuple  # tuple[Dim, ...]

def _nospan():
    """A span field that equality and hashing ignore (each dataclass needs its own Field)."""
    return field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Input:
    """A leaf: a var, a param, or a direction (tangent/cotangent) of the derived functions."""

    role: str  # "var" | "param" | "tangent" | "cotangent"
    name: str
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class Const:
    """A scalar literal."""

    value: float
    span: Span | None = _nospan()

    @property
    def shape(self) -> Shape:
        return ()


@dataclass(frozen=True)
class Fill:
    """A tensor of one value (`zeros[..]`, `ones[..]`, and zero derivatives)."""

    value: float
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class Eye:
    """The identity matrix `eye[n]`."""

    n: Dim
    span: Span | None = _nospan()

    @property
    def shape(self) -> Shape:
        return (self.n, self.n)


@dataclass(frozen=True)
class DimSize:
    """The value of a dim at call time, as a scalar (e.g. the `n` in `mean`)."""

    dim: Dim
    span: Span | None = _nospan()

    @property
    def shape(self) -> Shape:
        return ()


@dataclass(frozen=True)
class Elementwise:
    """An elementwise primitive (see `primitives.ELEMENTWISE`), NumPy broadcasting."""

    op: str
    args: tuple
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class MatMul:
    """`a @ b` for ranks (2,1), (1,2), (2,2) and (1,1) (the dot product)."""

    a: "Expr"
    b: "Expr"
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class Transpose:
    """Matrix transpose (rank 2)."""

    a: "Expr"
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class Reduce:
    """`sum`, `max`, `min` or `logsumexp` over one axis or all (axis None)."""

    op: str
    a: "Expr"
    axis: int | None
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class Broadcast:
    """`a` broadcast (NumPy rules, right-aligned) to `shape`."""

    a: "Expr"
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class SumTo:
    """The adjoint of Broadcast: sum `a` down to `shape`."""

    a: "Expr"
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class ExpandDims:
    """Insert a unit axis at `axis` (the adjoint helper of an axis reduction)."""

    a: "Expr"
    axis: int
    shape: Shape
    span: Span | None = _nospan()


Expr = Union[Input, Const, DimSize, Fill, Eye, Elementwise, MatMul, Transpose, Reduce, Broadcast, SumTo, ExpandDims]


def _cached_hash(self) -> int:
    """The structural hash, computed once per node: the generated one re-walks the whole tree."""
    cached = self.__dict__.get("_hash")
    if cached is None:
        cached = hash((type(self).__name__,) + tuple(getattr(self, f.name) for f in fields(self) if f.compare))
        object.__setattr__(self, "_hash", cached)
    return cached


def _representative(node):
    """The node that `node` was last found structurally equal to, followed to the end (path compressed)."""
    root = node
    while (nxt := root.__dict__.get("_same")) is not None:
        root = nxt
    while node is not root:
        nxt = node.__dict__["_same"]
        object.__setattr__(node, "_same", root)
        node = nxt
    return root


def _structural_eq(self, other) -> bool:
    """Structural equality that costs about one comparison per pair of equal nodes over a whole compile.

    The generated __eq__ re-compares two equal subtrees field by field every time it is asked, which
    on a DAG is the size of its tree (exponential in a chain of lets, quadratic in a long product).
    Here different hashes answer at once, and two nodes found equal are linked (union-find), so the
    next comparison of them, or of any parents that share them, is a pointer chase."""
    if self is other:
        return True
    if type(other) is not type(self):
        return NotImplemented
    if _cached_hash(self) != _cached_hash(other):
        return False
    a, b = _representative(self), _representative(other)
    if a is b:
        return True
    equal = all(x is y or x == y for x, y in ((getattr(a, f), getattr(b, f)) for f in _compared_fields(type(a))))
    if equal:
        object.__setattr__(b, "_same", a)
    return equal


@functools.lru_cache(maxsize=None)
def _compared_fields(cls) -> tuple:
    return tuple(f.name for f in fields(cls) if f.compare)


def _state_without_caches(self) -> dict:
    """Pickled without the cached hash (str hashes differ between processes) or the equality links."""
    return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_same")}


for _cls in (Input, Const, DimSize, Fill, Eye, Elementwise, MatMul, Transpose, Reduce, Broadcast, SumTo, ExpandDims):
    _cls.__hash__ = _cached_hash
    _cls.__eq__ = _structural_eq
    _cls.__getstate__ = _state_without_caches


def children(e: Expr) -> tuple:
    """The operand expressions of a node, in order."""
    if isinstance(e, Elementwise):
        return e.args
    if isinstance(e, MatMul):
        return (e.a, e.b)
    if isinstance(e, (Transpose, Reduce, Broadcast, SumTo, ExpandDims)):
        return (e.a,)
    return ()


# ---- the problem --------------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """Call-time checks on a parameter's values, from its attributes."""

    lo: float | None = None
    hi: float | None = None
    lo_closed: bool = True
    hi_closed: bool = True
    psd: bool = False
    symmetric: bool = False

    def describe(self) -> str:
        parts = []
        if self.lo is not None and self.hi is not None:
            parts.append(f"in {'[' if self.lo_closed else '('}{_num(self.lo)}, {_num(self.hi)}{']' if self.hi_closed else ')'}")
        elif self.lo is not None:
            parts.append(f"{'>=' if self.lo_closed else '>'} {_num(self.lo)}")
        elif self.hi is not None:
            parts.append(f"{'<=' if self.hi_closed else '<'} {_num(self.hi)}")
        if self.psd:
            parts.append("psd")
        if self.symmetric:
            parts.append("symmetric")
        return " ".join(parts)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


@dataclass(frozen=True)
class DimInfo:
    name: str
    value: int | None
    span: Span | None = _nospan()


@dataclass(frozen=True)
class ParamInfo:
    name: str
    shape: Shape
    domain: Domain
    span: Span | None = _nospan()


@dataclass(frozen=True)
class VarInfo:
    name: str
    shape: Shape
    span: Span | None = _nospan()


@dataclass(frozen=True)
class ConstraintInfo:
    """A constraint normalized to `g <= 0` (kind "ineq") or `h == 0` (kind "eq").

    `cls` is the classification: "bound" (a var against a param-only expression),
    "linear_eq", "linear_ineq" or "other". For bounds, `var` names the var and
    `lower`/`upper` hold the param-only bound expressions (None when absent).
    """

    label: str | None
    kind: str
    expr: Expr
    cls: str = "other"
    var: str | None = None
    lower: Expr | None = None
    upper: Expr | None = None
    span: Span | None = _nospan()
    # Set when classify rewrote the constraint into an equivalent smooth one: the factor that turns
    # the rewritten constraint's dual into the dual of the constraint as written.
    dual_scale: Expr | None = None


@dataclass(frozen=True)
class Problem:
    """A checked, typed problem.

    `statement` is "minimize", "maximize", "root" or "fixed_point". For
    minimize/maximize `expr` is the objective as written; for root the
    residual; for fixed_point the map, whose var is `fixed_var`.
    """

    name: str
    dims: tuple
    params: tuple
    vars: tuple
    statement: str
    expr: Expr
    constraints: tuple = ()
    fixed_var: str | None = None
    options: tuple = ()  # ((key, value, span), ...) sorted by key
    statement_span: Span | None = _nospan()
    sense: str = ""  # what was written, when normalize rewrote it: "maximize" or "fixed_point"
    source_name: str = "<string>"

    def option(self, key: str, default=None):
        return next((v for k, v, _ in self.options if k == key), default)

    def option_span(self, key: str):
        return next((s for k, _, s in self.options if k == key), None)

    def param(self, name: str) -> ParamInfo:
        return next(p for p in self.params if p.name == name)

    def var(self, name: str) -> VarInfo:
        return next(v for v in self.vars if v.name == name)
