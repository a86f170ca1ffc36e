"""Hostile calls end in a CallError naming the parameter, or in a result with statuses; never in a
torch error from inside (regressions of the fuzzing issue, each once a crash or a quiet wrong answer)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang
from optlang.errors import CallError
from test_classes import example


def test_an_infinite_tolerance_is_refused_per_call():
    with pytest.raises(CallError, match=r"option tol must be a finite positive number \(found inf\)"):
        example("sparsemax")(v=torch.zeros(2, 3), tol=float("inf"))
    with pytest.raises(CallError, match="option tol must be a finite positive number"):
        example("sparsemax")(v=torch.zeros(2, 3), tol=float("nan"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_is_refused_with_a_hint(dtype):
    with pytest.raises(CallError, match=r"parameter 'v': .*float16 is not supported.*\.float\(\)"):
        example("sparsemax")(v=torch.zeros(2, 3, dtype=dtype))


def test_meta_tensors_are_refused_by_name():
    with pytest.raises(CallError, match="parameter 'v': tensors on the 'meta' device are not supported"):
        example("sparsemax")(v=torch.zeros(2, 3, device="meta"))


@pytest.mark.parametrize("name", ["sparsemax", "lasso", "qp", "deq"])
def test_an_empty_batch_gives_empty_results_and_gradients(name):
    from test_classes import BY_NAME
    import references as R

    ex = BY_NAME[name]
    one, _ = R.draw(ex.sample, 0, ex.fixed_size, ())
    # The first param gets a batch of 0; the others are shared.
    ts = {n: torch.tensor(one[n], dtype=torch.float64, requires_grad=True) for n in ex.params}
    first = ex.params[0]
    ts[first] = torch.zeros((0,) + ts[first].shape, dtype=torch.float64, requires_grad=True)
    sol = example(name).solve(**ts)
    x = sol[ex.outputs[0]]
    assert x.shape[0] == 0 and sol.stats.converged.shape == (0,)
    grads = torch.autograd.grad(x.sum(), list(ts.values()), allow_unused=True)
    assert grads[0].shape == ts[first].shape
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads)


@pytest.mark.parametrize("name", ["_", "True", "None", "__import__", "lambda"])
def test_any_var_name_the_grammar_accepts_works(name):
    layer = optlang.compile_string(f"problem p\nparam a\nvar {name}, y\nminimize ({name} - a)^2 + (y + a)^2\n")
    out = layer(torch.tensor(1.0, dtype=torch.float64))
    assert float(out[0]) == pytest.approx(1.0) and float(out.y) == pytest.approx(-1.0)
    assert float(layer.solve(torch.tensor(1.0, dtype=torch.float64))[name]) == pytest.approx(1.0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), exponent=st.sampled_from([100, 200, 300]))
def test_huge_finite_data_ends_in_statuses_not_a_torch_error(seed, exponent):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((3, 5, 3))
    A[0, 0, 0] = 10.0 ** exponent
    b = rng.standard_normal((3, 5))
    sol = optlang.compile_string("problem nnls\ndim m, n\nparam A[m, n], b[m]\nvar x[n]\n"
                                 "minimize 0.5 * sumsq(A @ x - b)\nsubject to\n  x >= 0\n").solve(
        A=torch.tensor(A), b=torch.tensor(b), warn=False)
    assert torch.isfinite(sol.x).all()
    assert len(sol.stats.status_names()) == 3


def test_too_deep_nesting_is_located_at_the_innermost_point():
    src = "problem p\nparam a\nvar x\nminimize " + "exp(" * 3000 + "x" + ")" * 3000 + " + (x - a)^2\n"
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(src, "t.opt")
    # the innermost `x`: after "minimize " (9 characters) and 3000 "exp(" (4 each), 1-based
    assert str(info.value).startswith(f"t.opt:4:{9 + 4 * 3000 + 1}: error: an expression is nested too deeply")


# -- fuzz: mutated examples that compile are called with random data --------------------------------
def _random_params(plan, rng, batch: tuple) -> dict:
    """Data of the declared shapes (each free dim 2), inside each param's declared domain."""
    dims = {d.name: d.value if d.value is not None else 2 for d in plan.dims}
    out = {}
    for p in plan.params:
        shape = batch + tuple(d if isinstance(d, int) else dims[d] for d in p.shape)
        t = rng.standard_normal(shape)
        d = p.domain
        if d.lo is not None and d.hi is not None:
            t = d.lo + (d.hi - d.lo) * rng.uniform(0.1, 0.9, shape)
        elif d.lo is not None:
            t = d.lo + 0.1 + np.abs(t)
        elif d.hi is not None:
            t = d.hi - 0.1 - np.abs(t)
        if d.psd or d.symmetric:
            t = t @ np.swapaxes(t, -1, -2) + np.eye(shape[-1])
        out[p.name] = torch.tensor(t)
    return out


