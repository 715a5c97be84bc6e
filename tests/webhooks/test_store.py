"""The outbox: events and deliveries written in the caller's transaction, with type filters and limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from webhook_harness import sqlite_env

from catalytic.errors import InvalidInputError, InvalidTypeError
from catalytic.webhooks.store import (
    active_secrets,
    disable_endpoint,
    emit,
    list_deliveries,
    rotate_secret,
    update_endpoint,
)


def test_emit_fans_out_to_enabled_subscribed_endpoints(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            everything, _ = await env.endpoint("/all")
            jobs, _ = await env.endpoint("/jobs", ["job.succeeded", "job.failed"])
            off, _ = await env.endpoint("/off")
            async with env.db.transaction() as conn:
                await update_endpoint(conn, off, {"enabled": False}, now=env.clock())
            job_event = await env.emit("job.succeeded", {"job_id": "j1", "result_url": "/api/jobs/j1/result"})
            lattice_event = await env.emit("lattice.created", {"lattice_id": "l1"})
            by_event: dict[str, set[str]] = {}
            for row in await env.db.fetch("SELECT event_id, endpoint_id, status, attempts FROM deliveries"):
                assert (row["status"], row["attempts"]) == ("pending", 0)
                by_event.setdefault(row["event_id"], set()).add(row["endpoint_id"])
            assert by_event == {job_event: {everything, jobs}, lattice_event: {everything}}
            payload = json.loads(await env.db.fetchval("SELECT payload FROM events WHERE id = $1", job_event))
            assert payload["type"] == "job.succeeded"
            assert payload["data"] == {"job_id": "j1", "result_url": "/api/jobs/j1/result"}
            assert payload["timestamp"].endswith("Z")

    asyncio.run(run())


def test_emit_rolls_back_with_the_callers_transaction(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            await env.endpoint()
            with pytest.raises(RuntimeError, match="job write failed"):
                async with env.db.transaction() as conn:
                    await emit(conn, "job.failed", {"job_id": "j"})
                    raise RuntimeError("job write failed")
            assert await env.db.fetchval("SELECT count(*) FROM events") == 0
            assert await env.db.fetchval("SELECT count(*) FROM deliveries") == 0

    asyncio.run(run())


def test_emit_refuses_bad_input(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            async with env.db.transaction() as conn:
                with pytest.raises(InvalidInputError, match="type"):
                    await emit(conn, "job.exploded", {})
                with pytest.raises(InvalidInputError, match="at most 1024 bytes"):
                    await emit(conn, "job.succeeded", {"blob": "x" * 2000}, max_payload_bytes=1024)
                with pytest.raises(InvalidTypeError, match="JSON"):
                    await emit(conn, "job.succeeded", {"when": object()})
                with pytest.raises(InvalidTypeError, match="data"):
                    await emit(conn, "job.succeeded", [1, 2])  # type: ignore[arg-type]
            assert await env.db.fetchval("SELECT count(*) FROM events") == 0

    asyncio.run(run())


def test_rotation_keeps_the_old_secret_for_the_grace_period(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            endpoint_id, first = await env.endpoint()
            now = env.clock()
            async with env.db.transaction() as conn:
                second = await rotate_secret(conn, endpoint_id, now=now, grace_s=60)
                third = await rotate_secret(conn, endpoint_id, now=now + 30, grace_s=3600)
                assert await rotate_secret(conn, "ep_missing", now=now, grace_s=1) is None
            stored = await env.db.fetchval("SELECT secrets FROM webhook_endpoints WHERE id = $1", endpoint_id)
            assert active_secrets(stored, now + 31) == [third, second, first]
            # The first secret's grace ended 60 s after the first rotation; a later rotation does not extend it.
            assert active_secrets(stored, now + 61) == [third, second]
            assert active_secrets(stored, now + 30 + 3601) == [third]

    asyncio.run(run())


def test_disabling_buries_pending_deliveries_and_announces_it(tmp_path: Path) -> None:
    async def run() -> None:
        async with sqlite_env(tmp_path) as env:
            doomed, _ = await env.endpoint("/doomed")
            watcher, _ = await env.endpoint("/watcher", ["endpoint.disabled"])
            event_id = await env.emit()
            async with env.db.transaction() as conn:
                assert await disable_endpoint(conn, doomed, "testing", now=env.clock())
                assert not await disable_endpoint(conn, doomed, "again", now=env.clock())
            buried = await list_deliveries(env.db, event_id=event_id)
            assert [(d["status"], d["last_error"]) for d in buried] == [("dead", "endpoint disabled")]
            notice = await env.db.fetchrow("SELECT id, payload FROM events WHERE type = 'endpoint.disabled'")
            assert notice is not None
            assert json.loads(notice["payload"])["data"]["endpoint_id"] == doomed
            targets = await env.db.fetch("SELECT endpoint_id FROM deliveries WHERE event_id = $1", notice["id"])
            assert [t["endpoint_id"] for t in targets] == [watcher]

    asyncio.run(run())
