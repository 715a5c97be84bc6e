"""Queries for lattices, their uploaded arrays, jobs and job results (schema: migrations 0002_service, 0003_job_leases,
0005_tenants, 0006_job_capability, 0007_result_usage).

Lattices, jobs and results belong to a tenant (:mod:`catalytic.tenancy`). Every query a route runs for a client
names the client's tenant, so another tenant's id reads as unknown; the job runner's own queries (claim, lease,
finish) go by job id alone.

A job is held by the replica named in ``owner``, or waits in the shared queue when ``owner`` is :data:`SHARED`;
a worker takes it from there with :func:`claim_shared_job`, by capability (``gpu`` jobs to GPU workers, to any
worker once ``cpu_after`` has passed).

SQL uses ``$n`` placeholders on both PostgreSQL and SQLite (the storage layer translates). Timestamps are
float epoch seconds, JSON is stored as text, ids are text.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol

from catalytic.tenancy import IMPLICIT_TENANT

__all__ = [
    "SHARED",
    "Queries",
    "cancel_job",
    "claim_job",
    "claim_shared_job",
    "count_lattices",
    "count_lattices_of",
    "delete_finished_job_arrays",
    "delete_lattice",
    "delete_results",
    "expired_jobs",
    "expired_results",
    "fail_expired_job",
    "fetch_arrays",
    "finish_job",
    "get_job",
    "get_lattice",
    "get_result",
    "insert_arrays",
    "insert_job",
    "insert_lattice",
    "job_status",
    "lattice_exists",
    "list_lattices",
    "new_id",
    "record_worker",
    "release_expired_job",
    "renew_lease",
    "set_progress",
    "take_over_job",
    "workers_seen",
]


class Queries(Protocol):
    """What a database or a transaction's connection offers (``catalytic.storage``)."""

    async def execute(self, sql: str, *args: Any) -> Any: ...

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


_LATTICE_COLUMNS = "id, spec, vertices, open_vertices, edges, memory, created_at, tenant"
_JOB_COLUMNS = (
    "id, operation, lattice_id, spec, params, backend, status, progress, error, owner, created_at, started_at, "
    "finished_at, has_array, lease_expires_at, attempts, tenant, capability, cpu_after, device_bytes, placement"
)
SHARED = ""
"""The ``owner`` of a job waiting in the shared queue (no replica holds it)."""
# A queued job whose owner never renewed its lease counts as leased for one lease from its creation.
_LEASE = "COALESCE(lease_expires_at, created_at + $3)"


TENANT_LOCK_CLASS = 0x71756F74
"""The first key of the advisory locks (two-key form) that serialise one tenant's quota checks on PostgreSQL."""


def new_id(prefix: str) -> str:
    """A fresh id that sorts by creation time (milliseconds, then 48 random bits)."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def _lattice(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "spec": json.loads(row["spec"]),
        "vertices": int(row["vertices"]),
        "open_vertices": int(row["open_vertices"]),
        "edges": int(row["edges"]),
        "memory": json.loads(row["memory"]),
        "created_at": float(row["created_at"]),
        "tenant": row["tenant"],
    }


async def get_lattice(db: Queries, lattice_id: str, tenant: str) -> dict[str, Any] | None:
    """A stored lattice of ``tenant``, or None when unknown, deleted or another tenant's."""
    row = await db.fetchrow(
        f"SELECT {_LATTICE_COLUMNS} FROM service_lattices WHERE id = $1 AND tenant = $2", lattice_id, tenant
    )
    return None if row is None else _lattice(row)


async def lattice_exists(db: Queries, lattice_id: str, tenant: str) -> bool:
    """Whether ``tenant`` has a lattice stored under ``lattice_id`` (one indexed read)."""
    found = await db.fetchval("SELECT 1 FROM service_lattices WHERE id = $1 AND tenant = $2", lattice_id, tenant)
    return found is not None


