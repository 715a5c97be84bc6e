"""HTTP error answers: the mapping from library errors to status codes, each answered as problem details.

Every error the service answers, a route's, a middleware's, Starlette's own 404 and 405 and anything unexpected,
has one body: RFC 9457 problem details (``application/problem+json``, :mod:`catalytic.problems`) with the stable
``code``, the request id and the bad fields (``errors``). Raise one of these classes, or a library error, and the
handlers here render it.

::

    ServiceError          422       an answer other than 2xx, with a machine-readable ``code``
    ├── Forbidden         403       a foreign Origin on a state-changing request, a Host not allowed
    ├── NotFound          404       unknown lattice or job id
    ├── PayloadTooLarge   413       body, vertex or memory budget exceeded
    ├── UnsupportedMediaType 415    a body that is not ``application/json``
    ├── Unavailable       503       MAX_LATTICES reached, job queue full, backend missing (always with Retry-After)
    ├── QuotaExceeded     403/413/429  a tenant's quota (stored lattices; vertices; queued jobs, result bytes, rate)
    ├── Conflict          409       a job that already finished cannot be cancelled
    └── Timeout           504       an inline computation ran past the request time limit

Library errors map as: InvalidInputError / InvalidTypeError → 422 (VertexBudgetError → 413),
MemoryBudgetError → 413, BackendUnavailableError → 503 with Retry-After, pydantic ValidationError → 422 with
one entry per field, Starlette's HTTPException → its status (404 ``not_found``, 405 ``method_not_allowed``);
DatabaseUnavailable (the database refused or lost the connection) → 503 ``database_unavailable`` with Retry-After,
from a handler or from :class:`UnexpectedErrors`; anything else → 500 ``internal`` through :class:`UnexpectedErrors`,
logged with its traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.errors import (
    BackendUnavailableError,
    InvalidInputError,
    InvalidTypeError,
    MemoryBudgetError,
    VertexBudgetError,
)
from catalytic.problems import problem_response, set_request_id, validation_problems
from catalytic.service import defaults
from catalytic.service.logs import REQUEST_ID
from catalytic.storage import DatabaseUnavailable

__all__ = [
    "BackendUnavailable",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "Timeout",
    "Unavailable",
    "UnexpectedErrors",
    "UnsupportedMediaType",
    "error_response",
    "exception_handlers",
    "invalid_body",
    "validation_fields",
]

log = logging.getLogger("catalytic.service")


class ServiceError(Exception):
    """An HTTP answer carrying a status, a code, a message (the ``detail``) and optional field details."""

    status = 422
    code = "invalid_input"

    def __init__(
        self, message: str, *, fields: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or []
        self.headers = headers or {}


class Forbidden(ServiceError):
    """A request refused for where it comes from: a foreign ``Origin``, a ``Host`` outside the allow-list."""

    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    """An unknown id."""

    status = 404
    code = "not_found"


class PayloadTooLarge(ServiceError):
    """A body, lattice or estimated memory over its limit."""

    status = 413
    code = "too_large"


class UnsupportedMediaType(ServiceError):
    """A request body sent with a media type other than JSON."""

    status = 415
    code = "unsupported_media_type"


class Unavailable(ServiceError):
    """Capacity exhausted; the client should retry after ``retry_after`` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int, *, fields: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, fields=fields, headers={"Retry-After": str(retry_after)})


class BackendUnavailable(Unavailable):
    """A backend asked for by name that this server cannot run (no GPU here); another replica may have it."""

    code = "backend_unavailable"


class QuotaExceeded(ServiceError):
    """A tenant's quota is used up; the answer names the quota and its value.

    403 for a count the tenant must bring down itself (stored lattices), 413 for a size (vertices of a lattice),
    429 with Retry-After for what frees up with time (queued jobs, result bytes, requests per second).
    """

    code = "quota_exceeded"

    def __init__(self, status: int, quota: str, limit: float, used: float, message: str, retry_after: int = 0) -> None:
        headers = {"Retry-After": str(retry_after)} if status == 429 else None
        allowed = f"at most {limit:g}"
        fields = [{"field": f"quota.{quota}", "message": f"{used:g} in use", "allowed": allowed}]
        super().__init__(f"quota {quota} ({limit:g}) exceeded: {message}", fields=fields, headers=headers)
        self.status = status
        self.quota = quota


class Conflict(ServiceError):
    """The request conflicts with the current state of the resource."""

    status = 409
    code = "conflict"


class Timeout(ServiceError):
    """An inline computation exceeded the request time limit."""

    status = 504
    code = "timeout"


