"""The OpenAPI 3.1 document, built from the route tables and the pydantic models, and the /docs page.

The document states the limits a request must keep, as configured: the vertex budget on a lattice's axis
lengths and coordinates, the body size of each route, the page size, and all of them together under
``info.x-limits``, so that a generated client or a fuzzer reads them from the document. Every error answer is
described by one schema, ``Problem`` (RFC 9457 problem details, ``application/problem+json``).

/docs serves Swagger UI from the files of the ``flask-swagger-ui`` wheel (the UI's own distribution; Flask is
never imported): the page and its assets come from this server, nothing from the network.
"""

from __future__ import annotations

import importlib.util
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from catalytic import __version__
from catalytic.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from catalytic.service.idempotency import HEADER_PARAMETER, accepts_idempotency_key
from catalytic.service.schemas import MAX_AXES, PARAMS_MODELS, JobRequest, Problem

__all__ = ["DOCS_ASSETS", "DOCS_HTML", "DOCS_INIT_JS", "Endpoint", "Limits", "docs_asset", "openapi_document"]

REF_TEMPLATE = "#/components/schemas/{model}"

_ERROR_TEXT = {
    401: "Missing or invalid API key",
    403: "A Host that is not served, a foreign Origin on a state-changing request, or a tenant count quota",
    404: "Unknown id",
    409: "Conflicts with the resource's state",
    410: "The result expired (RESULT_TTL) and was deleted",
    413: "Body, vertex or memory budget exceeded, or the tenant's max_vertices quota",
    415: "A body that is not JSON",
    416: "The Range selects no byte of the body (Content-Range: bytes */SIZE)",
    422: "Invalid input (field-level messages)",
    429: "Over a tenant quota: requests per second, queued jobs or result bytes (Retry-After)",
    503: "Capacity exhausted or backend missing (Retry-After)",
    504: "Past the request time limit",
}


@dataclass(frozen=True)
class Limits:
    """The configured limits the document states (from :class:`catalytic.service.settings.Settings`)."""

    max_body_bytes: int
    max_vertices: int
    inline_max_vertices: int
    max_request_memory_bytes: int
    max_page_limit: int
    max_upload_bytes: int | None = None
    """The body limit of the routes that take an upload (CATALYTIC_MAX_UPLOAD_BYTES)."""


@dataclass(frozen=True)
class Endpoint:
    """One route: where it lives, what it takes and what it answers."""

    method: str
    """GET, POST, PATCH or DELETE."""
    path: str
    endpoint: Callable[..., Any]
    summary: str
    request: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, dict[str, Any] | str, str], ...] = ()
    open: bool = False
    tag: str = "lattices"
    query_model: type[BaseModel] | None = None
    """Query parameters described by a model (its fields, their schemas and defaults)."""
    operation_id: str | None = None
    """Defaults to the endpoint function's name."""
    body_optional: bool = False
    max_body_bytes: int | None = None
    """The route's own body limit; None: the service's (``Limits.max_body_bytes``)."""
    media_types: dict[int, str] = field(default_factory=dict)
    """Success answers of another media type than JSON, by status (a schema-less download)."""
    body_media_types: tuple[str, ...] = ()
    """A binary request body (an upload) of these media types, instead of a JSON ``request`` model."""
    headers: tuple[tuple[str, dict[str, Any] | str, str], ...] = ()
    """Request headers the route reads: name, schema, description (``Range`` of a download)."""


