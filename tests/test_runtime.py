"""The compiled layer at run time: batching, dtypes, state, threads, non-convergence, errors, cache.

Behaviour promised by LANGUAGE.md ("Using a compiled problem from Python") and
STYLE.md (errors name the parameter; non-convergence warns, never raises).
Error tests compare the full message.
"""
import concurrent.futures
import multiprocessing
import os
import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optlang
from optlang.runtime import executor as torch_executor
from optlang.backends.torch.printer import print_plan
from optlang.runtime import cache
from problems import BY_NAME, PROBLEMS, case, check_gradients, grads, layer, make_case, rel_err

F64 = torch.float64


def t64(a, requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=F64).requires_grad_(requires_grad)


# -- batch broadcasting ------------------------------------------------------------------------
def test_shared_matrix_with_batched_rhs():
    nnls = BY_NAME["nnls"]
    c = make_case(nnls, seed=3, size={"m": 5, "n": 3}, batch=(4,))
    A = t64(c.params["A"][0])  # one A for the whole batch
    b = t64(c.params["b"])
    x = layer("nnls")(A=A, b=b, tol=1e-12)
    assert x.shape == (4, 3)
    for i in range(4):
        want = nnls.reference({"A": c.params["A"][0], "b": c.params["b"][i]})
        assert rel_err(x[i].numpy(), want) <= 1e-9, i
        assert torch.allclose(x[i], layer("nnls")(A=A, b=b[i], tol=1e-12), rtol=1e-12, atol=1e-14), i


def test_batch_dims_broadcast_like_numpy():
    ridge = BY_NAME["ridge"]
    c = make_case(ridge, seed=4, size={"n": 4, "d": 2}, batch=(2, 3))
    X = c.params["X"][:, :1]  # batch (2, 1)
    y = c.params["y"][0]  # batch (3,)
    lam = c.params["lam"][1]  # batch (3,), a 0-dim param with a batch
    w = layer("ridge")(X=t64(X), y=t64(y), lam=t64(lam))
    assert w.shape == (2, 3, 2)
    for i in range(2):
        for j in range(3):
            want = ridge.reference({"X": X[i, 0], "y": y[j], "lam": lam[j]})
            assert rel_err(w[i, j].numpy(), want) <= 1e-12, (i, j)


@pytest.mark.parametrize("lam", [0.5, 1, np.float64(0.5), np.float32(0.5), np.array(0.5), np.int64(1)],
                         ids=["float", "int", "np.float64", "np.float32", "0-dim ndarray", "np.int64"])
def test_scalar_parameter_as_a_number(lam):
    c = make_case(BY_NAME["ridge"], seed=5, size={"n": 5, "d": 3}, batch=(2,))
    X, y = t64(c.params["X"]), t64(c.params["y"])
    w = layer("ridge")(X=X, y=y, lam=lam)
    assert w.dtype == F64 and w.shape == (2, 3)
    assert torch.allclose(w, layer("ridge")(X=X, y=y, lam=torch.tensor(float(lam), dtype=F64)), rtol=1e-12, atol=0)


def test_all_parameters_numbers():
    E = layer("kepler")(M=1.0, e=0.25, tol=1e-6)
    assert E.shape == () and E.dtype == torch.get_default_dtype()  # no tensor to follow: torch's default
    assert abs(float(E) - BY_NAME["kepler"].reference({"M": 1.0, "e": 0.25})) <= 1e-5


# -- a shared parameter's gradient is the sum over the batch --------------------------------------
SHARED = [("ridge", ("lam",)), ("ridge", ("X",)), ("logistic", ("lam",)), ("nnls", ("A",)),
          ("box_ls", ("lo", "hi")), ("kepler", ("e",))]