def error_response(
    scope: Mapping[str, Any],
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error body: RFC 9457 problem details (:mod:`catalytic.problems`) for the request of ``scope``."""
    return problem_response(scope, status, code, message, fields or [], headers)


def validation_fields(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """One ``{field, message, allowed}`` entry per pydantic error, with full field paths (``params.goal``)."""
    return validation_problems(exc, model, prefix)


def invalid_body(exc: ValidationError, model: type[BaseModel], prefix: tuple[str, ...] = ()) -> ServiceError:
    """The 422 for a body (or the part of it at ``prefix``) that ``model`` refused, naming every bad field."""
    return ServiceError("the request body does not match its schema", fields=validation_fields(exc, model, prefix))


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(request.scope, exc.status, exc.code, exc.message, exc.fields, exc.headers)


async def _invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInputError | InvalidTypeError)
    if isinstance(exc, VertexBudgetError):
        return error_response(request.scope, 413, "too_large", str(exc), [exc.to_dict()])
    return error_response(request.scope, 422, "invalid_input", str(exc), [exc.to_dict()])


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    fields = validation_fields(exc)
    return error_response(request.scope, 422, "invalid_input", "the request body does not match its schema", fields)


async def _memory_budget(request: Request, exc: Exception) -> Response:
    fields = [{"field": "lattice", "message": str(exc), "allowed": None}]
    return error_response(request.scope, 413, "too_large", str(exc), fields)


async def _backend_unavailable(request: Request, exc: Exception) -> Response:
    # Another replica (a GPU pod behind the same Service) may have the backend: worth a retry, so 503.
    return error_response(
        request.scope,
        503,
        "backend_unavailable",
        f"the backend asked for cannot run on this server: {exc}",
        [{"field": "backend", "message": str(exc), "allowed": "auto, or a backend this server has"}],
        {"Retry-After": str(_retry_after(request))},
    )


def _outage(scope: Mapping[str, Any], retry_after: int) -> JSONResponse:
    # The database is restarting or out of reach: the request changed nothing and can be sent again as it is.
    message = "the database cannot be reached now; retry after the delay given"
    return error_response(scope, 503, "database_unavailable", message, [], {"Retry-After": str(retry_after)})


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    return _outage(request.scope, _retry_after(request))


def _retry_after(request: Request) -> int:
    state = getattr(request.app.state, "service", None)
    return int(state.settings.retry_after_s) if state is not None else defaults.RETRY_AFTER_S


async def _bad_json(request: Request, exc: Exception) -> Response:
    return error_response(
        request.scope,
        422,
        "invalid_json",
        f"the body is not valid JSON: {exc}",
        [{"field": "body", "message": str(exc), "allowed": "a JSON object"}],
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_exception(request: Request, exc: Exception) -> Response:
    # Starlette's own refusals: no route for the path (404), a route without this method (405, with Allow).
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        detail = f"no route {request.url.path!r}; the routes are listed in /openapi.json"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path!r}"
    else:
        detail = exc.detail
    return error_response(request.scope, status, _HTTP_CODES.get(status, f"http_{status}"), detail, [], exc.headers)


def exception_handlers() -> dict[Any, Any]:
    """The Starlette exception handlers of the service."""
    return {
        ServiceError: _service_error,
        InvalidInputError: _invalid_input,
        InvalidTypeError: _invalid_input,
        ValidationError: _validation,
        MemoryBudgetError: _memory_budget,
        BackendUnavailableError: _backend_unavailable,
        DatabaseUnavailable: _database_unavailable,
        json.JSONDecodeError: _bad_json,
        HTTPException: _http_exception,
    }


class UnexpectedErrors:
    """ASGI middleware: an exception no handler answered becomes a 500 problem, logged with its traceback.

    It also puts the request id (set by the request middleware around it) into the scope, so every problem
    answer below it, the webhook routes' included, carries it. Place it right inside the request middleware.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = REQUEST_ID.get()
        if request_id is not None:
            set_request_id(scope, request_id)
        started = False

        async def send_tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except DatabaseUnavailable as exc:
            # Raised where no handler reaches (the middleware reading API keys, say): still an outage, not a fault.
            log.warning("database unavailable answering %s %s: %s", scope["method"], scope["path"], exc)
            if started:
                raise
            await _outage(scope, defaults.RETRY_AFTER_S)(scope, receive, send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if started:
                raise  # the answer is under way: only the server can end it now
            detail = "an unexpected error occurred; the server's log has its traceback under this request id"
            await error_response(scope, 500, "internal", detail)(scope, receive, send)
