"""A plan's generated functions bound to one call's parameters, on a flat state.

Solvers see the state (every var, then the duals of a KKT problem) as one flat
tensor of shape (*batch, N). This adapter cuts it into the blocks' declared
shapes for the generated functions and flattens and concatenates their
results, broadcasting each to the full batch (a result that does not depend on
a batched input comes back without batch dims). Tangents share the state's
layout (functions along the vars only take its leading var blocks);
cotangents have the residual's layout.
"""
from __future__ import annotations

import math

import torch


class BoundProblem:
    """Generated functions + bound params + concrete dims, for one call."""

    def __init__(self, module, plan, params: dict, dims: dict, batch: tuple, dtype, device):
        self.module = module
        self.plan = plan
        self.params = params
        self.dims = dims
        self.batch = tuple(batch)
        self.dtype = dtype
        self.device = device
        self.state = _layout(((b.name, b.shape) for b in plan.state), dims)
        self.residual_layout = _layout(plan.residual_blocks, dims)
        self.n = sum(size for _, size, _ in self.state.values())
        self.n_vars = sum(self.state[v.name][1] for v in plan.vars)
        self.like = torch.empty((), dtype=dtype, device=device)

    # -- plumbing -------------------------------------------------------------
    def call(self, name: str, state=None, direction=None, cotangent=None, step=None, params=None):
        """Call generated function `name` on flat tensors; returns its raw outputs (a tuple if several)."""
        fn = getattr(self.module, name)
        spec = self.plan.function(name)
        params = self.params if params is None else params
        args = []
        for arg in spec.args:
            if arg.role in ("var", "dual"):
                args.append(self._block(state, self.state[arg.source_name]))
            elif arg.role == "param":
                args.append(params[arg.source_name])
            elif arg.role == "tangent":
                args.append(self._block(direction, self.state[arg.source_name]))
            elif arg.role == "cotangent":
                args.append(self._block(cotangent, self.residual_layout[arg.source_name]))
            else:  # the prox's step, one per batch element
                args.append(step)
        return fn(*args, dims=self.dims, like=self.like)

    @staticmethod
    def _block(flat, entry):
        offset, size, shape = entry
        if offset == 0 and shape == (size,) and flat.shape[-1] == size:
            return flat  # the whole state, a vector: nothing to cut (this runs several times an iteration)
        return flat[..., offset: offset + size].reshape(flat.shape[:-1] + shape)

    def flat(self, name: str, batch: tuple, **inputs):
        """Call `name` and concatenate its outputs, flattened, in the order it declares them."""
        outs = self.call(name, **inputs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        spec = self.plan.function(name)
        layout = self.residual_layout if name in ("residual", "jvp_x") else self.state
        return self._concat(spec.outputs, outs, layout, batch)

    def _concat(self, outputs, outs, layout, batch: tuple):
        """Outputs keyed by block, flattened into one tensor in `layout`'s order."""
        pieces = []
        for (key, _), out in zip(outputs, outs):
            _, size, shape = layout[key]
            if not (isinstance(out, torch.Tensor) and out.dtype == self.dtype):
                out = torch.as_tensor(out, dtype=self.dtype, device=self.device)
            out = out.expand(batch + shape) if out.shape != batch + shape else out
            pieces.append(out if shape == (size,) else out.reshape(batch + (size,)))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)

    # -- what solvers call ------------------------------------------------------
    def residual(self, x):
        return self.flat("residual", x.shape[:-1], state=x)

    def objective(self, x):
        out = torch.as_tensor(self.call("objective", state=x), dtype=self.dtype, device=self.device)
        return out.expand(x.shape[:-1])

    def gradient(self, x):
        return self.flat("gradient", x.shape[:-1], state=x)

    def objective_gradient(self, x):
        """(f, its gradient on the flat state) from one call of the fused function."""
        f, *grads = self.call("objective_gradient", state=x)
        f = torch.as_tensor(f, dtype=self.dtype, device=self.device).expand(x.shape[:-1])
        return f, self._concat(self.plan.function("objective_gradient").outputs[1:], grads, self.state, x.shape[:-1])

    def hvp(self, x, v):
        return self.flat("hvp", x.shape[:-1], state=x, direction=v)

    def jvp(self, x, v):
        return self.flat("jvp_x", x.shape[:-1], state=x, direction=v)

    def vjp(self, x, u):
        return self.flat("vjp_x", x.shape[:-1], state=x, cotangent=u)

    def free_mask(self, x):
        return self.flat("free_mask", x.shape[:-1], state=x)

    def prox_jvp(self, x, v):
        return self.flat("prox_jvp", x.shape[:-1], state=x, direction=v)

    def prox(self, z, step):
        """prox_{step * r}(z) on the var part of the state; `step` has the batch shape."""
        return self.flat("prox", z.shape[:-1], state=z, step=torch.as_tensor(step, dtype=self.dtype, device=self.device))

    def jacobian(self, x, which: str = "jvp_x", size: int | None = None):
        """The dense Jacobian of `which` along the first `size` state entries (all by default).

        Shape (*batch, out, size). All directions go through one call: the
        identity's rows become one more batch dim, inserted in front of each
        param's declared dims (einsum turns the products into batched
        matrix-matrix products).
        """
        size = self.n if size is None else size
        eye = torch.eye(size, dtype=self.dtype, device=self.device)
        params = {p.name: _unsqueeze_batch(self.params[p.name], len(p.shape)) for p in self.plan.params}
        cols = self.flat(which, x.shape[:-1] + (size,), state=x.unsqueeze(-2), direction=eye, params=params)
        return cols.transpose(-1, -2)

    def vjp_theta(self, x, u) -> dict:
        """{param name: (dF/dparam)^T u}, each with the full batch dims in front."""
        outs = self.call("vjp_theta", state=x, cotangent=u)
        outs = outs if isinstance(outs, tuple) else (outs,)
        spec = self.plan.function("vjp_theta")
        grads = {}
        for (name, _), value in zip(spec.outputs, outs):
            decl = self.params[name].shape[self.params[name].dim() - len(self.plan_param(name).shape):]
            value = torch.as_tensor(value, dtype=self.dtype, device=self.device)
            grads[name] = value.expand(self.batch + tuple(decl))
        return grads

    def flat_batch(self) -> "BoundProblem":
        """The same problem with its batch dims flattened into one, (prod(batch),): a view of each
        param that has the batch dims already (a copy only where one broadcasts over them)."""
        size = math.prod(self.batch)
        params = {}
        for p in self.plan.params:
            t, rank = self.params[p.name], len(p.shape)
            if t.dim() > rank:
                decl = tuple(t.shape[t.dim() - rank:])
                t = t.expand(self.batch + decl).reshape((size,) + decl)
            params[p.name] = t
        return BoundProblem(self.module, self.plan, params, self.dims, (size,), self.dtype, self.device)

    def take(self, index: torch.Tensor) -> "BoundProblem":
        """The problem of the batch elements `index` (into the flattened batch), as a batch (len(index),).

        A param without batch dims stays shared; the others are broadcast to the batch and indexed."""
        params = {}
        for p in self.plan.params:
            t, rank = self.params[p.name], len(p.shape)
            if t.dim() > rank:
                decl = tuple(t.shape[t.dim() - rank:])
                # (the size, not -1: a param with no entries, A of a QP without equalities, has no -1)
                t = t.expand(self.batch + decl).reshape((math.prod(self.batch),) + decl)[index]
            params[p.name] = t
        return BoundProblem(self.module, self.plan, params, self.dims, (len(index),), self.dtype, self.device)

    def plan_param(self, name: str):
        return next(p for p in self.plan.params if p.name == name)

    def split(self, x) -> dict:
        """The flat state as {block name: tensor of the block's shape}, batch dims in front."""
        return {name: self._block(x, entry) for name, entry in self.state.items()}


def _layout(blocks, dims: dict) -> dict:
    """{name: (offset, size, concrete shape)} for consecutive blocks."""
    out, offset = {}, 0
    for name, shape in blocks:
        shape = tuple(d if isinstance(d, int) else dims[d] for d in shape)
        size = 1
        for d in shape:
            size *= d
        out[name] = (offset, size, shape)
        offset += size
    return out


def _unsqueeze_batch(t, rank: int):
    return t.unsqueeze(t.dim() - rank)
