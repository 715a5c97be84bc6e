"""The management API, mounted in a small Starlette app and called through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from webhook_harness import Env, FakeClock, config, script, sqlite_env

from catalytic.storage import migrate, open_database
from catalytic.webhooks.api import MAX_BODY_BYTES, routes
from catalytic.webhooks.receiver import LocalReceiver, Reply
from catalytic.webhooks.store import active_secrets
from catalytic.webhooks.worker import Worker

API = "/api/webhooks"


async def resolve(host: str, port: int) -> list[str]:
    return {"hooks.example": ["93.184.215.14"], "intranet.example": ["10.0.0.5"]}.get(host, [])


@asynccontextmanager
async def api(env: Env, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=routes(lambda: env.db, config=config(), resolver=resolve, clock=env.clock, **kwargs))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        yield client


def run_api(tmp_path: Path, body: Callable[[Env, httpx.AsyncClient], Awaitable[None]], **kwargs: Any) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env, api(env, **kwargs) as client:
            await body(env, client)

    asyncio.run(run())


async def register(env: Env, client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await client.post(API, json={"url": env.receiver.url + "/hook", **fields})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_create_list_get_update_delete(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        created = await register(env, client, event_types=["job.succeeded"], description="ci")
        assert created["secret"].startswith("whsec_")
        assert created["event_types"] == ["job.succeeded"]
        assert created["enabled"] is True
        endpoint = f"{API}/{created['id']}"
        fetched = (await client.get(endpoint)).json()
        assert "secret" not in fetched
        assert "secrets" not in fetched
        assert fetched["description"] == "ci"
        listing = (await client.get(API)).json()
        assert [e["id"] for e in listing["endpoints"]] == [created["id"]]
        assert created["secret"] not in (await client.get(API)).text

        changed = await client.patch(endpoint, json={"event_types": [], "description": "all"})
        assert changed.status_code == 200
        assert changed.json()["event_types"] == []
        disabled = (await client.patch(endpoint, json={"enabled": False})).json()
        assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "disabled by request")
        enabled = (await client.patch(endpoint, json={"enabled": True})).json()
        assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
        moved = await client.patch(endpoint, json={"url": "https://hooks.example/new"})
        assert moved.json()["url"] == "https://hooks.example/new"

        assert (await client.delete(endpoint)).status_code == 204
        gone = await client.get(endpoint)
        assert gone.status_code == 404
        assert gone.json()["code"] == "not_found"
        assert (await client.delete(endpoint)).status_code == 404
        assert (await client.patch(endpoint, json={"description": "x"})).status_code == 404

    run_api(tmp_path, body)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "ftp://hooks.example/"}, "url"),
        ({"url": "http://10.0.0.1/"}, "url"),
        ({"url": "http://167772161/"}, "url"),  # 10.0.0.1 in decimal
        ({"url": "http://012.0.0.1/"}, "url"),  # 10.0.0.1 in octal
        ({"url": "https://intranet.example/"}, "url"),
        ({"url": "https://unknown.example/"}, "url"),
        ({"url": "https://hooks.example/", "event_types": ["job.exploded"]}, "event_types[0]"),
        ({"url": "https://hooks.example/", "event_types": "job.failed"}, "event_types"),
        ({"url": "https://hooks.example/", "description": "x" * 1001}, "description"),
        ({"url": "https://hooks.example/", "secret": "whsec_mine"}, "secret"),
        ({"event_types": []}, "url"),
        ([1, 2], "body"),
    ],
)
def test_bad_registrations_get_422_naming_the_field(tmp_path: Path, payload: Any, field: str) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        answer = await client.post(API, json=payload)
        assert answer.status_code == 422
        fields = [d["field"] for d in answer.json()["errors"]]
        assert field in fields
        assert await env.db.fetchval("SELECT count(*) FROM webhook_endpoints") == 0

    run_api(tmp_path, body)


def test_malformed_and_oversized_bodies(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        bad_json = await client.post(API, content=b"{nope", headers={"content-type": "application/json"})
        assert bad_json.status_code == 422
        assert bad_json.json()["errors"][0]["field"] == "body"
        empty = await client.post(API, content=b"")
        assert empty.status_code == 422
        huge = await client.post(API, json={"url": "https://hooks.example/", "description": "x" * MAX_BODY_BYTES})
        assert huge.status_code == 413
        assert huge.json()["code"] == "too_large"
        created = await register(env, client)
        null = await client.patch(f"{API}/{created['id']}", json={"url": None})
        assert null.status_code == 422
        private = await client.patch(f"{API}/{created['id']}", json={"url": "http://[::1]/"})
        assert private.status_code == 422
        assert (await client.get(API, params={"limit": 0})).status_code == 422
        assert (await client.get(API, params={"bogus": 1})).status_code == 422

    run_api(tmp_path, body)


def test_rotate_secret(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        created = await register(env, client)
        rotated = await client.post(f"{API}/{created['id']}/rotate-secret", json={"grace_seconds": 600})
        assert rotated.status_code == 200
        new = rotated.json()["secret"]
        assert new != created["secret"]
        assert rotated.json()["previous_secrets_expire_at"] == pytest.approx(env.clock() + 600)
        stored = await env.db.fetchval("SELECT secrets FROM webhook_endpoints WHERE id = $1", created["id"])
        assert active_secrets(stored, env.clock()) == [new, created["secret"]]
        default_grace = await client.post(f"{API}/{created['id']}/rotate-secret")
        assert default_grace.status_code == 200
        assert (
            await client.post(f"{API}/{created['id']}/rotate-secret", json={"grace_seconds": -1})
        ).status_code == 422
        assert (await client.post(f"{API}/ep_nope/rotate-secret")).status_code == 404

    run_api(tmp_path, body)


def test_test_event_is_delivered_and_signed(tmp_path: Path) -> None:
    woken: list[bool] = []

    async def body(env: Env, client: httpx.AsyncClient) -> None:
        created = await register(env, client, event_types=["job.failed"])
        sent = await client.post(f"{API}/{created['id']}/test")
        assert sent.status_code == 202
        assert woken == [True]
        worker = Worker(env.db, config(), clock=env.clock)
        try:
            assert await worker.run_once() == 1
        finally:
            await worker.aclose()
        [request] = env.receiver.requests
        payload = Webhook(created["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "webhook.test"
        assert request.headers["webhook-id"] == sent.json()["event_id"]
        await client.patch(f"{API}/{created['id']}", json={"enabled": False})
        assert (await client.post(f"{API}/{created['id']}/test")).status_code == 409
        assert (await client.post(f"{API}/ep_nope/test")).status_code == 404

    run_api(tmp_path, body, on_enqueue=lambda: woken.append(True))


def test_deliveries_attempts_and_replay(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        env.receiver.respond = script(Reply(400, body=b"bad"), Reply(400), Reply(204))
        created = await register(env, client)
        since = env.clock()
        first, second = await env.emit(), await env.emit()
        worker = Worker(env.db, config(), clock=env.clock)
        try:
            assert await worker.run_once() == 2
            listing = await client.get(f"{API}/{created['id']}/deliveries", params={"status": "failed"})
            assert listing.status_code == 200
            deliveries = listing.json()["deliveries"]
            assert {d["event_id"] for d in deliveries} == {first, second}
            assert all(d["attempt_log"][0]["status_code"] == 400 for d in deliveries)
            one = deliveries[0]
            detail = await client.get(f"{API}/{created['id']}/deliveries/{one['id']}")
            assert detail.json()["attempt_log"] == one["attempt_log"]
            event = (await client.get(f"{API}/events/{first}")).json()
            assert event["payload"]["type"] == "job.succeeded"
            assert [d["status"] for d in event["deliveries"]] == ["failed"]

            replay = await client.post(f"{API}/{created['id']}/deliveries/{one['id']}/replay")
            assert replay.status_code == 202
            again = await client.post(f"{API}/{created['id']}/deliveries/{one['id']}/replay")
            assert again.status_code == 409
            assert await worker.run_once() == 1
            replayed = (await client.get(f"{API}/{created['id']}/deliveries/{one['id']}")).json()
            assert replayed["status"] == "succeeded"
            assert [a["status_code"] for a in replayed["attempt_log"]] == [400, 204]

            bulk = await client.post(f"{API}/{created['id']}/replay", json={"since": since})
            assert bulk.json() == {"replayed": 1}
            assert await worker.run_once() == 1
            statuses = {
                d["status"] for d in (await client.get(f"{API}/{created['id']}/deliveries")).json()["deliveries"]
            }
            assert statuses == {"succeeded"}
            nothing = await client.post(f"{API}/{created['id']}/replay", json={"since": since})
            assert nothing.json() == {"replayed": 0}
        finally:
            await worker.aclose()
        assert (await client.get(f"{API}/{created['id']}/deliveries", params={"status": "lost"})).status_code == 422
        assert (await client.get(f"{API}/{created['id']}/deliveries/dlv_nope")).status_code == 404
        assert (await client.post(f"{API}/{created['id']}/deliveries/dlv_nope/replay")).status_code == 404
        assert (await client.get(f"{API}/ep_nope/deliveries")).status_code == 404
        assert (await client.get(f"{API}/events/msg_nope")).status_code == 404
        assert (await client.post(f"{API}/{created['id']}/replay", json={"since": -5})).status_code == 422

    run_api(tmp_path, body)


class RequireKey(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.headers.get("x-api-key") != "k":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return await call_next(request)


def test_the_mounting_apps_middleware_guards_every_route(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        assert (await client.get(API)).status_code == 401
        assert (await client.post(API, json={"url": "https://hooks.example/"})).status_code == 401
        assert (await client.get(API, headers={"x-api-key": "k"})).status_code == 200

    run_api(tmp_path, body, middleware=[Middleware(RequireKey)])


def test_a_streamed_body_past_the_limit_is_refused_without_a_length(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(MAX_BODY_BYTES // 1024 + 1):
                yield b" " * 1024

        answer = await client.post(API, content=chunks())
        assert "content-length" not in answer.request.headers
        assert answer.status_code == 413
        problem = answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert (problem["code"], problem["status"], problem["instance"]) == ("too_large", 413, API)
        assert problem["detail"] == f"the body is over {MAX_BODY_BYTES} bytes (allowed: at most that)"
        assert await env.db.fetchval("SELECT count(*) FROM webhook_endpoints") == 0

    run_api(tmp_path, body)


def test_rotating_with_no_grace_retires_the_old_secret_at_once(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        created = await register(env, client)
        rotated = await client.post(f"{API}/{created['id']}/rotate-secret", json={"grace_seconds": 0})
        assert rotated.json()["previous_secrets_expire_at"] == pytest.approx(env.clock())
        stored = await env.db.fetchval("SELECT secrets FROM webhook_endpoints WHERE id = $1", created["id"])
        assert [entry["secret"] for entry in json.loads(stored)] == [rotated.json()["secret"]]

    run_api(tmp_path, body)


def test_deliveries_since_a_time(tmp_path: Path) -> None:
    async def body(env: Env, client: httpx.AsyncClient) -> None:
        created = await register(env, client)
        deliveries = f"{API}/{created['id']}/deliveries"
        assert (await client.get(deliveries)).json() == {"deliveries": []}
        before = env.clock()
        env.clock.advance(10)
        event_id = await env.emit()
        listed = (await client.get(deliveries, params={"since": before})).json()["deliveries"]
        assert [d["event_id"] for d in listed] == [event_id]
        assert listed[0]["attempt_log"] == []
        later = (await client.get(deliveries, params={"since": env.clock() + 1})).json()
        assert later == {"deliveries": []}

    run_api(tmp_path, body)


def test_routes_take_a_database_as_well_as_a_getter(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            app = Starlette(routes=routes(env.db, config=config(), resolver=resolve, clock=env.clock))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
                created = await register(env, client)
                listing = await client.get(API)
        assert [e["id"] for e in listing.json()["endpoints"]] == [created["id"]]

    asyncio.run(run())


@pytest.mark.postgres
def test_changes_disables_and_replays_on_postgres(pg_url: str) -> None:
    async def statuses(client: httpx.AsyncClient, endpoint: str) -> list[tuple[str, str | None]]:
        listed = (await client.get(f"{endpoint}/deliveries")).json()["deliveries"]
        return [(d["status"], d["last_error"]) for d in listed]

    async def run() -> None:
        await asyncio.to_thread(migrate, pg_url)
        db = await open_database(pg_url)
        receiver = LocalReceiver()
        await receiver.start()
        env = Env(db, receiver, FakeClock())
        try:
            async with api(env) as client:
                endpoint = f"{API}/{(await register(env, client))['id']}"
                assert (await client.post(f"{endpoint}/test")).status_code == 202
                [delivery] = (await client.get(f"{endpoint}/deliveries")).json()["deliveries"]
                replay_one = f"{endpoint}/deliveries/{delivery['id']}/replay"
                assert (await client.post(replay_one)).status_code == 409
                assert (await client.patch(endpoint, json={"enabled": False})).json()["enabled"] is False
                assert await statuses(client, endpoint) == [("dead", "endpoint disabled")]
                assert (await client.patch(endpoint, json={"enabled": True})).json()["enabled"] is True
                assert (await client.post(replay_one)).json() == {"replayed": 1, "delivery_id": delivery["id"]}
                assert await statuses(client, endpoint) == [("pending", "endpoint disabled")]
                await client.patch(endpoint, json={"enabled": False})
                await client.patch(endpoint, json={"enabled": True})
                assert (await client.post(f"{endpoint}/replay", json={"since": 0})).json() == {"replayed": 1}
                assert (await client.post(f"{endpoint}/replay", json={"since": 0})).json() == {"replayed": 0}
                assert (await client.post(f"{endpoint}/rotate-secret", json={"grace_seconds": 0})).status_code == 200
                assert (await client.delete(endpoint)).status_code == 204
                assert (await client.delete(endpoint)).status_code == 404
                row = await db.fetchrow("SELECT status, last_error FROM deliveries WHERE id = $1", delivery["id"])
                assert row == {"status": "dead", "last_error": "endpoint deleted"}
        finally:
            await receiver.close()
            await db.close()

    asyncio.run(run())
