"""Every problem class on the PyTorch backend, float64: prox, KKT, fixed points, several vars, maximize.

For the examples qp, sparsemax, lasso, elastic_net, deq, portfolio and svm,
with planted data drawn by hypothesis (references.py: strictly complementary
with margins, so no finite difference or gradcheck crosses a kink) at several
sizes and batch shapes ((), (3,), (2, 2)):
  - solutions (and duals) against independent references: closed forms,
    cvxpy, coordinate descent, plain fixed-point iteration, the planted truth;
  - gradients against closed forms (the sparsemax Jacobian, VJPs written from
    each KKT system in NumPy) or central differences of an exact reference,
    for every backward method the class allows;
  - torch.autograd.gradcheck w.r.t. every parameter and backward method
    (psd matrices enter as (M + M')/2 of a free M: a raw perturbation of one
    entry would break the symmetry the domain check asks for).
Then small problems written here: infeasible, unbounded, a mixed batch,
inactive / weakly active constraints, a singular KKT system, two vars,
maximize, nonlinear constraints (sumsq ball, exp caps) and the ball's prox.

Two strict xfails mark package bugs: the IPM stalls on an exp cap far below
its start, and a labelled `norm2(x) <= r` is rejected instead of going to KKT.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cvxpy as cp
import optlang
import references as R
from optlang.passes.select import allowed_backwards, has_free_set, kind_label
from problems import BATCHES, EXAMPLES, MARGIN, rel_err

TIGHT = 1e-12
SOLUTION_RTOL = 1e-9  # against exact references (closed forms, active-set solves, the planted truth)
CVXPY_RTOL = 1e-6  # against cvxpy (CLARABEL stops near 1e-10; room for its worst cases)
GRAD_RTOL = 1e-8  # against closed-form VJPs
FD_RTOL = 1e-6  # against central differences at sqrt(eps)


def _t(a, requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64).requires_grad_(requires_grad)


@functools.lru_cache(maxsize=None)
def example(name: str):
    return optlang.compile(EXAMPLES / f"{name}.opt")


@functools.lru_cache(maxsize=None)
def inline(src: str):
    return optlang.compile_string(src)


# -- the examples' table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    name: str
    params: tuple  # declared order
    outputs: tuple  # the var, then the labelled duals
    kind: str  # the class optlang must give it
    sample: Callable  # (rng, size, given) -> (params, truth), one batch element (references.draw)
    sizes: object  # hypothesis strategy of {dim: size}
    fixed_size: dict  # for gradcheck
    backwards: tuple  # every backward method the class allows, but unroll (see UNROLL)
    references: tuple = ()  # ((name, p -> {output: array}, rtol), ...): independent solvers
    vjp: Callable | None = None  # (p, out, cot) -> {param: array}, closed form
    exact: Callable | None = None  # (p, out) -> p' -> {output: array}: smooth near p, for differences
    psd: tuple = ()  # params declared psd
    shared: tuple = ()  # params a batch can share (drawn once, broadcast) without losing the planting

    def __repr__(self) -> str:
        return self.name


def _lasso_refs(p):
    return {"w": R.elastic_net_cd(p)}


def _qp_vjp(p, out, cot):
    return R.vjp_qp(p, out["z"], out["ineq"], out["eq"], cot["z"], cot["ineq"], cot["eq"])


def _qp_cvxpy(p):
    z, lam, nu = R.qp_cvxpy(p)
    return {"z": z, "ineq": lam, "eq": nu}


def _qp_exact(p, out):
    active = out["ineq"] > R.SUPPORT
    return lambda q: dict(zip(("z", "ineq", "eq"), R.qp_active_set(q, active)))


def _portfolio_cvxpy(p):
    w, budget, long = R.portfolio_cvxpy(p)
    return {"w": w, "budget": budget, "long": long}


def _portfolio_exact(p, out):
    active = out["long"] > R.SUPPORT

    def solve(q):
        w, long, nu = R.qp_active_set(R.portfolio_as_qp(q), active)
        return {"w": w, "long": long, "budget": nu[0]}
    return solve


def _portfolio_vjp(p, out, cot):
    return R.vjp_portfolio(p, out["w"], out["long"], out["budget"], cot["w"], cot["long"], cot["budget"])


def _svm_exact(p, out):
    support = out["beta"] > R.SUPPORT
    return lambda q: {"beta": R.svm_active_set(q, support)}


_nd = st.integers(1, 4).flatmap(lambda d: st.integers(d, d + 3).map(lambda n: {"n": n, "d": d}))
_qp_sizes = st.integers(2, 4).flatmap(lambda n: st.tuples(st.integers(1, 4), st.integers(0, n - 1)).map(
    lambda mp: {"n": n, "m": mp[0], "p": mp[1]}))
_svm_sizes = st.integers(1, 3).flatmap(lambda m: st.tuples(st.integers(m, m + 2), st.integers(2, 3)).map(
    lambda dk: {"m": m, "d": dk[0], "k": dk[1]}))
PROX = ("direct", "gmres", "neumann")
PROX_CG = ("direct", "cg", "gmres", "neumann")  # an elementwise prox or a simplex: CG on the free set too

TABLE = [
    Example("sparsemax", ("v",), ("x",), "prox", R.sample_sparsemax, st.fixed_dictionaries({"n": st.integers(2, 6)}),
            {"n": 4}, PROX_CG, (("closed form", lambda p: {"x": R.sparsemax(p["v"])}, SOLUTION_RTOL),),
            vjp=lambda p, out, cot: R.vjp_sparsemax(p, out["x"], cot["x"]),
            exact=lambda p, out: lambda q: {"x": R.sparsemax(q["v"])}),
    Example("lasso", ("X", "y", "lam"), ("w",), "prox", R.sample_lasso, _nd, {"n": 5, "d": 3}, PROX_CG,
            (("coordinate descent", _lasso_refs, SOLUTION_RTOL),
             ("cvxpy", lambda p: {"w": R.elastic_net_cvxpy(p)}, CVXPY_RTOL)),
            vjp=lambda p, out, cot: R.vjp_elastic_net(p, out["w"], cot["w"]),
            exact=lambda p, out: _lasso_refs, shared=("lam", "X")),
    Example("elastic_net", ("X", "y", "lam1", "lam2"), ("w",), "prox", R.sample_elastic_net, _nd, {"n": 5, "d": 3},
            PROX_CG,
            (("coordinate descent", _lasso_refs, SOLUTION_RTOL),
             ("cvxpy", lambda p: {"w": R.elastic_net_cvxpy(p)}, CVXPY_RTOL)),
            vjp=lambda p, out, cot: R.vjp_elastic_net(p, out["w"], cot["w"]),
            exact=lambda p, out: _lasso_refs, shared=("lam1", "lam2")),
    Example("qp", ("Q", "c", "G", "h", "A", "b"), ("z", "ineq", "eq"), "kkt", R.sample_qp, _qp_sizes,
            {"n": 3, "m": 3, "p": 1}, ("direct", "gmres"), (("cvxpy", _qp_cvxpy, CVXPY_RTOL),),
            vjp=_qp_vjp, exact=_qp_exact, psd=("Q",), shared=("Q",)),
    Example("portfolio", ("mu", "Sigma", "gamma"), ("w", "long", "budget"), "kkt", R.sample_portfolio,
            st.fixed_dictionaries({"n": st.integers(2, 5)}), {"n": 4}, ("direct", "gmres"),
            (("cvxpy", _portfolio_cvxpy, CVXPY_RTOL),), vjp=_portfolio_vjp, exact=_portfolio_exact, psd=("Sigma",),
            shared=("Sigma", "gamma")),
    Example("svm", ("X", "Y", "lam"), ("beta",), "prox", R.sample_svm, _svm_sizes, {"m": 2, "d": 3, "k": 3}, PROX_CG,
            (("cvxpy", lambda p: {"beta": R.svm_cvxpy(p)}, CVXPY_RTOL),), exact=_svm_exact, shared=("X", "lam")),
    Example("deq", ("W", "U", "u", "bias"), ("z",), "root", R.sample_deq,
            st.fixed_dictionaries({"d": st.integers(1, 4), "k": st.integers(1, 3)}), {"d": 3, "k": 2}, PROX,
            (("fixed-point iteration", lambda p: {"z": R.deq_iterate(p)}, SOLUTION_RTOL),),
            vjp=lambda p, out, cot: R.vjp_deq(p, out["z"], cot["z"]),
            exact=lambda p, out: lambda q: {"z": R.deq_iterate(q)}, shared=("W",)),
]
BY_NAME = {e.name: e for e in TABLE}
UNROLL = ("sparsemax", "lasso", "qp", "deq")  # unroll is slow and only as exact as the forward: a few cases


def _draw(ex: Example, data, batch: tuple):
    """(size, params, truth, a generator for cotangents and directions), drawn by hypothesis."""
    size = data.draw(ex.sizes, label="size")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    params, truth = R.draw(ex.sample, seed, size, batch)
    return size, params, truth, np.random.default_rng(seed + 1)


def _solve(ex: Example, tensors: dict, **options):
    """optlang's outputs (var, then duals) as a dict of tensors, and the stats."""
    sol = example(ex.name).solve(**tensors, **options)
    out = {ex.outputs[0]: sol[ex.outputs[0]]}
    out.update({k: sol.duals[k] for k in ex.outputs[1:]})
    return out, sol.stats


