"""The layer as a PyTorch citizen: positional parameters, nn.Sequential, pickling and torch.save,
warm starts, verbose solves and the objective at the solution."""
from __future__ import annotations

import io
import pickle

import pytest
import torch
from hypothesis import given, settings, strategies as st

import optlang
import problems as P
import references as R
from optlang.errors import CallError
from test_classes import BY_NAME, TIGHT, example

TWO_VARS = optlang.compile_string("problem two\ndim n\nparam a[n], b[n]\nvar x[n], y[n]\n"
                                  "minimize sumsq(x - a) + sumsq(y - b) + 0.1 * sumsq(x - y)\n")


def _params(name: str, seed: int = 0, batch=(3,)):
    ex = BY_NAME[name]
    params, _ = R.draw(ex.sample, seed, ex.fixed_size, batch)
    return ex, {n: torch.tensor(params[n], dtype=torch.float64) for n in ex.params}


def test_positional_parameters_in_declaration_order():
    ex, kw = _params("qp")
    by_name = example("qp").solve(**kw, tol=TIGHT)
    positional = example("qp").solve(*(kw[n] for n in ex.params), tol=TIGHT)
    assert torch.equal(by_name.z, positional.z)
    mixed = example("qp")(*(kw[n] for n in ex.params[:2]), **{n: kw[n] for n in ex.params[2:]}, tol=TIGHT)
    assert torch.equal(by_name.z, mixed)


def test_positional_errors_name_the_parameters():
    ex, kw = _params("sparsemax")
    with pytest.raises(CallError, match=r"takes 1 parameter\(s\) \(v\), 2 given positionally"):
        example("sparsemax")(kw["v"], kw["v"])
    with pytest.raises(CallError, match="parameter 'v' given both positionally and by name"):
        example("sparsemax")(kw["v"], v=kw["v"])


def test_a_one_param_layer_sits_in_sequential_and_trains():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6, dtype=torch.float64), example("sparsemax"))
    out = model(torch.randn(5, 4, dtype=torch.float64))
    assert torch.allclose(out.sum(-1), torch.ones(5, dtype=torch.float64))
    out.square().sum().backward()
    assert model[0].weight.grad is not None and torch.isfinite(model[0].weight.grad).all()


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_solutions_and_layers_pickle_and_torch_save():
    ex, kw = _params("portfolio")
    sol = example("portfolio").solve(**kw)
    for back in (pickle.loads(pickle.dumps(sol)), _roundtrip(sol)):
        assert torch.equal(back.w, sol.w) and torch.equal(back.duals["budget"], sol.duals["budget"])
        assert torch.equal(back.stats.converged, sol.stats.converged)
    out = TWO_VARS(torch.zeros(2), torch.ones(2))
    for back in (pickle.loads(pickle.dumps(out)), _roundtrip(out)):
        assert type(back).__name__ == "two_solution" and back._fields == ("x", "y") and torch.equal(back.y, out.y)
    layer = pickle.loads(pickle.dumps(example("portfolio")))
    assert torch.equal(layer.solve(**kw).w, sol.w)
    assert torch.equal(_roundtrip(example("portfolio")).solve(**kw).w, sol.w)


def test_var_names_python_reserves_still_give_a_tuple():
    layer = optlang.compile_string("problem p\nparam a\nvar _x, y\nminimize (_x - a)^2 + (y + a)^2\n")
    out = layer(torch.tensor(2.0, dtype=torch.float64))
    assert float(out[0]) == pytest.approx(2.0) and float(out.y) == pytest.approx(-2.0)
    assert pickle.loads(pickle.dumps(out))[0] == out[0]


@pytest.mark.parametrize("name", ["qp", "portfolio", "lasso", "sparsemax", "deq", "svm"])
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_warm_start_from_the_solution_needs_fewer_iterations_and_gives_the_same_answer(name, seed):
    ex, kw = _params(name, seed)
    layer = example(name)
    cold = layer.solve(**kw, tol=TIGHT)
    warm = layer.solve(**kw, tol=TIGHT, init=cold.warm_start())
    assert warm.stats.all_converged
    assert bool((warm.stats.iterations <= cold.stats.iterations).all())
    var = ex.outputs[0]
    assert float((warm[var] - cold[var]).abs().max()) <= 1e-7


