"""The shared problem table: every example with well-conditioned random data and a reference.

Each `Problem` knows its `.opt` file, how to draw parameters for one batch
element from a NumPy generator (well conditioned by construction, see each
`_data_*`), a reference solver that shares no code with optlang, and where
one exists a closed-form vector-Jacobian product. `case(problem, batch)` is
the hypothesis strategy: it draws the dims and a seed and gives a `Case`
holding float64 NumPy parameters with the full batch dims in front.

The constrained examples are planted: the solution x* and the multipliers of
its active bounds (at least MARGIN) are drawn first and b is chosen to make
them optimal, so strict complementarity holds with room to spare and finite
differences never cross an active-set change.
"""
from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import torch
from hypothesis import strategies as st

import optlang

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
BATCHES = [(), (3,), (2, 2)]
MARGIN = 0.5  # the least distance of a free coordinate from its bounds, and the least active multiplier
EPS64 = float(np.finfo(np.float64).eps)

CUDA = torch.cuda.is_available()
# On CUDA the whole matrix runs on Triton too. Triton's interpreter (CPU) takes about a second a
# solve, too slow for gradcheck and hypothesis; there a fixed slice runs instead (test_derivatives).
BACKENDS = [
    pytest.param("torch", id="torch"),
    pytest.param("triton", id="triton", marks=[
        pytest.mark.triton,
        pytest.mark.skipif(not CUDA, reason="Triton on CPU is interpreted: see the *_interpreted tests")]),
]


def device_for(backend: str) -> str:
    """Where a backend's inputs live in these tests: Triton's on the GPU, the PyTorch backend's on the CPU."""
    return "cuda" if backend == "triton" and CUDA else "cpu"


# -- random well-conditioned pieces ----------------------------------------------------
def conditioned(rng, rows: int, cols: int, cond_max: float = 10.0) -> np.ndarray:
    """A rows x cols matrix U diag(s) V' with singular values in [1, cond_max] (cond <= cond_max)."""
    k = min(rows, cols)
    U, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    V, _ = np.linalg.qr(rng.standard_normal((cols, k)))
    s = np.exp(rng.uniform(0.0, np.log(cond_max), size=k))
    s[0] = 1.0
    return (U * s) @ V.T


def _orthogonal_to_range(rng, A: np.ndarray) -> np.ndarray:
    """A random vector r with A' r = 0 (zero when A is square)."""
    r = rng.standard_normal(A.shape[0])
    Q, _ = np.linalg.qr(A)
    return r - Q @ (Q.T @ r)


def _planted_rhs(rng, A: np.ndarray, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """b with A'(A x - b) = grad: the gradient of 0.5 |A x - b|^2 at x is `grad`."""
    return A @ x - A @ np.linalg.solve(A.T @ A, grad) + _orthogonal_to_range(rng, A)


# -- per-problem data (one batch element) ------------------------------------------------
def _data_ridge(rng, size):
    n, d = size["n"], size["d"]
    lam = np.exp(rng.uniform(np.log(0.1), np.log(10)))
    return {"X": conditioned(rng, n, d), "y": rng.standard_normal(n), "lam": lam}


def _data_logistic(rng, size):
    n, d = size["n"], size["d"]
    X = rng.standard_normal((n, d))
    # Soft labels strictly inside [0, 1], so that finite differences stay in the domain.
    y = np.clip(scipy.special.expit(X @ rng.standard_normal(d)) + 0.3 * rng.standard_normal(n), 0.02, 0.98)
    return {"X": X, "y": y, "lam": np.exp(rng.uniform(np.log(0.1), np.log(10)))}


def _data_nnls(rng, size):
    m, n = size["m"], size["n"]
    A = conditioned(rng, m, n)
    active = rng.random(n) < 0.4
    x = np.where(active, 0.0, rng.uniform(MARGIN, 2.0, n))
    grad = np.where(active, rng.uniform(MARGIN, 2.0, n), 0.0)
    return {"A": A, "b": _planted_rhs(rng, A, x, grad)}


def _data_box_ls(rng, size):
    m, n = size["m"], size["n"]
    A = conditioned(rng, m, n)
    lo = rng.uniform(-2.0, 0.5, n)
    hi = lo + rng.uniform(2 * MARGIN + 0.5, 3.0, n)
    where = rng.integers(0, 3, n)  # 0: at lo, 1: free, 2: at hi
    x = np.select([where == 0, where == 2], [lo, hi], rng.uniform(lo + MARGIN, hi - MARGIN))
    mu = rng.uniform(MARGIN, 2.0, n)
    grad = np.select([where == 0, where == 2], [mu, -mu], 0.0)
    return {"A": A, "b": _planted_rhs(rng, A, x, grad), "lo": lo, "hi": hi}


def _data_kepler(rng, size):
    return {"M": rng.uniform(-4.0, 4.0), "e": rng.uniform(0.001, 0.9)}


# -- reference solvers (one batch element, float64, no optlang) --------------------------
def _ref_ridge(p):
    X, y, lam = p["X"], p["y"], float(p["lam"])
    return np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ y)


