"""Job leases: a job whose replica died is taken over and finished once; live leases, attempts and cancels hold.

A dead replica is simulated by writing its job record directly: owned by a replica id no process has, its
lease in the past. The reclaimer pass is called directly with an injected clock, so no test waits on a lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from service.service_helpers import Service, start_service

from catalytic.lattice import Lattice
from catalytic.service import db as queries

pytestmark = pytest.mark.anyio

GHOST = "ghost-host:4242:deadbeef"
PATH_PARAMS = {"start": [0, 0], "goal": [4, 4], "method": "dijkstra"}


class Clock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded SQLite file, else a fresh PostgreSQL database (set up outside the event loop)."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def replica(database_url: str | None, make_settings: Any) -> AsyncIterator[tuple[Service, Clock]]:
    """One running service (the survivor) on SQLite or PostgreSQL, its runner on an injected clock."""
    overrides: dict[str, Any] = {"JOB_LEASE_SECONDS": 30, "JOB_MAX_ATTEMPTS": 3}
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    async for service in start_service(make_settings(**overrides)):
        clock = Clock()
        service.state.runner.clock = clock
        yield service, clock


async def orphan(
    service: Service, status: str, *, lease_expires_at: float | None, attempts: int, created_at: float
) -> str:
    """Write a job as a replica that then died would have left it."""
    job_id = queries.new_id("job")
    db = service.state.db
    async with db.transaction() as conn:
        await queries.insert_job(
            conn,
            {
                "id": job_id,
                "operation": "shortest_path",
                "lattice_id": None,
                "spec": Lattice((5, 5)).spec(),
                "params": PATH_PARAMS,
                "backend": "numpy",
                "owner": GHOST,
                "created_at": created_at,
            },
        )
        await conn.execute(
            "UPDATE service_jobs SET status = $2, lease_expires_at = $3, attempts = $4, started_at = $5 WHERE id = $1",
            job_id,
            status,
            lease_expires_at,
            attempts,
            None if status == "queued" else created_at,
        )
    return job_id


async def finished(service: Service, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job = (await service.client.get(f"/api/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never finished: {job}")


async def events_of(service: Service, job_id: str) -> list[str]:
    rows = await service.state.db.fetch("SELECT type, payload FROM events ORDER BY created_at")
    return [r["type"] for r in rows if job_id in str(r["payload"])]


async def test_orphaned_running_and_queued_jobs_are_taken_over_and_finish_once(
    replica: tuple[Service, Clock],
) -> None:
    service, clock = replica
    runner = service.state.runner
    running = await orphan(service, "running", lease_expires_at=clock.now - 1, attempts=1, created_at=clock.now - 60)
    # Queued by a replica that died before claiming it: never renewed, so its creation time stands in.
    queued = await orphan(service, "queued", lease_expires_at=None, attempts=0, created_at=clock.now - 31)
    outcome = await runner.reclaim_once()
    assert sorted(outcome["taken"]) == sorted([running, queued]) and outcome["failed"] == []
    for job_id, attempts in ((running, 2), (queued, 1)):
        job = await finished(service, job_id)
        assert job["status"] == "succeeded", job
        result = (await service.client.get(f"/api/jobs/{job_id}/result")).json()["result"]
        assert result["found"] and result["length"] == 8 and result["path"][0] == [0, 0]
        record = await queries.get_job(service.state.db, job_id)
        assert record is not None and record["owner"] == runner.owner and record["attempts"] == attempts
        assert await events_of(service, job_id) == ["job.succeeded"]
    # A later pass finds nothing: finished jobs are never taken over again.
    clock.now += 1000
    assert await runner.reclaim_once() == {"taken": [], "failed": []}
    assert [await events_of(service, j) for j in (running, queued)] == [["job.succeeded"]] * 2


async def test_a_live_lease_is_not_stolen(replica: tuple[Service, Clock]) -> None:
    service, clock = replica
    runner = service.state.runner
    job_id = await orphan(service, "running", lease_expires_at=clock.now + 10, attempts=1, created_at=clock.now - 60)
    fresh_queued = await orphan(service, "queued", lease_expires_at=None, attempts=0, created_at=clock.now - 5)
    assert await runner.reclaim_once() == {"taken": [], "failed": []}
    for held in (job_id, fresh_queued):
        record = await queries.get_job(service.state.db, held)
        assert record is not None and record["owner"] == GHOST
    assert (await queries.get_job(service.state.db, job_id) or {})["status"] == "running"
    # The owner renews (it is alive): still not stolen once the first expiry has passed.
    assert await queries.renew_lease(service.state.db, job_id, GHOST, clock.now + 40)
    clock.now += 20
    assert await runner.reclaim_once() == {"taken": [], "failed": []}
    clock.now += 30
    outcome = await runner.reclaim_once()
    assert sorted(outcome["taken"]) == sorted([job_id, fresh_queued])
    assert (await finished(service, job_id))["status"] == "succeeded"
    assert (await finished(service, fresh_queued))["status"] == "succeeded"
    # The dead owner can no longer renew or finish what it lost.
    assert not await queries.renew_lease(service.state.db, job_id, GHOST, clock.now + 40)


async def test_out_of_attempts_fails_with_one_event(replica: tuple[Service, Clock]) -> None:
    service, clock = replica
    job_id = await orphan(service, "running", lease_expires_at=clock.now - 1, attempts=3, created_at=clock.now - 90)
    outcome = await service.state.runner.reclaim_once()
    assert outcome == {"taken": [], "failed": [job_id]}
    job = (await service.client.get(f"/api/jobs/{job_id}")).json()
    assert job["status"] == "failed" and job["error"]["error"] == "attempts_exhausted"
    assert "JOB_MAX_ATTEMPTS=3" in job["error"]["message"]
    assert (await service.client.get(f"/api/jobs/{job_id}/result")).status_code == 409
    assert await events_of(service, job_id) == ["job.failed"]
    assert await service.state.runner.reclaim_once() == {"taken": [], "failed": []}
    assert await events_of(service, job_id) == ["job.failed"]


async def test_cancelled_jobs_are_not_resurrected(replica: tuple[Service, Clock]) -> None:
    service, clock = replica
    runner = service.state.runner
    job_id = await orphan(service, "running", lease_expires_at=clock.now - 1, attempts=1, created_at=clock.now - 60)
    cancelled = await service.client.delete(f"/api/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert await runner.reclaim_once() == {"taken": [], "failed": []}
    # Cancelled between take-over and claim: the claim refuses, nothing runs.
    second = await orphan(service, "running", lease_expires_at=clock.now - 1, attempts=1, created_at=clock.now - 60)
    async with service.state.db.transaction() as conn:
        assert await queries.take_over_job(conn, second, clock.now, 30.0, runner.owner)
        assert await queries.cancel_job(conn, second, clock.now)
    assert not await queries.claim_job(service.state.db, second, clock.now, runner.owner, clock.now + 30)
    clock.now += 1000
    assert await runner.reclaim_once() == {"taken": [], "failed": []}
    for job in (job_id, second):
        record = await queries.get_job(service.state.db, job)
        assert record is not None and record["status"] == "cancelled"
    assert await events_of(service, job_id) == ["job.cancelled"]
    assert (await service.client.get(f"/api/jobs/{job_id}/result")).status_code == 409


async def test_two_replicas_owner_renews_then_stops_and_the_other_finishes_its_job(
    database_url: str | None, make_settings: Any
) -> None:
    overrides: dict[str, Any] = {"JOB_LEASE_SECONDS": 30, "JOB_MAX_ATTEMPTS": 3}
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    settings = make_settings(**overrides)
    async for first in start_service(settings):
        async for second in start_service(settings):
            a, b = first.state.runner, second.state.runner
            assert a.owner != b.owner
            clock_a, clock_b = Clock(), Clock()
            a.clock, b.clock = clock_a, clock_b
            # The first replica's job runner stops (as if its process hung) after accepting a job.
            await a.close()
            submitted = await first.client.post(
                "/api/jobs",
                json={
                    "operation": "shortest_path",
                    "lattice": {"shape": [5, 5]},
                    "params": PATH_PARAMS,
                    "backend": "numpy",
                },
            )
            assert submitted.status_code == 202
            job_id = submitted.json()["id"]
            clock_a.now += 25
            await a.renew_leases()
            record = await queries.get_job(second.state.db, job_id)
            assert record is not None and record["owner"] == a.owner and record["status"] == "queued"
            assert record["lease_expires_at"] == pytest.approx(clock_a.now + 30)
            # Past the implicit lease from creation, but inside the renewed one: not stolen.
            clock_b.now = clock_a.now + 10
            assert await b.reclaim_once() == {"taken": [], "failed": []}
            clock_b.now = clock_a.now + 31
            assert await b.reclaim_once() == {"taken": [job_id], "failed": []}
            job = await finished(second, job_id)
            assert job["status"] == "succeeded"
            result = (await first.client.get(f"/api/jobs/{job_id}/result")).json()["result"]
            assert result["length"] == 8 and result["path"][-1] == [4, 4]
            assert await events_of(second, job_id) == ["job.succeeded"]
            # The stalled owner learns it lost the job when it next tries to renew.
            await a.renew_leases()
            assert job_id in a._lost


async def test_an_owner_that_lost_its_lease_stops_its_run_and_records_nothing(make_settings: Any) -> None:
    slow = {
        "operation": "shortest_path",
        "lattice": {"shape": [100, 100, 100]},
        "params": {"start": [0, 0, 0], "goal": [99, 99, 99], "method": "dijkstra"},
        "backend": "numpy",
    }
    async for service in start_service(make_settings(PARALLEL_CORES=1, JOB_LEASE_SECONDS=30)):
        runner = service.state.runner
        job_id = (await service.client.post("/api/jobs", json=slow)).json()["id"]
        for _ in range(600):
            if job_id in runner.worker_pids():
                break
            await asyncio.sleep(0.05)
        assert job_id in runner.worker_pids()
        # Another replica took the job over (this one had stalled past its lease).
        async with service.state.db.transaction() as conn:
            assert await queries.take_over_job(conn, job_id, time.time() + 1000, 30.0, GHOST)
        await runner.renew_leases()
        for _ in range(100):
            if job_id not in runner.worker_pids():
                break
            await asyncio.sleep(0.05)
        assert job_id not in runner.worker_pids()
        record = await queries.get_job(service.state.db, job_id)
        assert record is not None and record["owner"] == GHOST and record["status"] == "queued"
        assert await events_of(service, job_id) == []
