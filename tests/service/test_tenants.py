"""Tenants: two tenants on every route, on SQLite and PostgreSQL; neither sees, changes or hears of the other's
resources, and another tenant's id answers exactly as a missing one does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from service.service_helpers import start_service

from catalytic.service import keys as key_table
from catalytic.tenancy import IMPLICIT_TENANT, key_digest, parse_key_lines

pytestmark = pytest.mark.anyio

ACME = {"X-API-Key": "acme-key-1"}
ACME_ROTATED = {"Authorization": "Bearer acme-key-2"}
GLOBEX = {"X-API-Key": "globex-key"}
KEYS = "acme:acme-key-1,acme:acme-key-2,globex:globex-key"
BLOCKED_CORNER = {"shape": [6, 6], "obstacles": [{"kind": "box", "lo": [2, 2], "hi": [3, 3]}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def tenants(
    database_url: str | None, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8")
    overrides: dict[str, Any] = {"CATALYTIC_API_KEYS": KEYS, "CATALYTIC_INLINE_MAX_VERTICES": 16}
    if database_url is not None:
        overrides["DATABASE_URL"] = database_url
    async for service in start_service(make_settings(**overrides)):
        yield service.client


def _not_found_shape(answer: httpx.Response) -> tuple[int, str, str]:
    body = answer.json()
    # The id differs between the two requests compared; everything else must not.
    code, detail = body.get("code", body.get("error")), body.get("detail", body.get("message"))
    return answer.status_code, code, detail.split("'")[0]


async def _same_as_missing(client: httpx.AsyncClient, method: str, path: str, real_id: str, **kwargs: Any) -> None:
    """``path`` naming another tenant's ``real_id`` answers exactly as it does naming an id nobody has."""
    foreign = await client.request(method, path, headers=GLOBEX, **kwargs)
    missing = await client.request(method, path.replace(real_id, real_id[:-4] + "0000"), headers=GLOBEX, **kwargs)
    assert foreign.status_code == 404, (method, path, foreign.text)
    assert _not_found_shape(foreign) == _not_found_shape(missing), (method, path)


