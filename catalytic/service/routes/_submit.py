"""Queueing a job, shared by ``POST /api/jobs`` and the computations that turn into jobs when large."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse

from catalytic.operations import path_method
from catalytic.service import db as queries
from catalytic.service import quotas
from catalytic.service.admission import spec_job_bytes
from catalytic.service.errors import PayloadTooLarge, Unavailable
from catalytic.service.state import ResolvedLattice, ServiceState

__all__ = ["submit_job"]


async def submit_job(
    st: ServiceState,
    operation: str,
    resolved: ResolvedLattice,
    params: dict[str, Any],
    backend: str | None,
    tenant: str,
) -> JSONResponse:
    """Record a queued job of ``tenant`` and hand it to this replica's runner; answers 202 with a Location header.

    Raises
    ------
    QuotaExceeded
        The tenant's vertex (413), queued-jobs or result-bytes quota (429) is used up.
    PayloadTooLarge
        The job's memory estimate is over what this server process may give jobs (413, naming the limit).
    Unavailable
        The local queue is full, or the results store is at RESULTS_STORE_MAX_BYTES (503 with Retry-After).
    """
    quotas.check_vertices(st.settings, tenant, resolved.lattice.vertices)
    await quotas.check_job(st.db, st.settings, tenant)
    if st.sweeper is not None and st.sweeper.full:
        raise Unavailable(
            f"the results store holds {st.sweeper.store_bytes} bytes, at its limit "
            f"RESULTS_STORE_MAX_BYTES={st.settings.results_store_max_bytes}; results expire after "
            f"RESULT_TTL={st.settings.result_ttl_s:g} s",
            st.settings.retry_after_s,
        )
    gate = st.runner.memory
    needed = spec_job_bytes(operation, resolved.lattice.spec())
    if gate is not None and not gate.fits_ever(needed):
        limit, source = st.memory_limit
        raise PayloadTooLarge(
            f"the {operation} job would need about {needed} bytes at its peak, over the {gate.budget} bytes "
            f"this server process gives jobs (memory limit {limit} bytes from {source}, less "
            f"CATALYTIC_MEMORY_RESERVED_BYTES={st.settings.memory_reserved_bytes}, shared by "
            f"{st.settings.web_workers} server processes)",
            fields=[
                {
                    "field": "shape",
                    "message": f"about {needed} bytes for {resolved.lattice.vertices} vertices",
                    "allowed": f"at most {gate.budget} bytes",
                }
            ],
        )
    if not st.runner.has_capacity():
        raise Unavailable(
            f"the job queue is full ({st.runner.pending} jobs queued or running)", st.settings.retry_after_s
        )
    job_id = queries.new_id("job")
    spec = resolved.lattice.spec()
    owner = resolved.lattice_id or job_id
    method = path_method(resolved.lattice, params) if operation == "shortest_path" else None
    placed = await st.runner.place(operation, method, spec, backend)
    async with st.db.transaction() as conn:
        await queries.insert_job(
            conn,
            {
                "id": job_id,
                "operation": operation,
                "lattice_id": resolved.lattice_id,
                "spec": spec,
                "params": params,
                "backend": backend,
                "created_at": time.time(),
                "tenant": tenant,
                **placed,
            },
        )
        if resolved.lattice_id is None:
            await queries.insert_arrays(conn, job_id, resolved.arrays)
    st.runner.submit(
        job_id,
        {
            "operation": operation,
            "spec": spec,
            "params": params,
            "backend": backend or st.settings.backend,
            "memory": st.settings.lattice_memory_optimization,
            "max_sizes": st.settings.max_inline_sizes,
            "arrays_owner": owner,
        },
        placed,
    )
    location = f"/api/jobs/{job_id}"
    return JSONResponse(
        {"id": job_id, "status": "queued", "location": location}, status_code=202, headers={"Location": location}
    )
