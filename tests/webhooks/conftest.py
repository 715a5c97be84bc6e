"""Webhook test fixtures: the shared database servers, and a guard that keeps every packet on loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Tests import by path (importlib mode), so this directory's helper module needs its own place on sys.path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from servers import pg_url, postgres_server, redis_server  # noqa: E402
from webhook_harness import _Template  # noqa: E402

from catalytic.storage import migrate  # noqa: E402

__all__ = [
    "hermetic_webhook_settings",
    "migrated_sqlite_template",
    "no_network_beyond_loopback",
    "pg_url",
    "postgres_server",
    "redis_server",
]

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test before any name lookup or connection beyond loopback is attempted."""
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            attempts.append(f"getaddrinfo({host!r})")
            raise OSError(f"test guard: name lookup of {host!r} beyond loopback refused")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            attempts.append(f"connect({address!r})")
            raise OSError(f"test guard: connection to {address!r} beyond loopback refused")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield attempts
    assert not attempts, f"the test tried to reach beyond loopback: {attempts}"


@pytest.fixture(scope="session", autouse=True)
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Migrate one SQLite file per session; each test copies it instead of running the migrations again."""
    path = tmp_path_factory.mktemp("template") / "webhooks.db"
    migrate(None, sqlite_path=str(path))
    _Template.path = path
    yield
    _Template.path = None


@pytest.fixture(autouse=True)
def hermetic_webhook_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's WEBHOOK_* variables out of the tests: each test states the settings it needs."""
    for name in [n for n in os.environ if n.startswith("WEBHOOK_")]:
        monkeypatch.delenv(name)
