"""Jobs claimed by capability: GPU work goes to GPU workers, waits for them a stated time, then runs on a CPU worker
and says so; device memory and the CUDA context cap bound what a GPU worker takes.

Unit level: the capability decision, the claim order of the shared queue (SQLite and PostgreSQL), device-memory
admission, the context cap, the take-over of a GPU job. End to end: two real ``catalytic serve`` processes on
loopback sharing one SQLite file, one CPU-only and one GPU-capable whose GPU workers run the cupy backend's
kernels under numba's CUDA simulator.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from service.service_helpers import Service, start_service
from service.test_replicas import Replica

from catalytic.lattice import Lattice
from catalytic.operations import path_method
from catalytic.service import db as queries
from catalytic.service.admission import device_job_bytes
from catalytic.service.jobs import wants_gpu
from catalytic.storage import migrate, open_database

pytestmark = pytest.mark.anyio

GPU_MIN = 64
"""CATALYTIC_GPU_MIN_VERTICES of these tests: an 8 x 8 lattice is GPU work, a 4 x 4 one is not."""
FIELD = {"operation": "distance_field", "lattice": {"shape": [12, 12]}, "params": {"sources": [[0, 0]]}}
SMALL = {"operation": "analyze", "lattice": {"shape": [4, 4]}}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def settings_of(make_settings: Any, database_url: str | None = None, **overrides: Any) -> Any:
    values: dict[str, Any] = {"CATALYTIC_GPU_MIN_VERTICES": GPU_MIN, "PARALLEL_CORES": 1, **overrides}
    if database_url is not None:
        values["DATABASE_URL"] = database_url
    return make_settings(**values)


async def settled(client: httpx.AsyncClient, location: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = (await client.get(location)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"{location} never finished: {job}")


async def submit(service: Service, body: dict[str, Any]) -> str:
    answer = await service.client.post("/api/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.headers["location"])


async def gpu_worker_alive(service: Service, name: str = "gpu-pod:1:feed") -> None:
    """Write the heartbeat a GPU worker in another process would write."""
    now = time.time()
    await queries.record_worker(service.state.db, name, "gpu", now, now - 3600)


def test_gpu_work_is_large_device_work_a_request_lets_the_gpu_run() -> None:
    big, small = {"shape": [2048, 1024]}, {"shape": [100, 100]}
    threshold = 2**20
    for operation in ("distance_field", "components", "analyze"):
        assert wants_gpu(operation, None, big, None, threshold)
        assert wants_gpu(operation, None, big, "auto", threshold)
        assert not wants_gpu(operation, None, small, None, threshold)
        assert not wants_gpu(operation, None, big, "numba", threshold)
        assert not wants_gpu(operation, None, big, "numpy", threshold)
    for method in ("bfs", "bidirectional", "dijkstra"):  # dijkstra: near-far relaxation on the device
        assert wants_gpu("shortest_path", method, big, None, threshold)
    assert not wants_gpu("shortest_path", "astar", big, None, threshold)  # the GPU backend runs A* on the host
    weighted = {**Lattice((4, 4), weights=np.ones((4, 4))).spec(), "shape": [2048, 1024]}
    assert wants_gpu("distance_field", None, weighted, None, threshold)
    # The cupy backend asked for by name is GPU work at any size.
    assert wants_gpu("distance_field", None, small, "cupy", threshold)
    assert device_job_bytes("distance_field", weighted) > device_job_bytes("distance_field", big)
    assert device_job_bytes("distance_field", big) > device_job_bytes("components", big) > 2 * 2**20


async def test_a_path_job_is_placed_by_the_method_auto_resolves_to(make_settings: Any) -> None:
    """``auto`` is resolved at submission: BFS (far corners of a mid-density 2-D lattice) is GPU work, A* (a near
    pair on the same lattice) queues here, as the GPU pod would run it on its CPU anyway."""
    spec = {"shape": [64, 64], "obstacles": [{"kind": "random", "p": 0.2, "seed": 1}]}
    async for service in start_service(settings_of(make_settings, CATALYTIC_GPU_WAIT_S=600)):
        await gpu_worker_alive(service)
        far = {"start": [0, 0], "goal": [63, 63]}
        near = {"start": [0, 0], "goal": [2, 3]}
        lattice = Lattice(spec["shape"], obstacles=spec["obstacles"])
        assert (path_method(lattice, far), path_method(lattice, near)) == ("bfs", "astar")
        placed = {}
        for name, ends in (("far", far), ("near", near)):
            location = await submit(service, {"operation": "shortest_path", "lattice": spec, "params": ends})
            record = await queries.get_job(service.state.db, location.rsplit("/", 1)[1])
            assert record is not None
            placed[name] = record["capability"]
        assert placed == {"far": "gpu", "near": "cpu"}


async def test_submission_places_gpu_work_in_the_shared_queue_and_the_rest_here(make_settings: Any) -> None:
    async for service in start_service(settings_of(make_settings, CATALYTIC_GPU_WAIT_S=600)):
        runner = service.state.runner
        assert runner.capability == "cpu" and runner.device_slots == 0
        # No GPU worker has ever been seen: GPU work runs here at once, and says why.
        alone = await settled(service.client, await submit(service, FIELD))
        assert alone["status"] == "succeeded"
        assert alone["placement"]["wanted"] == "gpu" and alone["placement"]["ran_on"] == "cpu"
        assert "no GPU worker was seen alive" in alone["placement"]["reason"]
        result = (await service.client.get(f"{alone['result_url']}")).json()
        assert result["placement"] == alone["placement"] and result["result"]["backend"] == "numba"

        await gpu_worker_alive(service)
        location = await submit(service, FIELD)
        job_id = location.rsplit("/", 1)[1]
        record = await queries.get_job(service.state.db, job_id)
        assert record is not None
        assert record["owner"] == queries.SHARED and record["capability"] == "gpu"
        assert record["cpu_after"] == pytest.approx(record["created_at"] + 600, abs=5)
        assert record["device_bytes"] == device_job_bytes("distance_field", {"shape": [12, 12]})
        small = await settled(service.client, await submit(service, SMALL))
        assert small["placement"] == {"wanted": "cpu", "ran_on": "cpu", "reason": None}
        # Several claim polls later the GPU job still waits for a GPU worker: this CPU process leaves it.
        await asyncio.sleep(3 * runner.claim_poll_s)
        waiting = (await service.client.get(location)).json()
        assert waiting["status"] == "queued"
        assert waiting["placement"] == {"wanted": "gpu", "ran_on": None, "reason": None}


async def test_a_cpu_worker_takes_gpu_work_after_the_wait_and_says_so(make_settings: Any) -> None:
    async for service in start_service(settings_of(make_settings, CATALYTIC_GPU_WAIT_S=2)):
        await gpu_worker_alive(service)
        location = await submit(service, FIELD)
        await asyncio.sleep(1.0)
        assert (await service.client.get(location)).json()["status"] == "queued"
        job = await settled(service.client, location)
        assert job["status"] == "succeeded", job
        assert job["placement"] == {"wanted": "gpu", "ran_on": "cpu", "reason": "no GPU worker took it within 2 s"}
        assert job["timings"]["queue_s"] >= 2.0
        record = await queries.get_job(service.state.db, job["id"])
        assert record is not None and record["owner"] == service.state.runner.owner


async def shared_job(db: Any, created_at: float, cpu_after: float | None, device_bytes: int, **fields: Any) -> str:
    """Record a GPU job in the shared queue (or, with ``owner`` in ``fields``, held by that replica)."""
    job_id = queries.new_id("job")
    await queries.insert_job(
        db,
        {
            "id": job_id,
            "operation": "distance_field",
            "lattice_id": None,
            "spec": {"shape": [12, 12]},
            "params": {"sources": [[0, 0]]},
            "backend": None,
            "owner": queries.SHARED,
            "created_at": created_at,
            "capability": "gpu",
            "cpu_after": cpu_after,
            "device_bytes": device_bytes,
            **fields,
        },
    )
    return job_id


async def claim(db: Any, now: float, gpu: bool, room: int = 10**6) -> str | None:
    job = await queries.claim_shared_job(
        db, "pod", now, now + 30, gpu_worker=gpu, device_room=room, lock=db.dialect == "postgresql"
    )
    return None if job is None else str(job["id"])


async def test_claim_order_gpu_workers_prefer_gpu_jobs_cpu_workers_wait(
    make_settings: Any, database_url: str | None
) -> None:
    async for service in start_service(settings_of(make_settings, database_url)):
        db, runner = service.state.db, service.state.runner
        await runner.close()  # its own workers must not claim what this test claims by hand
        now = time.time()
        queued_cpu = await shared_job(db, now - 200, None, 0, capability="cpu")  # the oldest
        overdue = await shared_job(db, now - 100, now - 50, 10**12)  # fits no device; its wait has passed
        fresh = await shared_job(db, now - 10, now + 50, 10)
        huge = await shared_job(db, now - 5, now + 50, 10**12)
        gpu_only = await shared_job(db, now - 1, None, 10)  # asked for cupy by name
        # A GPU worker takes GPU work that fits its device first, before older work anyone may take.
        assert await claim(db, now, gpu=True) == fresh
        assert await claim(db, now, gpu=False) == queued_cpu
        assert await claim(db, now, gpu=True, room=5) == overdue  # gpu_only does not fit 5 bytes
        # A CPU worker never takes GPU work before its wait ends, nor work that asked for the GPU by name.
        assert await claim(db, now, gpu=False) is None
        assert await claim(db, now, gpu=True, room=5) is None
        assert await claim(db, now, gpu=True) == gpu_only
        assert await claim(db, now, gpu=True) is None  # huge fits no device of 1 MB
        record = await queries.get_job(db, huge)
        assert record is not None and record["owner"] == queries.SHARED and record["status"] == "queued"
        assert await claim(db, now + 60, gpu=False) == huge  # its wait is over: any worker takes it
        record = await queries.get_job(db, fresh)
        assert record is not None and record["owner"] == "pod" and record["lease_expires_at"] == now + 30


async def test_device_memory_defers_gpu_work_that_does_not_fit(make_settings: Any) -> None:
    needed = device_job_bytes("distance_field", {"shape": [12, 12]})
    settings = settings_of(
        make_settings,
        PARALLEL_CORES=2,
        CATALYTIC_WORKER_CAPABILITY="gpu",
        CATALYTIC_GPU_WAIT_S=3,
        CATALYTIC_DEVICE_MEMORY_BYTES=needed + 1000,
        CATALYTIC_DEVICE_MEMORY_RESERVED_BYTES=2000,
    )
    async for service in start_service(settings):
        runner = service.state.runner
        assert runner.capability == "gpu" and runner.device_slots == 1
        assert await runner.device_room() == needed - 1000
        job = await settled(service.client, await submit(service, FIELD))
        # It never fit the device: deferred until its wait ended, then run by this process's CPU worker.
        assert job["status"] == "succeeded"
        # Whichever worker here took it, it ran on the CPU; the GPU worker says why it could not.
        refusal = f" (it needs about {needed} bytes of device memory, {needed - 1000} were free here)"
        assert job["placement"]["wanted"] == "gpu" and job["placement"]["ran_on"] == "cpu"
        assert job["placement"]["reason"] in (f"no GPU worker took it within 3 s{tail}" for tail in ("", refusal))
        assert job["timings"]["queue_s"] >= 3.0
        assert (await service.client.get(job["result_url"])).json()["result"]["backend"] == "numba"
        assert runner.device_held == 0
        # The same job with room for it runs on the device at once.
        runner.device_memory_bytes = needed + 2000
        job = await settled(service.client, await submit(service, FIELD))
        assert job["placement"] == {"wanted": "gpu", "ran_on": "gpu", "reason": None}
        assert job["timings"]["queue_s"] < 3.0


async def test_gpu_jobs_run_in_at_most_gpu_contexts_workers(make_settings: Any) -> None:
    settings = settings_of(
        make_settings,
        PARALLEL_CORES=2,
        CATALYTIC_WORKER_CAPABILITY="gpu",
        CATALYTIC_GPU_CONTEXTS=1,
        CATALYTIC_GPU_WAIT_S=600,
        CATALYTIC_DEVICE_MEMORY_BYTES=2**30,
    )
    async for service in start_service(settings):
        runner = service.state.runner
        assert runner.device_slots == 1
        locations = [await submit(service, FIELD) for _ in range(3)]
        jobs = [await settled(service.client, location) for location in locations]
        assert all(j["placement"] == {"wanted": "gpu", "ran_on": "gpu", "reason": None} for j in jobs), jobs
        # One GPU worker: each job started after the one before it had finished (each start spawns no process
        # beyond the one device worker, which the first job started).
        spans = sorted((j["timings"]["started_at"], j["timings"]["finished_at"]) for j in jobs)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans
        device_pids = [slot.pid for slot in runner._slots if slot.device]
        assert len(device_pids) == 1 and device_pids[0] is not None
        # Work placed on the CPU of a GPU process never asks for the device (no CUDA context outside the cap).
        placed = runner._placement({"capability": "gpu", "cpu_after": 10.0, "created_at": 5.0})
        assert placed == {"wanted": "gpu", "ran_on": "cpu", "reason": "no GPU worker took it within 5 s"}
        assert runner._backend({"backend": "auto"}, placed) == "numba"
        small = await settled(service.client, await submit(service, SMALL))
        assert small["placement"]["ran_on"] == "cpu"
        result = (await service.client.get(small["result_url"])).json()["result"]
        assert result["backend"] == "numba"


async def test_an_orphaned_gpu_job_goes_back_to_the_shared_queue(make_settings: Any) -> None:
    async for service in start_service(settings_of(make_settings, CATALYTIC_GPU_WAIT_S=600)):
        db, runner = service.state.db, service.state.runner
        now = time.time()
        job_id = await shared_job(db, now - 100, now + 500, 10, owner="dead-gpu-pod:1:beef")
        await db.execute(
            "UPDATE service_jobs SET status = 'running', attempts = 1, lease_expires_at = $2 WHERE id = $1",
            job_id,
            now - 1,
        )
        assert await runner.reclaim_once() == {"taken": [job_id], "failed": []}
        record = await queries.get_job(db, job_id)
        assert record is not None
        assert (record["owner"], record["status"], record["lease_expires_at"]) == (queries.SHARED, "queued", None)
        # Held by no replica, it never expires: later passes leave it to the claimers.
        runner.clock = lambda: time.time() + 10_000
        assert await runner.reclaim_once() == {"taken": [], "failed": []}


# --- two real processes -------------------------------------------------------------------------------------------


WAIT_S = 10
LEASE_S = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def pods(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Replica, Replica, str | None]]:
    """A CPU pod and a GPU pod (its GPU workers under numba's CUDA simulator) on one database."""
    database_url = None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "NUMBA_ENABLE_CUDASIM"))}
    base |= {
        "CATALYTIC_SQLITE_PATH": str(tmp_path / "catalytic.db"),
        "RESULTS_DIR": str(tmp_path / "results"),
        "METRICS_PORT": "0",
        "CATALYTIC_WEBHOOK_WORKER": "false",
        "CATALYTIC_MIGRATE_ON_START": "false",
        "LOG_LEVEL": "INFO",
        "PARALLEL_CORES": "1",
        "JOB_LEASE_SECONDS": str(LEASE_S),
        "CATALYTIC_GPU_MIN_VERTICES": str(GPU_MIN),
        "CATALYTIC_GPU_WAIT_S": str(WAIT_S),
    }
    if database_url is not None:
        base["DATABASE_URL"] = database_url
    migrate(database_url, sqlite_path=base["CATALYTIC_SQLITE_PATH"])
    cpu = Replica({**base, "CATALYTIC_BACKEND": "numba"}, tmp_path / "cpu.log")
    gpu = Replica(
        {
            **base,
            "CATALYTIC_BACKEND": "auto",
            "CATALYTIC_WORKER_CAPABILITY": "gpu",
            "CATALYTIC_DEVICE_MEMORY_BYTES": str(2**30),
            "NUMBA_ENABLE_CUDASIM": "1",
        },
        tmp_path / "gpu.log",
    )
    try:
        cpu.wait_ready()
        gpu.wait_ready()
        yield cpu, gpu, database_url
    finally:
        gpu.stop()
        cpu.stop()


