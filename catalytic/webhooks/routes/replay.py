"""Replay: send finished deliveries again, one by id or every failed or dead one since a time."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.tenancy import tenant_of
from catalytic.webhooks import store
from catalytic.webhooks.routes._http import ApiContext, HTTPError, delivery_or_404, endpoint_or_404, read_body

__all__ = ["ReplaySince", "replay_one", "replay_since"]


class ReplaySince(BaseModel):
    """Body of POST /api/webhooks/{id}/replay."""

    model_config = ConfigDict(extra="forbid")

    since: float = Field(ge=0, allow_inf_nan=False)


async def replay_one(request: Request, ctx: ApiContext) -> Response:
    """POST /api/webhooks/{id}/deliveries/{delivery_id}/replay: 202; 409 while the delivery is pending."""
    async with ctx.database().transaction() as conn:
        found = await delivery_or_404(conn, request)
        await endpoint_or_404(conn, request.path_params["endpoint_id"], tenant_of(request.scope))
        replayed = await store.replay_delivery(conn, found["id"], now=ctx.clock())
    if not replayed:
        raise HTTPError(409, "delivery_pending", f"delivery {found['id']!r} is still pending")
    ctx.queued()
    return JSONResponse({"replayed": 1, "delivery_id": found["id"]}, status_code=202)


async def replay_since(request: Request, ctx: ApiContext) -> Response:
    """POST /api/webhooks/{id}/replay: 202 with how many failed or dead deliveries since ``since`` were queued."""
    endpoint_id = request.path_params["endpoint_id"]
    body = await read_body(request, ReplaySince)
    async with ctx.database().transaction() as conn:
        await endpoint_or_404(conn, endpoint_id, tenant_of(request.scope))
        count = await store.replay_failed(conn, endpoint_id, since=body.since, now=ctx.clock())
    if count:
        ctx.queued()
    return JSONResponse({"replayed": count}, status_code=202)
