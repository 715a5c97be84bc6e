"""One small async database interface over PostgreSQL (asyncpg) and an embedded SQLite file (aiosqlite).

SQL is written once with asyncpg-style ``$1, $2`` placeholders; the SQLite side rewrites them to ``?1, ?2``.
Conventions shared by every table: timestamps are float epoch seconds, JSON payloads are TEXT, ids are TEXT.

::

    Database                      the handle an application keeps
    ├── PostgresDatabase          asyncpg pool; one pooled connection per call or per transaction
    └── SqliteDatabase            one aiosqlite connection; a lock makes each call or transaction exclusive
    Connection                    what ``Database.transaction()`` yields (execute, fetch, fetchrow, fetchval,
                                  after_commit)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = ["Connection", "Database", "is_postgres_url", "open_database", "sqlite_file"]

logger = logging.getLogger(__name__)

Dialect = Literal["postgresql", "sqlite"]
AfterCommit = Callable[[], object]

_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite:///"
# Placeholders are rewritten outside quoted literals and identifiers only.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\d+)")
_BUSY_TIMEOUT_MS = 30_000


class Connection(Protocol):
    """The statements available on a database handle and inside a transaction."""

    @property
    def dialect(self) -> Dialect: ...

    def after_commit(self, callback: AfterCommit) -> None: ...

    async def execute(self, sql: str, *args: Any) -> str: ...

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


def is_postgres_url(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL server (``postgresql://`` or ``postgres://``).

    Examples
    --------
    >>> is_postgres_url("postgres://u@127.0.0.1/db"), is_postgres_url("sqlite:///x.db"), is_postgres_url(None)
    (True, False, False)
    """
    return bool(url) and str(url).startswith(_POSTGRES_PREFIXES)


def sqlite_file(url: str | None, sqlite_path: str) -> str:
    """The SQLite file a non-PostgreSQL ``url`` points at: ``sqlite:///path``, or ``sqlite_path`` when url is empty.

    Examples
    --------
    >>> sqlite_file("sqlite:///data/c.db", "catalytic.db"), sqlite_file(None, "catalytic.db")
    ('data/c.db', 'catalytic.db')

    Raises
    ------
    ValueError
        When ``url`` is neither empty, PostgreSQL nor ``sqlite:///``.
    """
    if not url:
        return sqlite_path
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX) :]
        if not path:
            raise ValueError("DATABASE_URL: sqlite:/// needs a file path (allowed: sqlite:///path/to/file.db)")
        return path
    raise ValueError(
        "DATABASE_URL: unsupported scheme (allowed: postgresql://..., postgres://..., sqlite:///path, or unset)"
    )


def _run_after_commit(callbacks: Iterable[AfterCommit]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # the transaction is committed already: a failing follower must not undo its success
            logger.exception("an after-commit callback failed")


def _to_sqlite_sql(sql: str) -> str:
    return _TOKEN.sub(lambda m: f"?{m.group(1)}" if m.group(1) else m.group(0), sql)


def _status(sql: str, rowcount: int) -> str:
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    count = max(rowcount, 0)
    return f"INSERT 0 {count}" if verb == "INSERT" else f"{verb} {count}"


class Database(ABC):
    """An open database: PostgreSQL through an asyncpg pool, or an embedded SQLite file.

    Use :func:`open_database` to get one. Every method takes SQL with ``$1, $2`` placeholders.
    """

    dialect: Dialect

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement; returns its status, e.g. ``"UPDATE 3"``."""

    @abstractmethod
    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per argument tuple, all in one transaction."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run a query; returns every row as a dict."""

    @abstractmethod
    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        """Run a query; returns its first row, or None."""

    @abstractmethod
    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run a query; returns the first column of its first row, or None."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """An async context manager yielding a :class:`Connection`; commits on success, rolls back on error."""

    def after_commit(self, callback: AfterCommit) -> None:
        """Call ``callback()`` once what was written is committed: here at once, since each call commits alone.

        Inside :meth:`transaction`, the yielded connection's ``after_commit`` defers the call to the commit and
        drops it on a rollback.
        """
        _run_after_commit([callback])

    async def ping(self) -> bool:
        """Whether the database answers ``SELECT 1`` now."""
        try:
            return await self.fetchval("SELECT 1") == 1
        except Exception as exc:  # any driver or network failure means "not reachable", which is the answer
            logger.warning("database ping failed: %s", type(exc).__name__)
            return False

    @abstractmethod
    async def close(self) -> None:
        """Close every connection."""


class _AsyncpgQueries:
    """The query methods on an asyncpg connection or pool (``_queries``), rows returned as dicts."""

    _queries: Any

    async def execute(self, sql: str, *args: Any) -> str:
        return str(await self._queries.execute(sql, *args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._queries.executemany(sql, list(args))

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._queries.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = await self._queries.fetchrow(sql, *args)
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._queries.fetchval(sql, *args)


class _PgConnection(_AsyncpgQueries):
    """An asyncpg connection inside a transaction, returning dicts."""

    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._queries = conn
        self.committed: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self.committed.append(callback)


class PostgresDatabase(_AsyncpgQueries, Database):
    """PostgreSQL through an asyncpg pool."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = self._queries = pool
        self._url = url

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._pool.acquire() as conn, conn.transaction():
            scoped = _PgConnection(conn)
            yield scoped
        _run_after_commit(scoped.committed)

    async def dedicated_connection(self) -> Any:
        """A new asyncpg connection outside the pool, e.g. to ``LISTEN`` on; the caller closes it.

        Pooled connections forget their listeners whenever they go back to the pool, so a listener needs its own.
        """
        import asyncpg

        return await asyncpg.connect(self._url)

    async def close(self) -> None:
        await self._pool.close()


class _Owner:
    """Marks the task context that holds the SQLite lock, so a nested call fails loudly instead of deadlocking."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.active = True


_sqlite_owner: contextvars.ContextVar[_Owner | None] = contextvars.ContextVar("catalytic_sqlite_owner", default=None)


class _SqliteConnection:
    """The single aiosqlite connection while this task holds the lock."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.committed: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self.committed.append(callback)

    async def execute(self, sql: str, *args: Any) -> str:
        cursor = await self._conn.execute(_to_sqlite_sql(sql), args)
        try:
            return _status(sql, cursor.rowcount)
        finally:
            await cursor.close()

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(_to_sqlite_sql(sql), [tuple(a) for a in args])

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        cursor = await self._conn.execute(_to_sqlite_sql(sql), args)
        try:
            return [dict(r) for r in await cursor.fetchall()]
        finally:
            await cursor.close()

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()), None)


