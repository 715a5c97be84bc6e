"""MAX_LATTICES held exactly, without making every create wait for every other one on PostgreSQL.

Counting the stored lattices under one lock that every create takes, the lock held to the commit, serialises the
creates of all replicas: at 100 connections on PostgreSQL each create waited a median 113 ms for that lock, and
the requests behind it for a pooled connection. Here a create takes the lock *shared* and counts. The count can
miss only the creates still in flight, each of which holds a connection of its own, so while the count plus the
server's ``max_connections`` stays under the limit the create goes ahead beside the others. Close to the limit
the create is redone with the lock exclusive: that waits for the shared holders to commit, and counts exactly.

Why that is exact: take the create with the latest count among those committed at some moment. Any other
committed create either had committed before that count (it was counted) or was in flight then, on a connection
(at most ``max_connections - 1`` of them); none started later, or its count would be later. An exclusive create
cannot overlap a shared one, so a shared create's count is never followed by an exclusive commit before its own.

On SQLite writes are serial anyway: the count inside the transaction is exact.

A caller that also needs a lock of its own for the same transaction (a tenant's quota) names it, and it is taken
in the same statement as this one: one round trip fewer per create. Every create takes the two in the same order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from catalytic.service.db import TENANT_LOCK_CLASS
from catalytic.service.errors import Unavailable
from catalytic.storage import Connection, Database

__all__ = ["store_within_limit"]

LOCK_KEY = 0x6C617474
"""The advisory lock of lattice creation (shared by ordinary creates, exclusive near the limit)."""

Count = Callable[[Connection], Awaitable[int]]
Write = Callable[[Connection], Awaitable[None]]


class _NearTheLimit(Exception):
    """Too close to the limit to count while other creates are in flight: redo the create under the exclusive lock."""


def _refuse(stored: int, limit: int, retry_after_s: int) -> None:
    if stored >= limit:
        raise Unavailable(f"MAX_LATTICES ({limit}) lattices are stored", retry_after_s)


async def store_within_limit(
    db: Database, limit: int, retry_after_s: int, count: Count, write: Write, *, tenant_lock: str | None = None
) -> int:
    """Run ``write`` in a transaction that adds one lattice, refused when ``limit`` are stored already.

    Parameters
    ----------
    db : Database
        The service's database.
    limit : int
        MAX_LATTICES.
    retry_after_s : int
        The ``Retry-After`` of the refusal.
    count : async callable
        ``count(conn)``: how many lattices are stored, read on the transaction's connection.
    write : async callable
        ``write(conn)``: stores the lattice (and its event) on the transaction's connection.
    tenant_lock : str, optional
        On PostgreSQL, also hold the advisory lock ``(TENANT_LOCK_CLASS, hashtext(tenant_lock))`` from before
        ``count`` runs to the commit.

    Returns
    -------
    int
        How many lattices are stored with this one (as the create saw it).

    Raises
    ------
    Unavailable
        503 when ``limit`` lattices are stored; nothing is written.

    Examples
    --------
    >>> async def create(db, record) -> int:  # doctest: +SKIP
    ...     write = lambda conn: insert_lattice(conn, record, {})
    ...     return await store_within_limit(db, 10_000, 5, count_lattices, write)
    """
    if db.dialect == "postgresql":
        extra = ", pg_advisory_xact_lock($2, hashtext($3))" if tenant_lock is not None else ""
        arguments = (TENANT_LOCK_CLASS, tenant_lock) if tenant_lock is not None else ()
        try:
            async with db.transaction() as conn:
                [row] = await conn.fetch(
                    "SELECT pg_advisory_xact_lock_shared($1), current_setting('max_connections')::int AS connections"
                    + extra,
                    LOCK_KEY,
                    *arguments,
                )
                stored = await count(conn)
                if stored + 1 + int(row["connections"]) > limit:
                    raise _NearTheLimit
                await write(conn)
                return stored + 1
        except _NearTheLimit:
            pass
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            await conn.execute("SELECT pg_advisory_xact_lock($1)" + extra, LOCK_KEY, *arguments)
        stored = await count(conn)
        _refuse(stored, limit, retry_after_s)
        await write(conn)
    return stored + 1
