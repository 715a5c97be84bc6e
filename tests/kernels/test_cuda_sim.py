"""The GPU backend's kernels under numba's CUDA simulator, in a child pytest.

``NUMBA_ENABLE_CUDASIM`` is read once, when numba.cuda is first imported, and other tests import numba in
this worker; so the simulated cases (``cuda_sim_cases.py``: every primitive against the NumPy reference, bit
for bit, on small random lattices) run in a fresh interpreter with the variable set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("cuda_sim_cases.py")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simulated_run() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONHASHSEED": "0"}
    env.pop("CATALYTIC_CUDA_DEVICE", None)
    env.pop("CATALYTIC_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-q", "-p", "no:cacheprovider", "-o", "addopts=--strict-markers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def test_every_kernel_matches_the_reference_under_the_simulator(
    simulated_run: subprocess.CompletedProcess[str],
) -> None:
    summary = simulated_run.stdout.strip().splitlines()[-1] if simulated_run.stdout.strip() else ""
    assert simulated_run.returncode == 0, simulated_run.stdout[-6000:] + simulated_run.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    # Each primitive on each lattice: a collection that silently shrank would pass on nothing.
    assert int(passed.group(1)) >= 60, summary
    assert "failed" not in summary and "error" not in summary, summary


def test_the_cases_refuse_to_run_without_the_simulator() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "CATALYTIC_CUDA_DEVICE")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"{CASES}::test_label", "-q", "-x", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "NUMBA_ENABLE_CUDASIM=1" in result.stdout
