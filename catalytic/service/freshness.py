"""Skipping the per-request existence check while the embedded database has not changed.

Every request naming a stored lattice must not be answered for an id another process deleted. With
PostgreSQL the service asks the database each time. With the embedded SQLite file (WAL mode) there is a
cheaper exact signal: the WAL-index header at the start of the ``-shm`` file, which every committed write
transaction rewrites (its change counter, frame count and salts; see SQLite's documented WAL-index format).
An id verified while the header read X stays valid for as long as the header still reads X: no process has
committed anything since, so no delete either. The header is read before the database is asked, so a delete
racing with a check is either seen by the query or changes the header.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["WAL_INDEX_HEADER_BYTES", "ExistenceCache", "wal_index_header"]

WAL_INDEX_HEADER_BYTES = 96
"""The two copies of the 48-byte WAL-index header (the checkpoint information after them changes on reads too)."""
_MAX_VERIFIED = 100_000


def wal_index_header(shm_path: str) -> bytes | None:
    """The WAL-index header of a SQLite database in WAL mode, or None when it cannot be read."""
    try:
        fd = os.open(shm_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        header = os.pread(fd, WAL_INDEX_HEADER_BYTES, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return header if len(header) == WAL_INDEX_HEADER_BYTES else None


def _map_header(shm_path: str) -> mmap.mmap | None:
    """A read-only mapping of the WAL-index header, or None when the file is missing or not yet initialised."""
    try:
        fd = os.open(shm_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size < WAL_INDEX_HEADER_BYTES:
            return None
        return mmap.mmap(fd, WAL_INDEX_HEADER_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
    except OSError:
        return None
    finally:
        os.close(fd)


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
        self._map: mmap.mmap | None = None

    def token(self) -> bytes | None:
        """The current database state token, read now (None when there is no usable signal).

        The ``-shm`` file is mapped once and the header read from memory, as SQLite's own connections read it:
        no system call per request. The mapping stays valid because the service keeps its own connection to
        the database open, and SQLite removes the ``-shm`` file only when the last connection closes.
        """
        if self._shm is None:
            return None
        if self._map is None:
            self._map = _map_header(self._shm)
            if self._map is None:
                return wal_index_header(self._shm)
        return self._map[:WAL_INDEX_HEADER_BYTES]

    def close(self) -> None:
        """Drop the mapping (before the database connection closes)."""
        mapping, self._map = self._map, None
        if mapping is not None:
            mapping.close()

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
