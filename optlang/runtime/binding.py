"""Call-time argument binding: names, dtypes, shapes, dims, batch dims and domains.

Every error names the parameter and says what was expected.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from optlang.errors import CallError
from optlang.ir.shapes import fmt
from optlang.solvers.linalg import all_finite


def to_tensors(plan, kwargs: dict) -> dict:
    """Check names and convert every parameter to a floating tensor of one dtype and device."""
    names = [p.name for p in plan.params]
    missing = [n for n in names if n not in kwargs]
    extra = sorted(k for k in kwargs if k not in names)
    if extra:
        raise CallError(
            f"unexpected parameter {', '.join(repr(e) for e in extra)} for problem '{plan.problem}'; "
            f"its parameters are {', '.join(names) or '(none)'}"
        )
    if missing:
        raise CallError(
            f"missing parameter {', '.join(repr(m) for m in missing)} for problem '{plan.problem}'; "
            f"pass every parameter by name: {', '.join(names)}"
        )
    raw = {}
    for name in names:
        value = kwargs[name]
        if isinstance(value, torch.Tensor):
            raw[name] = value
        elif isinstance(value, (int, float, np.ndarray, np.number, list, tuple)) and not isinstance(value, bool):
            try:
                array = np.asarray(value)
                raw[name] = torch.as_tensor(array if array.dtype.kind == "f" else array.astype(np.float64))
            except (TypeError, ValueError) as exc:
                raise CallError(f"parameter '{name}': cannot convert to a tensor ({exc})") from None
        else:
            raise CallError(f"parameter '{name}': expected a tensor or a number, found {type(value).__name__}")
    dtype, device = _common_dtype_device(raw, kwargs)
    out = {}
    for name, t in raw.items():
        if t.is_complex():
            raise CallError(f"parameter '{name}': complex tensors are not supported")
        out[name] = t.to(device=device, dtype=dtype)
    return out


def _common_dtype_device(raw: dict, kwargs: dict):
    # Tensors and NumPy floating arrays/scalars carry a dtype; Python numbers do not.
    floats = [t for n, t in raw.items() if isinstance(kwargs[n], torch.Tensor) and t.is_floating_point()]
    floats += [torch.empty(0, dtype=torch.from_numpy(np.asarray(kwargs[n])).dtype) for n in raw
               if isinstance(kwargs[n], (np.ndarray, np.floating)) and np.asarray(kwargs[n]).dtype.kind == "f"]
    low = [n for n, t in raw.items() if isinstance(kwargs[n], torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16)]
    if low:
        t = raw[low[0]]
        raise CallError(f"parameter '{low[0]}': {str(t.dtype).replace('torch.', '')} is not supported (the solvers "
                        "need float32 or float64 to reach their tolerances); pass it as .float() or .double() "
                        "and cast the solution back if you need to")
    dtype = torch.get_default_dtype()
    if floats:
        dtype = max((t.dtype for t in floats), key=lambda d: torch.finfo(d).bits)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    devices = {t.device for n, t in raw.items() if isinstance(kwargs[n], torch.Tensor)}
    if len(devices) > 1:
        listing = ", ".join(f"{n} on {t.device}" for n, t in raw.items() if isinstance(kwargs[n], torch.Tensor))
        raise CallError(f"parameters are on different devices ({listing}); move them to one device")
    device = devices.pop() if devices else torch.device("cpu")
    if device.type not in ("cpu", "cuda"):
        name = next(n for n, t in raw.items() if isinstance(kwargs[n], torch.Tensor))
        raise CallError(f"parameter '{name}': tensors on the '{device.type}' device are not supported; "
                        "optlang solves on 'cpu' and 'cuda'")
    return dtype, device


def bind_dims(plan, params: dict) -> tuple[dict, tuple]:
    """Bind the named dims from the parameters' trailing shapes; return (dims, batch shape)."""
    dims = {d.name: d.value for d in plan.dims if d.value is not None}
    origin = {d.name: "its declaration" for d in plan.dims if d.value is not None}
    batch_shapes = []
    for p in plan.params:
        t = params[p.name]
        rank = len(p.shape)
        if t.dim() < rank:
            raise CallError(
                f"parameter '{p.name}': expected {fmt(p.shape)} (with optional leading batch dims), "
                f"found a tensor of shape {tuple(t.shape)}"
            )
        trailing = tuple(t.shape[t.dim() - rank:])
        for want, got in zip(p.shape, trailing):
            if isinstance(want, int):
                if got != want:
                    raise CallError(f"parameter '{p.name}': expected {fmt(p.shape)}, found trailing shape {trailing}")
            elif want in dims:
                if got != dims[want]:
                    raise CallError(
                        f"parameter '{p.name}': dim {want} is {dims[want]} (from {origin[want]}) "
                        f"but {got} here; expected {fmt(p.shape)}, found trailing shape {trailing}"
                    )
            else:
                dims[want] = got
                origin[want] = f"parameter '{p.name}'"
        batch_shapes.append((p.name, tuple(t.shape[: t.dim() - rank])))
    for d in plan.dims:
        if d.name not in dims:
            dims[d.name] = None
    try:
        batch = broadcast_shapes(*(s for _, s in batch_shapes)) if batch_shapes else ()
    except RuntimeError:
        listing = ", ".join(f"'{n}' {s}" for n, s in batch_shapes)
        raise CallError(f"the parameters' batch dims do not broadcast: {listing}") from None
    return dims, tuple(batch)


