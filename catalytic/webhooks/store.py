"""Endpoints, events and deliveries: the transactional outbox and the queries behind the management API.

An event and its deliveries are written by :func:`emit` on the caller's own connection, inside the caller's
transaction, so a job's completion and its notification commit (or vanish) together. The worker then sends
each pending delivery at least once. Whatever makes deliveries due (:func:`emit`, :func:`replay_delivery`,
:func:`replay_failed`) also wakes idle workers when its transaction commits (:mod:`catalytic.webhooks.wakeup`).

Endpoints, events and deliveries belong to a tenant (:mod:`catalytic.tenancy`): an event reaches only its
tenant's endpoints, and a function given ``tenant`` sees only that tenant's rows (None: any tenant's, for
the worker and for callers that checked the tenant already).

Delivery states::

    pending ──▶ succeeded                  a 2xx answer
       │  ▲
       │  └── retry (5xx, 429, timeout, connection error) while attempts remain
       ├────▶ failed                       an answer that retrying cannot fix (4xx, 410, redirect, refused address)
       └────▶ dead                         out of attempts, or the endpoint was disabled or deleted
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

from catalytic.errors import InvalidInputError, InvalidTypeError
from catalytic.storage import Connection
from catalytic.tenancy import IMPLICIT_TENANT
from catalytic.webhooks.config import DEFAULT_MAX_PAYLOAD_BYTES
from catalytic.webhooks.signing import generate_secret
from catalytic.webhooks.wakeup import announce

__all__ = [
    "DELIVERY_STATUSES",
    "EVENT_TYPES",
    "active_secrets",
    "count_endpoints",
    "create_endpoint",
    "delete_endpoint",
    "disable_endpoint",
    "emit",
    "endpoint_view",
    "get_delivery",
    "get_endpoint",
    "get_event",
    "list_deliveries",
    "list_endpoints",
    "new_id",
    "replay_delivery",
    "replay_failed",
    "rotate_secret",
    "update_endpoint",
]

EVENT_TYPES: Final = (
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "lattice.created",
    "lattice.deleted",
    "webhook.test",
    "endpoint.disabled",
)
DELIVERY_STATUSES: Final = ("pending", "succeeded", "failed", "dead")
REPLAYABLE: Final = ("failed", "dead")

_DELIVERY_FIELDS = (
    "id, event_id, endpoint_id, endpoint_url, event_type, status, attempts, next_attempt_at, last_attempt_at, "
    "last_status_code, last_error, response_excerpt, delivered_at, created_at, updated_at"
)
_ATTEMPT_FIELDS = "delivery_id, attempt, outcome, status_code, error, response_excerpt, duration_s, created_at"

# The Parameters entries that most functions here share, written once; see _shared_parameters.
_PARAMETERS: Final = {
    "conn": "conn : Connection\n        A connection or transaction.",
    "transaction": "conn : Connection\n        A transaction.",
    "endpoint_id": "endpoint_id : str\n        The endpoint id.",
    "tenant": "tenant : str, optional\n        Only this tenant's rows; None: any tenant's.",
    "now": "now : float\n        Epoch seconds.",
}

_Function = TypeVar("_Function", bound=Callable[..., Any])


def _shared_parameters(function: _Function) -> _Function:
    """Fill the ``%(conn)s``, ``%(transaction)s``, ``%(endpoint_id)s``, ``%(tenant)s`` and ``%(now)s`` entries of a
    docstring."""
    function.__doc__ = (function.__doc__ or "") % _PARAMETERS
    return function


async def _changed_rows(conn: Connection, sql: str, *args: Any) -> int:
    """Run an INSERT, UPDATE or DELETE; how many rows it changed (from its status, e.g. ``UPDATE 3``)."""
    status = await conn.execute(sql, *args)
    return int(status.rsplit(" ", 1)[-1])


def _of_tenant(sql: str, args: list[Any], tenant: str | None) -> str:
    """``sql`` (a query whose WHERE clause is last) limited to ``tenant``'s rows when one is given."""
    if tenant is None:
        return sql
    args.append(tenant)
    return f"{sql} AND tenant = ${len(args)}"