def _parameters(endpoint: Endpoint, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name.strip("{}"), "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in endpoint.path.split("/")
        if name.startswith("{")
    ]
    for place, entries in (("query", endpoint.query), ("header", endpoint.headers)):
        for name, schema, description in entries:
            typed = {"type": schema} if isinstance(schema, str) else schema
            params.append({"name": name, "in": place, "required": False, "schema": typed, "description": description})
    if endpoint.query_model is not None:
        model_schema = endpoint.query_model.model_json_schema(ref_template=REF_TEMPLATE)
        required = set(model_schema.get("required", []))
        for name, prop in model_schema["properties"].items():
            info = endpoint.query_model.model_fields[name]
            entry = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if info.description:
                entry["description"] = info.description
            params.append(entry)
    if accepts_idempotency_key(endpoint.endpoint):
        params.append(dict(HEADER_PARAMETER))
    return params


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _state_limits(parts: list[dict[str, Any]], limits: Limits) -> None:
    """Write the configured bounds where the models and routes marked them (``x-limit``)."""
    for node in _walk(parts):
        kind = node.pop("x-limit", None)
        if kind == "coordinate":
            node["maximum"] = limits.max_vertices - 1
        elif kind == "axis":
            node["maximum"] = limits.max_vertices
        elif kind == "page_limit":
            node["maximum"] = limits.max_page_limit
        elif kind == "vertices":
            node["x-max-vertices"] = limits.max_vertices
            node["description"] = (
                f"Axis lengths, 1 to {MAX_AXES} axes; their product, the vertex count, is at most "
                f"{limits.max_vertices} (413 past it). Over {limits.inline_max_vertices} vertices a computation "
                f"runs as a job (202), and one that would need more than {limits.max_request_memory_bytes} bytes "
                "is refused (413)."
            )


def _job_params(schemas: dict[str, Any]) -> None:
    """State what a job's ``params`` holds for each ``operation``, as JSON Schema conditionals."""
    job = schemas.get(JobRequest.__name__)
    if job is None:
        return
    job["allOf"] = [
        {
            "if": {"properties": {"operation": {"const": operation}}, "required": ["operation"]},
            "then": {"properties": {"params": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}},
        }
        for operation, model in PARAMS_MODELS.items()
    ]