def _ref_logistic(p):
    """Damped Newton on the strongly convex objective, to the last digits."""
    X, y, lam = p["X"], p["y"], float(p["lam"])
    n, d = X.shape

    def f(w):
        m = X @ w
        return np.mean(np.logaddexp(0.0, m) - y * m) + 0.5 * lam * w @ w

    w = np.zeros(d)
    for _ in range(100):
        s = scipy.special.expit(X @ w)
        g = X.T @ (s - y) / n + lam * w
        if np.abs(g).max() <= 4 * EPS64 * max(1.0, np.abs(X).max()):
            break
        H = (X.T * (s * (1 - s))) @ X / n + lam * np.eye(d)
        step = np.linalg.solve(H, -g)
        t, f0 = 1.0, f(w)
        while f(w + t * step) > f0 + 1e-4 * t * (g @ step) + 8 * EPS64 * abs(f0) and t > 1e-10:
            t *= 0.5
        w = w + t * step
    return w


def _polish_bounded_ls(A, b, x, lo, hi):
    """Re-solve least squares on the free coordinates of an (approximate) box solution, exactly."""
    at_lo = np.isfinite(lo) & (np.abs(x - lo) <= 1e-7 * (1 + np.abs(lo)))
    at_hi = np.isfinite(hi) & (np.abs(x - hi) <= 1e-7 * (1 + np.abs(hi)))
    fixed = at_lo | at_hi
    x = np.where(at_lo, lo, np.where(at_hi, hi, x))
    free = ~fixed
    if free.any():
        r = b - A[:, fixed] @ x[fixed]
        x[free] = np.linalg.lstsq(A[:, free], r, rcond=None)[0]
    return x


def _ref_nnls(p):
    A, b = p["A"], p["b"]
    x, _ = scipy.optimize.nnls(A, b)
    n = A.shape[1]
    return _polish_bounded_ls(A, b, x, np.zeros(n), np.full(n, np.inf))


def _ref_box_ls(p):
    A, b, lo, hi = p["A"], p["b"], p["lo"], p["hi"]
    x = scipy.optimize.lsq_linear(A, b, bounds=(lo, hi), method="bvls", tol=1e-14).x
    return _polish_bounded_ls(A, b, x, lo, hi)


def _ref_kepler(p):
    M, e = float(p["M"]), float(p["e"])
    F = lambda E: E - e * np.sin(E) - M  # noqa: E731
    E = scipy.optimize.brentq(F, M - 1.0, M + 1.0, xtol=1e-15, rtol=4 * EPS64)
    for _ in range(2):  # Newton polish: brentq stops at its bracket's width
        E = E - F(E) / (1 - e * np.cos(E))
    return np.asarray(E)


# -- closed-form vector-Jacobian products: d<g, x*>/dparam -------------------------------
def _vjp_ridge(p, w, g):
    """K w = X'y with K = X'X + lam I; v = K^-1 g gives dX = r v' - X v w', dy = X v, dlam = -v'w."""
    X, y, lam = p["X"], p["y"], float(p["lam"])
    v = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), g)
    r = y - X @ w
    return {"X": np.outer(r, v) - np.outer(X @ v, w), "y": X @ v, "lam": np.asarray(-v @ w)}