def _numpy(out: dict) -> dict:
    return {k: v.detach().numpy() for k, v in out.items()}


def test_the_table_covers_every_class():
    """The classes are what the table says, and it lists every backward method each allows."""
    for ex in TABLE:
        layer = example(ex.name)
        assert layer.plan.kind == ex.kind, ex
        assert tuple(p.name for p in layer.plan.params) == ex.params, ex
        label = kind_label(layer.plan, layer.plan.kind)
        allowed = allowed_backwards(label, has_free_set(layer.plan.function))
        assert set(allowed) == set(ex.backwards) | {"unroll"}, ex
    assert example("deq").plan.sense == "fixed_point"


# -- (1) solutions against independent references ---------------------------------------------------
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a solve that did not converge fails
@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("ex", TABLE, ids=repr)
@given(data=st.data())
def test_solution_matches_references(ex, batch, data):
    size, params, truth, _ = _draw(ex, data, batch)
    out, stats = _solve(ex, {k: _t(v) for k, v in params.items()}, tol=TIGHT)
    assert stats.converged.shape == batch and stats.all_converged
    assert np.all(np.asarray(stats.status_names()) == "converged")
    got = _numpy(out)
    for k, v in truth.items():
        assert got[k].shape == v.shape, k
    for idx in np.ndindex(*batch):
        p = R.element(params, idx)
        for k, v in truth.items():  # the planted solution and multipliers are exact
            assert rel_err(got[k][idx], v[idx]) <= SOLUTION_RTOL, (idx, k)
        for name, ref, rtol in ex.references:
            want = ref(p)
            for k, v in want.items():
                assert rel_err(got[k][idx], v) <= rtol, (idx, name, k)
                if k in truth:  # the reference found the planted point too: the data are what they claim
                    assert rel_err(v, truth[k][idx]) <= rtol, (idx, name, k)


