"""The autograd.Functions of a solve: the forward solve with its implicit-function-theorem
backward, forward mode (`jvp`) and a vmap rule; and the adjoint solve, made differentiable
for second derivatives.

Defined once at module level (with `setup_context`), never per call. The
per-call pieces (executor, generated modules, options) travel in a `CallState`
passed as the first argument; the solve's statistics are left on it.

First order, reverse:  (dF/dx)^T w = g,  grad_theta = -(dF/dtheta)^T w.
First order, forward:  (dF/dx) dx = -(dF/dtheta) dtheta.
Second order: under `create_graph=True` the backward is itself written with
autograd-visible pieces: w comes from `AdjointSolve`, whose own backward
differentiates the linear solve (a tangent solve with dF/dx, and the
derivative of <w, (dF/dx) z> in x and theta by autograd through the generated
JVP), and grad_theta = -(dF/dtheta)^T w is computed by the generated
`vjp_theta` on tensors that autograd tracks, x* included (whose derivative is
this same Function's first-order backward).
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field

import torch

from optlang.runtime import binding
from optlang.runtime.bound import BoundProblem
from optlang.solvers.backward import adjoint_solve, param_grads, param_tangent, tangent_solve


@dataclass
class CallState:
    """Everything one call needs besides the parameter tensors."""

    executor: object
    plan: object
    names: tuple  # parameter names, in the order of the tensors passed
    module: object  # the executor's generated module
    torch_module: object  # the PyTorch backend's module: forward mode and second order run on it
    dims: dict
    dtype: object
    device: object
    options: dict
    check_domains: bool = False  # the layer could not check them (vmapped inputs): forward does
    result: object = None  # the SolveResult, filled by forward
    bound: object = field(default=None, repr=False)

    def bind(self, tensors, module=None, state_batch=()) -> BoundProblem:
        """The problem bound to these parameter tensors (in `names` order), batch from their shapes
        (and `state_batch`, the batch of a state that may carry more batch dims than the params)."""
        params = dict(zip(self.names, tensors))
        batch = binding.broadcast_shapes(tuple(state_batch), *(params[p.name].shape[: params[p.name].dim() - len(p.shape)]
                                                             for p in self.plan.params))
        module = self.module if module is None else module
        return BoundProblem(module, self.plan, params, self.dims, tuple(batch), self.dtype, self.device)

    def linear_system(self, bound, x):
        """(method, tolerance, J) of the implicit linear solves at x (`executor.implicit_system`)."""
        from optlang.runtime.executor import implicit_system

        return implicit_system(bound, x, self.options, self.result)


def _empty_result(bound):
    from optlang.solvers.result import SolveResult

    def empty(dtype):
        return torch.zeros(bound.batch, dtype=dtype, device=bound.device)

    x = torch.zeros(bound.batch + (bound.n,), dtype=bound.dtype, device=bound.device)
    return SolveResult(x, empty(torch.bool), empty(torch.int64), empty(bound.dtype))


def _to_params(grads: dict, names, tensors, wanted=None) -> tuple:
    out = []
    for name, t in zip(names, tensors):
        gp = grads.get(name)
        keep = gp is not None and (wanted is None or name in wanted)
        out.append(gp.sum_to_size(t.shape).to(t.dtype) if keep else None)
    return tuple(out)


class ImplicitSolve(torch.autograd.Function):
    """The flat state x*(theta) (vars, and duals for KKT) with F(x*, theta) = 0; derivatives by the
    implicit function theorem."""

    @staticmethod
    def forward(state: CallState, *tensors):
        if state.check_domains:
            binding.check_domains(state.plan, dict(zip(state.names, tensors)))
        bound = state.bind(tensors)
        state.bound = bound
        if math.prod(bound.batch) == 0:  # an empty batch: nothing to solve (and some kernels cannot take 0)
            state.result = _empty_result(bound)
        else:
            state.result = state.executor.solve(bound, state.options)
        return state.result.x.reshape(bound.batch + (bound.n,)).clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        state = inputs[0]
        ctx.state = state
        ctx.save_for_backward(output, *inputs[1:])
        ctx.save_for_forward(output, *inputs[1:])

    @staticmethod
    def backward(ctx, grad_out):
        state = ctx.state
        x, *tensors = ctx.saved_tensors
        wanted = {name for name, needs in zip(state.names, ctx.needs_input_grad[1:]) if needs}
        g = grad_out.to(x.dtype)
        if x.numel() == 0:  # an empty batch: empty (or zero, for a param the batch shares) gradients
            return (None,) + tuple(torch.zeros_like(t) if name in wanted else None
                                   for name, t in zip(state.names, tensors))
        if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate
            w = AdjointSolve.apply(state, x, g, *tensors)
            bound = state.bind(tensors, state.torch_module)
            return (None,) + _to_params(param_grads(bound, x, w), state.names, tensors, wanted)
        tensors = [t.detach() for t in tensors]
        bound = state.bind(tensors)
        grads = state.executor.backward(bound, x.detach(), g.detach(), state.options, wanted, state.result)
        return (None,) + _to_params(grads, state.names, tensors, wanted)

    @staticmethod
    def jvp(ctx, _state_tangent, *tangents):
        x, *tensors = ctx.saved_tensors
        return TangentMap.apply(ctx.state, x, *tensors, *tangents)

    @staticmethod
    def vmap(info, in_dims, state, *tensors):
        """The vmapped dim becomes one more leading batch dim, which the solvers batch natively."""
        ranks = [len(p.shape) for p in state.plan.params]
        moved = _vmapped_dim_first(in_dims[1:], tensors, ranks)
        inner = dataclasses.replace(state, result=None, bound=None)
        out = ImplicitSolve.apply(inner, *moved)
        state.result, state.bound = inner.result, inner.bound
        return out, 0 if any(d is not None for d in in_dims[1:]) else None


def _vmapped_dim_first(in_dims, tensors, decl_ranks) -> list:
    """Each vmapped tensor with its vmapped dim moved to the front, then padded with unit dims so
    every tensor's batch dims line up (batch dims broadcast from the right)."""
    batch_ranks = [0 if t is None else t.dim() - (d is not None) - r for t, d, r in zip(tensors, in_dims, decl_ranks)]
    rank = max(batch_ranks, default=0)
    moved = []
    for t, d, r in zip(tensors, in_dims, batch_ranks):
        if d is not None:
            t = t.movedim(d, 0)
            t = t.reshape(t.shape[:1] + (1,) * (rank - r) + t.shape[1:])
        moved.append(t)
    return moved


