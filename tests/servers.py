"""Throwaway PostgreSQL and Redis servers for tests, started from the installed binaries, plus pytest fixtures.

The session fixtures ``postgres_server`` and ``redis_server`` use ``DATABASE_URL`` / ``REDIS_URL`` when they are
set (such servers cannot be stopped or restarted from a test), and otherwise start a private server on a free
loopback port with its files under a temporary directory. ``pg_url`` gives each test a fresh, empty database on
the shared server and drops it afterwards.

Register the fixtures in a ``conftest.py`` with ``from servers import pg_url, postgres_server, redis_server``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = [
    "PostgresServer",
    "RedisServer",
    "free_port",
    "pg_url",
    "postgres_server",
    "redis_server",
    "start_postgres",
    "start_redis",
    "stop_process",
]

_START_TIMEOUT_S = 30.0
_PG_PACKAGE_HINT = "install the Debian package 'postgresql' (it provides /usr/lib/postgresql/<version>/bin/initdb)"
_REDIS_PACKAGE_HINT = "install the Debian package 'redis-server'"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """End a server process this test started: SIGTERM, then SIGKILL when it has not exited after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_port(port: int, timeout: float = _START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"no server answered on 127.0.0.1:{port} within {timeout:.0f} s")


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(f"PostgreSQL binary {name!r} not found: {_PG_PACKAGE_HINT}")


class PostgresServer:
    """A PostgreSQL server: either started here from the binaries, or an external one named by a URL."""

    def __init__(self, url: str, *, data_dir: Path | None = None, root: Path | None = None, port: int = 0) -> None:
        self.url = url
        self.data_dir = data_dir
        self.port = port
        self._root = root
        self._as_postgres = os.geteuid() == 0

    @property
    def managed(self) -> bool:
        """Whether this server was started here (so it can be stopped and restarted)."""
        return self.data_dir is not None

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr or result.stdout}")

    def _require_managed(self) -> Path:
        if self.data_dir is None:
            raise RuntimeError("an external PostgreSQL (DATABASE_URL) cannot be stopped or restarted by tests")
        return self.data_dir

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        data = self._require_managed()
        assert self._root is not None
        options = f"-p {self.port} -k {self._root / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        self._run(
            _pg_bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l", str(self._root / "log"), "-o", options
        )
        _wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut)."""
        data = self._require_managed()
        if (data / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(data))

    def restart(self) -> None:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its files; an external server is left alone."""
        if not self.managed:
            return
        try:
            self.stop()
        finally:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)


def start_postgres(tmp_dir: str | os.PathLike[str]) -> PostgresServer:
    """Create a cluster and start PostgreSQL on a free loopback port (superuser ``postgres``, trust auth).

    As root the server runs as the ``postgres`` system user; its files then live in a world-traversable directory
    beside ``tmp_dir`` (pytest's own temporary root is private to root).
    """
    initdb = _pg_bin("initdb")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        root = Path(tempfile.mkdtemp(prefix="catalytic-pg-"))
        root.chmod(0o755)
    else:
        root = Path(tempfile.mkdtemp(prefix="pg-", dir=base))
    data = root / "data"
    (root / "sock").mkdir()
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "sock", "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    server = PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", data_dir=data, root=root, port=port)
    try:
        server._run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


class RedisServer:
    """A Redis server: either started here from ``redis-server``, or an external one named by a URL."""

    def __init__(self, url: str, *, root: Path | None = None, port: int = 0) -> None:
        self.url = url
        self.port = port
        self._root = root
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def managed(self) -> bool:
        """Whether this server was started here (so it can be stopped and restarted)."""
        return self._root is not None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self._root is None:
            raise RuntimeError("an external Redis (REDIS_URL) cannot be started or restarted by tests")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(f"redis-server not found: {_REDIS_PACKAGE_HINT}")
        command = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", str(self._root / "redis.sock"),
            "--dir", str(self._root), "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]  # fmt: skip
        log = open(self._root / "log", "ab")  # noqa: SIM115 - handed to the child, closed right after the fork
        try:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        _wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server by its process id."""
        if self._root is None:
            raise RuntimeError("an external Redis (REDIS_URL) cannot be stopped by tests")
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its files; an external server is left alone."""
        if not self.managed:
            return
        try:
            self.stop()
        finally:
            assert self._root is not None
            shutil.rmtree(self._root, ignore_errors=True)


def start_redis(tmp_dir: str | os.PathLike[str]) -> RedisServer:
    """Start ``redis-server`` on a free loopback port, without persistence, files under ``tmp_dir``."""
    if shutil.which("redis-server") is None:
        raise RuntimeError(f"redis-server not found: {_REDIS_PACKAGE_HINT}")
    base = Path(tmp_dir)
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="redis-", dir=base))
    port = free_port()
    server = RedisServer(f"redis://127.0.0.1:{port}/0", root=root, port=port)
    server.start()
    return server


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The PostgreSQL server of this test session: ``DATABASE_URL`` when set, else a throwaway one."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield PostgresServer(external)
        return
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The Redis server of this test session: ``REDIS_URL`` when set, else a throwaway one."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield RedisServer(external)
        return
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A URL to a fresh, empty database on the session's PostgreSQL server, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(postgres_server.url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(postgres_server.url, name)
    finally:
        asyncio.run(_admin(postgres_server.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
