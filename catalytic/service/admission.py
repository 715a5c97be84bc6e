"""Admission against memory: what a job will need, measured per operation, set against what the container has.

Each job runs in a worker process that materialises its lattice, runs one operation and streams an array
result out (:func:`catalytic.service.results.write_result`). :data:`BYTES_PER_VERTEX` is the peak resident
memory that adds per vertex, by operation, measured with :func:`measure_peak` (``bench memory_bound`` and
``tests/service/test_memory_bound.py`` measure it again and hold the table to it). The container's memory
is read from its cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else the machine's physical
memory, unless ``CATALYTIC_MEMORY_LIMIT_BYTES`` says otherwise.

Work that could never fit (its estimate over the budget: the limit less ``CATALYTIC_MEMORY_RESERVED_BYTES``,
shared among the server processes) is refused up front with 413 naming the limit. Work that fits waits in
the queue until the jobs running here leave room for it (:class:`MemoryGate`), so several large jobs are run
one after another, never together past the limit.

GPU jobs are admitted against device memory as well: :data:`DEVICE_BYTES_PER_VERTEX` is what the ``cupy``
backend allocates on the device per vertex, by operation, and a GPU worker claims a GPU job only while its
estimate fits the device's free memory less ``CATALYTIC_DEVICE_MEMORY_RESERVED_BYTES`` (:func:`device_memory`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "BYTES_PER_VERTEX",
    "DEVICE_BYTES_PER_VERTEX",
    "MemoryGate",
    "device_job_bytes",
    "device_memory",
    "estimate_job_bytes",
    "measure_peak",
    "memory_limit",
    "spec_job_bytes",
]

BYTES_PER_VERTEX: dict[tuple[str, bool], float] = {
    # (operation, weighted): bytes per vertex of a job worker's peak, measured on a 2-core VM (numba backend)
    # as the slope between 2e6 and 8e6 vertices, rounded up by about 15 %: path 10.0, field 10.5,
    # components 13.0, analyze 13.0; weighted 33.1, 32.4, 28.8, 29.0 (the uploaded weights arrive as bytes and
    # the lattice holds its float64 copy).
    ("shortest_path", False): 12.0,
    ("shortest_path", True): 38.0,
    ("distance_field", False): 12.0,
    ("distance_field", True): 38.0,
    ("components", False): 15.0,
    ("components", True): 34.0,
    ("analyze", False): 15.0,
    ("analyze", True): 34.0,
}
"""Peak bytes per vertex of one job, by (operation, weighted); measured peaks stay under these."""

_OVERHEAD = 32 * 2**20
"""Bytes a job adds whatever its size (a result being written, index arrays, the interpreter's own growth)."""


def estimate_job_bytes(operation: str, vertices: int, weighted: bool) -> int:
    """Upper estimate of the peak resident bytes a job worker adds for one job.

    Examples
    --------
    >>> estimate_job_bytes("distance_field", 10**6, False) // 2**20
    43
    """
    return int(vertices * BYTES_PER_VERTEX[(operation, weighted)]) + _OVERHEAD


def spec_job_bytes(operation: str, spec: dict[str, Any]) -> int:
    """:func:`estimate_job_bytes` of a job on the lattice ``spec`` describes (its shape and whether it is weighted)."""
    vertices = 1
    for n in spec["shape"]:
        vertices *= int(n)
    return estimate_job_bytes(operation, vertices, bool(spec.get("weights")))


DEVICE_BYTES_PER_VERTEX: dict[tuple[str, bool], float] = {
    # Counted from the arrays the cupy backend allocates (int32 indices), rounded up by about 25 %; not measured
    # on a device. Keys: (operation, weighted).
    # Unweighted searches: shortest_path holds two int32 distance fields (bidirectional), the open mask, bit-packed
    # frontier rings and visited sets; distance_field one int32 field, the mask, rings and visited set.
    ("shortest_path", False): 12.0,
    ("distance_field", False): 8.0,
    # Weighted (near-far relaxation): float64 costs and weights, the mask, pending and reached bits; a path query
    # also keeps the costs' upper bounds (another float64 field).
    ("shortest_path", True): 32.0,
    ("distance_field", True): 22.0,
    # components and analyze: int32 labels, the mask, and the label kernels' 0.25 B of temporaries
    # (catalytic.kernels.cupy_backend.LABEL_TEMPORARY_BYTES_PER_VERTEX); weights play no part.
    ("components", False): 7.0,
    ("components", True): 7.0,
    ("analyze", False): 7.0,
    ("analyze", True): 7.0,
}
"""Device bytes per vertex of one GPU job, by operation and weights (past 2**31 vertices indices are int64: twice)."""

_DEVICE_OVERHEAD = 64 * 2**20
"""Device bytes a GPU job adds whatever its size (geometry tables, kernel launch state, CuPy's pool slack)."""


def device_job_bytes(operation: str, spec: dict[str, Any]) -> int:
    """Upper estimate of the device bytes a GPU job on the lattice ``spec`` describes allocates.

    Examples
    --------
    >>> device_job_bytes("distance_field", {"shape": [1000, 1000]}) // 2**20
    71
    """
    vertices = 1
    for n in spec["shape"]:
        vertices *= int(n)
    per_vertex = DEVICE_BYTES_PER_VERTEX[operation, bool(spec.get("weights"))] * (2 if vertices > 2**31 - 1 else 1)
    return int(vertices * per_vertex) + _DEVICE_OVERHEAD


def device_memory(override: int | None = None) -> tuple[int, str] | None:
    """Free device memory of this process's GPU, and where that figure came from.

    Parameters
    ----------
    override : int, optional
        CATALYTIC_DEVICE_MEMORY_BYTES: the device's memory, for a device that cannot be asked (numba's CUDA
        simulator) or to give jobs less than the whole device.

    Returns
    -------
    (int, str) or None
        Bytes and ``"setting"`` (the jobs running here are not yet subtracted) or ``"device"`` (CuPy's
        ``Device().mem_info``, what is free now); None when there is no device to ask.
    """
    if override is not None:
        return int(override), "setting"
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return None
    try:
        free, _total = cupy.cuda.Device().mem_info
    except Exception:  # CuPy's runtime error class cannot be named without importing it first
        return None
    return int(free), "device"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_limit(override: int | None = None, cgroup_root: str = "/sys/fs/cgroup") -> tuple[int, str]:
    """The memory this service may use, and where that figure came from.

    Parameters
    ----------
    override : int, optional
        CATALYTIC_MEMORY_LIMIT_BYTES.
    cgroup_root : str
        Where the cgroup file system is mounted.

    Returns
    -------
    (int, str)
        Bytes, and ``"setting"``, ``"cgroup v2"``, ``"cgroup v1"`` or ``"physical memory"``.
    """
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if override is not None:
        return int(override), "setting"
    root = Path(cgroup_root)
    # The process's own cgroup (v2: one unified line "0::/path"); a limit set there or on the mount root counts.
    own = ""
    try:
        for line in Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines():
            if line.startswith("0::"):
                own = line[3:].strip("/")
    except OSError:
        pass
    for candidate in (root / own / "memory.max", root / "memory.max"):
        value = _read_int(candidate)
        if value is not None and value < physical:  # "max" (no limit) is not a number
            return value, "cgroup v2"
    value = _read_int(root / "memory" / "memory.limit_in_bytes")
    if value is not None and value < physical:  # v1 writes a huge number for "no limit"
        return value, "cgroup v1"
    return physical, "physical memory"


class MemoryGate:
    """Bytes of memory shared by the jobs of one server process: a job starts when its estimate fits.

    Parameters
    ----------
    budget : int
        Bytes the jobs of this process may hold together.
    """

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self.held = 0
        self._changed = asyncio.Condition()

    def fits_ever(self, needed: int) -> bool:
        """Whether a job of ``needed`` bytes fits at all (the budget, with nothing else running)."""
        return needed <= self.budget

    async def acquire(self, needed: int) -> None:
        """Wait until ``needed`` bytes fit beside the jobs running (a job over the budget runs alone)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.held == 0 or self.held + needed <= self.budget)
            self.held += needed

    async def release(self, needed: int) -> None:
        """Give back what :meth:`acquire` took."""
        async with self._changed:
            self.held -= needed
            self._changed.notify_all()


_MEASURE = """
import json, resource, sys, tempfile
from catalytic.service.compute import execute_task, materialise
from catalytic.service.results import write_result
spec, arrays, operation, params = json.loads(sys.argv[1]), {}, sys.argv[2], json.loads(sys.argv[3])
import numpy as np
from catalytic.lattice import Lattice
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
task = {"operation": operation, "spec": spec, "arrays": {}, "params": params, "backend": "numba", "memory": "auto",
        "max_sizes": 10000}
small = dict(task, spec={"shape": [4, 4]}, params={})
if "sources" in params:
    small["params"] = {"sources": [[0, 0]]}
if "start" in params:
    small["params"] = {"start": [0, 0], "goal": [3, 3]}
# The kernels this operation calls (the weighted ones too) compiled or loaded before the baseline.
execute_task(small, Lattice((4, 4), weights=np.ones((4, 4)) if sys.argv[4] else None))
# Compiling can peak far above what a job adds: restart the high-water mark (VmHWM) after it.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
def high_water():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
with tempfile.TemporaryDirectory() as root:
    base = rss()
    if sys.argv[4]:  # the uploaded weights a job's task carries, read without a transient copy
        raw = bytearray(8 * int(np.prod(spec["shape"])))
        with open(sys.argv[4], "rb") as handle:
            handle.readinto(raw)
        arrays["weights"] = raw
    answer, array = execute_task(dict(task, arrays=arrays), materialise(spec, arrays))
    if array is not None:
        write_result(array, {"kind": "dir", "root": root, "db_max_bytes": 0}, "measured.npy")
    peak = high_water()
print(json.dumps({"baseline": base, "peak": peak}))
"""


def measure_peak(operation: str, shape: tuple[int, ...], weighted: bool = False) -> dict[str, Any]:
    """Peak resident bytes one job adds, measured in a fresh process that does what a job worker does.

    The process compiles and loads the kernels on a tiny lattice first, restarts its resident high-water mark
    (Linux ``clear_refs``, so compiling does not count), reads its resident memory (the baseline), then
    materialises the lattice, runs ``operation`` with the numba backend and streams any array result to a
    temporary results directory; the peak is the high-water mark since the restart (``VmHWM``).

    Returns
    -------
    dict
        ``vertices``, ``baseline`` and ``peak`` bytes, ``added`` (peak less baseline) and ``per_vertex``.
    """
    vertices = 1
    for n in shape:
        vertices *= n
    params: dict[str, Any] = {}
    corner = [0] * len(shape)
    far = [n - 1 for n in shape]
    if operation == "shortest_path":
        params = {"start": corner, "goal": far}
    elif operation == "distance_field":
        params = {"sources": [corner]}
    with tempfile.TemporaryDirectory() as scratch:
        spec: dict[str, Any] = {"shape": list(shape)}
        weights_file = ""
        if weighted:
            import numpy as np

            from catalytic.lattice import Lattice

            weights = np.random.default_rng(1).uniform(1.0, 2.0, shape)
            spec = Lattice(shape, weights=weights).spec()
            weights_file = os.path.join(scratch, "weights.f8")
            weights.astype("<f8").tofile(weights_file)
            del weights
        args = [json.dumps(spec), operation, json.dumps(params), weights_file]
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, check=True, timeout=600
        )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    added = figures["peak"] - figures["baseline"]
    return {**figures, "vertices": vertices, "added": added, "per_vertex": added / vertices}
