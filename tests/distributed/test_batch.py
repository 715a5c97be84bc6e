"""Batch queries on Ray return, in order, exactly what the single-node calls return."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import psutil
import pytest

from catalytic.distributed import batch_distance_fields, batch_shortest_paths
from catalytic.errors import BlockedVertexError, CoordinateError, MethodError, NoPathError
from catalytic.kernels import components, distance_field, shortest_path
from catalytic.lattice import Lattice

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]


def _pairs(lattice: Lattice, count: int, seed: int) -> list[list[list[int]]]:
    open_index = np.flatnonzero(lattice.open_mask_flat())
    picks = np.random.default_rng(seed).choice(open_index, size=(count, 2))
    return lattice.coords_of(picks).tolist()


def _same(got: Any, lattice: Lattice, start: list[int], goal: list[int], method: str, backend: str | None) -> None:
    try:
        expected = shortest_path(lattice, start, goal, method=method, backend=backend)
    except NoPathError:
        assert got is None
        return
    assert got is not None
    np.testing.assert_array_equal(got.coords, expected.coords)
    assert (got.length, got.cost, got.expanded, got.method, got.backend) == (
        expected.length,
        expected.cost,
        expected.expanded,
        expected.method,
        expected.backend,
    )
    assert got.memory == expected.memory


def test_batch_paths_in_order_with_unreachable_as_none(
    ray_cluster: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    lattice = Lattice((9, 8, 7), periodic=[False, True, False], obstacles=[{"kind": "random", "p": 0.55, "seed": 9}])
    labels, count = components(lattice, backend="numpy")
    assert count > 1
    apart = [np.argwhere(labels == 1)[0].tolist(), np.argwhere(labels == count)[0].tolist()]
    pairs = [*_pairs(lattice, 40, seed=1), apart, *_pairs(lattice, 19, seed=5)]
    got = batch_shortest_paths(lattice.spec(), pairs, chunk_size=7, backend="numpy")
    assert len(got) == len(pairs)
    for answer, (start, goal) in zip(got, pairs, strict=True):
        _same(answer, lattice, start, goal, "auto", "numpy")
    assert got[40] is None
    assert "paths" in capsys.readouterr().err  # the progress bar (tqdm writes to stderr)


@pytest.mark.parametrize("workers", [1, 2])
def test_default_chunks_keep_the_order(ray_cluster: dict[str, Any], workers: int) -> None:
    # Default chunking: one chunk per worker (150 + 150 pairs for two), answers in the order asked.
    lattice = Lattice((12, 11, 10), obstacles=[{"kind": "random", "p": 0.25, "seed": 4}])
    pairs = _pairs(lattice, 300, seed=8)
    got = batch_shortest_paths(lattice.spec(), pairs, backend="numba", workers=workers, progress=False)
    assert len(got) == len(pairs)
    for answer, (start, goal) in zip(got, pairs, strict=True):
        _same(answer, lattice, start, goal, "auto", "numba")


def test_batch_paths_with_explicit_weights_and_mask_as_stored_bytes(ray_cluster: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    blocked = rng.random((10, 10)) < 0.2
    weights = rng.uniform(0.5, 3.0, (10, 10))
    lattice = Lattice((10, 10), blocked=blocked, weights=weights)
    stored = {
        "blocked": np.packbits(blocked.ravel(), bitorder="little").tobytes(),
        "weights": weights.astype("<f8").tobytes(),
    }
    pairs = _pairs(lattice, 20, seed=2)
    got = batch_shortest_paths(
        lattice.spec(), pairs, arrays=stored, method="dijkstra", progress=False, workers=1, backend="numpy"
    )
    for answer, (start, goal) in zip(got, pairs, strict=True):
        _same(answer, lattice, start, goal, "dijkstra", "numpy")


def test_batch_fields_equal_single_node(ray_cluster: dict[str, Any]) -> None:
    lattice = Lattice((12, 11), periodic=True, obstacles=[{"kind": "box", "lo": [2, 0], "hi": [2, 9]}])
    sources_list = [[(0, 0)], [(5, 5), (11, 10)], (7, 3)]
    fields = batch_distance_fields(lattice.spec(), sources_list, progress=False, backend="numpy")
    assert len(fields) == 3
    for got, sources in zip(fields, sources_list, strict=True):
        np.testing.assert_array_equal(got, distance_field(lattice, sources, backend="numpy"))


def test_bad_queries_fail_before_reaching_ray(ray_cluster: dict[str, Any]) -> None:
    lattice = Lattice((4, 4), obstacles=[{"kind": "box", "lo": [1, 1], "hi": [1, 1]}])
    with pytest.raises(BlockedVertexError, match=r"pairs\[1\]\.goal"):
        batch_shortest_paths(lattice.spec(), [[(0, 0), (3, 3)], [(0, 0), (1, 1)]], progress=False)
    with pytest.raises(CoordinateError, match="pairs"):
        batch_shortest_paths(lattice.spec(), [[(0, 0), (4, 0)]], progress=False)
    with pytest.raises(BlockedVertexError, match=r"sources_list\[0\]\[1\]"):
        batch_distance_fields(lattice.spec(), [[(0, 0), (1, 1)]], progress=False)
    with pytest.raises(MethodError, match="method"):
        batch_shortest_paths(lattice.spec(), [[(0, 0), (3, 3)]], method="teleport", progress=False, backend="numpy")
    assert batch_shortest_paths(lattice.spec(), [], progress=False) == []


def _running_chunk_pids() -> list[int]:
    """Worker processes of this test run's own Ray (children of this process) now executing a chunk."""
    pids = []
    for process in psutil.Process().children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith("ray::run_chunk"):
                pids.append(process.pid)
        except psutil.Error:
            continue
    return pids


