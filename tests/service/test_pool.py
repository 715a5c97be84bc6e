"""The compute processes of inline requests: same answers as the thread pool, batches, lattices shipped once,
errors, time limits that stop the work, and workers that die."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from service.service_helpers import start_service

from catalytic import Lattice
from catalytic.errors import BlockedVertexError, MethodError
from catalytic.kernels import shortest_path
from catalytic.service.pool import ComputeFailed, ProcessPool

pytestmark = pytest.mark.anyio

OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 5}]
OPTIONS = {"backend": "numba", "memory": "auto", "max_sizes": 100}
LONG = 120.0


@pytest.fixture
async def pool() -> AsyncIterator[ProcessPool]:
    with ThreadPoolExecutor(1) as io:
        running = ProcessPool(1, cache_size=2, io=io, max_vertices=2**24)
        try:
            yield running
        finally:
            await running.close()


def _open_pairs(lattice: Lattice, count: int) -> list[tuple[list[int], list[int]]]:
    import numpy as np

    open_indices = np.flatnonzero(lattice.open_mask_flat())
    chosen = np.random.default_rng(3).choice(open_indices, size=2 * count, replace=False)
    coords = lattice.coords_of(chosen).tolist()
    return [(coords[2 * k], coords[2 * k + 1]) for k in range(count)]


def _without_timing(body: bytes) -> dict[str, Any]:
    answer = json.loads(body)
    answer.pop("elapsed_ms", None)
    answer.pop("request_id", None)  # an error's: unique to each request
    return dict(answer)


async def test_paths_match_the_kernel_and_come_in_batches(pool: ProcessPool) -> None:
    lattice = Lattice((8, 8, 8), obstacles=OBSTACLES)
    pairs = _open_pairs(lattice, 40)
    outcomes = await asyncio.gather(
        *(
            pool.run("k", lattice, "shortest_path", {"start": s, "goal": g, "method": "auto"}, OPTIONS, LONG)
            for s, g in pairs
        )
    )
    for (start, goal), outcome in zip(pairs, outcomes, strict=True):
        answer = json.loads(outcome.fresh)
        assert answer["cached"] is False and json.loads(outcome.hit)["cached"] is True
        if answer["found"]:
            assert answer["path"] == shortest_path(lattice, start, goal).coords.tolist()
        assert outcome.backend in (None, "numba")
    # 40 calls submitted together: one worker, so they travel in a few batches, not 40 round trips.
    assert pool.calls >= 40 and pool.batches < 10


async def test_a_lattice_is_shipped_once_and_evicted_by_lru(pool: ProcessPool) -> None:
    lattices = {key: Lattice((6, 7), obstacles=[{"kind": "random", "p": 0.1, "seed": seed}]) for seed, key in
                enumerate("abc")}  # fmt: skip
    params = {"start": [0, 0], "goal": [5, 6], "method": "bfs"}
    for key in "abcab":  # cache_size=2: "a" is evicted by "c" and shipped again
        lattice = lattices[key]
        if not lattice.is_open(0) or not lattice.is_open(41):
            continue
        outcome = await pool.run(key, lattice, "shortest_path", params, OPTIONS, LONG)
        answer = json.loads(outcome.fresh)
        expected = shortest_path(lattice, [0, 0], [5, 6], method="bfs")
        assert answer["path"] == expected.coords.tolist()
    calls_before = pool.calls
    await pool.run("b", lattices["b"], "analyze", {}, OPTIONS, LONG)
    assert pool.calls == calls_before + 1  # "b" is held: no second send with the arrays


async def test_library_errors_come_back_as_themselves_and_others_as_compute_failed(pool: ProcessPool) -> None:
    lattice = Lattice((4, 4), obstacles=[{"kind": "box", "lo": [0, 0], "hi": [0, 0]}])
    with pytest.raises(BlockedVertexError) as caught:
        await pool.run("e", lattice, "shortest_path", {"start": [0, 0], "goal": [3, 3]}, OPTIONS, LONG)
    assert caught.value.field == "start" and "[0, 0]" in str(caught.value)
    with pytest.raises(MethodError):  # an unknown operation, as the one runner names it everywhere
        await pool.run("e", lattice, "teleport", {}, OPTIONS, LONG)
    with pytest.raises(ComputeFailed, match="KeyError"):
        await pool.run("e", lattice, "shortest_path", {"goal": [3, 3]}, OPTIONS, LONG)
    # The worker lives on after every one of them.
    outcome = await pool.run("e", lattice, "shortest_path", {"start": [1, 1], "goal": [3, 3]}, OPTIONS, LONG)
    assert json.loads(outcome.fresh)["length"] == 4


async def test_a_call_past_its_time_limit_kills_its_worker_and_the_next_one_runs(pool: ProcessPool) -> None:
    small = Lattice((5, 5))
    await pool.run("s", small, "analyze", {}, OPTIONS, LONG)  # the worker is up
    (first_pid,) = pool.worker_pids()
    big = Lattice((256, 256, 128))
    with pytest.raises(TimeoutError):
        await pool.run("big", big, "components", {}, {**OPTIONS, "backend": "numpy"}, 0.2)
    assert pool.worker_pids() == []
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)
    outcome = await pool.run("s", small, "shortest_path", {"start": [0, 0], "goal": [4, 4]}, OPTIONS, LONG)
    assert json.loads(outcome.fresh)["length"] == 8
    assert pool.worker_pids() and pool.worker_pids()[0] != first_pid


async def test_calls_on_a_worker_that_dies_are_sent_again(pool: ProcessPool) -> None:
    lattice = Lattice((500, 500))
    body = {"start": [0, 0], "goal": [499, 499], "method": "dijkstra"}
    await pool.run("w", Lattice((3, 3)), "analyze", {}, OPTIONS, LONG)
    (pid,) = pool.worker_pids()
    options = {**OPTIONS, "backend": "numpy"}  # about 0.4 s of work
    running = asyncio.ensure_future(pool.run("w2", lattice, "shortest_path", body, options, LONG))
    # Wait until the call is on the worker with its lattice (after the worker's "need"), then kill the worker.
    for _ in range(500):
        worker = pool._workers[0]
        if any(call.ship for call in worker.in_flight.values()):
            break
        await asyncio.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    outcome = await running
    assert json.loads(outcome.fresh)["length"] == 998
    assert pool.worker_pids() and pool.worker_pids()[0] != pid


async def test_closed_pool_stops_its_workers() -> None:
    with ThreadPoolExecutor(1) as io:
        pool = ProcessPool(2, cache_size=2, io=io, max_vertices=2**20)
        await asyncio.gather(*(pool.run(str(k), Lattice((4, 4)), "analyze", {}, OPTIONS, LONG) for k in range(6)))
        pids = pool.worker_pids()
        assert 1 <= len(pids) <= 2
        await pool.close()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        with pytest.raises(RuntimeError, match="closed"):
            await pool.run("x", Lattice((4, 4)), "analyze", {}, OPTIONS, LONG)


async def test_both_compute_pools_answer_the_same(make_settings: Any) -> None:
    lattice = {"shape": [9, 9, 9], "obstacles": OBSTACLES}
    start, goal = _open_pairs(Lattice(**lattice), 1)[0]
    requests = [
        ("/api/lattice/path", {"lattice": lattice, "start": start, "goal": goal}),
        ("/api/lattice/analyze", {"lattice": lattice}),
        ("/api/lattice/components", {"lattice": lattice}),
        ("/api/lattice/path", {"lattice": lattice, "start": [0, 0, 0], "goal": [9, 0, 0]}),
    ]
    answers: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for kind in ("process", "thread"):
        async for service in start_service(make_settings(CATALYTIC_COMPUTE_POOL=kind)):
            assert (service.state.pool is not None) == (kind == "process")
            for route, body in requests:
                response = await service.client.post(route, json=body)
                answers.setdefault(kind, []).append((response.status_code, _without_timing(response.content)))
    expected = shortest_path(Lattice(**lattice), start, goal)
    process = answers["process"]
    assert process[0][0] == 200 and process[0][1]["path"] == expected.coords.tolist()
    assert process[1][0] == 200 and process[2][0] == 200
    assert process[3][0] == 422 and process[3][1]["errors"][0]["field"] == "goal"
    assert process == answers["thread"]
