"""The GPU backend's kernels without a GPU, in child processes.

* ``cuda_sim_cases.py`` under numba's CUDA simulator: every primitive against the NumPy reference, bit for
  bit, on small random lattices, and the public API end to end. ``NUMBA_ENABLE_CUDASIM`` is read once, when
  numba.cuda is first imported, and other tests import numba in this worker; hence a fresh interpreter.
* ``cuda_ptx_check.py``: every kernel compiled to PTX for sm_90, which the simulator (plain Python) cannot
  check; skipped where numba-cuda's NVVM library is not installed.

Both children start together, so they share the wall-clock time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SKIP_EXIT = 3

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CATALYTIC_CUDA_DEVICE", "CATALYTIC_BACKEND")}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def children() -> Iterator[dict[str, subprocess.Popen[str]]]:
    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    cases = ["-m", "pytest", str(HERE / "cuda_sim_cases.py"), "-q", "-p", "no:cacheprovider"]
    running = {
        "simulator": start([*cases, "-o", "addopts=--strict-markers"], _env(NUMBA_ENABLE_CUDASIM="1")),
        "ptx": start([str(HERE / "cuda_ptx_check.py")], _env()),
    }
    yield running
    for child in running.values():
        if child.poll() is None:
            child.kill()
            child.communicate()


def _finish(child: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = child.communicate(timeout=280)
    return child.returncode, output


def test_every_kernel_matches_the_reference_under_the_simulator(children: dict[str, subprocess.Popen[str]]) -> None:
    code, output = _finish(children["simulator"])
    assert code == 0, output[-8000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    # Each primitive on each lattice: a collection that silently shrank would pass on nothing.
    assert int(passed.group(1)) >= 70, summary
    assert "failed" not in summary and "error" not in summary, summary


def test_every_kernel_compiles_for_the_device(children: dict[str, subprocess.Popen[str]]) -> None:
    code, output = _finish(children["ptx"])
    if code == SKIP_EXIT:
        pytest.skip(f"cannot compile PTX here: {output.strip().splitlines()[-1]}")
    assert code == 0, output[-8000:]
    assert re.search(r"^(\d+) of \1 kernels compiled$", output, flags=re.MULTILINE), output[-2000:]


def test_the_cases_refuse_to_run_without_the_simulator() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"{HERE / 'cuda_sim_cases.py'}::test_label",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "NUMBA_ENABLE_CUDASIM=1" in result.stdout
