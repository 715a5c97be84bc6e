"""Tenants: who owns a request, and the API keys that say so.

Every lattice, job, result, webhook endpoint, event and delivery belongs to one tenant, and every query the
HTTP APIs run filters by it. The service's authentication middleware puts the tenant of the presented key into
the ASGI scope (:func:`set_tenant`); the service's routes and the webhook management API read it back
(:func:`tenant_of`). Both APIs live in one process but import nothing of each other, so this is written once here.

Keys come from ``tenant:key`` lines (``CATALYTIC_API_KEYS``, ``CATALYTIC_API_KEYS_FILE``) or from the ``api_keys``
table (``catalytic keys add|list|revoke``). A key given without a tenant is a tenant of its own, named after a
digest of the key (never the key). Only SHA-256 digests of keys are held; a keyless service on loopback serves
one implicit tenant, :data:`IMPLICIT_TENANT`, which is also the tenant of every row written before tenants existed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

__all__ = [
    "IMPLICIT_TENANT",
    "TENANT_PATTERN",
    "key_digest",
    "parse_key_lines",
    "set_tenant",
    "tenant_of",
    "valid_tenant",
]

IMPLICIT_TENANT: Final = "default"
"""The tenant of a keyless service, and of the rows written before tenants existed (migration 0005)."""
TENANT_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""What a tenant name may be: it lands in metric labels and log lines, so it stays short and plain."""
_SCOPE_KEY: Final = "catalytic.tenant"


def key_digest(key: str) -> str:
    """The SHA-256 digest (hex) under which a key is held; the key itself is never stored.

    A plain digest suffices because keys are high-entropy random strings, not passwords.

    Examples
    --------
    >>> key_digest("k")[:16]
    '8254c329a92850f6'
    """
    return hashlib.sha256(key.encode()).hexdigest()


def valid_tenant(name: str) -> bool:
    """Whether ``name`` can name a tenant (:data:`TENANT_PATTERN`).

    Examples
    --------
    >>> valid_tenant("acme-prod"), valid_tenant("a b")
    (True, False)
    """
    return TENANT_PATTERN.fullmatch(name) is not None


def parse_key_lines(raw: str) -> dict[str, str]:
    """Key digests mapped to tenants, from comma- or newline-separated ``tenant:key`` entries or bare keys.

    A bare key (or one whose part before the first ``:`` cannot name a tenant) is a tenant of its own,
    ``key-`` and the first 16 hex digits of its digest. Two keys of one tenant are both valid (rotation).

    Examples
    --------
    >>> parsed = parse_key_lines("acme:k1\\nacme:k2,k3")
    >>> sorted(set(parsed.values()))
    ['acme', 'key-2f5052c9fd15b19a']
    >>> len(parsed)
    3
    """
    found: dict[str, str] = {}
    for entry in raw.replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        tenant, colon, key = entry.partition(":")
        if colon and key.strip() and valid_tenant(tenant.strip()):
            digest = key_digest(key.strip())
            found[digest] = tenant.strip()
        else:
            digest = key_digest(entry)
            found[digest] = f"key-{digest[:16]}"
    return found


def set_tenant(scope: MutableMapping[str, Any], tenant: str) -> None:
    """Record the tenant of the request whose ASGI ``scope`` this is."""
    scope[_SCOPE_KEY] = tenant


def tenant_of(scope: Mapping[str, Any]) -> str:
    """The tenant :func:`set_tenant` recorded in ``scope``; :data:`IMPLICIT_TENANT` when none was (keyless)."""
    found = scope.get(_SCOPE_KEY)
    return found if isinstance(found, str) else IMPLICIT_TENANT
