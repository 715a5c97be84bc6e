"""Quotas per tenant on SQLite and PostgreSQL: each answers 403, 413 or 429 naming the quota and its value, holds
for one tenant only, and shows in tenant_quota_used; the request rate per process and, with Redis, across
processes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from service.service_helpers import Service, start_service

from catalytic.service import db as queries

pytestmark = pytest.mark.anyio

ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
KEYS = "acme:acme-key,globex:globex-key"
JOB = {"operation": "shortest_path", "lattice": {"shape": [8, 8]}, "params": {"start": [0, 0], "goal": [7, 7]}}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def limited(
    database_url: str | None, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Service]:
    monkeypatch.setenv("WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8")
    monkeypatch.setenv("WEBHOOK_MAX_ENDPOINTS_PER_TENANT", "1")
    overrides: dict[str, Any] = {
        "CATALYTIC_API_KEYS": KEYS,
        "TENANT_MAX_LATTICES": 2,
        "TENANT_MAX_VERTICES": 100,
        "TENANT_MAX_QUEUED_JOBS": 1,
        "TENANT_MAX_RESULT_BYTES": 1,
    }
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    async for service in start_service(make_settings(**overrides)):
        yield service


def _quota(answer: httpx.Response, status: int, quota: str, value: int) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == "quota_exceeded" and f"quota {quota} ({value})" in body["detail"], body
    assert body["errors"][0]["field"] == f"quota.{quota}" and body["errors"][0]["allowed"] == f"at most {value}"


async def _finished(client: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> None:
    for _ in range(400):
        if (await client.get(f"/api/jobs/{job_id}", headers=headers)).json()["status"] == "succeeded":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not succeed")


async def test_quotas_name_themselves_and_hold_per_tenant(limited: Service) -> None:
    client = limited.client
    for _ in range(2):
        assert (await client.post("/api/lattice/create", json={"shape": [3, 3]}, headers=ACME)).status_code == 201
    _quota(await client.post("/api/lattice/create", json={"shape": [3, 3]}, headers=ACME), 403, "max_lattices", 2)
    assert REGISTRY.get_sample_value("tenant_quota_used", {"tenant": "acme", "quota": "max_lattices"}) == 2
    assert REGISTRY.get_sample_value("tenant_quota_limit", {"quota": "max_lattices"}) == 2
    assert (await client.post("/api/lattice/create", json={"shape": [3, 3]}, headers=GLOBEX)).status_code == 201
    _quota(await client.post("/api/lattice/create", json={"shape": [11, 10]}, headers=GLOBEX), 413, "max_vertices", 100)
    _quota(await client.post("/api/jobs", json={**JOB, "lattice": {"shape": [11, 10]}}, headers=GLOBEX),
           413, "max_vertices", 100)  # fmt: skip

    # A job of acme's queued on another replica fills acme's queue; globex's is its own.
    await queries.insert_job(
        limited.state.db,
        {"id": queries.new_id("job"), "operation": "analyze", "lattice_id": None, "spec": {"shape": [2]},
         "params": {}, "backend": None, "owner": "elsewhere", "created_at": time.time(), "tenant": "acme"},
    )  # fmt: skip
    refused = await client.post("/api/jobs", json=JOB, headers=ACME)
    _quota(refused, 429, "max_queued_jobs", 1)
    assert int(refused.headers["retry-after"]) >= 1
    first = await client.post("/api/jobs", json=JOB, headers=GLOBEX)
    assert first.status_code == 202, first.text
    await _finished(client, first.json()["id"], GLOBEX)
    # Its result now holds more than TENANT_MAX_RESULT_BYTES=1: the next job waits.
    _quota(await client.post("/api/jobs", json=JOB, headers=GLOBEX), 429, "max_result_bytes", 1)

    hook = {"url": "http://127.0.0.1:9/hook"}
    assert (await client.post("/api/webhooks", json=hook, headers=ACME)).status_code == 201
    _quota(await client.post("/api/webhooks", json=hook, headers=ACME), 403, "max_webhook_endpoints", 1)
    assert (await client.post("/api/webhooks", json=hook, headers=GLOBEX)).status_code == 201


async def _burst(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.get("/api/lattices", headers=headers) for _ in range(count))))


async def test_request_rate_per_process(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS=KEYS, TENANT_MAX_REQUESTS_PER_SECOND=3)
    async for service in start_service(settings):
        answers = await _burst(service.client, ACME, 12)
        refused = [a for a in answers if a.status_code == 429]
        # At most 3 a second pass; a burst straddling a second's end may get 6 through.
        assert len(refused) >= 6 and all(a.status_code == 200 for a in answers if a not in refused)
        _quota(refused[0], 429, "max_requests_per_second", 3)
        assert refused[0].headers["retry-after"] == "1"
        # The other tenant has its own count, and open paths are never counted.
        assert (await service.client.get("/api/lattices", headers=GLOBEX)).status_code == 200
        assert (await service.client.get("/health")).status_code == 200


async def test_request_rate_across_processes_with_redis(make_settings: Any, redis_server: Any, tmp_path: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS=KEYS, TENANT_MAX_REQUESTS_PER_SECOND=4, REDIS_URL=redis_server.url)
    other = make_settings(
        CATALYTIC_API_KEYS=KEYS, TENANT_MAX_REQUESTS_PER_SECOND=4, REDIS_URL=redis_server.url,
        CATALYTIC_SQLITE_PATH=str(tmp_path / "other.db"),
    )  # fmt: skip
    async for first in start_service(settings):
        async for second in start_service(other):
            # Aligned to the start of a second, so all 8 fall into one window.
            await asyncio.sleep(1.02 - time.time() % 1)
            answers = await _burst(first.client, ACME, 4) + await _burst(second.client, ACME, 4)
            assert sum(a.status_code == 429 for a in answers) >= 3, [a.status_code for a in answers]


async def test_concurrent_creates_of_one_tenant_stop_at_its_lattice_quota(limited: Service) -> None:
    """Twenty creates at once: exactly TENANT_MAX_LATTICES (2) are stored, the others refused with 403."""
    answers = await asyncio.gather(
        *(limited.client.post("/api/lattice/create", json={"shape": [4, 4]}, headers=ACME) for _ in range(20))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 2 + [403] * 18, statuses
    listed = await limited.client.get("/api/lattices", headers=ACME)
    assert len(listed.json()["items"]) == 2


@pytest.fixture
async def one_at_a_time(database_url: str | None, make_settings: Any) -> AsyncIterator[Service]:
    overrides: dict[str, Any] = {"CATALYTIC_API_KEYS": KEYS, "TENANT_MAX_CONCURRENT_JOBS": 1, "PARALLEL_CORES": 2}
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    async for service in start_service(make_settings(**overrides)):
        yield service


async def test_a_tenant_runs_at_most_its_concurrent_jobs(one_at_a_time: Service) -> None:
    """TENANT_MAX_CONCURRENT_JOBS=1 with two worker slots: the tenant's three jobs run one after another (their
    running intervals never overlap), waiting queued for their turn; all succeed."""
    client = one_at_a_time.client
    # A tenth of a second or more each (seconds under coverage), far longer than the three submissions take: the
    # numpy backend walks a 1-D lattice one BFS level at a time.
    job = {"operation": "distance_field", "lattice": {"shape": [5_000]}, "params": {"sources": [[0]]}}
    job["backend"] = "numpy"
    ids = []
    for _ in range(3):
        answer = await client.post("/api/jobs", json=job, headers=ACME)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    for job_id in ids:
        await _finished(client, job_id, ACME)
    rows = await one_at_a_time.state.db.fetch(
        "SELECT started_at, finished_at FROM service_jobs WHERE tenant = 'acme' ORDER BY started_at"
    )
    assert len(rows) == 3
    for earlier, later in itertools.pairwise(rows):
        assert later["started_at"] >= earlier["finished_at"], rows


async def test_the_api_document_states_tenants_quotas_and_the_rate_on_every_route(limited: Service) -> None:
    document = (await limited.client.get("/openapi.json", headers=ACME)).json()
    description = document["info"]["description"]
    assert "another tenant's id answers 404" in description and "quota_exceeded" in description
    operations = [(path, op) for path, item in document["paths"].items() for op in item.values()]
    assert operations and all("429" in op["responses"] for path, op in operations if path.startswith("/api/"))
    assert "quota" in document["paths"]["/api/lattice/create"]["post"]["responses"]["403"]["description"]
