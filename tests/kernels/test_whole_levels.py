"""The whole-lattice level BFS of the numba backend against the NumPy backend and the tile BFS.

Its own cases: strides that are a multiple of 64 (a shift by whole words), shifts longer than a word, a last word
the lattice fills in part, axes of length 1 and 2 (no move, and a periodic axis whose wrap is the plain step),
periodic axes, several sources, blocked sources, and the stop at a target.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernels.random_lattices import random_lattice

from catalytic.kernels import _numba_kernels as kernels
from catalytic.kernels import _numba_levels as levels
from catalytic.kernels.backend import Geometry
from catalytic.kernels.numba_backend import NumbaBackend, tile_form_bytes
from catalytic.kernels.numpy_backend import NumpyBackend
from catalytic.lattice import Lattice

FAST = NumbaBackend()
REFERENCE = NumpyBackend()
SIDES = {1: 400, 2: 70, 3: 17, 4: 9, 5: 6, 6: 5, 7: 4, 8: 3, 9: 3, 10: 3}
"""The longest axis drawn for each axis count."""


def _random_lattice(seed: int, ndim: int) -> Lattice:
    return random_lattice(seed, ndim, SIDES)


def _levels(geom: Geometry, mask: np.ndarray, sources: np.ndarray, target: int) -> tuple[np.ndarray, int, np.ndarray]:
    dist = np.full(geom.vertices, -1, np.int32)
    meter = np.zeros(3, np.int64)
    axes = (geom.shape, geom.strides, geom.periodic)
    expanded = levels.bfs_levels(axes, mask, np.asarray(sources, np.int64), target, dist, meter)
    return dist, int(expanded), meter


def _tiles(geom: Geometry, mask: np.ndarray, sources: np.ndarray, target: int) -> tuple[np.ndarray, int]:
    dist = np.full(geom.vertices, -1, np.int32)
    axes = (geom.shape, geom.strides, geom.periodic)
    layout = kernels.tiling(geom.shape, geom.strides)
    opened = kernels.open_tiles(mask, geom.shape, layout)
    sources = np.asarray(sources, np.int64)
    expanded = kernels.bfs_tiles(axes, opened, sources, target, dist, layout, np.zeros(3, np.int64))
    return dist, int(expanded)


def _reference(geom: Geometry, mask: np.ndarray, sources: np.ndarray, target: int) -> tuple[np.ndarray, int]:
    dist = np.full(geom.vertices, -1, np.int32)
    expanded = REFERENCE.bfs(geom, mask, np.asarray(sources, np.int64), target, dist)
    return dist, int(expanded)


def _agree(lattice: Lattice, sources: list[int], target: int) -> None:
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    dist, expanded, meter = _levels(geom, mask, np.asarray(sources), target)
    want, want_expanded = _reference(geom, mask, np.asarray(sources), target)
    np.testing.assert_array_equal(dist, want)
    assert expanded == want_expanded
    tiled, tiled_expanded = _tiles(geom, mask, np.asarray(sources), target)
    np.testing.assert_array_equal(dist, tiled)
    assert expanded == tiled_expanded
    assert meter[2] > 0  # the bit sets and masks are accounted for


@pytest.mark.parametrize("ndim", list(SIDES))
@pytest.mark.parametrize("seed", range(10))
def test_whole_levels_give_the_reference_depths(ndim: int, seed: int) -> None:
    lattice = _random_lattice(7000 * ndim + seed, ndim)
    rng = np.random.default_rng(seed)
    open_indices = np.flatnonzero(lattice.open_mask_flat())
    if open_indices.size == 0:
        pytest.skip("every vertex blocked")
    sources = rng.choice(open_indices, size=min(1 + seed % 4, open_indices.size), replace=False).tolist()
    _agree(lattice, sources, -1)
    # stopped at a target: the far end, one that is never reached, and a source
    for target in (int(open_indices[-1]), int(rng.integers(0, lattice.vertices)), int(sources[0])):
        _agree(lattice, sources, target)


@pytest.mark.parametrize(
    ("shape", "periodic"),
    [
        ((3, 64), False),  # stride 64: a shift by one whole word
        ((5, 2, 64), True),  # strides 128 and 64, a periodic axis of 2
        ((4, 130), True),  # a shift longer than two words, wrapping
        ((7, 9, 11), True),  # a last word filled in part, wraps on every axis
        ((1, 1, 5, 1), False),  # axes of length 1
        ((2, 2, 2, 2, 2, 2, 2, 2, 2, 2), True),
        ((1000,), True),
        ((65,), False),
        ((64, 1), False),
    ],
)
def test_whole_levels_on_the_word_edge_cases(shape: tuple[int, ...], periodic: bool) -> None:
    for p in (0.0, 0.25):
        lattice = Lattice(shape, periodic=periodic, obstacles=[{"kind": "random", "p": p, "seed": 5}] if p else [])
        open_indices = np.flatnonzero(lattice.open_mask_flat())
        _agree(lattice, [int(open_indices[0])], -1)
        _agree(lattice, [int(open_indices[0]), int(open_indices[-1])], -1)
        _agree(lattice, [int(open_indices[0])], int(open_indices[-1]))


def test_one_vertex_and_a_walled_in_source() -> None:
    single = Lattice((1,))
    dist, expanded, _ = _levels(Geometry.of(single), np.ones(1, np.uint8), np.array([0]), -1)
    assert dist.tolist() == [0] and expanded == 1
    dist, expanded, _ = _levels(Geometry.of(single), np.ones(1, np.uint8), np.array([0]), 0)
    assert dist.tolist() == [0] and expanded == 0
    # everything blocked but the source: it alone is labelled and expanded
    blocked = np.ones((4, 5, 3), dtype=bool)
    blocked[2, 3, 1] = False
    walled = Lattice((4, 5, 3), blocked=blocked)
    source = int(np.ravel_multi_index((2, 3, 1), (4, 5, 3)))
    dist, expanded, _ = _levels(Geometry.of(walled), walled.open_mask_flat().astype(np.uint8), np.array([source]), -1)
    assert expanded == 1 and int((dist >= 0).sum()) == 1 and dist[source] == 0
    _agree(walled, [source], -1)


def test_blocked_and_repeated_sources_are_labelled_like_the_reference() -> None:
    lattice = Lattice((6, 5, 4, 3), obstacles=[{"kind": "random", "p": 0.3, "seed": 11}])
    mask = lattice.open_mask_flat()
    blocked, opened = int(np.flatnonzero(~mask)[0]), int(np.flatnonzero(mask)[3])
    _agree(lattice, [blocked, opened, opened], -1)
    _agree(lattice, [blocked], -1)


def test_move_masks_match_the_coordinates() -> None:
    shape, periodic = np.array([3, 5, 70]), np.array([1, 0, 1], np.uint8)
    strides = np.array([350, 70, 1])
    moves = levels.level_moves(shape, strides, periodic)
    shift = moves[0]
    vertices = int(shape.prod())
    masks = levels.move_masks(moves, (vertices + 63) // 64)
    bits = np.unpackbits(masks.view(np.uint8), axis=1, bitorder="little")[:, :vertices].astype(bool)
    coords = np.stack(np.unravel_index(np.arange(vertices), tuple(shape)), axis=1)
    for m in range(shift.shape[0]):
        # a vertex may be landed on when the vertex the move came from is a vertex of the lattice on that axis
        k = int(np.flatnonzero((np.abs(shift[m]) == strides) | (np.abs(shift[m]) == strides * (shape - 1)))[0])
        n, step = int(shape[k]), int(shift[m]) // int(strides[k])
        origin = coords[:, k] - step
        want = (origin >= 0) & (origin < n)
        np.testing.assert_array_equal(bits[m], want, err_msg=f"move {m}: shift {shift[m]}")


def test_the_rule_picks_whole_levels_for_many_short_axes_only() -> None:
    assert levels.whole_levels_pay((10,) * 5, (False,) * 5)
    assert levels.whole_levels_pay((8,) * 6, (False,) * 6)
    assert not levels.whole_levels_pay((1024, 1024), (False, False))
    assert not levels.whole_levels_pay((300, 300), (False, False))
    assert not levels.whole_levels_pay((50, 50, 50), (False,) * 3)
    assert not levels.whole_levels_pay((9, 70), (False, False))
    assert levels.whole_levels_pay((4,) * 5, (False,) * 5)  # a few words: fixed costs only
    assert levels.whole_levels_pay((4,) * 10, (False,) * 10)
    assert not levels.whole_levels_pay((7,) * 10, (False,) * 10)  # its masks would take 700 MiB


def test_bfs_dispatches_by_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[tuple[int, ...]] = []
    kernel = levels.bfs_levels

    def spy(axes, *args):  # type: ignore[no-untyped-def]
        called.append(tuple(axes[0].tolist()))
        return kernel(axes, *args)

    monkeypatch.setattr(levels, "bfs_levels", spy)
    for shape, whole in (((10,) * 5, True), ((1024, 1024), False)):
        geom = Geometry.of(Lattice(shape, obstacles=[{"kind": "random", "p": 0.2, "seed": 1}]))
        mask = FAST.open_mask(geom)
        dist = np.full(geom.vertices, -1, np.int32)
        FAST.bfs(geom, mask, np.array([int(np.flatnonzero(mask)[0])]), -1, dist)
        assert (shape in called) is whole
        assert (tile_form_bytes(mask) == 0) is whole  # the tile BFS keeps the mask's tile form
    geom = Geometry.of(Lattice((10,) * 5, obstacles=[{"kind": "random", "p": 0.2, "seed": 1}]))
    mask = FAST.open_mask(geom)
    source = np.array([int(np.flatnonzero(mask)[0])])
    got, want = np.full(geom.vertices, -1, np.int32), np.full(geom.vertices, -1, np.int32)
    target = int(np.flatnonzero(mask)[-1])
    assert FAST.bfs(geom, mask, source, target, got) == REFERENCE.bfs(geom, mask, source, target, want)
    np.testing.assert_array_equal(got, want)
