"""Quotas per tenant: what one tenant may store, queue, hold and ask, checked where each is used.

=========================  ==================================  ======  =====================================
quota                      setting                             answer  counted
=========================  ==================================  ======  =====================================
max_lattices               TENANT_MAX_LATTICES                 403     the tenant's stored lattices
max_vertices               TENANT_MAX_VERTICES                 413     one lattice created or run as a job
max_queued_jobs            TENANT_MAX_QUEUED_JOBS              429     queued or running, on all replicas
max_concurrent_jobs        TENANT_MAX_CONCURRENT_JOBS          (wait)  running, on all replicas: more wait queued
max_result_bytes           TENANT_MAX_RESULT_BYTES             429     results held (database and store)
max_requests_per_second    TENANT_MAX_REQUESTS_PER_SECOND      429     in Redis when set, else per process
max_webhook_endpoints      WEBHOOK_MAX_ENDPOINTS_PER_TENANT    403     checked by the webhook API
=========================  ==================================  ======  =====================================

Counts come from the database, so they hold across replicas. Each check sets ``tenant_quota_used`` for the tenant and
``tenant_quota_limit``, so use against each quota can be watched.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from catalytic.problems import problem_response
from catalytic.service.db import TENANT_LOCK_CLASS, Queries
from catalytic.service.errors import QuotaExceeded
from catalytic.service.metrics import TENANT_QUOTA_LIMIT, TENANT_QUOTA_USED
from catalytic.service.settings import Settings
from catalytic.tenancy import tenant_of

__all__ = ["RateLimitMiddleware", "check_job", "check_lattice", "check_vertices", "held_result_bytes"]

log = logging.getLogger("catalytic.service")


def _note(tenant: str, quota: str, used: float, limit: float) -> None:
    TENANT_QUOTA_USED.labels(tenant, quota).set(used)
    TENANT_QUOTA_LIMIT.labels(quota).set(limit)


def check_vertices(settings: Settings, tenant: str, vertices: int) -> None:
    """Refuse (413) a lattice of more vertices than TENANT_MAX_VERTICES."""
    limit = settings.tenant_max_vertices
    if vertices > limit:
        raise QuotaExceeded(413, "max_vertices", limit, vertices, f"the lattice has {vertices} vertices")


def tenant_lock(tenant: str, quota: str) -> str:
    """The key, under :data:`~catalytic.service.db.TENANT_LOCK_CLASS`, of the lock that serialises the checks
    of ``quota`` for ``tenant`` on PostgreSQL (on SQLite each write transaction is exclusive already)."""
    return f"{quota}/{tenant}"


async def serialise_tenant(db: Queries, tenant: str, quota: str) -> None:
    """Hold, to the end of the transaction, a lock that other checks of ``quota`` for ``tenant`` wait for.

    On PostgreSQL (read committed) two transactions would each count the tenant's rows without the other's, and
    both insert: one over the quota. On SQLite each write transaction is exclusive already.
    """
    if getattr(db, "dialect", None) == "postgresql":
        await db.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", TENANT_LOCK_CLASS, tenant_lock(tenant, quota)
        )


def check_lattice(settings: Settings, tenant: str, stored: int) -> None:
    """Refuse (403) a new lattice of a tenant that stores TENANT_MAX_LATTICES already.

    ``stored`` is the tenant's count, read inside the create's transaction in a statement after the one that
    took the lock :func:`tenant_lock` ``(tenant, "max_lattices")``: the count then includes every other create
    of the tenant that committed first.
    """
    limit = settings.tenant_max_lattices
    _note(tenant, "max_lattices", stored, limit)
    if stored >= limit:
        raise QuotaExceeded(403, "max_lattices", limit, stored, f"{stored} lattices are stored; delete some first")


async def check_job(db: Queries, settings: Settings, tenant: str) -> None:
    """Refuse (429 with Retry-After) a job of a tenant with TENANT_MAX_QUEUED_JOBS queued or running, or holding
    TENANT_MAX_RESULT_BYTES of results."""
    queued_limit = settings.tenant_max_queued_jobs
    active = int(
        await db.fetchval(
            "SELECT COUNT(*) FROM service_jobs WHERE tenant = $1 AND status IN ('queued', 'running')", tenant
        )
    )
    _note(tenant, "max_queued_jobs", active, queued_limit)
    if active >= queued_limit:
        raise QuotaExceeded(
            429, "max_queued_jobs", queued_limit, active, f"{active} jobs are queued or running",
            settings.retry_after_s,
        )  # fmt: skip
    bytes_limit = settings.tenant_max_result_bytes
    held = await held_result_bytes(db, tenant)
    _note(tenant, "max_result_bytes", held, bytes_limit)
    if held >= bytes_limit:
        raise QuotaExceeded(
            429, "max_result_bytes", bytes_limit, held,
            f"{held} bytes of results are held; they expire after RESULT_TTL={settings.result_ttl_s:g} s",
            settings.retry_after_s,
        )  # fmt: skip


async def held_result_bytes(db: Queries, tenant: str) -> int:
    """Bytes of job results ``tenant`` holds (JSON bodies and arrays, in the database or the store): the running
    total the result writes and deletes keep (migration 0007_result_usage), one row read whatever the count."""
    held = await db.fetchval("SELECT result_bytes FROM service_tenant_usage WHERE tenant = $1", tenant)
    return int(held or 0)


class _Window:
    """Requests of one tenant in the current second, in this process."""

    __slots__ = ("count", "second")

    def __init__(self) -> None:
        self.second = 0
        self.count = 0


class RateLimitMiddleware:
    """Answer 429 with Retry-After to a tenant past TENANT_MAX_REQUESTS_PER_SECOND.

    Fixed one-second windows: counted in Redis (``INCR`` of a key per tenant and second, expiring after 2 s) when
    REDIS_URL is set, so the rate holds across replicas; in this process otherwise, so with N server processes a
    tenant may reach N times the rate. Redis unreachable: the count falls back to this process.
    """

    def __init__(self, app: Any, settings: Settings, closers: list[Any] | None = None) -> None:
        self.app = app
        self.limit = settings.tenant_max_requests_per_second
        self.redis_url = settings.redis_url
        self._redis: Any = None
        self._windows: dict[str, _Window] = {}
        if closers is not None:
            closers.append(self.close)

    async def close(self) -> None:
        """Close the Redis connection, if one was opened (the app's shut-down calls it)."""
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()

    async def _count(self, tenant: str, second: int) -> int:
        if self.redis_url:
            from redis.exceptions import RedisError

            if self._redis is None:
                import redis.asyncio as aioredis

                self._redis = aioredis.Redis.from_url(self.redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
            key = f"catalytic:rate:{tenant}:{second}"
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    count, _ = await pipe.incr(key).expire(key, 2).execute()
                return int(count)
            except (RedisError, OSError) as exc:
                log.debug("rate limit falls back to this process: %s", exc)
        window = self._windows.get(tenant)
        if window is None:
            if len(self._windows) > 10_000:  # bounded: tenants idle this second are forgotten
                self._windows = {t: w for t, w in self._windows.items() if w.second == second}
            window = self._windows[tenant] = _Window()
        if window.second != second:
            window.second, window.count = second, 0
        window.count += 1
        return window.count

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        tenant = tenant_of(scope)
        now = time.time()
        count = await self._count(tenant, int(now))
        _note(tenant, "max_requests_per_second", count, self.limit)
        if count > self.limit:
            retry = max(1, math.ceil(int(now) + 1 - now))
            detail = f"quota max_requests_per_second ({self.limit:g}) exceeded: {count} requests this second"
            fields = [{"field": "quota.max_requests_per_second", "message": f"{count} requests this second",
                       "allowed": f"at most {self.limit:g}"}]  # fmt: skip
            answer = problem_response(scope, 429, "quota_exceeded", detail, fields, headers={"Retry-After": str(retry)})
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)