class SqliteDatabase(Database):
    """An embedded SQLite file (WAL mode); one connection, calls and transactions serialised by a lock."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._wrapped = _SqliteConnection(conn)
        self._lock = asyncio.Lock()

    def _check_not_nested(self) -> None:
        owner = _sqlite_owner.get()
        if owner is not None and owner.active and owner.db is self:
            raise RuntimeError("inside Database.transaction(), run statements on the connection it yields")

    @asynccontextmanager
    async def _exclusive(self, immediate: bool) -> AsyncIterator[_SqliteConnection]:
        self._check_not_nested()
        async with self._lock:
            owner = _Owner(self)
            token = _sqlite_owner.set(owner)
            try:
                # BEGIN IMMEDIATE takes the file's write lock up front: a second process waits rather than failing
                # half-way through, which makes every transaction a single-writer section.
                await self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield self._wrapped
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")
            finally:
                owner.active = False
                _sqlite_owner.reset(token)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self._exclusive(immediate=True) as conn:
            return await conn.execute(sql, *args)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        async with self._exclusive(immediate=True) as conn:
            await conn.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self._exclusive(immediate=False) as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        async with self._exclusive(immediate=False) as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._exclusive(immediate=False) as conn:
            return await conn.fetchval(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._exclusive(immediate=True):
            scoped = _SqliteConnection(self._conn)
            yield scoped
        _run_after_commit(scoped.committed)

    async def close(self) -> None:
        await self._conn.close()


async def open_database(
    url: str | None, *, sqlite_path: str = "catalytic.db", min_size: int = 1, max_size: int = 10
) -> Database:
    """Open PostgreSQL (asyncpg pool) or an embedded SQLite file.

    Parameters
    ----------
    url : str or None
        ``postgresql://...`` / ``postgres://...`` for PostgreSQL; ``sqlite:///path`` or None for SQLite.
    sqlite_path : str
        The SQLite file used when ``url`` is empty.
    min_size, max_size : int
        PostgreSQL pool bounds.

    Returns
    -------
    Database
        An open handle; call :meth:`Database.close` when done.

    Raises
    ------
    ValueError
        When ``url`` has an unsupported scheme.

    Examples
    --------
    >>> import asyncio
    >>> async def demo() -> int:
    ...     db = await open_database("sqlite:///:memory:")
    ...     try:
    ...         return await db.fetchval("SELECT $1 + 1", 41)
    ...     finally:
    ...         await db.close()
    >>> asyncio.run(demo())
    42
    """
    if is_postgres_url(url):
        import asyncpg

        pool = await asyncpg.create_pool(str(url), min_size=min_size, max_size=max_size)
        return PostgresDatabase(pool, str(url))
    import aiosqlite

    path = sqlite_file(url, sqlite_path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the driver never opens transactions on its own; _exclusive() does, explicitly.
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    if path != ":memory:":
        await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA foreign_keys = ON")
    return SqliteDatabase(conn)
