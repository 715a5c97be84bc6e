"""The compiled kernels run as Python, in child processes: the GPU's without a GPU, numba's without compiling.

* ``cuda_sim_cases.py`` under numba's CUDA simulator: every primitive against the NumPy reference, bit for
  bit, on small random lattices, and the public API end to end. ``NUMBA_ENABLE_CUDASIM`` is read once, when
  numba.cuda is first imported, and other tests import numba in this worker; hence a fresh interpreter.
* ``numba_python_cases.py`` with ``NUMBA_DISABLE_JIT=1`` (read when numba is imported): the numba backend's
  kernels as plain Python against the reference, every branch of them.
* ``cuda_ptx_check.py``: every kernel compiled to PTX for sm_90, which the simulator (plain Python) cannot
  check; skipped where numba-cuda's NVVM library is not installed.

The children start together, so they share the wall-clock time. When this process runs under coverage, the two
Python-mode children run under it too, writing their data beside this process's for it to combine: compiled,
those kernels are machine code that coverage cannot see.
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

# One worker runs the module: its fixture starts the simulator and compiled-as-Python runs once, not once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cuda-sim")]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CATALYTIC_CUDA_DEVICE", "CATALYTIC_BACKEND")}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.pop("NUMBA_DISABLE_JIT", None)
    return {**env, **extra}


def _measured() -> list[str]:
    """The interpreter's arguments that run a child under coverage when this process is measured."""
    import coverage

    current = coverage.Coverage.current()
    if current is None:
        return []
    data_file = os.path.abspath(current.config.data_file)
    branch = ["--branch"] if current.config.branch else []
    return [
        "-m",
        "coverage",
        "run",
        "--parallel-mode",
        f"--data-file={data_file}",
        f"--rcfile={ROOT / 'pyproject.toml'}",
        *branch,
    ]


def _cases(module: str, *options: str) -> list[str]:
    return [*_measured(), "-m", "pytest", str(HERE / module), "-q", "-p", "no:cacheprovider", *options]


@pytest.fixture(scope="module")
def children() -> Iterator[dict[str, subprocess.Popen[str]]]:
    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    strict = ("-o", "addopts=--strict-markers")
    # NumPy's uint64 scalars warn where the compiled hash wraps silently
    wraps = ("-W", "ignore:overflow encountered:RuntimeWarning")
    running = {
        "simulator": start(_cases("cuda_sim_cases.py", *strict), _env(NUMBA_ENABLE_CUDASIM="1")),
        "numba": start(_cases("numba_python_cases.py", *strict, *wraps), _env(NUMBA_DISABLE_JIT="1")),
        "ptx": start([str(HERE / "cuda_ptx_check.py")], _env()),
    }
    yield running
    # a child whose test ran in another worker is stopped, and every child's output pipe is drained and closed
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


def test_every_numba_kernel_as_python_matches_the_reference(children: dict[str, subprocess.Popen[str]]) -> None:
    code, output = _finish(children["numba"])
    assert code == 0, output[-8000:]
    summary = output.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    assert int(passed.group(1)) >= 20, summary
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