@pytest.mark.parametrize("name,shared", SHARED, ids=[f"{n}-{'-'.join(s)}" for n, s in SHARED])
def test_shared_parameter_gradient_is_the_sum_over_the_batch(name, shared):
    problem = BY_NAME[name]
    c = make_case(problem, seed=6, batch=(3,))
    params = {k: (v[0] if k in shared else v) for k, v in c.params.items()}
    g = np.random.default_rng(6).standard_normal((3,) + problem.var_shape(c.size))
    leaves = {k: t64(v, requires_grad=True) for k, v in params.items()}
    x = layer(name)(**leaves, tol=1e-12)
    (x * t64(g)).sum().backward()
    total = {k: torch.zeros_like(leaves[k]) for k in shared}
    for i in range(3):
        one = {k: t64(v if k in shared else v[i], requires_grad=True) for k, v in params.items()}
        xi = layer(name)(**one, tol=1e-12)
        assert torch.allclose(xi, x[i], rtol=1e-10, atol=1e-12)
        (xi * t64(g[i])).sum().backward()
        for k in problem.params:
            if k in shared:
                total[k] += one[k].grad
            else:
                assert torch.allclose(one[k].grad, leaves[k].grad[i], rtol=1e-8, atol=1e-10), (k, i)
    for k in shared:
        assert leaves[k].grad.shape == leaves[k].shape
        assert torch.allclose(leaves[k].grad, total[k], rtol=1e-8, atol=1e-10), k


def test_broadcast_batch_gradients_reduce_to_each_input_shape():
    c = make_case(BY_NAME["ridge"], seed=7, size={"n": 4, "d": 2}, batch=(2, 3))
    X = t64(c.params["X"][:, :1], requires_grad=True)  # (2, 1, 4, 2)
    y = t64(c.params["y"][0], requires_grad=True)  # (3, 4)
    lam = t64(0.7, requires_grad=True)
    g = t64(np.random.default_rng(7).standard_normal((2, 3, 2)))
    (layer("ridge")(X=X, y=y, lam=lam, tol=1e-12) * g).sum().backward()
    gX, gy, glam = torch.zeros_like(X), torch.zeros_like(y), torch.zeros_like(lam)
    for i in range(2):
        for j in range(3):
            Xi, yj, li = (t.detach().clone().requires_grad_() for t in (X[i, 0], y[j], lam))
            (layer("ridge")(X=Xi, y=yj, lam=li, tol=1e-12) * g[i, j]).sum().backward()
            gX[i, 0] += Xi.grad
            gy[j] += yj.grad
            glam += li.grad
    for got, want in ((X.grad, gX), (y.grad, gy), (lam.grad, glam)):
        assert got.shape == want.shape
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-10)


# -- dtype ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ridge", "box_ls", "kepler"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_dtype_follows_the_inputs(name, dtype):
    problem = BY_NAME[name]
    c = make_case(problem, seed=8, batch=(2,))
    ts = c.tensors(dtype=dtype, requires_grad=True)
    x = layer(name)(**ts)
    assert x.dtype == dtype
    x.sum().backward()
    assert all(t.grad.dtype == dtype for t in ts.values())


def test_a_python_number_does_not_promote_float32():
    c = make_case(BY_NAME["ridge"], seed=9, size={"n": 4, "d": 2})
    w = layer("ridge")(X=torch.tensor(c.params["X"], dtype=torch.float32), y=torch.tensor(c.params["y"],
                       dtype=torch.float32), lam=0.5)
    assert w.dtype == torch.float32


def test_mixed_float32_and_float64_tensors_promote_and_grads_keep_each_dtype():
    c = make_case(BY_NAME["ridge"], seed=10, size={"n": 4, "d": 2})
    X = torch.tensor(c.params["X"], dtype=torch.float32, requires_grad=True)
    y = torch.tensor(c.params["y"], dtype=F64, requires_grad=True)
    w = layer("ridge")(X=X, y=y, lam=0.5)
    assert w.dtype == F64
    w.sum().backward()
    assert X.grad.dtype == torch.float32 and y.grad.dtype == F64


def test_float64_numpy_arrays_give_float64():
    c = make_case(BY_NAME["ridge"], seed=11, size={"n": 4, "d": 2})
    w = layer("ridge")(X=c.params["X"], y=c.params["y"], lam=0.5)
    assert w.dtype == F64