def _vjp_kepler(p, E, g):
    """dE/dM = 1 / (1 - e cos E), dE/de = sin E / (1 - e cos E)."""
    e, E, g = float(p["e"]), float(E), float(g)
    den = 1.0 - e * np.cos(E)
    return {"M": np.asarray(g / den), "e": np.asarray(g * np.sin(E) / den)}


# -- the table ----------------------------------------------------------------------------
def _dims(**ranges):
    return st.fixed_dictionaries({k: st.integers(lo, hi) for k, (lo, hi) in ranges.items()})


_mn = st.integers(1, 4).flatmap(lambda n: st.integers(n, n + 3).map(lambda m: {"m": m, "n": n}))


@dataclass(frozen=True)
class Problem:
    name: str
    params: tuple  # declared order
    shapes: Callable  # size -> {param: declared shape}
    var_shape: Callable  # size -> shape of the var
    sizes: object  # hypothesis strategy of {dim: size}
    data: Callable  # (rng, size) -> {param: float64 array} for one batch element
    reference: Callable  # {param: array} -> solution (float64 array)
    vjp: Callable | None = None  # ({param: array}, x, g) -> {param: array}, closed form
    backwards: tuple = ("direct", "cg")
    fixed_size: dict = field(default_factory=dict)  # the size used for gradcheck

    @property
    def path(self) -> pathlib.Path:
        return EXAMPLES / f"{self.name}.opt"

    def __repr__(self) -> str:
        return self.name


PROBLEMS = [
    Problem("ridge", ("X", "y", "lam"), lambda s: {"X": (s["n"], s["d"]), "y": (s["n"],), "lam": ()},
            lambda s: (s["d"],), _dims(n=(1, 6), d=(1, 4)), _data_ridge, _ref_ridge, _vjp_ridge,
            fixed_size={"n": 4, "d": 3}),
    Problem("logistic", ("X", "y", "lam"), lambda s: {"X": (s["n"], s["d"]), "y": (s["n"],), "lam": ()},
            lambda s: (s["d"],), _dims(n=(2, 8), d=(1, 4)), _data_logistic, _ref_logistic,
            fixed_size={"n": 5, "d": 3}),
    Problem("nnls", ("A", "b"), lambda s: {"A": (s["m"], s["n"]), "b": (s["m"],)},
            lambda s: (s["n"],), _mn, _data_nnls, _ref_nnls, fixed_size={"m": 5, "n": 3}),
    Problem("box_ls", ("A", "b", "lo", "hi"),
            lambda s: {"A": (s["m"], s["n"]), "b": (s["m"],), "lo": (s["n"],), "hi": (s["n"],)},
            lambda s: (s["n"],), _mn, _data_box_ls, _ref_box_ls, fixed_size={"m": 4, "n": 3}),
    Problem("kepler", ("M", "e"), lambda s: {"M": (), "e": ()}, lambda s: (), st.just({}), _data_kepler,
            _ref_kepler, _vjp_kepler, backwards=("direct",)),
]
BY_NAME = {p.name: p for p in PROBLEMS}


@functools.lru_cache(maxsize=None)
def layer(name: str):
    """The compiled example (one per test session; layers keep no state between calls)."""
    return optlang.compile(BY_NAME[name].path)


# -- cases ------------------------------------------------------------------------------------
@dataclass
class Case:
    """Parameters for one call: float64 NumPy arrays with the batch dims in front."""

    problem: Problem
    size: dict
    batch: tuple
    params: dict

    def element(self, idx: tuple) -> dict:
        return {k: v[idx] for k, v in self.params.items()}

    def tensors(self, dtype=torch.float64, requires_grad=False, device="cpu") -> dict:
        """Fresh contiguous tensors (never broadcast views), optionally leaves that need grad."""
        return {k: torch.tensor(v, dtype=dtype, device=device).contiguous().requires_grad_(requires_grad)
                for k, v in self.params.items()}

    def reference(self) -> np.ndarray:
        """The reference solution, element by element, stacked to (*batch, *var_shape)."""
        shape = self.batch + self.problem.var_shape(self.size)
        out = np.empty(shape)
        for idx in np.ndindex(*self.batch):
            out[idx] = self.problem.reference(self.element(idx))
        return out


