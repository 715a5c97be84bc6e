"""Every endpoint in process (SQLite, ASGITransport): answers, and every error path with its status and fields."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from service.service_helpers import Service, start_service

from catalytic import Lattice
from catalytic.kernels import analyze, components, distance_field, shortest_path
from catalytic.tenancy import IMPLICIT_TENANT

pytestmark = pytest.mark.anyio

OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 1}]


async def create(service: Service, **body: Any) -> dict[str, Any]:
    response = await service.client.post("/api/lattice/create", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def wait_job(service: Service, location: str, timeout: float = 60.0) -> dict[str, Any]:
    for _ in range(int(timeout / 0.05)):
        status = (await service.client.get(location)).json()
        if status["status"] in {"succeeded", "failed", "cancelled"}:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {location} did not finish: {status}")


def fields(response: Any) -> list[str]:
    return [f["field"] for f in response.json()["errors"]]


async def test_create_get_list_delete(service: Service) -> None:
    shape = [6, 7, 5]
    created = await create(service, shape=shape, periodic=[True, False, True], obstacles=OBSTACLES)
    lattice = Lattice(shape, periodic=[True, False, True], obstacles=OBSTACLES)
    report = analyze(lattice)
    assert created["vertices"] == 210
    assert created["open_vertices"] == report["open_vertices"]
    assert created["edges"] == report["edges"]
    assert created["memory"]["memory_efficiency_ratio"] > 0
    got = (await service.client.get(f"/api/lattice/{created['id']}")).json()
    assert got["spec"] == lattice.spec()
    second = await create(service, shape=[3, 3])
    page = (await service.client.get("/api/lattices", params={"limit": 1})).json()
    assert [item["id"] for item in page["items"]] == [created["id"]]
    rest = (await service.client.get("/api/lattices", params={"cursor": page["next_cursor"]})).json()
    assert [item["id"] for item in rest["items"]] == [second["id"]] and rest["next_cursor"] is None
    deleted = await service.client.delete(f"/api/lattice/{created['id']}")
    assert deleted.status_code == 200
    assert (await service.client.get(f"/api/lattice/{created['id']}")).status_code == 404
    assert (await service.client.delete(f"/api/lattice/{created['id']}")).status_code == 404


async def test_path_matches_the_kernel_and_is_cached(service: Service) -> None:
    created = await create(service, shape=[10] * 4, obstacles=OBSTACLES)
    body = {"lattice_id": created["id"], "start": [0, 0, 0, 0], "goal": [9, 9, 9, 9]}
    first = await service.client.post("/api/lattice/path", json=body)
    assert first.status_code == 200, first.text
    expected = shortest_path(Lattice([10] * 4, obstacles=OBSTACLES), [0] * 4, [9] * 4)
    answer = first.json()
    assert answer["found"] is True and answer["cached"] is False
    assert answer["path"] == expected.coords.tolist()
    assert answer["length"] == expected.length and answer["cost"] == expected.cost
    assert answer["backend"] == expected.backend
    again = (await service.client.post("/api/lattice/path", json=body)).json()
    assert again["cached"] is True and again["path"] == answer["path"]


async def test_inline_path_weighted_and_masks(service: Service) -> None:
    shape = (5, 6)
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.5, 3.0, size=shape)
    blocked = np.zeros(shape, dtype=bool)
    blocked[1:4, 2] = True
    expected = shortest_path(Lattice(shape, blocked=blocked, weights=weights), [0, 0], [4, 5])
    packed = base64.b64encode(np.packbits(blocked.ravel(), bitorder="little")).decode()
    coords = np.argwhere(blocked).tolist()
    for mask in (packed, coords):
        for w in (weights.tolist(), base64.b64encode(weights.astype("<f8").tobytes()).decode()):
            lattice = {"shape": list(shape), "blocked": mask, "weights": w}
            body = {"lattice": lattice, "start": [0, 0], "goal": [4, 5], "method": "dijkstra"}
            response = await service.client.post("/api/lattice/path", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["path"] == expected.coords.tolist()
            assert response.json()["cost"] == pytest.approx(expected.cost)


async def test_unreachable_is_found_false(service: Service) -> None:
    wall = {"kind": "box", "lo": [0, 2], "hi": [4, 2]}
    body = {"lattice": {"shape": [5, 5], "obstacles": [wall]}, "start": [0, 0], "goal": [4, 4]}
    response = await service.client.post("/api/lattice/path", json=body)
    assert response.status_code == 200
    assert response.json()["found"] is False


async def test_analyze_and_components(service: Service) -> None:
    lattice = Lattice([12, 12], obstacles=[{"kind": "random", "p": 0.4, "seed": 5}])
    created = await create(service, shape=[12, 12], obstacles=[{"kind": "random", "p": 0.4, "seed": 5}])
    report = (await service.client.post("/api/lattice/analyze", json={"lattice_id": created["id"]})).json()
    expected = analyze(lattice)
    assert report["components"] == expected["components"]
    assert report["diameter"] == expected["diameter"]
    assert report["degree_histogram"] == {str(k): v for k, v in expected["degree_histogram"].items()}
    answer = (await service.client.post("/api/lattice/components", json={"lattice_id": created["id"]})).json()
    labels, count = components(lattice)
    assert answer["count"] == count
    assert answer["sizes"] == np.bincount(labels.ravel())[1:].tolist()
    assert answer["largest"] == max(answer["sizes"])


async def test_distance_field_job_returns_npy(service: Service) -> None:
    created = await create(service, shape=[8, 9], obstacles=OBSTACLES)
    body = {"lattice_id": created["id"], "sources": [[0, 0], [7, 8]]}
    response = await service.client.post("/api/lattice/distance-field", json=body)
    assert response.status_code == 202
    location = response.headers["location"]
    assert location == f"/api/jobs/{response.json()['id']}"
    status = await wait_job(service, location)
    assert status["status"] == "succeeded" and status["progress"] == 1.0
    assert status["timings"]["run_s"] >= 0
    result = (await service.client.get(f"{location}/result")).json()
    assert result["array_url"].endswith("?format=npy")
    download = await service.client.get(result["array_url"])
    assert download.headers["content-type"] == "application/x-npy"
    field = np.load(io.BytesIO(download.content), allow_pickle=False)
    expected = distance_field(Lattice([8, 9], obstacles=OBSTACLES), [[0, 0], [7, 8]])
    np.testing.assert_array_equal(field, expected)
    assert result["result"]["reached"] == int((expected >= 0).sum())


async def test_large_path_becomes_a_job(service: Service) -> None:
    shape = [70, 70, 70]
    created = await create(service, shape=shape)
    body = {"lattice_id": created["id"], "start": [0, 0, 0], "goal": [69, 69, 69]}
    response = await service.client.post("/api/lattice/path", json=body)
    assert response.status_code == 202
    status = await wait_job(service, response.headers["location"])
    assert status["status"] == "succeeded"
    result = (await service.client.get(f"{response.headers['location']}/result")).json()
    assert result["result"]["length"] == 3 * 69 and result["array_url"] is None
    no_array = await service.client.get(f"{response.headers['location']}/result?format=npy")
    assert no_array.status_code == 404


@pytest.mark.parametrize(
    ("start", "field"), [([0, 0, 70], "start"), ([0, 0], "start"), ([0, 0, 0], "start"), ([69, 69, 69], "goal")]
)
async def test_job_sized_path_refuses_bad_endpoints_before_queueing(
    service: Service, start: list[int], field: str
) -> None:
    # The lattice is over the inline threshold, so a valid query would become a job; a bad one is a 422 now.
    box = {"kind": "box", "lo": [0, 0, 0], "hi": [0, 0, 0]}
    goal_box = {"kind": "box", "lo": [69, 69, 69], "hi": [69, 69, 69]}
    created = await create(service, shape=[70, 70, 70], obstacles=[box] if field == "start" else [goal_box])
    goal = [69, 69, 69] if field == "start" else [1, 1, 1]
    body = {"lattice_id": created["id"], "start": start if field == "start" else [1, 1, 1], "goal": goal}
    if field == "goal":
        body["goal"] = start
    response = await service.client.post("/api/lattice/path", json=body)
    assert response.status_code == 422, response.text
    assert field in fields(response)
    assert await service.state.db.fetchval("SELECT count(*) FROM service_jobs") == 0


async def test_start_up_heap_is_frozen_while_serving(make_settings: Any) -> None:
    import gc

    async for running in start_service(make_settings()):
        await running.app.state.service.warm_up
        for _ in range(100):  # the freeze is a done-callback of the warm-up: it runs on a later loop turn
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


async def test_jobs_api_and_job_events(service: Service) -> None:
    created = await create(service, shape=[6, 6], obstacles=OBSTACLES)
    body = {"operation": "components", "lattice_id": created["id"]}
    response = await service.client.post("/api/jobs", json=body)
    assert response.status_code == 202
    status = await wait_job(service, response.headers["location"])
    assert status["status"] == "succeeded" and status["result_url"].endswith("/result")
    labels = np.load(io.BytesIO((await service.client.get(status["result_url"] + "?format=npy")).content))
    np.testing.assert_array_equal(labels, components(Lattice([6, 6], obstacles=OBSTACLES))[0])
    again = await service.client.delete(response.headers["location"])
    assert again.status_code == 409
    events = await service.state.db.fetch("SELECT type FROM events ORDER BY created_at")
    assert [e["type"] for e in events] == ["lattice.created", "job.succeeded"]


async def test_job_with_invalid_params_is_refused_before_queueing(service: Service) -> None:
    bad = {"operation": "shortest_path", "lattice": {"shape": [4, 4]}, "params": {"start": [0, 0], "goal": [9, 9]}}
    response = await service.client.post("/api/jobs", json=bad)
    assert response.status_code == 422 and fields(response) == ["params.goal"]
    missing = {"operation": "distance_field", "lattice": {"shape": [4, 4]}, "params": {}}
    response = await service.client.post("/api/jobs", json=missing)
    assert response.status_code == 422 and fields(response) == ["params.sources"]
    assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_jobs") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"shape": [4, "x"]}, "shape[1]"),
        ({"shape": []}, "shape"),
        ({"shape": [4, 0]}, "shape[1]"),
        ({"shape": [2] * 11}, "shape"),
        ({"shape": [4, 4], "colour": "red"}, "colour"),
        ({"shape": [4, 4], "periodic": [True]}, "periodic"),
        ({"shape": [4, 4], "obstacles": [{"kind": "random", "p": 1.5, "seed": 1}]}, "obstacles[0].p"),
        ({"shape": [4, 4], "obstacles": [{"kind": "box", "lo": [0, 0], "hi": [9, 0]}]}, "obstacles[0].hi[0]"),
        ({"shape": [4, 4], "blocked": "!!notbase64"}, "blocked"),
        ({"shape": [4, 4], "blocked": "AAAA"}, "blocked"),
        ({"shape": [4, 4], "blocked": [[0, 9]]}, "blocked[0]"),
        ({"shape": [2, 2], "weights": [[1, 2], [3]]}, "weights"),
        ({"shape": [2, 2], "weights": [[1, 2], [3, -1]]}, "weights"),
        ({"shape": [2, 2], "weights": [[1, 2], [3, "nan"]]}, "weights"),
    ],
)
async def test_create_rejects_bad_input_with_the_field(service: Service, body: dict[str, Any], field: str) -> None:
    response = await service.client.post("/api/lattice/create", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input"
    assert field in fields(response)
    assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_lattices") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lattice": {"shape": [4, 4]}, "start": [0, 0], "goal": [4, 0]}, "goal"),
        ({"lattice": {"shape": [4, 4]}, "start": [0], "goal": [3, 3]}, "start"),
        ({"lattice": {"shape": [4, 4]}, "start": [0, 0], "goal": [3, 3], "method": "teleport"}, "method"),
        ({"lattice": {"shape": [4, 4]}, "lattice_id": "lat_x", "start": [0, 0], "goal": [3, 3]}, "body"),
        ({"start": [0, 0], "goal": [3, 3]}, "body"),
        (
            {
                "lattice": {"shape": [4, 4], "obstacles": [{"kind": "box", "lo": [0, 0], "hi": [0, 0]}]},
                "start": [0, 0],
                "goal": [3, 3],
            },
            "start",
        ),
        (
            {
                "lattice": {"shape": [2, 2], "weights": [[1, 1], [1, 1]]},
                "start": [0, 0],
                "goal": [1, 1],
                "method": "bfs",
            },
            "method",
        ),
    ],
)
async def test_path_rejects_bad_input_with_the_field(service: Service, body: dict[str, Any], field: str) -> None:
    response = await service.client.post("/api/lattice/path", json=body)
    assert response.status_code == 422, response.text
    assert field in fields(response)


async def test_malformed_json_and_wrong_body_type(service: Service) -> None:
    for content in (b"{bad json", b"[1, 2]", b'"text"'):
        response = await service.client.post(
            "/api/lattice/path", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "invalid_input"
    response = await service.client.get("/api/lattices", params={"limit": "0"})
    assert response.status_code == 422 and fields(response) == ["limit"]


async def test_unknown_ids_are_404(service: Service) -> None:
    client = service.client
    assert (await client.get("/api/lattice/lat_nope")).status_code == 404
    assert (await client.delete("/api/lattice/lat_nope")).status_code == 404
    for path in ("/api/lattice/path", "/api/lattice/analyze", "/api/lattice/components"):
        body: dict[str, Any] = {"lattice_id": "lat_nope"}
        if path.endswith("path"):
            body |= {"start": [0], "goal": [0]}
        response = await client.post(path, json=body)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert (await client.post("/api/jobs", json={"operation": "analyze", "lattice_id": "lat_nope"})).status_code == 404
    assert (await client.get("/api/jobs/job_nope")).status_code == 404
    assert (await client.get("/api/jobs/job_nope/result")).status_code == 404
    assert (await client.delete("/api/jobs/job_nope")).status_code == 404


async def test_size_limits_are_413(make_settings: Any) -> None:
    settings = make_settings(
        CATALYTIC_MAX_BODY_BYTES=4096, CATALYTIC_MAX_REQUEST_VERTICES=10_000, CATALYTIC_MAX_REQUEST_MEMORY_BYTES=150_000
    )
    async for service in start_service(settings):
        big = await service.client.post(
            "/api/lattice/create", json={"shape": [4, 4], "weights": [[1.0] * 4] * 4, "pad": "x" * 5000}
        )
        assert big.status_code == 413 and big.json()["code"] == "too_large"

        async def chunks() -> Any:
            for _ in range(2):
                yield b" " * 3000

        chunked = await service.client.post(
            "/api/lattice/create", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        vertices = await service.client.post("/api/lattice/create", json={"shape": [101, 100]})
        assert vertices.status_code == 413 and fields(vertices) == ["shape"]
        memory = await service.client.post(
            "/api/lattice/path", json={"lattice": {"shape": [100, 99]}, "start": [0, 0], "goal": [1, 1]}
        )
        assert memory.status_code == 413
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_lattices") == 0


async def test_max_lattices_is_503_with_retry_after(make_settings: Any) -> None:
    async for service in start_service(make_settings(MAX_LATTICES=1, CATALYTIC_RETRY_AFTER_S=7)):
        await create(service, shape=[3])
        refused = await service.client.post("/api/lattice/create", json={"shape": [3]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_lattices") == 1
        events = await service.state.db.fetch("SELECT type FROM events")
        assert [e["type"] for e in events] == ["lattice.created"]


async def test_health_ready_openapi_docs_and_request_id(service: Service) -> None:
    client = service.client
    assert (await client.get("/health")).json() == {"status": "ok"}
    for _ in range(1200):
        ready = await client.get("/ready")
        if ready.json()["kernels_loaded"]:
            break
        assert ready.status_code == 503
        await asyncio.sleep(0.05)
    assert ready.status_code == 200 and ready.json()["database"] is True
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/health")).headers["x-request-id"]) == 32
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    for path, method in [("/api/lattice/create", "post"), ("/api/lattice/path", "post"), ("/api/jobs", "post")]:
        operation = document["paths"][path][method]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.split("/")[-1] in schemas
        assert "422" in operation["responses"] and "401" in operation["responses"]
    assert {"/api/lattice/{lattice_id}", "/api/lattices", "/api/jobs/{job_id}/result", "/health"} <= set(
        document["paths"]
    )
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text


@pytest.mark.parametrize("pool", ["process", "thread"])
async def test_request_time_limit_is_504(make_settings: Any, pool: str) -> None:
    settings = make_settings(CATALYTIC_REQUEST_TIMEOUT_S=0.05, CATALYTIC_BACKEND="numpy", CATALYTIC_COMPUTE_POOL=pool)
    async for service in start_service(settings):
        body = {"lattice": {"shape": [400, 400]}, "start": [0, 0], "goal": [399, 399], "method": "dijkstra"}
        response = await service.client.post("/api/lattice/path", json=body)
        assert response.status_code == 504 and "POST /api/jobs" in response.json()["detail"]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_routes_operations_caches_and_jobs(service: Service) -> None:
    route = {"method": "POST", "route": "/api/lattice/path", "status": "200"}
    before_requests = sample("http_requests_total", **route)
    before_ops = sample("lattice_operations_total", operation="shortest_path", backend="numba")
    before_hits = sample("cache_hits_total", layer="l1")
    created = await create(service, shape=[9, 9], obstacles=OBSTACLES)
    assert sample("active_lattices") == 1
    assert sample("memory_efficiency_ratio") == pytest.approx(created["memory"]["memory_efficiency_ratio"])
    body = {"lattice_id": created["id"], "start": [0, 0], "goal": [8, 8]}
    for _ in range(2):
        assert (await service.client.post("/api/lattice/path", json=body)).status_code == 200
    assert sample("http_requests_total", **route) == before_requests + 2
    assert sample("lattice_operations_total", operation="shortest_path", backend="numba") == before_ops + 1
    assert sample("cache_hits_total", layer="l1") == before_hits + 1
    assert sample("http_request_duration_seconds_count", **route) >= 2
    await service.client.get(f"/api/lattice/{created['id']}")
    assert sample("http_requests_total", method="GET", route="/api/lattice/{lattice_id}", status="200") >= 1


async def test_transform_and_inverse_round_trip(service: Service) -> None:
    from catalytic.transforms import transform

    values = np.array([[1.5, np.nan, -0.0], [2.0, 3.25, 1e300]])
    body = {"data": base64.b64encode(values.tobytes()).decode(), "dtype": "float64", "shape": [2, 3]}
    body |= {"op": ["xor", "permute"], "seed": 11}
    scrambled = await service.client.post("/api/lattice/transform", json=body)
    assert scrambled.status_code == 200, scrambled.text
    raw = base64.b64decode(scrambled.json()["data"])
    assert raw == transform(values, ["xor", "permute"], seed=11).tobytes() and raw != values.tobytes()
    restored = await service.client.post("/api/lattice/inverse", json={**body, "data": scrambled.json()["data"]})
    assert base64.b64decode(restored.json()["data"]) == values.tobytes()
    for bad, field in (({"dtype": "object"}, "dtype"), ({"shape": [2, 2]}, "data"), ({"op": "shuffle"}, "op")):
        response = await service.client.post("/api/lattice/transform", json={**body, **bad})
        assert response.status_code == 422 and any(f.startswith(field) for f in fields(response))


async def test_a_large_transform_is_decoded_and_rendered_off_the_event_loop(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4 MiB array round-trips; its answer's JSON is rendered on a compute thread, never on the loop's."""
    import threading

    from catalytic.service.routes import transforms

    rendered_on: list[str] = []
    run = transforms._run

    def spy(*args: Any) -> Any:
        answer = run(*args)
        if isinstance(answer, bytes):  # the answer's JSON, ready to send
            rendered_on.append(threading.current_thread().name)
        return answer

    monkeypatch.setattr(transforms, "_run", spy)
    values = np.random.default_rng(3).random(1 << 19)
    body = {"data": base64.b64encode(values.tobytes()).decode(), "dtype": "<f8", "shape": [1 << 19], "op": "add"}
    scrambled = await service.client.post("/api/lattice/transform", json=body)
    assert scrambled.status_code == 200 and scrambled.headers["content-type"] == "application/json"
    restored = await service.client.post("/api/lattice/inverse", json={**body, "data": scrambled.json()["data"]})
    assert base64.b64decode(restored.json()["data"]) == values.tobytes()
    assert len(rendered_on) == 2 and all(name.startswith("catalytic-compute") for name in rendered_on), rendered_on


