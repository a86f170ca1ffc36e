"""The Plan: what a backend prints. Straight-line SSA functions plus solver choices.

A Plan decides all the math; backends only spell its ops in their language.
Ops (`Op.prim`), with operand names in `args` and the declared result shape:
  const(value)  dim(name)  fill(value)  eye                  leaves
  <elementwise primitive name>                               NumPy broadcasting
  matmul  transpose  broadcast  sum_to  expand_dims(axis)    structure
  reduce(op, axis)                                           op in sum, logsumexp, norm1, norm2, ...
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields

from optlang.ir.nodes import Input


@dataclass(frozen=True)
class Op:
    out: str
    prim: str
    args: tuple
    attrs: tuple
    shape: tuple
    note: str = ""  # where in the .opt file this op comes from, if anywhere


@dataclass(frozen=True)
class Arg:
    """A function argument: `name` is the generated identifier (x_w, p_X, v_w, u_w)."""

    name: str
    role: str  # "var" | "dual" | "param" | "tangent" | "cotangent" | "step"
    source_name: str
    shape: tuple


@dataclass(frozen=True)
class Function:
    name: str
    args: tuple  # Arg
    ops: tuple  # Op
    outputs: tuple  # ((key, ssa name), ...)
    doc: str

    def shape_of(self, name: str) -> tuple:
        return self._shapes[name]

    def reads(self, role: str) -> bool:
        """True if the result depends on some argument of this role (a function may ignore one it takes)."""
        names = {a.name for a in self.args if a.role == role}
        return any(name in names for op in self.ops for name in op.args) or \
            any(name in names for _, name in self.outputs)

    def is_identity_in(self, role: str) -> bool:
        """True if the function returns its `role` arguments unchanged, block for block (no ops): an
        hvp or residual Jacobian that is the identity, as folded by `ir.algebra`."""
        inputs = {a.source_name: a.name for a in self.args if a.role == role}
        return not self.ops and len(self.outputs) == len(inputs) and \
            all(inputs.get(key) == name for key, name in self.outputs)

    @functools.cached_property
    def _shapes(self) -> dict:
        """name -> shape of every argument and SSA value (the printers ask once per operand)."""
        return {**{op.out: op.shape for op in self.ops}, **{a.name: a.shape for a in self.args}}


@dataclass(frozen=True)
class StateBlock:
    """One block of the solver's flat state: a var, or the dual of a constraint ("ineq" / "eq").

    `name` is the var's name, the constraint's label, or its index (digits, which
    no label can be) for an unlabelled constraint.
    """

    kind: str
    name: str
    shape: tuple
    label: str | None = None
    line: int | None = None

    @property
    def input(self) -> Input:
        return Input("var" if self.kind == "var" else "dual", self.name, self.shape)

    @property
    def tangent(self) -> Input:
        return Input("tangent", self.name, self.shape)

    @property
    def cotangent(self) -> Input:
        return Input("cotangent", self.name, self.shape)


@dataclass(frozen=True)
class Plan:
    """Everything a backend and the runtime need to build a layer."""

    problem: str
    source_name: str
    kind: str  # "smooth" | "prox" | "kkt" | "root"
    vars: tuple  # nodes.VarInfo
    state: tuple  # StateBlock: the solver's flat state, vars first, then duals (kkt)
    residual_blocks: tuple  # ((name, shape), ...): the residual's blocks (the cotangent's layout)
    params: tuple  # nodes.ParamInfo
    dims: tuple  # nodes.DimInfo
    functions: tuple  # Function
    options: tuple  # ((key, value), ...): solver, backward, tol, max_iter as declared
    choices: tuple = field(default=())  # ((what, choice, why), ...) from `select`
    sense: str = ""  # "maximize" or "fixed_point" where normalize rewrote the statement
    affine_constraints: bool = True  # kkt: every constraint is affine (the IPM's linearization is exact)
    local: bool = False  # smooth and not provably convex: a solution is a stationary point, maybe only local
    quadratic: bool = False  # minimize: f (the smooth part) is quadratic in the vars, its Hessian constant

    def __hash__(self):
        # A plan keys the generated-module caches on every call; hashing its nested tuples each time
        # cost about 0.1 ms a call. Computed once; left out of pickles (str hashes vary by process).
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_hash", "_by_name")}

    @property
    def var(self):
        """The one var (backends that handle a single var only)."""
        return self.vars[0]

    @property
    def duals(self) -> tuple:
        return tuple(b for b in self.state if b.kind != "var")

    def function(self, name: str) -> Function | None:
        # Looked up about 15 times a call: a dict built once, like the hash.
        by_name = self.__dict__.get("_by_name")
        if by_name is None:
            by_name = {f.name: f for f in reversed(self.functions)}  # the first of a name, as a search finds
            object.__setattr__(self, "_by_name", by_name)
        return by_name.get(name)

    @property
    def identity_jacobian(self) -> bool:
        """dF/dx is the identity (F = x - P(theta), e.g. a projection or prox of a point: sparsemax):
        every implicit solve is trivial, the adjoint is the cotangent itself."""
        jvp = self.function("jvp_x")
        return jvp is not None and jvp.is_identity_in("tangent")

    def option(self, key: str, default=None):
        return dict(self.options).get(key, default)