# -- no_grad, no state, threads ---------------------------------------------------------------------
def test_broadcast_views_as_inputs():
    """An expanded (stride-0) view is read like the tensor it shows; its base gets the summed gradient."""
    c = make_case(BY_NAME["box_ls"], seed=17, batch=(3,))
    A = t64(c.params["A"][0], requires_grad=True)
    lo = t64(c.params["lo"][0], requires_grad=True)
    rest = {k: t64(c.params[k]) for k in ("b", "hi")}
    x_view = layer("box_ls")(A=A.expand(3, *A.shape), lo=lo.expand(3, *lo.shape), **rest, tol=1e-12)
    x_view.sum().backward()
    grads_view = (A.grad.clone(), lo.grad.clone())
    A.grad, lo.grad = None, None
    x = layer("box_ls")(A=A, lo=lo, **rest, tol=1e-12)
    x.sum().backward()
    assert torch.allclose(x_view, x, rtol=1e-12, atol=1e-14)
    assert torch.allclose(grads_view[0], A.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(grads_view[1], lo.grad, rtol=1e-10, atol=1e-12)


def test_only_the_parameters_that_need_grad_get_one():
    c = make_case(BY_NAME["logistic"], seed=18, batch=(2,))
    ts = c.tensors()
    lam = ts["lam"].requires_grad_()
    layer("logistic")(**ts).sum().backward()
    assert ts["X"].grad is None and ts["y"].grad is None
    assert lam.grad is not None and lam.grad.shape == (2,) and bool((lam.grad != 0).all())


def test_empty_batch():
    w = layer("ridge")(X=torch.ones(0, 5, 3, dtype=F64), y=y5, lam=1.0)
    assert w.shape == (0, 3) and w.dtype == F64


def test_no_grad():
    c = make_case(BY_NAME["box_ls"], seed=12, batch=(2,))
    ts = c.tensors(requires_grad=True)
    want = layer("box_ls")(**ts)
    assert want.requires_grad
    with torch.no_grad():
        x = layer("box_ls")(**ts)
    assert not x.requires_grad and x.grad_fn is None
    assert torch.equal(x, want.detach())


def test_the_layer_keeps_no_state_between_calls():
    ridge = BY_NAME["ridge"]
    L = layer("ridge")
    assert list(L.parameters()) == [] and list(L.buffers()) == [] and L.state_dict() == {}
    a = make_case(ridge, seed=13, size={"n": 4, "d": 3})
    b = make_case(ridge, seed=14, size={"n": 6, "d": 2}, batch=(2,))
    ga, gb = np.ones(3), np.ones((2, 2))
    xa0, grads_a0, _ = grads(ridge, a, ga)
    xb0, grads_b0, _ = grads(ridge, b, gb)
    # Interleave: both forwards first, then the backwards in the other order.
    ta, tb = a.tensors(requires_grad=True), b.tensors(requires_grad=True)
    xa, xb = L(**ta), L(**tb)
    ga_b = torch.autograd.grad(xb.sum(), list(tb.values()))
    ga_a = torch.autograd.grad(xa.sum(), list(ta.values()))
    assert torch.equal(xa.detach(), xa0) and torch.equal(xb.detach(), xb0)
    for got, want in ((ga_a, grads_a0), (ga_b, grads_b0)):
        for g1, name in zip(got, ridge.params):
            assert torch.allclose(g1, want[name], rtol=1e-12, atol=1e-14), name
    assert torch.equal(L(**a.tensors()), xa0)


def _job(name, seed, batch):
    problem = BY_NAME[name]
    c = make_case(problem, seed=seed, batch=batch)
    g = np.ones(batch + problem.var_shape(c.size))
    x, got, _ = grads(problem, c, g, tol=1e-12)
    return x, got


def test_concurrent_calls_from_threads_match_sequential_calls():
    jobs = [(name, seed, batch) for seed in range(4) for name, batch in
            (("box_ls", (2,)), ("kepler", (3,)), ("logistic", ()), ("ridge", (2,)))]
    sequential = [_job(*j) for j in jobs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        concurrent_ = list(pool.map(lambda j: _job(*j), jobs + jobs[::-1]))[:len(jobs)]
    for job, (x1, g1), (x2, g2) in zip(jobs, sequential, concurrent_):
        assert torch.equal(x1, x2), job
        for k in g1:
            assert torch.allclose(g1[k], g2[k], rtol=1e-12, atol=1e-15), (job, k)


# -- non-convergence: stats and a warning, never an exception ---------------------------------------
def _warning(problem, sol, bad, tol):
    return (f"optlang: problem '{problem}' did not converge at batch elements {bad} ({len(bad)} max_iter; "
            f"max relative residual "
            f"{float(sol.stats.residual.max()):.3g}, tol {tol:.3g}); see .stats")


def test_non_convergence_is_reported_per_element_and_warned():
    M = t64([0.1, 3.0, 2.0], requires_grad=True)
    e = t64([0.0, 0.9, 0.5], requires_grad=True)  # e = 0: one Newton step is exact
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = layer("kepler").solve(M=M, e=e, max_iter=1)
        sol.E.sum().backward()  # differentiating a non-converged solve does not raise either
    assert sol.stats.converged.tolist() == [True, False, False]
    assert sol.stats.iterations.tolist() == [1, 1, 1]
    assert bool((sol.stats.residual[1:] > 1e-5).all())
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages[0] == _warning("kepler", sol, [(1,), (2,)], 1e-10)  # the float64 default tol
    assert torch.isfinite(M.grad).all() and torch.isfinite(e.grad).all()


def test_non_convergence_in_a_two_dimensional_batch_names_index_tuples():
    c = make_case(BY_NAME["nnls"], seed=15, size={"m": 6, "n": 4}, batch=(2, 2))
    b = c.params["b"].copy()
    b[0, 1] = 0.0  # x = 0 solves it: converged before the first iteration
    with pytest.warns(RuntimeWarning) as caught:
        sol = layer("nnls").solve(A=t64(c.params["A"]), b=t64(b), max_iter=1, tol=1e-10)
    assert sol.stats.converged.tolist() == [[False, True], [False, False]]
    assert str(caught[0].message) == _warning("nnls", sol, [(0, 0), (1, 0), (1, 1)], 1e-10)
    # Converged again with the default max_iter, and silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layer("nnls").solve(A=t64(c.params["A"]), b=t64(b)).stats.all_converged


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_stats_and_warning_agree_after_one_iteration(problem):
    """Whatever converges in one iteration: stats are per element, the warning names exactly the others."""
    c = make_case(problem, seed=16, batch=(2, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = layer(problem.name).solve(**c.tensors(), max_iter=1)
    stats = sol.stats
    assert stats.converged.shape == stats.iterations.shape == stats.residual.shape == (2, 3)
    assert torch.equal(stats.converged, stats.residual <= 1e-10)
    assert bool((stats.iterations <= 1).all())
    bad = [tuple(i) for i in (~stats.converged).nonzero().tolist()]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages == ([_warning(problem.name, sol, bad, 1e-10)] if bad else [])


def test_non_convergence_warning_points_at_the_callers_line_from_solve():
    with pytest.warns(RuntimeWarning, match="did not converge") as caught:
        layer("kepler").solve(M=3.0, e=0.9, max_iter=1)
    assert caught[0].filename == __file__


def test_non_convergence_warning_points_at_the_callers_line_from_a_call():
    with pytest.warns(RuntimeWarning, match="did not converge") as caught:
        layer("kepler")(M=3.0, e=0.9, max_iter=1)
    assert caught[0].filename == __file__


def test_non_convergence_warning_can_be_turned_off():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = layer("kepler").solve(M=t64(3.0), e=t64(0.9), max_iter=1, warn=False)
    assert sol.stats.converged.shape == () and not bool(sol.stats.converged)


# -- parameter errors: CallError, the full message ----------------------------------------------------------
X53, y5 = torch.ones(5, 3, dtype=F64), torch.ones(5, dtype=F64)
FIXED = "problem fixed\nparam c[3]\nvar x[3]\nminimize 0.5 * sumsq(x - c)\n"
ERRORS = [
    ("missing", "ridge", dict(X=X53, y=y5),
     "missing parameter 'lam' for problem 'ridge'; pass every parameter by name: X, y, lam"),
    ("extra", "ridge", dict(X=X53, y=y5, lam=1.0, mu=2.0),
     "unexpected parameter 'mu' for problem 'ridge'; its parameters are X, y, lam"),
    ("rank too small", "ridge", dict(X=torch.ones(3, dtype=F64), y=y5, lam=1.0),
     "parameter 'X': expected [n, d] (with optional leading batch dims), found a tensor of shape (3,)"),
    ("wrong trailing shape", "fixed", dict(c=torch.ones(2, 4)),
     "parameter 'c': expected [3], found trailing shape (4,)"),
    ("inconsistent dim", "ridge", dict(X=X53, y=torch.ones(4, dtype=F64), lam=1.0),
     "parameter 'y': dim n is 5 (from parameter 'X') but 4 here; expected [n], found trailing shape (4,)"),
    ("inconsistent dim in bounds", "box_ls", dict(A=X53, b=y5, lo=torch.zeros(3), hi=torch.ones(4)),
     "parameter 'hi': dim n is 3 (from parameter 'A') but 4 here; expected [n], found trailing shape (4,)"),
    ("lam = 0", "ridge", dict(X=X53, y=y5, lam=0.0), "parameter 'lam': must be > 0, found 0"),
    ("lam < 0", "ridge", dict(X=X53, y=y5, lam=-2.5), "parameter 'lam': must be > 0, found -2.5"),
    ("lam < 0 in a batch", "ridge", dict(X=X53, y=y5, lam=torch.tensor([[1.0, 2.0], [3.0, -1.0]])),
     "parameter 'lam': must be > 0, found -1 at index (1, 1)"),
    ("e = 1", "kepler", dict(M=1.0, e=1.0), "parameter 'e': must be in [0, 1), found 1"),
    ("e < 0", "kepler", dict(M=1.0, e=-0.1), "parameter 'e': must be in [0, 1), found -0.1"),
    ("y > 1", "logistic", dict(X=X53, y=torch.tensor([0.0, 1.0, 0.5, 1.5, 0.0]), lam=1.0),
     "parameter 'y': must be in [0, 1], found 1.5 at index (3,)"),
    ("NaN", "kepler", dict(M=torch.tensor([0.5, float("nan")]), e=0.5),
     "parameter 'M': contains NaN or infinite values"),
    ("inf", "ridge", dict(X=X53, y=torch.tensor([1.0, 2.0, float("inf"), 0.0, 0.0]), lam=1.0),
     "parameter 'y': contains NaN or infinite values"),
    ("batch dims do not broadcast", "ridge", dict(X=torch.ones(2, 5, 3), y=torch.ones(3, 5), lam=1.0),
     "the parameters' batch dims do not broadcast: 'X' (2,), 'y' (3,), 'lam' ()"),
    ("not a number", "ridge", dict(X=X53, y=y5, lam="1"),
     "parameter 'lam': expected a tensor or a number, found str"),
    ("cg for a root problem", "kepler", dict(M=1.0, e=0.5, backward="cg"),
     'backward "cg" is not available for a root problem; use "auto", "direct", "gmres", "unroll"'),
]


@pytest.mark.parametrize("name,kwargs,message", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_parameter_errors(name, kwargs, message):
    L = optlang.compile_string(FIXED, "fixed.opt") if name == "fixed" else layer(name)
    with pytest.raises(optlang.CallError) as info:
        L(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_unknown_compile_option():
    with pytest.raises(optlang.CallError) as info:
        optlang.compile(BY_NAME["ridge"].path, tolerance=1e-3)
    assert str(info.value) == "unknown option 'tolerance'; the options are tol, max_iter, time_limit, solver, backward and backend"


# -- the generated-code cache -------------------------------------------------------------------------------
def _cache_files(folder, prefix="optlang_gen_"):
    """The generated modules in the cache folder (prefix "plan-": the pickled plans beside them;
    not `__pycache__`, which Python may add)."""
    return sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)) and f.startswith(prefix))


def test_same_source_gives_one_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTLANG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_modules", {})  # forget what this process already imported
    monkeypatch.setattr(torch_executor, "_modules", {})  # and which plans it already printed
    path = BY_NAME["kepler"].path
    first, second = optlang.compile(path), optlang.compile(path)
    E1, E2 = first(M=1.0, e=0.5), second(M=1.0, e=0.5)
    assert torch.equal(E1, E2)
    files = _cache_files(tmp_path)
    assert len(files) == 1 and re.fullmatch(r"optlang_gen_torch_[0-9a-f]{20}\.py", files[0]), files
    assert (tmp_path / files[0]).read_text() == print_plan(first.plan)
    assert len(_cache_files(tmp_path, "plan-")) == 1
    optlang.compile(BY_NAME["ridge"].path)(X=X53, y=y5, lam=1.0)
    assert len(_cache_files(tmp_path)) == 2 and len(_cache_files(tmp_path, "plan-")) == 2


def _compile_in_another_process(folder, path, barrier, results):
    os.environ["OPTLANG_CACHE_DIR"] = folder
    import optlang as ol

    barrier.wait(timeout=120)
    E = ol.compile(path)(M=torch.tensor([0.5, 2.0], dtype=torch.float64), e=0.3)
    results.put(E.tolist())


def test_two_processes_compiling_at_once_share_one_complete_file(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    path = str(BY_NAME["kepler"].path)
    procs = [ctx.Process(target=_compile_in_another_process, args=(str(tmp_path), path, barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0, 0]
    got = [results.get(timeout=5) for _ in procs]
    want = [BY_NAME["kepler"].reference({"M": M, "e": 0.3}) for M in (0.5, 2.0)]
    for values in got:
        assert np.allclose(values, want, rtol=1e-8, atol=0)
    files = _cache_files(tmp_path)
    assert len(files) == 1 and files[0].startswith("optlang_gen_torch_") and files[0].endswith(".py"), files
    assert (tmp_path / files[0]).read_text() == print_plan(layer("kepler").plan)


# -- default tolerances: ~1e-6 relative in float64 -----------------------------------------------------------
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
@settings(max_examples=8)
@given(data=st.data())
def test_default_tolerances_give_1e_6_relative_accuracy(problem, data):
    c = data.draw(case(problem, (2,)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = rng.standard_normal((2,) + problem.var_shape(c.size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged, no backward warnings
        x, got, stats = grads(problem, c, g)
    assert stats.all_converged
    ref = c.reference()
    for i in range(2):
        assert rel_err(x[i].numpy(), ref[i]) <= 1e-6, i
    check_gradients(problem, c, x, got, g, rng, rtol=1e-6)


def test_an_empty_var_is_a_call_error():
    """A dim of size 0 is fine where it sizes data (no constraints), not where it leaves a var empty."""
    nnls = layer("nnls")
    with pytest.raises(optlang.CallError) as info:
        nnls(A=torch.zeros(3, 0, dtype=torch.float64), b=torch.zeros(3, dtype=torch.float64))
    assert str(info.value) == "var 'x' has no entries: dim n is 0 in this call; there is nothing to solve for"


def test_cached_hashes_are_not_pickled():
    """IR nodes cache their hash (str hashes differ between processes, so a cached one must not
    travel) and link nodes found equal; a pickle carries neither, and the copy is equal."""
    import pickle

    from optlang.ir import algebra as A
    from optlang.ir.nodes import Input

    x = Input("var", "x", (3,))
    one, two = A.add(A.mul(x, x), x), A.add(A.mul(x, x), x)
    assert one == two and two.__dict__.get("_same") is one and "_hash" in two.__dict__
    copied = pickle.loads(pickle.dumps(two))
    assert not {"_hash", "_same"} & set(copied.__dict__) and copied == one


TWO_VARS = "problem two\ndim d\nparam a[d], c\nvar w[d], b\nminimize sum(exp(a * w)) + (b - c)^2 + sumsq(w - b)\n"


@pytest.mark.parametrize("name", ["ridge", "logistic", "nnls", "box_ls", "two_vars"])
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.sampled_from([(), (3,), (2, 2)]))
def test_the_fused_objective_gradient_is_the_objective_and_the_gradient(name, seed, batch):
    """What the line searches call (BoundProblem.objective_gradient, one generated function) gives the
    objective and the gradient functions' values, on a state of one block and of two (w, then b)."""
    from optlang.runtime.bound import BoundProblem
    from optlang.runtime.executor import TorchExecutor

    rng = np.random.default_rng(seed)
    if name == "two_vars":
        plan = optlang.compile_string(TWO_VARS).plan
        dims = {"d": 4}
        params = {"a": rng.standard_normal(batch + (4,)), "c": rng.standard_normal(batch)}
    else:
        c = make_case(BY_NAME[name], seed, batch=batch)
        plan, dims, params = layer(name).plan, c.size, c.params
    params = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()}
    bound = BoundProblem(TorchExecutor().module_for(plan), plan, params, dims, batch, torch.float64,
                         torch.device("cpu"))
    x = torch.as_tensor(rng.standard_normal(batch + (bound.n,)), dtype=torch.float64)
    f, g = bound.objective_gradient(x)
    assert f.shape == batch and g.shape == batch + (bound.n,)
    torch.testing.assert_close(f, bound.objective(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(g, bound.gradient(x), rtol=1e-13, atol=1e-13)