def openapi_document(endpoints: list[Endpoint], limits: Limits | None = None) -> dict[str, Any]:
    """An OpenAPI 3.1 document with a request and response schema per route and the configured limits.

    Parameters
    ----------
    endpoints : list of Endpoint
        Every route to describe.
    limits : Limits, optional
        The configured limits; without them the document states only what the models check.

    Returns
    -------
    dict
        The document, JSON-able.
    """
    models: set[type[BaseModel]] = {Problem}
    for ep in endpoints:
        if ep.request is not None:
            models.add(ep.request)
        models.update(m for m in ep.responses.values() if m is not None)
    if JobRequest in models:
        models.update(PARAMS_MODELS.values())
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, top = models_json_schema([(m, "validation") for m in ordered], ref_template=REF_TEMPLATE)
    schemas = dict(top.get("$defs", {}))
    _job_params(schemas)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    problem = {PROBLEM_MEDIA_TYPE: {"schema": ref(Problem)}}
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        responses: dict[str, Any] = {}
        for status, model in ep.responses.items():
            entry: dict[str, Any] = {
                "description": model.__doc__.strip().splitlines()[0] if model and model.__doc__ else "OK"
            }
            content: dict[str, Any] = {}
            if model is not None:
                content["application/json"] = {"schema": ref(model)}
            if status in ep.media_types:
                content[ep.media_types[status]] = {"schema": {"type": "string", "format": "binary"}}
            if content:
                entry["content"] = content
            responses[str(status)] = entry
        errors = set(ep.errors) | {403} | (set() if ep.open else {401})
        if ep.path.startswith("/api/"):
            errors.add(429)  # TENANT_MAX_REQUESTS_PER_SECOND holds on every route under /api/
        if ep.request is not None or ep.body_media_types:
            errors |= {413, 415, 422}
        if ep.query or ep.query_model is not None:
            errors.add(422)
        if accepts_idempotency_key(ep.endpoint):
            errors |= {409, 422}
        for status in sorted(errors):
            responses[str(status)] = {"description": _ERROR_TEXT[status], "content": problem}
        operation: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.operation_id or ep.endpoint.__name__,
            "tags": [ep.tag],
            "parameters": _parameters(ep, schemas),
            "responses": responses,
        }
        if ep.request is not None:
            body_limit = ep.max_body_bytes or (limits.max_body_bytes if limits is not None else None)
            operation["requestBody"] = {
                "required": not ep.body_optional,
                "content": {"application/json": {"schema": ref(ep.request)}},
                "description": "JSON" + (f", at most {body_limit} bytes (413 past it)" if body_limit else ""),
            }
            if body_limit:
                operation["requestBody"]["x-max-body-bytes"] = body_limit
        if ep.body_media_types:
            binary = {"schema": {"type": "string", "format": "binary"}}
            upload_limit = ep.max_body_bytes or (limits.max_upload_bytes if limits is not None else None)
            operation["requestBody"] = {
                "required": True,
                "content": {media_type: binary for media_type in ep.body_media_types},
                "description": "Streamed"
                + (f", at most {upload_limit} bytes (413 as soon as past it)" if upload_limit else ""),
            }
            if upload_limit:
                operation["requestBody"]["x-max-body-bytes"] = upload_limit
        if ep.open:
            operation["security"] = []
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    if limits is not None:
        _state_limits([schemas, paths], limits)
    for node in _walk([schemas, paths]):
        node.pop("x-limit", None)
    info: dict[str, Any] = {
        "title": "catalytic",
        "version": __version__,
        "description": "Shortest paths, distance fields and components on implicit d-dimensional lattices. "
        "Every error is RFC 9457 problem details (application/problem+json) with a stable `code`, the "
        "`request_id` and the bad fields in `errors`.\n\n"
        "**Tenants.** An API key belongs to a tenant. Every lattice, job, result, uploaded array, webhook endpoint, "
        "event and delivery belongs to the tenant whose key made it, and every route reads and changes its own "
        "tenant's only: another tenant's id answers 404, exactly as a missing one. Without configured keys the "
        "service serves one implicit tenant on loopback.\n\n"
        "**Quotas per tenant** answer in the same shape with code `quota_exceeded`, the quota named in `detail` "
        "and in `errors[0].field` (`quota.<name>`) with its value in `allowed`: 403 for counts "
        "(`max_lattices`, `max_webhook_endpoints`), 413 for size (`max_vertices`), 429 with `Retry-After` for "
        "rates and holdings (`max_requests_per_second`, `max_queued_jobs`, `max_result_bytes`). Running jobs "
        "past `max_concurrent_jobs` are not refused: they wait queued for their turn.\n\n"
        "**Retries.** Submissions that may start work (`POST /api/jobs`, `/api/lattice/create` and the "
        "computations that can become jobs) take an `Idempotency-Key` header: the same key and body replays "
        "the first answer for 24 hours, on every replica.",
    }
    if limits is not None:
        info["x-limits"] = {
            "max_body_bytes": limits.max_body_bytes,
            "max_vertices": limits.max_vertices,
            "inline_max_vertices": limits.inline_max_vertices,
            "max_request_memory_bytes": limits.max_request_memory_bytes,
            "max_page_limit": limits.max_page_limit,
            "max_upload_bytes": limits.max_upload_bytes,
            "axes": [1, MAX_AXES],
        }
    return {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


DOCS_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "index.css", "favicon-32x32.png", "favicon-16x16.png")
"""The Swagger UI files /docs/assets/{name} serves (a fixed list: no other path reaches the disk)."""

_ASSET_PACKAGE = "flask_swagger_ui"


@cache
def _assets_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ would import Flask).
    spec = importlib.util.find_spec(_ASSET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {_ASSET_PACKAGE} package (Swagger UI's files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@cache
def docs_asset(name: str) -> tuple[bytes, str]:
    """The bytes and media type of one Swagger UI file named in :data:`DOCS_ASSETS`.

    Raises
    ------
    KeyError
        A name not in the list.
    FileNotFoundError
        The Swagger UI package is not installed.
    """
    if name not in DOCS_ASSETS:
        raise KeyError(name)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return (_assets_dir() / name).read_bytes(), media_type


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>catalytic API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"><link rel="stylesheet" href="/docs/assets/index.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
</head><body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/init.js"></script>
</body></html>
"""

DOCS_INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null
});
"""
"""The page's one script of its own, served as a file (/docs/assets/init.js) so the page needs no inline script."""
