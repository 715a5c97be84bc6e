"""The numba labelling reads lines as runs of open vertices 64 at a time; these lattices aim at its edges.

Lines of 63, 64, 65 and 128 vertices put runs across word boundaries and a line's start anywhere in a word;
wrapped axes add the unions across the faces; one-vertex lines, 1-D lattices, a single vertex and all-blocked
or all-open lattices are the degenerate runs. Every slab count must give the numpy reference's labels.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from catalytic.kernels import _numba_kernels as kernels
from catalytic.kernels.backend import Geometry
from catalytic.kernels.numba_backend import NumbaBackend
from catalytic.kernels.numpy_backend import NumpyBackend
from catalytic.lattice import Lattice

FAST = NumbaBackend()
REFERENCE = NumpyBackend()
LINES = (1, 2, 3, 5, 63, 64, 65, 100, 128, 129)


def _check(lattice: Lattice) -> None:
    geom = Geometry.of(lattice)
    mask = REFERENCE.open_mask(geom)
    want, want_count = REFERENCE.label(geom, mask)
    labels, count = FAST.label(geom, mask)
    np.testing.assert_array_equal(labels, want)
    assert count == want_count
    for slabs in (1, 2, 3, 5):
        out = np.empty(geom.vertices, dtype=np.int32)
        parent = np.empty(geom.vertices, dtype=np.int32)
        meter = np.zeros(3, np.int64)
        assert kernels.label((geom.shape, geom.strides, geom.periodic), mask, out, parent, slabs, meter) == want_count
        np.testing.assert_array_equal(out, want)


@st.composite
def run_lattices(draw: st.DrawFn) -> Lattice:
    ndim = draw(st.integers(1, 4))
    line = draw(st.sampled_from(LINES))
    others = [draw(st.integers(1, 5)) for _ in range(ndim - 1)]
    shape = (*others, line)
    periodic = [draw(st.booleans()) for _ in range(ndim)]
    p = draw(st.sampled_from([0.0, 0.05, 0.3, 0.6, 1.0]))
    obstacles = [{"kind": "random", "p": p, "seed": draw(st.integers(0, 1000))}] if p else []
    return Lattice(shape, periodic=periodic, obstacles=obstacles)


@settings(max_examples=60, deadline=None)
@given(lattice=run_lattices())
def test_run_labels_match_the_reference(lattice: Lattice) -> None:
    _check(lattice)


def test_degenerate_lattices() -> None:
    _check(Lattice((1,)))
    _check(Lattice((1,), blocked=np.array([True])))
    _check(Lattice((130,), periodic=[True]))
    _check(Lattice((4, 70), obstacles=[{"kind": "random", "p": 1.0, "seed": 1}]))
    _check(Lattice((3, 1, 64), periodic=[True, True, True]))


def test_runs_joined_only_across_the_wrap() -> None:
    # a line of 130 open but for two cuts: the ends meet only through the wrap, across three words
    blocked = np.zeros(130, dtype=bool)
    blocked[[1, 66]] = True
    for periodic, first_last in ((False, (1, 3)), (True, (1, 1))):
        labels, count = FAST.label(*_prepared(Lattice((130,), periodic=[periodic], blocked=blocked)))
        assert (int(labels[0]), int(labels[129])) == first_last
        assert count == 3 if not periodic else count == 2
    # the same along a longer axis of a 2-D torus, one row shifted by a word boundary
    grid = np.zeros((3, 70), dtype=bool)
    grid[:, 5] = True
    grid[1, :] = True
    labels, count = FAST.label(*_prepared(Lattice((3, 70), periodic=[False, True], blocked=grid)))
    assert count == 2
    assert labels.reshape(3, 70)[0, 0] == labels.reshape(3, 70)[0, 69] == 1


def _prepared(lattice: Lattice) -> tuple[Geometry, np.ndarray]:
    geom = Geometry.of(lattice)
    return geom, FAST.open_mask(geom)
