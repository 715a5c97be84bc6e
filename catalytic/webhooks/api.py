"""The webhook management API: Starlette routes under ``/api/webhooks``, mounted by the service.

========  ===============================================  ===============================================
method    path                                             what
========  ===============================================  ===============================================
POST      /api/webhooks                                    register; the answer carries ``secret``, once
GET       /api/webhooks                                    list endpoints
GET       /api/webhooks/{id}                               one endpoint
PATCH     /api/webhooks/{id}                               change url, event_types, description, enabled
DELETE    /api/webhooks/{id}                               delete (pending deliveries become dead)
POST      /api/webhooks/{id}/rotate-secret                 new secret; the old one signs for a grace period
POST      /api/webhooks/{id}/test                          send a ``webhook.test`` event to this endpoint
GET       /api/webhooks/{id}/deliveries                    deliveries with their attempts (status, since)
GET       /api/webhooks/{id}/deliveries/{delivery_id}      one delivery with its attempts
POST      /api/webhooks/{id}/deliveries/{delivery_id}/...  ``replay``: send one finished delivery again
POST      /api/webhooks/{id}/replay                        send again every failed or dead delivery since
GET       /api/webhooks/events/{event_id}                  one event with its deliveries
========  ===============================================  ===============================================

Errors are JSON: 422 with one entry per bad field, 404 for an unknown id, 409 for a conflicting state,
413 for an oversized body. Authentication is the mounting app's: pass its middleware to :func:`routes`, or
wrap the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from catalytic.errors import InvalidInputError, InvalidTypeError
from catalytic.storage import Database
from catalytic.webhooks import store
from catalytic.webhooks.config import WebhookConfig
from catalytic.webhooks.safety import MAX_URL_LENGTH, Resolver, system_resolver, validate_url

__all__ = ["MAX_BODY_BYTES", "routes"]

MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 1000
MAX_DESCRIPTION = 1000

EventType = Literal[
    "job.succeeded", "job.failed", "job.cancelled", "lattice.created", "lattice.deleted", "webhook.test",
    "endpoint.disabled",
]  # fmt: skip
DeliveryStatus = Literal["pending", "succeeded", "failed", "dead"]
Handler = Callable[[Request], Awaitable[Response]]
_Model = TypeVar("_Model", bound=BaseModel)


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


class ReplaySince(BaseModel):
    """Body of POST /api/webhooks/{id}/replay."""

    model_config = ConfigDict(extra="forbid")

    since: float = Field(ge=0)


class DeliveryQuery(BaseModel):
    """Query of GET .../deliveries."""

    model_config = ConfigDict(extra="forbid")

    status: DeliveryStatus | None = None
    since: float | None = Field(default=None, ge=0)
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)


class PageQuery(BaseModel):
    """Query of GET /api/webhooks."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0)


class _HTTPError(Exception):
    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail


