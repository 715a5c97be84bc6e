"""The GPU backend on a real CUDA device, against the CPU backends, bit for bit.

Skipped as a whole, with the probe's reason, where CuPy or a usable device is missing. The kernels' logic is
covered without a device by ``test_cuda_sim.py``; this module checks what the simulator cannot: CuPy arrays
through ``__cuda_array_interface__``, cooperative launches of many blocks, and real atomics under contention.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catalytic.kernels.cupy_backend import CupyBackend

REASON = CupyBackend.probe()
if REASON is not None:
    pytest.skip(f"needs a usable CUDA device: {REASON}", allow_module_level=True)

from catalytic import Lattice  # noqa: E402  (after the module-level skip, on purpose)
from catalytic.kernels import components, distance_field, shortest_path  # noqa: E402
from catalytic.kernels.backend import Geometry, get_backend  # noqa: E402

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
LATTICES = {
    "3d-periodic": lambda: Lattice(
        (48, 40, 36), periodic=[True, False, True], obstacles=[{"kind": "random", "p": 0.3, "seed": 11}]
    ),
    "5d": lambda: Lattice((9, 8, 9, 7, 9), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}]),
    "2d-maze": lambda: Lattice(
        (257, 255),
        obstacles=[
            {"kind": "random", "p": 0.35, "seed": 5},
            {"kind": "box", "lo": [100, 0], "hi": [101, 240]},
        ],
    ),
}


@pytest.fixture(params=list(LATTICES))
def lattice(request: pytest.FixtureRequest) -> Lattice:
    return LATTICES[request.param]()


def _ends(lattice: Lattice) -> tuple[int, int]:
    """The lowest and highest vertex of the largest component: a long search with a path."""
    labels, count = components(lattice, backend="numba")
    flat = labels.ravel()
    largest = int(np.argmax(np.bincount(flat, minlength=count + 1)[1:])) + 1
    members = np.flatnonzero(flat == largest)
    return int(members[0]), int(members[-1])


def test_simulator_cases_on_the_device() -> None:
    env = {**os.environ, "CATALYTIC_CUDA_DEVICE": "1"}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(Path(__file__).with_name("cuda_sim_cases.py")),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


def test_state_stays_on_the_device() -> None:
    import cupy

    be = get_backend("cupy")
    geom = Geometry.of(LATTICES["5d"]())
    assert isinstance(be.open_mask(geom), cupy.ndarray)
    assert isinstance(be.full(10, -1, np.int32), cupy.ndarray)


def test_lattice_primitives(lattice: Lattice) -> None:
    gpu, cpu, geom = get_backend("cupy"), get_backend("numba"), Geometry.of(lattice)
    np.testing.assert_array_equal(gpu.to_host(gpu.open_mask(geom)), cpu.open_mask(geom))
    np.testing.assert_array_equal(gpu.to_host(gpu.open_bits(geom)), cpu.open_bits(geom))
    np.testing.assert_array_equal(
        gpu.degree_histogram(geom, gpu.open_mask(geom)), cpu.degree_histogram(geom, cpu.open_mask(geom))
    )
    labels, count = gpu.label(geom, gpu.open_mask(geom))
    want, want_count = cpu.label(geom, cpu.open_mask(geom))
    assert count == want_count
    np.testing.assert_array_equal(gpu.to_host(labels), want)


@pytest.mark.parametrize("options", [{"fused": True}, {"fused": False}, {"fused": True, "levels_per_launch": 7}])
def test_searches(lattice: Lattice, options: dict[str, Any]) -> None:
    gpu, cpu, geom = CupyBackend(**options), get_backend("numba"), Geometry.of(lattice)
    start, goal = _ends(lattice)
    for target in (goal, -1):
        want = cpu.full(geom.vertices, -1, np.int32)
        want_expanded = cpu.bfs(geom, cpu.open_mask(geom), np.asarray([start]), target, want)
        got = gpu.full(geom.vertices, -1, np.int32)
        assert gpu.bfs(geom, gpu.open_mask(geom), np.asarray([start]), target, got) == want_expanded
        np.testing.assert_array_equal(gpu.to_host(got), want)
    (cpu_size, cpu_dtype), (gpu_size, gpu_dtype) = cpu.frugal_state_size(geom), gpu.frugal_state_size(geom)
    want_state, state = cpu.full(cpu_size, 0, cpu_dtype), gpu.full(gpu_size, 0, gpu_dtype)
    want = cpu.bfs_frugal(geom, cpu.open_bits(geom), start, goal, want_state)
    assert gpu.bfs_frugal(geom, gpu.open_bits(geom), start, goal, state) == want
    np.testing.assert_array_equal(gpu.frugal_depths(geom, state), cpu.frugal_depths(geom, want_state))


def test_public_api_answers_match(lattice: Lattice) -> None:
    start, goal = (lattice.coords_of(v).tolist() for v in _ends(lattice))
    for method in ("bfs", "bidirectional", "astar", "dijkstra"):
        got = shortest_path(lattice, start, goal, method=method, backend="cupy")
        want = shortest_path(lattice, start, goal, method=method, backend="numba")
        assert got.backend == ("numba" if method == "astar" else "cupy"), method  # A* runs on the host
        assert (got.length, got.cost, got.expanded) == (want.length, want.cost, want.expanded), method
        np.testing.assert_array_equal(got.coords, want.coords)
    frugal = shortest_path(lattice, start, goal, method="bfs", backend="cupy", memory="frugal")
    np.testing.assert_array_equal(
        frugal.coords, shortest_path(lattice, start, goal, method="bfs", backend="numba", memory="frugal").coords
    )
    auto = shortest_path(lattice, start, goal, backend="cupy")
    np.testing.assert_array_equal(auto.coords, shortest_path(lattice, start, goal, backend="numba").coords)
    np.testing.assert_array_equal(
        distance_field(lattice, [start, goal], backend="cupy"), distance_field(lattice, [start, goal], backend="numba")
    )
    got_labels, got_count = components(lattice, backend="cupy")
    want_labels, want_count = components(lattice, backend="numba")
    assert got_count == want_count
    np.testing.assert_array_equal(got_labels, want_labels)


def test_weighted_searches_match_numba_bit_for_bit() -> None:
    # Many threads lower the same costs at once here: the atomic minimum and the pending bits under contention.
    rng = np.random.default_rng(3)
    shape = (64, 48, 40)
    weights = rng.random(shape) * 1.5 + 0.25
    lattice = Lattice(
        shape, periodic=[True, False, True], weights=weights, obstacles=[{"kind": "random", "p": 0.2, "seed": 3}]
    )
    start, goal = (lattice.coords_of(v).tolist() for v in _ends(lattice))
    got = distance_field(lattice, [start], backend="cupy")
    want = distance_field(lattice, [start], backend="numba")
    np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
    path = shortest_path(lattice, start, goal, method="dijkstra", backend="cupy")
    reference = shortest_path(lattice, start, goal, method="dijkstra", backend="numba")
    assert path.backend == "cupy"
    assert (path.cost, path.expanded) == (reference.cost, reference.expanded)
    np.testing.assert_array_equal(path.coords, reference.coords)
