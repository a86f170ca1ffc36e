"""optlang: a compiler for differentiable optimization.

Write a problem in a `.opt` file, compile it, and call it as a PyTorch module
whose outputs are differentiable in every parameter (implicit function theorem).
"""
from __future__ import annotations

__version__ = "0.1.0"


# Marks this package as optlang-diff: `optlang.errors` checks for it, so that if
# PyPI's unrelated `optlang` (LP modelling, COBRApy) has replaced this
# `__init__` (both distributions install an `optlang/` folder), importing any of
# our modules fails with a message saying so instead of an obscure error.
__optlang_diff__ = True

from optlang.errors import CallError, NotSupportedError, OptError  # noqa: E402

__all__ = ["compile", "compile_string", "OptError", "NotSupportedError", "CallError", "__version__"]


def compile(path, **options):  # noqa: A001 - mirrors the built-in on purpose: optlang.compile(path)
    """Compile a `.opt` file into a differentiable `nn.Module` (see `optlang.runtime.layer.Layer`)."""
    from optlang.runtime.layer import compile_file

    return compile_file(path, **options)


def compile_string(source: str, name: str = "<string>", **options):
    """Compile `.opt` source text into a differentiable `nn.Module`."""
    from optlang.runtime.layer import compile_source

    return compile_source(source, name, **options)
