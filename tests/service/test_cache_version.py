"""Result-cache keys carry the algorithm version: answers of another version are never served."""

from __future__ import annotations

import asyncio

import pytest

import catalytic.kernels
from catalytic.kernels import ALGORITHM_VERSION
from catalytic.service.cache import ResultCache, versioned_key


def test_the_key_differs_when_the_algorithm_version_differs() -> None:
    key = "path|id:lat_1|None|auto|[0, 0]|[3, 3]"
    assert versioned_key(key) == versioned_key(key, ALGORITHM_VERSION)
    assert versioned_key(key, ALGORITHM_VERSION) != versioned_key(key, ALGORITHM_VERSION + 1)
    assert key in versioned_key(key)


def test_a_cached_answer_is_not_served_to_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ResultCache(8, None)
    body = b'{"found":true,"method":"astar","cached":true}'

    async def scenario() -> tuple[bytes | None, bytes | None]:
        await cache.put("path|k", body, 60)
        same = await cache.get("path|k")
        monkeypatch.setattr(catalytic.kernels, "ALGORITHM_VERSION", ALGORITHM_VERSION + 1)
        return same, await cache.get("path|k")

    same, other = asyncio.run(scenario())
    assert same == body and other is None
