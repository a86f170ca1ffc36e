"""Traversals of IR expressions: post-order, inputs, substitution."""
from __future__ import annotations

from dataclasses import replace

from optlang.ir.nodes import (Broadcast, Elementwise, ExpandDims, Input, MatMul, Reduce, SumTo, Transpose,
                              children)


def postorder(*roots) -> list:
    """Every distinct node reachable from the roots, operands before users."""
    seen, out = set(), []
    stack = [(r, False) for r in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            if node not in seen:
                seen.add(node)
                out.append(node)
            continue
        if node in seen:
            continue
        stack.append((node, True))
        for c in reversed(children(node)):
            if c not in seen:
                stack.append((c, False))
    return out


def inputs_of(*roots) -> list:
    """The Input leaves reachable from the roots, in first-seen order."""
    return [n for n in postorder(*roots) if isinstance(n, Input)]


def with_children(node, kids: tuple):
    """A copy of `node` with new operands (shape unchanged)."""
    if isinstance(node, Elementwise):
        return replace(node, args=tuple(kids))
    if isinstance(node, MatMul):
        return replace(node, a=kids[0], b=kids[1])
    if isinstance(node, (Transpose, Reduce, Broadcast, SumTo, ExpandDims)):
        return replace(node, a=kids[0])
    return node


def substitute(root, mapping: dict):
    """Replace nodes by `mapping` everywhere below `root` (memoized, so DAG sharing stays)."""
    memo = dict(mapping)
    for node in postorder(root):
        if node in memo:
            continue
        kids = children(node)
        if kids:
            new_kids = tuple(memo[k] for k in kids)
            memo[node] = node if new_kids == kids else with_children(node, new_kids)
        else:
            memo[node] = node
    return memo[root]
