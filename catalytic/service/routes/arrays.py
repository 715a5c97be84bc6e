"""Uploaded arrays: POST /api/arrays streams one to disk; GET /api/arrays/{digest} downloads it (with ranges);
DELETE /api/arrays/{digest} gives up the tenant's claim on it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.service import uploads
from catalytic.service.errors import Conflict, NotFound, ServiceError, UnsupportedMediaType
from catalytic.service.quotas import held_result_bytes
from catalytic.service.ranges import ranged_response
from catalytic.service.results import read_range
from catalytic.service.state import service
from catalytic.tenancy import tenant_of

__all__ = ["ArrayDeleted", "delete_array", "get_array", "upload_array"]


class ArrayDeleted(BaseModel):
    """The tenant's claim on the array is gone (the file with it once no other tenant holds it)."""

    digest: str
    deleted: bool


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def upload_array(request: Request) -> Response:
    """POST /api/arrays: a .npy file, or raw little-endian bytes with ``?dtype=&shape=``; 201 with its digest."""
    st = service(request)
    tenant = tenant_of(request.scope)
    media_type = _media_type(request)
    dtype = shape = None
    if media_type == uploads.RAW_MEDIA_TYPE:
        dtype = request.query_params.get("dtype") or request.headers.get("x-array-dtype")
        shape = uploads.parse_shape(request.query_params.get("shape") or request.headers.get("x-array-shape"))
        if not dtype:
            raise ServiceError(
                "dtype: missing (a raw body needs its dtype)",
                fields=[{"field": "dtype", "message": "missing", "allowed": ", ".join(uploads.DTYPES)}],
            )
    elif media_type != uploads.NPY_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"the body's media type is {media_type or 'none'}; send a .npy file or raw bytes",
            fields=[
                {
                    "field": "Content-Type",
                    "message": media_type or "none",
                    "allowed": f"{uploads.NPY_MEDIA_TYPE}, or {uploads.RAW_MEDIA_TYPE} with dtype and shape",
                }
            ],
        )
    declared_text = request.headers.get("content-length")
    declared = int(declared_text) if declared_text is not None and declared_text.isdigit() else None
    store = st.arrays
    held = await held_result_bytes(st.db, tenant) + await asyncio.to_thread(store.tenant_bytes, tenant)
    info = await store.receive(
        request.stream(),
        tenant,
        declared=declared,
        limit=st.settings.max_upload_bytes,
        limit_name="CATALYTIC_MAX_UPLOAD_BYTES",
        quota_left=max(0, st.settings.tenant_max_result_bytes - held),
        dtype=dtype,
        shape=shape,
    )
    body = info.to_json()
    return JSONResponse(body, status_code=201, headers={"Location": body["url"]})


async def get_array(request: Request) -> Response:
    """GET /api/arrays/{digest}: the stored .npy file; ``Range`` selects part of it (206)."""
    st = service(request)
    digest = request.path_params["digest"]
    store = st.arrays
    info = await asyncio.to_thread(store.info, digest, tenant_of(request.scope))
    path = store.path(digest)

    def open_range(start: int, stop: int) -> Iterator[bytes]:
        with open(path, "rb") as handle:
            yield from read_range(handle, start, stop)

    return await ranged_response(
        request,
        info.nbytes,
        open_range,
        media_type=uploads.NPY_MEDIA_TYPE,
        etag=f'"{digest[7:]}"',
        headers={
            "Content-Disposition": f'attachment; filename="{digest[7:]}.npy"',
            "Repr-Digest": f"sha-256=:{_b64(digest[7:])}:",
        },
    )


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


async def delete_array(request: Request) -> Response:
    """DELETE /api/arrays/{digest}: remove the tenant's claim; 409 while its stored lattices or jobs name the array.

    A stored lattice keeps only the digest in its spec and maps the file again whenever it is materialised, so
    the array cannot go from under it: the lattice (or the job) is named in the 409, to be deleted first.
    """
    st = service(request)
    digest = request.path_params["digest"]
    tenant = tenant_of(request.scope)
    store = st.arrays
    await asyncio.to_thread(store.info, digest, tenant)  # 404 for a missing digest or another tenant's
    users = await uploads.referencing(st.db, digest, tenant)
    if digest in users:
        raise Conflict(
            f"the array {digest} is named by {users[digest]}; delete that first",
            fields=[{"field": "digest", "message": f"named by {users[digest]}", "allowed": "an array nothing names"}],
        )
    if not await asyncio.to_thread(store.release, digest, tenant):
        raise NotFound(f"no array {digest!r}", fields=[{"field": "digest", "message": "unknown", "allowed": None}])
    return JSONResponse({"digest": digest, "deleted": True})