@settings(max_examples=60, deadline=None)
@given(src=st.builds(lambda s: s, __import__("test_errors").mutants()), seed=st.integers(0, 2**32 - 1),
       batch=st.sampled_from([(), (2,), (0,)]))
def test_mutants_that_compile_end_in_a_result_with_statuses_or_a_call_error(src, seed, batch):
    try:
        layer = optlang.compile_string(src, name="t.opt")
    except optlang.OptError:
        return  # test_errors checks that these are located
    params = _random_params(layer.plan, np.random.default_rng(seed), batch)
    try:
        sol = layer.solve(**params, max_iter=50, warn=False)
    except CallError:
        return
    assert sol.stats.status.shape == sol.stats.converged.shape
    finite = torch.stack([torch.isfinite(v).all() for v in sol._values.values()]).all()
    # A non-finite output is only allowed where the element says it failed or did not converge.
    assert bool(finite) or not sol.stats.all_converged


@pytest.mark.parametrize("expr,caret", [("(1e300 * 1e300)", "^^^^^^^^^^^^^^^"), ("(0)^-1", "^^^^^^"), ("(-1)^0.5", "^^^^^^^^"),
                                        ("exp(1000)", "^^^^^^^^^")])
def test_constant_arithmetic_without_a_value_is_refused_where_written(expr, caret):
    """These used to print Python arithmetic that raised ZeroDivisionError (or complex) at call time."""
    src = f"problem p\ndim n\nparam u[n]\nvar x[n]\nminimize sumsq(x - u) + {expr} * sum(x)\n"
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(src, "t.opt")
    lines = str(info.value).splitlines()
    assert lines[0] == "t.opt:5:25: error: this constant expression has no finite real value"
    assert lines[2].strip() == caret


@settings(max_examples=40, deadline=None)
@given(src=__import__("fuzz_programs").programs(), seed=st.integers(0, 2**32 - 1),
       batch=st.sampled_from([(), (2,), (0,)]))
def test_random_programs_compile_or_fail_located_and_calls_end_in_statuses(src, seed, batch):
    try:
        layer = optlang.compile_string(src, name="t.opt")
    except optlang.OptError as err:
        lines = str(err).splitlines()
        assert lines[0].startswith("t.opt:") and ": error: " in lines[0], str(err)
        return
    try:
        sol = layer.solve(**_random_params(layer.plan, np.random.default_rng(seed), batch), max_iter=50, warn=False)
    except CallError:
        return
    finite = all(bool(torch.isfinite(v).all()) for v in sol._values.values())
    assert finite or not sol.stats.all_converged, "a non-finite solution reported converged"


