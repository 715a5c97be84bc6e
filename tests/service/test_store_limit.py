"""RESULTS_STORE_MAX_BYTES: each sweep measures the store's files; at the limit new jobs are refused with 503 and
Retry-After, naming the setting, and once the sweeper frees space they are taken again. The limit is exported."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from service.service_helpers import start_service

pytestmark = pytest.mark.anyio

JOB = {"operation": "shortest_path", "lattice": {"shape": [8, 8]}, "params": {"start": [0, 0], "goal": [7, 7]}}


async def test_a_full_store_refuses_jobs_until_swept(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(RESULTS_STORE_MAX_BYTES=1000, RESULT_TTL=3600)
    async for service in start_service(settings):
        sweeper = service.state.sweeper
        assert REGISTRY.get_sample_value("results_store_limit_bytes", {"location": "store"}) == 1000
        store = Path(settings.results_dir)
        store.mkdir(parents=True, exist_ok=True)
        kept = store / "kept.npy"
        kept.write_bytes(b"\0" * 1500)
        await sweeper.sweep_once()
        assert sweeper.store_bytes == 1500 and sweeper.full

        refused = await service.client.post("/api/jobs", json=JOB)
        assert refused.status_code == 503, refused.text
        assert "RESULTS_STORE_MAX_BYTES=1000" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 0  # nothing was recorded

        # The file outlives the TTL: the next sweep deletes it and jobs are taken again.
        old = time.time() - 7200
        os.utime(kept, (old, old))
        await sweeper.sweep_once()
        assert sweeper.store_bytes == 0 and not sweeper.full
        accepted = await service.client.post("/api/jobs", json=JOB)
        assert accepted.status_code == 202, accepted.text


async def test_no_declared_limit_never_refuses(make_settings: Any) -> None:
    async for service in start_service(make_settings()):
        sweeper = service.state.sweeper
        await sweeper.sweep_once()
        assert sweeper.max_bytes == 0 and not sweeper.full
        assert REGISTRY.get_sample_value("results_store_limit_bytes", {"location": "store"}) == 0
