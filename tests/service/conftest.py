"""Fixtures of the service tests: settings on a throwaway SQLite file, an in-process client, real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from servers import pg_url, postgres_server, redis_server  # noqa: F401  (fixtures)
from service.service_helpers import Service, start_service

from catalytic.service.settings import Settings

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings on a per-test SQLite file, without metrics port or webhook worker, plus overrides."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "CATALYTIC_SQLITE_PATH": str(tmp_path / "catalytic.db"),
            "RESULTS_DIR": str(tmp_path / "results"),
            "METRICS_PORT": 0,
            "CATALYTIC_WEBHOOK_WORKER": False,
            "PARALLEL_CORES": 2,
            "LOG_LEVEL": "WARNING",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def service(make_settings: SettingsFactory) -> AsyncIterator[Service]:
    """The service on SQLite with default limits (inline threshold lowered so jobs are cheap to reach)."""
    async for running in start_service(make_settings(CATALYTIC_INLINE_MAX_VERTICES=200_000)):
        yield running
