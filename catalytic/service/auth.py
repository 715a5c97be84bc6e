"""API-key authentication as ASGI middleware.

Keys come as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; their digests are compared in constant
time against every configured key and every key of the ``api_keys`` table (:class:`catalytic.service.keys.KeyRing`).
The key's tenant goes into the request's scope (:func:`catalytic.tenancy.set_tenant`): every route serves that
tenant's resources only. Keys never reach a log line. With no keys configured the service runs open, as one
implicit tenant, which ``catalytic serve`` allows only on a loopback address.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from catalytic.problems import problem_response
from catalytic.service.keys import KeyRing
from catalytic.tenancy import set_tenant

__all__ = ["OPEN_PATHS", "OPEN_PREFIXES", "ApiKeyMiddleware", "key_matches"]

OPEN_PATHS = frozenset({"/health", "/ready", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/docs/",)
"""Paths under these are open too: the assets of the /docs page."""


def key_matches(candidate: str, keys: Iterable[str]) -> bool:
    """Whether ``candidate`` equals one of ``keys``; every key is compared, each in constant time."""
    given = candidate.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class ApiKeyMiddleware:
    """Answer 401 to any request outside :data:`OPEN_PATHS` without a valid key (when keys are configured), and
    record the tenant of a valid one."""

    def __init__(self, app: Any, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        await self.keys.refresh()
        if not self.keys.required:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope["headers"])
        tenant = None if presented is None else self.keys.tenant_for(presented)
        if tenant is not None:
            set_tenant(scope, tenant)
            await self.app(scope, receive, send)
            return
        message = "missing API key" if presented is None else "invalid API key"
        headers = {"WWW-Authenticate": 'Bearer realm="catalytic"'}
        await problem_response(scope, 401, "unauthorized", message, headers=headers)(scope, receive, send)
