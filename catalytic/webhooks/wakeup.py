"""Wake-ups: how an idle delivery worker learns, without polling, that deliveries became due.

Whoever writes due deliveries calls :func:`announce` on the connection that wrote them:

- PostgreSQL: ``pg_notify('catalytic_webhooks', '')`` in the caller's transaction, so the notice goes out on
  commit and never for a rollback. Each worker ``LISTEN``\\ s on a connection of its own
  (:func:`listen_postgres`).
- SQLite: once the transaction commits, workers of this process are woken directly, and when ``REDIS_URL`` is set
  a ``PUBLISH`` on the same channel reaches workers in other processes (:func:`listen_redis`).
  The ``PUBLISH`` runs in the background on the emitter's event loop; a process that exits right after its commit
  may leave it unsent, which the safety interval below covers.

A notice only makes a worker start its next round sooner. A lost one (the listening connection was down, Redis
is unreachable) costs at most the worker's safety interval, ``WEBHOOK_IDLE_MAX_S``; a listener that connects
again asks for one round at once to catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final

from catalytic.storage import Connection, Database
from catalytic.storage.database import PostgresDatabase

__all__ = ["CHANNEL", "announce", "keep_listening", "listen_postgres", "listen_redis", "wake_in_process"]

logger = logging.getLogger(__name__)

CHANNEL: Final = "catalytic_webhooks"
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
LISTEN_CHECK_S = 30.0
CONNECT_TIMEOUT_S = 2.0

Wake = Callable[[], None]
Listen = Callable[[Wake], Awaitable[None]]

_in_process: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Publisher] = weakref.WeakKeyDictionary()


async def announce(conn: Connection) -> None:
    """Wake idle workers once the caller's transaction commits: it wrote deliveries that are due now.

    Parameters
    ----------
    conn : Connection
        The connection (normally the transaction) that wrote the deliveries.

    Examples
    --------
    >>> async def requeue(db, delivery_id: str) -> None:
    ...     async with db.transaction() as conn:
    ...         await conn.execute("UPDATE deliveries SET status = 'pending' WHERE id = $1", delivery_id)
    ...         await announce(conn)
    """
    if conn.dialect == "postgresql":
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    else:
        conn.after_commit(_announce_committed)


def _announce_committed() -> None:
    for loop, event in list(_in_process):
        with contextlib.suppress(RuntimeError):  # that loop closed meanwhile: nobody is left to wake
            loop.call_soon_threadsafe(event.set)
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        loop = asyncio.get_running_loop()
        publisher = _publishers.get(loop)
        if publisher is None:
            publisher = _publishers[loop] = _Publisher()
        publisher.request(url)


def wake_in_process(event: asyncio.Event) -> Callable[[], None]:
    """Set ``event`` whenever this process commits due deliveries on SQLite; returns the function that stops it.

    Parameters
    ----------
    event : asyncio.Event
        A worker's wake-up event, bound to the running loop.

    Returns
    -------
    callable
        Call it to stop waking ``event``.
    """
    entry = (asyncio.get_running_loop(), event)
    _in_process.add(entry)
    return lambda: _in_process.discard(entry)


class _Outage:
    """Says once that a wake channel is down, and once that it is back."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            logger.warning(
                "%s is unavailable (%s: %s); idle workers fall back to their timer", self.what, type(exc).__name__, exc
            )

    def recovered(self) -> None:
        if self.down:
            self.down = False
            logger.info("%s is back", self.what)


_publish_outage = _Outage("Redis wake-up publishing")


def _redis_client(url: str, **options: Any) -> Any:
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries inside the client: a lost connection must surface, so the listener reconnects and catches up.
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, retry=Retry(NoBackoff(), 0), socket_keepalive=True, **options
    )


class _Publisher:
    """PUBLISHes after commits, one at a time per loop: a burst of commits becomes a few messages, not one each."""

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def request(self, url: str) -> None:
        self._pending.add(url)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="catalytic-webhook-publish")

    async def _drain(self) -> None:
        from redis.exceptions import RedisError

        while self._pending:
            url = self._pending.pop()
            client = _redis_client(url, socket_timeout=CONNECT_TIMEOUT_S)
            try:
                await client.publish(CHANNEL, b"")
                _publish_outage.recovered()
            except (RedisError, OSError) as exc:
                _publish_outage.failed(exc)
            finally:
                await client.aclose()


async def keep_listening(listen: Listen, what: str) -> None:
    """Run ``listen(connected)`` again and again, pausing longer after each failure, until cancelled.

    ``listen`` subscribes, calls ``connected()`` once it listens, and returns or raises when its connection is
    lost. The caller's ``connected`` wakes the worker, since notices sent while nobody listened are gone.

    Parameters
    ----------
    listen : async callable
        One listening session, given the callback to call once subscribed.
    what : str
        The channel's name in the log.
    """
    outage = _Outage(what)
    pause = RECONNECT_MIN_S

    def connected() -> None:
        nonlocal pause
        pause = RECONNECT_MIN_S
        outage.recovered()

    while True:
        try:
            await listen(connected)
            raise ConnectionError("the listening connection was closed")
        except Exception as exc:  # whatever broke the connection, the remedy is the same: connect again
            outage.failed(exc)
        await asyncio.sleep(pause)
        pause = min(pause * 2, RECONNECT_MAX_S)


async def listen_postgres(db: Database, wake: Wake, connected: Wake) -> None:
    """One session of ``LISTEN catalytic_webhooks`` on a dedicated connection; returns when it is lost.

    Parameters
    ----------
    db : Database
        A PostgreSQL database (its URL opens the dedicated connection).
    wake : callable
        Called for each notification, and once subscribed.
    connected : callable
        Called once subscribed.
    """
    if not isinstance(db, PostgresDatabase):
        raise TypeError("LISTEN needs a PostgreSQL database")
    async with asyncio.timeout(CONNECT_TIMEOUT_S * 5):
        conn = await db.dedicated_connection()
    try:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, lambda *_notice: wake())
        connected()
        wake()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LISTEN_CHECK_S):
                    await lost.wait()
            if not lost.is_set():
                # A connection whose server vanished without a word is only noticed by talking to it.
                async with asyncio.timeout(CONNECT_TIMEOUT_S * 5):
                    await conn.fetchval("SELECT 1")
    finally:
        if conn.is_closed():
            conn.terminate()
        else:
            await conn.close(timeout=CONNECT_TIMEOUT_S)


async def listen_redis(url: str, wake: Wake, connected: Wake) -> None:
    """One session of ``SUBSCRIBE catalytic_webhooks`` on Redis; returns or raises when it is lost.

    Parameters
    ----------
    url : str
        ``redis://...``.
    wake : callable
        Called for each message, and once subscribed.
    connected : callable
        Called once subscribed.
    """
    client = _redis_client(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(CHANNEL)
        connected()
        wake()
        async for _message in pubsub.listen():
            wake()
    finally:
        await pubsub.aclose()
        await client.aclose()
