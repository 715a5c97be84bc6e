"""Request middleware: request ids (X-Request-ID, echoed), request metrics by route template, request logs.

A route that knows the size of the lattice it answers for tags the request with :func:`note_lattice_size`; the
middleware then also times the request under that size class (``path_request_duration_seconds``), which is
what the latency objective is measured on.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import MutableMapping
from typing import Any

from catalytic.service.logs import REQUEST_ID
from catalytic.service.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    HTTP_REQUESTS_IN_FLIGHT,
    PATH_REQUEST_DURATION,
    size_class,
)

__all__ = ["RequestMiddleware", "note_lattice_size"]

log = logging.getLogger("catalytic.service.http")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SIZE_KEY = "catalytic.size_class"
_SIZE_CHILDREN = {label: PATH_REQUEST_DURATION.labels(label) for label in ("up_to_1e4", "up_to_1e6", "over_1e6")}


def note_lattice_size(scope: MutableMapping[str, Any], vertices: int | None) -> None:
    """Tag a path request with the size class of its lattice (``None``: the size is not known here).

    Parameters
    ----------
    scope : mapping
        The request's ASGI scope (``request.scope``), the same mapping the middleware holds.
    vertices : int or None
        Vertex count of the lattice the request names.
    """
    scope[_SIZE_KEY] = "unknown" if vertices is None else size_class(vertices)


class RequestMiddleware:
    """Tag each request with an id, time it, count it under its route template and log one line.

    Parameters
    ----------
    app : ASGI app
    templates : dict
        Endpoint → route template (``/api/lattice/{lattice_id}``), so metric labels stay bounded.
    """

    def __init__(self, app: Any, templates: dict[Any, str]) -> None:
        self.app = app
        self.templates = templates
        # Labelled children looked up once per (method, route, status): the lookup costs more than the update.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        # Ids only need to be unique: a random per-process prefix and a counter, no system call per request.
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _VALID_ID.match(candidate) else None
                break
        request_id = request_id or f"{self._id_prefix}{next(self._id_counter):016x}"
        token = REQUEST_ID.set(request_id)
        status = 500
        HTTP_REQUESTS_IN_FLIGHT.inc()
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS_IN_FLIGHT.dec()
            size = scope.get(_SIZE_KEY)
            if size is not None:
                (_SIZE_CHILDREN.get(size) or PATH_REQUEST_DURATION.labels(size)).observe(elapsed)
            route = self.templates.get(scope.get("endpoint"), "unmatched")
            labels = (scope["method"], route, status)
            children = self._children.get(labels)
            if children is None:
                text = (scope["method"], route, str(status))
                children = (HTTP_REQUEST_DURATION.labels(*text), HTTP_REQUESTS.labels(*text))
                self._children[labels] = children
            children[0].observe(elapsed)
            children[1].inc()
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %d",
                    scope["method"],
                    route,
                    status,
                    extra={"method": scope["method"], "route": route, "status": status, "duration_ms": elapsed * 1e3},
                )
            REQUEST_ID.reset(token)
