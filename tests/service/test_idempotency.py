"""Idempotent submissions (``Idempotency-Key``): replays, refusals, expiry, failures, and one job from 20
concurrent submissions across two real server processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from service.service_helpers import Service, start_service
from service.test_replicas import Replica

from catalytic.service import db as queries
from catalytic.service.idempotency import Claim, KeySweeper, claim, record, request_digest
from catalytic.storage import migrate, open_database
from catalytic.tenancy import IMPLICIT_TENANT

pytestmark = pytest.mark.anyio

KEY = "Idempotency-Key"
JOB = {"operation": "shortest_path", "lattice": {"shape": [8, 8]}, "params": {"start": [0, 0], "goal": [7, 7]}}
OTHER_JOB = {**JOB, "params": {"start": [0, 0], "goal": [6, 7]}}
ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}


@pytest.fixture
async def service(make_settings: Any) -> AsyncIterator[Service]:
    """The service on SQLite, lattices over 16 vertices run as jobs, a 1 s request time limit."""
    settings = make_settings(
        CATALYTIC_INLINE_MAX_VERTICES=16, CATALYTIC_REQUEST_TIMEOUT_S=1, CATALYTIC_COMPUTE_POOL="thread"
    )
    async for running in start_service(settings):
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def either_database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides naming the database: the per-test SQLite file, or a fresh PostgreSQL database."""
    return {} if request.param == "sqlite" else {"DATABASE_URL": request.getfixturevalue("pg_url")}


async def _jobs(service: Service) -> int:
    return int(await service.state.db.fetchval("SELECT count(*) FROM service_jobs"))


def _replays(route: str) -> float:
    return REGISTRY.get_sample_value("idempotent_replays_total", {"route": route}) or 0.0


def _names_the_header(answer: httpx.Response, code: str) -> dict[str, Any]:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == code and problem["status"] == 422
    assert [error["field"] for error in problem["errors"]] == [KEY]
    return dict(problem)


@pytest.mark.parametrize(
    ("route", "body", "status"),
    [
        ("/api/jobs", JOB, 202),
        ("/api/lattice/path", {"lattice": {"shape": [8, 8]}, "start": [0, 0], "goal": [7, 7]}, 202),
        ("/api/lattice/distance-field", {"lattice": {"shape": [8, 8]}, "sources": [[0, 0]]}, 202),
        ("/api/lattice/components", {"lattice": {"shape": [8, 8]}}, 202),
        ("/api/lattice/path", {"lattice": {"shape": [4, 4]}, "start": [0, 0], "goal": [3, 3]}, 200),
        ("/api/lattice/create", {"shape": [8, 8]}, 201),
    ],
)
async def test_the_same_key_and_body_get_the_first_answer(
    service: Service, route: str, body: dict[str, Any], status: int
) -> None:
    client = service.client
    replays = _replays(route)
    first = await client.post(route, json=body, headers={KEY: "order-1"})
    assert first.status_code == status, first.text
    jobs, lattices = await _jobs(service), await queries.count_lattices(service.state.db)
    again = [await client.post(route, json=body, headers={KEY: "order-1"}) for _ in range(3)]
    for answer in again:
        assert answer.status_code == status
        assert answer.content == first.content
        assert answer.headers.get("location") == first.headers.get("location")
        assert answer.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (await _jobs(service), await queries.count_lattices(service.state.db)) == (jobs, lattices)
    assert _replays(route) == replays + 3
    # Without the key, or with another, the same body runs anew.
    fresh = await client.post(route, json=body, headers={KEY: "order-2"})
    assert fresh.status_code == status and "idempotent-replayed" not in fresh.headers
    if status != 200:
        assert fresh.json()["id"] != first.json()["id"]


