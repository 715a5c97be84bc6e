"""The shared storage layer on SQLite and on a real PostgreSQL: statements, transactions, migrations, partitions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from catalytic.storage import Database, ensure_month_partitions, migrate, open_database, sqlite_file
from catalytic.storage.database import _to_sqlite_sql
from catalytic.storage.migrate import sqlalchemy_url
from catalytic.storage.partitions import month_bounds


def test_placeholders_are_rewritten_outside_literals() -> None:
    sql = "SELECT $1, '$2', \"$3\", $10 FROM t WHERE a = $2"
    assert _to_sqlite_sql(sql) == "SELECT ?1, '$2', \"$3\", ?10 FROM t WHERE a = ?2"


def test_urls() -> None:
    assert sqlite_file(None, "a.db") == "a.db"
    assert sqlite_file("sqlite:///x/y.db", "a.db") == "x/y.db"
    with pytest.raises(ValueError, match="DATABASE_URL"):
        sqlite_file("mysql://x", "a.db")
    assert sqlalchemy_url("postgresql://u:p%40ss@h:1/d") == "postgresql+asyncpg://u:p%40ss@h:1/d"


def test_month_bounds_cross_the_year() -> None:
    start, end = month_bounds(2026, 12)
    assert end - start == 31 * 86400
    assert month_bounds(2027, 1)[0] == end


async def _exercise(db: Database) -> None:
    assert await db.ping()
    assert await db.fetchval("SELECT $1 + 2", 40) == 42
    status = await db.execute(
        "INSERT INTO events (id, type, payload, created_at) VALUES ($1, $2, $3, $4)", "e1", "job.succeeded", "{}", 1.5
    )
    assert status == "INSERT 0 1"
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO events (id, type, payload, created_at) VALUES ($1, $2, $3, $4)", "e2", "t", "{}", 2.0
        )
    with pytest.raises(KeyError):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO events (id, type, payload, created_at) VALUES ($1, $2, $3, $4)", "e3", "t", "{}", 3.0
            )
            raise KeyError("rolled back")
    rows = await db.fetch("SELECT id, created_at FROM events ORDER BY id")
    assert rows == [{"id": "e1", "created_at": 1.5}, {"id": "e2", "created_at": 2.0}]
    assert await db.fetchrow("SELECT id FROM events WHERE id = $1", "nope") is None
    await db.executemany("UPDATE events SET type = $2 WHERE id = $1", [("e1", "a"), ("e2", "b")])
    assert [r["type"] for r in await db.fetch("SELECT type FROM events ORDER BY id")] == ["a", "b"]
    assert await db.execute("DELETE FROM events WHERE created_at < $1", 10.0) == "DELETE 2"


def test_sqlite_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "catalytic.db")
    migrate(None, sqlite_path=path)
    migrate(f"sqlite:///{path}")  # idempotent

    async def run() -> None:
        db = await open_database(None, sqlite_path=path)
        try:
            assert db.dialect == "sqlite"
            await _exercise(db)
            assert await db.fetchval("SELECT version_num FROM alembic_version") is not None
        finally:
            await db.close()

    asyncio.run(run())


def test_sqlite_nested_call_inside_transaction_fails_loudly(tmp_path: Path) -> None:
    async def run() -> None:
        db = await open_database(None, sqlite_path=str(tmp_path / "n.db"))
        try:
            async with db.transaction():
                with pytest.raises(RuntimeError, match="connection it yields"):
                    await db.fetchval("SELECT 1")
            assert await db.fetchval("SELECT 1") == 1
        finally:
            await db.close()

    asyncio.run(run())


def test_migrate_from_a_running_event_loop(tmp_path: Path) -> None:
    path = str(tmp_path / "loop.db")

    async def run() -> None:
        migrate(None, sqlite_path=path)
        db = await open_database(None, sqlite_path=path)
        try:
            assert await db.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
        finally:
            await db.close()

    asyncio.run(run())


@pytest.mark.postgres
def test_postgres_round_trip_and_partitions(pg_url: str) -> None:
    migrate(pg_url)
    migrate(pg_url)

    async def run() -> None:
        db = await open_database(pg_url)
        try:
            assert db.dialect == "postgresql"
            await _exercise(db)
            partitions = await db.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1",
                "deliveries",
            )
            names = {r["relname"] for r in partitions}
            assert "deliveries_default" in names
            assert len(names) >= 5
            # A month far ahead gets its partition on demand, and asking twice changes nothing.
            assert await ensure_month_partitions(db, month_bounds(2031, 5)[0] + 10, months_ahead=0) == 0
            assert await ensure_month_partitions(db, month_bounds(2031, 5)[0] + 10, months_ahead=0) == 0
            assert await db.fetchval("SELECT to_regclass($1) IS NOT NULL", "deliveries_y2031m05")
            indexes = {
                r["indexname"]
                for r in await db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = $1", "deliveries")
            }
            assert {"deliveries_endpoint_url_idx", "deliveries_created_at_idx", "deliveries_event_type_idx"} <= indexes
        finally:
            await db.close()

    asyncio.run(run())


@pytest.mark.postgres
def test_postgres_restart_is_survived_by_the_pool(postgres_server: object, pg_url: str) -> None:
    from servers import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    if not postgres_server.managed:
        pytest.skip("DATABASE_URL points at an external server, which tests cannot restart")

    async def run() -> None:
        db = await open_database(pg_url)
        try:
            assert await db.ping()
            postgres_server.restart()
            # The pooled connection died with the server: the first call may fail, later ones reconnect.
            for _ in range(20):
                if await db.ping():
                    break
                await asyncio.sleep(0.1)
            assert await db.fetchval("SELECT 7") == 7
        finally:
            await db.close()

    asyncio.run(run())


@pytest.mark.redis
def test_throwaway_redis_server_stops_and_restarts(redis_server: object) -> None:
    import redis
    from servers import RedisServer

    assert isinstance(redis_server, RedisServer)
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping()
        if not redis_server.managed:
            pytest.skip("REDIS_URL points at an external server, which tests cannot restart")
        redis_server.restart()
        assert client.ping()
        redis_server.stop()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        redis_server.start()
        assert client.ping()
    finally:
        client.close()
