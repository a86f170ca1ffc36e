"""The `optlang` command line: every subcommand on every example, exit codes, messages, solve round trips.

Each command runs both in-process (`main([...])`) and as `python -m optlang`
in a subprocess, from the repository root with paths relative to it.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import optlang
from optlang.cli import main
from optlang.passes.pipeline import check_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(f"examples/{p.name}" for p in (ROOT / "examples").glob("*.opt"))
STAGES = (["check"], ["ir"], ["conditions"], ["emit"], ["emit", "--backend", "torch"])
HAS_TRITON_PRINTER = importlib.util.find_spec("optlang.backends.triton.printer") is not None


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    """Run from the repository root, so paths in the output are `examples/...`."""
    monkeypatch.chdir(ROOT)


def run_cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python -m optlang ARGS` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "optlang", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=300)


def call(capsys, *args) -> tuple:
    """`main([...])` in-process: (exit status, stdout, stderr)."""
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


# ---- data for the examples ---------------------------------------------------------

SIZES = (7, 3, 4, 5)  # the dims of each example, in declaration order


def example_data(path: str, batch: int | None = None, seed: int = 0) -> dict:
    """Well-posed parameters for an example, from its declared shapes and domains."""
    problem = check_source((ROOT / path).read_text(), path)
    rng = np.random.default_rng(seed)
    sizes = {d.name: d.value or SIZES[i % len(SIZES)] for i, d in enumerate(problem.dims)}
    out = {}
    for i, p in enumerate(problem.params):
        shape = tuple(sizes.get(s, s) for s in p.shape)
        if batch and i == 0:
            shape = (batch,) + shape
        out[p.name] = _draw(rng, shape, p.domain)
    if {"lo", "hi"} <= out.keys():  # box_ls: a box that holds the origin
        out["lo"], out["hi"] = -np.abs(out["lo"]) - 0.1, np.abs(out["hi"]) + 0.1
    if {"G", "h", "b"} <= out.keys():  # qp: the origin is strictly feasible
        out["h"], out["b"] = np.abs(out["h"]) + 0.1, np.zeros_like(out["b"])
    if "W" in out:  # deq: a contraction, so the equilibrium is unique
        out["W"] = 0.5 * out["W"] / np.linalg.norm(out["W"], 2, axis=(-2, -1), keepdims=True)
    return out


def _draw(rng, shape, domain) -> np.ndarray:
    if domain.psd:  # symmetric positive definite, with the batch dims in front
        M = rng.normal(size=shape)
        return M @ np.swapaxes(M, -1, -2) / shape[-1] + np.eye(shape[-1])
    if domain.lo is not None and domain.hi is not None:
        lo, hi = domain.lo, domain.hi
        return lo + (hi - lo) * rng.uniform(0.05, 0.95, size=shape)
    if domain.lo is not None:
        return domain.lo + rng.uniform(0.5, 1.5, size=shape)
    if domain.hi is not None:
        return domain.hi - rng.uniform(0.5, 1.5, size=shape)
    return rng.normal(size=shape)


# ---- every command on every example ------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("command", STAGES, ids=" ".join)
def test_command_on_example(capsys, example, command):
    status, out, err = call(capsys, *command, example)
    assert (status, err) == (0, "")
    assert out.endswith("\n") and out.strip()
    proc = run_cli(*command, example)
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", out)


def test_check_output(capsys):
    status, out, _ = call(capsys, "check", "examples/ridge.opt")
    assert (status, out) == (0, "examples/ridge.opt: ok (problem ridge: 1 var, 3 params)\n")


def test_check_several_files_reports_each(capsys, tmp_path):
    bad = tmp_path / "bad.opt"
    bad.write_text("problem bad\nvar x\nroot x +\n")
    status, out, err = call(capsys, "check", "examples/kepler.opt", str(bad), "examples/nnls.opt")
    assert status == 1
    assert out == ("examples/kepler.opt: ok (problem kepler: 1 var, 2 params)\n"
                   "examples/nnls.opt: ok (problem nnls: 1 var, 2 params)\n")
    assert err.startswith(f"{bad}:3:")


def test_emit_names_the_backend(capsys):
    _, out, _ = call(capsys, "emit", "examples/ridge.opt")
    assert "backend: torch" in out.splitlines()[0]


# Examples the Triton backend refuses: README, "Backends" (paper_md's pairwise [N, N, D] values are rank 3).
TRITON_REFUSED = ("paper_md.opt",)


@pytest.mark.parametrize("example", EXAMPLES)
def test_emit_triton(capsys, example):
    status, out, err = call(capsys, "emit", example, "--backend", "triton")
    if HAS_TRITON_PRINTER and example.endswith(TRITON_REFUSED):
        assert (status, out) == (1, "") and 'use backend="torch"' in err
    elif HAS_TRITON_PRINTER:
        assert (status, err) == (0, "") and out.strip()
    else:
        assert (status, out) == (1, "")
        assert err == ("optlang emit: error: the Triton backend's printer is not available in this installation "
                       "(cannot import optlang.backends.triton.printer); use --backend torch\n")


# ---- solve ------------------------------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES)
def test_solve_round_trip(capsys, tmp_path, example):
    data = example_data(example, batch=2)
    np.savez(tmp_path / "params.npz", **data)
    out_path = tmp_path / "solution.npz"
    status, out, err = call(capsys, "solve", example, "--data", str(tmp_path / "params.npz"),
                            "--out", str(out_path))
    assert (status, err) == (0, "")
    layer = optlang.compile(example)
    expected = layer.solve(**{k: torch.as_tensor(v) for k, v in data.items()})
    var = layer.problem.vars[0].name
    duals = sorted(expected.duals)
    with np.load(out_path) as got:
        assert sorted(got.files) == sorted([var, *duals, "converged", "iterations", "residual", "status"])
        for label in duals:
            np.testing.assert_allclose(got[label], expected.duals[label].numpy(), rtol=1e-12, atol=1e-12)
        assert (got["status"] == 0).all()
        np.testing.assert_allclose(got[var], expected[var].numpy(), rtol=1e-12, atol=1e-12)
        assert got["converged"].dtype == bool and got["converged"].shape == (2,) and got["converged"].all()
        np.testing.assert_array_equal(got["iterations"], expected.stats.iterations.numpy())
        assert got["residual"].shape == (2,) and (got["residual"] < 1e-8).all()
    assert out.splitlines()[0] == f"{example}: solved problem {layer.problem.name} " \
                                  "(2 problems, batch shape (2,), float64)"
    assert f"  converged 2/2, iterations max {int(expected.stats.iterations.max())}" in out
    assert out.endswith(f"wrote {out_path} ({', '.join([var, *duals])}, converged, iterations, residual, status)\n")


@pytest.mark.parametrize("example", EXAMPLES)
def test_solve_in_a_subprocess(tmp_path, example):
    np.savez(tmp_path / "p.npz", **example_data(example))
    proc = run_cli("solve", example, "--data", str(tmp_path / "p.npz"), "--out", str(tmp_path / "s.npz"))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "converged 1/1" in proc.stdout
    with np.load(tmp_path / "s.npz") as got:
        assert got["converged"].shape == () and bool(got["converged"])


def test_solve_float32_and_options(capsys, tmp_path):
    np.savez(tmp_path / "p.npz", **example_data("examples/logistic.opt"))
    status, out, _ = call(capsys, "solve", "examples/logistic.opt", "--data", str(tmp_path / "p.npz"),
                          "--dtype", "float32", "--tol", "1e-4", "--max-iter", "50")
    assert status == 0 and "float32" in out.splitlines()[0]


def test_solve_not_converged_warns_and_exits_0(capsys, tmp_path):
    np.savez(tmp_path / "p.npz", **example_data("examples/nnls.opt", batch=3))
    status, out, err = call(capsys, "solve", "examples/nnls.opt", "--data", str(tmp_path / "p.npz"),
                            "--max-iter", "1", "--tol", "1e-14", "--out", str(tmp_path / "s.npz"))
    assert status == 0
    with np.load(tmp_path / "s.npz") as got:
        bad = [(int(i),) for i in np.flatnonzero(~got["converged"])]
    assert bad, "the test needs a solve that does not converge"
    assert f"converged {3 - len(bad)}/3" in out
    assert err.startswith(f"warning: problem 'nnls' did not converge at batch elements {bad} ")


def test_solve_var_named_like_a_stat(capsys, tmp_path):
    (tmp_path / "clash.opt").write_text("problem clash\nparam a\nvar residual\nroot residual - a\n")
    np.savez(tmp_path / "p.npz", a=2.0)
    status, out, _ = call(capsys, "solve", str(tmp_path / "clash.opt"), "--data", str(tmp_path / "p.npz"),
                          "--out", str(tmp_path / "s.npz"))
    assert status == 0
    with np.load(tmp_path / "s.npz") as got:
        assert sorted(got.files) == ["residual", "stats_converged", "stats_iterations", "stats_residual",
                                     "stats_status"]
        assert float(got["residual"]) == pytest.approx(2.0)


# ---- errors: exit 1, a message, no traceback -------------------------------------------

SYNTAX_ERROR = """\
examples_bad.opt:3:17: error: unexpected end of input; expected an operator, ')', ',' or '='
  minimize sumsq(x
                  ^
the '(' at 3:15 is never closed
"""


@pytest.mark.parametrize("command", STAGES + (["solve"],), ids=" ".join)
def test_syntax_error_message(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    Path("examples_bad.opt").write_text("problem bad\nvar x[n]\nminimize sumsq(x\n")
    assert call(capsys, *command, "examples_bad.opt") == (1, "", SYNTAX_ERROR)


def test_syntax_error_in_a_subprocess(tmp_path):
    (tmp_path / "examples_bad.opt").write_text("problem bad\nvar x[n]\nminimize sumsq(x\n")
    proc = run_cli("check", "examples_bad.opt", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", SYNTAX_ERROR)


def test_shape_error_message(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("shape.opt").write_text("problem s\ndim n, m\nparam A[m, n]\nvar x[m]\nminimize sumsq(A @ x)\n")
    assert call(capsys, "conditions", "shape.opt") == (1, "", textwrap.dedent("""\
        shape.opt:5:16: error: '@' needs matching inner dims
          minimize sumsq(A @ x)
                         ^^^^^
        the left side is [m, n] but the right side is [m]; expected the right side to be [n]
        """))


def test_unsupported_problem_fails_check_but_prints_ir(capsys, tmp_path):
    lasso = tmp_path / "lasso.opt"
    lasso.write_text("problem lasso\ndim n, d\nparam X[n, d], y[n], lam\nvar w[d]\n"
                     "minimize 0.5 * sumsq(X @ w - y) + lam * norm1(w)\n")
    status, _, err = call(capsys, "check", str(lasso))
    assert status == 1 and "the nonsmooth function norm1 is not supported here" in err
    status, out, err = call(capsys, "ir", str(lasso))
    assert (status, err) == (0, "") and "norm1(w)" in out


@pytest.mark.parametrize("command", STAGES + (["solve"],), ids=" ".join)
def test_missing_file(capsys, command):
    assert call(capsys, *command, "examples/nothere.opt") == (
        1, "", "examples/nothere.opt: error: cannot read the file: No such file or directory\n")


def test_missing_file_in_a_subprocess():
    proc = run_cli("ir", "examples/nothere.opt")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "examples/nothere.opt: error: cannot read the file: No such file or directory\n"


def test_not_utf8(capsys, tmp_path):
    (tmp_path / "bin.opt").write_bytes(b"\xff\xfe")
    status, _, err = call(capsys, "check", str(tmp_path / "bin.opt"))
    assert (status, err) == (1, f"{tmp_path / 'bin.opt'}: error: not UTF-8 text (byte 0); a .opt file is plain text\n")


NOT_NPZ = ("error: not an .npz archive; write the parameters with np.savez(path, NAME=array, ...), "
           "one array per parameter\n")


@pytest.mark.parametrize("content", [b"X = 1\n", b"", b"\x93NUMPY"], ids=["text", "empty", "npy"])
def test_bad_npz(capsys, tmp_path, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    assert call(capsys, "solve", "examples/ridge.opt", "--data", str(bad)) == (1, "", f"{bad}: {NOT_NPZ}")


def test_truncated_npz(capsys, tmp_path):
    np.savez(tmp_path / "p.npz", **example_data("examples/ridge.opt"))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "p.npz").read_bytes()[:100])
    status, out, err = call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "cut.npz"))
    assert (status, out) == (1, "")
    assert err.startswith(f"{tmp_path / 'cut.npz'}: error: cannot read the parameters: ")


def test_zip_that_is_not_npz(capsys, tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "p.npz", "w") as zf:
        zf.writestr("X.txt", "1 2 3")
    assert call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "p.npz")) == (
        1, "", f"{tmp_path / 'p.npz'}: error: 'X.txt' is not an array; write the parameters with np.savez\n")


def test_missing_npz(capsys, tmp_path):
    status, out, err = call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "none.npz"))
    assert (status, out) == (1, "")
    assert err == f"{tmp_path / 'none.npz'}: error: cannot read the parameters: No such file or directory; " \
                  "expected an .npz archive written by np.savez with one array per parameter\n"


def test_missing_parameter(capsys, tmp_path):
    data = example_data("examples/ridge.opt")
    del data["lam"]
    np.savez(tmp_path / "p.npz", **data)
    assert call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "p.npz")) == (
        1, "", f"{tmp_path / 'p.npz'}: error: missing parameter 'lam' for problem 'ridge'; "
               "pass every parameter by name: X, y, lam\n")


def test_missing_parameter_in_a_subprocess(tmp_path):
    np.savez(tmp_path / "p.npz", X=np.ones((4, 2)), lam=1.0)
    proc = run_cli("solve", "examples/ridge.opt", "--data", str(tmp_path / "p.npz"))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "missing parameter 'y'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("data, message", [
    ({"X": np.ones((4, 2)), "y": np.ones(4), "lam": 1.0, "q": 1.0},
     "unexpected parameter 'q' for problem 'ridge'; its parameters are X, y, lam"),
    ({"X": np.ones((4, 2)), "y": np.ones(4), "lam": -1.0}, "parameter 'lam': must be > 0, found -1"),
    ({"X": np.array(["a", "b"]), "y": np.ones(4), "lam": 1.0},
     "parameter 'X': expected real numbers, found an array of dtype <U1"),
])
def test_bad_parameters(capsys, tmp_path, data, message):
    np.savez(tmp_path / "p.npz", **data)
    assert call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "p.npz")) == (
        1, "", f"{tmp_path / 'p.npz'}: error: {message}\n")


def test_solve_without_data(capsys):
    assert call(capsys, "solve", "examples/ridge.opt") == (
        1, "", "optlang solve: error: problem 'ridge' needs its parameters (X, y, lam); "
               "pass them with --data params.npz\n")


def test_bad_option_value(capsys, tmp_path):
    np.savez(tmp_path / "p.npz", **example_data("examples/ridge.opt"))
    status, _, err = call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "p.npz"), "--tol=-1")
    assert (status, err) == (1, "optlang solve: error: option tol must be a finite positive number (found -1.0)\n")


def test_unwritable_out(capsys, tmp_path):
    np.savez(tmp_path / "p.npz", **example_data("examples/ridge.opt"))
    target = tmp_path / "no" / "s.npz"
    status, _, err = call(capsys, "solve", "examples/ridge.opt", "--data", str(tmp_path / "p.npz"),
                          "--out", str(target))
    assert (status, err) == (1, f"{target}: error: cannot write the solution: No such file or directory\n")


# ---- usage: exit 2 ------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [], ["frobnicate"], ["ir"], ["check"], ["emit", "examples/ridge.opt", "--backend", "jax"],
    ["solve", "examples/ridge.opt", "--tol", "abc"], ["ir", "examples/ridge.opt", "--nope"],
], ids=repr)
def test_usage_errors_exit_2(capsys, args):
    status, out, err = call(capsys, *args)
    assert (status, out) == (2, "")
    assert err.startswith("usage: optlang")


def test_usage_error_in_a_subprocess():
    proc = run_cli("frobnicate")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert "invalid choice: 'frobnicate'" in proc.stderr


@pytest.mark.parametrize("command", ["", "check", "ir", "conditions", "emit", "solve"])
def test_help(capsys, command):
    args = [command, "--help"] if command else ["--help"]
    status, out, err = call(capsys, *args)
    assert (status, err) == (0, "")
    assert out.startswith(f"usage: optlang {command}".rstrip() + " ")
    assert "exit status: 0 success, 1 a problem in the .opt file or the data" in out
    if command == "solve":
        assert "still exits 0" in " ".join(out.split())


def test_help_in_a_subprocess():
    proc = run_cli("solve", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: optlang solve")


def test_version(capsys):
    assert call(capsys, "--version") == (0, f"optlang {optlang.__version__}\n", "")
    proc = run_cli("--version")
    assert (proc.returncode, proc.stdout) == (0, f"optlang {optlang.__version__}\n")
