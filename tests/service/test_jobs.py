"""Jobs: cancel mid-run stops the worker process, time limits, a full queue answers 503 with Retry-After."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from service.service_helpers import Service, start_service

pytestmark = pytest.mark.anyio

# The NumPy reference Dijkstra on 10^6 vertices runs for tens of seconds: long enough to catch it mid-run.
SLOW_JOB = {
    "operation": "shortest_path",
    "lattice": {"shape": [100, 100, 100]},
    "params": {"start": [0, 0, 0], "goal": [99, 99, 99], "method": "dijkstra"},
    "backend": "numpy",
}


async def running(service: Service, location: str) -> dict[str, Any]:
    for _ in range(1200):
        status = (await service.client.get(location)).json()
        if status["status"] == "running" and status["progress"] >= 0.2:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"job never ran: {status}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cancel_mid_run_kills_the_worker_and_the_next_job_runs(make_settings: Any) -> None:
    async for service in start_service(make_settings(PARALLEL_CORES=1)):
        submitted = await service.client.post("/api/jobs", json=SLOW_JOB)
        assert submitted.status_code == 202
        location = submitted.headers["location"]
        await running(service, location)
        pid = service.state.runner.worker_pids()[submitted.json()["id"]]
        assert alive(pid)
        cancelled = await service.client.delete(location)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        for _ in range(100):
            if not alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not alive(pid)
        assert (await service.client.get(location)).json()["status"] == "cancelled"
        assert (await service.client.get(f"{location}/result")).status_code == 409
        assert (await service.client.delete(location)).status_code == 409
        events = await service.state.db.fetch("SELECT type FROM events")
        assert [e["type"] for e in events] == ["job.cancelled"]
        quick = {"operation": "analyze", "lattice": {"shape": [4, 4]}}
        follow = await service.client.post("/api/jobs", json=quick)
        for _ in range(1200):
            status = (await service.client.get(follow.headers["location"])).json()
            if status["status"] == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "succeeded"


async def test_queue_full_is_503_and_time_limit_fails_the_job(make_settings: Any) -> None:
    settings = make_settings(
        PARALLEL_CORES=1, CATALYTIC_MAX_QUEUED_JOBS=1, CATALYTIC_JOB_TIMEOUT_S=1.0, CATALYTIC_RETRY_AFTER_S=3
    )
    async for service in start_service(settings):
        first = await service.client.post("/api/jobs", json=SLOW_JOB)
        assert first.status_code == 202
        refused = await service.client.post("/api/jobs", json=SLOW_JOB)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
        ready = await service.client.get("/ready")
        assert ready.status_code == 503 and ready.json()["queue"] == {"pending": 1, "limit": 1}
        for _ in range(1200):
            status = (await service.client.get(first.headers["location"])).json()
            if status["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "failed" and status["error"]["error"] == "timeout"
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 1
        assert (await service.client.get("/ready")).status_code == 200


async def test_bfs_on_weights_is_refused_at_submission(service: Service) -> None:
    job = {
        "operation": "shortest_path",
        "lattice": {"shape": [2, 2], "weights": [[1.0, 1.0], [1.0, 1.0]]},
        "params": {"start": [0, 0], "goal": [1, 1], "method": "bfs"},
    }
    refused = await service.client.post("/api/jobs", json=job)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "params.method"
    assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 0


async def test_a_job_error_is_recorded_as_failed(make_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # What only the run can find: A*'s state over the job worker's memory budget (its environment).
    monkeypatch.setenv("CATALYTIC_MEMORY_BUDGET", "1000")
    job = {
        "operation": "shortest_path",
        "lattice": {"shape": [16, 16]},
        "params": {"start": [0, 0], "goal": [15, 15], "method": "astar"},
    }
    async for service in start_service(make_settings()):
        submitted = await service.client.post("/api/jobs", json=job)
        assert submitted.status_code == 202
        for _ in range(1200):
            status = (await service.client.get(submitted.headers["location"])).json()
            if status["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "failed" and status["error"]["status"] == 507, status
        assert "budget" in status["error"]["message"].lower(), status
        events = await service.state.db.fetch("SELECT type FROM events")
        assert [e["type"] for e in events] == ["job.failed"]