def _error(status: int, code: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _not_found(what: str, value: str) -> _HTTPError:
    return _HTTPError(404, "not_found", f"no {what} with id {value!r}")


async def _json_body(request: Request, *, optional: bool = False) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _HTTPError(413, "body_too_large", f"the body is {declared} bytes (allowed: at most {MAX_BODY_BYTES})")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _HTTPError(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes (allowed: at most that)")
    if not raw.strip():
        if optional:
            return {}
        raise _HTTPError(422, "validation_error", [{"field": "body", "message": "a JSON object is required"}])
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _HTTPError(422, "validation_error", [{"field": "body", "message": f"invalid JSON: {exc}"}]) from exc


def _parse(model: type[_Model], data: Any) -> _Model:
    if not isinstance(data, dict):
        raise _HTTPError(422, "validation_error", [{"field": "body", "message": "must be a JSON object"}])
    return model.model_validate(data)


def routes(
    db: Database | Callable[[], Database],
    *,
    config: WebhookConfig | None = None,
    resolver: Resolver = system_resolver,
    clock: Callable[[], float] = time.time,
    prefix: str = "/api/webhooks",
    middleware: Sequence[Middleware] | None = None,
    on_enqueue: Callable[[], None] | None = None,
) -> list[BaseRoute]:
    """The management routes, ready to add to a Starlette app's route list.

    Parameters
    ----------
    db : Database or callable returning one
        The database, or a getter for one opened at the app's start-up.
    config : WebhookConfig, optional
        Allow-listed networks, payload limit, secret grace period; from the environment by default.
    resolver : async callable
        Resolves endpoint host names for the address check at registration.
    clock : callable
        Epoch seconds now.
    prefix : str
        Where the routes live.
    middleware : sequence of Middleware, optional
        Wrapped around every route (the service's API-key check, say).
    on_enqueue : callable, optional
        Called after deliveries were queued (a test event, a replay), e.g. to wake an in-process worker.

    Returns
    -------
    list of BaseRoute

    Examples
    --------
    >>> from starlette.applications import Starlette
    >>> app = Starlette(routes=routes(lambda: None, config=WebhookConfig()))
    >>> sorted({route.path for route in app.routes})[:2]
    ['/api/webhooks', '/api/webhooks/events/{event_id}']
    """
    settings = config or WebhookConfig()
    networks = settings.networks()

    def database() -> Database:
        return db() if callable(db) and not isinstance(db, Database) else db

    def queued() -> None:
        if on_enqueue is not None:
            on_enqueue()

    async def endpoint_or_404(conn: Any, endpoint_id: str) -> dict[str, Any]:
        row = await store.get_endpoint(conn, endpoint_id)
        if row is None:
            raise _not_found("endpoint", endpoint_id)
        return row

    async def create(request: Request) -> Response:
        body = _parse(EndpointCreate, await _json_body(request))
        await validate_url(body.url, networks, resolver, timeout=settings.connect_timeout)
        async with database().transaction() as conn:
            view, secret = await store.create_endpoint(conn, body.url, body.event_types, body.description, now=clock())
        return JSONResponse({**view, "secret": secret}, status_code=201)

    async def list_all(request: Request) -> Response:
        query = _parse(PageQuery, dict(request.query_params))
        items = await store.list_endpoints(database(), limit=query.limit, offset=query.offset)
        return JSONResponse({"endpoints": items, "limit": query.limit, "offset": query.offset})

    async def get_one(request: Request) -> Response:
        row = await endpoint_or_404(database(), request.path_params["endpoint_id"])
        return JSONResponse(store.endpoint_view(row))

    async def update(request: Request) -> Response:
        body = _parse(EndpointUpdate, await _json_body(request))
        changes = body.model_dump(exclude_unset=True)
        for name in ("url", "description", "event_types", "enabled"):
            if name in changes and changes[name] is None:
                raise _HTTPError(422, "validation_error", [{"field": name, "message": "must not be null"}])
        if "url" in changes:
            await validate_url(changes["url"], networks, resolver, timeout=settings.connect_timeout)
        async with database().transaction() as conn:
            view = await store.update_endpoint(conn, request.path_params["endpoint_id"], changes, now=clock())
        if view is None:
            raise _not_found("endpoint", request.path_params["endpoint_id"])
        return JSONResponse(view)

    async def delete(request: Request) -> Response:
        async with database().transaction() as conn:
            found = await store.delete_endpoint(conn, request.path_params["endpoint_id"], now=clock())
        if not found:
            raise _not_found("endpoint", request.path_params["endpoint_id"])
        return Response(status_code=204)

    async def rotate(request: Request) -> Response:
        body = _parse(RotateSecret, await _json_body(request, optional=True))
        grace = settings.secret_grace if body.grace_seconds is None else body.grace_seconds
        now = clock()
        async with database().transaction() as conn:
            secret = await store.rotate_secret(conn, request.path_params["endpoint_id"], now=now, grace_s=grace)
        if secret is None:
            raise _not_found("endpoint", request.path_params["endpoint_id"])
        return JSONResponse({"secret": secret, "previous_secrets_expire_at": now + grace})

    async def send_test(request: Request) -> Response:
        endpoint_id = request.path_params["endpoint_id"]
        now = clock()
        async with database().transaction() as conn:
            row = await endpoint_or_404(conn, endpoint_id)
            if not row["enabled"]:
                raise _HTTPError(409, "endpoint_disabled", f"endpoint {endpoint_id!r} is disabled; enable it first")
            data = {"endpoint_id": endpoint_id, "message": "a test event from catalytic"}
            # A test always reaches the endpoint it was sent to, whatever the endpoint's type filter says.
            event_id = await store.emit(
                conn, "webhook.test", data, now=now, endpoint_ids=[endpoint_id],
                max_payload_bytes=settings.max_payload_bytes, ignore_filter=True,
            )  # fmt: skip
        queued()
        return JSONResponse({"event_id": event_id}, status_code=202)

    async def deliveries(request: Request) -> Response:
        endpoint_id = request.path_params["endpoint_id"]
        query = _parse(DeliveryQuery, dict(request.query_params))
        conn = database()
        await endpoint_or_404(conn, endpoint_id)
        items = await store.list_deliveries(
            conn, endpoint_id=endpoint_id, status=query.status, since=query.since, limit=query.limit
        )
        return JSONResponse({"deliveries": items})

    async def delivery_of(conn: Any, request: Request) -> dict[str, Any]:
        endpoint_id, delivery_id = request.path_params["endpoint_id"], request.path_params["delivery_id"]
        found = await store.get_delivery(conn, delivery_id)
        if found is None or found["endpoint_id"] != endpoint_id:
            raise _not_found("delivery", delivery_id)
        return found

    async def one_delivery(request: Request) -> Response:
        return JSONResponse(await delivery_of(database(), request))

    async def replay_one(request: Request) -> Response:
        async with database().transaction() as conn:
            found = await delivery_of(conn, request)
            await endpoint_or_404(conn, request.path_params["endpoint_id"])
            if not await store.replay_delivery(conn, found["id"], now=clock()):
                raise _HTTPError(409, "delivery_pending", f"delivery {found['id']!r} is still pending")
        queued()
        return JSONResponse({"replayed": 1, "delivery_id": found["id"]}, status_code=202)

    async def replay_since(request: Request) -> Response:
        body = _parse(ReplaySince, await _json_body(request))
        async with database().transaction() as conn:
            await endpoint_or_404(conn, request.path_params["endpoint_id"])
            count = await store.replay_failed(conn, request.path_params["endpoint_id"], since=body.since, now=clock())
        if count:
            queued()
        return JSONResponse({"replayed": count}, status_code=202)

    async def event(request: Request) -> Response:
        found = await store.get_event(database(), request.path_params["event_id"])
        if found is None:
            raise _not_found("event", request.path_params["event_id"])
        return JSONResponse(found)

    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _HTTPError as exc:
                return _error(exc.status, exc.code, exc.detail)
            except ValidationError as exc:
                return _error(422, "validation_error", _field_errors(exc))
            except (InvalidInputError, InvalidTypeError) as exc:
                return _error(422, "validation_error", [exc.to_dict()])

        run.__name__ = handler.__name__
        return run

    table: list[tuple[str, Handler, list[str]]] = [
        ("", create, ["POST"]),
        ("", list_all, ["GET"]),
        ("/events/{event_id}", event, ["GET"]),
        ("/{endpoint_id}", get_one, ["GET"]),
        ("/{endpoint_id}", update, ["PATCH"]),
        ("/{endpoint_id}", delete, ["DELETE"]),
        ("/{endpoint_id}/rotate-secret", rotate, ["POST"]),
        ("/{endpoint_id}/test", send_test, ["POST"]),
        ("/{endpoint_id}/replay", replay_since, ["POST"]),
        ("/{endpoint_id}/deliveries", deliveries, ["GET"]),
        ("/{endpoint_id}/deliveries/{delivery_id}", one_delivery, ["GET"]),
        ("/{endpoint_id}/deliveries/{delivery_id}/replay", replay_one, ["POST"]),
    ]
    return [
        Route(
            prefix + path, guarded(handler), methods=methods, name=f"webhooks.{handler.__name__}", middleware=middleware
        )
        for path, handler, methods in table
    ]
