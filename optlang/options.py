"""The options a problem's `options` block and a call can set, and the check of their values.

Its own module so that the runtime can check a call's options without importing the compiler.
"""
from __future__ import annotations

import math

from optlang.errors import OptError

SOLVERS = ("auto", "newton", "pgd", "fista", "ipm", "admm", "anderson")
BACKWARDS = ("auto", "direct", "cg", "gmres", "neumann", "unroll")
OPTION_KINDS = {"solver": str, "backward": str, "tol": float, "max_iter": int, "time_limit": float}


def option_value(key: str, value, span=None):
    """Check one option's value (also used for per-call overrides, with span None)."""
    kind = OPTION_KINDS[key]
    allowed = {"solver": SOLVERS, "backward": BACKWARDS}.get(key)
    if allowed is not None:
        if not isinstance(value, str) or value not in allowed:
            raise OptError(f"option {key} must be one of " + ", ".join(f'"{a}"' for a in allowed), span, f"found {value!r}")
        return value
    if isinstance(value, str) or isinstance(value, bool):
        raise OptError(f"option {key} must be a number", span, f"found {value!r}")
    if kind is int:
        if not math.isfinite(float(value)) or not float(value).is_integer() or value < 1:
            raise OptError(f"option {key} must be a positive integer", span, f"found {_value_text(value)}")
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptError(f"option {key} must be a number", span, f"found {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise OptError(f"option {key} must be a finite positive number", span, f"found {_value_text(value)}")
    return number


def _value_text(value) -> str:
    return "inf" if isinstance(value, float) and math.isinf(value) else repr(value)
