"""The compiled problem as an `nn.Module`: bind arguments, pick a backend, solve, report."""
from __future__ import annotations

import collections
import functools
import os
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from optlang.errors import CallError, OptError, user_stacklevel
from optlang.options import option_value
from optlang.passes.select import CLASS_WORDS, SOLVERS, allowed_backwards, default_solver, has_free_set, kind_label
from optlang.runtime import binding
from optlang.runtime.plan_cache import compiled
from optlang.runtime.bound import BoundProblem
from optlang.runtime.function import CallState, ImplicitSolve
from optlang.solvers.result import DEFAULT_TIME_LIMIT, STATUS, default_tol

BACKENDS = ("torch", "triton")
LOCAL_NOTE = ("local solution: the objective is not provably convex, so a converged element is a stationary "
              "point (gradient 0), not necessarily a global minimum")
CALL_OPTIONS = ("tol", "max_iter", "time_limit", "solver", "backward")


@dataclass
class Stats:
    """Per batch element: did it converge, how many iterations, the final relative residual, and why
    it stopped (`status`: indices into STATUS; `status_names()` spells them)."""

    converged: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    status: torch.Tensor
    note: str = ""  # what "converged" means where it is less than optimal (a local solution)

    STATUS = STATUS

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())

    def failures(self) -> str:
        """How the elements that did not converge ended, counted: "2 max_iter, 1 infeasible"."""
        codes = self.status[~self.converged].tolist()
        return ", ".join(f"{codes.count(c)} {STATUS[c]}" for c in sorted(set(codes)))

    def status_names(self):
        """The status of each batch element as a word, nested like the batch (a str for no batch)."""
        codes = self.status.tolist()
        spell = lambda c: [spell(i) for i in c] if isinstance(c, list) else STATUS[c]  # noqa: E731
        return spell(codes)


class Solution:
    """The solution of one call: each var by name, `duals` by label, `objective` (the objective's value
    at the solution per batch element, as written: maximized for maximize; None for root and fixed
    point problems), and `stats`. Picklable (tensors and plain data only)."""

    def __init__(self, values: dict, duals: dict, stats: Stats, objective=None, state=None):
        self._values = values
        self.duals = duals
        self.stats = stats
        # The objective, or a function computing it: evaluated when first read (a layer used as a
        # module never reads it, and on a small problem it is a tenth of the call).
        self._objective = objective
        self._state = state  # the flat solver state (vars, then KKT duals), detached: for warm starts
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def objective(self):
        if callable(self._objective):
            self._objective = self._objective()
        return self._objective

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_objective"] = self.objective
        return state

    def warm_start(self) -> "WarmStart":
        """What to pass as `init=` to a later call: this solution's vars and duals (detached).

        Gradients do not flow through a starting point: the implicit derivative does not depend on it."""
        return WarmStart(self._state)

    def __getitem__(self, name: str):
        return self._values[name]

    def __repr__(self) -> str:
        names = ", ".join(self._values)
        return f"Solution({names}; converged {int(self.stats.converged.sum())}/{self.stats.converged.numel()})"


@dataclass
class WarmStart:
    """A flat solver state to start from (see `Solution.warm_start`)."""

    state: torch.Tensor


def solution_tuple(problem: str, names: tuple, values: tuple):
    """The named tuple `{problem}_solution` of a several-var problem's vars, one type per problem and names.

    Built at module level and rebuilt by name when unpickled, so results pickle and `torch.save`
    in any process (a class made per layer could not be found again by pickle)."""
    return _solution_type(problem, tuple(names))(*values)


@functools.lru_cache(maxsize=None)
def _solution_type(problem: str, names: tuple):
    # Var names are identifiers the grammar accepts; `rename=True` keeps any that Python reserves
    # (a leading underscore, a keyword) as positional fields instead of failing.
    typename = f"{problem}_solution"
    base = collections.namedtuple(typename, names, rename=True)
    reduce = lambda self: (solution_tuple, (problem, names, tuple(self)))  # noqa: E731
    return type(typename, (base,), {"__slots__": (), "__reduce__": reduce})