def _expand_to_batch(vectors, tensors, decl_ranks) -> tuple:
    """Flat-state vectors (None allowed) expanded to the batch they and `tensors` broadcast to."""
    present = [v for v in vectors if v is not None]
    batches = [t.shape[: t.dim() - r] for t, r in zip(tensors, decl_ranks) if t is not None]
    shape = binding.broadcast_shapes(*(v.shape[:-1] for v in present), *batches) + present[0].shape[-1:]
    return tuple(None if v is None else v.expand(shape) for v in vectors)


def _vmap_flat_first(function, in_dims, state, vectors, tensors, copies: int):
    """The vmap rule of an autograd Function called as (state, *flat-state vectors, *per-param
    tensors), the tensors being `copies` runs of one tensor per param (params, then their tangents):
    the vmapped dim becomes a leading batch dim, and the vectors are expanded to the full batch that
    they and the tensors broadcast to (the solvers take the state with every batch dim)."""
    param_ranks = [len(p.shape) for p in state.plan.params] * copies
    moved = _vmapped_dim_first(in_dims[1:], vectors + tuple(tensors), [1] * len(vectors) + param_ranks)
    vectors, tensors = moved[:len(vectors)], moved[len(vectors):]
    out = function.apply(state, *_expand_to_batch(tuple(vectors), tensors, param_ranks), *tensors)
    return out, 0 if any(d is not None for d in in_dims[1:]) else None


class AdjointSolve(torch.autograd.Function):
    """w with (dF/dx)^T w = g at (x, theta), differentiable in x, g and theta (for second order)."""

    @staticmethod
    def forward(state: CallState, x, g, *tensors):
        bound = state.bind([t.detach() for t in tensors], state.torch_module, x.shape[:-1])
        method, tol, J = state.linear_system(bound, x)
        return adjoint_solve(bound, x, g, method, tol, J)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.state = inputs[0]
        ctx.save_for_backward(inputs[1], output, *inputs[3:])
        ctx.save_for_forward(inputs[1], output, *inputs[3:])

    @staticmethod
    def backward(ctx, w_bar):
        # w = A^-T g with A = dF/dx(x, theta): dw = A^-T (dg - dA^T w), so for a cotangent w_bar,
        # z = A^-1 w_bar gives g_bar = z and (x_bar, theta_bar) = -d/d(x, theta) <w, A(x, theta) z>.
        state = ctx.state
        x, w, *tensors = ctx.saved_tensors
        x, w = x.detach(), w.detach()
        tensors = [t.detach() for t in tensors]
        bound = state.bind(tensors, state.torch_module, x.shape[:-1])
        with warnings.catch_warnings():  # the first backward has already warned about this point
            warnings.simplefilter("ignore", RuntimeWarning)
            method, tol, J = state.linear_system(bound, x)
            z = tangent_solve(bound, x, w_bar.detach(), method, tol, J)
            with torch.enable_grad():
                x_t = x.clone().requires_grad_()
                theta = [t.clone().requires_grad_() for t in tensors]
                tracked = state.bind(theta, state.torch_module, x.shape[:-1])
                if isinstance(J, torch.Tensor):  # the KKT Jacobian with its weakly active rows, as the solve used it
                    _, _, J_t = state.linear_system(tracked, x_t)
                    Az = (J_t @ z.unsqueeze(-1)).squeeze(-1)
                else:
                    Az = tracked.jvp(x_t, z)
                total = (w * Az).sum()
                # dF/dx may not depend on x or theta at all (piecewise-linear maps such as sparsemax)
                grads = (torch.autograd.grad(total, [x_t, *theta], allow_unused=True) if total.requires_grad
                         else (None,) * (1 + len(theta)))
        x_bar = None if grads[0] is None else -grads[0]
        theta_bar = tuple(None if gt is None else -gt.sum_to_size(t.shape) for gt, t in zip(grads[1:], tensors))
        out = (x_bar, z) + theta_bar
        if torch.is_grad_enabled():  # create_graph=True: a third derivative must raise, not come out 0
            x, w, *tensors = ctx.saved_tensors
            present = [t for t in out if t is not None]
            guarded = iter(_SecondOrderOnly.apply(len(present), *present, w_bar, x, w, *tensors))
            out = tuple(None if t is None else next(guarded) for t in out)
        return (None,) + out

    @staticmethod
    def jvp(ctx, _state_tangent, dx, dg, *dtheta):
        x, w, *tensors = ctx.saved_tensors
        return AdjointTangent.apply(ctx.state, x, w, dx, dg, *tensors, *dtheta)

    @staticmethod
    def vmap(info, in_dims, state, x, g, *tensors):
        return _vmap_flat_first(AdjointSolve, in_dims, state, (x, g), tensors, copies=1)


