"""Shape rules over symbolic dims: broadcasting, matmul, reductions.

A shape is a tuple of dims; a dim is an int or a dim name. Two named dims
agree only when they are the same name (a named dim is never assumed to be
1). The rules return None where the shapes do not fit, and the caller (which
knows the source span) turns that into an error message.
"""
from __future__ import annotations

from optlang.ir.nodes import Shape


def fmt(shape: Shape) -> str:
    """`[m, n]`, or `scalar` for ()."""
    return "scalar" if not shape else "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast(*shapes: Shape) -> Shape | None:
    """The NumPy broadcast of the shapes (right-aligned), or None if they do not fit."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dim = 1
        for s in shapes:
            j = len(s) - rank + i
            if j < 0:
                continue
            d = s[j]
            if d == 1 or d == dim:
                continue
            if dim == 1:
                dim = d
            else:
                return None
        out.append(dim)
    return tuple(out)


def matmul(a: Shape, b: Shape) -> Shape | None:
    """Shape of `a @ b` for ranks 1 and 2, or None if inner dims differ or ranks are wrong."""
    if len(a) not in (1, 2) or len(b) not in (1, 2):
        return None
    if a[-1] != b[0]:
        return None
    return tuple(a[:-1]) + tuple(b[1:])


def reduce(shape: Shape, axis: int | None) -> Shape | None:
    """Shape after reducing over `axis` (None: all), or None if the axis is out of range."""
    if axis is None:
        return ()
    if not 0 <= axis < len(shape):
        return None
    return shape[:axis] + shape[axis + 1:]


def size(shape: Shape, dims: dict) -> int:
    """Number of entries, given values for the named dims."""
    n = 1
    for d in shape:
        n *= d if isinstance(d, int) else dims[d]
    return n


def concrete(shape: Shape, dims: dict) -> tuple:
    """The shape with every named dim replaced by its value."""
    return tuple(d if isinstance(d, int) else dims[d] for d in shape)
