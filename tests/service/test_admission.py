"""Bounded memory: the memory limit read from the cgroup, per-operation estimates held against measured peaks,
jobs that could never fit refused up front with 413, jobs that fit run one after another, and job worker
processes replaced after N jobs or when their RSS stays high."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from service.service_helpers import start_service

from catalytic.service.admission import (
    _OVERHEAD,
    BYTES_PER_VERTEX,
    MemoryGate,
    estimate_job_bytes,
    measure_peak,
    memory_limit,
)
from catalytic.service.jobs import process_rss

pytestmark = pytest.mark.anyio


def test_memory_limit_comes_from_the_setting_then_cgroup_v2_then_v1_then_physical(tmp_path: Path) -> None:
    physical = memory_limit(cgroup_root=str(tmp_path / "none"))
    assert physical[1] == "physical memory" and physical[0] > 2**28
    assert memory_limit(123_456, cgroup_root=str(tmp_path)) == (123_456, "setting")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("1073741824\n")
    assert memory_limit(cgroup_root=str(tmp_path)) == (2**30, "cgroup v1")
    (tmp_path / "memory.max").write_text("max\n")  # v2 without a limit: the v1 figure still counts
    assert memory_limit(cgroup_root=str(tmp_path)) == (2**30, "cgroup v1")
    (tmp_path / "memory.max").write_text(f"{2 * 2**30}\n")
    assert memory_limit(cgroup_root=str(tmp_path)) == (2 * 2**30, "cgroup v2")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (tmp_path / "memory.max").write_text("max\n")
    assert memory_limit(cgroup_root=str(tmp_path))[1] == "physical memory"


@pytest.mark.parametrize(
    ("operation", "weighted"),
    [("shortest_path", False), ("distance_field", False), ("components", False), ("analyze", False),
     ("distance_field", True)],
)  # fmt: skip
def test_estimate_holds_the_measured_peak_of_a_job(operation: str, weighted: bool) -> None:
    measured = measure_peak(operation, (1000, 2000), weighted)
    estimate = estimate_job_bytes(operation, measured["vertices"], weighted)
    assert measured["added"] <= estimate, (measured, estimate)
    # And the estimate is not a blanket: the per-vertex part is at most twice what was measured.
    assert BYTES_PER_VERTEX[(operation, weighted)] * measured["vertices"] <= 2 * max(measured["added"], 1), measured
    assert estimate - _OVERHEAD == int(BYTES_PER_VERTEX[(operation, weighted)] * measured["vertices"])


async def test_memory_gate_runs_what_fits_together_and_the_rest_after() -> None:
    gate = MemoryGate(100)
    assert gate.fits_ever(100) and not gate.fits_ever(101)
    await gate.acquire(60)
    second = asyncio.create_task(gate.acquire(60))
    await asyncio.sleep(0.05)
    assert not second.done() and gate.held == 60
    await gate.release(60)
    await asyncio.wait_for(second, 1)
    assert gate.held == 60
    await gate.acquire(30)  # fits beside it
    assert gate.held == 90


async def test_a_job_that_could_never_fit_is_refused_up_front_naming_the_limit(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_MEMORY_LIMIT_BYTES=600 * 2**20, CATALYTIC_MEMORY_RESERVED_BYTES=512 * 2**20)
    async for service in start_service(settings):
        budget = service.state.runner.memory.budget
        assert budget == 88 * 2**20
        body = {"lattice": {"shape": [2000, 4000]}, "sources": [[0, 0]]}  # about 128 MB at its peak
        refused = await service.client.post("/api/lattice/distance-field", json=body)
        assert refused.status_code == 413, refused.text
        answer = refused.json()
        assert str(600 * 2**20) in answer["detail"] and "setting" in answer["detail"]
        assert answer["errors"][0]["field"] == "shape" and str(budget) in answer["errors"][0]["allowed"]
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 0
        fits = await service.client.post("/api/lattice/distance-field", json={**body, "lattice": {"shape": [50, 50]}})
        assert fits.status_code == 202


async def finished(service: Any, location: str) -> dict[str, Any]:
    for _ in range(600):
        job = (await service.client.get(location)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(job)


async def test_job_workers_are_replaced_after_n_jobs_and_when_their_rss_stays_high(make_settings: Any) -> None:
    quick = {"operation": "components", "lattice": {"shape": [20, 20]}}
    async for service in start_service(make_settings(PARALLEL_CORES=1, JOB_WORKER_MAX_JOBS=2)):
        runner = service.state.runner
        pids = []
        for _ in range(3):
            job = await finished(service, (await service.client.post("/api/jobs", json=quick)).headers["location"])
            assert job["status"] == "succeeded"
            pids.append(runner.idle_worker_pids())
        # After the second job its worker was replaced; the third job started a fresh one.
        assert pids[0] and pids[1] == [] and pids[2] and pids[2] != pids[0]
        assert runner.workers_recycled == 1
    async for service in start_service(make_settings(PARALLEL_CORES=1, JOB_WORKER_MAX_RSS_BYTES=1)):
        runner = service.state.runner
        job = await finished(service, (await service.client.post("/api/jobs", json=quick)).headers["location"])
        assert job["status"] == "succeeded"
        assert runner.idle_worker_pids() == [] and runner.workers_recycled == 1


def test_process_rss_reads_this_process() -> None:
    import os

    rss = process_rss(os.getpid())
    assert rss is not None and rss > 10 * 2**20
    assert process_rss(2**22 + 12345) is None
