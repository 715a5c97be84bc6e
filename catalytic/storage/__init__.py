"""Shared storage: one async database interface (PostgreSQL via asyncpg, or embedded SQLite) and its migrations.

Every room that keeps state (the service, the webhook outbox and worker) uses :func:`open_database` and writes SQL
with ``$1, $2`` placeholders. :func:`migrate` applies the Alembic migrations in ``catalytic/storage/migrations``.
"""

from __future__ import annotations

from catalytic.storage.database import (
    Connection,
    Database,
    DatabaseUnavailable,
    is_postgres_url,
    open_database,
    sqlite_file,
)
from catalytic.storage.migrate import migrate
from catalytic.storage.partitions import ensure_month_partitions

__all__ = [
    "Connection",
    "Database",
    "DatabaseUnavailable",
    "ensure_month_partitions",
    "is_postgres_url",
    "migrate",
    "open_database",
    "sqlite_file",
]