def new_id(prefix: str) -> str:
    """A fresh random id such as ``evt_3f2c...`` (prefix, underscore, 32 hex digits).

    Examples
    --------
    >>> len(new_id("evt"))
    36
    """
    return f"{prefix}_{uuid.uuid4().hex}"


def placeholders(start: int, count: int) -> str:
    """``$start, $start+1, ...`` for an ``IN (...)`` list of ``count`` values.

    Examples
    --------
    >>> placeholders(2, 3)
    '$2, $3, $4'
    """
    return ", ".join(f"${i}" for i in range(start, start + count))


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def subscribed(event_types_json: str, event_type: str) -> bool:
    """Whether an endpoint with this stored filter receives ``event_type`` (an empty filter takes every type).

    Examples
    --------
    >>> subscribed("[]", "job.failed"), subscribed('["job.succeeded"]', "job.failed")
    (True, False)
    """
    wanted = json.loads(event_types_json or "[]")
    return not wanted or event_type in wanted


async def emit(
    conn: Connection,
    event_type: str,
    data: dict[str, Any],
    *,
    now: float | None = None,
    endpoint_ids: Sequence[str] | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ignore_filter: bool = False,
    tenant: str = IMPLICIT_TENANT,
) -> str:
    """Record an event and one pending delivery per enabled, subscribed endpoint of ``tenant``, on the caller's
    connection.

    Call it inside the transaction that records what happened (a job's completion, say): the event then exists
    exactly when that change does.

    Parameters
    ----------
    conn : Connection
        The caller's connection, normally the one ``Database.transaction()`` yielded.
    event_type : str
        One of :data:`EVENT_TYPES`.
    data : dict
        The JSON-able ``data`` of the Standard Webhooks payload (for jobs: job id, operation, status, timings,
        result URL).
    now : float, optional
        Event time, epoch seconds; ``time.time()`` by default.
    endpoint_ids : sequence of str, optional
        Deliver only to these endpoints (still only the enabled, subscribed ones); used by the test event.
    max_payload_bytes : int
        The largest serialised payload accepted.
    ignore_filter : bool
        Deliver whatever the endpoints' type filters say (the test event sent to one endpoint).
    tenant : str
        The tenant whose job or lattice caused the event; only its endpoints receive it.

    Returns
    -------
    str
        The event id, which receivers see as the ``webhook-id`` header.

    Raises
    ------
    InvalidInputError
        For an unknown event type, or a payload over ``max_payload_bytes``.
    InvalidTypeError
        When ``data`` is not JSON-serialisable.

    Examples
    --------
    >>> async def finish_job(db, job_id: str) -> str:
    ...     async with db.transaction() as conn:
    ...         await conn.execute("UPDATE jobs SET status = 'succeeded' WHERE id = $1", job_id)
    ...         return await emit(conn, "job.succeeded", {"job_id": job_id, "status": "succeeded"})
    """
    _known_types([event_type], "type")
    if not isinstance(data, dict):
        raise InvalidTypeError("data", f"is a {type(data).__name__}", "a JSON object")
    moment = time.time() if now is None else float(now)
    event_id = new_id("msg")
    try:
        payload = json.dumps({"type": event_type, "timestamp": _iso(moment), "data": data}, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError("data", f"is not JSON-serialisable: {exc}", "JSON values only") from exc
    size = len(payload.encode("utf-8"))
    if size > max_payload_bytes:
        raise InvalidInputError("data", f"the event payload is {size} bytes", f"at most {max_payload_bytes} bytes")
    insert = "INSERT INTO events (id, type, payload, created_at, tenant) VALUES ($1, $2, $3, $4, $5)"
    select = "SELECT id, url, event_types FROM webhook_endpoints WHERE enabled = TRUE AND tenant = $5"
    if getattr(conn, "dialect", None) == "postgresql":
        # One round trip: a data-modifying WITH runs to completion whatever the query around it reads.
        endpoints = await conn.fetch(
            f"WITH recorded AS ({insert}) {select}", event_id, event_type, payload, moment, tenant
        )
    else:
        await conn.execute(insert, event_id, event_type, payload, moment, tenant)
        endpoints = await conn.fetch(select.replace("$5", "$1"), tenant)
    only = set(endpoint_ids) if endpoint_ids is not None else None
    rows = [
        (new_id("dlv"), event_id, ep["id"], ep["url"], event_type, moment, moment, tenant)
        for ep in endpoints
        if (only is None or ep["id"] in only) and (ignore_filter or subscribed(ep["event_types"], event_type))
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO deliveries (id, event_id, endpoint_id, endpoint_url, event_type, status, attempts, "
            "next_attempt_at, created_at, updated_at, tenant) "
            "VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $7, $8)",
            rows,
        )
        await announce(conn)
    return event_id


@_shared_parameters
def active_secrets(secrets_json: str, now: float) -> list[str]:
    """The secrets that sign at ``now``: the current one first, then rotated ones still in their grace period.

    Parameters
    ----------
    secrets_json : str
        The stored list of ``{"secret", "expires_at"}`` (``expires_at`` None for the current secret).
    %(now)s

    Returns
    -------
    list of str

    Examples
    --------
    >>> stored = '[{"secret": "whsec_new", "expires_at": null}, {"secret": "whsec_old", "expires_at": 100.0}]'
    >>> active_secrets(stored, 50.0), active_secrets(stored, 150.0)
    (['whsec_new', 'whsec_old'], ['whsec_new'])
    """
    entries = json.loads(secrets_json)
    return [e["secret"] for e in entries if e.get("expires_at") is None or e["expires_at"] > now]


def endpoint_view(row: dict[str, Any]) -> dict[str, Any]:
    """The public description of an endpoint row: everything but its secrets.

    Parameters
    ----------
    row : dict
        A ``webhook_endpoints`` row.

    Returns
    -------
    dict
        JSON-able: id, url, description, event_types, enabled, disabled_reason, disabled_at, failing_since,
        last_failure_at, last_success_at, created_at, updated_at.
    """
    return {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "event_types": json.loads(row["event_types"]),
        "enabled": bool(row["enabled"]),
        "disabled_reason": row["disabled_reason"],
        "disabled_at": row["disabled_at"],
        "failing_since": row["first_failure_at"],
        "last_failure_at": row["last_failure_at"],
        "last_success_at": row["last_success_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _known_types(event_types: Iterable[str], field: str) -> list[str]:
    """``event_types`` without repeats; InvalidInputError naming ``field`` for an unknown type."""
    chosen = list(dict.fromkeys(event_types))
    for event_type in chosen:
        if event_type not in EVENT_TYPES:
            raise InvalidInputError(field, f"unknown event type {event_type!r}", ", ".join(EVENT_TYPES))
    return chosen


def _types_json(event_types: Iterable[str]) -> str:
    return json.dumps(_known_types(event_types, "event_types"))


@_shared_parameters
async def create_endpoint(
    conn: Connection,
    url: str,
    event_types: Sequence[str] = (),
    description: str = "",
    *,
    now: float,
    tenant: str = IMPLICIT_TENANT,
) -> tuple[dict[str, Any], str]:
    """Insert an enabled endpoint of ``tenant`` with a fresh secret.

    Parameters
    ----------
    %(conn)s
    url : str
        The endpoint URL, already checked with :func:`catalytic.webhooks.safety.validate_url`.
    event_types : sequence of str
        The types it receives; empty for all.
    description : str
        Free text.
    now : float
        Creation time, epoch seconds.
    tenant : str
        Its owner; it receives only this tenant's events.

    Returns
    -------
    (dict, str)
        The endpoint's view and its secret (shown to the owner once).

    Raises
    ------
    InvalidInputError
        For an unknown event type.

    Examples
    --------
    >>> async def register(db) -> str:
    ...     async with db.transaction() as conn:
    ...         view, secret = await create_endpoint(conn, "https://hooks.example/x", ["job.failed"], now=0.0)
    ...     return secret
    """
    secret = generate_secret()
    endpoint_id = new_id("ep")
    await conn.execute(
        "INSERT INTO webhook_endpoints (id, url, description, event_types, secrets, enabled, created_at, updated_at, "
        "tenant) VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6, $7)",
        endpoint_id,
        url,
        description,
        _types_json(event_types),
        json.dumps([{"secret": secret, "expires_at": None}]),
        now,
        tenant,
    )
    return await _stored_view(conn, endpoint_id), secret


async def count_endpoints(conn: Connection, tenant: str) -> int:
    """How many endpoints ``tenant`` has registered."""
    return int(await conn.fetchval("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant = $1", tenant))


@_shared_parameters
async def get_endpoint(conn: Connection, endpoint_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    """The endpoint's stored row, secrets included (for signing; never return it to a client), or None.

    Parameters
    ----------
    %(conn)s
    %(endpoint_id)s
    %(tenant)s

    Returns
    -------
    dict or None
    """
    args: list[Any] = [endpoint_id]
    return await conn.fetchrow(_of_tenant("SELECT * FROM webhook_endpoints WHERE id = $1", args, tenant), *args)


@_shared_parameters
async def list_endpoints(
    conn: Connection, *, limit: int = 100, offset: int = 0, tenant: str = IMPLICIT_TENANT
) -> list[dict[str, Any]]:
    """The endpoint views of ``tenant``, oldest first.

    Parameters
    ----------
    %(conn)s
    limit, offset : int
        The page.
    tenant : str
        Whose endpoints.

    Returns
    -------
    list of dict
    """
    rows = await conn.fetch(
        "SELECT * FROM webhook_endpoints WHERE tenant = $3 ORDER BY created_at, id LIMIT $1 OFFSET $2",
        int(limit),
        int(offset),
        tenant,
    )
    return [endpoint_view(r) for r in rows]


@_shared_parameters
async def update_endpoint(
    conn: Connection, endpoint_id: str, changes: dict[str, Any], *, now: float, tenant: str | None = None
) -> dict[str, Any] | None:
    """Apply ``changes`` (url, event_types, description, enabled) to an endpoint.

    Disabling buries the endpoint's pending deliveries; re-enabling clears the disabled reason and the failure
    streak. A new URL is used by the pending deliveries too.

    Parameters
    ----------
    %(transaction)s
    %(endpoint_id)s
    changes : dict
        The fields to change, already validated (the URL checked).
    %(now)s
    %(tenant)s

    Returns
    -------
    dict or None
        The new view, or None for an unknown id.

    Raises
    ------
    InvalidInputError
        For an unknown event type.
    """
    row = await get_endpoint(conn, endpoint_id, tenant)
    if row is None:
        return None
    url = changes.get("url", row["url"])
    description = changes.get("description", row["description"])
    event_types = _types_json(changes["event_types"]) if "event_types" in changes else row["event_types"]
    enabled = bool(changes.get("enabled", row["enabled"]))
    reenabled = enabled and not row["enabled"]
    await conn.execute(
        "UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4, enabled = $5, updated_at = $6, "
        "disabled_reason = CASE WHEN $5 THEN NULL WHEN enabled THEN 'disabled by request' ELSE disabled_reason END, "
        "disabled_at = CASE WHEN $5 THEN NULL WHEN enabled THEN $6 ELSE disabled_at END, "
        "first_failure_at = CASE WHEN $7 THEN NULL ELSE first_failure_at END "
        "WHERE id = $1",
        endpoint_id,
        url,
        description,
        event_types,
        enabled,
        now,
        reenabled,
    )
    if url != row["url"]:
        await conn.execute(
            "UPDATE deliveries SET endpoint_url = $2 WHERE endpoint_id = $1 AND status = 'pending'", endpoint_id, url
        )
    if not enabled and row["enabled"]:
        await _bury_pending(conn, endpoint_id, "endpoint disabled", now)
    return await _stored_view(conn, endpoint_id)


async def _stored_view(conn: Connection, endpoint_id: str) -> dict[str, Any]:
    """The view of an endpoint this transaction has just written."""
    row = await get_endpoint(conn, endpoint_id)
    assert row is not None
    return endpoint_view(row)


async def _bury_pending(conn: Connection, endpoint_id: str, reason: str, now: float) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'dead', last_error = $2, lease_until = NULL, updated_at = $3 "
        "WHERE endpoint_id = $1 AND status = 'pending'",
        endpoint_id,
        reason,
        now,
    )


@_shared_parameters
async def delete_endpoint(conn: Connection, endpoint_id: str, *, now: float, tenant: str | None = None) -> bool:
    """Delete an endpoint; its pending deliveries become dead, and every delivery's history stays.

    Parameters
    ----------
    %(transaction)s
    %(endpoint_id)s
    %(now)s
    %(tenant)s

    Returns
    -------
    bool
        False for an unknown id.
    """
    args: list[Any] = [endpoint_id]
    if not await _changed_rows(conn, _of_tenant("DELETE FROM webhook_endpoints WHERE id = $1", args, tenant), *args):
        return False
    await _bury_pending(conn, endpoint_id, "endpoint deleted", now)
    return True


@_shared_parameters
async def rotate_secret(
    conn: Connection, endpoint_id: str, *, now: float, grace_s: float, tenant: str | None = None
) -> str | None:
    """Give the endpoint a new secret; the previous ones keep signing for at most ``grace_s`` seconds more.

    Parameters
    ----------
    %(transaction)s
    %(endpoint_id)s
    %(now)s
    grace_s : float
        How long the old secrets keep signing (0 retires them at once).
    %(tenant)s

    Returns
    -------
    str or None
        The new secret, or None for an unknown id.
    """
    row = await get_endpoint(conn, endpoint_id, tenant)
    if row is None:
        return None
    secret = generate_secret()
    limit = now + grace_s
    kept = []
    for entry in json.loads(row["secrets"]):
        expires = limit if entry.get("expires_at") is None else min(entry["expires_at"], limit)
        if expires > now:
            kept.append({"secret": entry["secret"], "expires_at": expires})
    entries = [{"secret": secret, "expires_at": None}, *kept]
    await conn.execute(
        "UPDATE webhook_endpoints SET secrets = $2, updated_at = $3 WHERE id = $1",
        endpoint_id,
        json.dumps(entries),
        now,
    )
    return secret


@_shared_parameters
async def disable_endpoint(
    conn: Connection, endpoint_id: str, reason: str, *, now: float, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> bool:
    """Disable an enabled endpoint, bury its pending deliveries and emit ``endpoint.disabled``.

    Parameters
    ----------
    %(transaction)s
    %(endpoint_id)s
    reason : str
        Stored as the disabled reason and sent in the event.
    %(now)s
    max_payload_bytes : int
        The event size limit.

    Returns
    -------
    bool
        False when the endpoint is unknown or already disabled (then nothing is written).
    """
    disabled = await _changed_rows(
        conn,
        "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, disabled_at = $3, updated_at = $3 "
        "WHERE id = $1 AND enabled = TRUE",
        endpoint_id,
        reason,
        now,
    )
    if not disabled:
        return False
    await _bury_pending(conn, endpoint_id, "endpoint disabled", now)
    row = await get_endpoint(conn, endpoint_id)
    assert row is not None
    data = {"endpoint_id": endpoint_id, "url": row["url"], "reason": reason, "failing_since": row["first_failure_at"]}
    await emit(conn, "endpoint.disabled", data, now=now, max_payload_bytes=max_payload_bytes, tenant=row["tenant"])
    return True


def _delivery_view(row: dict[str, Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    view = {k: row[k] for k in row if k != "endpoint_url"}
    view["url"] = row["endpoint_url"]
    view["attempt_log"] = attempts
    return view


async def _with_attempts(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    log = await conn.fetch(
        f"SELECT {_ATTEMPT_FIELDS} FROM delivery_attempts WHERE delivery_id IN ({placeholders(1, len(ids))}) "
        "ORDER BY created_at, attempt",
        *ids,
    )
    by_delivery: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for entry in log:
        by_delivery[entry.pop("delivery_id")].append(entry)
    return [_delivery_view(r, by_delivery[r["id"]]) for r in rows]


@_shared_parameters
async def list_deliveries(
    conn: Connection,
    *,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    status: str | None = None,
    since: float | None = None,
    limit: int = 100,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """Deliveries, newest first, each with its attempts (``attempt_log``).

    Parameters
    ----------
    %(conn)s
    endpoint_id, event_id, status : str, optional
        Filters.
    since : float, optional
        Only deliveries created at or after this time.
    limit : int
        At most this many.
    %(tenant)s

    Returns
    -------
    list of dict
    """
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("endpoint_id", endpoint_id), ("event_id", event_id), ("status", status), ("tenant", tenant)
    ):  # fmt: skip
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if since is not None:
        args.append(float(since))
        clauses.append(f"created_at >= ${len(args)}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    args.append(int(limit))
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_FIELDS} FROM deliveries {where} ORDER BY created_at DESC, id LIMIT ${len(args)}", *args
    )
    return await _with_attempts(conn, rows)


@_shared_parameters
async def get_delivery(conn: Connection, delivery_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    """One delivery with its attempts, or None.

    Parameters
    ----------
    %(conn)s
    delivery_id : str
        The delivery id.
    %(tenant)s

    Returns
    -------
    dict or None
    """
    args: list[Any] = [delivery_id]
    sql = _of_tenant(f"SELECT {_DELIVERY_FIELDS} FROM deliveries WHERE id = $1", args, tenant)
    row = await conn.fetchrow(sql, *args)
    return None if row is None else (await _with_attempts(conn, [row]))[0]


@_shared_parameters
async def get_event(conn: Connection, event_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    """One event (its payload parsed) with its deliveries and their attempts, or None.

    Parameters
    ----------
    %(conn)s
    event_id : str
        The event id (the ``webhook-id`` receivers saw).
    %(tenant)s

    Returns
    -------
    dict or None
    """
    args: list[Any] = [event_id]
    row = await conn.fetchrow(
        _of_tenant("SELECT id, type, payload, created_at FROM events WHERE id = $1", args, tenant), *args
    )
    if row is None:
        return None
    deliveries = await list_deliveries(conn, event_id=event_id, limit=10_000, tenant=tenant)
    return {"id": row["id"], "type": row["type"], "created_at": row["created_at"],
            "payload": json.loads(row["payload"]), "deliveries": deliveries}  # fmt: skip


@_shared_parameters
async def replay_delivery(conn: Connection, delivery_id: str, *, now: float) -> bool:
    """Queue a finished delivery again, due now, with a fresh set of attempts.

    Parameters
    ----------
    %(transaction)s
    delivery_id : str
        The delivery id.
    %(now)s

    Returns
    -------
    bool
        False when the delivery is unknown or still pending.
    """
    return await _requeue(conn, "id = $2 AND status <> 'pending'", delivery_id, now=now) > 0


@_shared_parameters
async def replay_failed(conn: Connection, endpoint_id: str, *, since: float, now: float) -> int:
    """Queue again every failed or dead delivery of an endpoint created at or after ``since``.

    Parameters
    ----------
    %(transaction)s
    %(endpoint_id)s
    since : float
        Epoch seconds.
    now : float
        Epoch seconds; the replayed deliveries are due then.

    Returns
    -------
    int
        How many deliveries were queued.
    """
    replayable = ", ".join(f"'{status}'" for status in REPLAYABLE)
    where = f"endpoint_id = $2 AND created_at >= $3 AND status IN ({replayable})"
    return await _requeue(conn, where, endpoint_id, float(since), now=now)


async def _requeue(conn: Connection, where: str, *args: Any, now: float) -> int:
    """Make the deliveries ``where`` selects (its placeholders from ``$2``) pending and due at ``now``, with a fresh
    set of attempts, and wake the workers; how many there were."""
    requeued = await _changed_rows(
        conn,
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, lease_until = NULL, "
        f"claimed_by = NULL, updated_at = $1 WHERE {where}",
        now,
        *args,
    )
    if requeued:
        await announce(conn)
    return requeued
