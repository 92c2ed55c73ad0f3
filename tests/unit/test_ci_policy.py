"""Under CI a skipped tier fails the run (only CUDA-only checks may skip)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

CASES = """
import pytest

def test_needs_data():
    pytest.skip("the Chorus Icecat catalog is not at /nowhere")

def test_needs_cuda():
    pytest.skip("no CUDA device")

@pytest.fixture
def node():
    pytest.skip("no OpenSearch node answers")

def test_needs_node(node):
    assert node

def test_runs():
    assert 1 + 1 == 2
"""


def _run(tmp_path, ci: str) -> str:
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "tests.ci_policy",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_cases.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out.stdout + out.stderr


def test_under_ci_a_skip_fails_unless_it_is_for_missing_hardware(tmp_path) -> None:
    out = _run(tmp_path, "true")
    # a skip in a test fails it; a skip in a fixture is an error (both fail the run)
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out, out
    assert "FAILED test_cases.py::test_needs_data" in out and "every tier must run" in out
    assert (
        "ERROR test_cases.py::test_needs_node" in out and "SKIPPED [1] test_cases.py:8: no CUDA device" in out
    )


def test_outside_ci_skips_stay_skips(tmp_path) -> None:
    out = _run(tmp_path, "")
    assert "1 passed" in out and "3 skipped" in out, out