def test_a_warm_start_by_var_name_and_its_gradient_ignores_it():
    c = P.make_case(P.BY_NAME["ridge"], 5, batch=(4,))
    ts = c.tensors(requires_grad=True)
    layer = P.layer("ridge")
    cold = layer.solve(**ts)
    (g_cold,) = torch.autograd.grad(cold.w.sum(), ts["lam"])
    start = torch.ones(3, dtype=torch.float64, requires_grad=True)  # broadcast over the batch
    warm = layer.solve(**ts, init={"w": start})
    (g_warm,) = torch.autograd.grad(warm.w.sum(), ts["lam"])
    assert torch.allclose(g_warm, g_cold, atol=1e-10) and start.grad is None
    with pytest.raises(CallError, match="init: 'v' is not a var of problem 'ridge'; its vars are w"):
        layer.solve(**ts, init={"v": start})
    with pytest.raises(CallError, match=r"init: var 'w' has shape \(3,\)"):
        layer.solve(**ts, init={"w": torch.ones(7)})


def test_verbose_logs_one_line_per_solve(capsys):
    _, kw = _params("qp")
    example("qp").solve(**kw, verbose=True)
    err = capsys.readouterr().err
    assert err.startswith("optlang: qp: ipm, 3 element(s), 3 converged, iterations <= ") and err.count("\n") == 1


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_objective_is_the_value_as_written(seed):
    # lasso: the prox term is part of it; portfolio: maximize reports the maximized value.
    _, kw = _params("lasso", seed)
    sol = example("lasso").solve(**kw)
    w = sol.w.detach()
    want = 0.5 * (kw["X"] @ w[..., None] - kw["y"][..., None]).square().sum((-1, -2)) + kw["lam"] * w.abs().sum(-1)
    assert torch.allclose(sol.objective, want, rtol=1e-12, atol=1e-12)
    _, kw = _params("portfolio", seed)
    sol = example("portfolio").solve(**kw)
    w = sol.w.detach()
    quad = (w[..., None, :] @ kw["Sigma"] @ w[..., :, None])[..., 0, 0]
    assert torch.allclose(sol.objective, (kw["mu"] * w).sum(-1) - 0.5 * kw["gamma"] * quad, rtol=1e-12, atol=1e-12)
    assert example("deq").solve(**_params("deq", seed)[1]).objective is None


def test_the_objective_is_differentiable_envelope_theorem():
    """d f(x*(lam), lam) / d lam = df/dlam at x* (the solution's own change does not count)."""
    c = P.make_case(P.BY_NAME["ridge"], 9)
    ts = c.tensors(requires_grad=True)
    sol = P.layer("ridge").solve(**ts, tol=TIGHT)
    (g,) = torch.autograd.grad(sol.objective, ts["lam"])
    assert float(g) == pytest.approx(0.5 * float(sol.w.detach().square().sum()), rel=1e-8)


def test_the_objective_is_computed_when_read_and_refused_after_in_place_changes():
    """sol.objective is evaluated on first read, from the call's tensors: it matches an eager value,
    keeps the call's autograd mode, pickles as a tensor, and is refused (not silently recomputed at
    new values) once a parameter has been changed in place."""
    kw = P.make_case(P.BY_NAME["ridge"], 3).tensors()
    layer = P.layer("ridge")
    with torch.no_grad():
        sol = layer.solve(**kw)
    assert not sol.objective.requires_grad
    w = sol.w
    want = 0.5 * (kw["X"] @ w[..., None] - kw["y"][..., None]).square().sum((-1, -2)) \
        + 0.5 * kw["lam"] * w.square().sum(-1)
    assert torch.allclose(sol.objective, want, rtol=1e-12)
    again = pickle.loads(pickle.dumps(layer.solve(**kw)))
    assert torch.allclose(again.objective, want, rtol=1e-12)
    sol = layer.solve(**kw)
    kw["y"].add_(1.0)
    with pytest.raises(CallError, match="modified in place"):
        sol.objective
