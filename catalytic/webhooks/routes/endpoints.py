"""Endpoints: register, list, read, change and delete them, rotate their secrets, send them a test event."""

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
    HTTPError,
    endpoint_or_404,
    invalid,
    not_found,
    read_body,
    read_query,
)
from catalytic.webhooks.safety import MAX_URL_LENGTH

__all__ = [
    "EndpointCreate",
    "EndpointUpdate",
    "PageQuery",
    "RotateSecret",
    "create",
    "delete",
    "get_one",
    "list_all",
    "rotate",
    "send_test",
    "update",
]

MAX_DESCRIPTION = 1000
MAX_OFFSET = 2**63 - 1

EventType = Literal[
    "job.succeeded", "job.failed", "job.cancelled", "lattice.created", "lattice.deleted", "webhook.test",
    "endpoint.disabled",
]  # fmt: skip


class EndpointCreate(BaseModel):
    """Body of POST /api/webhooks."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    event_types: list[EventType] = Field(default_factory=list)
    description: str = Field(default="", max_length=MAX_DESCRIPTION)


class EndpointUpdate(BaseModel):
    """Body of PATCH /api/webhooks/{id}; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    event_types: list[EventType] | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    enabled: bool | None = None


class RotateSecret(BaseModel):
    """Body of POST /api/webhooks/{id}/rotate-secret (optional)."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: float | None = Field(default=None, ge=0, le=30 * 86400)


class PageQuery(BaseModel):
    """Query of GET /api/webhooks."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="Endpoints to skip (a 64-bit SQL integer).")


async def create(request: Request, ctx: ApiContext) -> Response:
    """POST /api/webhooks: register an endpoint; 201 with its view and its secret, shown this once."""
    body = await read_body(request, EndpointCreate)
    await ctx.check_url(body.url)
    tenant = tenant_of(request.scope)
    limit = ctx.settings.max_endpoints_per_tenant
    async with ctx.database().transaction() as conn:
        registered = await store.count_endpoints(conn, tenant)
        if registered >= limit:
            raise HTTPError(
                403, "quota_exceeded",
                f"quota max_webhook_endpoints ({limit}) exceeded: {registered} endpoints are registered",
                [{"field": "quota.max_webhook_endpoints", "message": f"{registered} in use",
                  "allowed": f"at most {limit}"}],
            )  # fmt: skip
        view, secret = await store.create_endpoint(
            conn, body.url, body.event_types, body.description, now=ctx.clock(), tenant=tenant
        )
    return JSONResponse({**view, "secret": secret}, status_code=201)


async def list_all(request: Request, ctx: ApiContext) -> Response:
    """GET /api/webhooks?limit=&offset=: endpoints, oldest first, one page at a time."""
    query = read_query(request, PageQuery)
    items = await store.list_endpoints(
        ctx.database(), limit=query.limit, offset=query.offset, tenant=tenant_of(request.scope)
    )
    return JSONResponse({"endpoints": items, "limit": query.limit, "offset": query.offset})


async def get_one(request: Request, ctx: ApiContext) -> Response:
    """GET /api/webhooks/{id}: one endpoint, without its secrets."""
    row = await endpoint_or_404(ctx.database(), request.path_params["endpoint_id"], tenant_of(request.scope))
    return JSONResponse(store.endpoint_view(row))


async def update(request: Request, ctx: ApiContext) -> Response:
    """PATCH /api/webhooks/{id}: change url, event_types, description or enabled; absent fields stay."""
    endpoint_id = request.path_params["endpoint_id"]
    changes = (await read_body(request, EndpointUpdate)).model_dump(exclude_unset=True)
    for name in ("url", "description", "event_types", "enabled"):
        if name in changes and changes[name] is None:
            raise invalid(name, "must not be null")
    if "url" in changes:
        await ctx.check_url(changes["url"])
    async with ctx.database().transaction() as conn:
        view = await store.update_endpoint(conn, endpoint_id, changes, now=ctx.clock(), tenant=tenant_of(request.scope))
    if view is None:
        raise not_found("endpoint", endpoint_id)
    return JSONResponse(view)


async def delete(request: Request, ctx: ApiContext) -> Response:
    """DELETE /api/webhooks/{id}: 204; the endpoint's pending deliveries become dead."""
    endpoint_id = request.path_params["endpoint_id"]
    async with ctx.database().transaction() as conn:
        found = await store.delete_endpoint(conn, endpoint_id, now=ctx.clock(), tenant=tenant_of(request.scope))
    if not found:
        raise not_found("endpoint", endpoint_id)
    return Response(status_code=204)


async def rotate(request: Request, ctx: ApiContext) -> Response:
    """POST /api/webhooks/{id}/rotate-secret: a new secret; the old ones sign on for a grace period."""
    endpoint_id = request.path_params["endpoint_id"]
    body = await read_body(request, RotateSecret, optional=True)
    grace = ctx.settings.secret_grace if body.grace_seconds is None else body.grace_seconds
    now = ctx.clock()
    async with ctx.database().transaction() as conn:
        secret = await store.rotate_secret(conn, endpoint_id, now=now, grace_s=grace, tenant=tenant_of(request.scope))
    if secret is None:
        raise not_found("endpoint", endpoint_id)
    return JSONResponse({"secret": secret, "previous_secrets_expire_at": now + grace})


async def send_test(request: Request, ctx: ApiContext) -> Response:
    """POST /api/webhooks/{id}/test: 202 with the id of a ``webhook.test`` event queued for this endpoint."""
    endpoint_id = request.path_params["endpoint_id"]
    tenant = tenant_of(request.scope)
    now = ctx.clock()
    async with ctx.database().transaction() as conn:
        row = await endpoint_or_404(conn, endpoint_id, tenant)
        if not row["enabled"]:
            raise HTTPError(409, "endpoint_disabled", f"endpoint {endpoint_id!r} is disabled; enable it first")
        data = {"endpoint_id": endpoint_id, "message": "a test event from catalytic"}
        # A test always reaches the endpoint it was sent to, whatever the endpoint's type filter says.
        event_id = await store.emit(
            conn, "webhook.test", data, now=now, endpoint_ids=[endpoint_id],
            max_payload_bytes=ctx.settings.max_payload_bytes, ignore_filter=True, tenant=tenant,
        )  # fmt: skip
    ctx.queued()
    return JSONResponse({"event_id": event_id}, status_code=202)
