"""API keys and their tenants: the configured ones, the ``api_keys`` table, and the ring the middleware asks.

Keys are held only as SHA-256 digests (:func:`catalytic.tenancy.key_digest`). ``catalytic keys add TENANT`` makes
a key, prints it once and stores its digest; ``keys list`` shows ids, tenants and dates, never a key; ``keys
revoke ID`` ends a key. A tenant may hold any number of valid keys at once, so a key rotates without downtime: add
the new one, move the clients, revoke the old one. Every server process re-reads the table every
:data:`TABLE_REFRESH_S` seconds, so a revoked key stops working within that time on every replica.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from typing import Any, Final

from catalytic.service.db import Queries
from catalytic.tenancy import key_digest, valid_tenant

__all__ = ["TABLE_REFRESH_S", "KeyRing", "add_key", "list_keys", "revoke_key", "table_keys"]

TABLE_REFRESH_S: Final = 5.0
"""How stale a server process's copy of the ``api_keys`` table may be (a revoked key works at most this long)."""
KEY_BYTES: Final = 32
"""Random bytes in a key ``keys add`` makes (256 bits: a plain digest of it cannot be searched)."""


async def add_key(db: Queries, tenant: str, label: str = "", *, now: float | None = None) -> tuple[str, str]:
    """Make a key for ``tenant`` and store its digest.

    Parameters
    ----------
    db : Queries
        The database.
    tenant : str
        Its tenant (:data:`catalytic.tenancy.TENANT_PATTERN`).
    label : str
        Free text shown by ``keys list`` (who holds it, say).
    now : float, optional
        Creation time, epoch seconds.

    Returns
    -------
    (str, str)
        The key's id and the key itself, which is not stored and cannot be shown again.

    Raises
    ------
    ValueError
        For a tenant name that cannot name a tenant.
    """
    if not valid_tenant(tenant):
        raise ValueError(
            f"tenant {tenant!r}: letters, digits, '_', '.', '-', at most 64, starting with a letter or digit"
        )
    key = "ck_" + secrets.token_urlsafe(KEY_BYTES)
    key_id = "key_" + secrets.token_hex(8)
    await db.execute(
        "INSERT INTO api_keys (id, tenant, key_sha256, label, created_at) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        tenant,
        key_digest(key),
        label,
        time.time() if now is None else now,
    )
    return key_id, key


async def list_keys(db: Queries) -> list[dict[str, Any]]:
    """Every key's id, tenant, label, creation and revocation time (epoch seconds), oldest first; never a key."""
    rows = await db.fetch("SELECT id, tenant, label, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
    return [dict(row) for row in rows]


async def revoke_key(db: Queries, key_id: str, *, now: float | None = None) -> bool:
    """Revoke a key by id; False when no valid key has that id."""
    revoked = await db.fetchval(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
        key_id,
        time.time() if now is None else now,
    )
    return revoked is not None


async def table_keys(db: Queries) -> dict[str, str]:
    """The digests of the valid keys in the table, each mapped to its tenant."""
    rows = await db.fetch("SELECT key_sha256, tenant FROM api_keys WHERE revoked_at IS NULL")
    return {row["key_sha256"]: row["tenant"] for row in rows}


class KeyRing:
    """The key digests this process accepts, each with its tenant: the configured ones and the table's.

    Parameters
    ----------
    configured : dict
        Digests to tenants from CATALYTIC_API_KEYS and CATALYTIC_API_KEYS_FILE
        (:func:`catalytic.tenancy.parse_key_lines`).

    Examples
    --------
    >>> from catalytic.tenancy import parse_key_lines
    >>> ring = KeyRing(parse_key_lines("acme:k1"))
    >>> ring.tenant_for("k1"), ring.tenant_for("k2"), ring.required
    ('acme', None, True)
    """

    def __init__(self, configured: dict[str, str]) -> None:
        self.configured = dict(configured)
        self.table: dict[str, str] = {}
        self._db: Queries | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def attach(self, db: Queries) -> None:
        """Read the ``api_keys`` table from ``db`` now, and again whenever the copy is stale."""
        self._db = db
        await self._load()

    async def _load(self) -> None:
        assert self._db is not None
        self.table = await table_keys(self._db)
        self._loaded_at = time.monotonic()

    async def refresh(self) -> None:
        """Re-read the table when the copy is older than :data:`TABLE_REFRESH_S` (one process-wide read at a time)."""
        if self._db is None or time.monotonic() - self._loaded_at < TABLE_REFRESH_S:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at >= TABLE_REFRESH_S:
                await self._load()

    @property
    def required(self) -> bool:
        """Whether requests need a key: some key is configured or in the table."""
        return bool(self.configured or self.table)

    def tenant_for(self, key: str) -> str | None:
        """The tenant of ``key``, or None when it is not valid; every digest is compared, each in constant time."""
        given = key_digest(key).encode()
        found: str | None = None
        for digests in (self.configured, self.table):
            for digest, tenant in digests.items():
                if hmac.compare_digest(given, digest.encode()):
                    found = tenant
        return found
