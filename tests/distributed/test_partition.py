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
from catalytic.distributed._runtime import explicit_arrays, rows_of
from catalytic.distributed.partition import HaloUpdate, SlabWorker, _merge_labels, halo_rows, slab_bounds
from catalytic.errors import (
    BlockedVertexError,
    CoordinateError,
    InvalidTypeError,
    MaskError,
    MemoryBudgetError,
    NoPathError,
    WeightsError,
)
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


# --- slabs in this process ---------------------------------------------------------------------------------


class _Slabs:
    """Slab workers held in this process and driven as the Ray driver drives its actors, round by round."""

    def __init__(self, lattice: Lattice, slabs: int, arrays: dict[str, np.ndarray], backend: str) -> None:
        self.lattice = lattice
        self.bounds = slab_bounds(lattice.shape[0], slabs)
        self.wrap = lattice.periodic[0] and len(self.bounds) > 1
        self.row_size = lattice.vertices // lattice.shape[0]
        explicit = explicit_arrays(lattice.spec(), arrays)
        single = len(self.bounds) == 1
        self.workers = [
            SlabWorker(
                lattice.spec(), lo, hi, single, rows_of(explicit, halo_rows(lattice.shape[0], self.wrap, lo, hi)[0]),
                backend,
            )
            for lo, hi in self.bounds
        ]  # fmt: skip

    def neighbours(self, k: int) -> tuple[int | None, int | None]:
        last = len(self.bounds) - 1
        return (k - 1 if k > 0 else (last if self.wrap else None)), (k + 1 if k < last else (0 if self.wrap else None))

    def slab_of(self, index: int) -> tuple[int, int]:
        k = next(k for k, (lo, hi) in enumerate(self.bounds) if lo <= index // self.row_size < hi)
        return k, index - self.bounds[k][0] * self.row_size

    def converge(self, query: str, sources: list[int]) -> int:
        per_slab: list[list[int]] = [[] for _ in self.bounds]
        for index in sources:
            k, local = self.slab_of(index)
            per_slab[k].append(local)
        first: list[Any] = [None] * len(self.workers)
        last: list[Any] = [None] * len(self.workers)
        rounds = 0
        while True:
            outputs = []
            for k, worker in enumerate(self.workers):
                prev, nxt = self.neighbours(k)
                halos = (None if prev is None else last[prev], None if nxt is None else first[nxt])
                outputs.append(worker.step(query, np.asarray(per_slab[k], dtype=np.int64), *halos))
            rounds += 1
            first, last = [out[0] for out in outputs], [out[1] for out in outputs]
            if sum(out[2][1] for out in outputs) == 0:
                return rounds

    def walk(self, query: str, start: int, goal: int) -> list[int]:
        k, local = self.slab_of(goal)
        walked: list[int] = []
        while True:
            part = self.workers[k].trace(query, local, start)
            assert part is not None
            indices, crossing = part
            walked.extend(indices)
            if crossing is None:
                return walked[::-1]
            side, column = crossing
            prev, nxt = self.neighbours(k)
            k = prev if side < 0 else nxt  # type: ignore[assignment]
            rows = self.bounds[k][1] - self.bounds[k][0]
            local = (rows - 1) * self.row_size + column if side < 0 else column


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(("lattice", "arrays"), _cases())
def test_slab_workers_in_this_process_give_the_single_node_answers(
    lattice: Lattice, arrays: dict[str, np.ndarray], backend: str
) -> None:
    for slabs in (1, 3, 4):
        part = _Slabs(lattice, slabs, arrays, backend)
        sources = [int(lattice.index_of(point)) for point in _open_vertices(lattice, 2, slabs)]
        rounds = part.converge("field", sources)
        assert rounds >= (1 if slabs == 1 else 2)
        field = np.concatenate([worker.field("field") for worker in part.workers], axis=0)
        np.testing.assert_array_equal(field, distance_field(lattice, lattice.coords_of(sources), backend="numpy"))
        assert sum(worker.reached("field") for worker in part.workers) == np.count_nonzero(
            np.isfinite(field) & (field >= 0)
        )
        start, goal = (int(lattice.index_of(point)) for point in _open_vertices(lattice, 2, 10 + slabs))
        part.converge("path", [start])
        method = "dijkstra" if lattice.weighted else "bfs"
        try:
            single = shortest_path(lattice, lattice.coords_of(start), lattice.coords_of(goal), method, "numpy")
        except NoPathError:
            k, local = part.slab_of(goal)
            assert part.workers[k].value("path", local) in (-1.0, np.inf)
        else:
            np.testing.assert_array_equal(lattice.coords_of(part.walk("path", start, goal)), single.coords)
        faces = [worker.label_faces() for worker in part.workers]
        counts = [count for count, _, _ in faces]
        base = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        edges = []
        for k in range(len(part.workers)):
            nxt = part.neighbours(k)[1]
            if nxt is not None:
                touching = (faces[k][2] > 0) & (faces[nxt][1] > 0)
                edges.append((base[k] + faces[k][2][touching] - 1, base[nxt] + faces[nxt][1][touching] - 1))
        final, count = _merge_labels(counts, edges)
        labels = np.concatenate(
            [
                worker.relabel(np.concatenate([[0], final[base[k] : base[k + 1]]]).astype(np.int64))
                for k, worker in enumerate(part.workers)
            ],
            axis=0,
        )
        expected_labels, expected_count = components(lattice, backend="numpy")
        assert count == expected_count
        np.testing.assert_array_equal(labels, expected_labels)


def test_a_slab_holds_its_halo_rows_and_answers_only_its_query() -> None:
    whole = Lattice((6, 4), periodic=[True, False], obstacles=[{"kind": "random", "p": 0.3, "seed": 3}])
    assert halo_rows(6, True, 0, 2) == ([5, 0, 1, 2], 1)
    worker = SlabWorker(whole.spec(), 0, 2, False, {}, "numpy")
    np.testing.assert_array_equal(worker.halo.open_mask(), whole.open_mask()[[5, 0, 1, 2]])
    assert worker.halo.periodic == (False, False)
    # a slab without sources of its own starts unreached and takes its distances from the halos
    none = np.zeros(0, dtype=np.int64)
    first, last, (fresh, sent) = worker.step("q", none, None, None)
    assert fresh and sent == 0 and first.columns.size == 0 and last.columns.size == 0
    open_columns = np.flatnonzero(whole.open_mask()[5]).astype(np.int32)
    update = HaloUpdate(open_columns, np.full(open_columns.size, 3, dtype=np.int32))
    first, last, (fresh, sent) = worker.step("q", none, update, None)
    through = np.flatnonzero(whole.open_mask()[0] & whole.open_mask()[5])
    assert not fresh and sent == first.nbytes + last.nbytes and first.nbytes > 0
    # only the entries the halo lowered travel, each at one step past the halo's value
    np.testing.assert_array_equal(first.columns, through)
    np.testing.assert_array_equal(first.values, np.full(through.size, 4))
    assert first.values.dtype == np.int32
    # the same update again lowers nothing, and nothing is sent; a full round sends every reached entry again
    assert worker.step("q", none, update, None)[2] == (False, 0)
    again, _, _ = worker.step("q", none, None, None, full=True)
    assert np.isin(through, again.columns).all() and again.columns.size >= through.size
    converged = worker.field("q")
    assert converged is not None and converged[0][through].tolist() == [4] * through.size
    for lost in (worker.field("other"), worker.value("other", 0), worker.reached("other"), worker.trace("other", 0, 0)):
        assert lost is None
    assert worker.pid() > 0


def test_explicit_arrays_refuse_what_they_cannot_decode() -> None:
    spec = Lattice((2, 3), blocked=np.zeros((2, 3), dtype=bool)).spec()
    with pytest.raises(InvalidTypeError, match="arrays"):
        explicit_arrays(spec, {"mask": np.zeros((2, 3), dtype=bool)})
    with pytest.raises(InvalidTypeError, match=r"arrays\.blocked"):
        explicit_arrays(spec, {"blocked": [[False] * 3] * 2})
    with pytest.raises(MaskError, match=r"arrays\.blocked"):
        explicit_arrays(spec, {"blocked": b"\x00\x00"})
    with pytest.raises(WeightsError, match=r"arrays\.weights"):
        explicit_arrays(spec, {"weights": b"\x00" * 8})
    np.testing.assert_array_equal(
        rows_of({"weights": np.arange(6.0).reshape(3, 2)}, [2, 0])["weights"], [[4.0, 5.0], [0.0, 1.0]]
    )


def test_sources_are_checked_before_the_slabs_start() -> None:
    lattice = Lattice((4, 3), blocked=np.eye(4, 3, dtype=bool))
    spec, arrays = lattice.spec(), {"blocked": lattice.blocked}
    with pytest.raises(CoordinateError, match="sources"):
        partitioned_distance_field(spec, np.zeros((0, 2), dtype=np.int64), arrays=arrays)
    with pytest.raises(BlockedVertexError, match=r"sources\[1\]"):
        partitioned_distance_field(spec, [(0, 1), (1, 1)], arrays=arrays)
    with pytest.raises(BlockedVertexError, match="goal"):
        partitioned_shortest_path(spec, (0, 1), (2, 2), arrays=arrays)
    with pytest.raises(InvalidTypeError, match="slabs"):
        PartitionedLattice(spec, slabs=0, arrays=arrays)


def test_a_slab_refuses_a_query_over_its_budget_and_fits_where_the_whole_would_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lattice = Lattice((40, 9, 8), periodic=[False, True, False], obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    whole = SlabWorker(lattice.spec(), 0, 40, True, {}, "numba")
    part = _Slabs(lattice, 4, {}, "numba")
    slab_bytes = [worker.state_bytes() for worker in part.workers]
    # 4 slabs with their halo rows: each needs under a third of the whole lattice's state
    assert max(slab_bytes) * 3 < whole.state_bytes()
    monkeypatch.setenv("CATALYTIC_MEMORY_BUDGET", str(max(slab_bytes)))
    with pytest.raises(MemoryBudgetError):
        whole.step("q", np.zeros(1, dtype=np.int64), None, None)
    source = int(np.flatnonzero(lattice.open_mask_flat())[0])
    part.converge("q", [source])
    field = np.concatenate([worker.field("q") for worker in part.workers], axis=0)
    np.testing.assert_array_equal(field, distance_field(lattice, [lattice.coords_of(source).tolist()]))
    monkeypatch.setenv("CATALYTIC_MEMORY_BUDGET", str(max(slab_bytes) - 1))
    with pytest.raises(MemoryBudgetError):
        _Slabs(lattice, 4, {}, "numba").converge("q", [source])
