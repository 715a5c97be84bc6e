"""A job's progress comes from its kernels: the worker process relays what they report, rising."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest

from catalytic.lattice import Lattice
from catalytic.service.compute import array_bytes, serve_tasks


def _task(lattice: Lattice, operation: str, params: dict[str, Any], backend: str) -> dict[str, Any]:
    return {
        "operation": operation,
        "spec": lattice.spec(),
        "arrays": array_bytes(lattice),
        "params": params,
        "backend": backend,
        "memory": "auto",
        "max_sizes": 3,
    }


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("distance_field", {"sources": [[0, 0]]}),
        ("shortest_path", {"start": [0, 0], "goal": [39, 39], "method": "bfs"}),
    ],
)
def test_a_job_reports_rising_progress_from_its_kernels(operation: str, params: dict[str, Any]) -> None:
    # the numpy backend reports each BFS level as it reaches it, so the count of messages does not depend on
    # timing; a 40 x 40 lattice has 79 levels
    lattice = Lattice((40, 40))
    parent, child = multiprocessing.Pipe()
    worker = threading.Thread(target=serve_tasks, args=(child,), daemon=True)
    worker.start()
    try:
        parent.send(_task(lattice, operation, params, "numpy"))
        fractions = []
        while (message := parent.recv())[0] == "progress":
            fractions.append(message[1])
        assert message[0] == "ok", message
    finally:
        parent.close()
        worker.join(timeout=10)
    inside = [f for f in fractions if 0 < f < 1]
    assert len(set(inside)) >= 5, fractions
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[-1] == 1.0
