"""Problem details (RFC 9457): the one error body of every HTTP API in catalytic.

The service's routes and the webhook management API answer every error, whatever its cause, as
``application/problem+json``::

    {
      "type": "urn:catalytic:problem:invalid_input",   a URI per code (not meant to be fetched)
      "title": "Invalid input",                        the same for every problem of this type
      "status": 422,
      "detail": "the request body does not match its schema",
      "instance": "/api/jobs",                         the path the request was sent to
      "code": "invalid_input",                         the stable machine-readable code
      "request_id": "a1b2...",                         also in the X-Request-ID header
      "errors": [{"field": "params.goal", "message": "...", "allowed": "..."}]
    }

``errors`` names each bad field by its full path in the request (``params.goal``, ``obstacles[0].p``,
``blocked[3][1]``; ``body`` for the body as a whole), with what is allowed there when that can be said.

Both APIs live in one process but import nothing of each other, so the shape is written once here. The request id
is the one :func:`set_request_id` put into the ASGI scope (the service's request middleware does it); an app
without that middleware answers with a request id of ``null``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

__all__ = [
    "MEDIA_TYPE",
    "FieldProblem",
    "field_path",
    "problem_body",
    "problem_response",
    "request_id_of",
    "set_request_id",
    "validation_problems",
]

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:catalytic:problem:"
_SCOPE_KEY = "catalytic.request_id"

FieldProblem = dict[str, Any]
"""One entry of ``errors``: ``{"field": ..., "message": ..., "allowed": ... or None}``."""

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
    504: "Timed out",
    507: "Insufficient storage",
}


def set_request_id(scope: MutableMapping[str, Any], request_id: str) -> None:
    """Remember the id of the request whose ASGI ``scope`` this is, for its problem answers."""
    scope[_SCOPE_KEY] = request_id


def request_id_of(scope: Mapping[str, Any]) -> str | None:
    """The request id :func:`set_request_id` stored in ``scope``, if any."""
    found = scope.get(_SCOPE_KEY)
    return found if isinstance(found, str) else None


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    request_id: str | None = None,
    errors: Iterable[FieldProblem] = (),
) -> dict[str, Any]:
    """The problem details of one error.

    Examples
    --------
    >>> body = problem_body(404, "not_found", "no lattice 'lat_x'", instance="/api/lattice/lat_x")
    >>> body["type"], body["title"], body["errors"]
    ('urn:catalytic:problem:not_found', 'Not found', [])
    """
    return {
        "type": TYPE_PREFIX + code,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "request_id": request_id,
        "errors": [{"field": e["field"], "message": e["message"], "allowed": e.get("allowed") or None} for e in errors],
    }


def problem_response(
    scope: Mapping[str, Any],
    status: int,
    code: str,
    detail: str,
    errors: Iterable[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An ``application/problem+json`` answer to the request of ``scope``."""
    body = problem_body(
        status, code, detail, instance=scope.get("path"), request_id=request_id_of(scope), errors=errors
    )
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=MEDIA_TYPE)


# pydantic-core schema kinds that wrap one inner schema without adding a step to an error's location.
_WRAPPERS = frozenset(
    {"nullable", "default", "function-after", "function-before", "function-wrap", "json-or-python", "lax-or-strict"}
)


def _walk(schema: Mapping[str, Any], loc: Sequence[int | str], defs: dict[str, Any]) -> list[int | str] | None:
    """The JSON path of ``loc`` through a pydantic-core ``schema``: union branch labels dropped; None if lost."""
    kind = schema.get("type")
    if kind == "definitions":
        defs.update({d["ref"]: d for d in schema["definitions"]})
        return _walk(schema["schema"], loc, defs)
    if kind == "definition-ref":
        return _walk(defs[schema["schema_ref"]], loc, defs)
    if "ref" in schema:
        defs.setdefault(schema["ref"], schema)
    if not loc:
        return []
    if kind in _WRAPPERS:
        return _walk(schema["schema"], loc, defs)
    if kind == "model":
        return _walk(schema["schema"], loc, defs)
    head, rest = loc[0], loc[1:]
    if kind == "model-fields":
        fields = schema["fields"]
        if head not in fields:
            return [head, *rest]  # a field the model does not have (extra="forbid")
        below = _walk(fields[head]["schema"], rest, defs)
        return None if below is None else [head, *below]
    if kind in ("list", "tuple", "set", "frozenset") and isinstance(head, int):
        items = schema.get("items_schema") or {}
        if isinstance(items, list):
            items = items[head] if head < len(items) else (items[-1] if items else {})
        below = _walk(items, rest, defs) if items else list(rest)
        return None if below is None else [head, *below]
    if kind == "dict":
        below = _walk(schema.get("values_schema") or {}, rest, defs) if schema.get("values_schema") else list(rest)
        return None if below is None else [head, *below]
    if kind == "tagged-union":
        choice = schema["choices"].get(head)
        if choice is None:
            return None
        return _walk(choice, rest, defs)
    if kind == "union":
        # Each branch's errors sit under the branch's label: skip it, and follow the first branch that fits.
        for choice in schema["choices"]:
            branch = choice[0] if isinstance(choice, tuple | list) else choice
            below = _walk(branch, rest, defs)
            if below is not None:
                return below
        return None
    return None  # a leaf with steps left: not the branch the error came from


def field_path(parts: Sequence[int | str]) -> str:
    """A JSON path as the ``field`` of a problem: ``params.goal``, ``obstacles[0].p``; ``body`` for the root.

    Examples
    --------
    >>> field_path(["obstacles", 0, "p"]), field_path([]), field_path(["blocked", 3, 1])
    ('obstacles[0].p', 'body', 'blocked[3][1]')
    """
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


_RANGE_KEYS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}


def validation_problems(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: Sequence[str] = ()
) -> list[FieldProblem]:
    """One ``errors`` entry per pydantic error, with its full field path and the allowed range.

    Parameters
    ----------
    exc : pydantic.ValidationError
    model : pydantic model, optional
        The model that raised it: union branch labels and tags are dropped from the locations by following
        its schema. Without it, only labels of validator functions are dropped.
    prefix : sequence of str
        Where the validated value sits in the request (``["params"]`` for a job's parameters).
    """
    schema = model.__pydantic_core_schema__ if model is not None else None
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])
        walked = _walk(schema, loc, {}) if schema is not None else None
        if walked is None:
            walked = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
        ctx = err.get("ctx") or {}
        allowed = ", ".join(f"{_RANGE_KEYS[k]} {v}" for k, v in ctx.items() if k in _RANGE_KEYS)
        if "expected" in ctx:
            allowed = ", ".join(filter(None, [allowed, f"one of {ctx['expected']}"]))
        if "pattern" in ctx:
            allowed = f"matching {ctx['pattern']}"
        out.append({"field": field_path([*prefix, *walked]), "message": err["msg"], "allowed": allowed or None})
    return out