def test_a_derived_constant_that_overflows_is_computed_not_printed_as_inf():
    """The Hessian of cos(1e300 t) has a factor 1e600: it used to fold to a constant printed as `inf`
    (NameError at call time). Now the factors stay apart, the solve breaks per element, and says so."""
    layer = optlang.compile_string("problem p\ndim n\nparam u[n]\nvar x[n]\n"
                                   "minimize sumsq(x - u) + cos(((dot(x, u) / 2) * 1e300))\n")
    import re

    from optlang.backends.torch.printer import print_plan

    assert not re.search(r"\binf\b", print_plan(layer.plan))
    sol = layer.solve(u=torch.ones(2, 3, dtype=torch.float64), warn=False)
    assert sol.stats.status_names() == ["failed", "failed"] and torch.isfinite(sol.x).all()


@pytest.mark.parametrize("expr", ["sin(sum(x)) / 0", "sum(log(x)) / ((0 / 1) * sqrt(1e-3))"])
def test_division_by_a_zero_constant_is_refused_where_written(expr):
    """Its derivative used to divide Python floats by 0 at call time (ZeroDivisionError)."""
    src = f"problem p\ndim n\nparam u[n]\nvar x[n]\nminimize sumsq(x - u) + {expr}\n"
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(src, "t.opt")
    assert str(info.value).startswith("t.opt:5:25: error: division by zero")


# ---- bounded compile cost (benchmarks/compile_cost.py measures it) -------------------------------

def _let_chain(k: int, step: str) -> str:
    lets = "\n".join(f"let a{i + 1} = {step.format(p=f'a{i}')}" for i in range(k))
    return f"problem p\ndim n\nparam c[n]\nvar x[n]\nlet a0 = x\n{lets}\n"


@pytest.mark.parametrize("step, objective", [
    ("{p} * {p} + {p}", "sum(square(a40)) + dot(c, x)"),
    ("exp({p}) + {p}", "sum(a40) + dot(c, x)"),
])
def test_a_chain_of_lets_that_each_use_the_last_twice_compiles(step, objective):
    """Its tree has 2^40 nodes, its DAG 40. The curvature rules, the nonsmooth check and node
    equality each walked the tree: 16 lets took over a minute, 40 would never end."""
    layer = optlang.compile_string(_let_chain(40, step) + f"minimize {objective}\n", "t.opt")
    sol = layer.solve(c=torch.ones(3, dtype=torch.float64), max_iter=3, warn=False)
    assert sol.x.shape == (3,)


def _balanced_sum(terms: list) -> str:
    if len(terms) == 1:
        return terms[0]
    half = len(terms) // 2
    return f"({_balanced_sum(terms[:half])} + {_balanced_sum(terms[half:])})"


def test_a_problem_past_the_size_limit_is_refused_at_its_statement():
    objective = _balanced_sum([f"{i + 1} * sumsq(x - {i})" for i in range(2000)])
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(f"problem p\ndim n\nparam c[n]\nvar x[n]\nminimize {objective} + dot(c, x)\n", "t.opt")
    message = str(info.value)
    assert message.startswith("t.opt:5:1: error: this problem has 12002 distinct subexpressions, more than "
                              "optlang compiles (at most 10000)")
    assert max(len(line) for line in message.splitlines()) < 200  # the line shown is cut around the caret