async def _finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    for _ in range(400):
        job = (await client.get(f"/api/jobs/{job_id}", headers=ACME)).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def test_two_tenants_on_every_route(tenants: httpx.AsyncClient) -> None:
    client = tenants
    hook = {"url": "http://127.0.0.1:9/hook"}
    acme_hook = (await client.post("/api/webhooks", json=hook, headers=ACME)).json()["id"]
    globex_hook = (await client.post("/api/webhooks", json=hook, headers=GLOBEX)).json()["id"]

    created = await client.post("/api/lattice/create", json=BLOCKED_CORNER, headers=ACME)
    assert created.status_code == 201, created.text
    lattice = created.json()["id"]
    theirs = await client.post("/api/lattice/create", json={"shape": [4, 4]}, headers=GLOBEX)
    assert theirs.status_code == 201

    # Lists: each tenant sees its own; the tenant's second key (rotation) sees the same.
    for headers, expected in ((ACME, lattice), (ACME_ROTATED, lattice), (GLOBEX, theirs.json()["id"])):
        listed = (await client.get("/api/lattices", headers=headers)).json()["items"]
        assert [item["id"] for item in listed] == [expected]
    assert [e["id"] for e in (await client.get("/api/webhooks", headers=GLOBEX)).json()["endpoints"]] == [globex_hook]

    # Lattice routes with acme's id, called by globex, answer as for an id nobody has.
    await _same_as_missing(client, "GET", f"/api/lattice/{lattice}", lattice)
    await _same_as_missing(client, "DELETE", f"/api/lattice/{lattice}", lattice)
    by_id = {"lattice_id": lattice}
    for route, extra in (
        ("/api/lattice/path", {"start": [0, 0], "goal": [5, 5]}),
        ("/api/lattice/analyze", {}),
        ("/api/lattice/components", {}),
        ("/api/lattice/distance-field", {"sources": [[0, 0]]}),
    ):
        foreign = await client.post(route, json={**by_id, **extra}, headers=GLOBEX)
        assert foreign.status_code == 404, (route, foreign.text)
    job_body = {"operation": "shortest_path", "lattice_id": lattice, "params": {"start": [0, 0], "goal": [5, 5]}}
    assert (await client.post("/api/jobs", json=job_body, headers=GLOBEX)).status_code == 404
    assert (await client.get(f"/api/lattice/{lattice}", headers=ACME_ROTATED)).status_code == 200

    # Jobs: acme's, submitted directly and by a computation too large to run inline.
    submitted = await client.post("/api/jobs", json=job_body, headers=ACME)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()["id"]
    path = await client.post("/api/lattice/path", json={**by_id, "start": [0, 0], "goal": [5, 5]}, headers=ACME)
    assert path.status_code == 202, path.text
    assert (await _finished(client, job))["status"] == "succeeded"
    await _finished(client, path.json()["id"])
    for method, route in (("GET", f"/api/jobs/{job}"), ("GET", f"/api/jobs/{job}/result"),
                          ("DELETE", f"/api/jobs/{job}")):  # fmt: skip
        await _same_as_missing(client, method, route, job)
    assert (await client.get(f"/api/jobs/{job}/result", headers=ACME)).json()["result"]["found"] is True

    # Webhook routes with acme's endpoint, called by globex.
    await _same_as_missing(client, "GET", f"/api/webhooks/{acme_hook}", acme_hook)
    await _same_as_missing(client, "PATCH", f"/api/webhooks/{acme_hook}", acme_hook, json={"description": "x"})
    await _same_as_missing(client, "POST", f"/api/webhooks/{acme_hook}/rotate-secret", acme_hook)
    await _same_as_missing(client, "POST", f"/api/webhooks/{acme_hook}/test", acme_hook)
    await _same_as_missing(client, "GET", f"/api/webhooks/{acme_hook}/deliveries", acme_hook)
    await _same_as_missing(client, "POST", f"/api/webhooks/{acme_hook}/replay", acme_hook, json={"since": 0})
    acme_deliveries = (await client.get(f"/api/webhooks/{acme_hook}/deliveries", headers=ACME)).json()["deliveries"]
    # acme's endpoint heard of acme's lattice and both jobs; globex's only of its own lattice.
    assert sorted(d["event_type"] for d in acme_deliveries) == ["job.succeeded", "job.succeeded", "lattice.created"]
    globex_deliveries = (await client.get(f"/api/webhooks/{globex_hook}/deliveries", headers=GLOBEX)).json()
    assert [d["event_type"] for d in globex_deliveries["deliveries"]] == ["lattice.created"]
    delivery = acme_deliveries[0]
    await _same_as_missing(client, "GET", f"/api/webhooks/{acme_hook}/deliveries/{delivery['id']}", delivery["id"])
    # globex's own endpoint id with acme's delivery id is not a way in either.
    foreign_delivery = await client.get(f"/api/webhooks/{globex_hook}/deliveries/{delivery['id']}", headers=GLOBEX)
    assert foreign_delivery.status_code == 404
    replay = await client.post(f"/api/webhooks/{globex_hook}/deliveries/{delivery['id']}/replay", headers=GLOBEX)
    assert replay.status_code == 404
    await _same_as_missing(client, "GET", f"/api/webhooks/events/{delivery['event_id']}", delivery["event_id"])
    assert (await client.get(f"/api/webhooks/events/{delivery['event_id']}", headers=ACME)).status_code == 200

    # Nothing of acme's was changed by globex's attempts.
    endpoint = (await client.get(f"/api/webhooks/{acme_hook}", headers=ACME)).json()
    assert endpoint["description"] == "" and endpoint["enabled"] is True
    assert (await client.get(f"/api/lattice/{lattice}", headers=ACME)).status_code == 200
    assert (await client.delete(f"/api/webhooks/{acme_hook}", headers=GLOBEX)).status_code == 404
    assert (await client.delete(f"/api/webhooks/{acme_hook}", headers=ACME)).status_code == 204
    assert (await client.delete(f"/api/lattice/{lattice}", headers=ACME)).status_code == 200


async def test_keys_table_adds_rotates_and_revokes(tenants: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = tenants
    # Every request re-reads the table, as every process does once TABLE_REFRESH_S has passed.
    monkeypatch.setattr(key_table, "TABLE_REFRESH_S", 0.0)
    db = client._transport.app.state.service.db  # type: ignore[attr-defined]
    first_id, first = await key_table.add_key(db, "initech", "ci")
    second_id, second = await key_table.add_key(db, "initech")
    listed = await key_table.list_keys(db)
    assert {row["id"] for row in listed} == {first_id, second_id}
    assert all(first not in str(row.values()) and second not in str(row.values()) for row in listed)
    made = await client.post("/api/lattice/create", json={"shape": [3]}, headers={"X-API-Key": first})
    assert made.status_code == 201
    # Both keys of the tenant are valid at once, and see the same lattices.
    listed_by_second = await client.get("/api/lattices", headers={"X-API-Key": second})
    assert [item["id"] for item in listed_by_second.json()["items"]] == [made.json()["id"]]
    assert await key_table.revoke_key(db, first_id)
    assert not await key_table.revoke_key(db, first_id)
    assert (await client.get("/api/lattices", headers={"X-API-Key": first})).status_code == 401
    assert (await client.get("/api/lattices", headers={"X-API-Key": second})).status_code == 200
    with pytest.raises(ValueError, match="tenant"):
        await key_table.add_key(db, "no spaces allowed")


def test_key_lines_name_tenants() -> None:
    parsed = parse_key_lines("acme:one\nacme:two, bare")
    assert sorted(set(parsed.values())) == ["acme", f"key-{key_digest('bare')[:16]}"]
    assert all("bare" not in tenant and "one" not in tenant for tenant in parsed.values())
    assert len(parsed) == 3 and IMPLICIT_TENANT not in parsed.values()
