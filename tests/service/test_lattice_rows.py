"""The stored lattice rows on both databases: the combined counts, and a delete that takes the lattice's arrays
with it and answers how many lattices remain (one statement on PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from catalytic.service import db as queries
from catalytic.service.db import TENANT_LOCK_CLASS
from catalytic.service.lattice_limit import store_within_limit
from catalytic.storage import Connection, Database, open_database
from catalytic.storage.migrate import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rows.db'}"
    return str(request.getfixturevalue("pg_url"))


def _record(lattice_id: str, tenant: str) -> dict[str, object]:
    return {
        "id": lattice_id, "spec": {"shape": [2, 2]}, "vertices": 4, "open_vertices": 4, "edges": 4,
        "memory": {}, "created_at": 1.0, "tenant": tenant,
    }  # fmt: skip


async def _arrays_of(db: Database, owner: str) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM service_arrays WHERE owner_id = $1", owner))


def test_delete_takes_the_arrays_and_answers_what_remains(database_url: str) -> None:
    async def run() -> None:
        migrate(database_url if database_url.startswith("postgres") else None,
                sqlite_path=database_url.removeprefix("sqlite:///"))  # fmt: skip
        db = await open_database(database_url)
        try:
            async with db.transaction() as conn:
                for lattice_id, tenant in (("lat_a", "acme"), ("lat_b", "acme"), ("lat_c", "globex")):
                    await queries.insert_lattice(conn, _record(lattice_id, tenant), {"weights": b"\x01\x02"})
            assert await queries.count_lattices_of(db, "acme") == (3, 2)
            assert await queries.count_lattices_of(db, "nobody") == (3, 0)
            async with db.transaction() as conn:
                assert await queries.delete_lattice(conn, "lat_a", "globex") is None  # another tenant's
                assert await queries.delete_lattice(conn, "lat_a", "acme") == 2
                assert await queries.delete_lattice(conn, "lat_a", "acme") is None  # gone already
            assert await _arrays_of(db, "lat_a") == 0 and await _arrays_of(db, "lat_b") == 1
            assert await queries.count_lattices_of(db, "acme") == (2, 1)
        finally:
            await db.close()

    asyncio.run(run())


@pytest.mark.postgres
def test_a_create_holds_the_tenant_lock_it_names(pg_url: str) -> None:
    """The tenant's lock is taken with the creation lock, before the count: a create waits while another
    transaction holds it, and goes ahead once it is released."""

    async def run() -> None:
        db = await open_database(pg_url)
        other = await asyncpg.connect(pg_url)
        try:
            await db.execute("CREATE TABLE items (id SERIAL PRIMARY KEY, note TEXT)")

            async def count(conn: Connection) -> int:
                return int(await conn.fetchval("SELECT count(*) FROM items"))

            async def write(conn: Connection) -> None:
                await conn.execute("INSERT INTO items (note) VALUES ('x')")

            create = store_within_limit(db, 10_000, 3, count, write, tenant_lock="max_lattices/acme")
            async with other.transaction():
                await other.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", TENANT_LOCK_CLASS,
                                    "max_lattices/acme")  # fmt: skip
                pending = asyncio.ensure_future(create)
                done, _ = await asyncio.wait([pending], timeout=0.5)
                assert not done and await db.fetchval("SELECT count(*) FROM items") == 0
            assert await asyncio.wait_for(pending, 5) == 1
            # Another tenant's lock does not hold a create up.
            async with other.transaction():
                await other.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", TENANT_LOCK_CLASS,
                                    "max_lattices/globex")  # fmt: skip
                created = store_within_limit(db, 10_000, 3, count, write, tenant_lock="max_lattices/acme")
                assert await asyncio.wait_for(created, 5) == 2
        finally:
            await other.close()
            await db.close()

    asyncio.run(run())