# -- (2) gradients against closed forms, or differences of an exact reference ----------------------------
GRAD_CASES = [pytest.param(ex, bw, batch, id=f"{ex.name}-{bw}-{batch}") for ex in TABLE for bw in ex.backwards
              for batch in (BATCHES if bw == "direct" else [BATCHES[1 + ex.backwards.index(bw) % 2]])]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a backward that did not converge fails
@pytest.mark.parametrize("ex,backward,batch", GRAD_CASES)
@given(data=st.data())
def test_gradient_matches_reference(ex, backward, batch, data):
    """d(<g, x> + <h, duals>)/dparams against the closed-form VJP, else directional differences."""
    size, params, truth, rng = _draw(ex, data, batch)
    leaves = {k: _t(v, True) for k, v in params.items()}
    out, stats = _solve(ex, leaves, tol=TIGHT, backward=backward)
    assert stats.all_converged
    cot = {k: rng.standard_normal(v.shape) for k, v in out.items()}
    loss = sum((v * _t(cot[k])).sum() for k, v in out.items())
    got = dict(zip(ex.params, (g.numpy() for g in torch.autograd.grad(loss, [leaves[n] for n in ex.params]))))
    sol = _numpy(out)
    for idx in np.ndindex(*batch):
        p, o, c = R.element(params, idx), R.element(sol, idx), R.element(cot, idx)
        if ex.vjp is not None:
            want = ex.vjp(p, o, c)
            for name in ex.params:
                assert rel_err(got[name][idx], want[name]) <= GRAD_RTOL, (idx, name)
            continue
        for name in ex.params:
            direction = rng.uniform(-1.0, 1.0, np.shape(p[name]))
            diff = R.fd(lambda q: sum(np.sum(c[k] * v) for k, v in ex.exact(p, o)(q).items()), p, name, direction)
            ad = float(np.sum(got[name][idx] * direction))
            assert abs(ad - diff) <= FD_RTOL * max(1.0, abs(diff), sum(np.abs(v).sum() for v in c.values())), \
                (idx, name, ad, diff)


@pytest.mark.parametrize("ex", [e for e in TABLE if e.vjp is not None], ids=repr)
@given(data=st.data())
def test_closed_forms_agree_with_finite_differences(ex, data):
    """The NumPy VJPs are right (so the comparisons above mean something)."""
    size, params, truth, rng = _draw(ex, data, ())
    out = {k: np.asarray(v) for k, v in ex.exact(params, truth)(params).items()}
    cot = {k: rng.standard_normal(np.shape(v)) for k, v in out.items()}
    want = ex.vjp(params, out, cot)
    for name in ex.params:
        direction = rng.uniform(-1.0, 1.0, np.shape(params[name]))
        diff = R.fd(lambda q: sum(np.sum(cot[k] * v) for k, v in ex.exact(params, out)(q).items()), params, name,
                    direction)
        assert abs(float(np.sum(want[name] * direction)) - diff) <= FD_RTOL * max(1.0, abs(diff)), name


# -- (3) gradcheck: every parameter, every backward method ---------------------------------------------------
def _gradcheck(ex: Example, params: dict, backward: str):
    """gradcheck of every output w.r.t. every param; a psd param enters as (M + M')/2 of a free M."""
    inputs = tuple(_t(params[n], True) for n in ex.params)

    def f(*args):
        kw = dict(zip(ex.params, args))
        for name in ex.psd:
            kw[name] = 0.5 * (kw[name] + kw[name].transpose(-1, -2))
        if len(ex.outputs) == 1:  # the module's own call, options per call (a non-convergence warns: an error)
            return example(ex.name)(**kw, tol=TIGHT, backward=backward)
        out, stats = _solve(ex, kw, tol=TIGHT, backward=backward)
        assert stats.all_converged
        return tuple(out.values())

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