class TangentMap(torch.autograd.Function):
    """dx = -(dF/dx)^-1 (dF/dtheta) dtheta at (x, theta): forward mode's linear map, as a Function of
    its own so that vmap over tangents (jacfwd) batches it like every other solve."""

    @staticmethod
    def forward(state: CallState, x, *tensors_and_tangents):
        k = len(state.names)
        tensors, tangents = tensors_and_tangents[:k], tensors_and_tangents[k:]
        bound = state.bind(tensors, state.torch_module, x.shape[:-1])
        dtheta = {name: t for name, t in zip(state.names, tangents) if t is not None}
        v = -param_tangent(bound, x, dtheta)
        method, tol, J = state.linear_system(bound, x)
        return tangent_solve(bound, x, v, method, tol, J)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError("optlang: reverse mode through a forward-mode tangent (jvp then backward) is not "
                           "supported; use reverse mode twice (create_graph=True) for second derivatives")

    @staticmethod
    def vmap(info, in_dims, state, x, *tensors_and_tangents):
        return _vmap_flat_first(TangentMap, in_dims, state, (x,), tensors_and_tangents, copies=2)


class AdjointTangent(torch.autograd.Function):
    """Forward mode through w = A^-T g, A = dF/dx(x, theta): dw = A^-T (dg - (dA)^T w), with (dA)^T w
    the directional derivative of the generated vjp_x (forward AD through it) along (dx, dtheta)."""

    @staticmethod
    def forward(state: CallState, x, w, dx, dg, *tensors_and_tangents):
        k = len(state.names)
        tensors, dtheta = tensors_and_tangents[:k], tensors_and_tangents[k:]
        bound = state.bind(tensors, state.torch_module, x.shape[:-1])
        method, tol, J = state.linear_system(bound, x)

        def transposed(x, *theta):
            # A dense J (the KKT matrix as the solve used it) is differentiated as built; otherwise
            # (none, or a factor of the Hessian) through the generated VJP.
            if not isinstance(J, torch.Tensor):
                return state.bind(theta, state.torch_module, x.shape[:-1]).vjp(x, w)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                _, _, J_t = state.linear_system(state.bind(theta, state.torch_module, x.shape[:-1]), x)
            return (J_t.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)

        # torch.func.jvp wants each tangent of its primal's shape: broadcast the pairs (a vmapped
        # tangent may carry batch dims its primal does not).
        primals, tangents = [], []
        for t, d in zip((x,) + tuple(tensors), (dx,) + tuple(dtheta)):
            d = torch.zeros_like(t) if d is None else d
            shape = binding.broadcast_shapes(t.shape, d.shape)
            # (materialized: forward AD cannot write a tangent into a stride-0 view)
            primals.append(t.expand(shape).contiguous())
            tangents.append(d.expand(shape).contiguous())
        _, dAt_w = torch.func.jvp(transposed, tuple(primals), tuple(tangents))
        zeros = torch.zeros_like
        rhs = (zeros(w) if dg is None else dg) - dAt_w
        if rhs.shape != x.shape:  # more batch dims than the state (from the tangents)
            x = x.expand(rhs.shape)
            bound = state.bind(tensors, state.torch_module, x.shape[:-1])
            J = None if J is None else J.expand(rhs.shape[:-1] + J.shape[-2:])
        return adjoint_solve(bound, x, rhs, method, tol, J)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError("optlang: derivatives above second order through a solve are not supported")

    @staticmethod
    def vmap(info, in_dims, state, x, w, dx, dg, *tensors_and_tangents):
        return _vmap_flat_first(AdjointTangent, in_dims, state, (x, w, dx, dg), tensors_and_tangents, copies=2)


class _SecondOrderOnly(torch.autograd.Function):
    """The identity on the second-order backward's results, tied to its inputs so that differentiating
    them once more reaches this node and raises (their own graph would otherwise be empty: a zero)."""

    @staticmethod
    def forward(ctx, count, *tensors):
        return tuple(t.clone() for t in tensors[:count])

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError("optlang: derivatives above second order through a solve are not supported")