def broadcast_shapes(*shapes) -> tuple:
    """torch.broadcast_shapes without its first call's import of torch.fx and SymPy (about 0.4 s, most
    of a cached compile's first call); RuntimeError where the shapes do not broadcast, as torch's."""
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes)))
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None


def check_domains(plan, params: dict) -> None:
    """Check each parameter's declared domain (`> 0`, `in [lo, hi)`, `psd`, `symmetric`)."""
    # Finiteness of all of them in one read; only where that fails, param by param (for the message).
    floats = [params[p.name].detach() for p in plan.params if params[p.name].is_floating_point()]
    finite = all_finite(*floats)
    for p in plan.params:
        t = params[p.name].detach()
        d = p.domain
        if not finite and t.is_floating_point() and not all_finite(t):
            raise CallError(f"parameter '{p.name}': contains NaN or infinite values")
        if d.lo is not None:
            bad = t < d.lo if d.lo_closed else t <= d.lo
            _report(p, t, bad, d)
        if d.hi is not None:
            bad = t > d.hi if d.hi_closed else t >= d.hi
            _report(p, t, bad, d)
        if d.psd or d.symmetric:
            sym_err = (t - t.transpose(-1, -2)).abs().amax() if t.numel() else 0.0
            tol = 1e-6 if t.dtype == torch.float32 else 1e-10
            scale = max(1.0, float(t.abs().amax())) if t.numel() else 1.0
            if float(sym_err) > tol * scale:
                raise CallError(
                    f"parameter '{p.name}': must be {'psd' if d.psd else 'symmetric'} but is not symmetric "
                    f"(max |{p.name} - {p.name}'| = {float(sym_err):.3g})"
                )
            if d.psd and t.numel():
                _check_psd(p.name, t, tol * scale * t.shape[-1])


def _check_psd(name: str, t, tol: float) -> None:
    """Every matrix's least eigenvalue is at least -tol: where t + tol I has a Cholesky factor, it is
    (to rounding: n eps |t|, far below tol). That costs a tenth of the eigensolve on the CPU (a batch of
    128 32 x 32 matrices: 0.4 ms against 4.3, paid on every call); the eigenvalues are computed only
    where some matrix does not factor, for the decision and the message."""
    symmetric = 0.5 * (t + t.transpose(-1, -2))
    _, info = torch.linalg.cholesky_ex(symmetric + tol * torch.eye(t.shape[-1], dtype=t.dtype, device=t.device))
    if not bool(info.any()):
        return
    least = torch.linalg.eigvalsh(symmetric)[..., 0]
    if bool((least < -tol).any()):
        idx = tuple(int(i) for i in (least < -tol).nonzero()[0])
        where = f" at batch index {idx}" if idx else ""
        raise CallError(f"parameter '{name}': must be psd but has a negative eigenvalue "
                        f"({float(least[idx]):.6g}{where}; tolerance {tol:.3g})")


def _report(p, t, bad, d) -> None:
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        value = float(t[idx]) if idx else float(t)
        where = f" at index {idx}" if idx else ""
        raise CallError(f"parameter '{p.name}': must be {d.describe()}, found {_num(value)}{where}")


def _num(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and float(v).is_integer() else f"{v:.6g}"
