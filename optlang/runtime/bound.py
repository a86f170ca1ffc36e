"""A plan's generated functions bound to one call's parameters, on a flat var state.

Solvers see the var as a flat state `x` of shape (*batch, N); this adapter
reshapes it to the declared shape for the generated functions and flattens
their results, broadcasting each to the full batch (a result that does not
depend on a batched input comes back without batch dims).
"""
from __future__ import annotations

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
        self.var_shape = tuple(d if isinstance(d, int) else dims[d] for d in plan.var.shape)
        self.n = 1
        for d in self.var_shape:
            self.n *= d
        self.like = torch.empty((), dtype=dtype, device=device)

    # -- plumbing -------------------------------------------------------------
    def _call(self, name: str, x=None, direction=None, params=None):
        fn = getattr(self.module, name)
        spec = self.plan.function(name)
        params = self.params if params is None else params
        args = []
        for arg in spec.args:
            if arg.role == "var":
                args.append(self._unflat(x))
            elif arg.role == "param":
                args.append(params[arg.source_name])
            else:
                args.append(self._unflat(direction))
        return fn(*args, dims=self.dims, like=self.like)

    def _unflat(self, x):
        return x.reshape(x.shape[:-1] + self.var_shape)

    def _flat(self, out, batch: tuple):
        out = torch.as_tensor(out, dtype=self.dtype, device=self.device)
        out = out.expand(batch + self.var_shape) if out.shape != batch + self.var_shape else out
        return out.reshape(batch + (self.n,))

    # -- what solvers call ------------------------------------------------------
    def residual(self, x):
        return self._flat(self._call("residual", x), x.shape[:-1])

    def objective(self, x):
        out = torch.as_tensor(self._call("objective", x), dtype=self.dtype, device=self.device)
        return out.expand(x.shape[:-1])

    def gradient(self, x):
        return self._flat(self._call("gradient", x), x.shape[:-1])

    def hvp(self, x, v):
        return self._flat(self._call("hvp", x, v), x.shape[:-1])

    def free_mask(self, x):
        return self._flat(self._call("free_mask", x), x.shape[:-1])

    def bounds(self):
        """(lower, upper) as flat (*batch, N) tensors; -inf/+inf where absent."""
        out = []
        for name, default in (("lower", -float("inf")), ("upper", float("inf"))):
            if self.plan.function(name) is None:
                out.append(torch.full(self.batch + (self.n,), default, dtype=self.dtype, device=self.device))
            else:
                out.append(self._flat(self._call(name), self.batch))
        return tuple(out)

    def jacobian(self, x, which: str = "jvp_x"):
        """The dense Jacobian of the residual (or Hessian, which="hvp"), shape (*batch, N, N).

        All N directions go through the JVP at once: the identity's rows become
        one more batch dim, inserted in front of each param's declared dims
        (einsum turns the products into batched matrix-matrix products).
        """
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        params = {p.name: _unsqueeze_batch(self.params[p.name], len(p.shape)) for p in self.plan.params}
        cols = self._call(which, x.unsqueeze(-2), eye, params=params)
        cols = self._flat(cols, x.shape[:-1] + (self.n,))
        return cols.transpose(-1, -2)

    def vjp_theta(self, x, u) -> dict:
        """{param name: (dF/dparam)^T u}, each with the full batch dims in front."""
        outs = self._call("vjp_theta", x, u)
        outs = outs if isinstance(outs, tuple) else (outs,)
        spec = self.plan.function("vjp_theta")
        grads = {}
        for (name, _), value in zip(spec.outputs, outs):
            decl = self.params[name].shape[self.params[name].dim() - len(self.plan_param(name).shape):]
            value = torch.as_tensor(value, dtype=self.dtype, device=self.device)
            grads[name] = value.expand(self.batch + tuple(decl))
        return grads

    def plan_param(self, name: str):
        return next(p for p in self.plan.params if p.name == name)


def _unsqueeze_batch(t, rank: int):
    return t.unsqueeze(t.dim() - rank)
