"""Every error is problem details, and the inputs that once answered 500 answer 4xx or 503 naming the field.

Each of the first tests is one repro of issue 12 (a ragged ``blocked`` list, a coordinate past 64 bits, a dtype
NumPy cannot parse, a backend this server lacks, a webhook body nested 1,000 deep, a job with a blocked source):
each answered ``500 text/plain`` before.
"""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import jsonschema
import pytest
from service.service_helpers import Service, start_service

from catalytic.kernels.backend import backends
from catalytic.service.logs import JsonFormatter

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem details of ``response``, checked for the members every problem has."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == f"urn:catalytic:problem:{body['code']}"
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["instance"] == response.request.url.path
    assert {"title", "detail", "errors"} <= set(body)
    return body


def fields(body: dict[str, Any]) -> list[str]:
    return [entry["field"] for entry in body["errors"]]


async def count(service: Service, table: str) -> int:
    return int(await service.state.db.fetchval(f"SELECT COUNT(*) FROM {table}"))


async def test_a_ragged_blocked_list_is_a_422_naming_the_row(service: Service) -> None:
    response = await service.client.post("/api/lattice/create", json={"shape": [4, 4], "blocked": [[1, 2], [3]]})
    body = problem(response, 422)
    assert body["code"] == "invalid_input" and fields(body) == ["blocked[1]"]
    assert "2 integers" in body["errors"][0]["allowed"]
    assert await count(service, "service_lattices") == 0


async def test_a_coordinate_past_64_bits_is_a_422_naming_it(service: Service) -> None:
    body = {"shape": [4, 4], "blocked": [[1, 1180591620717411303424]]}
    refused = problem(await service.client.post("/api/lattice/create", json=body), 422)
    assert "blocked[0][1]" in fields(refused)
    path = {"lattice": {"shape": [4, 4]}, "start": [0, 2**64], "goal": [1, 1]}
    assert "start[1]" in fields(problem(await service.client.post("/api/lattice/path", json=path), 422))


@pytest.mark.parametrize("dtype", [",", "#,", "a", "f8,i4", "object"])
async def test_a_dtype_numpy_cannot_parse_is_a_422_naming_it(service: Service, dtype: str) -> None:
    body = {"data": "", "dtype": dtype, "shape": [], "op": "xor"}
    for route in ("/api/lattice/transform", "/api/lattice/inverse"):
        assert fields(problem(await service.client.post(route, json=body), 422)) == ["dtype"]


@pytest.mark.skipif("cupy" in backends(), reason="this machine can run the cupy backend")
async def test_a_backend_this_server_lacks_is_a_503_with_retry_after_and_no_job(service: Service) -> None:
    path = {"lattice": {"shape": [4, 4]}, "start": [0, 0], "goal": [3, 3], "backend": "cupy"}
    job = {"operation": "shortest_path", "lattice": {"shape": [4, 4]}, "params": {"start": [0, 0], "goal": [3, 3]}}
    for route, body in (("/api/lattice/path", path), ("/api/jobs", {**job, "backend": "cupy"})):
        response = await service.client.post(route, json=body)
        refused = problem(response, 503)
        assert refused["code"] == "backend_unavailable" and fields(refused) == ["backend"]
        assert int(response.headers["retry-after"]) > 0
        assert "numba" in refused["errors"][0]["allowed"]
    assert await count(service, "service_jobs") == 0


async def test_a_webhook_body_nested_1000_deep_is_a_422(service: Service) -> None:
    nested = '{"url": ' + "[" * 1000 + "]" * 1000 + "}"
    headers = {"content-type": "application/json"}
    for method, path in (
        ("POST", "/api/webhooks"),
        ("PATCH", "/api/webhooks/whe_x"),
        ("POST", "/api/webhooks/x/replay"),
    ):
        response = await service.client.request(method, path, content=nested, headers=headers)
        refused = problem(response, 422)
        assert refused["code"] == "invalid_input" and fields(refused) == ["body"]
    assert await count(service, "webhook_endpoints") == 0


async def test_a_job_with_a_blocked_or_outside_vertex_is_refused_at_submission(service: Service) -> None:
    lattice = {"shape": [4, 4], "blocked": [[1, 1]]}
    cases = [
        ("/api/jobs", {"operation": "distance_field", "params": {"sources": [[0, 0], [1, 1]]}}, "params.sources[1]"),
        ("/api/jobs", {"operation": "shortest_path", "params": {"start": [1, 1], "goal": [0, 0]}}, "params.start"),
        ("/api/jobs", {"operation": "shortest_path", "params": {"start": [0, 0], "goal": [0, 4]}}, "params.goal"),
        ("/api/jobs", {"operation": "shortest_path", "params": {"start": [0, 0], "goal": ["x", 0]}}, "params.goal[0]"),
        ("/api/lattice/distance-field", {"sources": [[0, 0], [1, 1]]}, "sources[1]"),
    ]
    for route, body, field in cases:
        response = await service.client.post(route, json={"lattice": lattice, **body})
        assert fields(problem(response, 422)) == [field]
    assert await count(service, "service_jobs") == 0


