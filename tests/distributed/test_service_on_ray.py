"""The HTTP service's job worker hands tasks to Ray when RAY_ADDRESS is set, with the local answers."""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest

from catalytic.lattice import Lattice
from catalytic.service.compute import array_bytes, execute_task, serve_tasks

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]


def _task(lattice: Lattice, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "operation": operation,
        "spec": lattice.spec(),
        "arrays": array_bytes(lattice),
        "params": params,
        "backend": None,
        "memory": "auto",
        "max_sizes": 3,
    }


def test_every_operation_on_ray_equals_the_local_run(ray_cluster: dict[str, Any]) -> None:
    blocked = np.zeros((9, 7, 6), dtype=bool)
    blocked[4, :, :3] = True
    lattice = Lattice((9, 7, 6), periodic=[True, False, False], blocked=blocked, weights=np.full((9, 7, 6), 1.5))
    cases = [
        ("shortest_path", {"start": [0, 0, 0], "goal": [8, 6, 5], "method": "dijkstra"}),
        ("distance_field", {"sources": [[0, 0, 0]]}),
        ("components", {}),
        ("analyze", {}),
    ]
    for operation, params in cases:
        task = _task(lattice, operation, params)
        local, local_array = execute_task(task)
        remote, remote_array = execute_task(task, ray_address=ray_cluster["address"])
        assert (local["executor"], remote["executor"]) == ("local", "ray")
        for answer in (local, remote):
            del answer["executor"], answer["elapsed_ms"]
        assert remote == local, operation
        if local_array is None:
            assert remote_array is None
        else:
            assert np.array_equal(remote_array, local_array)


def test_job_worker_process_uses_ray_when_the_address_is_set(
    ray_cluster: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster["address"])
    lattice = Lattice((6, 6, 6), obstacles=[{"kind": "random", "p": 0.1, "seed": 5}])
    parent, child = multiprocessing.get_context("spawn").Pipe()
    worker = multiprocessing.get_context("spawn").Process(target=serve_tasks, args=(child,), daemon=True)
    worker.start()
    try:
        parent.send(_task(lattice, "components", {}))
        messages = [parent.recv()]
        while messages[-1][0] == "progress":
            assert parent.poll(120), "the job worker did not answer"
            messages.append(parent.recv())
        kind, answer, npy, *_ = messages[-1]
        assert kind == "ok", answer
        assert answer["executor"] == "ray"
        local, _ = execute_task(_task(lattice, "components", {}))
        assert answer["count"] == local["count"] and answer["sizes"] == local["sizes"]
        assert npy is not None
    finally:
        parent.close()
        worker.terminate()
        worker.join(10)
