"""Events and deliveries: what was sent where, with every attempt's outcome."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.tenancy import tenant_of
from catalytic.webhooks import store
from catalytic.webhooks.routes._http import (
    MAX_LIMIT,
    ApiContext,
    delivery_or_404,
    endpoint_or_404,
    not_found,
    read_query,
)

__all__ = ["DeliveryQuery", "deliveries", "event", "one_delivery"]

DeliveryStatus = Literal["pending", "succeeded", "failed", "dead"]


class DeliveryQuery(BaseModel):
    """Query of GET .../deliveries."""

    model_config = ConfigDict(extra="forbid")

    status: DeliveryStatus | None = None
    since: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)


async def deliveries(request: Request, ctx: ApiContext) -> Response:
    """GET /api/webhooks/{id}/deliveries?status=&since=&limit=: an endpoint's deliveries, newest first."""
    endpoint_id = request.path_params["endpoint_id"]
    query = read_query(request, DeliveryQuery)
    conn = ctx.database()
    await endpoint_or_404(conn, endpoint_id, tenant_of(request.scope))
    items = await store.list_deliveries(
        conn, endpoint_id=endpoint_id, status=query.status, since=query.since, limit=query.limit
    )
    return JSONResponse({"deliveries": items})


async def one_delivery(request: Request, ctx: ApiContext) -> Response:
    """GET /api/webhooks/{id}/deliveries/{delivery_id}: one delivery with its attempts."""
    return JSONResponse(await delivery_or_404(ctx.database(), request))


async def event(request: Request, ctx: ApiContext) -> Response:
    """GET /api/webhooks/events/{event_id}: one event with its deliveries."""
    event_id = request.path_params["event_id"]
    found = await store.get_event(ctx.database(), event_id, tenant_of(request.scope))
    if found is None:
        raise not_found("event", event_id)
    return JSONResponse(found)