def finish(client: httpx.Client, location: str, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(location).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{location} never finished: {job}")


def owner_pid(database_url: str | None, sqlite_path: str, job_id: str) -> int:
    async def read() -> int:
        db = await open_database(database_url, sqlite_path=sqlite_path)
        try:
            job = await queries.get_job(db, job_id)
        finally:
            await db.close()
        assert job is not None
        return int(job["owner"].split(":")[1])

    return asyncio.run(read())


@pytest.mark.slow
def test_gpu_work_reaches_the_gpu_pod_and_falls_back_to_cpu_pods_after_the_wait(
    pods: tuple[Replica, Replica, str | None], tmp_path: Path
) -> None:
    cpu, gpu, database_url = pods
    sqlite_path = str(tmp_path / "catalytic.db")
    with httpx.Client(base_url=cpu.url, timeout=60) as client:
        # GPU work submitted to the CPU pod runs on the GPU pod, with the cupy kernels (simulated).
        locations = [client.post("/api/jobs", json=FIELD).headers["location"] for _ in range(2)]
        small = client.post("/api/jobs", json=SMALL).headers["location"]
        for location in locations:
            job = finish(client, location)
            assert job["status"] == "succeeded", job
            assert job["placement"] == {"wanted": "gpu", "ran_on": "gpu", "reason": None}
            result = client.get(job["result_url"]).json()["result"]
            assert result["backend"] == "cupy" and result["reached"] == 144 and result["max"] == 22
            assert owner_pid(database_url, sqlite_path, job["id"]) == gpu.process.pid
        job = finish(client, small)
        assert job["placement"] == {"wanted": "cpu", "ran_on": "cpu", "reason": None}
        assert owner_pid(database_url, sqlite_path, job["id"]) == cpu.process.pid

        # The GPU pod goes away: GPU work waits the stated time, then the CPU pod runs it and says so.
        gpu.stop()
        stopped = time.time()
        location = client.post("/api/jobs", json=FIELD).headers["location"]
        job = finish(client, location)
        assert job["status"] == "succeeded", job
        assert job["placement"] == {
            "wanted": "gpu",
            "ran_on": "cpu",
            "reason": f"no GPU worker took it within {WAIT_S} s",
        }
        assert job["timings"]["queue_s"] >= WAIT_S
        result = client.get(job["result_url"]).json()["result"]
        assert result["backend"] == "numba" and result["max"] == 22
        assert owner_pid(database_url, sqlite_path, job["id"]) == cpu.process.pid

        # Once no GPU worker has been seen for a lease, GPU work runs on the CPU pod at once.
        time.sleep(max(0.0, stopped + LEASE_S + 0.5 - time.time()))
        job = finish(client, client.post("/api/jobs", json=FIELD).headers["location"])
        assert job["placement"]["ran_on"] == "cpu" and "no GPU worker was seen alive" in job["placement"]["reason"]
        assert job["timings"]["queue_s"] < WAIT_S
