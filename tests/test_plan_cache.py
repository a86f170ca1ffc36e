"""The plan cache: a problem compiled before is loaded, not derived again, and only when nothing
that went into it changed (source, name, compiler); a broken file or a compile error is never served."""
import glob
import os
import subprocess
import sys

import pytest
import torch

import optlang
from optlang.passes import pipeline
from optlang.runtime import plan_cache

SOURCE = "problem p\ndim n\nparam c[n]\nvar x[n]\nminimize 0.5 * sumsq(x - c)\nsubject to\n  x >= 0\n"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTLANG_CACHE_DIR", str(tmp_path))
    return tmp_path


def count_runs(monkeypatch):
    runs = []
    real = pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda text, name="<string>": runs.append(name) or real(text, name))
    return runs


def test_a_second_compile_loads_the_plan_and_solves_alike(cache_dir, monkeypatch):
    runs = count_runs(monkeypatch)
    first = optlang.compile_string(SOURCE, "p.opt")
    second = optlang.compile_string(SOURCE, "p.opt")
    assert runs == ["p.opt"] and len(glob.glob(str(cache_dir / "plan-*.pickle"))) == 1
    assert second.plan == first.plan and second.plan is not first.plan
    c = torch.tensor([[1.0, -2.0, 3.0], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    assert torch.equal(second(c=c), first(c=c))
    torch.testing.assert_close(first(c=c), torch.relu(c), rtol=0, atol=1e-12)


def test_the_key_covers_the_source_its_name_and_the_compiler(cache_dir, monkeypatch):
    runs = count_runs(monkeypatch)
    optlang.compile_string(SOURCE, "p.opt")
    optlang.compile_string(SOURCE, "q.opt")  # named differently: messages and comments quote the name
    optlang.compile_string(SOURCE.replace("0.5 *", "2 *"), "p.opt")
    monkeypatch.setattr(plan_cache, "compiler_hash", lambda: "an edited compiler")
    optlang.compile_string(SOURCE, "p.opt")
    assert runs == ["p.opt", "q.opt", "p.opt", "p.opt"]


def test_an_unreadable_cache_file_is_derived_again(cache_dir, monkeypatch):
    optlang.compile_string(SOURCE, "p.opt")
    (path,) = glob.glob(str(cache_dir / "plan-*.pickle"))
    with open(path, "wb") as fh:
        fh.write(b"not a pickle")
    runs = count_runs(monkeypatch)
    layer = optlang.compile_string(SOURCE, "p.opt")
    assert runs == ["p.opt"] and layer.plan.problem == "p"
    assert optlang.compile_string(SOURCE, "p.opt").plan == layer.plan and runs == ["p.opt"]  # rewritten


def test_a_compile_error_is_raised_every_time_and_never_cached(cache_dir):
    bad = SOURCE.replace("sumsq", "sumsqq")
    for _ in range(2):
        with pytest.raises(optlang.OptError, match=r"p\.opt:5:"):
            optlang.compile_string(bad, "p.opt")
    assert glob.glob(str(cache_dir / "plan-*.pickle")) == []


def test_a_fresh_process_with_a_cached_plan_imports_neither_sympy_nor_lark(cache_dir):
    code = ("import sys, torch, optlang\n"
            f"layer = optlang.compile_string({SOURCE!r}, 'p.opt')\n"
            "x = layer(c=torch.tensor([1.0, -1.0], dtype=torch.float64))\n"
            "assert float((x - torch.tensor([1.0, 0.0], dtype=torch.float64)).abs().max()) < 1e-12, x\n"
            "print(sorted(m for m in ('sympy', 'lark') if m in sys.modules))\n")
    env = dict(os.environ, OPTLANG_CACHE_DIR=str(cache_dir))
    run = lambda: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,  # noqa: E731
                                 check=True).stdout.strip()
    assert run() == "['lark', 'sympy']"  # the first compile derives the plan
    assert run() == "[]"


def test_a_plan_hashes_once_and_pickles_without_its_hash():
    """The cached hash is per process (str hashes are salted): a pickled plan must not carry it."""
    import dataclasses
    import pickle

    plan = optlang.compile_string("problem p\ndim n\nparam a[n]\nvar x[n]\nminimize sumsq(x - a)\n").plan
    h = hash(plan)
    assert plan.__dict__["_hash"] == h == hash(plan)
    again = pickle.loads(pickle.dumps(plan))
    assert "_hash" not in again.__dict__ and again == plan and hash(again) == h
    assert hash(dataclasses.replace(plan, problem="q")) != h
