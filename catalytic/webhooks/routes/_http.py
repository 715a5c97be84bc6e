"""What every webhook route shares: the context of one mounted API, its error answers, and reading requests.

An error answers with the problem details every catalytic API answers with (:mod:`catalytic.problems`): 422
``invalid_input`` naming each bad field in ``errors``, 404 ``not_found``, 409 for a conflicting state
(``endpoint_disabled``, ``delivery_pending``), 413 ``too_large``. A body is parsed by pydantic's JSON parser,
whose nesting limit turns a body nested a thousand deep into a 422, not a RecursionError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from catalytic.errors import InvalidInputError, InvalidTypeError
from catalytic.problems import problem_response, validation_problems
from catalytic.storage import Connection, Database
from catalytic.tenancy import tenant_of
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
    """An answer other than 2xx: a status, an error code, its detail and the bad fields."""

    def __init__(self, status: int, code: str, detail: str, errors: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors)


def not_found(what: str, value: str) -> HTTPError:
    """The 404 for an unknown id of ``what`` (endpoint, delivery, event)."""
    return HTTPError(404, "not_found", f"no {what} with id {value!r}")


def invalid(field: str, message: str, allowed: str | None = None) -> HTTPError:
    """The 422 for one bad ``field``."""
    return HTTPError(
        422, "invalid_input", f"{field}: {message}", [{"field": field, "message": message, "allowed": allowed}]
    )


# The errors a route answers with JSON; anything else is a bug and propagates.
ANSWERED = (HTTPError, ValidationError, InvalidInputError, InvalidTypeError)


def error_response(
    request: Request, exc: HTTPError | ValidationError | InvalidInputError | InvalidTypeError
) -> JSONResponse:
    """The problem details answer to one of the :data:`ANSWERED` errors a route raised."""
    if isinstance(exc, HTTPError):
        return problem_response(request.scope, exc.status, exc.code, exc.detail, exc.errors)
    if isinstance(exc, ValidationError):
        return problem_response(request.scope, 422, "invalid_input", "invalid input", validation_problems(exc))
    return problem_response(request.scope, 422, "invalid_input", str(exc), [exc.to_dict()])


async def _json_body(request: Request, *, optional: bool) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPError(413, "too_large", f"the body is {declared} bytes (allowed: at most {MAX_BODY_BYTES})")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPError(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes (allowed: at most that)")
    if not raw.strip():
        if optional:
            return b"{}"
        raise invalid("body", "a JSON object is required", "a JSON object")
    return bytes(raw)


def _refused(exc: ValidationError, model: type[BaseModel]) -> HTTPError:
    return HTTPError(422, "invalid_input", "the request does not match its schema", validation_problems(exc, model))


async def read_body(request: Request, model: type[_Model], *, optional: bool = False) -> _Model:
    """The JSON body, at most :data:`MAX_BODY_BYTES` (413 past it), validated against ``model`` (422 on error).

    An empty body reads as ``{}`` when ``optional``, and is refused otherwise.
    """
    raw = await _json_body(request, optional=optional)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _refused(exc, model) from None


def read_query(request: Request, model: type[_Model]) -> _Model:
    """The query string validated against ``model`` (422 on error)."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _refused(exc, model) from None


async def endpoint_or_404(conn: Connection, endpoint_id: str, tenant: str) -> dict[str, Any]:
    """The endpoint's stored row; 404 for an unknown id or another tenant's, alike."""
    row = await store.get_endpoint(conn, endpoint_id, tenant)
    if row is None:
        raise not_found("endpoint", endpoint_id)
    return row


async def delivery_or_404(conn: Connection, request: Request) -> dict[str, Any]:
    """The delivery the path names, with its attempts; 404 for an unknown id or one of another endpoint or tenant."""
    endpoint_id, delivery_id = request.path_params["endpoint_id"], request.path_params["delivery_id"]
    found = await store.get_delivery(conn, delivery_id, tenant_of(request.scope))
    if found is None or found["endpoint_id"] != endpoint_id:
        raise not_found("delivery", delivery_id)
    return found
