"""Request middleware: request ids (X-Request-ID, echoed), request metrics by route template, request logs."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from typing import Any

from catalytic.service.logs import REQUEST_ID
from catalytic.service.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

__all__ = ["RequestMiddleware"]

log = logging.getLogger("catalytic.service.http")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