async def test_the_same_key_with_another_body_or_route_is_refused(service: Service) -> None:
    client = service.client
    first = await client.post("/api/jobs", json=JOB, headers={KEY: "k"})
    assert first.status_code == 202
    problem = _names_the_header(
        await client.post("/api/jobs", json=OTHER_JOB, headers={KEY: "k"}), "idempotency_key_reused"
    )
    assert "another body" in problem["detail"]
    path = {"lattice": {"shape": [8, 8]}, "start": [0, 0], "goal": [7, 7]}
    problem = _names_the_header(
        await client.post("/api/lattice/path", json=path, headers={KEY: "k"}), "idempotency_key_reused"
    )
    assert "/api/jobs" in problem["detail"]
    assert await _jobs(service) == 1
    # The first answer is still the key's.
    assert (await client.post("/api/jobs", json=JOB, headers={KEY: "k"})).content == first.content


async def test_tenants_keep_their_keys_apart(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS="acme:acme-key,globex:globex-key", CATALYTIC_INLINE_MAX_VERTICES=16)
    async for running in start_service(settings):
        client = running.client
        ours = await client.post("/api/jobs", json=JOB, headers={KEY: "shared", **ACME})
        theirs = await client.post("/api/jobs", json=OTHER_JOB, headers={KEY: "shared", **GLOBEX})
        assert ours.status_code == theirs.status_code == 202, theirs.text
        assert ours.json()["id"] != theirs.json()["id"]
        assert "idempotent-replayed" not in theirs.headers
        again = await client.post("/api/jobs", json=OTHER_JOB, headers={KEY: "shared", **GLOBEX})
        assert again.json()["id"] == theirs.json()["id"]
        assert (await client.get(ours.headers["location"], headers=GLOBEX)).status_code == 404
        assert await _jobs(running) == 2


async def test_a_key_past_its_ttl_runs_anew_and_is_swept(make_settings: Any, either_database: dict[str, Any]) -> None:
    settings = make_settings(CATALYTIC_IDEMPOTENCY_TTL_S=1, CATALYTIC_INLINE_MAX_VERTICES=16, **either_database)
    async for running in start_service(settings):
        client = running.client
        first = await client.post("/api/jobs", json=JOB, headers={KEY: "daily"})
        assert (await client.post("/api/jobs", json=JOB, headers={KEY: "daily"})).content == first.content
        await asyncio.sleep(1.2)
        later = await client.post("/api/jobs", json=JOB, headers={KEY: "daily"})
        assert later.status_code == 202 and "idempotent-replayed" not in later.headers
        assert later.json()["id"] != first.json()["id"]
        await asyncio.sleep(1.2)
        # Past the TTL even another body may take the key.
        other = await client.post("/api/jobs", json=OTHER_JOB, headers={KEY: "daily"})
        assert other.status_code == 202 and await _jobs(running) == 3

        # The service's own sweeper deletes the records past the TTL.
        db = running.state.db
        deadline = time.monotonic() + 10
        while await db.fetchval("SELECT count(*) FROM service_idempotency") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await db.fetchval("SELECT count(*) FROM service_idempotency") == 0


async def test_the_sweeper_deletes_only_records_past_the_ttl(service: Service) -> None:
    db = service.state.db
    insert = "INSERT INTO service_idempotency (tenant, key, route, request_sha256, status, created_at) "
    insert += "VALUES ($1, $2, '/api/jobs', '', $3, $4)"
    now = time.time()
    for key, status, age in (("old", 202, 7200), ("old-in-flight", None, 7200), ("fresh", 202, 60)):
        await db.execute(insert, IMPLICIT_TENANT, key, status, now - age)
    assert await KeySweeper(db, ttl_s=3600, clock=lambda: now).sweep_once() == 2
    assert await db.fetch("SELECT key FROM service_idempotency") == [{"key": "fresh"}]


