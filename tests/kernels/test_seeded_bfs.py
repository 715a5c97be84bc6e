"""The numba seeded BFS on 64-vertex tiles against the slab relaxation's bucket search, on random lattices.

Seeds start at random depths, and some vertices already hold random upper bounds, larger or smaller than their
distance through the seeds; the tile search must give every vertex the bucket search's step. Lattices of 1 to 6
axes, periodic and not, have partial tiles, wraps from a partial tile and axes of length 1 and 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from catalytic.distributed._relax import _by_depth, lower_from_seeds
from catalytic.kernels.backend import Geometry
from catalytic.kernels.numba_backend import NumbaBackend
from catalytic.lattice import Lattice

FAST = NumbaBackend()
SIDES = {1: 300, 2: 40, 3: 13, 4: 7, 5: 5, 6: 4}
"""The longest axis drawn for each axis count: long enough for several tiles along every axis."""


def _case(seed: int, ndim: int) -> tuple[Geometry, np.ndarray, np.ndarray, np.ndarray]:
    """A random lattice, its mask, seeds and a step array holding the seeds' depths and other upper bounds."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, SIDES[ndim] + 1, size=ndim))
    periodic = [bool(flag) for flag in rng.integers(0, 2, size=ndim)]
    p = float(rng.uniform(0.0, 0.4))
    lattice = Lattice(shape, periodic=periodic, obstacles=[{"kind": "random", "p": p, "seed": seed}])
    geom = Geometry.of(lattice)
    mask = np.ascontiguousarray(FAST.open_mask(geom)).view(np.uint8)
    open_index = np.flatnonzero(mask)
    steps = np.full(geom.vertices, -1, dtype=np.int32)
    if open_index.size == 0:
        return geom, mask, np.zeros(0, dtype=np.int64), steps
    count = int(rng.integers(1, min(open_index.size, 40) + 1))
    seeds = rng.choice(open_index, size=count, replace=False).astype(np.int64)
    bounded = rng.choice(open_index, size=min(open_index.size, 30), replace=False)
    steps[bounded] = rng.integers(0, 2 * sum(shape), size=bounded.size)
    steps[seeds] = rng.integers(0, sum(shape), size=count)
    return geom, mask, seeds, steps


@pytest.mark.parametrize("ndim", list(SIDES))
@pytest.mark.parametrize("seed", range(10))
def test_tile_search_gives_the_bucket_search_steps(ndim: int, seed: int) -> None:
    geom, mask, seeds, steps = _case(100 * ndim + seed, ndim)
    if seeds.size == 0:
        pytest.skip("no open vertex")
    expected = steps.copy()
    buckets = lower_from_seeds(geom.shape, geom.strides, geom.periodic, mask, expected, seeds)
    order, depths = _by_depth(seeds, steps)
    expanded = FAST.lower_from_seeds(geom, mask, order, depths, steps)
    np.testing.assert_array_equal(steps, expected)
    assert expanded == buckets
    # a second pass from the same seeds lowers nothing more
    again = steps.copy()
    FAST.lower_from_seeds(geom, mask, order, depths, again)
    np.testing.assert_array_equal(again, steps)


@pytest.mark.parametrize("ndim", [2, 5])
def test_relaxation_with_a_geometry_runs_on_tiles_with_the_same_result(ndim: int) -> None:
    geom, mask, seeds, steps = _case(7 + ndim, ndim)
    buckets = steps.copy()
    lower_from_seeds(geom.shape, geom.strides, geom.periodic, mask, buckets, seeds)
    lower_from_seeds(geom.shape, geom.strides, geom.periodic, mask, steps, seeds, geom=geom)
    np.testing.assert_array_equal(steps, buckets)


def test_seeds_that_the_search_lowers_first_do_not_join() -> None:
    geom = Geometry.of(Lattice(6))
    steps = np.array([0, -1, -1, 9, -1, 2], dtype=np.int32)
    expanded = FAST.lower_from_seeds(geom, np.ones(6, np.uint8), np.array([0, 5, 3]), np.array([0, 2, 9]), steps)
    assert steps.tolist() == [0, 1, 2, 3, 3, 2]
    # seeds 0 and 5 join and 1, 2, 3, 4 are lowered; seed 3 was lowered before its depth
    assert expanded == 6


def test_past_the_tile_limit_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    from catalytic.kernels import numba_backend

    monkeypatch.setattr(numba_backend, "TILE_BYTES_LIMIT", 0)
    geom = Geometry.of(Lattice(5))
    steps = np.array([-1, -1, 0, -1, -1], dtype=np.int32)
    assert FAST.lower_from_seeds(geom, np.ones(5, np.uint8), np.array([2]), np.array([0]), steps) is None
    assert steps.tolist() == [-1, -1, 0, -1, -1]
