"""The solvers written once for both backends, as text for a Triton module.

A shared solver (`optlang/solvers/newton.py`, ...) is Python the PyTorch
backend imports and runs on a batch. Its @kernel functions and its upper-case
constants are the algorithm; this module copies exactly those into the
generated module, spelled for Triton:

- `@kernel` becomes `@triton.jit`, and a constant `NAME = value` that the
  functions read a `tl.constexpr`;
- `ctx`, the problem context, becomes the instance's context: `__SIG__` in a
  def line, `__ARGS__` in a call (the printer fills both, as in the templates);
- `ctx.FLAG` becomes the module constexpr `FLAG` (the printer prints the
  solver's `flags(plan)`).

Everything else in the file (imports, the PyTorch driver) stays behind. The
array operations the text calls are spelled in `templates/ops.py`.
"""
from __future__ import annotations

import ast
import re
from importlib import resources

# The solvers written once, by the template holding the kernel around each: template name -> module of
# optlang/solvers.
SHARED = {"newton": "newton", "fista": "pgd", "anderson": "anderson", "backward_cg": "adjoint_cg", "ipm": "ipm"}
# Calls that only reorganize a PyTorch batch (ops.compact drops the instances that have stopped, ops.nested
# gives a loop inside a solve a batch of its own to drop them from) or keep something for its backward
# (ops.keep_factor, ops.keep_hessian): one Triton program holds one
# instance and its backward is a kernel of its own, so their statements are left out, and
# `finish(results, ctx)` is its results.
BATCH_ONLY = ("compact", "compact_with_hessian", "nested", "keep_factor", "keep_hessian")


def source(name: str) -> str:
    return resources.files("optlang.solvers").joinpath(name + ".py").read_text("utf-8")


def render(name: str) -> str:
    """The Triton text of shared solver `name`: its constants, then its @kernel functions, in file order."""
    text = source(name)
    lines = text.splitlines()
    out = [f"# --- {name}: optlang/solvers/{name}.py, the solver the PyTorch backend runs too ---"]
    tree = ast.parse(text)
    used = set()  # the names the functions read, ctx.NAME included
    for f in filter(_is_kernel_def, tree.body):
        used |= {n.id for n in ast.walk(f) if isinstance(n, ast.Name)}
        used |= {n.attr for n in ast.walk(f) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "ctx"}
    for node in tree.body:
        if _is_constant(node) and node.targets[0].id in used:  # a PyTorch-only constant stays behind
            target = node.targets[0].id
            value = ast.get_source_segment(text, node.value)
            comment = lines[node.lineno - 1].partition("  # ")[2]
            out.append(f"{target} = tl.constexpr({value})" + (f"  # {comment}" if comment else ""))
        elif _is_kernel_def(node):
            start = _first_line(node) - 1
            dropped = _batch_only_lines(node)
            out += ["", ""] + [_spell(line) for i, line in enumerate(lines[start: node.end_lineno], start + 1)
                               if i not in dropped]
    return "\n".join(out)


def calls(text: str) -> set:
    """The names that Python text calls."""
    return _called(ast.parse(text), kernels_only=False)


def reachable(text: str, roots: set) -> set:
    """The functions of `text` in `roots` or called by those, directly or through one another."""
    defs = {node.name: node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}
    needed, todo = set(), set(roots)
    while todo:
        name = todo.pop()
        if name in defs and name not in needed:
            needed.add(name)
            todo |= _called(defs[name], kernels_only=False)
    return needed


def defined(text: str) -> list[str]:
    """The names of the functions Python text defines at its top level, in order."""
    return [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]


def keep_called(template_text: str, roots: set) -> str:
    """A helper template cut to its header and the functions in `roots` or called by those (directly or
    through one another): a module holds no function it never calls."""
    tree = ast.parse(template_text)
    defs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    needed = reachable(template_text, roots)
    lines = template_text.splitlines()
    first = min(_first_line(node) for node in defs.values()) - 1 if defs else len(lines)
    out = lines[:first]  # the template's header: comments, constants
    while out and not out[-1].strip():
        out.pop()  # the functions below bring their own two blank lines
    for name, node in defs.items():
        if name in needed:
            out += ["", ""] + lines[_first_line(node) - 1: node.end_lineno]
    return "\n".join(out).rstrip()


def _first_line(node) -> int:
    """A statement's first line, its decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _called(tree, kernels_only: bool) -> set:
    """The names called in tree (in its @kernel functions only, if kernels_only)."""
    roots = [f for f in tree.body if _is_kernel_def(f)] if kernels_only else [tree]
    return {node.func.id for root in roots for node in ast.walk(root)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def _batch_only_lines(fn) -> set:
    """The line numbers of fn's statements that call a BATCH_ONLY function."""
    out = set()
    for stmt in ast.walk(fn):
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call) \
                and getattr(stmt.value.func, "id", None) in BATCH_ONLY:
            out |= set(range(stmt.lineno, stmt.end_lineno + 1))
    return out


def _is_constant(node) -> bool:
    return (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.isupper() and isinstance(node.value, ast.Constant))


def _is_kernel_def(node) -> bool:
    return isinstance(node, ast.FunctionDef) and any(_is_kernel(d) for d in node.decorator_list)


def _is_kernel(decorator) -> bool:
    return isinstance(decorator, ast.Name) and decorator.id == "kernel"


def _spell(line: str) -> str:
    if line.strip() == "@kernel":
        return line.replace("@kernel", "@triton.jit")
    line = re.sub(r"\bctx\.([A-Z_]+)\b", r"\1", line)
    if line.lstrip().startswith("def "):
        return re.sub(r"\bctx\b", "__SIG__", line)
    return re.sub(r"\bctx\b", "__ARGS__", line)