def compile_file(path, **options) -> "Layer":
    """Compile a `.opt` file; OptError on a problem in it."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise OptError(f"cannot read {path}: {exc.strerror}") from None
    return compile_source(text, str(path), **options)


def compile_source(text: str, name: str = "<string>", **options) -> "Layer":
    return Layer(text, name, **options)


class Layer(torch.nn.Module):
    """A differentiable solution map theta -> x*(theta) compiled from `.opt` source.

    Call it with the parameters by name; leading batch dims broadcast. Options
    (tol, max_iter, solver, backward, backend) given here override the file's
    options block; given to a call, they override both for that call.
    """

    def __init__(self, text: str, name: str = "<string>", backend: str | None = None, **options):
        super().__init__()
        self.problem, self.plan = compiled(text, name)  # the typed problem (for the CLI) and the Plan
        self.source_name = name
        self._defaults = dict(self.plan.options)
        self._defaults.update(self._check_options(options))
        self._backend = _check_backend(backend)
        self._fallbacks: set = set()  # the reasons already warned about for running on PyTorch, not Triton
        self._source = (text, name, backend, dict(options))

    def __reduce__(self):
        # A layer pickles as its source and options, and compiles again when loaded.
        return (_rebuild_layer, self._source)

    # -- public API ------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """The solution: the var's tensor, or a named tuple of the vars when there are several.

        Parameters by name, or positionally in declaration order (a one-param layer fits in
        nn.Sequential)."""
        sol = self.solve(*args, **kwargs)
        names = tuple(v.name for v in self.plan.vars)
        if len(names) == 1:
            return sol[names[0]]
        return solution_tuple(self.plan.problem, names, tuple(sol[n] for n in names))

    def solve(self, *args, warn: bool = True, backend: str | None = None, init=None, verbose: bool = False,
              **kwargs) -> Solution:
        """Solve; parameters by name or positionally in declaration order. `init`: a starting point, a
        `WarmStart` (`sol.warm_start()`) or {var name: tensor}; `verbose`: log one line per solve."""
        kwargs = self._positional(args, kwargs)
        call_options = {k: kwargs.pop(k) for k in CALL_OPTIONS if k in kwargs}
        params = binding.to_tensors(self.plan, kwargs)
        dims, batch = binding.bind_dims(self.plan, params)
        # Under torch.func.vmap the values are not at hand here (data-dependent checks cannot run on
        # a batched tensor): the solve's forward checks them on the unbatched tensors instead.
        vmapped = any(torch._C._functorch.is_batchedtensor(t) for t in params.values())
        if not vmapped:
            binding.check_domains(self.plan, params)
        for v in self.plan.vars:
            empty = [d for d in v.shape if (d if isinstance(d, int) else dims[d]) == 0]
            if empty:
                raise CallError(f"var '{v.name}' has no entries: dim {empty[0]} is 0 in this call; "
                                "there is nothing to solve for")
        some = next(iter(params.values()), None)
        dtype = some.dtype if some is not None else torch.get_default_dtype()
        device = some.device if some is not None else torch.device("cpu")
        options = self._options(call_options, dtype)
        if init is not None:
            options["init"] = self._initial_state(init, dims, batch, dtype, device)
            if backend is None and self._backend is None:
                backend = "torch"  # the Triton kernels start from their own point: warm starts run on PyTorch
            elif (backend or self._backend) == "triton":
                raise CallError("init= (a warm start) is not supported by the triton backend; use backend='torch'")
        names = tuple(p.name for p in self.plan.params)
        started = time.perf_counter()
        if options["backward"] == "unroll":
            # Differentiate through the solver's iterations (for comparison): autograd records the
            # PyTorch solver as it runs, whichever backend was asked for.
            from optlang.runtime.executor import TorchExecutor

            torch_executor = TorchExecutor()
            bound = BoundProblem(torch_executor.module_for(self.plan), self.plan, params, dims, batch, dtype, device)
            result = torch_executor.solve(bound, options)
            flat = result.x
        else:
            from optlang.runtime.executor import TorchExecutor

            executor = self._executor(backend, device, params, dims, batch, dtype)
            state = CallState(executor, self.plan, names, executor.module_for(self.plan),
                              TorchExecutor().module_for(self.plan), dims, dtype, device, options,
                              check_domains=vmapped)
            flat = ImplicitSolve.apply(state, *(params[n] for n in names))
            result, bound = state.result, state.bound
        stats = Stats(result.converged, result.iterations, result.residual, result.status_codes(),
                      LOCAL_NOTE if self.plan.local else "")
        if verbose:
            _log_solve(self.plan, options, stats, time.perf_counter() - started)
        if warn and not stats.all_converged:
            bad = [tuple(i) for i in (~stats.converged).nonzero().tolist()]
            warnings.warn(
                f"optlang: problem '{self.plan.problem}' did not converge at batch elements {bad[:20]}"
                f"{' ...' if len(bad) > 20 else ''} ({stats.failures()}; max relative residual "
                f"{float(stats.residual.max()):.3g}, tol {options['tol']:.3g}); see .stats",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        blocks = bound.split(flat)
        values = {v.name: blocks[v.name] for v in self.plan.vars}
        duals = {b.label: blocks[b.name] for b in self.plan.duals if b.label is not None}
        if self.plan.function("duals") is not None:  # rewritten constraints: their duals as written
            # By the PyTorch backend's function on any backend: a few elementwise ops under autograd.
            from optlang.runtime.executor import TorchExecutor

            torch_module = TorchExecutor().module_for(self.plan)
            torch_bound = BoundProblem(torch_module, self.plan, params, dims, batch, dtype, device)
            written = torch_bound.call("duals", state=flat, params=params)
            written = written if isinstance(written, tuple) else (written,)
            for (name, _), value in zip(self.plan.function("duals").outputs, written):
                label = next(b.label for b in self.plan.duals if b.name == name)
                duals[label] = value.expand(blocks[name].shape) if value.shape != blocks[name].shape else value
        return Solution(values, duals, stats, self._objective(flat, params, dims, batch, dtype, device),
                        flat.detach())

    def _objective(self, flat, params, dims, batch, dtype, device):
        """The objective at the solution, as written (under autograd, like the vars): a function that
        computes it, or None where the problem has none. Autograd's mode is the call's, not the read's."""
        name = "value" if self.plan.function("value") is not None else "objective"
        if self.plan.function(name) is None:
            return None
        from optlang.runtime.executor import TorchExecutor

        grad_enabled = torch.is_grad_enabled()
        plan = self.plan
        inputs = (flat,) + tuple(params.values())
        versions = tuple(t._version for t in inputs)

        def value():
            if tuple(t._version for t in inputs) != versions:
                raise CallError(f"problem '{plan.problem}': the parameters or the solution were modified in place "
                                "after the solve, so its objective can no longer be computed; read sol.objective "
                                "before changing them")
            bound = BoundProblem(TorchExecutor().module_for(plan), plan, params, dims, batch, dtype, device)
            with torch.set_grad_enabled(grad_enabled):
                out = torch.as_tensor(bound.call(name, state=flat), dtype=dtype, device=device)
            out = out.expand(flat.shape[:-1])
            return -out if plan.sense == "maximize" else out

        return value

    def _positional(self, args: tuple, kwargs: dict) -> dict:
        names = [p.name for p in self.plan.params]
        if len(args) > len(names):
            raise CallError(f"problem '{self.plan.problem}' takes {len(names)} parameter(s) "
                            f"({', '.join(names) or 'none'}), {len(args)} given positionally")
        twice = [n for n in names[: len(args)] if n in kwargs]
        if twice:
            raise CallError(f"parameter '{twice[0]}' given both positionally and by name")
        return dict(zip(names, args), **kwargs)

    def _initial_state(self, init, dims, batch, dtype, device):
        """The flat state (*batch, N) a warm start begins at: a WarmStart's, or vars by name (else 0)."""
        bound = BoundProblem(None, self.plan, {}, dims, batch, dtype, device)
        shape = batch + (bound.n,)
        if isinstance(init, Solution):
            init = init.warm_start()
        if isinstance(init, WarmStart):
            state = torch.as_tensor(init.state).detach().to(dtype=dtype, device=device)
            if state.shape[-1] != bound.n:
                raise CallError(f"init: a warm start of {state.shape[-1]} entries, this call's state has {bound.n}")
            try:
                return state.expand(shape).clone()
            except RuntimeError:
                raise CallError(f"init: a warm start of batch {tuple(state.shape[:-1])} does not broadcast to "
                                f"this call's batch {batch}") from None
        if not isinstance(init, dict):
            raise CallError("init: expected sol.warm_start() or {var name: tensor}, "
                            f"found {type(init).__name__}")
        state = torch.zeros(shape, dtype=dtype, device=device)
        known = {v.name for v in self.plan.vars}
        for name, value in init.items():
            if name not in known:
                raise CallError(f"init: '{name}' is not a var of problem '{self.plan.problem}'; its vars are "
                                f"{', '.join(sorted(known))}")
            offset, size, block = bound.state[name]
            t = torch.as_tensor(value).detach().to(dtype=dtype, device=device)
            try:
                state[..., offset: offset + size] = t.expand(batch + block).reshape(batch + (size,))
            except RuntimeError:
                raise CallError(f"init: var '{name}' has shape {block} (with batch {batch}), found "
                                f"{tuple(t.shape)}") from None
        return state

    # -- helpers -----------------------------------------------------------------------
    def _check_options(self, options: dict) -> dict:
        out = {}
        for key, value in options.items():
            if key not in CALL_OPTIONS:
                raise CallError(f"unknown option '{key}'; the options are {', '.join(CALL_OPTIONS)} and backend")
            try:
                out[key] = option_value(key, value)
            except OptError as exc:
                raise CallError(exc.message + (f" ({exc.detail})" if exc.detail else "")) from None
            label = kind_label(self.plan, self.plan.kind)
            allowed = {"solver": SOLVERS[label],
                       "backward": allowed_backwards(label, has_free_set(self.plan.function))}.get(key)
            if allowed and value != "auto" and value not in allowed:
                choices = ", ".join(f'"{c}"' for c in ("auto",) + allowed)
                raise CallError(f'{key} "{value}" is not available for {CLASS_WORDS[label]}; use {choices}')
        return out

    def _options(self, call_options: dict, dtype) -> dict:
        options = dict(self._defaults)
        options.update(self._check_options(call_options))
        options.setdefault("tol", default_tol(dtype))
        options.setdefault("max_iter", 500)
        options.setdefault("time_limit", DEFAULT_TIME_LIMIT)
        options.setdefault("solver", "auto")
        options.setdefault("backward", "auto")
        return options

    def _executor(self, backend: str | None, device, params, dims, batch, dtype):
        """The executor of this call: the one asked for, else Triton on CUDA and PyTorch on the CPU.

        When no backend was asked for and Triton cannot run this call (a class without a kernel,
        tiles too large for the chip), the PyTorch backend runs it on the same device, with a
        warning once per layer: that is the documented path for what does not fit on chip.
        """
        from optlang.runtime.executor import TorchExecutor

        asked = _check_backend(backend) or self._backend
        backend = asked or ("triton" if device.type == "cuda" else "torch")
        if backend == "torch":
            return TorchExecutor()
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise CallError("backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 to run Triton on the CPU)")
        from optlang.backends.triton.executor import TritonExecutor, refusal

        if asked is None:
            why = refusal(BoundProblem(None, self.plan, params, dims, batch, dtype, device))
            if why is not None:
                if why not in self._fallbacks:
                    self._fallbacks.add(why)
                    warnings.warn(f"optlang: problem '{self.plan.problem}' {why}; running it with the PyTorch "
                                  f"backend on {device.type} (pass backend=\"torch\" to silence this)",
                                  RuntimeWarning, stacklevel=user_stacklevel())
                return TorchExecutor()
        return TritonExecutor()


def _rebuild_layer(text, name, backend, options):
    return Layer(text, name, backend=backend, **options)


def _log_solve(plan, options: dict, stats: Stats, seconds: float) -> None:
    n = stats.converged.numel()
    solver = default_solver(plan, options["solver"])
    worst = float(stats.residual.max()) if n else 0.0
    most = int(stats.iterations.max()) if n else 0
    print(f"optlang: {plan.problem}: {solver}, {n} element(s), {int(stats.converged.sum())} converged, "
          f"iterations <= {most}, max relative residual {worst:.3g} (tol {options['tol']:.3g}), "
          f"{1e3 * seconds:.1f} ms", file=sys.stderr)


def _check_backend(backend):
    if backend is not None and backend not in BACKENDS:
        raise CallError(f"unknown backend {backend!r}; use 'torch' or 'triton'")
    return backend