async def test_in_process_webhook_worker_runs_beside_the_api(
    make_settings: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    seen = ""
    async for service in start_service(make_settings(CATALYTIC_WEBHOOK_WORKER=True, LOG_LEVEL="INFO")):
        assert "catalytic-webhook-worker" in {task.get_name() for task in asyncio.all_tasks()}
        assert (await service.client.get("/api/webhooks")).status_code == 200
        for _ in range(600):
            seen += capfd.readouterr().err
            if "webhook worker" in seen and "started" in seen:
                break
            await asyncio.sleep(0.05)
    assert "catalytic-webhook-worker" not in {task.get_name() for task in asyncio.all_tasks()}
    assert "stopped" in capfd.readouterr().err


async def test_a_delete_through_one_process_is_seen_at_once_by_another_on_sqlite(make_settings: Any) -> None:
    settings = make_settings()
    async for first in start_service(settings):
        async for second in start_service(settings):
            created = await create(first, shape=[7, 7])
            body = {"lattice_id": created["id"], "start": [0, 0], "goal": [6, 6]}
            for _ in range(3):  # the second instance verifies the id once, then answers from its caches
                answer = await second.client.post("/api/lattice/path", json=body)
                assert answer.status_code == 200
            assert answer.json()["cached"] is True
            held = f"{IMPLICIT_TENANT}/{created['id']}"  # ids are remembered per tenant
            assert second.state.existing.known(held, second.state.existing.token())
            assert (await first.client.delete(f"/api/lattice/{created['id']}")).status_code == 200
            assert not second.state.existing.known(held, second.state.existing.token())
            assert (await second.client.post("/api/lattice/path", json=body)).status_code == 404
            assert (
                await second.client.post("/api/lattice/components", json={"lattice_id": created["id"]})
            ).status_code == 404
