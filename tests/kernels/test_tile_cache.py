"""What the numba BFS keeps between searches is bounded and counted: the tile tables of recent shapes stay
under TILE_BYTES_LIMIT together, and a lattice's tile form is part of the bytes it holds (held_bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from catalytic.kernels import held_bytes, shortest_path
from catalytic.kernels import numba_backend as nb
from catalytic.lattice import Lattice


def test_a_lattice_holds_its_tile_form_once_a_bfs_ran() -> None:
    lattice = Lattice((40, 40, 40), obstacles=[{"kind": "random", "p": 0.2, "seed": 5}])
    shortest_path(lattice, (0, 0, 0), (39, 39, 39), method="bidirectional", backend="numba")
    before = held_bytes(lattice)
    mask = lattice.open_mask_flat()
    assert nb.tile_form_bytes(mask) == 0 and before > 0
    shortest_path(lattice, (0, 0, 0), (39, 39, 39), method="bfs", backend="numba")
    kept = held_bytes(lattice) - before
    assert kept > 0 and kept == sum(nb.tile_form_bytes(v) for v in _prepared_arrays(lattice))
    assert kept >= 40**3 // 8  # one bit a vertex, whole tiles


def _prepared_arrays(lattice: Lattice) -> list[np.ndarray]:
    from catalytic.kernels import _PREPARED

    return [v for k, v in _PREPARED[lattice].items() if ":" in k and isinstance(v, np.ndarray)]


def test_tile_tables_of_recent_shapes_stay_under_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb, "_LAYOUTS", type(nb._LAYOUTS)())
    shapes = [(64, 64, 64), (64, 64, 32), (32, 64, 64)]
    sizes = []
    for shape in shapes:
        lattice = Lattice(shape)
        shortest_path(lattice, (0, 0, 0), tuple(n - 1 for n in shape), method="bfs", backend="numba")
        sizes.append(sum(t.nbytes for t in nb._LAYOUTS[tuple(shape), tuple(int(s) for s in lattice.strides)]))
    limit = sizes[0] + sizes[1]  # room for the first two, not all three
    monkeypatch.setattr(nb, "TILE_BYTES_LIMIT", limit)
    nb._LAYOUTS.clear()
    for shape in shapes:
        shortest_path(Lattice(shape), (0, 0, 0), tuple(n - 1 for n in shape), method="bfs", backend="numba")
        held = sum(t.nbytes for kept in nb._LAYOUTS.values() for t in kept)
        assert held <= limit
    assert [key[0] for key in nb._LAYOUTS] == [shapes[1], shapes[2]]  # the oldest went first
