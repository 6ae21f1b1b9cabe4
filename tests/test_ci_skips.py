"""Under CI=true a skipped test fails the run: a skip means a missing peer, and CI has all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs pytest in a subprocess: the full run only.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import pytest

def test_that_skips():
    pytest.skip("no such peer here")

@pytest.mark.skipif(True, reason="marked off")
def test_marked_off():
    pass

def test_that_runs():
    assert True
"""


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            str(probe),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_skip_fails_the_run_under_ci(tmp_path: Path) -> None:
    result = _pytest(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 error" in result.stdout
    assert (
        "skipped under CI=true, where every peer must be present: Skipped: no such peer here"
        in (result.stdout)
    )
    assert "marked off" in result.stdout


def test_a_skip_stays_a_skip_with_its_reason_elsewhere(tmp_path: Path) -> None:
    result = _pytest(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout
    assert "no such peer here" in result.stdout
