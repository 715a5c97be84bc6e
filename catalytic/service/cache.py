"""Caches: a per-process L1 LRU (lattices, results) and Redis as a shared L2 for results.

Redis is optional and may vanish: while it does not answer, results come from L1 and the database, one
warning is logged per outage and ``cache_redis_up`` reads 0. Reconnection is tried every REDIS_RETRY_S.

Every key is stored under the kernels' algorithm version (:func:`versioned_key`): ``method="auto"`` is a pure
function of the spec and the request under one version, so a key that names both names the method that ran,
and replicas of another version (mid-rollout) neither read nor overwrite each other's paths.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from catalytic.service import defaults
from catalytic.service.metrics import CACHE_CONFIGURED, CACHE_HITS, CACHE_MISSES, CACHE_UP, LATTICE_CACHE_BYTES

__all__ = ["LRU", "ResultCache", "lattice_bytes", "lattice_lru", "versioned_key"]

log = logging.getLogger("catalytic.service")

V = TypeVar("V")
_PREFIX = "catalytic:v1:"
_L1_HITS, _L1_MISSES = CACHE_HITS.labels("l1"), CACHE_MISSES.labels("l1")


def versioned_key(key: str, version: int | None = None) -> str:
    """``key`` under an algorithm version (default: this code's :data:`catalytic.kernels.ALGORITHM_VERSION`).

    Examples
    --------
    >>> versioned_key("path|id:lat_1|auto", version=7)
    'algo7|path|id:lat_1|auto'
    """
    if version is None:
        from catalytic.kernels import ALGORITHM_VERSION

        version = ALGORITHM_VERSION
    return f"algo{version}|{key}"


class LRU(Generic[V]):
    """A least-recently-used map of at most ``size`` entries, each with an optional expiry time.

    Given ``weigh`` (value → bytes), it keeps the bytes its entries hold in :attr:`nbytes` and reports the sum
    to ``on_bytes``. A held value may grow after it was handed out (the kernels prepare masks for a lattice), so
    every entry :meth:`get` returned is weighed again at the next :meth:`put` or :meth:`pop`; the others keep the
    weight they had, and no call weighs more than the entries handed out since the last. With
    ``max_bytes`` as well, least recently used entries are evicted until the rest weigh at most that; an entry
    heavier than ``max_bytes`` on its own is not kept.

    Examples
    --------
    >>> lru = LRU[int](2)
    >>> lru.put("a", 1); lru.put("b", 2); lru.put("c", 3)
    >>> lru.get("a") is None, lru.get("c")
    (True, 3)
    """

    def __init__(
        self,
        size: int,
        *,
        weigh: Callable[[V], int] | None = None,
        on_bytes: Callable[[int], None] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._weigh = weigh
        self._on_bytes = on_bytes
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()
        self._weights: dict[str, int] = {}
        self._handed_out: set[str] = set()

    def _forget(self, key: str) -> None:
        self.nbytes -= self._weights.pop(key, 0)
        self._handed_out.discard(key)

    def _settle(self) -> None:
        """Weigh the entries handed out since the last call, evict down to the limits, report the bytes."""
        while len(self._entries) > self.size:
            self._forget(self._entries.popitem(last=False)[0])
        if self._weigh is None:
            return
        for key in self._handed_out:
            weight = self._weigh(self._entries[key][0])
            self.nbytes += weight - self._weights[key]
            self._weights[key] = weight
        self._handed_out.clear()
        if self.max_bytes is not None:
            while self.nbytes > self.max_bytes and self._entries:
                self._forget(self._entries.popitem(last=False)[0])
        if self._on_bytes is not None:
            self._on_bytes(self.nbytes)

    def get(self, key: str) -> V | None:
        """The value under ``key`` (refreshing its recency), or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires and expires < time.monotonic():
            del self._entries[key]
            self._forget(key)
            self._settle()
            return None
        self._entries.move_to_end(key)
        if self._weigh is not None:
            self._handed_out.add(key)  # weighed at the next put or pop: a hit costs no weighing
        return value

    def put(self, key: str, value: V, ttl: float | None = None) -> None:
        """Store ``value``, evicting the least recently used entries while over ``size`` or ``max_bytes``."""
        self._forget(key)
        self._entries[key] = (value, time.monotonic() + ttl if ttl else 0.0)
        self._entries.move_to_end(key)
        if self._weigh is not None:
            self._weights[key] = 0
            self._handed_out.add(key)
        self._settle()

    def pop(self, key: str) -> None:
        """Forget ``key``."""
        if self._entries.pop(key, None) is not None:
            self._forget(key)
            self._settle()

    def __len__(self) -> int:
        return len(self._entries)


def lattice_bytes(lattice: Any) -> int:
    """Bytes of the arrays a materialised lattice holds: blocked mask, weights, the cached open mask, and the
    masks and bits the kernels prepared for it (:func:`catalytic.kernels.held_bytes`)."""
    from catalytic.kernels import held_bytes

    arrays = (lattice.blocked, lattice.weights, getattr(lattice, "_open_mask", None))
    return sum(int(array.nbytes) for array in arrays if array is not None) + held_bytes(lattice)


def lattice_lru(size: int, max_bytes: int | None = None) -> LRU[Any]:
    """The L1 cache of materialised lattices (CACHE_SIZE, CACHE_MAX_BYTES); ``lattice_cache_bytes`` shows its bytes."""
    return LRU(size, weigh=lattice_bytes, on_bytes=LATTICE_CACHE_BYTES.set, max_bytes=max_bytes)


class ResultCache:
    """Computed answers in L1 and, when configured, in Redis, each with a TTL.

    An answer is kept as the JSON body of a cache hit (``"cached": true`` included), rendered once when it
    is stored: a hit then costs no encoding, which for a path of many coordinates is most of the work.
    """

    def __init__(self, size: int, redis_url: str | None) -> None:
        self.l1: LRU[bytes] = LRU(size)
        self.redis_url = redis_url
        self._redis: Any = None
        self._down_until = 0.0
        self._down = False
        CACHE_CONFIGURED.set(1 if redis_url else 0)
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=defaults.REDIS_TIMEOUT_S,
                socket_connect_timeout=defaults.REDIS_TIMEOUT_S,
                retry_on_timeout=False,
            )
            CACHE_UP.set(1)

    @property
    def redis_up(self) -> bool | None:
        """True/False for a configured Redis, None when there is none."""
        return None if self._redis is None else not self._down

    def _failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + defaults.REDIS_RETRY_S
        CACHE_UP.set(0)
        if not self._down:
            self._down = True
            log.warning("Redis is unreachable (%s); answering from L1 and the database", type(exc).__name__)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            CACHE_UP.set(1)
            log.info("Redis answers again; shared result cache restored")

    def _redis_usable(self) -> bool:
        return self._redis is not None and (not self._down or time.monotonic() >= self._down_until)

    async def get(self, key: str) -> bytes | None:
        """The JSON body of the cached answer for ``key``: L1 first, then Redis (which refills L1)."""
        key = versioned_key(key)
        value = self.l1.get(key)
        if value is not None:
            _L1_HITS.inc()
            return value
        _L1_MISSES.inc()
        if not self._redis_usable():
            return None
        from redis.exceptions import RedisError

        try:
            raw = await self._redis.get(_PREFIX + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        if raw is None:
            CACHE_MISSES.labels("redis").inc()
            return None
        CACHE_HITS.labels("redis").inc()
        ttl = await self._remaining_ttl(key)
        value = bytes(raw)
        self.l1.put(key, value, ttl)
        return value

    async def _remaining_ttl(self, key: str) -> float | None:
        from redis.exceptions import RedisError

        try:
            ttl = await self._redis.ttl(_PREFIX + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        return float(ttl) if ttl and ttl > 0 else None

    async def put(self, key: str, value: bytes, ttl: int) -> None:
        """Store the JSON body of a cache hit (:func:`catalytic.service.compute.answer_bodies`) for ``ttl`` seconds."""
        key = versioned_key(key)
        self.l1.put(key, value, ttl)
        if not self._redis_usable():
            return
        from redis.exceptions import RedisError

        try:
            await self._redis.set(_PREFIX + key, value, ex=ttl)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._recovered()

    async def ping(self) -> bool | None:
        """Whether Redis answers (None when not configured)."""
        if self._redis is None:
            return None
        from redis.exceptions import RedisError

        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._recovered()
        # Set on every ping, not only on a change: the latest reading of any process is what the port serves.
        CACHE_UP.set(1)
        return True

    async def close(self) -> None:
        """Close the Redis connection pool."""
        if self._redis is not None:
            await self._redis.aclose()
