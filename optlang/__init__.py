"""optlang: a compiler for differentiable optimization.

Write a problem in a `.opt` file, compile it, and call it as a PyTorch module
whose outputs are differentiable in every parameter (implicit function theorem).
"""
from __future__ import annotations

__version__ = "0.1.0"


def _check_not_shadowed() -> None:
    # PyPI's unrelated `optlang` (LP modelling for COBRApy) installs a package of
    # the same import name; if it wins on sys.path, our submodules are missing.
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(os.path.join(here, "syntax", "ast.py")):
        raise ImportError(
            "the `optlang` being imported is not optlang-diff (the differentiable-optimization "
            f"compiler) but another package at {here}; PyPI's `optlang` (LP modelling) shadows it. "
            "Uninstall it (`pip uninstall optlang`) and install `optlang-diff`."
        )


_check_not_shadowed()

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