GRADCHECK_CASES = [pytest.param(ex, bw, id=f"{ex.name}-{bw}") for ex in TABLE
                   for bw in ex.backwards + (("unroll",) if ex.name in UNROLL else ())]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a backward that did not converge fails
@pytest.mark.parametrize("ex,backward", GRADCHECK_CASES)
def test_gradcheck(ex, backward):
    params, _ = R.draw(ex.sample, 1234, ex.fixed_size, ())
    _gradcheck(ex, params, backward)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a backward that did not converge fails
@pytest.mark.parametrize("batch", BATCHES[1:], ids=str)
@pytest.mark.parametrize("ex", TABLE, ids=repr)
def test_gradcheck_batched(ex, batch):
    """Batched, some params shared by the whole batch (broadcast: their gradients sum over it)."""
    params, _ = R.draw(ex.sample, 4321, ex.fixed_size, batch, ex.shared)
    for name in ex.shared:
        assert params[name].shape == R.draw(ex.sample, 0, ex.fixed_size, ())[0][name].shape
    _gradcheck(ex, params, "direct")


@pytest.mark.filterwarnings("error::RuntimeWarning")
@given(data=st.data())
def test_deq_newton_solver_agrees(data):
    ex = BY_NAME["deq"]
    size, params, _, _ = _draw(ex, data, (3,))
    out, stats = _solve(ex, {k: _t(v) for k, v in params.items()}, tol=TIGHT, solver="newton")
    assert stats.all_converged
    for idx in np.ndindex(3):
        assert rel_err(out["z"].numpy()[idx], R.deq_iterate(R.element(params, idx))) <= SOLUTION_RTOL


# -- (4) degenerate and ill-posed problems ------------------------------------------------------------
BOXES = """problem boxes
dim n
param c[n], lo[n], hi[n]
var x[n]
minimize 0.5 * sumsq(x) + dot(c, x)
subject to
  lower: x >= lo
  upper: x <= hi
"""
LP = """problem lp
dim n
param c[n]
var x[n]
minimize dot(c, x)
subject to
  pos: x >= 0
"""
RAY = """problem ray
dim n, m
param c[n], G[m, n], h[m]
var x[n]
minimize dot(c, x)
subject to
  G @ x <= h
"""
HALFSPACE = """problem halfspace
dim n
param x0[n], s
var x[n]
minimize 0.5 * sumsq(x - x0)
subject to
  cap: sum(x) <= s
"""


def _messages(record) -> list:
    return [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]


def test_infeasible_qp_says_so():
    """x <= 0 and x >= 1 (G z <= h in the qp example): status "infeasible", a warning, finite outputs."""
    ex = BY_NAME["qp"]
    params = {"Q": np.eye(2), "c": np.array([0.3, -0.2]), "G": np.array([[1.0, 0.0], [-1.0, 0.0]]),
              "h": np.array([0.0, -1.0]), "A": np.zeros((0, 2)), "b": np.zeros(0)}
    with pytest.warns(RuntimeWarning, match=r"did not converge.*infeasible"):
        out, stats = _solve(ex, {k: _t(v) for k, v in params.items()})
    assert stats.status_names() == "infeasible" and not stats.all_converged
    assert all(bool(torch.isfinite(v).all()) for v in out.values())


@given(data=st.data())
def test_one_infeasible_element_leaves_the_batch_right(data):
    """A batch where one element has lo > hi in one coordinate: that element is "infeasible", the
    others converge to clip(-c, lo, hi) with the right duals and gradients; every gradient is finite."""
    n = data.draw(st.integers(1, 3), label="n")
    bad = data.draw(st.integers(0, 3), label="infeasible element")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    lo = rng.uniform(-2.0, 0.0, (4, n))
    hi = lo + rng.uniform(1.5, 3.0, (4, n))
    where = rng.integers(0, 3, (4, n))  # -c below lo, inside, above hi; MARGIN away from the bounds
    below, above = lo - rng.uniform(MARGIN, 1.5, (4, n)), hi + rng.uniform(MARGIN, 1.5, (4, n))
    c = -np.select([where == 0, where == 2], [below, above], rng.uniform(lo + MARGIN, hi - MARGIN))
    j = rng.integers(n)
    lo[bad, j] = hi[bad, j] + rng.uniform(MARGIN, 1.0)
    leaves = {"c": _t(c, True), "lo": _t(lo, True), "hi": _t(hi, True)}
    with pytest.warns(RuntimeWarning, match=rf"did not converge at batch elements \[\({bad},\)\] \(1 infeasible"):
        sol = inline(BOXES).solve(**leaves)
    assert sol.stats.status_names() == ["infeasible" if i == bad else "converged" for i in range(4)]
    x, lower, upper = sol.x, sol.duals["lower"], sol.duals["upper"]
    for v in (x, lower, upper):
        assert bool(torch.isfinite(v).all())
    g = rng.standard_normal((4, n))
    got = torch.autograd.grad((x * _t(g)).sum(), [leaves["c"], leaves["lo"], leaves["hi"]])
    assert all(bool(torch.isfinite(t).all()) for t in got)
    at_lo, at_hi = where == 0, where == 2
    free = ~(at_lo | at_hi)
    for i in set(range(4)) - {bad}:
        assert rel_err(x[i].detach().numpy(), np.clip(-c[i], lo[i], hi[i])) <= 1e-8
        assert rel_err(lower[i].detach().numpy(), np.where(at_lo[i], lo[i] + c[i], 0.0)) <= 1e-8
        assert rel_err(upper[i].detach().numpy(), np.where(at_hi[i], -(hi[i] + c[i]), 0.0)) <= 1e-8
        for t, want in zip(got, (-g[i] * free[i], g[i] * at_lo[i], g[i] * at_hi[i])):
            assert rel_err(t[i].numpy(), want) <= 1e-7


