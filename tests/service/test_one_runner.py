"""One operation runner: every caller (library, CLI, job worker, HTTP inline and jobs) gives its answer.

Ray, the last caller, is compared in ``tests/distributed/test_hook.py`` (it needs a Ray instance).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from service.service_helpers import start_service

from catalytic.cli import CLI_MAX_SIZES, main
from catalytic.errors import MethodError
from catalytic.kernels import components
from catalytic.lattice import Lattice
from catalytic.operations import OPERATIONS, check_operation, component_sizes, run_operation
from catalytic.service.compute import array_bytes, execute_task
from catalytic.service.settings import Settings

OBSTACLES = [{"kind": "random", "p": 0.45, "seed": 7}]
LATTICE = Lattice((12, 11), obstacles=OBSTACLES)
MAX_SIZES = 5
"""Fewer than the lattice's components, so every caller must cut the sizes the same way."""


def _far_ends() -> list[list[int]]:
    """The first and last vertex of the largest component, so that a path exists."""
    labels, _ = components(LATTICE)
    largest = np.bincount(labels.ravel())[1:].argmax() + 1
    members = np.flatnonzero(labels.ravel() == largest)
    coords: list[list[int]] = LATTICE.coords_of(members[[0, -1]]).tolist()
    return coords


START, GOAL = _far_ends()
PARAMS: dict[str, dict[str, Any]] = {
    "shortest_path": {"start": START, "goal": GOAL, "method": "bfs"},
    "distance_field": {"sources": [START]},
    "components": {},
    "analyze": {},
}
WHERE = ("elapsed_ms", "executor", "cached", "startup_ms")
"""What a caller adds about where and when the answer was made; everything else must agree."""


def _same(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key not in WHERE}


def test_the_lattice_has_more_components_than_an_answer_lists() -> None:
    answer, _ = run_operation(LATTICE, "components", {}, max_sizes=MAX_SIZES)
    assert answer["count"] > MAX_SIZES and answer["sizes_truncated"] is True
    assert len(answer["sizes"]) == MAX_SIZES
    path, _ = run_operation(LATTICE, "shortest_path", PARAMS["shortest_path"])
    assert path["found"] is True and path["length"] >= 5


def test_unknown_operation_names_the_field() -> None:
    with pytest.raises(MethodError) as caught:
        run_operation(LATTICE, "teleport", {})
    assert caught.value.to_dict()["field"] == "operation"
    assert check_operation("analyze") == "analyze"
    assert set(OPERATIONS) == set(PARAMS)


def test_sizes_of_a_lattice_without_open_vertices() -> None:
    assert component_sizes(np.zeros((2, 2), dtype=np.int32), 0) == {
        "count": 0,
        "sizes": [],
        "sizes_truncated": False,
        "largest": 0,
    }


@pytest.mark.parametrize("operation", OPERATIONS)
def test_job_worker_answers_like_the_runner(operation: str) -> None:
    expected, expected_array = run_operation(LATTICE, operation, PARAMS[operation], max_sizes=MAX_SIZES)
    task = {
        "operation": operation,
        "spec": LATTICE.spec(),
        "arrays": array_bytes(LATTICE),
        "params": PARAMS[operation],
        "backend": None,
        "memory": "auto",
        "max_sizes": MAX_SIZES,
    }
    answer, array = execute_task(task)
    assert answer["executor"] == "local"
    assert _same(answer) == _same(expected)
    if expected_array is None:
        assert array is None
    else:
        np.testing.assert_array_equal(array, expected_array)


@pytest.mark.parametrize("command", ["path", "components", "analyze"])
def test_cli_answers_like_the_runner(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    operation = {"path": "shortest_path"}.get(command, command)
    argv = [command, "--shape", "12,11", "--random-obstacles", "0.45", "--seed", "7", "--json"]
    if command == "path":
        argv += ["--start", ",".join(map(str, START)), "--goal", ",".join(map(str, GOAL)), "--method", "bfs"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    expected, _ = run_operation(LATTICE, operation, PARAMS[operation], max_sizes=CLI_MAX_SIZES)
    if command == "path":
        assert (printed.pop("start"), printed.pop("goal")) == (START, GOAL)
    # Loading the kernels is timed apart from the computation.
    assert isinstance(printed["startup_ms"], float) and printed["startup_ms"] >= 0
    assert _same(printed) == _same(expected)


@pytest.mark.anyio
@pytest.mark.parametrize("pool", ["thread", "process"])
async def test_http_answers_like_the_runner(pool: str, make_settings: Any) -> None:
    settings: Settings = make_settings(CATALYTIC_COMPUTE_POOL=pool, CATALYTIC_MAX_INLINE_SIZES=MAX_SIZES)
    lattice = {"shape": [12, 11], "obstacles": OBSTACLES}
    routes = {"shortest_path": "path", "components": "components", "analyze": "analyze"}
    async for service in start_service(settings):
        for operation, route in routes.items():
            response = await service.client.post(
                f"/api/lattice/{route}", json={"lattice": lattice, **PARAMS[operation]}
            )
            assert response.status_code == 200, response.text
            expected, _ = run_operation(LATTICE, operation, PARAMS[operation], max_sizes=MAX_SIZES)
            assert _same(response.json()) == _same(expected), operation


@pytest.mark.parametrize(
    ("shape", "obstacles", "weights", "method"),
    [
        ((12, 12, 12), [{"kind": "random", "p": 0.1, "seed": 5}], False, "auto"),  # auto runs A*
        ((64, 64), [{"kind": "random", "p": 0.32, "seed": 1}], False, "auto"),  # auto runs BFS
        ((6, 6), [], True, "auto"),  # weighted: A*
        ((6, 6, 6), [], False, "dijkstra"),
    ],
)
def test_a_frugal_preference_never_changes_the_path(
    shape: tuple[int, ...], obstacles: list[dict[str, Any]], weights: bool, method: str
) -> None:
    """LATTICE_MEMORY_OPTIMIZATION=frugal reaches the runner as a preference: BFS keeps 2-bit state, every other
    method runs on its own state, and the answer is the one a pod on the default gives."""
    extra = {"weights": np.random.default_rng(1).uniform(1, 3, shape)} if weights else {}
    lattice = Lattice(shape, obstacles=obstacles, **extra)
    open_flat = np.flatnonzero(lattice.open_mask())
    start, goal = lattice.coords_of(int(open_flat[0])).tolist(), lattice.coords_of(int(open_flat[-1])).tolist()
    params = {"start": start, "goal": goal, "method": method}
    frugal, _ = run_operation(lattice, "shortest_path", params, backend="numba", memory="frugal")
    default, _ = run_operation(lattice, "shortest_path", params, backend="numba", memory="auto")
    keys = ("found", "path", "length", "method", "algorithm_version")
    assert frugal["found"] and {k: frugal[k] for k in keys} == {k: default[k] for k in keys}
