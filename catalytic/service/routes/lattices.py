"""Lattices (create, read, list, delete) and the computations on them (path, analyze, components, distance field)."""

from __future__ import annotations

import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.kernels import check_method
from catalytic.service import compute, defaults, quotas
from catalytic.service import db as queries
from catalytic.service.errors import NotFound, ServiceError
from catalytic.service.lattice_limit import store_within_limit
from catalytic.service.metrics import (
    ACTIVE_LATTICES,
    BACKEND_FALLBACKS,
    LATTICE_OPERATION_DURATION,
    LATTICE_OPERATIONS,
    MEMORY_EFFICIENCY_RATIO,
)
from catalytic.service.routes._submit import submit_job
from catalytic.service.schemas import (
    AnalyzeRequest,
    ComponentsRequest,
    DistanceFieldRequest,
    LatticeCreate,
    PathRequest,
)
from catalytic.service.state import ResolvedLattice, ServiceState, read_model, service
from catalytic.service.telemetry import note_lattice_size
from catalytic.storage import Connection
from catalytic.tenancy import tenant_of

__all__ = [
    "analyze",
    "components",
    "create_lattice",
    "delete_lattice",
    "distance_field",
    "get_lattice",
    "list_lattices",
    "shortest_path",
]


async def create_lattice(request: Request) -> Response:
    """POST /api/lattice/create: store a lattice; 201 with its counts and memory report."""
    st = service(request)
    body = await read_model(request, LatticeCreate)
    tenant = tenant_of(request.scope)
    quotas.check_vertices(st.settings, tenant, math.prod(body.shape))
    lattice = await st.build(body, tenant)
    counts = await st.compute(compute.lattice_counts, lattice)
    arrays = await st.compute(compute.array_bytes, lattice)
    record = {"id": queries.new_id("lat"), "spec": lattice.spec(), **counts, "created_at": time.time()}
    record["tenant"] = tenant

    tenant_stored = 0

    async def count(conn: Connection) -> int:
        nonlocal tenant_stored
        stored, tenant_stored = await queries.count_lattices_of(conn, tenant)
        return stored

    async def write(conn: Connection) -> None:
        quotas.check_lattice(st.settings, tenant, tenant_stored)
        await queries.insert_lattice(conn, record, arrays)
        if st.emit is not None:
            await st.emit(conn, "lattice.created", _event(record), tenant=tenant)

    settings = st.settings
    stored = await store_within_limit(
        st.db, settings.max_lattices, settings.retry_after_s, count, write,
        tenant_lock=quotas.tenant_lock(tenant, "max_lattices"),
    )  # fmt: skip
    st.lattices.put(record["id"], lattice)
    ACTIVE_LATTICES.set(stored)
    MEMORY_EFFICIENCY_RATIO.set(float(counts["memory"]["memory_efficiency_ratio"]))
    location = f"/api/lattice/{record['id']}"
    return JSONResponse(_info(record, with_spec=False), status_code=201, headers={"Location": location})


def _event(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in ("id", "vertices", "open_vertices", "edges", "created_at")}


def _info(record: dict[str, Any], *, with_spec: bool) -> dict[str, Any]:
    info = {key: record[key] for key in ("id", "vertices", "open_vertices", "edges", "memory", "created_at")}
    if with_spec:
        info["spec"] = record["spec"]
    return info


async def get_lattice(request: Request) -> Response:
    """GET /api/lattice/{id}."""
    st = service(request)
    record = await queries.get_lattice(st.db, request.path_params["lattice_id"], tenant_of(request.scope))
    if record is None:
        raise NotFound(f"no lattice {request.path_params['lattice_id']!r}")
    return JSONResponse(_info(record, with_spec=True))


def _limit(request: Request, st: ServiceState) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return min(defaults.PAGE_LIMIT, st.settings.max_page_limit)
    allowed = f"an integer from 1 to {st.settings.max_page_limit}"
    if not raw.isdigit() or not 1 <= int(raw) <= st.settings.max_page_limit:
        raise ServiceError(
            f"limit {raw!r} is out of range", fields=[{"field": "limit", "message": "out of range", "allowed": allowed}]
        )
    return int(raw)


async def list_lattices(request: Request) -> Response:
    """GET /api/lattices?limit=&cursor=: lattices in creation order, one page at a time."""
    st = service(request)
    limit = _limit(request, st)
    rows = await queries.list_lattices(st.db, tenant_of(request.scope), request.query_params.get("cursor"), limit + 1)
    page = rows[:limit]
    next_cursor = page[-1]["id"] if len(rows) > limit else None
    return JSONResponse({"items": [_info(r, with_spec=True) for r in page], "next_cursor": next_cursor})


async def delete_lattice(request: Request) -> Response:
    """DELETE /api/lattice/{id}: removes the lattice and its arrays everywhere (every replica re-checks ids)."""
    st = service(request)
    lattice_id = request.path_params["lattice_id"]
    tenant = tenant_of(request.scope)
    async with st.db.transaction() as conn:
        remaining = await queries.delete_lattice(conn, lattice_id, tenant)
        if remaining is None:
            raise NotFound(f"no lattice {lattice_id!r}")
        if st.emit is not None:
            await st.emit(conn, "lattice.deleted", {"id": lattice_id, "deleted_at": time.time()}, tenant=tenant)
    st.lattices.pop(lattice_id)
    ACTIVE_LATTICES.set(remaining)
    return JSONResponse({"id": lattice_id, "deleted": True})


