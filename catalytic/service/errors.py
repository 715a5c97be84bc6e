"""HTTP error answers: one JSON body shape, and the mapping from library errors to status codes.

::

    ServiceError          422       an answer other than 2xx, with a machine-readable ``error`` code
    ├── Forbidden         403       a foreign Origin on a state-changing request, a Host not allowed
    ├── NotFound          404       unknown lattice or job id
    ├── PayloadTooLarge   413       body, vertex or memory budget exceeded
    ├── UnsupportedMediaType 415    a body that is not ``application/json``
    ├── Unavailable       503       MAX_LATTICES reached, job queue full (always with Retry-After)
    ├── Conflict          409       a job that already finished cannot be cancelled
    └── Timeout           504       an inline computation ran past the request time limit

Library errors map as: InvalidInputError / InvalidTypeError → 422 (VertexBudgetError → 413),
MemoryBudgetError → 413, pydantic ValidationError → 422 with one entry per field.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.errors import InvalidInputError, InvalidTypeError, MemoryBudgetError, VertexBudgetError

__all__ = [
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "Timeout",
    "Unavailable",
    "UnsupportedMediaType",
    "error_response",
    "exception_handlers",
    "validation_fields",
]

log = logging.getLogger("catalytic.service")


class ServiceError(Exception):
    """An HTTP answer carrying a status, an error code, a message and optional field details."""

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

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class Conflict(ServiceError):
    """The request conflicts with the current state of the resource."""

    status = 409
    code = "conflict"


class Timeout(ServiceError):
    """An inline computation exceeded the request time limit."""

    status = 504
    code = "timeout"


def error_response(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one JSON error body: ``{"error": code, "message": ..., "fields": [{field, message, allowed}]}``."""
    body = {"error": code, "message": message, "fields": fields or []}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_fields(exc: ValidationError) -> list[dict[str, Any]]:
    """One ``{field, message, allowed}`` entry per pydantic error, with dotted field paths."""
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        ctx = err.get("ctx") or {}
        allowed = ", ".join(
            f"{k} {v}" for k, v in ctx.items() if k in {"ge", "gt", "le", "lt", "min_length", "max_length", "expected"}
        )
        out.append({"field": field or "body", "message": err["msg"], "allowed": allowed or None})
    return out


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)


async def _invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInputError | InvalidTypeError)
    if isinstance(exc, VertexBudgetError):
        return error_response(413, "too_large", str(exc), [exc.to_dict()])
    return error_response(422, "invalid_input", str(exc), [exc.to_dict()])


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    fields = validation_fields(exc)
    return error_response(422, "invalid_input", "the request body does not match its schema", fields)


async def _memory_budget(request: Request, exc: Exception) -> Response:
    return error_response(413, "too_large", str(exc), [{"field": "lattice", "message": str(exc), "allowed": None}])


async def _bad_json(request: Request, exc: Exception) -> Response:
    return error_response(
        422,
        "invalid_json",
        f"the body is not valid JSON: {exc}",
        [{"field": "body", "message": str(exc), "allowed": "a JSON object"}],
    )


def exception_handlers() -> dict[Any, Any]:
    """The Starlette exception handlers of the service."""
    return {
        ServiceError: _service_error,
        InvalidInputError: _invalid_input,
        InvalidTypeError: _invalid_input,
        ValidationError: _validation,
        MemoryBudgetError: _memory_budget,
        json.JSONDecodeError: _bad_json,
    }
