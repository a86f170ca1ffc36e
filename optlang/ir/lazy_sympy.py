"""SymPy, imported on first use.

Only deriving a problem's conditions needs SymPy (the elementwise derivative rules); a layer whose
plan comes from the plan cache never does, and importing SymPy costs about 0.4 s.
"""
from __future__ import annotations

import importlib


class _LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


sp = _LazyModule("sympy")
