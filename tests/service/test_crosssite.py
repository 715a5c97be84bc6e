"""Cross-site requests to a keyless service: foreign Origin 403, bodies other than JSON 415, Host allow-list 403."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from service.service_helpers import Service, start_service

pytestmark = pytest.mark.anyio

EVIL = "http://evil.example"
JSON = {"content-type": "application/json"}


def _code(response: httpx.Response) -> str:
    """The error code of an error answer (``code`` of problem details; ``error`` of the older shape)."""
    body = response.json()
    return str(body.get("code", body.get("error")))


async def _counts(service: Service) -> tuple[int, int]:
    db = service.state.db
    return (
        await db.fetchval("SELECT COUNT(*) FROM service_lattices"),
        await db.fetchval("SELECT COUNT(*) FROM webhook_endpoints"),
    )


async def test_bodies_other_than_json_are_415_and_change_nothing(make_settings: Any) -> None:
    async for service in start_service(make_settings()):
        client = service.client
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
            headers = {} if content_type is None else {"content-type": content_type}
            for path, body in (
                ("/api/lattice/create", b'{"shape": [3]}'),
                ("/api/jobs", b'{"operation": "analyze", "lattice": {"shape": [3]}}'),
                ("/api/webhooks", b'{"url": "https://hooks.example/in"}'),
            ):
                refused = await client.post(path, content=body, headers=headers)
                assert refused.status_code == 415, (path, content_type, refused.text)
                assert refused.json()["code"] == "unsupported_media_type"
        assert await _counts(service) == (0, 0)
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 0
        for content_type in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
            created = await client.post(
                "/api/lattice/create", content=b'{"shape": [3]}', headers={"content-type": content_type}
            )
            assert created.status_code == 201, created.text
        assert (
            await client.post("/api/lattice/create", content=b"", headers={"content-type": "text/plain"})
        ).status_code == 422


async def test_a_foreign_origin_cannot_change_state(make_settings: Any) -> None:
    async for service in start_service(make_settings()):
        client = service.client
        stored = await client.post("/api/lattice/create", json={"shape": [3]})
        assert stored.status_code == 201
        lattice_id = stored.json()["id"]
        foreign = {"origin": EVIL}
        attempts = [
            ("POST", "/api/lattice/create", {"shape": [4]}),
            ("DELETE", f"/api/lattice/{lattice_id}", None),
            ("POST", "/api/jobs", {"operation": "analyze", "lattice_id": lattice_id}),
            ("POST", "/api/webhooks", {"url": "https://hooks.example/in"}),
            ("PATCH", "/api/webhooks/wh_nope", {"enabled": False}),
            ("POST", "/api/webhooks/wh_nope/rotate-secret", None),
        ]
        for method, path, body in attempts:
            for origin in (EVIL, "null", "http://127.0.0.1.evil.example"):
                refused = await client.request(method, path, json=body, headers={"origin": origin})
                assert refused.status_code == 403, (method, path, origin, refused.text)
                assert refused.json()["code"] == "forbidden"
        assert await _counts(service) == (1, 0)
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 0
        # Reading is not changing: a foreign page gets no CORS headers, so it cannot read the answer anyway.
        read = await client.get(f"/api/lattice/{lattice_id}", headers=foreign)
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
        # The service's own origin, and clients that send no Origin, go on.
        own = await client.post("/api/lattice/create", json={"shape": [5]}, headers={"origin": "http://127.0.0.1"})
        assert own.status_code == 201
        assert (await client.delete(f"/api/lattice/{lattice_id}")).status_code == 200


async def test_cors_allow_origins_lets_a_listed_origin_in(make_settings: Any) -> None:
    app_origin = "https://app.example"
    async for service in start_service(make_settings(CORS_ALLOW_ORIGINS=f"{app_origin}/, http://localhost:3000")):
        client = service.client
        allowed = await client.post("/api/lattice/create", json={"shape": [3]}, headers={"origin": app_origin})
        assert allowed.status_code == 201, allowed.text
        assert allowed.headers["access-control-allow-origin"] == app_origin
        preflight = await client.options(
            "/api/lattice/create",
            headers={
                "origin": app_origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
        webhook = await client.post("/api/webhooks", json={"url": 1}, headers={"origin": "http://localhost:3000"})
        assert webhook.status_code == 422  # past the origin check, refused by the route itself
        refused = await client.post("/api/lattice/create", json={"shape": [3]}, headers={"origin": EVIL})
        assert refused.status_code == 403
        assert await _counts(service) == (1, 0)


async def test_a_keyless_service_serves_only_loopback_host_names(make_settings: Any) -> None:
    async for service in start_service(make_settings()):
        client = service.client
        for host in ("evil.example", "evil.example:8080", "192.168.1.10", "[fe80::1]:8080"):
            for method, path in (("GET", "/health"), ("GET", "/api/lattices"), ("POST", "/api/lattice/create")):
                refused = await client.request(method, path, json={"shape": [3]}, headers={"host": host})
                assert refused.status_code == 403, (host, path, refused.text)
                assert refused.json()["code"] == "forbidden"
        for host in ("localhost", "LOCALHOST:8080", "127.0.0.1:8080", "[::1]:8080", "::1"):
            assert (await client.get("/api/lattices", headers={"host": host})).status_code == 200, host
        assert await _counts(service) == (0, 0)


async def test_the_host_allow_list_is_configurable_and_off_with_keys(make_settings: Any) -> None:
    async for service in start_service(make_settings(CATALYTIC_ALLOWED_HOSTS="api.example")):
        assert (await service.client.get("/health", headers={"host": "api.example:443"})).status_code == 200
        assert (await service.client.get("/health", headers={"host": "localhost"})).status_code == 403
    async for service in start_service(make_settings(CATALYTIC_ALLOWED_HOSTS="*")):
        assert (await service.client.get("/health", headers={"host": "anything.example"})).status_code == 200
    keyed = make_settings(CATALYTIC_API_KEYS="k1")
    async for service in start_service(keyed, headers={"authorization": "Bearer k1"}):
        assert (await service.client.get("/api/lattices", headers={"host": "catalytic.svc:8080"})).status_code == 200
        refused = await service.client.post("/api/lattice/create", json={"shape": [3]}, headers={"origin": EVIL})
        assert refused.status_code == 403  # a key does not make a foreign page's request welcome
