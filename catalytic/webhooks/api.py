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

The endpoint functions live in :mod:`catalytic.webhooks.routes`, one module per resource; :data:`ROUTES` lists
them all. Errors are problem details (:mod:`catalytic.problems`): 422 naming each bad field, 404 for an unknown
id, 409 for a conflicting state, 413 for an oversized body. Authentication is the mounting app's: pass its
middleware to :func:`routes`, or wrap the app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from catalytic.storage import Database
from catalytic.webhooks.config import WebhookConfig
from catalytic.webhooks.routes import endpoints, events, replay
from catalytic.webhooks.routes._http import ANSWERED, MAX_BODY_BYTES, ApiContext, error_response
from catalytic.webhooks.safety import Resolver, system_resolver
from catalytic.webhooks.schemas import (
    Delivery,
    DeliveryList,
    EndpointList,
    EndpointView,
    EndpointWithSecret,
    Event,
    EventQueued,
    Replayed,
    ReplayedOne,
    SecretRotated,
)

__all__ = ["MAX_BODY_BYTES", "OPERATIONS", "ROUTES", "Operation", "routes"]

Endpoint = Callable[[Request, ApiContext], Awaitable[Response]]

# Path under the prefix, then method and endpoint; routing tries them in this order.
ROUTES: Final[dict[str, dict[str, Endpoint]]] = {
    "": {"POST": endpoints.create, "GET": endpoints.list_all},
    "/events/{event_id}": {"GET": events.event},
    "/{endpoint_id}": {"GET": endpoints.get_one, "PATCH": endpoints.update, "DELETE": endpoints.delete},
    "/{endpoint_id}/rotate-secret": {"POST": endpoints.rotate},
    "/{endpoint_id}/test": {"POST": endpoints.send_test},
    "/{endpoint_id}/replay": {"POST": replay.replay_since},
    "/{endpoint_id}/deliveries": {"GET": events.deliveries},
    "/{endpoint_id}/deliveries/{delivery_id}": {"GET": events.one_delivery},
    "/{endpoint_id}/deliveries/{delivery_id}/replay": {"POST": replay.replay_one},
}


@dataclass(frozen=True)
class Operation:
    """What one route takes and answers, for the API document (the mounting app builds it)."""

    responses: dict[int, type[BaseModel] | None]
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    body_optional: bool = False
    max_body_bytes: int = MAX_BODY_BYTES


# Keyed like ROUTES: path under the prefix, then method.
OPERATIONS: Final[dict[str, dict[str, Operation]]] = {
    "": {
        "POST": Operation({201: EndpointWithSecret}, endpoints.EndpointCreate),
        "GET": Operation({200: EndpointList}, query=endpoints.PageQuery),
    },
    "/events/{event_id}": {"GET": Operation({200: Event}, errors=(404,))},
    "/{endpoint_id}": {
        "GET": Operation({200: EndpointView}, errors=(404,)),
        "PATCH": Operation({200: EndpointView}, endpoints.EndpointUpdate, errors=(404,)),
        "DELETE": Operation({204: None}, errors=(404,)),
    },
    "/{endpoint_id}/rotate-secret": {
        "POST": Operation({200: SecretRotated}, endpoints.RotateSecret, errors=(404,), body_optional=True)
    },
    "/{endpoint_id}/test": {"POST": Operation({202: EventQueued}, errors=(404, 409))},
    "/{endpoint_id}/replay": {"POST": Operation({202: Replayed}, replay.ReplaySince, errors=(404,))},
    "/{endpoint_id}/deliveries": {"GET": Operation({200: DeliveryList}, query=events.DeliveryQuery, errors=(404,))},
    "/{endpoint_id}/deliveries/{delivery_id}": {"GET": Operation({200: Delivery}, errors=(404,))},
    "/{endpoint_id}/deliveries/{delivery_id}/replay": {"POST": Operation({202: ReplayedOne}, errors=(404, 409))},
}


def _bind(endpoint: Endpoint, ctx: ApiContext) -> Callable[[Request], Awaitable[Response]]:
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request, ctx)
        except ANSWERED as exc:
            return error_response(request, exc)

    answer.__name__ = endpoint.__name__
    return answer


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

    def database() -> Database:
        return db() if callable(db) and not isinstance(db, Database) else db

    ctx = ApiContext(database, settings, settings.networks(), resolver, clock, on_enqueue)
    return [
        Route(
            prefix + path,
            _bind(endpoint, ctx),
            methods=[method],
            name=f"webhooks.{endpoint.__name__}",
            middleware=middleware,
        )
        for path, methods in ROUTES.items()
        for method, endpoint in methods.items()
    ]
