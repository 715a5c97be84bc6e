"""The OpenAPI 3.1 document, built from the route table and the pydantic models, and the /docs page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from catalytic import __version__
from catalytic.service.schemas import ErrorResponse

__all__ = ["DOCS_HTML", "Endpoint", "openapi_document"]

_ERROR_TEXT = {
    401: "Missing or invalid API key",
    404: "Unknown id",
    409: "Conflicts with the resource's state",
    413: "Body, vertex or memory budget exceeded",
    422: "Invalid input (field-level messages)",
    503: "Capacity exhausted (Retry-After)",
    504: "Past the request time limit",
}


@dataclass(frozen=True)
class Endpoint:
    """One route: where it lives, what it takes and what it answers."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    endpoint: Callable[..., Any]
    summary: str
    request: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, str, str], ...] = ()
    open: bool = False
    tag: str = "lattices"


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params = [
        {"name": name.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
        for name in endpoint.path.split("/")
        if name.startswith("{")
    ]
    params += [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
        for n, t, d in endpoint.query
    ]
    return params


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    """An OpenAPI 3.1 document with a request and response schema per route."""
    models: set[type[BaseModel]] = {ErrorResponse}
    for ep in endpoints:
        if ep.request is not None:
            models.add(ep.request)
        models.update(m for m in ep.responses.values() if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, top = models_json_schema([(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}")
    schemas = dict(top.get("$defs", {}))

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        responses: dict[str, Any] = {}
        for status, model in ep.responses.items():
            entry: dict[str, Any] = {
                "description": model.__doc__.strip().splitlines()[0] if model and model.__doc__ else "OK"
            }
            if model is not None:
                entry["content"] = {"application/json": {"schema": ref(model)}}
            responses[str(status)] = entry
        errors = set(ep.errors) | ({422} if ep.request is not None else set()) | (set() if ep.open else {401})
        for status in sorted(errors):
            responses[str(status)] = {
                "description": _ERROR_TEXT[status],
                "content": {"application/json": {"schema": ref(ErrorResponse)}},
            }
        operation: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.endpoint.__name__,
            "tags": [ep.tag],
            "parameters": _parameters(ep),
            "responses": responses,
        }
        if ep.request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(ep.request)}}}
        if ep.open:
            operation["security"] = []
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "catalytic",
            "version": __version__,
            "description": "Shortest paths, distance fields and components on implicit d-dimensional lattices.",
        },
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


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>catalytic API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700}
.GET{color:#1565c0} .POST{color:#2e7d32} .DELETE{color:#c62828}
code,pre{font:13px ui-monospace,monospace} pre{background:#f6f8fa;padding:.6rem;overflow:auto;max-height:24rem}
details summary{cursor:pointer}
</style></head><body>
<h1>catalytic API</h1><p id="info">Loading <a href="/openapi.json">/openapi.json</a>…</p><div id="ops"></div>
<h2>Schemas</h2><div id="schemas"></div>
<script>
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const esc = s => String(s).replace(/[&<>]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;"}[c]));
  document.getElementById("info").innerHTML = esc(doc.info.description) + " Version " + esc(doc.info.version) +
    ". Machine-readable: <a href='/openapi.json'>/openapi.json</a>.";
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const m = method.toUpperCase();
      const body = op.requestBody ? op.requestBody.content["application/json"].schema.$ref.split("/").pop() : null;
      const codes = Object.entries(op.responses)
        .map(([c, r]) => "<li><b>" + c + "</b> " + esc(r.description) + "</li>").join("");
      ops.insertAdjacentHTML("beforeend", "<div class='op'><span class='m " + m + "'>" + m + "</span><code>" +
        esc(path) + "</code> — " + esc(op.summary) +
        (body ? "<br>Body: <a href='#" + body + "'>" + body + "</a>" : "") +
        "<ul>" + codes + "</ul></div>");
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    schemas.insertAdjacentHTML("beforeend", "<details id='" + name + "'><summary>" + esc(name) + "</summary><pre>" +
      esc(JSON.stringify(schema, null, 2)) + "</pre></details>");
  }
});
</script></body></html>
"""
