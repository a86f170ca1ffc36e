"""The compiled problem as an `nn.Module`: bind arguments, pick a backend, solve, report."""
from __future__ import annotations

import collections
import os
import warnings
from dataclasses import dataclass

import torch

from optlang.errors import CallError, OptError, user_stacklevel
from optlang.ir.check import option_value
from optlang.passes.pipeline import run
from optlang.passes.select import CLASS_WORDS, SOLVERS, allowed_backwards, kind_label
from optlang.runtime import binding
from optlang.runtime.bound import BoundProblem
from optlang.runtime.function import CallState, ImplicitSolve
from optlang.solvers.result import STATUS, default_tol

BACKENDS = ("torch", "triton")
LOCAL_NOTE = ("local solution: the objective is not provably convex, so a converged element is a stationary "
              "point (gradient 0), not necessarily a global minimum")
CALL_OPTIONS = ("tol", "max_iter", "solver", "backward")


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
    """The solution of one call: each var by name, `duals` by label, and `stats`."""

    def __init__(self, values: dict, duals: dict, stats: Stats):
        self._values = values
        self.duals = duals
        self.stats = stats
        for name, value in values.items():
            setattr(self, name, value)

    def __getitem__(self, name: str):
        return self._values[name]

    def __repr__(self) -> str:
        names = ", ".join(self._values)
        return f"Solution({names}; converged {int(self.stats.converged.sum())}/{self.stats.converged.numel()})"


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
        self.stages = run(text, name)
        self.plan = self.stages.plan
        self.source_name = name
        self._defaults = dict(self.plan.options)
        self._defaults.update(self._check_options(options))
        self._backend = _check_backend(backend)
        self._fallbacks: set = set()  # the reasons already warned about for running on PyTorch, not Triton
        self._solution_type = collections.namedtuple(f"{self.plan.problem}_solution", [v.name for v in self.plan.vars])

    # -- public API ------------------------------------------------------------------
    def forward(self, **kwargs):
        """The solution: the var's tensor, or a named tuple of the vars when there are several."""
        sol = self.solve(**kwargs)
        names = tuple(v.name for v in self.plan.vars)
        if len(names) == 1:
            return sol[names[0]]
        return self._solution_type(*(sol[n] for n in names))

    def solve(self, warn: bool = True, backend: str | None = None, **kwargs) -> Solution:
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
        names = tuple(p.name for p in self.plan.params)
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
        return Solution(values, duals, stats)

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
                       "backward": allowed_backwards(label, self.plan.function("free_mask") is not None)}.get(key)
            if allowed and value != "auto" and value not in allowed:
                choices = ", ".join(f'"{c}"' for c in ("auto",) + allowed)
                raise CallError(f'{key} "{value}" is not available for {CLASS_WORDS[label]}; use {choices}')
        return out

    def _options(self, call_options: dict, dtype) -> dict:
        options = dict(self._defaults)
        options.update(self._check_options(call_options))
        options.setdefault("tol", default_tol(dtype))
        options.setdefault("max_iter", 500)
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


def _check_backend(backend):
    if backend is not None and backend not in BACKENDS:
        raise CallError(f"unknown backend {backend!r}; use 'torch' or 'triton'")
    return backend
