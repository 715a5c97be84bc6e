"""Slab construction and the label merge, without Ray."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from catalytic.distributed._relax import axis_faces, lower_from_seeds
from catalytic.distributed._runtime import ErrorCarrier, explicit_arrays, lattice_from, slab_arrays
from catalytic.distributed.partition import _merge_labels, slab_bounds, slab_lattice
from catalytic.errors import BlockedVertexError, MaskError, NoPathError
from catalytic.kernels import distance_field
from catalytic.kernels.backend import Geometry
from catalytic.lattice import Lattice


def test_slab_bounds_cover_the_axis_without_gaps() -> None:
    assert slab_bounds(10, 4) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert slab_bounds(3, 8) == [(0, 1), (1, 2), (2, 3)]
    assert slab_bounds(5, 1) == [(0, 5)]


@pytest.mark.parametrize("periodic", [False, True])
def test_slab_mask_and_weights_are_the_rows_of_the_whole(periodic: bool) -> None:
    rng = np.random.default_rng(4)
    blocked = rng.random((9, 4, 3)) < 0.1
    weights = rng.uniform(0.5, 3.0, (9, 4, 3))
    whole = Lattice(
        (9, 4, 3),
        periodic=[periodic, True, False],
        blocked=blocked,
        weights=weights,
        obstacles=[{"kind": "random", "p": 0.25, "seed": 11}, {"kind": "box", "lo": [2, 1, 0], "hi": [6, 2, 1]}],
    )
    explicit = explicit_arrays(whole.spec(), {"blocked": blocked, "weights": weights})
    for lo, hi in slab_bounds(9, 4):
        part = slab_lattice(whole.spec(), lo, hi, single=False, arrays=slab_arrays(explicit, lo, hi))
        assert part.shape == (hi - lo, 4, 3)
        assert part.periodic == (False, True, False)
        np.testing.assert_array_equal(part.open_mask(), whole.open_mask()[lo:hi])
        np.testing.assert_array_equal(part.weights, weights[lo:hi])
    assert slab_lattice(whole.spec(), 0, 9, single=True, arrays=explicit).periodic[0] == periodic


def test_stored_bytes_decode_to_the_same_lattice() -> None:
    blocked = np.zeros((3, 5), dtype=bool)
    blocked[1, 1:4] = True
    weights = np.arange(1.0, 16.0).reshape(3, 5)
    lattice = Lattice((3, 5), blocked=blocked, weights=weights)
    stored = {
        "blocked": np.packbits(blocked.ravel(), bitorder="little").tobytes(),
        "weights": weights.astype("<f8").tobytes(),
    }
    assert lattice_from(lattice.spec(), stored) == lattice
    with pytest.raises(MaskError, match=r"arrays\.blocked"):
        lattice_from(lattice.spec(), {"blocked": b"\x00", "weights": weights})


def test_merge_numbers_components_by_lowest_piece() -> None:
    # pieces 0..5; 1-4 and 4-5 touch, so {1, 4, 5} is one component; 0, 2, 3 stay alone
    final, count = _merge_labels([2, 2, 2], [(np.array([1, 4]), np.array([4, 5]))])
    assert count == 4
    assert final.tolist() == [1, 2, 3, 4, 2, 2]
    final, count = _merge_labels([3], [])
    assert (final.tolist(), count) == ([1, 2, 3], 3)


def test_error_carrier_rebuilds_the_error() -> None:
    exc = BlockedVertexError("goal", "[1, 2] is blocked", "an open vertex")
    again = pickle.loads(pickle.dumps(ErrorCarrier.of(exc))).error()
    assert type(again) is BlockedVertexError
    assert str(again) == str(exc)
    assert again.to_dict() == exc.to_dict()
    lost = pickle.loads(pickle.dumps(ErrorCarrier.of(NoPathError((0,), (3,))))).error()
    assert isinstance(lost, NoPathError)
    assert lost.goal == (3,)


@pytest.mark.parametrize("search", ["vertices", "words", "tiles"])
@pytest.mark.parametrize("periodic", [False, True])
def test_seeds_at_their_own_depths_lower_to_the_nearest_seed(periodic: bool, search: str) -> None:
    lattice = Lattice(
        (9, 7, 6), periodic=[periodic, True, periodic], obstacles=[{"kind": "random", "p": 0.3, "seed": 3}]
    )
    open_index = np.flatnonzero(lattice.open_mask_flat())
    rng = np.random.default_rng(5)
    seeds = rng.choice(open_index, size=4, replace=False)
    depths = np.array([7, 0, 3, 3], dtype=np.int32)
    # the answer: each vertex's smallest (depth + steps) over the seeds, from one BFS per seed
    fields = [distance_field(lattice, [lattice.coords_of(int(s)).tolist()]).ravel() for s in seeds]
    through = np.stack([np.where(f < 0, 2**30, f + depth) for f, depth in zip(fields, depths, strict=True)])
    # start from upper bounds: some vertices already hold a longer distance (kept where no seed reaches them)
    dist = np.full(lattice.vertices, -1, dtype=np.int32)
    dist[rng.choice(open_index, size=20, replace=False)] = 100
    dist[seeds] = depths
    held = np.where(dist < 0, 2**30, dist)
    expected = np.minimum(through.min(axis=0), held)
    expected = np.where(expected >= 2**30, -1, expected).astype(np.int32)
    shape = np.asarray(lattice.shape, dtype=np.int64)
    strides = np.asarray(lattice.strides, dtype=np.int64)
    axes = np.asarray(lattice.periodic, dtype=np.uint8)
    mask = lattice.open_mask_flat().astype(np.uint8)
    # with the face bit sets every wide level runs 64 vertices a word (on this small lattice, almost all)
    faces = axis_faces(shape, strides, mask) if search == "words" else None
    # with the geometry every level runs on the numba backend's 64-vertex tiles
    geom = Geometry.of(lattice) if search == "tiles" else None
    expanded = lower_from_seeds(shape, strides, axes, mask, dist, seeds, faces, geom)
    np.testing.assert_array_equal(dist, expected)
    assert expanded > 0
    assert lower_from_seeds(shape, strides, axes, mask, dist, np.zeros(0, dtype=np.int64)) == 0


def test_face_bit_sets_mark_each_axis_end() -> None:
    shape, strides = np.array([3, 5, 70]), np.array([350, 70, 1])
    mask = (np.arange(1050) % 7 != 3).astype(np.uint8)
    low, high, closed = axis_faces(shape, strides, mask)
    coords = np.indices(tuple(shape.tolist())).reshape(3, -1)
    unpacked = np.unpackbits(closed.view(np.uint8), bitorder="little")
    np.testing.assert_array_equal(unpacked[:1050].astype(bool), mask == 0)
    assert not unpacked[1050:].any()
    for k in range(3):
        for bits, end in ((low[k], 0), (high[k], shape[k] - 1)):
            marked = np.unpackbits(bits.view(np.uint8), bitorder="little")[: coords.shape[1]].astype(bool)
            np.testing.assert_array_equal(marked, coords[k] == end)
