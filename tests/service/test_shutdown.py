"""Shut-down ends: a loop cancelled just as one of its timed awaits completes still stops.

``asyncio.wait_for`` before Python 3.12 returns the inner result when the cancellation arrives in the loop turn
in which the inner call completes, and the cancelled loop goes on forever; the service's lifespan then never
finished its shut-down. The timed awaits use ``asyncio.timeout``, which lets a cancellation through.
"""

from __future__ import annotations

import asyncio

import pytest

from catalytic.service.cache import ResultCache
from catalytic.service.probes import Probes
from catalytic.storage import open_database

pytestmark = pytest.mark.anyio


async def test_probe_loop_stops_when_cancelled_as_the_ping_answers() -> None:
    db = await open_database("sqlite:///:memory:")
    cache = ResultCache(4, None)
    probes = Probes(db, cache, max_queued=1)
    loop = asyncio.get_running_loop()
    pings = 0

    async def ping() -> bool:
        nonlocal pings
        pings += 1
        # The cancellation is queued before this call's completion wakes the probe loop.
        assert probes._task is not None
        loop.call_soon(probes._task.cancel)
        return True

    db.ping = ping  # type: ignore[method-assign]
    try:
        probes.start()
        async with asyncio.timeout(10):
            while pings == 0:
                await asyncio.sleep(0)
            with pytest.raises(asyncio.CancelledError):
                await probes._task
        assert pings == 1
        async with asyncio.timeout(10):
            await probes.close()
    finally:
        await cache.close()
        await db.close()