async def test_unknown_routes_and_methods_answer_problem_details(service: Service) -> None:
    missing = problem(await service.client.get("/api/nowhere"), 404)
    assert missing["code"] == "not_found" and "/openapi.json" in missing["detail"]
    response = await service.client.put("/api/jobs")
    assert problem(response, 405)["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"
    assert problem(await service.client.get("/docs/assets/../../etc/passwd"), 404)["code"] == "not_found"


async def test_an_unexpected_error_is_a_500_problem_logged_with_its_traceback(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catalytic.service.routes import lattices

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a fault no handler knows")

    monkeypatch.setattr(lattices.queries, "list_lattices", broken)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("catalytic.service")
    logger.addHandler(handler)
    try:
        response = await service.client.get("/api/lattices", headers={"X-Request-ID": "req-unexpected-1"})
    finally:
        logger.removeHandler(handler)
    body = problem(response, 500)
    assert body["code"] == "internal" and body["request_id"] == "req-unexpected-1"
    assert "a fault no handler knows" not in body["detail"]  # the trace stays in the log
    (entry,) = [json.loads(line) for line in lines.getvalue().splitlines() if "unexpected error" in line]
    assert entry["request_id"] == "req-unexpected-1" and entry["level"] == "ERROR"
    assert "RuntimeError: a fault no handler knows" in entry["exception"] and "Traceback" in entry["exception"]


async def test_a_missing_key_is_a_401_problem(make_settings: Any) -> None:
    async for running in start_service(make_settings(CATALYTIC_API_KEYS="alpha-key")):
        response = await running.client.get("/api/webhooks")
        assert problem(response, 401)["code"] == "unauthorized"
        for asset in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/init.js"):
            assert (await running.client.get(asset)).status_code == 200, asset


async def test_the_document_states_the_webhook_routes_and_the_configured_limits(make_settings: Any) -> None:
    settings = make_settings(CATALYTIC_MAX_REQUEST_VERTICES=5000, CATALYTIC_MAX_BODY_BYTES=123_456)
    async for running in start_service(settings):
        document = (await running.client.get("/openapi.json")).json()
    webhook_operations = [
        (path, method)
        for path, item in document["paths"].items()
        if path.startswith("/api/webhooks")
        for method in item
    ]
    assert len(webhook_operations) == 12
    create = document["paths"]["/api/webhooks"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EndpointCreate")
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/EndpointWithSecret")
    assert create["requestBody"]["x-max-body-bytes"] == 64 * 1024
    for route, item in document["paths"].items():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and route != "/ready":  # a 503 of /ready is its readiness report
                    assert answer["content"] == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert document["info"]["x-limits"]["max_vertices"] == 5000
    schemas = document["components"]["schemas"]
    shape = schemas["LatticeCreate"]["properties"]["shape"]
    assert (shape["minItems"], shape["maxItems"], shape["items"]["maximum"]) == (1, 10, 5000)
    assert "5000" in shape["description"]
    assert schemas["PathRequest"]["properties"]["start"]["items"]["maximum"] == 4999
    path = document["paths"]["/api/lattice/path"]["post"]
    assert path["requestBody"]["x-max-body-bytes"] == 123_456 and "123456 bytes" in path["requestBody"]["description"]
    assert not re.search(r'"x-limit"', json.dumps(document))


async def test_analyze_answers_what_its_schema_says(service: Service) -> None:
    document = (await service.client.get("/openapi.json")).json()
    body = {"lattice": {"shape": [5, 5], "obstacles": [{"kind": "random", "p": 0.2, "seed": 3}]}}
    answer = await service.client.post("/api/lattice/analyze", json=body)
    assert answer.status_code == 200, answer.text
    schema = {"$ref": "#/components/schemas/AnalyzeResponse", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(answer.json())
    assert all(key.isdigit() for key in answer.json()["degree_histogram"])


async def test_docs_serve_swagger_ui_from_the_package_and_nothing_from_the_network(service: Service) -> None:
    page = await service.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert referenced and all(ref.startswith("/docs/assets/") for ref in referenced)
    init = await service.client.get("/docs/assets/init.js")
    assert '"/openapi.json"' in init.text and "validatorUrl: null" in init.text
    for ref in referenced:
        asset = await service.client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 100, ref
        assert not re.search(
            r"(?:src|href)=[\"']https?://", asset.text if "text" in asset.headers["content-type"] else ""
        )
    bundle = await service.client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in bundle.headers["content-type"] and b"SwaggerUIBundle" in bundle.content
