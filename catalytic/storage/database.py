"""One small async database interface over PostgreSQL (asyncpg) and an embedded SQLite file (sqlite3).

SQL is written once with asyncpg-style ``$1, $2`` placeholders; the SQLite side rewrites them to ``?1, ?2``.
Conventions shared by every table: timestamps are float epoch seconds, JSON payloads are TEXT, ids are TEXT.

::

    Database                      the handle an application keeps
    ├── PostgresDatabase          asyncpg pool; one pooled connection per call or per transaction
    └── SqliteDatabase            a writing connection (statements on the event loop, waits on its thread) and a
                                  reading one on a thread of its own; each write or transaction is exclusive
    Connection                    what ``Database.transaction()`` yields (execute, fetch, fetchrow, fetchval,
                                  after_commit)
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import logging
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

__all__ = ["Connection", "Database", "DatabaseUnavailable", "is_postgres_url", "open_database", "sqlite_file"]

logger = logging.getLogger(__name__)

Dialect = Literal["postgresql", "sqlite"]
AfterCommit = Callable[[], object]

_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite:///"
# Placeholders are rewritten outside quoted literals and identifiers only.
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\d+)")
_BUSY_TIMEOUT_MS = 30_000
_T = TypeVar("_T")
# A statement whose arguments carry more bytes than this, or an executemany of more rows, runs on the writer's
# thread: copying it into the file would hold the event loop for longer than a turn.
_INLINE_MAX_BYTES = 256 * 1024
_INLINE_MAX_ROWS = 1000
# How long a statement on the event loop waits for a write lock held by another process before it moves to the
# writer's thread (where the full busy timeout applies). Other processes hold the lock for a fraction of a
# millisecond per transaction, so a short wait nearly always wins it; the move costs a turn of the event loop,
# with this process's other writers queued behind it.
_INLINE_BUSY_MS = 2
# Commits between two passive checkpoints (each commit adds a few pages to the WAL; SQLite's own default is to
# checkpoint at 1000 pages, during the commit that crosses it).
_CHECKPOINT_EVERY = 200
_WRITING = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE|RETURNING)\b", re.IGNORECASE)
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


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


class DatabaseUnavailable(ConnectionError):
    """The database cannot be reached now: refused, lost or restarting. Nothing was committed by the failed call;
    the same call can be tried again later."""


def _connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` from asyncpg means the server could not be reached (not that a statement was wrong)."""
    import asyncpg

    lost = (
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.TooManyConnectionsError,
    )
    return isinstance(exc, lost) and not isinstance(exc, DatabaseUnavailable)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if _connection_lost(exc):
            raise DatabaseUnavailable(f"the database cannot be reached: {type(exc).__name__}: {exc}") from exc
        raise


