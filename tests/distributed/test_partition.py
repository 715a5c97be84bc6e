"""Partitioned lattices on 4 slabs give exactly the single-node answers, and survive a slab actor's death."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest

from catalytic.distributed import (
    PartitionedLattice,
    partitioned_components,
    partitioned_distance_field,
    partitioned_shortest_path,
)
from catalytic.errors import BlockedVertexError, NoPathError
from catalytic.kernels import components, distance_field, shortest_path
from catalytic.lattice import Lattice

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]


def _walls(shape: tuple[int, int]) -> np.ndarray:
    """Walls across axis 1 that split a 2-D lattice into bands joined only through gaps and the axis-0 wrap."""
    blocked = np.zeros(shape, dtype=bool)
    blocked[4, :] = True
    blocked[8, :-1] = True
    blocked[:, 5] = True
    blocked[10, 5] = False
    return blocked


def _cases() -> list[Any]:
    rng = np.random.default_rng(7)
    random_3d: list[dict[str, Any]] = [
        {"kind": "random", "p": 0.3, "seed": 5},
        {"kind": "box", "lo": [4, 0, 0], "hi": [5, 3, 4]},
    ]
    walls = _walls((12, 9))
    weights = rng.uniform(0.5, 4.0, (12, 9))
    return [
        pytest.param(Lattice((11, 6, 5), periodic=[False, True, False], obstacles=random_3d), {}, id="3d-open-axis0"),
        pytest.param(Lattice((11, 6, 5), periodic=[True, False, True], obstacles=random_3d), {}, id="3d-wrap-axis0"),
        pytest.param(
            Lattice((12, 9), periodic=[True, False], blocked=walls, weights=weights),
            {"blocked": walls, "weights": weights},
            id="2d-weighted-wrap",
        ),
        pytest.param(
            Lattice((12, 9), periodic=False, blocked=walls, obstacles=[{"kind": "random", "p": 0.15, "seed": 2}]),
            {"blocked": walls},
            id="2d-walls-open",
        ),
    ]


def _open_vertices(lattice: Lattice, count: int, seed: int) -> list[list[int]]:
    open_index = np.flatnonzero(lattice.open_mask_flat())
    chosen = np.random.default_rng(seed).choice(open_index, size=count, replace=False)
    return lattice.coords_of(np.sort(chosen)).tolist()


@pytest.mark.parametrize(("lattice", "arrays"), _cases())
def test_four_slabs_equal_the_single_node_kernels(
    ray_cluster: dict[str, Any], lattice: Lattice, arrays: dict[str, np.ndarray]
) -> None:
    spec = lattice.spec()
    with PartitionedLattice(spec, slabs=4, arrays=arrays, backend="numpy") as part:
        assert len(part.actors) == 4
        for seed in (1, 2):
            sources = _open_vertices(lattice, 2, seed)
            got = part.distance_field(sources)
            expected = distance_field(lattice, sources, backend="numpy")
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
        method = "dijkstra" if lattice.weighted else "bfs"
        for start, goal in (_open_vertices(lattice, 2, 3), _open_vertices(lattice, 2, 4)[::-1]):
            try:
                single = shortest_path(lattice, start, goal, method=method, backend="numpy")
            except NoPathError:
                with pytest.raises(NoPathError):
                    part.path_length(start, goal)
                with pytest.raises(NoPathError):
                    part.shortest_path(start, goal)
            else:
                expected_length = single.cost if lattice.weighted else single.length
                assert part.path_length(start, goal) == expected_length
                path = part.shortest_path(start, goal)
                # The very same canonical path, vertex for vertex, across every slab face it crosses.
                np.testing.assert_array_equal(path.coords, single.coords)
                assert (path.length, path.cost, path.method) == (single.length, single.cost, method)
        labels, count = part.components()
        expected_labels, expected_count = components(lattice, backend="numpy")
        assert count == expected_count
        if lattice.blocked is not None:  # the walls cut the lattice into several components across slabs
            assert count > 1
        np.testing.assert_array_equal(labels, expected_labels)
        assert part.rounds >= 2


def test_short_axis_and_one_function_calls(ray_cluster: dict[str, Any]) -> None:
    # Two rows on a periodic axis 0 (both neighbours of a row are the other slab) and more slabs than rows.
    ring = Lattice((2, 5), periodic=True)
    np.testing.assert_array_equal(
        partitioned_distance_field(ring.spec(), [(0, 0)], slabs=2, backend="numpy"),
        distance_field(ring, [(0, 0)], backend="numpy"),
    )
    column = Lattice((3, 1))
    path = partitioned_shortest_path(column.spec(), (0, 0), (2, 0), slabs=8, backend="numpy")
    assert path.length == 2 and path.coords.tolist() == [[0, 0], [1, 0], [2, 0]]
    # Both neighbours of each row of the ring lie in the other slab.
    ring_path = partitioned_shortest_path(ring.spec(), (0, 0), (1, 3), slabs=2, backend="numpy")
    np.testing.assert_array_equal(ring_path.coords, shortest_path(ring, (0, 0), (1, 3), method="bfs").coords)
    middle_blocked = np.array([[False], [True], [False]])
    labels, count = partitioned_components(
        Lattice((3, 1), blocked=middle_blocked).spec(), slabs=8, arrays={"blocked": middle_blocked}, backend="numpy"
    )
    assert (labels.ravel().tolist(), count) == ([1, 0, 2], 2)
    top_blocked = np.array([[True], [False], [False]])
    with pytest.raises(BlockedVertexError, match="sources"):
        partitioned_distance_field(
            Lattice((3, 1), blocked=top_blocked).spec(), [(0, 0)], arrays={"blocked": top_blocked}, backend="numpy"
        )


def _serpentine(rows: int, cols: int) -> np.ndarray:
    """Walls that force the path to cross every slab boundary many times (many rounds)."""
    blocked = np.zeros((rows, cols), dtype=bool)
    for c in range(1, cols - 1, 2):
        blocked[:, c] = True
        blocked[rows - 1 if (c // 2) % 2 == 0 else 0, c] = False
    return blocked


@pytest.mark.parametrize("how", ["sigkill", "ray.kill"])
def test_a_slab_actor_killed_mid_run_still_gives_the_exact_field(ray_cluster: dict[str, Any], how: str) -> None:
    import ray

    blocked = _serpentine(16, 15)
    lattice = Lattice((16, 15), blocked=blocked)
    expected = distance_field(lattice, [(0, 0)], backend="numpy")
    with PartitionedLattice(lattice.spec(), slabs=4, arrays={"blocked": blocked}, backend="numpy") as part:
        victim = part.actors[2]
        before = ray.get(victim.pid.remote())

        def kill(round_number: int) -> None:
            if round_number != 2:
                return
            if how == "sigkill":
                os.kill(before, signal.SIGKILL)
            else:
                ray.kill(victim, no_restart=False)

        got = part.distance_field([(0, 0)], on_round=kill)
        np.testing.assert_array_equal(got, expected)
        assert part.rounds > 4
        assert ray.get(victim.pid.remote()) != before
        assert part.path_length((0, 0), (15, 14)) == int(expected[15, 14])
        # The serpentine crosses every slab face many times; the walk hands over at each crossing.
        serpentine = part.shortest_path((0, 0), (15, 14))
        np.testing.assert_array_equal(
            serpentine.coords, shortest_path(lattice, (0, 0), (15, 14), method="bfs", backend="numpy").coords
        )
