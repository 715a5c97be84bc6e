"""Large request bodies are parsed in a parse process: the event loop answers meanwhile, and answers are the same."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import ValidationError
from service.body_helpers import dying_parse, gated_parse
from service.service_helpers import Service, start_service

from catalytic.service.bodies import MAX_ERRORS, BodyParser, parse_body
from catalytic.service.schemas import LatticeCreate

pytestmark = pytest.mark.anyio

OFFLOAD = 1024
"""Bodies over 1 KiB go to the parse process in these tests."""
JSON = {"content-type": "application/json"}


def _blocked(count: int, side: int) -> list[list[int]]:
    rng = np.random.default_rng(7)
    return rng.integers(0, side, size=(count, 2)).tolist()


def _fields(response: httpx.Response) -> list[str]:
    """The fields an error answer names (``errors`` of problem details; ``fields`` of the older shape)."""
    body = response.json()
    return [entry["field"] for entry in body.get("errors", body.get("fields", []))]


async def _create(service: Service, body: dict[str, Any]) -> Any:
    return await service.client.post("/api/lattice/create", json=body)


async def _spec(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    created = await _create(service, body)
    assert created.status_code == 201, created.text
    return (await service.client.get(f"/api/lattice/{created.json()['id']}")).json()


async def test_large_bodies_parse_in_a_parse_process_to_the_same_lattices(make_settings: Any) -> None:
    side = 60
    weights = np.arange(side * side, dtype=np.float64).reshape(side, side) % 7 + 1
    bodies: list[dict[str, Any]] = [
        {"shape": [side, side], "blocked": _blocked(400, side)},
        {"shape": [side, side], "blocked": _blocked(400, side), "weights": weights.tolist()},
        {"shape": [side, side], "weights": base64.b64encode(weights.astype("<f8").tobytes()).decode()},
        {"shape": [side * 50, side * 50], "blocked": _blocked(400, side)},  # few coordinates: kept as an array
    ]
    expected = []
    async for on_loop in start_service(make_settings(CATALYTIC_PARSE_OFFLOAD_BYTES=2**26)):
        expected = [await _spec(on_loop, body) for body in bodies]
        assert on_loop.state.bodies.offloaded == 0
    async for service in start_service(make_settings(CATALYTIC_PARSE_OFFLOAD_BYTES=OFFLOAD)):
        for body, want in zip(bodies, expected, strict=True):
            got = await _spec(service, body)
            assert got["spec"] == want["spec"]
            assert (got["open_vertices"], got["edges"]) == (want["open_vertices"], want["edges"])
        assert service.state.bodies.offloaded == len(bodies)
        assert service.state.bodies.pids()  # a parse process did the work
        corners = ([0, 0], [side - 1, side - 1])
        lattice = {**bodies[0], "blocked": [c for c in bodies[0]["blocked"] if c not in corners]}
        inline = {"lattice": lattice, "start": corners[0], "goal": corners[1], "method": "bfs"}
        path = await service.client.post("/api/lattice/path", json=inline)
        assert path.status_code == 200 and path.json()["found"], path.text


async def test_large_bad_bodies_answer_as_small_ones(make_settings: Any) -> None:
    side = 40
    bad: list[dict[str, Any]] = [
        {"shape": [side, side], "blocked": [*_blocked(300, side), [side, 0]]},  # outside: the mask decoder refuses
        {"shape": [side * 9, side * 9], "blocked": [*_blocked(300, side), [0, -1]]},  # kept as coordinates
        {"shape": [side, side], "blocked": [*_blocked(300, side), [1, "x"]]},  # the schema refuses
        {"shape": [2, 300], "weights": [[1.0] * 300, [1.0] * 299]},  # ragged: left as sent
        {"shape": [2, 300], "weights": "%%%" + "A" * OFFLOAD},  # not base64: left as sent
    ]
    answers: dict[str, list[tuple[int, list[str]]]] = {}
    for name, offload in (("on the loop", 2**26), ("parse process", OFFLOAD)):
        async for service in start_service(make_settings(CATALYTIC_PARSE_OFFLOAD_BYTES=offload)):
            answers[name] = []
            for body in bad:
                refused = await _create(service, body)
                answers[name].append((refused.status_code, [f["field"] for f in refused.json()["errors"]]))
            not_json = await service.client.post("/api/lattice/create", content=b"{" * (2 * OFFLOAD), headers=JSON)
            answers[name].append((not_json.status_code, [f["field"] for f in not_json.json()["errors"]]))
            assert service.state.bodies.offloaded == (len(bad) + 1 if offload == OFFLOAD else 0)
            assert await service.state.db.fetchval("SELECT COUNT(*) FROM service_lattices") == 0
    assert answers["parse process"] == answers["on the loop"]
    assert {status for status, _ in answers["parse process"]} == {422}
    assert all(fields for _, fields in answers["parse process"])


async def test_the_event_loop_answers_while_a_body_is_parsed(make_settings: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    body = json.dumps({"shape": [50, 50], "blocked": _blocked(300, 50)}).encode()
    async for service in start_service(make_settings(CATALYTIC_PARSE_OFFLOAD_BYTES=OFFLOAD)):
        service.state.bodies = BodyParser(1, OFFLOAD, 2**20, parse=gated_parse)
        try:
            create = asyncio.create_task(
                service.client.post("/api/lattice/create", content=str(gate).encode() + b"\n" + body, headers=JSON)
            )
            started = gate.with_suffix(".started")
            for _ in range(3000):
                if started.exists() or create.done():
                    break
                await asyncio.sleep(0.01)
            assert started.exists(), "the parse process never began the parse"
            health = await service.client.get("/health")
            assert health.status_code == 200
            assert not create.done()  # the loop answered while the parse was still held in its process
            gate.write_text("go", encoding="utf-8")
            created = await create
            assert created.status_code == 201, created.text
            assert int(started.read_text(encoding="utf-8")) in service.state.bodies.pids()
        finally:
            service.state.bodies.close()


async def test_a_parse_process_that_dies_answers_503_and_is_replaced(make_settings: Any) -> None:
    pad = "y" * OFFLOAD
    async for service in start_service(make_settings(CATALYTIC_PARSE_OFFLOAD_BYTES=OFFLOAD)):
        service.state.bodies = BodyParser(1, OFFLOAD, 2**20, parse=dying_parse)
        try:
            died = await _create(service, {"shape": [3], "obstacles": [], "pad": pad, "x": "die"})
            assert died.status_code == 503 and "retry-after" in died.headers
            after = await _create(service, {"shape": [3], "blocked": [[1]] * (OFFLOAD // 4)})
            assert after.status_code == 201, after.text
        finally:
            service.state.bodies.close()


def test_validation_errors_travel_without_inputs_and_bounded() -> None:
    raw = json.dumps({"shape": [4, 4], "blocked": [["a", "b"]] * MAX_ERRORS}).encode()
    with pytest.raises(ValidationError) as caught:
        parse_body(LatticeCreate, raw, 2**20)
    errors = caught.value.errors(include_url=False)
    assert len(errors) == MAX_ERRORS  # 2,000 in the body
    assert {e["input"] for e in errors} == {None}
    assert errors[0]["loc"][0] == "blocked" and errors[0]["loc"][-2:] == (0, 0)