class _AsyncpgQueries:
    """The query methods on an asyncpg connection or pool (``_queries``), rows returned as dicts; a lost or refused
    connection raises :class:`DatabaseUnavailable`."""

    _queries: Any

    async def execute(self, sql: str, *args: Any) -> str:
        with _reachable():
            return str(await self._queries.execute(sql, *args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        with _reachable():
            await self._queries.executemany(sql, list(args))

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with _reachable():
            return [dict(r) for r in await self._queries.fetch(sql, *args)]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with _reachable():
            row = await self._queries.fetchrow(sql, *args)
        return None if row is None else dict(row)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _reachable():
            return await self._queries.fetchval(sql, *args)


class _PgConnection(_AsyncpgQueries):
    """An asyncpg connection inside a transaction, returning dicts."""

    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._queries = conn
        self.committed: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self.committed.append(callback)


async def _keep_session(connection: Any) -> None:
    """Return a pooled connection as it is: no session state to reset (see :class:`PostgresDatabase`)."""


class PostgresDatabase(_AsyncpgQueries, Database):
    """PostgreSQL through an asyncpg pool.

    A pooled connection carries no session state between uses: advisory locks are transaction-level
    (``pg_advisory_xact_lock``), ``LISTEN`` runs on a :meth:`dedicated_connection`, and nothing sets a session
    variable or keeps a cursor past its transaction (``tests/storage/test_pg_pool.py`` holds the code to that).
    So a connection going back to the pool skips asyncpg's reset statement (``pg_advisory_unlock_all()``,
    ``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``): one round trip fewer for every query and transaction.
    asyncpg still rolls back a transaction left open and drops the connection's listeners on release.
    """

    dialect: Dialect = "postgresql"

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = self._queries = pool
        self._url = url

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        raised: BaseException | None = None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                scoped = _PgConnection(conn)
                try:
                    yield scoped
                except BaseException as exc:
                    raised = exc
                    raise
        except Exception as exc:
            # The body's own exception passes as it is; losing the server at BEGIN, COMMIT or ROLLBACK is an outage.
            if exc is not raised and _connection_lost(exc):
                raise DatabaseUnavailable(f"the database cannot be reached: {type(exc).__name__}: {exc}") from exc
            raise
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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _reads_only(sql: str) -> bool:
    return sql.lstrip()[:6].upper().startswith(("SELECT", "WITH")) and not _WRITING.search(sql)


def _large(args: Iterable[Any]) -> bool:
    size = 0
    for value in args:
        if isinstance(value, bytes | bytearray | memoryview | str):
            size += len(value)
    return size > _INLINE_MAX_BYTES


def _rows(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(_to_sqlite_sql(sql), tuple(args))
    try:
        return [dict(r) for r in cursor.fetchall()]
    finally:
        cursor.close()


def _rowcount(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> int:
    cursor = conn.execute(_to_sqlite_sql(sql), tuple(args))
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _many(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(_to_sqlite_sql(sql), rows).close()


def _patiently(fn: Callable[..., _T], conn: sqlite3.Connection, *args: Any) -> _T:
    """``fn(conn, *args)`` with the busy timeout on: off the event loop, a write lock held elsewhere is waited for."""
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    try:
        return fn(conn, *args)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {_INLINE_BUSY_MS}")


class _SqliteConnection:
    """The writing connection while this task holds the lock (the ``Connection`` a transaction yields)."""

    dialect: Dialect = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self.committed: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self.committed.append(callback)

    async def execute(self, sql: str, *args: Any) -> str:
        return _status(sql, await self._db._write(_rowcount, sql, args, large=_large(args)))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(a) for a in args]
        large = len(rows) > _INLINE_MAX_ROWS or _large(v for row in rows for v in row)
        await self._db._write(_many, sql, rows, large=large)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self._db._write(_rows, sql, args, large=_large(args))

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()), None)


class _Gate:
    """A lock for the writing connection that a task takes at once whenever it is free, waiters or not.

    ``asyncio.Lock`` hands a released lock to its first waiter, which runs one event-loop turn later; holders that
    never yield (nearly every transaction here) would then pass the lock on at one transaction per turn, and a
    queue of N writers would take N turns of a loop busy with everything else. Here a release wakes every waiter
    and the first to run takes the lock: a queue of short transactions drains in one turn.
    """

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[asyncio.Future[None]] = []

    async def __aenter__(self) -> None:
        while self._held:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class SqliteDatabase(Database):
    """An embedded SQLite file in WAL mode: one writing connection, one reading connection.

    Writes run one transaction at a time: a :class:`_Gate` within the process, a ``flock`` on a file beside the
    database across processes (:func:`_open_writers_file`), then ``BEGIN IMMEDIATE`` (the file's write lock).
    Their statements run on the event loop itself. Each takes microseconds, and a transaction that never yields
    holds the write lock for its own work only; run on a thread instead, every statement would also wait for a
    turn of a busy event loop while the lock is held, and under load those waits, not the writes, made the queue
    (bench/results/load.md). What could wait goes to the writer's own thread: the wait for another process to let
    the lock go, a write lock held by a process that does not queue on the file (SQLite's busy timeout applies
    there only), statements carrying large arguments, a commit that syncs the log (``synchronous`` FULL or EXTRA),
    and checkpoints, which are taken off the commit path (``wal_autocheckpoint`` off, a passive checkpoint every
    ``_CHECKPOINT_EVERY`` commits).

    Reads outside a transaction go to the reading connection on a thread of its own: in WAL mode they see the last
    commit, and they neither wait for writes nor hold them up. An in-memory database has one connection for both.
    """

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection | None,
        writers_file: int | None = None,
        *,
        commit_syncs: bool = False,
    ) -> None:
        self._writer = writer
        self._commit_syncs = commit_syncs
        self._reader = reader
        self._writers_file = writers_file
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="catalytic-sqlite-writer")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="catalytic-sqlite-reader")
        self._lock = _Gate()
        # The statement last handed to the writer's thread. Its own future, not the event loop's wrapper: the
        # wrapper is cancelled with the task that awaits it, while the statement itself runs on to its end.
        self._pending: Future[Any] | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[Any] | None = None

    def _check_not_nested(self) -> None:
        owner = _sqlite_owner.get()
        if owner is not None and owner.active and owner.db is self:
            raise RuntimeError("inside Database.transaction(), run statements on the connection it yields")

    async def _write(self, fn: Callable[..., _T], *args: Any, large: bool = False) -> _T:
        """``fn(writer, *args)`` on the event loop; on the writer's thread when it is large or must wait for a lock."""
        if not large:
            try:
                return fn(self._writer, *args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
        self._pending = self._writer_thread.submit(_patiently, fn, self._writer, *args)
        return cast(_T, await asyncio.wrap_future(self._pending))

    async def _take_writers_file(self) -> None:
        """Take the lock that queues the writing processes of this file (see :func:`_open_writers_file`).

        It is only ever taken on the event loop, by the task about to write. Taken on a thread, it would be held
        for the turn of the loop that resumes the task, and two busy processes would hand it to each other at one
        transaction per turn. A thread only waits for the lock to be let go, then the task tries again.
        """
        fd = self._writers_file
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                await loop.run_in_executor(self._writer_thread, _wait_until_free, fd)

    def _release_writers_file(self) -> None:
        if self._writers_file is not None:
            fcntl.flock(self._writers_file, fcntl.LOCK_UN)

    async def _rollback(self) -> None:
        pending = self._pending
        if pending is not None and not pending.done():
            # Cancelled while a statement runs on the writer's thread (BEGIN waiting for the lock, a large
            # statement, a syncing COMMIT): roll back after it, on the same thread, if it left a transaction open.
            rollback = asyncio.get_running_loop().run_in_executor(self._writer_thread, _rollback_open, self._writer)
            await asyncio.shield(rollback)
        else:
            _rollback_open(self._writer)

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[_SqliteConnection]:
        self._check_not_nested()
        async with self._lock:
            owner = _Owner(self)
            token = _sqlite_owner.set(owner)
            self._pending = None
            try:
                await self._take_writers_file()
                try:
                    scoped = _SqliteConnection(self)
                    try:
                        # BEGIN IMMEDIATE takes the file's write lock up front: another process waits rather than
                        # failing half-way through, which makes every transaction a single-writer section.
                        await self._write(_rowcount, "BEGIN IMMEDIATE", ())
                        yield scoped
                        # A commit that syncs the WAL to disk waits for the disk: that wait goes to the thread.
                        await self._write(_rowcount, "COMMIT", (), large=self._commit_syncs)
                    except BaseException:
                        await self._rollback()
                        raise
                finally:
                    self._release_writers_file()
            finally:
                owner.active = False
                _sqlite_owner.reset(token)
        self._after_write_commit()

    def _after_write_commit(self) -> None:
        self._commits += 1
        if self._reader is None or self._commits < _CHECKPOINT_EVERY:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._commits = 0
        # PASSIVE never waits for readers or writers; the loop does not wait for it either.
        self._checkpoint = asyncio.get_running_loop().run_in_executor(
            self._reader_thread, _rows, self._reader, "PRAGMA wal_checkpoint(PASSIVE)", ()
        )
        self._checkpoint.add_done_callback(_log_failure)

    async def _read(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        if self._reader is None or not _reads_only(sql):
            async with self._exclusive() as conn:
                return await conn.fetch(sql, *args)
        self._check_not_nested()
        return await asyncio.get_running_loop().run_in_executor(self._reader_thread, _rows, self._reader, sql, args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self._exclusive() as conn:
            return await conn.execute(sql, *args)

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        async with self._exclusive() as conn:
            await conn.executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return await self._read(sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self._read(sql, args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self._read(sql, args)
        return next(iter(rows[0].values()), None) if rows else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._exclusive() as scoped:
            yield scoped
        _run_after_commit(scoped.committed)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._checkpoint is not None:
                await asyncio.gather(self._checkpoint, return_exceptions=True)
            if self._reader is not None:
                await loop.run_in_executor(self._reader_thread, self._reader.close)
            await loop.run_in_executor(self._writer_thread, self._writer.close)
            if self._writers_file is not None:
                os.close(self._writers_file)
                self._writers_file = None
        self._reader_thread.shutdown(wait=False)
        self._writer_thread.shutdown(wait=False)


def _rollback_open(conn: sqlite3.Connection) -> None:
    """Roll back the transaction ``conn`` has open, if any (a BEGIN that failed or a COMMIT that ran left none)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("SQLite checkpoint failed: %s", future.exception())


def _open_writers_file(path: str) -> int:
    """The file beside the database whose ``flock`` queues the processes that write to it.

    SQLite's own wait for a write lock held by another process polls, sleeping 1, 2, 5, 10 ms and longer between
    tries, and a poller keeps losing to a process that writes often; a waiter on ``flock`` sleeps in the kernel
    and wakes when the lock is let go. (The database file itself is not used: closing any descriptor of it would
    drop SQLite's own POSIX locks.)
    """
    return os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _wait_until_free(fd: int) -> None:
    """Block until no other process holds ``fd``'s ``flock``; this thread holds it for an instant only."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    fcntl.flock(fd, fcntl.LOCK_UN)


def _sqlite_connect(path: str, synchronous: str) -> tuple[sqlite3.Connection, sqlite3.Connection | None]:
    """The writing and (for a file) reading connections, both in autocommit mode: transactions are explicit."""

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    writer = connect()
    if path == ":memory:":
        writer.execute(f"PRAGMA busy_timeout = {_INLINE_BUSY_MS}")
        return writer, None
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute(f"PRAGMA synchronous = {synchronous}")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(f"PRAGMA busy_timeout = {_INLINE_BUSY_MS}")
    return writer, connect()


async def open_database(
    url: str | None,
    *,
    sqlite_path: str = "catalytic.db",
    min_size: int = 1,
    max_size: int = 10,
    sqlite_synchronous: str = "FULL",
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
    sqlite_synchronous : str
        SQLite's ``PRAGMA synchronous`` for a file: ``FULL`` syncs the WAL at every commit; ``NORMAL`` only at
        checkpoints, so a power cut (not a crashed process) can lose the last commits, never consistency.

    Returns
    -------
    Database
        An open handle; call :meth:`Database.close` when done.

    Raises
    ------
    ValueError
        When ``url`` has an unsupported scheme, or ``sqlite_synchronous`` is not a SQLite mode.

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

        pool = await asyncpg.create_pool(str(url), min_size=min_size, max_size=max_size, reset=_keep_session)
        return PostgresDatabase(pool, str(url))
    if sqlite_synchronous.upper() not in SYNCHRONOUS_MODES:
        raise ValueError(f"sqlite_synchronous: {sqlite_synchronous!r} (allowed: {', '.join(SYNCHRONOUS_MODES)})")
    path = sqlite_file(url, sqlite_path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer, reader = await asyncio.to_thread(_sqlite_connect, path, sqlite_synchronous.upper())
    mode = sqlite_synchronous.upper()
    writers_file = None if reader is None else _open_writers_file(path)
    # In WAL mode FULL and EXTRA sync the log at every commit; NORMAL and OFF leave that to the checkpoints.
    return SqliteDatabase(writer, reader, writers_file, commit_syncs=reader is not None and mode in ("FULL", "EXTRA"))
