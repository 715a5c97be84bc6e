"""MAX_LATTICES: exact under concurrent creates on both databases; on PostgreSQL creates far from the limit share
the creation lock instead of queueing on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from catalytic.service.errors import Unavailable
from catalytic.service.lattice_limit import LOCK_KEY, store_within_limit
from catalytic.storage import Connection, Database, open_database


async def _items(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM items"))


async def _create(db: Database, limit: int) -> int:
    async def write(conn: Connection) -> None:
        await conn.execute("INSERT INTO items (note) VALUES ('x')")
        await asyncio.sleep(0.01)  # other creates run meanwhile

    return await store_within_limit(db, limit, 3, _items, write)


async def _concurrent_creates(db: Database, limit: int, attempts: int) -> tuple[int, int]:
    await db.execute("CREATE TABLE items (id SERIAL PRIMARY KEY, note TEXT)" if db.dialect == "postgresql" else
                     "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)")  # fmt: skip
    outcomes = await asyncio.gather(*(_create(db, limit) for _ in range(attempts)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, Unavailable)]
    assert len(refused) + sum(isinstance(o, int) for o in outcomes) == attempts, outcomes
    assert all(o.headers["Retry-After"] == "3" for o in refused)
    return int(await db.fetchval("SELECT count(*) FROM items")), len(refused)


def test_the_limit_is_exact_under_concurrent_creates_on_sqlite(tmp_path: Path) -> None:
    async def run() -> tuple[int, int]:
        db = await open_database(f"sqlite:///{tmp_path / 'l.db'}")
        try:
            return await _concurrent_creates(db, 5, 12)
        finally:
            await db.close()

    assert asyncio.run(run()) == (5, 7)


@pytest.mark.postgres
def test_the_limit_is_exact_under_concurrent_creates_on_postgres(pg_url: str) -> None:
    async def run() -> tuple[int, int]:
        db = await open_database(pg_url, max_size=20)
        try:
            return await _concurrent_creates(db, 5, 12)  # 5 + max_connections is past the limit: exclusive
        finally:
            await db.close()

    assert asyncio.run(run()) == (5, 7)


@pytest.mark.postgres
def test_creates_far_from_the_limit_share_the_lock_and_near_it_wait_for_all(pg_url: str) -> None:
    async def hold(conn: asyncpg.Connection, statement: str, release: asyncio.Event, held: asyncio.Event) -> None:
        async with conn.transaction():
            await conn.execute(statement, LOCK_KEY)
            held.set()
            await release.wait()

    async def run() -> None:
        db = await open_database(pg_url)
        other = await asyncpg.connect(pg_url)
        try:
            await db.execute("CREATE TABLE items (id SERIAL PRIMARY KEY, note TEXT)")
            # Another create in flight (the shared lock held) does not hold this one up.
            release, held = asyncio.Event(), asyncio.Event()
            holder = asyncio.create_task(hold(other, "SELECT pg_advisory_xact_lock_shared($1)", release, held))
            await held.wait()
            assert await asyncio.wait_for(_create(db, 10_000), 5) == 1
            release.set()
            await holder
            # A create near the limit (the exclusive lock held) makes the others wait for its commit.
            release, held = asyncio.Event(), asyncio.Event()
            holder = asyncio.create_task(hold(other, "SELECT pg_advisory_xact_lock($1)", release, held))
            await held.wait()
            waiting = asyncio.create_task(_create(db, 10_000))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            release.set()
            await holder
            assert await asyncio.wait_for(waiting, 5) == 2
        finally:
            await other.close()
            await db.close()

    asyncio.run(run())
