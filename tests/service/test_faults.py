"""Faults under a real ``catalytic serve`` process: its PostgreSQL restarted under the API, its job runner and its
in-process webhook worker. Both recover without help and nothing committed is lost.

The other faults of the hardening list live beside the code they exercise: Redis stopped under two replicas
(tests/service/test_replicas.py), a server process killed during a job (tests/deploy/test_rehearse.py), the
webhook worker killed during 1,000 deliveries and PostgreSQL restarted under it (tests/webhooks/test_reliability.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import PostgresServer
from service.service_helpers import start_service
from service.test_replicas import Replica, wait_status

from catalytic.service import db as queries
from catalytic.storage import DatabaseUnavailable, migrate
from catalytic.webhooks.receiver import ThreadedReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOB = {
    "operation": "shortest_path",
    "lattice": {"shape": [40, 40, 40]},
    "params": {"start": [0, 0, 0], "goal": [39, 39, 39], "method": "dijkstra"},
    "backend": "numpy",
}


def _until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def test_postgres_restarted_under_the_api_its_jobs_and_its_webhook_worker(
    postgres_server: PostgresServer, pg_url: str, tmp_path: Path
) -> None:
    if not postgres_server.managed:
        pytest.skip("DATABASE_URL points at an external server, which tests cannot restart")
    receiver = ThreadedReceiver().start()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "WEBHOOK_"))}
    base |= {
        "DATABASE_URL": pg_url,
        "LOG_LEVEL": "WARNING",
        "PARALLEL_CORES": "1",
        "METRICS_PORT": "0",
        "CATALYTIC_WEBHOOK_WORKER": "true",
        "WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
        "WEBHOOK_POLL_INTERVAL": "0.1",
        "JOB_LEASE_SECONDS": "3",
    }
    migrate(pg_url)
    api = Replica(base, tmp_path / "api.log")
    during: Counter[int | str] = Counter()
    stop = threading.Event()
    try:
        api.wait_ready()
        with httpx.Client(base_url=api.url, timeout=30) as client:
            hook = client.post(
                "/api/webhooks", json={"url": f"{receiver.url}/hook", "event_types": ["lattice.created"]}
            )
            assert hook.status_code == 201, hook.text
            before = [client.post("/api/lattice/create", json={"shape": [5, 5]}).json()["id"] for _ in range(10)]
            job = client.post("/api/jobs", json=JOB)
            assert job.status_code == 202, job.text

            def traffic() -> None:
                with httpx.Client(base_url=api.url, timeout=30) as side:
                    while not stop.is_set():
                        try:
                            answer = side.post("/api/lattice/path", json={"lattice_id": before[0], "start": [0, 0],
                                                                           "goal": [4, 4]})  # fmt: skip
                            during[answer.status_code] += 1
                        except httpx.HTTPError as exc:
                            during[type(exc).__name__] += 1
                        time.sleep(0.02)

            side = threading.Thread(target=traffic)
            side.start()
            postgres_server.restart()
            _until(lambda: _answers(client, "/ready"), 60, "/ready after the restart")
            stop.set()
            side.join(timeout=60)

            after = [client.post("/api/lattice/create", json={"shape": [5, 5]}).json()["id"] for _ in range(10)]
            finished = wait_status(client, job.headers["location"], {"succeeded", "failed"}, timeout=120)
            assert finished["status"] == "succeeded", (finished, api.log_path.read_text(errors="replace")[-6000:])
            stored = {item["id"] for item in client.get("/api/lattices", params={"limit": 100}).json()["items"]}
            assert set(before) | set(after) <= stored
            path = client.post("/api/lattice/path", json={"lattice_id": after[-1], "start": [0, 0], "goal": [4, 4]})
            assert path.status_code == 200 and path.json()["length"] == 8

            def delivered() -> set[str]:
                return {r.headers["webhook-id"] for r in receiver.receiver.requests}

            _until(lambda: len(delivered()) >= 20, 60, "a webhook for every create, before and after the restart")
            created = {r.body for r in receiver.receiver.requests}
            assert all(any(lattice_id.encode() in body for body in created) for lattice_id in before + after)
        # The outage answered with an error the client can act on (503, Retry-After), never a server fault.
        assert not {code for code in during if isinstance(code, int) and code >= 500 and code != 503}, during
    finally:
        stop.set()
        api.stop()
        receiver.stop()
    print(f"postgres restart under the API: answers during it {dict(during)}")


class _Records(logging.Handler):
    """The messages logged under ``catalytic.service`` (the service's own loggers do not propagate to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _eventually(probe: Any, timeout: float, what: str) -> Any:
    """Await ``probe()`` until it returns something true, riding out database outages; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(DatabaseUnavailable):
            if value := await probe():
                return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.anyio
async def test_a_job_running_through_a_database_outage_ends_once_on_its_first_attempt(
    postgres_server: PostgresServer, pg_url: str, make_settings: Any
) -> None:
    """PostgreSQL goes away while a job runs and stays away past the job's end and several leases: the job's
    progress writes and status polls fail, its end waits for the database, and when the database is back the
    replica's own reclaimer renews the lapsed lease instead of taking the job over. One attempt, one event."""
    if not postgres_server.managed:
        pytest.skip("DATABASE_URL points at an external server, which tests cannot stop")
    records = _Records()
    logger = logging.getLogger("catalytic.service")
    settings = make_settings(DATABASE_URL=pg_url, JOB_LEASE_SECONDS=1.0, PARALLEL_CORES=1, LOG_LEVEL="INFO")
    async for service in start_service(settings):
        logger.addHandler(records)
        try:
            await _through_an_outage(service, postgres_server, records, lease=1.0)
        finally:
            logger.removeHandler(records)


async def _through_an_outage(service: Any, server: PostgresServer, records: _Records, lease: float) -> None:
    runner, db = service.state.runner, service.state.db
    params = {"start": [0, 0, 0], "goal": [99, 99, 99], "method": "dijkstra"}
    slow = {**JOB, "lattice": {"shape": [100, 100, 100]}, "params": params}
    submitted = await service.client.post("/api/jobs", json=slow)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    async def record() -> dict[str, Any]:
        return await queries.get_job(db, job_id) or {}

    async def running() -> bool:
        return (await record()).get("status") == "running"

    async def ended() -> dict[str, Any] | None:
        job = await record()
        return job if job.get("status") not in (None, "queued", "running") else None

    await _eventually(running, 120, "the job to run")
    await asyncio.to_thread(server.stop)
    try:
        down_at = time.monotonic()

        async def end_waits() -> bool:
            waiting = any(job_id in m and "not recorded yet" in m for m in records.messages)
            return waiting and time.monotonic() - down_at > 4 * lease

        await _eventually(end_waits, 120, "the job's end to wait for the database")
    finally:
        await asyncio.to_thread(server.start)
    job = await _eventually(ended, 60, "the job's end to be recorded")
    assert job["status"] == "succeeded", (job, records.messages)
    assert job["attempts"] == 1 and job["owner"] == runner.owner, job
    assert not any("taken over" in m or "runner failure" in m for m in records.messages), records.messages
    # The reclaimer's passes after the restart found the lapsed lease and left the job where it ran.
    await asyncio.sleep(3 * lease)
    assert (await record())["attempts"] == 1
    events = await db.fetch("SELECT type, payload FROM events ORDER BY created_at")
    assert [e["type"] for e in events if job_id in str(e["payload"])] == ["job.succeeded"]
    result = await service.client.get(f"/api/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json()["result"]["length"] == 297, result.text
