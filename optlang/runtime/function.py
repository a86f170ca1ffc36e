"""The one autograd.Function: a forward solve, and the implicit-function-theorem backward.

Defined once at module level (with `setup_context`), never per call. The
per-call pieces (executor, bound problem, options) travel in a `CallState`
passed as the first argument; the solve's statistics are left on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CallState:
    """Everything one call needs besides the parameter tensors."""

    executor: object
    plan: object
    names: tuple  # parameter names, in the order of the tensors passed
    make_bound: object  # callable: {name: tensor} -> BoundProblem
    options: dict
    result: object = None  # the SolveResult, filled by forward
    bound: object = field(default=None, repr=False)


class ImplicitSolve(torch.autograd.Function):
    """The flat state x*(theta) (vars, and duals for KKT) with F(x*, theta) = 0; gradients by the
    implicit function theorem."""

    @staticmethod
    def forward(state: CallState, *tensors):
        params = dict(zip(state.names, tensors))
        bound = state.make_bound(params)
        state.bound = bound
        state.result = state.executor.solve(bound, state.options)
        return state.result.x.reshape(bound.batch + (bound.n,)).clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        state = inputs[0]
        ctx.state = state
        ctx.save_for_backward(output, *inputs[1:])

    @staticmethod
    def backward(ctx, grad_out):
        state = ctx.state
        x, *tensors = ctx.saved_tensors
        params = dict(zip(state.names, (t.detach() for t in tensors)))
        bound = state.make_bound(params)
        flat_x = x.detach()
        g = grad_out.to(flat_x.dtype)
        wanted = {name for name, needs in zip(state.names, ctx.needs_input_grad[1:]) if needs}
        grads = state.executor.backward(bound, flat_x, g, state.options, wanted)
        out = [None]
        for name, t in zip(state.names, tensors):
            gp = grads.get(name)
            out.append(None if gp is None else gp.sum_to_size(t.shape).to(t.dtype))
        return tuple(out)