def test_unbounded_lp_says_so():
    """min c'x over x >= 0 with c < 0 (a labelled bound, so KKT), and over a general halfplane."""
    with pytest.warns(RuntimeWarning, match=r"did not converge at batch elements \[\(0,\)\] \(1 unbounded"):
        sol = inline(LP).solve(c=_t([[-1.0, -1.0], [1.0, 2.0]]))
    assert sol.stats.status_names() == ["unbounded", "converged"]
    assert bool(torch.isfinite(sol.x).all()) and bool(torch.isfinite(sol.duals["pos"]).all())
    assert rel_err(sol.x[1].numpy(), [0.0, 0.0]) <= 1e-8
    assert rel_err(sol.duals["pos"][1].numpy(), [1.0, 2.0]) <= 1e-8
    layer = inline(RAY)
    assert layer.plan.kind == "kkt"
    with pytest.warns(RuntimeWarning, match="unbounded"):
        sol = layer.solve(c=_t([-1.0, -1.0]), G=_t([[1.0, -1.0]]), h=_t([1.0]))
    assert sol.stats.status_names() == "unbounded"
    assert bool(torch.isfinite(sol.x).all())


@given(data=st.data())
def test_inactive_weakly_active_and_active_constraint(data):
    """sum(x) <= s for the projection of x0: s above sum(x0) (inactive: dual 0, the identity's
    gradient), s = sum(x0) (weakly active: the warning, and the inactive side's gradient), s below
    (active: the projection onto the hyperplane)."""
    n = data.draw(st.integers(1, 4), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x0 = rng.standard_normal(n)
    total = x0.sum()
    s = np.array([total + rng.uniform(MARGIN, 2.0), total, total - rng.uniform(MARGIN, 2.0)])
    leaves = {"x0": _t(np.tile(x0, (3, 1)), True), "s": _t(s, True)}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sol = inline(HALFSPACE).solve(**leaves, tol=TIGHT)
        g = rng.standard_normal((3, n))
        dx0, ds = torch.autograd.grad((sol.x * _t(g)).sum(), [leaves["x0"], leaves["s"]])
    weak = [m for m in _messages(record) if "weakly active" in m]
    assert len(weak) == 1 and "[[1]]" in weak[0], _messages(record)
    assert sol.stats.all_converged
    x, lam = sol.x.detach().numpy(), sol.duals["cap"].detach().numpy()
    # Inactive.
    assert rel_err(x[0], x0) <= 1e-9 and abs(lam[0]) <= 1e-9
    assert rel_err(dx0[0].numpy(), g[0]) <= 1e-8 and abs(float(ds[0])) <= 1e-8
    # Weakly active: an interior-point solution is only sqrt(tol) accurate there, and so is the gradient
    # of the inactive side: the row lam (1'dx - ds) + g dlam = 0 becomes dlam = 0, but ds still enters
    # through -lam ds, which leaves lam 1'g (lam ~ sqrt(tol)) in d/ds.
    loose = 100 * np.sqrt(TIGHT)
    assert rel_err(x[1], x0) <= loose and abs(lam[1]) <= loose
    assert rel_err(dx0[1].numpy(), g[1]) <= 1e-8 and abs(float(ds[1])) <= loose * max(1.0, abs(g[1].sum()))
    # Active.
    shift = (total - s[2]) / n
    assert rel_err(x[2], x0 - shift) <= 1e-9 and rel_err(lam[2], shift) <= 1e-9
    assert rel_err(dx0[2].numpy(), g[2] - g[2].mean()) <= 1e-8 and rel_err(float(ds[2]), g[2].mean()) <= 1e-8
    # An inactive constraint alone: no warning at all.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sol = inline(HALFSPACE).solve(x0=_t(x0, True), s=_t(s[0], True), tol=TIGHT)
        sol.x.sum().backward()
    assert not _messages(record)


def test_weakly_active_constraint_under_gmres():
    """GMRES solves the unmodified (nearly singular) KKT system: no warning, a finite gradient on the
    segment between the two one-sided derivatives (a convex combination, weight lam n / (lam n - g))."""
    x0 = _t([0.3, 0.5, 0.2], True)
    s = _t(1.0, True)
    g = np.array([1.0, -2.0, 0.5])
    sol = inline(HALFSPACE).solve(x0=x0, s=s, backward="gmres")
    (sol.x * _t(g)).sum().backward()
    inactive, active = g, g - g.mean()
    d = x0.grad.numpy()
    assert np.isfinite(d).all() and np.isfinite(float(s.grad))
    t = float((d - inactive) @ (active - inactive) / ((active - inactive) @ (active - inactive)))
    assert -1e-9 <= t <= 1 + 1e-9
    assert rel_err(d, inactive + t * (active - inactive)) <= 1e-8
    assert abs(float(s.grad) - t * g.mean()) <= 1e-8


@pytest.mark.parametrize("backward", ["direct", "gmres"])
def test_duplicated_equality_row(backward):
    """A with two equal rows (b equal too): the KKT Jacobian is singular. The solve converges; the direct
    backward warns and takes the least-squares solution, which gives the same gradients as the problem
    with the row once (split evenly between the two copies for b); GMRES needs no warning (the system
    is consistent)."""
    rng = np.random.default_rng(7)
    one = dict(R.sample_qp(rng, {"n": 3, "m": 2, "p": 1})[0])
    two = dict(one, A=np.concatenate([one["A"], one["A"]]), b=np.concatenate([one["b"], one["b"]]))
    g = rng.standard_normal(3)

    def run(params):
        leaves = {k: _t(v, True) for k, v in params.items()}
        out, stats = _solve(BY_NAME["qp"], leaves, tol=TIGHT, backward=backward)
        assert stats.all_converged
        grads = torch.autograd.grad((out["z"] * _t(g)).sum(), list(leaves.values()))
        return _numpy(out), dict(zip(leaves, (t.numpy() for t in grads)))

    ref, ref_grads = run(one)
    if backward == "direct":
        with pytest.warns(RuntimeWarning, match="singular Jacobian in the backward pass.*least-squares"):
            out, grads = run(two)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            out, grads = run(two)
    assert rel_err(out["z"], ref["z"]) <= 1e-9 and rel_err(out["ineq"], ref["ineq"]) <= 1e-9
    assert rel_err(out["eq"].sum(), ref["eq"]) <= 1e-9
    for v in grads.values():
        assert np.isfinite(v).all()
    for name in ("Q", "c", "G", "h"):
        assert rel_err(grads[name], ref_grads[name]) <= 1e-8, name
    assert rel_err(grads["b"], np.repeat(ref_grads["b"] / 2, 2)) <= 1e-8


# -- (5) several vars, maximize ------------------------------------------------------------------------
SPLIT = """problem split
dim n
param a[n], s, wt > 0
var x[n], t
minimize 0.5 * sumsq(x - a) + 0.5 * wt * t^2
subject to
  couple: sum(x) + t == s
  pos: x >= 0
"""
PAIR = """problem pair
dim n
param a[n], b[n], lam >= 0
var x[n], y[n]
minimize 0.5 * sumsq(x - a) + 0.5 * sumsq(y - b) + 0.25 * sumsq(x - y) + lam * norm1(y)
subject to
  x >= 0
"""
MIN_PORTFOLIO = """problem min_portfolio
dim n
param mu[n], Sigma[n, n] psd, gamma > 0
var w[n]
minimize 0.5 * gamma * quad(w, Sigma) - dot(mu, w)
subject to
  budget: sum(w) == 1
  long:   w >= 0
"""
MAX_SPARSEMAX = """problem max_sparsemax
dim n
param v[n]
var x[n]
maximize -0.5 * sumsq(x - v)
subject to
  x >= 0
  sum(x) == 1
"""


def _sample_split(rng, n):
    """Planted: x* >= MARGIN on a random support, multipliers of x >= 0 >= MARGIN off it; t* free.
    Stationarity: x - a + nu 1 - lam = 0, wt t + nu = 0."""
    support = rng.random(n) < 0.6
    x = np.where(support, rng.uniform(MARGIN, 2.0, n), 0.0)
    lam = np.where(support, 0.0, rng.uniform(MARGIN, 2.0, n))
    t, wt = rng.standard_normal(), rng.uniform(0.5, 2.0)
    nu = -wt * t
    return {"a": x + nu - lam, "s": x.sum() + t, "wt": wt}, {"x": x, "t": t, "couple": nu, "pos": lam}


def _split_cvxpy(p):
    x, t = cp.Variable(len(p["a"])), cp.Variable()
    couple, pos = cp.sum(x) + t == p["s"], x >= 0
    R.cvxpy_solve(cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - p["a"]) + 0.5 * p["wt"] * cp.square(t)),
                             [couple, pos]))
    return {"x": x.value, "t": t.value, "couple": couple.dual_value, "pos": pos.dual_value}


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("batch", BATCHES, ids=str)
@given(data=st.data())
def test_two_vars_with_a_coupling_constraint(batch, data):
    n = data.draw(st.integers(1, 4), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    elements = [_sample_split(rng, n) for _ in np.ndindex(*batch)]
    params = {k: np.stack([e[0][k] for e in elements]).reshape(batch + np.shape(elements[0][0][k]))
              for k in ("a", "s", "wt")}
    layer = inline(SPLIT)
    assert layer.plan.kind == "kkt"
    ts = {k: _t(v) for k, v in params.items()}
    pair = layer(**ts, tol=TIGHT)
    assert type(pair).__name__ == "split_solution" and pair._fields == ("x", "t")
    assert pair.x.shape == batch + (n,) and pair.t.shape == batch
    sol = layer.solve(**ts, tol=TIGHT)
    assert sol.stats.all_converged
    got = {"x": sol.x.numpy(), "t": sol.t.numpy(), "couple": sol.duals["couple"].numpy(),
           "pos": sol.duals["pos"].numpy()}
    assert torch.equal(pair.x, sol.x) and torch.equal(pair.t, sol.t)
    for i, idx in enumerate(np.ndindex(*batch)):
        truth = elements[i][1]
        ref = _split_cvxpy(elements[i][0])
        for k in got:
            assert rel_err(got[k][idx], truth[k]) <= SOLUTION_RTOL, (idx, k)
            assert rel_err(ref[k], truth[k]) <= CVXPY_RTOL, (idx, k)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("backward", ["direct", "gmres", "unroll"])
def test_two_vars_gradcheck(backward):
    rng = np.random.default_rng(5)
    p = [_sample_split(rng, 3)[0] for _ in range(2)]
    inputs = tuple(_t(np.stack([e[k] for e in p]), True) for k in ("a", "s", "wt"))

    def f(a, s, wt):
        sol = inline(SPLIT).solve(a=a, s=s, wt=wt, tol=TIGHT, backward=backward)
        return sol.x, sol.t, sol.duals["couple"], sol.duals["pos"]

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@given(data=st.data())
def test_two_vars_prox_against_cvxpy(data):
    """Two vars in the prox class: a box on one, norm1 on the other, coupled in the smooth part."""
    n = data.draw(st.integers(1, 4), label="n")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a, b, lam = rng.standard_normal((3, n)), rng.standard_normal((3, n)), rng.uniform(0.0, 1.5, 3)
    layer = inline(PAIR)
    assert layer.plan.kind == "prox"
    sol = layer.solve(a=_t(a), b=_t(b), lam=_t(lam), tol=TIGHT)
    assert sol.stats.all_converged
    for i in range(3):
        x, y = cp.Variable(n), cp.Variable(n)
        R.cvxpy_solve(cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - a[i]) + 0.5 * cp.sum_squares(y - b[i])
                                             + 0.25 * cp.sum_squares(x - y) + lam[i] * cp.norm1(y)), [x >= 0]))
        assert rel_err(sol.x[i].numpy(), x.value) <= CVXPY_RTOL
        assert rel_err(sol.y[i].numpy(), y.value) <= CVXPY_RTOL


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("backward", ["direct", "gmres"])
@given(data=st.data())
def test_maximize_is_minimize_of_the_negation(backward, data):
    """portfolio (maximize, KKT) against the same problem written as a minimize: the same solution,
    duals (cvxpy's convention: those of the minimize) and gradients; sparsemax likewise (prox)."""
    for name, src in (("portfolio", MIN_PORTFOLIO), ("sparsemax", MAX_SPARSEMAX)):
        ex = BY_NAME[name]
        size, params, _, rng = _draw(ex, data, (3,))
        results = []
        for layer in (example(name), inline(src)):
            leaves = {k: _t(v, True) for k, v in params.items()}
            sol = layer.solve(**leaves, tol=TIGHT, backward=backward)
            out = [sol[ex.outputs[0]]] + [sol.duals[k] for k in ex.outputs[1:]]
            loss = sum((v * _t(np.random.default_rng(i).standard_normal(v.shape))).sum() for i, v in enumerate(out))
            grads = torch.autograd.grad(loss, [leaves[k] for k in ex.params])
            results.append([v.detach().numpy() for v in out] + [v.numpy() for v in grads])
        for a, b in zip(*results):
            assert rel_err(a, b) <= 1e-9, name