def test_a_source_past_the_length_limit_is_refused_where_it_is_reached():
    from optlang.syntax.parser import MAX_SOURCE_CHARS

    src = "problem p\nvar x\nminimize " + " + ".join(["square(x - 1)"] * (MAX_SOURCE_CHARS // 8))
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(src, "t.opt")
    head, shown, caret = str(info.value).splitlines()[:3]
    col = MAX_SOURCE_CHARS - len("problem p\nvar x\n") + 1
    assert head.startswith(f"t.opt:3:{col}: error: the source is {len(src)} characters long")
    assert shown.startswith("  ...") and shown.endswith("...") and len(shown) < 130
    assert shown[caret.index("^")] == src[MAX_SOURCE_CHARS]  # the first character past the limit


def test_a_long_line_is_cut_around_the_caret():
    src = "problem p\nvar x\nminimize " + " + ".join(["square(x - 1)"] * 40) + " + foo(x)\n"
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string(src, "t.opt")
    _, shown, caret = str(info.value).splitlines()[:3]
    assert shown.startswith("  ...") and shown.endswith("foo(x)")
    assert shown[caret.index("^"):].startswith("foo") and caret.strip() == "^^^"


def test_equal_nodes_built_apart_compare_equal_and_are_linked_once_found():
    from optlang.ir import algebra as A
    from optlang.ir.nodes import Input

    def chain(k):
        e = Input("var", "x", (3,))
        for _ in range(k):
            e = A.add(A.mul(e, e), e)
        return e

    one, two, other = chain(60), chain(60), A.add(chain(59), Input("var", "x", (3,)))
    assert one is not two and one == two and hash(one) == hash(two)
    assert one != other and other != one
    assert two.__dict__.get("_same") is one  # found equal: the next comparison is a pointer chase


# ---- the wall-clock safety net -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lasso", "qp", "deq", "newton"])
def test_a_solve_past_its_time_limit_stops_and_says_so(name, monkeypatch):
    """The deadline is looked at once per iteration; here it passes after the second look, so each
    solver (FISTA, the interior point, Anderson, Newton) stops after two iterations."""
    from optlang.solvers import pgd, result

    looks = []
    monkeypatch.setattr(result.Deadline, "passed", lambda self: looks.append(1) or len(looks) > 2)
    monkeypatch.setattr(pgd, "POLISH_AT_QUADRATIC", 0.0)  # Newton would finish the lasso in two iterations
    monkeypatch.setattr(pgd, "POLISH_AT_DIAGONAL", 0.0)
    if name == "newton":
        layer = optlang.compile_string("problem p\ndim n\nparam u[n]\nvar x[n]\n"
                                       "minimize sum(exp(x)) + sumsq(x - u) + sum(x^4)\n")
        params = {"u": torch.linspace(-4, 9, 12, dtype=torch.float64).reshape(3, 4)}
    else:
        from test_classes import BY_NAME
        import references as R

        ex = BY_NAME[name]
        one, _ = R.draw(ex.sample, 1, ex.fixed_size, (3,))
        layer, params = example(name), {n: torch.tensor(one[n], dtype=torch.float64) for n in ex.params}
    with pytest.warns(RuntimeWarning, match=r"did not converge .*\(3 time_limit"):
        sol = layer.solve(**params, tol=1e-14)
    assert sol.stats.status_names() == ["time_limit"] * 3
    assert int(sol.stats.iterations.max()) == 2
    assert all(bool(torch.isfinite(v).all()) for v in sol._values.values())


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "60"])
def test_a_time_limit_must_be_a_finite_positive_number(bad):
    with pytest.raises(CallError, match="option time_limit must be a"):
        example("sparsemax")(v=torch.zeros(2, 3), time_limit=bad)


def test_a_time_limit_in_the_file_is_checked_where_written():
    with pytest.raises(optlang.OptError) as info:
        optlang.compile_string("problem p\nvar x\nminimize square(x - 1)\noptions\n  time_limit = 0\n", "t.opt")
    assert str(info.value).startswith("t.opt:5:")
    assert "option time_limit must be a finite positive number" in str(info.value)


def test_the_call_matrix_has_no_crash_hang_or_quiet_wrong_answer():
    """benchmarks/call_matrix.py on the examples that cover a psd param, a prox class, a domain and
    a fixed point (the script runs all twelve)."""
    import io
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    import call_matrix

    cells = call_matrix.run(["qp", "lasso", "logistic", "deq"], limit=60.0, out=io.StringIO())
    bad = {k: v for k, v in cells.items() if v[0] in call_matrix.BAD}
    assert not bad
    assert {letter for letter, _ in cells.values()} == {"R", "E", "-"}
