"""What every webhook route shares: the context of one mounted API, its error answers, and reading requests.

An error answers ``{"error": code, "detail": ...}``: 422 ``validation_error`` with one entry per bad field,
404 ``not_found``, 409 for a conflicting state, 413 ``body_too_large``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from catalytic.errors import InvalidInputError, InvalidTypeError
from catalytic.storage import Connection, Database
from catalytic.webhooks import store
from catalytic.webhooks.config import WebhookConfig
from catalytic.webhooks.safety import IPNetwork, Resolver, validate_url

__all__ = [
    "ANSWERED",
    "MAX_BODY_BYTES",
    "MAX_LIMIT",
    "ApiContext",
    "HTTPError",
    "delivery_or_404",
    "endpoint_or_404",
    "error_response",
    "invalid",
    "not_found",
    "read_body",
    "read_query",
]

MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 1000

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class ApiContext:
    """What the routes of one mounted API are bound to: the database, the settings, the clock."""

    database: Callable[[], Database]
    settings: WebhookConfig
    networks: Sequence[IPNetwork]
    resolver: Resolver
    clock: Callable[[], float]
    on_enqueue: Callable[[], None] | None = None

    async def check_url(self, url: str) -> None:
        """Refuse (422) a URL that may not receive webhooks: bad syntax or scheme, or a disallowed address."""
        await validate_url(url, self.networks, self.resolver, timeout=self.settings.connect_timeout)

    def queued(self) -> None:
        """Tell whoever asked (an in-process worker, say) that deliveries were queued."""
        if self.on_enqueue is not None:
            self.on_enqueue()


class HTTPError(Exception):
    """An answer other than 2xx: a status, an error code and its detail."""

    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail


def not_found(what: str, value: str) -> HTTPError:
    """The 404 for an unknown id of ``what`` (endpoint, delivery, event)."""
    return HTTPError(404, "not_found", f"no {what} with id {value!r}")


def invalid(field: str, message: str) -> HTTPError:
    """The 422 for one bad ``field``."""
    return HTTPError(422, "validation_error", [{"field": field, "message": message}])


# The errors a route answers with JSON; anything else is a bug and propagates.
ANSWERED = (HTTPError, ValidationError, InvalidInputError, InvalidTypeError)


def error_response(exc: HTTPError | ValidationError | InvalidInputError | InvalidTypeError) -> JSONResponse:
    """The JSON answer to one of the :data:`ANSWERED` errors a route raised."""
    if isinstance(exc, HTTPError):
        status, code, detail = exc.status, exc.code, exc.detail
    elif isinstance(exc, ValidationError):
        status, code, detail = 422, "validation_error", _field_errors(exc)
    else:
        status, code, detail = 422, "validation_error", [exc.to_dict()]
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


async def _json_body(request: Request, *, optional: bool) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPError(413, "body_too_large", f"the body is {declared} bytes (allowed: at most {MAX_BODY_BYTES})")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPError(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes (allowed: at most that)")
    if not raw.strip():
        if optional:
            return {}
        raise invalid("body", "a JSON object is required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid("body", f"invalid JSON: {exc}") from exc


def _parse(model: type[_Model], data: Any) -> _Model:
    if not isinstance(data, dict):
        raise invalid("body", "must be a JSON object")
    return model.model_validate(data)


async def read_body(request: Request, model: type[_Model], *, optional: bool = False) -> _Model:
    """The JSON body, at most :data:`MAX_BODY_BYTES` (413 past it), validated against ``model`` (422 on error).

    An empty body reads as ``{}`` when ``optional``, and is refused otherwise.
    """
    return _parse(model, await _json_body(request, optional=optional))


def read_query(request: Request, model: type[_Model]) -> _Model:
    """The query string validated against ``model`` (422 on error)."""
    return _parse(model, dict(request.query_params))


async def endpoint_or_404(conn: Connection, endpoint_id: str) -> dict[str, Any]:
    """The endpoint's stored row; 404 for an unknown id."""
    row = await store.get_endpoint(conn, endpoint_id)
    if row is None:
        raise not_found("endpoint", endpoint_id)
    return row


async def delivery_or_404(conn: Connection, request: Request) -> dict[str, Any]:
    """The delivery the path names, with its attempts; 404 for an unknown id or one of another endpoint."""
    endpoint_id, delivery_id = request.path_params["endpoint_id"], request.path_params["delivery_id"]
    found = await store.get_delivery(conn, delivery_id)
    if found is None or found["endpoint_id"] != endpoint_id:
        raise not_found("delivery", delivery_id)
    return found