# -- (6) nonlinear convex constraints (KKT) and the ball's prox -----------------------------------------
BALL_SUMSQ = """problem ball_sumsq
dim n
param x0[n], r > 0
var x[n]
minimize 0.5 * sumsq(x - x0)
subject to
  ball: sumsq(x) <= r^2
"""
BALL_NORM2 = """problem ball_norm2
dim n
param x0[n], r > 0
var x[n]
minimize 0.5 * sumsq(x - x0)
subject to
  norm2(x) <= r
"""
BALL_NORM2_LABELLED = BALL_NORM2.replace("  norm2(x) <= r", "  ball: norm2(x) <= r")
EXP_CAP = """problem exp_cap
dim n
param x0[n], c[n] > 0
var x[n]
minimize 0.5 * sumsq(x - x0)
subject to
  cap: exp(x) <= c
"""
SETS = {  # name: (source, kind, sample, closed form (x, dual), vjp, dual label, backward methods)
    "ball_sumsq": (BALL_SUMSQ, "kkt", R.sample_ball, R.ball, R.vjp_ball, "ball", ("direct", "gmres")),
    "ball_norm2": (BALL_NORM2, "prox", R.sample_ball, R.ball, R.vjp_ball, None, PROX),
    "exp_cap": (EXP_CAP, "kkt", R.sample_exp_cap, R.exp_cap, R.vjp_exp_cap, "cap", ("direct", "gmres")),
}
SET_CASES = [pytest.param(name, bw, id=f"{name}-{bw}") for name, spec in SETS.items() for bw in spec[-1]]


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("name,backward", SET_CASES)
@given(data=st.data())
def test_sets_against_closed_forms(name, backward, batch, data):
    """Solution, dual and gradients (of <g, x> + <h, dual>) against the closed forms."""
    src, kind, sample, closed, vjp, label, _ = SETS[name]
    layer = inline(src)
    assert layer.plan.kind == kind
    n = data.draw(st.integers(1, 4), label="n")
    params, _ = R.draw(sample, data.draw(st.integers(0, 2**32 - 1), label="seed"), {"n": n}, batch)
    leaves = {k: _t(v, True) for k, v in params.items()}
    sol = layer.solve(**leaves, tol=TIGHT, backward=backward)
    assert sol.stats.all_converged
    rng = np.random.default_rng(n)
    g = rng.standard_normal(batch + (n,))
    grads = torch.autograd.grad((sol.x * _t(g)).sum(), list(leaves.values()))
    grads = dict(zip(leaves, (t.numpy() for t in grads)))
    for idx in np.ndindex(*batch):
        p = R.element(params, idx)
        x, dual = closed(p)
        assert rel_err(sol.x.detach().numpy()[idx], x) <= SOLUTION_RTOL, idx
        if label is not None:
            assert rel_err(sol.duals[label].detach().numpy()[idx], dual) <= SOLUTION_RTOL, idx
        want = vjp(p, x, g[idx])
        for k in params:
            assert rel_err(grads[k][idx], want[k]) <= GRAD_RTOL, (idx, k)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("name,backward", SET_CASES + [pytest.param("exp_cap", "unroll", id="exp_cap-unroll"),
                                                       pytest.param("ball_norm2", "unroll", id="ball_norm2-unroll")])
