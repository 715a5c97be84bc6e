"""Fixtures of the storage tests: the session's PostgreSQL server."""

from servers import pg_url, postgres_server  # noqa: F401  (fixtures)
