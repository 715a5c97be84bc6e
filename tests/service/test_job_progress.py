"""A job's progress comes from its kernels: the worker process relays what they report, rising, and the runner
writes it at most every PROGRESS_WRITE_S, where GET /api/jobs/{id} reads it."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from service.service_helpers import start_service

from catalytic.lattice import Lattice
from catalytic.service.compute import array_bytes, serve_tasks
from catalytic.service.jobs import PROGRESS_WRITE_S, WorkerSlot


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


@pytest.mark.anyio
async def test_get_shows_the_job_progress_rising(make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real worker process runs a numpy BFS that reports each of its 79 levels. Between two relayed messages the
    # test reads GET /api/jobs/{id} and moves the runner's clock a quarter of PROGRESS_WRITE_S on: the runner may
    # write every second message, so what GET shows is fixed by the messages and the clock, not by timing.
    body = {
        "operation": "distance_field",
        "lattice": {"shape": [40, 40]},
        "params": {"sources": [[0, 0]]},
        "backend": "numpy",
    }
    relay_slot_run = WorkerSlot.run
    seen: list[tuple[float, float, str, float]] = []  # (relayed fraction, clock, GET status, GET progress)
    now = [time.time()]
    job: dict[str, Any] = {}  # the running service and the job's location, once submitted
    submitted = asyncio.Event()

    async def run(
        slot: WorkerSlot, task: dict[str, Any], on_progress: Callable[[float], Awaitable[None]]
    ) -> tuple[Any, ...]:
        async def between(fraction: float) -> None:
            await on_progress(fraction)  # the runner's relay: writes the row when the clock lets it
            await submitted.wait()
            shown = (await job["service"].client.get(job["location"])).json()
            seen.append((fraction, now[0], shown["status"], shown["progress"]))
            now[0] += PROGRESS_WRITE_S / 4

        return await relay_slot_run(slot, task, between)

    monkeypatch.setattr(WorkerSlot, "run", run)
    async for service in start_service(make_settings(PARALLEL_CORES=1)):
        service.state.runner.clock = lambda: now[0]
        answer = await service.client.post("/api/jobs", json=body)
        assert answer.status_code == 202, answer.text
        job.update(service=service, location=answer.headers["location"])
        submitted.set()
        async with asyncio.timeout(120):
            while (final := (await service.client.get(job["location"])).json())["status"] in ("queued", "running"):
                await asyncio.sleep(0.05)
    assert final["status"] == "succeeded" and final["progress"] == 1.0, final
    # What the runner may have written: a message at least PROGRESS_WRITE_S after the last write.
    written, written_at, expected = 0.0, -math.inf, []
    for fraction, at, _, _ in seen:
        if at - written_at >= PROGRESS_WRITE_S:
            written, written_at = fraction, at
        expected.append(written)
    assert [progress for *_, progress in seen] == expected
    assert {status for _, _, status, _ in seen} == {"running"}
    shown = [progress for *_, progress in seen]
    inside = sorted({p for p in shown if 0 < p < 1})
    assert len(inside) >= 5, shown
    assert shown == sorted(shown)
    assert len(seen) > 2 * len(inside) - 2  # writes were held back: at most every other message