def test_sets_gradcheck(name, backward):
    src, _, sample, _, _, label, _ = SETS[name]
    params, _ = R.draw(sample, 11, {"n": 3}, (2,))
    keys = tuple(params)

    def f(*args):
        sol = inline(src).solve(**dict(zip(keys, args)), tol=TIGHT, backward=backward)
        assert sol.stats.all_converged
        return (sol.x,) + ((sol.duals[label],) if label else ())

    assert torch.autograd.gradcheck(f, tuple(_t(params[k], True) for k in keys), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_labelled_norm2_ball_returns_its_dual():
    """With a label the ball goes to KKT (as sumsq(x) <= r^2) and returns the dual of the constraint as
    written: for norm2(x) - r <= 0, lam = |x0| - r outside."""
    layer = inline(BALL_NORM2_LABELLED)
    assert layer.plan.kind == "kkt"
    sol = layer.solve(x0=_t([3.0, 4.0]), r=_t(1.0), tol=TIGHT)
    assert rel_err(sol.x.numpy(), [0.6, 0.8]) <= SOLUTION_RTOL
    assert rel_err(sol.duals["ball"].numpy(), 4.0) <= SOLUTION_RTOL


def test_exp_cap_far_below_the_start():
    """minimize 0.5 x^2 s.t. exp(x) <= e^-3: x = -3, dual 3 e^3 (x + lam e^x = 0); Slater holds."""
    sol = inline(EXP_CAP).solve(x0=_t([0.0]), c=_t([np.exp(-3.0)]), max_iter=200, warn=False)
    assert sol.stats.status_names() == "converged"
    assert rel_err(sol.x.numpy(), [-3.0]) <= SOLUTION_RTOL
    assert rel_err(sol.duals["cap"].numpy(), [3.0 * np.exp(3.0)]) <= SOLUTION_RTOL


def test_active_constraint_with_a_small_dual_keeps_its_gradient():
    """A strictly active constraint whose dual is only 2e-4 is not mistaken for a weakly active one.

    minimize 0.5 |x - x0|^2 s.t. a.x <= b: x = x0 - lam a with lam = (a.x0 - b) / |a|^2, and
    d sum(x) / d x0 = (I - a a' / |a|^2) 1 (benchmarks/qp.py found the gradient of such a row wrong
    when the weak-activity test looked at the dual's size alone).
    """
    layer = inline("problem halfspace\ndim n\nparam x0[n], a[n], b\nvar x[n]\nminimize 0.5 * sumsq(x - x0)\n"
                   "subject to\n  cut: dot(a, x) <= b\n")
    a = np.array([1.0, -2.0, 0.5])
    x0 = np.array([0.3, 0.1, -0.4])
    b = a @ x0 - 2e-4 * (a @ a)
    x0_t = torch.tensor(x0, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = layer.solve(x0=x0_t, a=_t(a), b=_t(b))
        sol.x.sum().backward()
    assert rel_err(sol.duals["cut"].detach().numpy(), 2e-4) <= 1e-6
    want = np.ones(3) - a * (a.sum() / (a @ a))
    assert rel_err(x0_t.grad.numpy(), want) <= 1e-8
