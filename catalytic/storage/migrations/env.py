"""Alembic environment: connects with the URL that :func:`catalytic.storage.migrate` passes in."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

url: str = context.config.attributes.get("catalytic_url") or context.config.get_main_option("sqlalchemy.url") or ""


# Any fixed 64-bit key: concurrent `catalytic migrate` runs queue on it instead of racing to create tables.
_MIGRATION_LOCK_KEY = 0x0CA7A1_71C


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
        context.run_migrations()


async def _run_async() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif url.startswith("postgresql+asyncpg://"):
    asyncio.run(_run_async())
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()