def test_a_chunk_lost_with_its_worker_is_retried(ray_cluster: dict[str, Any]) -> None:
    lattice = Lattice((60, 60, 30), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    pairs = _pairs(lattice, 12, seed=4)
    answers: list[Any] = []
    runner = threading.Thread(
        target=lambda: answers.extend(
            batch_shortest_paths(lattice.spec(), pairs, method="bfs", backend="numpy", chunk_size=3, progress=False)
        )
    )
    runner.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and runner.is_alive() and time.monotonic() < deadline:
        pids = _running_chunk_pids()
        if pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        else:
            time.sleep(0.02)
    runner.join(timeout=180)
    assert killed is not None, "no chunk was seen running"
    assert len(answers) == len(pairs)
    for answer, (start, goal) in zip(answers, pairs, strict=True):
        _same(answer, lattice, start, goal, "bfs", "numpy")


def _probe_worker(spec: dict[str, Any], shared: dict[str, Any]) -> tuple[int, bool, bool, int]:
    """In a Ray worker: the mask the kernels use for the batch's lattice, as the batch tasks get it."""
    from catalytic.distributed import batch
    from catalytic.kernels import _PREPARED

    lattice = batch._worker_lattice(spec, {}, shared, "numba")
    mask = _PREPARED[lattice]["numba:mask"]
    return os.getpid(), bool(mask.flags.writeable), bool(mask.flags.owndata), int(mask.sum())


def test_each_node_holds_the_materialised_mask_once(ray_cluster: dict[str, Any]) -> None:
    import ray

    from catalytic.distributed.batch import node_masks

    lattice = Lattice(
        (9, 8, 7, 6), periodic=[True, False, False, True], obstacles=[{"kind": "random", "p": 0.3, "seed": 8}]
    )
    spec = lattice.spec()
    shared = node_masks(ray, ray.put(spec), ray.put({}), "numba")
    # One holder and one copy per node (the local cluster has one node).
    assert list(shared) == [ray.get_runtime_context().get_node_id()]
    again = node_masks(ray, ray.put(spec), ray.put({}), "numba")
    assert again == shared  # the holder keeps the node's copy: nothing is materialised twice
    np.testing.assert_array_equal(ray.get(next(iter(shared.values()))), lattice.open_mask_flat().astype(np.uint8))
    probe = ray.remote(_probe_worker).options(num_cpus=1)
    answers = ray.get([probe.remote(spec, shared) for _ in range(6)])
    # Every worker maps the node's read-only copy instead of owning a mask of its own.
    assert all(not writeable and not owns for _, writeable, owns, _ in answers)
    assert {count for *_, count in answers} == {int(lattice.open_mask_flat().sum())}
    # Answers through the shared mask are the single-node answers.
    pairs = _pairs(lattice, 40, 3)
    for (start, goal), got in zip(
        pairs, batch_shortest_paths(spec, pairs, backend="numba", progress=False), strict=True
    ):
        _same(got, lattice, start, goal, "auto", "numba")
    assert node_masks(ray, ray.put(spec), ray.put({}), "cupy") == {}  # a GPU keeps its own mask


def _recording_bar(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the batch bar's position after each move (the driver makes its tqdm bar in this process)."""
    import tqdm.auto

    positions: list[float] = []

    class Recording(tqdm.auto.tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            moved = super().update(n)
            positions.append(float(self.n))
            return moved

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    return positions


def test_the_bar_moves_with_the_kernels_inside_a_chunk(
    ray_cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One chunk of two long fields (a numpy BFS reports every level). The chunk's first kernel report is sent at
    # once and is on the board before the chunk's answers come back, so the bar stands inside the chunk before it
    # stands at its end, whatever the timing; later reports only add positions.
    positions = _recording_bar(monkeypatch)
    lattice = Lattice((160, 150), obstacles=[{"kind": "random", "p": 0.1, "seed": 2}])
    sources_list = [[(0, 0)], [(159, 149)]]
    fields = batch_distance_fields(lattice.spec(), sources_list, chunk_size=2, workers=1, backend="numpy")
    for got, sources in zip(fields, sources_list, strict=True):
        np.testing.assert_array_equal(got, distance_field(lattice, sources, backend="numpy"))
    moves = [p for p in positions if p > 0]
    assert moves == sorted(moves) and len(set(moves)) == len(moves), positions
    assert moves[-1] == 2.0
    inside = [p for p in moves if 0 < p < 2]
    assert inside, positions  # the bar moved before the chunk was done
    assert all(p * 100 == int(p * 100) for p in inside)  # positions in hundredths of a query


def test_path_batch_progress_rises_to_the_query_count(
    ray_cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunks of paths: each chunk's first query reports its kernel's progress, so every chunk moves the bar
    # before it finishes; the answers are those of a batch without progress, in order.
    positions = _recording_bar(monkeypatch)
    lattice = Lattice((40, 40, 30), obstacles=[{"kind": "random", "p": 0.2, "seed": 6}])
    pairs = _pairs(lattice, 12, seed=3)
    got = batch_shortest_paths(lattice.spec(), pairs, method="bfs", backend="numpy", chunk_size=4, workers=1)
    for answer, (start, goal) in zip(got, pairs, strict=True):
        _same(answer, lattice, start, goal, "bfs", "numpy")
    moves = [p for p in positions if p > 0]
    assert moves == sorted(moves) and moves[-1] == 12.0, positions
    assert {4.0, 8.0} <= set(moves)  # each chunk's end
    for lo in (0, 4, 8):
        assert any(lo < p < lo + 4 for p in moves), (lo, positions)


def test_a_lattice_is_placed_once_for_every_batch_of_it(ray_cluster: dict[str, Any]) -> None:
    from catalytic.distributed import batch

    lattice = Lattice((7, 6, 5), periodic=[True, False, True], obstacles=[{"kind": "random", "p": 0.3, "seed": 6}])
    spec = lattice.spec()
    answers = []
    refs = []
    for seed in (1, 2):
        pairs = _pairs(lattice, 40, seed=seed)
        answers.append((pairs, batch_shortest_paths(spec, pairs, backend="numba", workers=2, progress=False)))
        refs.append([key_refs for key, key_refs in batch._placements.items() if key[1] == batch._lattice_key(spec)])
    # the second batch sent nothing new: the same spec, arrays and mask references serve it
    assert len(refs[1]) == 1 and refs[0][0][0] is refs[1][0][0] and refs[0][0][2] == refs[1][0][2]
    for pairs, got in answers:
        for answer, (start, goal) in zip(got, pairs, strict=True):
            _same(answer, lattice, start, goal, "auto", "numba")