def _ttl(st: ServiceState, resolved_id: str | None) -> int:
    # Answers on stored lattices are fixed for the id's lifetime; inline specs are ad hoc and kept briefly.
    return st.settings.cache_ttl_computed_s if resolved_id is not None else st.settings.cache_ttl_dynamic_s


async def _computation(
    request: Request,
    operation: str,
    resolved: ResolvedLattice,
    params: dict[str, Any],
    backend: str | None,
    cache_key: str,
) -> Response:
    """Run an operation inline (compute processes or threads, time limit), or as a job when it is too large."""
    st = service(request)
    lattice = resolved.lattice
    as_job = lattice.vertices > st.settings.inline_max_vertices
    await st.check_backend(backend, job=as_job)
    if as_job:
        return await submit_job(st, operation, resolved, params, backend, tenant_of(request.scope))
    t0 = time.perf_counter()
    outcome = await st.run_inline(resolved, operation, params, backend)
    LATTICE_OPERATION_DURATION.labels(operation).observe(time.perf_counter() - t0)
    LATTICE_OPERATIONS.labels(operation, outcome.backend or "none").inc()
    if outcome.fallbacks:
        BACKEND_FALLBACKS.inc(outcome.fallbacks)
    await st.cache.put(cache_key, outcome.hit, _ttl(st, resolved.lattice_id))
    return Response(outcome.fresh, media_type="application/json")


async def _cached(st: ServiceState, lattice_id: str | None, tenant: str, key: str) -> bytes | None:
    if lattice_id is not None and not await st.exists(lattice_id, tenant):
        raise NotFound(
            f"no lattice {lattice_id!r}", fields=[{"field": "lattice_id", "message": "unknown id", "allowed": None}]
        )
    return await st.cache.get(key)


async def shortest_path(request: Request) -> Response:
    """POST /api/lattice/path: the canonical shortest path, or ``{"found": false}`` when unreachable."""
    st = service(request)
    body = await read_model(request, PathRequest)
    tenant = tenant_of(request.scope)
    query = f"{body.backend}|{body.method}|{body.start}|{body.goal}"
    if body.lattice_id is not None:
        key = f"path|id:{body.lattice_id}|{query}"
        hit = await _cached(st, body.lattice_id, tenant, key)
        if hit is not None:
            held = st.lattices.get(body.lattice_id)
            note_lattice_size(request.scope, None if held is None else held.vertices)
            return Response(hit, media_type="application/json")
    # A stored id was checked by _cached just now; it is not checked twice.
    resolved = await st.resolve(body.lattice_id, body.lattice, tenant, known_to_exist=body.lattice_id is not None)
    note_lattice_size(request.scope, resolved.lattice.vertices)
    key = f"path|{resolved.key}|{query}"
    if body.lattice_id is None:
        hit = await st.cache.get(key)
        if hit is not None:
            return Response(hit, media_type="application/json")
    if resolved.lattice.vertices > st.settings.inline_max_vertices:
        # Runs as a job: bad endpoints are refused now (422), not as a failed job later. An inline query
        # checks them in the kernel call, whose errors answer 422 the same way.
        resolved.lattice.check_vertex(body.start, "start")
        resolved.lattice.check_vertex(body.goal, "goal")
        check_method(resolved.lattice, body.method)
    params = {"start": body.start, "goal": body.goal, "method": body.method}
    return await _computation(request, "shortest_path", resolved, params, body.backend, key)


async def _structure(request: Request, operation: str, body: AnalyzeRequest | ComponentsRequest) -> Response:
    st = service(request)
    tenant = tenant_of(request.scope)
    prefix = f"{operation}|{body.backend}"
    if body.lattice_id is not None:
        hit = await _cached(st, body.lattice_id, tenant, f"{prefix}|id:{body.lattice_id}")
        if hit is not None:
            return Response(hit, media_type="application/json")
    resolved = await st.resolve(body.lattice_id, body.lattice, tenant, known_to_exist=body.lattice_id is not None)
    key = f"{prefix}|{resolved.key}"
    if body.lattice_id is None:
        hit = await st.cache.get(key)
        if hit is not None:
            return Response(hit, media_type="application/json")
    return await _computation(request, operation, resolved, {}, body.backend, key)


async def analyze(request: Request) -> Response:
    """POST /api/lattice/analyze: counts, components, degree histogram, diameter."""
    return await _structure(request, "analyze", await read_model(request, AnalyzeRequest))


async def components(request: Request) -> Response:
    """POST /api/lattice/components: component count and sizes (labels: run a components job)."""
    return await _structure(request, "components", await read_model(request, ComponentsRequest))


async def distance_field(request: Request) -> Response:
    """POST /api/lattice/distance-field: always a job (202 + Location); the field is a .npy result."""
    st = service(request)
    body = await read_model(request, DistanceFieldRequest)
    tenant = tenant_of(request.scope)
    resolved = await st.resolve(body.lattice_id, body.lattice, tenant)
    await st.compute(compute.check_open_vertices, resolved.lattice, body.sources, "sources")
    await st.check_backend(body.backend, job=True)
    return await submit_job(st, "distance_field", resolved, {"sources": body.sources}, body.backend, tenant)
