"""Apply the Alembic migrations of ``catalytic/storage/migrations`` to head."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
from pathlib import Path

from catalytic.storage.database import is_postgres_url, sqlite_file

__all__ = ["MIGRATIONS", "migrate", "sqlalchemy_url"]

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str | None, *, sqlite_path: str = "catalytic.db") -> str:
    """The SQLAlchemy URL Alembic connects with: asyncpg for PostgreSQL, the stdlib driver for SQLite.

    Examples
    --------
    >>> sqlalchemy_url("postgres://u@127.0.0.1:5432/db")
    'postgresql+asyncpg://u@127.0.0.1:5432/db'
    >>> sqlalchemy_url(None, sqlite_path="/tmp/x.db")
    'sqlite:////tmp/x.db'
    """
    if url and is_postgres_url(url):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    path = sqlite_file(url, sqlite_path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _upgrade(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Passed as an attribute, not a main option: ConfigParser would try to interpolate a '%' in a password.
    config.attributes["catalytic_url"] = url
    path = url.removeprefix("sqlite:///")
    if path == url or path == ":memory:":
        command.upgrade(config, "head")
        return
    # SQLite runs these DDL statements outside a transaction, so two processes starting at once could race. They
    # queue on a flock of the database file itself: SQLite's own locks are fcntl locks, which flock does not touch,
    # and an empty file is a valid new database.
    with open(path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(config, "head")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(url: str | None, *, sqlite_path: str = "catalytic.db") -> None:
    """Apply every pending migration (webhook tables, service tables) to the database at ``url``.

    Parameters
    ----------
    url : str or None
        ``postgresql://...`` / ``postgres://...``, ``sqlite:///path``, or None for the SQLite file ``sqlite_path``.
    sqlite_path : str
        The SQLite file used when ``url`` is empty.

    Raises
    ------
    ValueError
        When ``url`` has an unsupported scheme.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     migrate(None, sqlite_path=os.path.join(tmp, "catalytic.db"))
    """
    target = sqlalchemy_url(url, sqlite_path=sqlite_path)
    logger.info("applying migrations to %s", "PostgreSQL" if is_postgres_url(url) else "SQLite")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _upgrade(target)
        return
    # Called from async code (an app's start-up): the PostgreSQL path runs its own event loop, so it gets a thread.
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _upgrade(target)
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="catalytic-migrate")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
