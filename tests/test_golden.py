"""Golden files: `optlang ir|conditions|emit` on every example, compared with tests/golden/<example>.<stage>.

Refresh them after an intended change, then read the diff:

    OPTLANG_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

Stages: `ir`, `conditions`, `emit-torch`, and `emit-triton`. Where the Triton
backend refuses an example (it stays PyTorch-only), the golden file pins the
error message instead, so the refusal stays clear. The commands run from the repository root with the path
`examples/<name>.opt`, so the files hold no machine-specific paths.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from optlang.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.opt"))
UPDATE = os.environ.get("OPTLANG_UPDATE_GOLDEN") == "1"
STAGES = {
    "ir": ["ir"],
    "conditions": ["conditions"],
    "emit-torch": ["emit", "--backend", "torch"],
    "emit-triton": ["emit", "--backend", "triton"],
}


def _needs(stage: str):
    """Skip the Triton stage while its printer does not exist."""
    if stage == "emit-triton" and importlib.util.find_spec("optlang.backends.triton.printer") is None:
        pytest.skip("backends/triton/printer.py does not exist yet")


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("example", EXAMPLES)
def test_golden(capsys, monkeypatch, example, stage):
    _needs(stage)
    monkeypatch.chdir(ROOT)
    status = main([*STAGES[stage][:1], f"examples/{example}.opt", *STAGES[stage][1:]])
    captured = capsys.readouterr()
    if stage == "emit-triton" and status == 1:
        assert captured.out == "" and "backend=\"torch\"" in captured.err
        got = "# refused:\n" + captured.err
    else:
        assert (status, captured.err) == (0, "")
        got = captured.out
    path = GOLDEN / f"{example}.{stage}"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got, encoding="utf-8")
        return
    assert path.exists(), f"no golden file {path.relative_to(ROOT)}; create it with OPTLANG_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    assert got == expected, (
        f"`optlang {' '.join(STAGES[stage])} examples/{example}.opt` differs from {path.relative_to(ROOT)}; "
        "if the change is intended, refresh with OPTLANG_UPDATE_GOLDEN=1 and review the diff"
    )


def test_no_stale_golden_files():
    """Every golden file belongs to an example and a stage (a renamed example leaves none behind)."""
    known = {f"{e}.{s}" for e in EXAMPLES for s in STAGES}
    stale = sorted(p.name for p in GOLDEN.iterdir() if p.is_file() and p.name not in known)
    assert not stale, f"golden files with no example or stage: {stale}; delete them"
