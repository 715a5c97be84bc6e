"""Readings the metrics need from outside the process, taken on a timer by every server process.

* Every ``PROBE_INTERVAL_S``: the database answers ``SELECT 1`` (``database_up``, ``database_ping_duration_seconds``)
  and Redis answers a ping (``cache_redis_up``).
* Every ``STORE_GAUGES_INTERVAL_S``: the age of the oldest job waiting to start, the bytes of stored results and
  the number of stored lattices, all read from the database (the same value on every replica).

A probe that fails or times out is a reading too (0, or no new value for the store gauges), never an error
that stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from catalytic.service import db as queries
from catalytic.service import defaults
from catalytic.service.metrics import (
    ACTIVE_LATTICES,
    DATABASE_PING_DURATION,
    DATABASE_UP,
    JOB_OLDEST_QUEUED_AGE,
    JOB_QUEUE_CAPACITY,
    RESULTS_STORE_BYTES,
)
from catalytic.service.periodic import Periodic

__all__ = ["Probes"]

log = logging.getLogger("catalytic.service")


class Probes(Periodic):
    """The probe loop of one server process.

    Parameters
    ----------
    db : catalytic.storage.Database
    cache : catalytic.service.cache.ResultCache
    max_queued : int
        This process's job queue capacity (``job_queue_capacity``).
    clock : callable
        Epoch seconds (job ages are measured against the stored ``created_at``).
    """

    task_name = "catalytic-probes"
    failure = "probe round failed"

    @property
    def interval_s(self) -> float:  # type: ignore[override]
        """PROBE_INTERVAL_S, read each round."""
        return defaults.PROBE_INTERVAL_S

    def __init__(self, db: Any, cache: Any, max_queued: int, clock: Any = time.time) -> None:
        self.db = db
        self.cache = cache
        self.clock = clock
        self._next_store = 0.0
        JOB_QUEUE_CAPACITY.set(max_queued)

    async def probe_database(self) -> bool:
        """Time one ``SELECT 1``; set ``database_up`` and observe its duration. Returns whether it answered."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(defaults.READY_TIMEOUT_S):
                up = bool(await self.db.ping())
        except (TimeoutError, OSError):
            up = False
        DATABASE_PING_DURATION.observe(time.perf_counter() - started)
        DATABASE_UP.set(1 if up else 0)
        return up

    async def read_store_gauges(self) -> None:
        """Set the gauges read from the database: oldest queued job age, stored result bytes, stored lattices."""
        oldest = await queries.oldest_queued_job_created_at(self.db)
        JOB_OLDEST_QUEUED_AGE.set(0.0 if oldest is None else max(0.0, self.clock() - oldest))
        RESULTS_STORE_BYTES.labels("database").set(await queries.results_bytes(self.db))
        ACTIVE_LATTICES.set(await queries.count_lattices(self.db))

    async def run_once(self) -> None:
        """One round: the database and Redis probes, and the store gauges when they are due."""
        up = await self.probe_database()
        await self.cache.ping()
        now = time.monotonic()
        if up and now >= self._next_store:
            self._next_store = now + defaults.STORE_GAUGES_INTERVAL_S
            try:
                async with asyncio.timeout(defaults.STORE_GAUGES_INTERVAL_S):
                    await self.read_store_gauges()
            except Exception as exc:  # a slow or failing read leaves the last values; the next round tries again
                log.warning("store gauges not read: %s: %s", type(exc).__name__, exc)