async def test_a_failed_first_attempt_leaves_the_key_free(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    client = service.client
    real_insert = queries.insert_job
    calls = 0

    async def insert_once_broken(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the disk said no")
        return await real_insert(*args)

    monkeypatch.setattr(queries, "insert_job", insert_once_broken)
    failed = await client.post("/api/jobs", json=JOB, headers={KEY: "retry-me"})
    assert failed.status_code == 500
    retried = await client.post("/api/jobs", json=JOB, headers={KEY: "retry-me"})
    assert retried.status_code == 202, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert (await client.post("/api/jobs", json=JOB, headers={KEY: "retry-me"})).content == retried.content
    assert await _jobs(service) == 1


async def test_an_error_answer_is_not_recorded(make_settings: Any) -> None:
    settings = make_settings(TENANT_MAX_QUEUED_JOBS=1, CATALYTIC_INLINE_MAX_VERTICES=16, CATALYTIC_REQUEST_TIMEOUT_S=1)
    async for running in start_service(settings):
        client = running.client
        # A job queued on another replica fills the tenant's queue: the keyed submission answers 429.
        queued = queries.new_id("job")
        await queries.insert_job(
            running.state.db,
            {"id": queued, "operation": "analyze", "lattice_id": None, "spec": {"shape": [2]}, "params": {},
             "backend": None, "owner": "elsewhere", "created_at": time.time(), "tenant": IMPLICIT_TENANT},
        )  # fmt: skip
        refused = await client.post("/api/jobs", json=JOB, headers={KEY: "after-quota"})
        assert refused.status_code == 429, refused.text
        assert (await client.delete(f"/api/jobs/{queued}")).status_code == 200
        accepted = await client.post("/api/jobs", json=JOB, headers={KEY: "after-quota"})
        assert accepted.status_code == 202, accepted.text
        assert "idempotent-replayed" not in accepted.headers


async def test_a_repeat_waits_for_the_answer_in_flight(make_settings: Any, either_database: dict[str, Any]) -> None:
    """Another replica holds the key (its claim is in the database): a repeat waits for its recorded answer,
    answers 409 with Retry-After past the request time limit, and takes over a claim abandoned long ago."""
    settings = make_settings(CATALYTIC_INLINE_MAX_VERTICES=16, CATALYTIC_REQUEST_TIMEOUT_S=1, **either_database)
    async for service in start_service(settings):
        await _wait_and_take_over(service)


async def _wait_and_take_over(service: Service) -> None:
    db, client = service.state.db, service.client
    body = json.dumps(JOB).encode()
    sent = {"content": body, "headers": {KEY: "elsewhere", "content-type": "application/json"}}
    digest = request_digest("/api/jobs", body)
    held = await claim(db, IMPLICIT_TENANT, "elsewhere", "/api/jobs", digest, ttl_s=60, wait_s=0, retry_after_s=1)
    assert isinstance(held, Claim)

    started = time.monotonic()
    busy = await client.post("/api/jobs", **sent)
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_key_in_flight"
    assert busy.headers["retry-after"] == "5" and time.monotonic() - started >= 0.9
    reused = await client.post("/api/jobs", json=OTHER_JOB, headers={KEY: "elsewhere"})
    _names_the_header(reused, "idempotency_key_reused")

    answer = {"id": "job_000000000000", "status": "queued", "location": "/api/jobs/job_000000000000"}

    async def answer_elsewhere() -> None:
        await asyncio.sleep(0.3)
        assert isinstance(held, Claim)
        await record(db, held, 202, json.dumps(answer).encode(), answer["location"])

    waiting, _ = await asyncio.gather(client.post("/api/jobs", **sent), answer_elsewhere())
    assert waiting.status_code == 202 and waiting.json() == answer
    assert waiting.headers["location"] == answer["location"]
    assert await _jobs(service) == 0

    # A claim in flight for longer than any request takes was left by a process that died.
    abandoned = time.time() - 3600
    await db.execute(
        "INSERT INTO service_idempotency (tenant, key, route, request_sha256, created_at) VALUES ($1, $2, $3, $4, $5)",
        IMPLICIT_TENANT,
        "orphan",
        "/api/jobs",
        digest,
        abandoned,
    )
    taken = await client.post("/api/jobs", content=body, headers={KEY: "orphan", "content-type": "application/json"})
    assert taken.status_code == 202 and "idempotent-replayed" not in taken.headers
    assert await _jobs(service) == 1


@pytest.mark.parametrize(
    ("headers", "wrong"),
    [
        ([(KEY, "")], "empty"),
        ([(KEY, "k" * 256)], "256 characters long"),
        ([(KEY, "tab\there")], "not printable ASCII"),
        ([(KEY.encode(), b"caf\xc3\xa9")], "not printable ASCII"),
        ([(KEY, "one"), (KEY, "two")], "sent more than once"),
    ],
)
async def test_a_bad_header_is_refused(service: Service, headers: list[tuple[Any, Any]], wrong: str) -> None:
    answer = await service.client.post("/api/jobs", json=JOB, headers=headers)
    problem = _names_the_header(answer, "invalid_input")
    assert problem["errors"][0]["message"] == wrong
    assert "printable ASCII" in problem["errors"][0]["allowed"]
    assert await _jobs(service) == 0
    longest = await service.client.post("/api/jobs", json=JOB, headers={KEY: " ~" * 127 + "!"})
    assert longest.status_code == 202, longest.text


async def test_the_api_document_declares_the_header(service: Service) -> None:
    document = (await service.client.get("/openapi.json")).json()
    declared = {
        (method, path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if any(p["in"] == "header" and p["name"] == KEY for p in operation["parameters"])
    }
    assert declared == {
        ("post", "/api/jobs"),
        ("post", "/api/lattice/create"),
        ("post", "/api/lattice/path"),
        ("post", "/api/lattice/analyze"),
        ("post", "/api/lattice/components"),
        ("post", "/api/lattice/distance-field"),
    }
    for method, path in declared:
        assert {"409", "422"} <= set(document["paths"][path][method]["responses"])


# --- 20 concurrent submissions across two real server processes ------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment naming one database for two server processes, migrated."""
    if request.param == "sqlite":
        path = tmp_path / "catalytic.db"
        migrate(None, sqlite_path=str(path))
        yield {"CATALYTIC_SQLITE_PATH": str(path)}
    else:
        url = str(request.getfixturevalue("pg_url"))
        migrate(url)
        yield {"DATABASE_URL": url}


@pytest.fixture
def two_servers(shared_database: dict[str, str], tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALYTIC_", "PROMETHEUS_", "DATABASE_URL"))}
    env |= shared_database | {
        "LOG_LEVEL": "WARNING",
        "METRICS_PORT": "0",
        "PARALLEL_CORES": "1",
        "CATALYTIC_WEBHOOK_WORKER": "false",
        "CATALYTIC_MIGRATE_ON_START": "false",
        "CATALYTIC_COMPUTE_POOL": "thread",
        "CATALYTIC_INLINE_MAX_VERTICES": "16",
        "RESULTS_DIR": str(tmp_path / "results"),
    }
    first = Replica(env, tmp_path / "a.log")
    second = Replica(env, tmp_path / "b.log")
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
async def test_twenty_concurrent_submissions_on_two_servers_make_one_job(
    two_servers: tuple[Replica, Replica], shared_database: dict[str, str]
) -> None:
    limits = httpx.Limits(max_connections=20)
    async with (
        httpx.AsyncClient(base_url=two_servers[0].url, timeout=60, limits=limits) as a,
        httpx.AsyncClient(base_url=two_servers[1].url, timeout=60, limits=limits) as b,
    ):
        for round_key in ("race-1", "race-2"):
            answers = await asyncio.gather(
                *(client.post("/api/jobs", json=JOB, headers={KEY: round_key}) for client in (a, b) * 10)
            )
            assert [answer.status_code for answer in answers] == [202] * 20, [x.text for x in answers]
            assert len({answer.content for answer in answers}) == 1
            assert len({answer.headers["location"] for answer in answers}) == 1
            assert sum("idempotent-replayed" not in answer.headers for answer in answers) == 1
    db = await open_database(
        shared_database.get("DATABASE_URL"), sqlite_path=shared_database.get("CATALYTIC_SQLITE_PATH", "")
    )
    try:
        assert await db.fetchval("SELECT count(*) FROM service_jobs") == 2
        assert await db.fetchval("SELECT count(*) FROM service_idempotency WHERE status = 202") == 2
    finally:
        await db.close()
