"""The numba backend's kernels run as plain Python (``NUMBA_DISABLE_JIT=1``), against the NumPy reference.

Not collected by the main test run (the name does not start with ``test_``): ``test_cuda_sim.py`` runs this
module in a child pytest with ``NUMBA_DISABLE_JIT=1``, which must be set before numba is imported. Compiled, the
kernels are machine code that coverage cannot see; as Python the same source runs line by line, so this run
both checks every branch of the kernels and lets coverage measure them. It refuses to run compiled.

NumPy's uint64 scalars warn where compiled code wraps silently (the obstacle hash multiplies modulo 2^64), so
the child ignores that one warning. The frugal search's first list size and the level width that goes to threads
are module constants, made small here so that small lattices take the paths a large one takes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from catalytic.kernels import _numba_frugal as frugal
from catalytic.kernels import _numba_kernels as kernels
from catalytic.kernels import _numba_levels as levels
from catalytic.kernels.backend import Geometry
from catalytic.kernels.numba_backend import NumbaBackend
from catalytic.kernels.numpy_backend import NumpyBackend
from catalytic.lattice import Lattice

FAST = NumbaBackend()
REFERENCE = NumpyBackend()


def _lattice(seed: int, shape: tuple[int, ...], periodic: Any, p: float, weighted: bool = False) -> Lattice:
    rng = np.random.default_rng(seed)
    lo = [int(rng.integers(0, n)) for n in shape]
    box = {"kind": "box", "lo": lo, "hi": [min(n - 1, a + 1) for a, n in zip(lo, shape, strict=True)]}
    weights = rng.integers(1, 5, size=shape).astype(np.float64) * 0.5 if weighted else None
    blocked = rng.random(shape) < 0.05
    obstacles = [{"kind": "random", "p": p, "seed": seed}, box]
    return Lattice(shape, periodic=periodic, blocked=blocked, weights=weights, obstacles=obstacles)


LATTICES = {
    "2d": lambda: _lattice(1, (11, 13), False, 0.25),
    "2d-torus": lambda: _lattice(2, (9, 12), True, 0.3),
    "3d-mixed": lambda: _lattice(3, (6, 5, 7), [True, False, True], 0.2),
    "4d-thin": lambda: _lattice(4, (2, 5, 1, 9), [True, False, True, True], 0.15),
    "2d-weighted": lambda: _lattice(6, (10, 10), [False, True], 0.2, weighted=True),
    "open-3d": lambda: Lattice((4, 3, 5), periodic=[True, False, True]),
    "5d-mixed": lambda: _lattice(7, (3, 4, 2, 3, 5), [False, True, True, False, True], 0.2),
}


@pytest.fixture(autouse=True)
def _as_python(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if os.environ.get("NUMBA_DISABLE_JIT") != "1":
        pytest.fail("run this module with NUMBA_DISABLE_JIT=1: it checks the kernels as Python")
    monkeypatch.setattr(frugal, "PARALLEL_TILES", 2)
    monkeypatch.setattr(frugal, "FIRST_LISTED", 1)  # the level lists grow from one slot
    yield


@pytest.fixture(params=list(LATTICES))
def lattice(request: pytest.FixtureRequest) -> Lattice:
    return LATTICES[request.param]()


def _ends(lattice: Lattice) -> tuple[int, int]:
    open_indices = np.flatnonzero(lattice.open_mask_flat())
    return int(open_indices[0]), int(open_indices[-1])


def _axes(geom: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return geom.shape, geom.strides, geom.periodic


def test_lattice_kernels(lattice: Lattice) -> None:
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    np.testing.assert_array_equal(mask, REFERENCE.open_mask(geom))
    np.testing.assert_array_equal(FAST.open_bits(geom), REFERENCE.open_bits(geom))
    np.testing.assert_array_equal(FAST.degree_histogram(geom, mask), REFERENCE.degree_histogram(geom, mask))
    want, want_count = REFERENCE.label(geom, mask)
    for slabs in (1, 2, 3):
        labels = np.empty(geom.vertices, dtype=np.int32)
        parent = np.empty(geom.vertices, dtype=np.int32)
        assert kernels.label(_axes(geom), mask, labels, parent, slabs, np.zeros(3, np.int64)) == want_count
        np.testing.assert_array_equal(labels, want)


def test_searches(lattice: Lattice) -> None:
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    start, goal = _ends(lattice)
    layout = kernels.tiling(geom.shape, geom.strides)
    opened = kernels.open_tiles(mask, geom.shape, layout)
    sources = np.array([start, goal // 2], dtype=np.int64)
    for target in (goal, -1):
        want = np.full(geom.vertices, -1, np.int32)
        expanded = REFERENCE.bfs(geom, mask, sources, target, want)
        tiled = np.full(geom.vertices, -1, np.int32)
        assert kernels.bfs_tiles(_axes(geom), opened, sources, target, tiled, layout, np.zeros(3, np.int64)) == expanded
        np.testing.assert_array_equal(tiled, want)
        queued = np.full(geom.vertices, -1, np.int32)
        queue = np.empty(geom.vertices, np.int64)
        assert kernels.bfs(_axes(geom), mask, sources, target, queued, queue, np.zeros(3, np.int64)) == expanded
        np.testing.assert_array_equal(queued, want)
        whole = np.full(geom.vertices, -1, np.int32)
        assert levels.bfs_levels(_axes(geom), mask, sources, target, whole, np.zeros(3, np.int64)) == expanded
        np.testing.assert_array_equal(whole, want)
    for s, g in ((start, goal), (goal, start), (start, start)):
        got = [FAST.full(geom.vertices, -1, np.int32) for _ in range(2)]
        ref = [REFERENCE.full(geom.vertices, -1, np.int32) for _ in range(2)]
        assert FAST.bidirectional(geom, mask, s, g, *got) == REFERENCE.bidirectional(geom, mask, s, g, *ref)
        np.testing.assert_array_equal(got, ref)
    for astar in (False, True):
        costs, ref_costs = np.full(geom.vertices, np.inf), np.full(geom.vertices, np.inf)
        expanded = FAST.dijkstra(geom, mask, np.array([start]), goal, costs, astar)
        assert expanded == REFERENCE.dijkstra(geom, mask, np.array([start]), goal, ref_costs, astar)
        np.testing.assert_array_equal(costs, ref_costs)
        if np.isfinite(costs[goal]):
            for within in (None, (goal, goal + 1)):
                np.testing.assert_array_equal(
                    FAST.trace_path(geom, mask, costs, start, goal, within),
                    REFERENCE.trace_path(geom, mask, ref_costs, start, goal, within),
                )


@pytest.mark.parametrize("threads", [1, 3])
def test_frugal(lattice: Lattice, threads: int) -> None:
    # with threads, every level of 2 tiles or more is split, so the shares, the atomic writes near another
    # share and the level lists cut by tile count all run as Python
    geom = Geometry.of(lattice)
    bits = FAST.open_bits(geom)
    start, goal = _ends(lattice)
    for s, g in ((start, goal), (goal, start), (start, start)):
        state = np.zeros(frugal.state_words(geom.shape), dtype=np.uint64)
        want_state = np.zeros((geom.vertices + 3) // 4, dtype=np.uint8)
        answer = frugal.bfs_frugal(_axes(geom), bits, state, s, g, threads)
        assert answer == REFERENCE.bfs_frugal(geom, bits, s, g, want_state)
        np.testing.assert_array_equal(FAST.frugal_depths(geom, state), REFERENCE.frugal_depths(geom, want_state))
        if answer[0] >= 0:
            np.testing.assert_array_equal(
                FAST.trace_path_frugal(geom, bits, state, s, g, answer[0]),
                REFERENCE.trace_path_frugal(geom, bits, want_state, s, g, answer[0]),
            )


def test_frugal_without_a_path() -> None:
    geom = Geometry.of(Lattice((3, 70), obstacles=[{"kind": "box", "lo": [0, 30], "hi": [2, 30]}]))
    state = np.zeros(frugal.state_words(geom.shape), dtype=np.uint64)
    assert frugal.bfs_frugal(_axes(geom), FAST.open_bits(geom), state, 0, geom.vertices - 1, 3) == (-1, 90)


def test_growing_buffers_and_refused_fields() -> None:
    # a path longer than PATH_START, a heap and a written list longer than HEAP_START
    line = Geometry.of(Lattice(kernels.PATH_START + 100))
    mask = FAST.open_mask(line)
    dist = np.full(line.vertices, -1, np.int32)
    FAST.bfs(line, mask, np.array([0]), -1, dist)
    assert FAST.trace_path(line, mask, dist, 0, line.vertices - 1).size == line.vertices
    plane = Geometry.of(Lattice((40, 40)))
    costs, ref_costs = np.full(plane.vertices, np.inf), np.full(plane.vertices, np.inf)
    many = np.zeros(3 * kernels.HEAP_START, dtype=np.int64)  # one source, pushed again and again
    expanded, written = FAST.dijkstra_written(plane, FAST.open_mask(plane), many, -1, costs, False)
    assert expanded == REFERENCE.dijkstra(plane, FAST.open_mask(plane), many, -1, ref_costs, False)
    np.testing.assert_array_equal(costs, ref_costs)
    assert np.sort(written).tolist() == list(range(plane.vertices))
    # no chain back to the root, and a state that holds no path
    assert kernels.trace_path(_axes(line), mask, np.zeros(line.vertices), np.zeros(0), 0, 5, 0, 10).size == 0
    frame = frugal.tile_frame(line.shape)[:2]
    state = np.zeros(frugal.state_words(line.shape), dtype=np.uint64)
    assert frugal.trace_path(_axes(line), state, frame, 0, 5, 5).size == 0
    # codes 2 at vertex 4 and 1 at vertex 3 (depths 1 and 0 mod 3): a walk of 2 steps from 5 that ends at 3,
    # not at the start 0; a line's tile 0 holds vertices 0..63, its low code bits in word 1 and high in word 2
    state[1] = np.uint64(1 << 3)
    state[2] = np.uint64(1 << 4)
    assert frugal.trace_path(_axes(line), state, frame, 0, 5, 2).size == 0
    state[1] |= np.uint64(1 << 2)  # vertex 2 now also has code 1: still no walk back to 0
    assert frugal.trace_path(_axes(line), state, frame, 0, 4, 2).size == 0
