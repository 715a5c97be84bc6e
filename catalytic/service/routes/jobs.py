"""Jobs: submit, status, result (JSON, arrays as .npy), cancel. Any replica answers for any job."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.service import db as queries
from catalytic.service.errors import Conflict, NotFound
from catalytic.service.jobs import job_event, job_timings
from catalytic.service.routes._submit import submit_job
from catalytic.service.schemas import PARAMS_MODELS, JobRequest
from catalytic.service.state import read_model, service

__all__ = ["cancel_job", "create_job", "get_job", "get_job_result"]


async def create_job(request: Request) -> Response:
    """POST /api/jobs: queue an operation; 202 with the job id and a Location header."""
    st = service(request)
    body = await read_model(request, JobRequest)
    params = PARAMS_MODELS[body.operation].model_validate(body.params).model_dump()
    resolved = await st.resolve(body.lattice_id, body.lattice)
    if body.operation == "shortest_path":
        resolved.lattice.index_of(params["start"], "params.start")
        resolved.lattice.index_of(params["goal"], "params.goal")
    elif body.operation == "distance_field":
        resolved.lattice.index_of(params["sources"], "params.sources")
    return await submit_job(st, body.operation, resolved, params, body.backend)


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
    }


async def _job(request: Request) -> dict:
    job = await queries.get_job(service(request).db, request.path_params["job_id"])
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
        raise NotFound(f"job {job['id']} has no stored result")
    if wants_npy:
        filename = f"{job['id']}-{job['operation']}.npy"
        return Response(
            result["npy"],
            media_type="application/x-npy",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    array_url = f"/api/jobs/{job['id']}/result?format=npy" if job["has_array"] else None
    return JSONResponse(
        {"id": job["id"], "operation": job["operation"], "result": result["body"], "array_url": array_url}
    )


async def cancel_job(request: Request) -> Response:
    """DELETE /api/jobs/{id}: cancel a queued or running job; the replica running it kills its worker."""
    st = service(request)
    job_id = request.path_params["job_id"]
    async with st.db.transaction() as conn:
        if not await queries.cancel_job(conn, job_id, time.time()):
            job = await queries.get_job(conn, job_id)
            if job is None:
                raise NotFound(f"no job {job_id!r}")
            raise Conflict(f"job {job_id} already {job['status']}")
        job = await queries.get_job(conn, job_id)
        assert job is not None
        if st.emit is not None:
            await st.emit(conn, "job.cancelled", job_event(job))
    st.runner.cancel(job_id)
    return JSONResponse(_status(job))