async def list_lattices(db: Queries, tenant: str, cursor: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` lattices of ``tenant`` with ids after ``cursor``, in id (creation) order."""
    rows = await db.fetch(
        f"SELECT {_LATTICE_COLUMNS} FROM service_lattices WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3",
        tenant,
        cursor or "",
        limit,
    )
    return [_lattice(r) for r in rows]


async def count_lattices(db: Queries, tenant: str | None = None) -> int:
    """How many lattices are stored: ``tenant``'s, or every tenant's when None."""
    if tenant is None:
        return int(await db.fetchval("SELECT COUNT(*) FROM service_lattices"))
    return int(await db.fetchval("SELECT COUNT(*) FROM service_lattices WHERE tenant = $1", tenant))


async def count_lattices_of(db: Queries, tenant: str) -> tuple[int, int]:
    """How many lattices are stored in all, and how many of them are ``tenant``'s, in one statement."""
    [row] = await db.fetch(
        "SELECT COUNT(*) AS stored, COUNT(*) FILTER (WHERE tenant = $1) AS mine FROM service_lattices", tenant
    )
    return int(row["stored"]), int(row["mine"])


async def oldest_queued_job_created_at(db: Queries) -> float | None:
    """Submission time (epoch seconds) of the oldest job still waiting to start, or None when none waits."""
    oldest = await db.fetchval("SELECT MIN(created_at) FROM service_jobs WHERE status = 'queued'")
    return None if oldest is None else float(oldest)


async def results_bytes(db: Queries) -> int:
    """Bytes of the job results stored in the database: JSON bodies and .npy arrays (lengths only; no value is
    read). Arrays in the results store are not counted here (:class:`catalytic.service.results.ResultSweeper`).

    The bodies are ASCII (``json.dumps`` escapes the rest), so their length in characters is their size.
    """
    total = await db.fetchval("SELECT COALESCE(SUM(LENGTH(body) + COALESCE(LENGTH(npy), 0)), 0) FROM service_results")
    return int(total or 0)


async def insert_lattice(db: Queries, record: Mapping[str, Any], arrays: Mapping[str, bytes]) -> None:
    """Store a lattice and its uploaded arrays (call inside a transaction)."""
    await db.execute(
        f"INSERT INTO service_lattices ({_LATTICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        record["id"],
        json.dumps(record["spec"]),
        record["vertices"],
        record["open_vertices"],
        record["edges"],
        json.dumps(record["memory"]),
        record["created_at"],
        record.get("tenant", IMPLICIT_TENANT),
    )
    await insert_arrays(db, record["id"], arrays)


async def insert_arrays(db: Queries, owner_id: str, arrays: Mapping[str, bytes]) -> None:
    """Store the uploaded arrays of a lattice or of a job's inline lattice."""
    for name, data in arrays.items():
        await db.execute(
            "INSERT INTO service_arrays (owner_id, name, data) VALUES ($1, $2, $3)", owner_id, name, bytes(data)
        )


async def fetch_arrays(db: Queries, owner_id: str) -> dict[str, bytes]:
    """The uploaded arrays stored under a lattice or job id."""
    rows = await db.fetch("SELECT name, data FROM service_arrays WHERE owner_id = $1", owner_id)
    return {r["name"]: bytes(r["data"]) for r in rows}


async def delete_lattice(db: Queries, lattice_id: str, tenant: str) -> int | None:
    """Delete a lattice of ``tenant`` and its arrays (call inside a transaction).

    Returns how many lattices remain stored, or None when ``tenant`` has no such lattice. On PostgreSQL the
    deletes and the count are one statement (the count sees the table as it was before the deletes).
    """
    if getattr(db, "dialect", None) == "postgresql":
        [row] = await db.fetch(
            "WITH gone AS (DELETE FROM service_lattices WHERE id = $1 AND tenant = $2 RETURNING id), "
            "arrays AS (DELETE FROM service_arrays WHERE owner_id IN (SELECT id FROM gone)) "
            "SELECT (SELECT COUNT(*) FROM gone) AS deleted, (SELECT COUNT(*) FROM service_lattices) AS stored",
            lattice_id,
            tenant,
        )
        return int(row["stored"]) - 1 if row["deleted"] else None
    deleted = await db.fetchval(
        "DELETE FROM service_lattices WHERE id = $1 AND tenant = $2 RETURNING id", lattice_id, tenant
    )
    if deleted is None:
        return None
    await db.execute("DELETE FROM service_arrays WHERE owner_id = $1", lattice_id)
    return await count_lattices(db)


def _job(row: Mapping[str, Any]) -> dict[str, Any]:
    job = dict(row)
    job["spec"] = json.loads(row["spec"])
    job["params"] = json.loads(row["params"])
    job["error"] = None if row["error"] is None else json.loads(row["error"])
    job["progress"] = float(row["progress"])
    job["has_array"] = bool(row["has_array"])
    job["attempts"] = int(row["attempts"])
    job["cpu_after"] = None if row["cpu_after"] is None else float(row["cpu_after"])
    job["device_bytes"] = None if row["device_bytes"] is None else int(row["device_bytes"])
    job["placement"] = None if row["placement"] is None else json.loads(row["placement"])
    return job


async def insert_job(db: Queries, job: Mapping[str, Any]) -> None:
    """Record a queued job of ``job["tenant"]`` (the implicit tenant when absent).

    ``capability`` (default ``cpu``), ``cpu_after``, ``device_bytes`` and ``placement`` (a dict) are optional;
    an ``owner`` of :data:`SHARED` puts the job in the shared queue.
    """
    placement = job.get("placement")
    await db.execute(
        "INSERT INTO service_jobs (id, operation, lattice_id, spec, params, backend, status, progress, owner, "
        "created_at, has_array, tenant, capability, cpu_after, device_bytes, placement) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0.0, $7, $8, 0, $9, $10, $11, $12, $13)",
        job["id"],
        job["operation"],
        job["lattice_id"],
        json.dumps(job["spec"]),
        json.dumps(job["params"]),
        job["backend"],
        job["owner"],
        job["created_at"],
        job.get("tenant", IMPLICIT_TENANT),
        job.get("capability", "cpu"),
        job.get("cpu_after"),
        job.get("device_bytes"),
        None if placement is None else json.dumps(placement),
    )


async def get_job(db: Queries, job_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    """A job record, or None; with ``tenant`` given, None for another tenant's job too."""
    if tenant is None:
        row = await db.fetchrow(f"SELECT {_JOB_COLUMNS} FROM service_jobs WHERE id = $1", job_id)
    else:
        row = await db.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM service_jobs WHERE id = $1 AND tenant = $2", job_id, tenant
        )
    return None if row is None else _job(row)


async def job_status(db: Queries, job_id: str) -> str | None:
    """Only the status of a job (polled while it runs)."""
    status = await db.fetchval("SELECT status FROM service_jobs WHERE id = $1", job_id)
    return None if status is None else str(status)


async def claim_job(
    db: Queries,
    job_id: str,
    now: float,
    owner: str,
    lease_until: float,
    *,
    placement: Mapping[str, Any] | None = None,
    tenant_running_max: int | None = None,
) -> bool:
    """Move a queued job of ``owner`` to running and count the attempt, recording ``placement`` (where it runs and
    why) when given; False when cancelled, taken over, or (``tenant_running_max``) when its tenant runs that many
    jobs already (:func:`waits_for_turn` tells that case apart: the job stays queued).

    The count and the move are one statement; on PostgreSQL the claims of one tenant also queue on an advisory
    transaction lock, so two replicas never both see the last free turn.
    """
    sql = (
        "UPDATE service_jobs SET status = 'running', started_at = $2, progress = 0.05, attempts = attempts + 1, "
        "lease_expires_at = $4, placement = COALESCE($5, placement) "
        "WHERE id = $1 AND status = 'queued' AND owner = $3"
    )
    args: list[Any] = [job_id, now, owner, lease_until, None if placement is None else json.dumps(placement)]
    if tenant_running_max is None:
        return await db.fetchval(sql + " RETURNING id", *args) is not None
    sql += (
        " AND (SELECT COUNT(*) FROM service_jobs AS other WHERE other.tenant = service_jobs.tenant "
        "AND other.status = 'running') < $6 RETURNING id"
    )
    async with db.transaction() as conn:  # type: ignore[attr-defined]
        if conn.dialect == "postgresql":
            tenant = await conn.fetchval("SELECT tenant FROM service_jobs WHERE id = $1", job_id)
            key = f"max_concurrent_jobs/{tenant}"
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", TENANT_LOCK_CLASS, key)
        return await conn.fetchval(sql, *args, tenant_running_max) is not None


async def waits_for_turn(db: Queries, job_id: str, owner: str) -> bool:
    """Whether a job :func:`claim_job` did not move is still queued for ``owner``: its tenant's turn is taken."""
    status = await db.fetchval("SELECT status FROM service_jobs WHERE id = $1 AND owner = $2", job_id, owner)
    return bool(status == "queued")


def _shared_pick(gpu_worker: bool, first: int, lock: bool) -> str:
    """The query choosing the first shared job a worker may take; its parameters from ``$first`` are now, then a
    GPU worker's free device bytes.

    Any worker takes ``cpu`` jobs and ``gpu`` jobs whose ``cpu_after`` has passed; a GPU worker also takes the
    ``gpu`` jobs whose device bytes fit, and those first.
    """
    now = f"${first}"
    where = f"capability = 'cpu' OR cpu_after <= {now}"
    order = "created_at"
    if gpu_worker:
        fits = f"capability = 'gpu' AND COALESCE(device_bytes, 0) <= ${first + 1}"
        where = f"{fits} OR {where}"
        order = f"CASE WHEN {fits} THEN 0 ELSE 1 END, created_at"
    sql = f"SELECT id FROM service_jobs WHERE status = 'queued' AND owner = '' AND ({where}) ORDER BY {order} LIMIT 1"
    return sql + (" FOR UPDATE SKIP LOCKED" if lock else "")


async def claim_shared_job(
    db: Queries,
    owner: str,
    now: float,
    lease_until: float,
    *,
    gpu_worker: bool,
    device_room: int = 0,
    lock: bool = False,
) -> dict[str, Any] | None:
    """Take the first job of the shared queue this worker may run: it becomes ``owner``'s, queued, leased.

    One statement claims it: on PostgreSQL (``lock``) the row is chosen ``FOR UPDATE SKIP LOCKED``, so replicas
    claiming at once take different jobs; on SQLite every write is exclusive already. A read first finds whether
    any job qualifies, so an idle worker polling takes no write lock.

    Parameters
    ----------
    gpu_worker : bool
        Whether the claim is for a GPU worker (GPU jobs first, those whose ``device_bytes`` fit ``device_room``).
    device_room : int
        Free device bytes of that worker.

    Returns
    -------
    dict or None
        The job record (:func:`get_job`), or None when no job qualifies.
    """
    values = [now, int(device_room)] if gpu_worker else [now]
    if await db.fetchval(_shared_pick(gpu_worker, 1, lock=False), *values) is None:
        return None
    pick = _shared_pick(gpu_worker, 3, lock)
    row = await db.fetchrow(
        f"UPDATE service_jobs SET owner = $1, lease_expires_at = $2 WHERE id = ({pick}) "
        f"AND status = 'queued' AND owner = '' RETURNING {_JOB_COLUMNS}",
        owner,
        lease_until,
        *values,
    )
    return None if row is None else _job(row)


async def renew_lease(db: Queries, job_id: str, owner: str, lease_until: float) -> bool:
    """Extend the lease of a queued or running job of ``owner``; False when it ended or another replica took it."""
    renewed = await db.fetchval(
        "UPDATE service_jobs SET lease_expires_at = $3 "
        "WHERE id = $1 AND owner = $2 AND status IN ('queued', 'running') RETURNING id",
        job_id,
        owner,
        lease_until,
    )
    return renewed is not None


async def expired_jobs(db: Queries, now: float, lease_s: float, limit: int, *, lock: bool) -> list[dict[str, Any]]:
    """Queued or running jobs held by a replica whose lease expired before ``now``, oldest first (jobs waiting in
    the shared queue are held by none and never expire).

    ``lock`` (PostgreSQL, inside a transaction) locks the rows and skips those another replica holds.
    """
    sql = (
        "SELECT id, status, attempts, capability, owner FROM service_jobs WHERE status IN ('queued', 'running') "
        f"AND owner <> '' AND {_LEASE} < $1 ORDER BY created_at LIMIT $2"
    )
    rows = await db.fetch(sql + (" FOR UPDATE SKIP LOCKED" if lock else ""), now, limit, lease_s)
    return [
        {
            "id": r["id"],
            "status": r["status"],
            "attempts": int(r["attempts"]),
            "capability": r["capability"],
            "owner": r["owner"],
        }
        for r in rows
    ]


async def release_expired_job(db: Queries, job_id: str, now: float, lease_s: float) -> bool:
    """Put a job with an expired lease back in the shared queue (inside a transaction); False when its lease was
    renewed or it ended meanwhile."""
    released = await db.fetchval(
        "UPDATE service_jobs SET status = 'queued', owner = '', lease_expires_at = NULL, progress = 0.0 "
        f"WHERE id = $1 AND status IN ('queued', 'running') AND owner <> '' AND {_LEASE} < $2 RETURNING id",
        job_id,
        now,
        lease_s,
    )
    return released is not None


async def take_over_job(db: Queries, job_id: str, now: float, lease_s: float, owner: str) -> bool:
    """Re-queue a job with an expired lease under ``owner``; False when its lease was renewed or it ended meanwhile."""
    taken = await db.fetchval(
        "UPDATE service_jobs SET status = 'queued', owner = $4, lease_expires_at = $5, progress = 0.0 "
        f"WHERE id = $1 AND status IN ('queued', 'running') AND {_LEASE} < $2 RETURNING id",
        job_id,
        now,
        lease_s,
        owner,
        now + lease_s,
    )
    return taken is not None


async def fail_expired_job(db: Queries, job_id: str, now: float, lease_s: float, error: Mapping[str, Any]) -> bool:
    """Mark a job with an expired lease failed (inside a transaction); False when renewed or ended meanwhile."""
    failed = await db.fetchval(
        "UPDATE service_jobs SET status = 'failed', progress = 0.0, finished_at = $2, error = $4, "
        f"lease_expires_at = NULL WHERE id = $1 AND status IN ('queued', 'running') AND {_LEASE} < $2 RETURNING id",
        job_id,
        now,
        lease_s,
        json.dumps(error),
    )
    return failed is not None


async def record_worker(db: Queries, worker_id: str, capability: str, now: float, forget_before: float) -> None:
    """Note that job worker ``worker_id`` of ``capability`` is alive at ``now``; forget workers unseen since
    ``forget_before`` (a restarted process comes back under a new id)."""
    await db.execute(
        "INSERT INTO service_workers (id, capability, seen_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET capability = excluded.capability, seen_at = excluded.seen_at",
        worker_id,
        capability,
        now,
    )
    await db.execute("DELETE FROM service_workers WHERE seen_at < $1", forget_before)


async def workers_seen(db: Queries, capability: str, since: float) -> int:
    """How many job workers of ``capability`` were seen alive at or after ``since``."""
    count = await db.fetchval(
        "SELECT COUNT(*) FROM service_workers WHERE capability = $1 AND seen_at >= $2", capability, since
    )
    return int(count or 0)


async def set_progress(db: Queries, job_id: str, progress: float) -> None:
    """Record a running job's progress (0..1)."""
    await db.execute(
        "UPDATE service_jobs SET progress = $2 WHERE id = $1 AND status = 'running'", job_id, float(progress)
    )


async def finish_job(
    db: Queries,
    job_id: str,
    status: str,
    now: float,
    *,
    error: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    array: Mapping[str, Any] | None = None,
    owner: str | None = None,
    expires_at: float | None = None,
) -> bool:
    """Record a running job's end and its result (inside a transaction).

    ``array`` is a :class:`catalytic.service.results.StoredArray` as a dict: ``npy`` bytes for the database,
    or ``ref`` to the results store, with ``sha256`` and ``nbytes`` either way. False when the job had been
    cancelled or, with ``owner`` given, taken over by another replica meanwhile.
    """
    updated = await db.fetchval(
        "UPDATE service_jobs SET status = $2, progress = $3, finished_at = $4, error = $5, has_array = $6, "
        "lease_expires_at = NULL WHERE id = $1 AND status = 'running' AND owner = COALESCE($7, owner) "
        "RETURNING id",
        job_id,
        status,
        1.0 if status == "succeeded" else 0.0,
        now,
        None if error is None else json.dumps(error),
        int(array is not None),
        owner,
    )
    if updated is None:
        return False
    if body is not None:
        text = json.dumps(body)  # ASCII (non-ASCII escaped): its length is its size in bytes
        held = len(text) + (0 if array is None else int(array["nbytes"]))
        await db.execute(
            "INSERT INTO service_results (job_id, body, npy, created_at, array_ref, array_sha256, array_bytes, "
            "expires_at, held_bytes, tenant) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            "(SELECT tenant FROM service_jobs WHERE id = $1))",
            job_id,
            text,
            None if array is None else array.get("npy"),
            now,
            None if array is None else array.get("ref"),
            None if array is None else array["sha256"],
            None if array is None else int(array["nbytes"]),
            expires_at,
            held,
        )
        await db.execute(
            "INSERT INTO service_tenant_usage AS usage (tenant, result_bytes) "
            "SELECT tenant, $2 FROM service_jobs WHERE id = $1 "
            "ON CONFLICT (tenant) DO UPDATE SET result_bytes = usage.result_bytes + excluded.result_bytes",
            job_id,
            held,
        )
    return True


async def cancel_job(db: Queries, job_id: str, now: float, tenant: str | None = None) -> bool:
    """Cancel a queued or running job (of ``tenant`` when given; inside a transaction); False when it had already
    finished."""
    cancelled = await db.fetchval(
        "UPDATE service_jobs SET status = 'cancelled', finished_at = $2 "
        "WHERE id = $1 AND tenant = COALESCE($3, tenant) AND status IN ('queued', 'running') RETURNING id",
        job_id,
        now,
        tenant,
    )
    return cancelled is not None


async def get_result(db: Queries, job_id: str, *, with_array: bool) -> dict[str, Any] | None:
    """A finished job's JSON result, the array's store reference, digest, size and expiry and, when asked and
    kept in the database, its .npy bytes."""
    columns = "body, array_ref, array_sha256, array_bytes, expires_at" + (", npy" if with_array else "")
    row = await db.fetchrow(f"SELECT {columns} FROM service_results WHERE job_id = $1", job_id)
    if row is None:
        return None
    out: dict[str, Any] = {
        "body": json.loads(row["body"]),
        "array_ref": row["array_ref"],
        "array_sha256": row["array_sha256"],
        "array_bytes": None if row["array_bytes"] is None else int(row["array_bytes"]),
        "expires_at": None if row["expires_at"] is None else float(row["expires_at"]),
    }
    if with_array:
        out["npy"] = None if row["npy"] is None else bytes(row["npy"])
    return out


async def expired_results(db: Queries, now: float, ttl_s: float, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` results past their expiry (rows from before expiries: ``created_at + ttl_s``)."""
    rows = await db.fetch(
        "SELECT job_id, array_ref FROM service_results WHERE COALESCE(expires_at, created_at + $2) < $1 "
        "ORDER BY job_id LIMIT $3",
        now,
        ttl_s,
        limit,
    )
    return [{"job_id": r["job_id"], "array_ref": r["array_ref"]} for r in rows]


async def delete_results(db: Queries, job_ids: list[str]) -> None:
    """Delete the result records of ``job_ids`` and take their bytes off their tenants' totals (call inside a
    transaction; their store files are deleted first, by the caller)."""
    for job_id in job_ids:
        row = await db.fetchrow("DELETE FROM service_results WHERE job_id = $1 RETURNING tenant, held_bytes", job_id)
        if row is not None:
            await db.execute(
                "UPDATE service_tenant_usage SET result_bytes = result_bytes - $2 WHERE tenant = $1",
                row["tenant"],
                int(row["held_bytes"]),
            )


async def delete_finished_job_arrays(db: Queries, finished_before: float) -> None:
    """Delete the uploaded arrays of inline-lattice jobs that finished before ``finished_before``."""
    await db.execute(
        "DELETE FROM service_arrays WHERE owner_id IN (SELECT id FROM service_jobs WHERE lattice_id IS NULL "
        "AND status IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1)",
        finished_before,
    )
