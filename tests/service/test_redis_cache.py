"""Redis as the shared result cache: a second process's L1 fills from it; an outage degrades to L1 + database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from servers import start_redis
from service.service_helpers import start_service

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_second_instance_is_served_from_redis(make_settings: Any, redis_server: Any) -> None:
    settings = make_settings(REDIS_URL=redis_server.url)
    body = {"lattice": {"shape": [9, 9, 9]}, "start": [0, 0, 0], "goal": [8, 8, 8]}
    async for first in start_service(settings):
        computed = (await first.client.post("/api/lattice/path", json=body)).json()
        assert computed["cached"] is False
    hits = sample("cache_hits_total", layer="redis")
    async for second in start_service(settings):
        answer = (await second.client.post("/api/lattice/path", json=body)).json()
        assert answer["cached"] is True and answer["path"] == computed["path"]
        assert sample("cache_hits_total", layer="redis") == hits + 1
        ready = (await second.client.get("/ready")).json()
        assert ready["cache"]["redis"] is True


async def test_redis_outage_keeps_answering(
    make_settings: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = start_redis(tmp_path / "redis")
    try:
        async for service in start_service(make_settings(REDIS_URL=redis.url, LOG_LEVEL="INFO")):
            client = service.client
            created = (await client.post("/api/lattice/create", json={"shape": [8, 8]})).json()
            path = {"lattice_id": created["id"], "start": [0, 0], "goal": [7, 7]}
            assert (await client.post("/api/lattice/path", json=path)).status_code == 200
            # Retry Redis on every request, so the recovery below needs no waiting.
            monkeypatch.setattr("catalytic.service.defaults.REDIS_RETRY_S", 0.0)
            redis.stop()
            for goal in ([7, 6], [6, 7], [5, 5], [7, 7]):
                response = await client.post("/api/lattice/path", json={**path, "goal": goal})
                assert response.status_code == 200 and response.json()["found"] is True
            inline = {"lattice": {"shape": [5, 5]}, "start": [0, 0], "goal": [4, 4]}
            assert (await client.post("/api/lattice/path", json=inline)).status_code == 200
            assert (await client.post("/api/lattice/analyze", json={"lattice_id": created["id"]})).status_code == 200
            assert sample("cache_redis_up") == 0
            ready = (await client.get("/ready")).json()
            assert ready["ready"] is True and ready["cache"]["redis"] is False
            assert capfd.readouterr().err.count("Redis is unreachable") == 1
            redis.start()
            # A pooled connection from before the outage may fail once before a fresh one is made.
            for goal in ([4, 4], [3, 3], [2, 2]):
                response = await client.post("/api/lattice/path", json={**path, "goal": goal})
                assert response.status_code == 200
            assert sample("cache_redis_up") == 1
            assert "Redis answers again" in capfd.readouterr().err
    finally:
        redis.close()
