"""The numba BFS on 64-vertex tiles against the networkx oracle, on random lattices of 1 to 6 axes.

The tile layout has cases of its own that the hypothesis lattices of the other modules reach only by luck: axes
that are not a multiple of the tile's extent (partial tiles at the high ends), a periodic axis that wraps from a
partial tile to the first one, a periodic axis held in one tile, and axes of length 1 and 2.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernels.random_lattices import random_lattice
from naive import canonical_path, nx_distances

from catalytic.kernels import _numba_kernels as kernels
from catalytic.kernels import shortest_path
from catalytic.kernels.backend import Geometry
from catalytic.kernels.numba_backend import NumbaBackend
from catalytic.lattice import Lattice

FAST = NumbaBackend()
SIDES = {1: 300, 2: 40, 3: 13, 4: 7, 5: 5, 6: 4}
"""The longest axis drawn for each axis count: long enough for several tiles along every axis."""


def _random_lattice(seed: int, ndim: int) -> Lattice:
    return random_lattice(seed, ndim, SIDES)


@pytest.mark.parametrize("ndim", list(SIDES))
@pytest.mark.parametrize("seed", range(12))
def test_tile_bfs_gives_the_oracle_depths(ndim: int, seed: int) -> None:
    lattice = _random_lattice(1000 * ndim + seed, ndim)
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    open_indices = np.flatnonzero(mask)
    if open_indices.size == 0:
        pytest.skip("every vertex blocked")
    rng = np.random.default_rng(seed)
    sources = np.unique(rng.choice(open_indices, size=min(3, open_indices.size), replace=False)).astype(np.int64)
    want = nx_distances(lattice, sources.tolist())
    axes = (geom.shape, geom.strides, geom.periodic)
    layout = kernels.tiling(geom.shape, geom.strides)
    opened = kernels.open_tiles(mask, geom.shape, layout)
    dist = np.full(geom.vertices, -1, np.int32)
    expanded = kernels.bfs_tiles(axes, opened, sources, -1, dist, layout, np.zeros(3, np.int64))
    np.testing.assert_array_equal(dist, want)
    assert expanded == int((want >= 0).sum())
    # stopped at a target: every level before the target's expanded, the target's level labelled
    target = int(open_indices[-1])
    if want[target] > 0:
        stopped = np.full(geom.vertices, -1, np.int32)
        expanded = kernels.bfs_tiles(axes, opened, sources, target, stopped, layout, np.zeros(3, np.int64))
        assert expanded == int(((want >= 0) & (want < want[target])).sum())
        reached = (want >= 0) & (want <= want[target])
        np.testing.assert_array_equal(stopped[reached], want[reached])
        assert (stopped[~reached] == -1).all()


@pytest.mark.parametrize("ndim", list(SIDES))
def test_bfs_path_is_the_canonical_path(ndim: int) -> None:
    lattice = _random_lattice(77 + ndim, ndim)
    open_indices = np.flatnonzero(lattice.open_mask_flat())
    if open_indices.size < 2:
        pytest.skip("fewer than two open vertices")
    start = int(open_indices[0])
    dist = nx_distances(lattice, [start])
    goal = int(np.flatnonzero(dist == dist.max())[0])  # the farthest vertex the start reaches, lowest index first
    ends = [tuple(int(c) for c in lattice.coords_of(v)) for v in (start, goal)]
    path = shortest_path(lattice, ends[0], ends[1], method="bfs", backend="numba")
    want = canonical_path(lattice, dist, start, goal)[::-1]
    np.testing.assert_array_equal(path.coords, lattice.coords_of(np.asarray(want)))
