"""Packaging: the import name `optlang` is shared with PyPI's unrelated LP package."""
import os
import shutil
import subprocess
import sys

import optlang


def test_marker_present():
    assert optlang.__optlang_diff__ is True


def test_shadowing_package_gives_a_clear_error(tmp_path):
    # Both distributions install an `optlang/` folder; when the other one's
    # __init__ wins, importing our modules must say what happened.
    here = os.path.dirname(optlang.__file__)
    fake = tmp_path / "optlang"
    shutil.copytree(here, fake, ignore=shutil.ignore_patterns("__pycache__"))
    (fake / "__init__.py").write_text("from .interface import Model  # PyPI's optlang (LP modelling)\n"
                                      "__version__ = '1.9.1'\n")
    (fake / "interface.py").write_text("class Model:\n    pass\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", "import optlang.runtime.layer"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert "is not optlang-diff" in proc.stderr
    assert "pip uninstall optlang" in proc.stderr