def make_case(problem: Problem, seed: int, size: dict | None = None, batch: tuple = ()) -> Case:
    """Draw a case from a NumPy generator seeded with `seed` (each batch element drawn on its own)."""
    size = dict(problem.fixed_size if size is None else size)
    rng = np.random.default_rng(seed)
    elements = [problem.data(rng, size) for _ in np.ndindex(*batch)]
    params = {}
    for name in problem.params:
        params[name] = np.stack([np.asarray(e[name], dtype=np.float64) for e in elements]).reshape(
            batch + problem.shapes(size)[name])
    return Case(problem, size, tuple(batch), params)


def case(problem: Problem, batch: tuple = (), sizes=None):
    """Hypothesis strategy of `Case`s: the dims from `problem.sizes` (or `sizes`), the data from a drawn seed."""
    return st.tuples(sizes if sizes is not None else problem.sizes, st.integers(0, 2**32 - 1)).map(
        lambda t: make_case(problem, t[1], t[0], batch))


def fd_directional(problem: Problem, params: dict, name: str, direction: np.ndarray, g: np.ndarray) -> float:
    """d<g, x*(theta)>/dt along theta_name + t * direction, by central differences of the reference.

    The step is sqrt(machine eps) times the parameter's scale (direction has max-norm 1).
    """
    scale = max(1.0, float(np.abs(params[name]).max()))
    h = np.sqrt(EPS64) * scale
    plus = dict(params, **{name: params[name] + h * direction})
    minus = dict(params, **{name: params[name] - h * direction})
    return float(np.sum(g * (problem.reference(plus) - problem.reference(minus))) / (2 * h))


# -- optlang's side and the comparisons, shared by the test modules ---------------------------
def var_name(problem: Problem) -> str:
    return layer(problem.name).plan.var.name


def grads(problem: Problem, case_: Case, g, dtype=torch.float64, device="cpu", **options):
    """(x, {param: d<g, x>/dparam}, stats) from optlang, every parameter a fresh leaf; results on the CPU."""
    ts = case_.tensors(dtype=dtype, requires_grad=True, device=device)
    sol = layer(problem.name).solve(**ts, **options)
    x = sol[var_name(problem)]
    assert x.device.type == torch.device(device).type
    out = torch.autograd.grad((x * torch.as_tensor(g, dtype=dtype, device=device)).sum(),
                              [ts[n] for n in problem.params])
    return x.detach().cpu(), {n: t.cpu() for n, t in zip(problem.params, out)}, sol.stats


def rel_err(a, b) -> float:
    """max |a - b| / max(1, max |b|)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max())) if b.size else 0.0


FD_RTOL = 1e-6  # central differences at sqrt(eps) are good to ~1e-8 of the scale; room for 100x


def check_gradients(problem: Problem, case_: Case, x, got: dict, g, rng, rtol: float) -> None:
    """Assert optlang's gradients match the closed form, else central differences of the reference.

    With a closed form the whole gradient is compared (to `rtol`); otherwise, per
    parameter, its projection on a random direction, a finite-difference JVP
    (to the larger of `rtol` and FD_RTOL).
    """
    x = x.numpy()
    for idx in np.ndindex(*case_.batch):
        p = case_.element(idx)
        if problem.vjp is not None:
            want = problem.vjp(p, x[idx], g[idx])
            for name in problem.params:
                assert rel_err(got[name].numpy()[idx], want[name]) <= rtol, (idx, name)
            continue
        for name in problem.params:
            direction = rng.uniform(-1.0, 1.0, np.shape(p[name]))
            direction /= max(np.abs(direction).max(), 1e-300)
            fd = fd_directional(problem, p, name, direction, g[idx])
            ad = float(np.sum(got[name].numpy()[idx] * direction))
            scale = np.abs(g[idx]).sum() * max(1.0, np.abs(x[idx]).max())
            assert abs(ad - fd) <= max(rtol, FD_RTOL) * max(abs(fd), scale), (idx, name, ad, fd)
