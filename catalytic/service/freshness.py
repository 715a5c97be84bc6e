"""Skipping the per-request existence check while the embedded database has not changed.

Every request naming a stored lattice must not be answered for an id another process deleted. With
PostgreSQL the service asks the database each time. With the embedded SQLite file (WAL mode) there is a
cheaper exact signal: the WAL-index header at the start of the ``-shm`` file, which every committed write
transaction rewrites (its change counter, frame count and salts; see SQLite's documented WAL-index format).
An id verified while the header read X stays valid for as long as the header still reads X: no process has
committed anything since, so no delete either. The header is read before the database is asked, so a delete
racing with a check is either seen by the query or changes the header.

The ``-shm`` file is opened once and never closed while the service's database connection is open. POSIX
advisory locks belong to a process, and closing any descriptor of a file drops all of that process's locks on
it, SQLite's own included (SQLite's "How To Corrupt An SQLite Database File", section 2.2). Another process
closing its last connection would then take this one for gone and delete the ``-wal`` and ``-shm`` files under
its open connection, which would go on reading a stale copy of the database.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["WAL_INDEX_HEADER_BYTES", "ExistenceCache"]

WAL_INDEX_HEADER_BYTES = 96
"""The two copies of the 48-byte WAL-index header (the checkpoint information after them changes on reads too)."""
_MAX_VERIFIED = 100_000


class ExistenceCache:
    """Ids known to exist as of one database state, for the embedded database (no-op for PostgreSQL).

    Parameters
    ----------
    sqlite_path : str or None
        The SQLite file, or None when the database is PostgreSQL (then every check goes to the database).

    Examples
    --------
    >>> cache = ExistenceCache(None)
    >>> cache.token() is None, cache.known("lat_x", None)
    (True, False)
    """

    def __init__(self, sqlite_path: str | None) -> None:
        self._shm = None if sqlite_path is None or sqlite_path == ":memory:" else f"{sqlite_path}-shm"
        self._token: bytes | None = None
        self._verified: set[str] = set()
        self._fd: int | None = None
        self._map: mmap.mmap | None = None

    def token(self) -> bytes | None:
        """The current database state token, read now (None when there is no usable signal).

        The header is read from a mapping of the ``-shm`` file, as SQLite's own connections read it: no system
        call per request.
        """
        if self._shm is None:
            return None
        if self._map is None and not self._open_map(self._shm):
            return None
        assert self._map is not None
        return self._map[:WAL_INDEX_HEADER_BYTES]

    def _open_map(self, shm_path: str) -> bool:
        if self._fd is None:
            try:
                self._fd = os.open(shm_path, os.O_RDONLY)
            except OSError:
                return False  # no -shm yet: every check asks the database
        try:
            if os.fstat(self._fd).st_size < WAL_INDEX_HEADER_BYTES:
                return False
            self._map = mmap.mmap(self._fd, WAL_INDEX_HEADER_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Drop the mapping and the descriptor: only after this process's database connections are closed."""
        mapping, self._map = self._map, None
        if mapping is not None:
            mapping.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def known(self, lattice_id: str, token: bytes | None) -> bool:
        """Whether ``lattice_id`` was verified while the database was in state ``token``."""
        return token is not None and token == self._token and lattice_id in self._verified

    def remember(self, lattice_id: str, token: bytes | None) -> None:
        """Record that ``lattice_id`` existed in state ``token`` (a token read before the database was asked)."""
        if token is None:
            return
        if token != self._token or len(self._verified) >= _MAX_VERIFIED:
            self._token = token
            self._verified = set()
        self._verified.add(lattice_id)
