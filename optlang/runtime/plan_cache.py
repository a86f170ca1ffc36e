"""Compiled problems on disk: the typed problem and its Plan, pickled under a content hash.

Parsing and the passes take 5-50 ms a problem once SymPy and Lark are imported, and importing
them takes about 0.5 s: a fresh process that compiles a problem it has compiled before loads
its problem and plan from here instead and imports neither (the other stages, the syntax tree
and the derived conditions, are for the CLI to print: it runs the passes itself). The key
covers the source text, its name (error messages and `# file.opt:LINE` comments quote it) and
the compiler itself (the size and modification time of each of optlang's source files, and the
Python version the pickle was written by), so an edited compiler never reads a plan an older
one derived. Files sit next to the generated modules (`cache.cache_dir()`), written atomically;
an unreadable or stale file is derived again.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
import sys

import optlang
from optlang.runtime import cache


def compiled(text: str, name: str):
    """(problem, plan) of compiling `text` (named `name`): from the cache, or by running the passes.

    Compile errors are raised as the passes raise them (nothing is cached for them)."""
    key = hashlib.sha256(f"{compiler_hash()}\n{name}\n{text}".encode()).hexdigest()
    path = os.path.join(cache.cache_dir(), f"plan-{key[:32]}.pickle")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError):
        pass  # absent, or written by a different compiler: derive it again
    from optlang.passes.pipeline import run

    stages = run(text, name)
    result = (stages.problem, stages.plan)
    try:
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return result  # not picklable (very deep expressions): compiled each time, still correct
    try:
        cache.atomic_write_bytes(path, data)
    except OSError:
        pass  # a read-only cache costs time, not correctness
    return result


@functools.lru_cache(maxsize=1)
def compiler_hash() -> str:
    """sha256 of the name, size and modification time of every source file of the installed optlang
    packages (the grammar and the backends included, wherever an editable install keeps them),
    optlang's version and Python's."""
    digest = hashlib.sha256(f"{optlang.__version__};{sys.version}".encode())
    roots = [os.path.dirname(optlang.__file__)]
    for package in ("optlang.grammar", "optlang.backends"):
        spec = importlib.util.find_spec(package)
        roots += list(spec.submodule_search_locations or ()) if spec else []
    for root in dict.fromkeys(os.path.realpath(r) for r in roots):
        for folder, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            for file in sorted(files):
                if file.endswith((".py", ".lark")):
                    path = os.path.join(folder, file)
                    stat = os.stat(path)  # size and mtime: reading every file would cost more than the load
                    digest.update(f"{os.path.relpath(path, root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()
