"""Jobs: submit, status, result (JSON, arrays as .npy), cancel. Any replica answers for any job.

An array result is streamed from where it is kept: the database row for small ones, the results store
(:mod:`catalytic.service.results`) for the rest. Either way the download carries its size and its SHA-256
(``Repr-Digest``, RFC 9530) and takes a ``Range`` header (206, :mod:`catalytic.service.ranges`) so a large
download resumes; a result past ``RESULT_TTL`` answers 410.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from collections.abc import Iterator

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.kernels import check_method
from catalytic.service import db as queries
from catalytic.service.compute import check_open_vertices
from catalytic.service.errors import Conflict, NotFound, ServiceError, invalid_body
from catalytic.service.jobs import job_event, job_placement, job_timings
from catalytic.service.ranges import ranged_response
from catalytic.service.results import ResultNotStored, open_store, store_config
from catalytic.service.routes._submit import submit_job
from catalytic.service.schemas import PARAMS_MODELS, JobRequest
from catalytic.service.state import ServiceState, read_model, service
from catalytic.tenancy import tenant_of

__all__ = ["ResultGone", "cancel_job", "create_job", "get_job", "get_job_result"]


class ResultGone(ServiceError):
    """A succeeded job whose result expired (RESULT_TTL) and was deleted."""

    status = 410
    code = "gone"


async def create_job(request: Request) -> Response:
    """POST /api/jobs: queue an operation; 202 with the job id and a Location header."""
    st = service(request)
    body = await read_model(request, JobRequest)
    params_model = PARAMS_MODELS[body.operation]
    try:
        params = params_model.model_validate(body.params).model_dump()
    except ValidationError as exc:
        raise invalid_body(exc, params_model, ("params",)) from None
    tenant = tenant_of(request.scope)
    resolved = await st.resolve(body.lattice_id, body.lattice, tenant)
    # Bad input is refused now (422), not accepted and failed later: endpoints and sources in range and open.
    if body.operation == "shortest_path":
        resolved.lattice.check_vertex(params["start"], "params.start")
        resolved.lattice.check_vertex(params["goal"], "params.goal")
        check_method(resolved.lattice, params["method"], "params.method")
    elif body.operation == "distance_field":
        await st.compute(check_open_vertices, resolved.lattice, params["sources"], "params.sources")
    await st.check_backend(body.backend, job=True)
    return await submit_job(st, body.operation, resolved, params, body.backend, tenant)


def _status(job: dict) -> dict:
    return {
        "id": job["id"],
        "operation": job["operation"],
        "status": job["status"],
        "progress": job["progress"],
        "error": job["error"],
        "lattice_id": job["lattice_id"],
        "timings": job_timings(job),
        "result_url": f"/api/jobs/{job['id']}/result" if job["status"] == "succeeded" else None,
        "placement": job_placement(job),
    }


async def _job(request: Request) -> dict:
    job = await queries.get_job(service(request).db, request.path_params["job_id"], tenant_of(request.scope))
    if job is None:
        raise NotFound(f"no job {request.path_params['job_id']!r}")
    return job


async def get_job(request: Request) -> Response:
    """GET /api/jobs/{id}: status, progress 0..1 and timings."""
    return JSONResponse(_status(await _job(request)))


def _wants_npy(request: Request) -> bool:
    return request.query_params.get("format") == "npy" or "application/x-npy" in request.headers.get("accept", "")


async def get_job_result(request: Request) -> Response:
    """GET /api/jobs/{id}/result: the JSON answer; ``?format=npy`` downloads the array of array results."""
    st = service(request)
    job = await _job(request)
    if job["status"] != "succeeded":
        raise Conflict(f"job {job['id']} is {job['status']}; results exist only for succeeded jobs")
    wants_npy = _wants_npy(request)
    if wants_npy and not job["has_array"]:
        raise NotFound(f"job {job['id']} ({job['operation']}) has no array result")
    result = await queries.get_result(st.db, job["id"], with_array=wants_npy)
    if result is None:
        # finish_job writes a success and its result in one transaction: only the sweeper takes a result away.
        raise ResultGone(
            f"the result of job {job['id']} expired and was deleted (results are kept RESULT_TTL="
            f"{st.settings.result_ttl_s:g} s after their job finished)"
        )
    if wants_npy:
        return await _array_response(request, st, job, result)
    array = None
    if job["has_array"]:
        array = {
            "url": f"/api/jobs/{job['id']}/result?format=npy",
            "bytes": result["array_bytes"],
            "sha256": result["array_sha256"],
            "stored_in": "database" if result["array_ref"] is None else "results_store",
        }
    return JSONResponse(
        {
            "id": job["id"],
            "operation": job["operation"],
            "result": result["body"],
            "array_url": None if array is None else array["url"],
            "array": array,
            "expires_at": result["expires_at"],
            "placement": job_placement(job),
        }
    )


async def _array_response(request: Request, st: ServiceState, job: dict, result: dict) -> Response:
    """The .npy of an array result, whole or the part a ``Range`` header selects (206), so a download resumes."""
    headers = {"Content-Disposition": f'attachment; filename="{job["id"]}-{job["operation"]}.npy"'}
    if result["array_sha256"]:
        digest = base64.b64encode(bytes.fromhex(result["array_sha256"])).decode()
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    etag = f'"{result["array_sha256"]}"' if result["array_sha256"] else None
    if result["array_ref"] is None:
        npy = result["npy"]

        def in_row(start: int, stop: int) -> Iterator[bytes]:
            yield npy[start:stop]

        return await ranged_response(
            request, len(npy), in_row, media_type="application/x-npy", etag=etag, headers=headers
        )
    # Opened (and its first piece read) before the answer starts, so a missing file is an error, not a cut stream;
    # every blocking read runs on a thread (StreamingResponse iterates a plain iterator on one too).
    store = await asyncio.to_thread(open_store, store_config(st.settings))
    in_store = functools.partial(store.chunks, result["array_ref"])
    try:
        return await ranged_response(
            request, result["array_bytes"], in_store, media_type="application/x-npy", etag=etag, headers=headers
        )
    except ResultNotStored as exc:
        raise ResultGone(f"the array result of job {job['id']} is no longer in the results store: {exc}") from None


async def cancel_job(request: Request) -> Response:
    """DELETE /api/jobs/{id}: cancel a queued or running job; the replica running it kills its worker."""
    st = service(request)
    job_id = request.path_params["job_id"]
    tenant = tenant_of(request.scope)
    async with st.db.transaction() as conn:
        if not await queries.cancel_job(conn, job_id, time.time(), tenant):
            job = await queries.get_job(conn, job_id, tenant)
            if job is None:
                raise NotFound(f"no job {job_id!r}")
            raise Conflict(f"job {job_id} already {job['status']}")
        job = await queries.get_job(conn, job_id)
        assert job is not None
        if st.emit is not None:
            await st.emit(conn, "job.cancelled", job_event(job), tenant=tenant)
    st.runner.cancel(job_id)
    return JSONResponse(_status(job))
