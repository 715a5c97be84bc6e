"""API keys: Bearer or X-API-Key, 401 otherwise, open health/ready/docs, keys from a file, never logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from service.service_helpers import start_service

from catalytic.service.auth import key_matches

pytestmark = pytest.mark.anyio


async def test_keys_are_required_outside_open_paths(make_settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    async for service in start_service(make_settings(CATALYTIC_API_KEYS="alpha-key, beta-key", LOG_LEVEL="DEBUG")):
        client = service.client
        missing = await client.post("/api/lattice/create", json={"shape": [3]})
        assert missing.status_code == 401 and missing.json()["detail"] == "missing API key"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/api/lattices", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
        assert (await client.get("/api/lattices", headers={"Authorization": "Basic alpha-key"})).status_code == 401
        assert (await client.get("/api/webhooks")).status_code == 401
        bearer = await client.post(
            "/api/lattice/create", json={"shape": [3]}, headers={"Authorization": "Bearer alpha-key"}
        )
        assert bearer.status_code == 201
        header = await client.get("/api/lattices", headers={"X-API-Key": "alpha-key"})
        assert header.status_code == 200 and len(header.json()["items"]) == 1
        # Two bare keys are two tenants: the other key sees none of the first one's lattices.
        other = await client.get("/api/lattices", headers={"X-API-Key": "beta-key"})
        assert other.status_code == 200 and other.json()["items"] == []
        webhooks = await client.get("/api/webhooks", headers={"X-API-Key": "beta-key"})
        assert webhooks.status_code == 200
        for path in ("/health", "/ready", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200
    assert "alpha-key" not in caplog.text and "beta-key" not in caplog.text


async def test_keys_from_a_mounted_secret_file(make_settings: Any, tmp_path: Path) -> None:
    secret = tmp_path / "keys"
    secret.write_text("file-key-1\nfile-key-2\n", encoding="utf-8")
    async for service in start_service(make_settings(CATALYTIC_API_KEYS_FILE=str(secret))):
        assert (await service.client.get("/api/lattices")).status_code == 401
        ok = await service.client.get("/api/lattices", headers={"X-API-Key": "file-key-2"})
        assert ok.status_code == 200


def test_key_matches_compares_every_key() -> None:
    assert key_matches("b", ("a", "b", "c"))
    assert not key_matches("d", ("a", "b"))
    assert not key_matches("", ("a",))
    assert not key_matches("a", ())


def test_settings_repr_hides_keys(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_API_KEYS="hidden-secret")
    assert settings.api_keys == ("hidden-secret",)
    assert "hidden-secret" not in repr(settings)
    logging.getLogger("catalytic.test").info("%s", settings)
