"""``method="auto"`` is one answer everywhere: a pure function of the spec and the endpoints.

The same path, method and algorithm version whatever the backend, the memory mode or budget, and the process;
a budget that cannot hold the chosen method's state refuses instead of answering with another method's path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import endpoints, lattices

import catalytic
from catalytic import Lattice, MemoryBudgetError, MethodError, NoPathError, shortest_path
from catalytic.kernels import (
    ALGORITHM_VERSION,
    AUTO_DENSITY_BANDS,
    _state_bytes,
    auto_method,
    obstacle_density,
)
from catalytic.operations import run_operation

CPU_BACKENDS = [name for name in ("numpy", "numba") if name in catalytic.backends()]


def _frugal_budget(lattice: Lattice) -> int:
    """A budget that holds BFS's frugal state but no method's full state (on a lattice where frugal state is
    the smaller: a lattice of a few dozen vertices needs a 64-vertex tile of it)."""
    budget = _state_bytes(lattice, "bfs", "frugal")
    assert budget < _state_bytes(lattice, "bfs", "full") or lattice.vertices < 64
    return budget


def _answer(lattice: Lattice, start: Any, goal: Any, **options: Any) -> tuple[Any, ...]:
    """What a caller sees: the path and its method and version, or the error's type and field."""
    try:
        path = shortest_path(lattice, start, goal, **options)
    except NoPathError:
        return ("no path",)
    except (MemoryBudgetError, MethodError) as exc:
        return (type(exc).__name__, str(exc).split(":")[0])
    return (path.coords.tolist(), path.length, path.cost, path.method, path.algorithm_version)


@settings(max_examples=120, deadline=None)
@given(lattice=lattices(min_dim=2, max_dim=5, max_vertices=400), data=st.data())
def test_auto_gives_one_path_for_every_backend_and_memory_mode(lattice: Lattice, data: st.DataObject) -> None:
    start, goal = (data.draw(endpoints(lattice, as_coords=True)) for _ in range(2))
    reference = _answer(lattice, start, goal, backend="numpy", memory="full")
    method = auto_method(lattice, start, goal)
    if reference != ("no path",):
        assert reference[3] == method and reference[4] == ALGORITHM_VERSION
    for backend in CPU_BACKENDS:
        assert _answer(lattice, start, goal, backend=backend) == reference
        assert _answer(lattice, start, goal, backend=backend, memory="full") == reference
        budget = _frugal_budget(lattice)
        small = _answer(lattice, start, goal, backend=backend, memory_budget=budget)
        frugal = _answer(lattice, start, goal, backend=backend, memory="frugal")
        if method == "bfs":
            # frugal BFS traces the canonical path of full-state BFS
            assert small == reference and frugal == reference
        else:
            if budget < _state_bytes(lattice, method, "full"):
                assert small[0] == "MemoryBudgetError" or reference == ("no path",)
            else:
                assert small == reference
            assert frugal == ("MethodError", "memory")


def _random(shape: tuple[int, ...], p: float, periodic: bool = False) -> Lattice:
    return Lattice(shape, periodic=[periodic] * len(shape), obstacles=[{"kind": "random", "p": p, "seed": 4}])


@pytest.mark.parametrize("ndim", [1, 2, 3, 4, 5, 6])
def test_auto_rule_follows_shape_density_and_endpoints(ndim: int) -> None:
    sparse, dense = AUTO_DENSITY_BANDS[min(max(ndim, 2), 4)]
    shape = (9,) * ndim
    corner, near = ((0,) * ndim, (8,) * ndim), ((0,) * ndim, (1,) + (0,) * (ndim - 1))
    for ends in (corner, near):
        assert auto_method(_random(shape, sparse), *ends) == "astar"
        assert auto_method(_random(shape, (sparse + dense) / 2), *ends) == ("bfs" if ends == corner else "astar")
        assert auto_method(_random(shape, dense + 0.01), *ends) == "bfs"
    # across a periodic axis the corners are neighbours: near
    assert auto_method(_random(shape, (sparse + dense) / 2, periodic=True), *corner) == "astar"
    weighted = Lattice(shape, weights=np.ones(shape), obstacles=[{"kind": "random", "p": 0.95, "seed": 1}])
    assert auto_method(weighted, *corner) == "astar"


def test_obstacle_density_reads_the_spec() -> None:
    assert obstacle_density(Lattice((10, 10))) == 0.0
    mixed = Lattice(
        (10, 10),
        obstacles=[{"kind": "random", "p": 0.5, "seed": 1}, {"kind": "box", "lo": [0, 0], "hi": [1, 9]}],
        blocked=np.arange(100).reshape(10, 10) % 4 == 0,
    )
    assert obstacle_density(mixed) == pytest.approx(1 - 0.5 * 0.8 * 0.75)
    # a uploaded mask of the same blocked share reads the same as its generator
    assert obstacle_density(Lattice((10, 10), blocked=np.eye(10, dtype=bool))) == pytest.approx(0.1)


def test_a_budget_short_of_astar_state_refuses_and_names_the_budget() -> None:
    lattice = Lattice((20, 20, 20))
    budget = _frugal_budget(lattice)
    assert auto_method(lattice, (0, 0, 0), (19, 19, 19)) == "astar"
    with pytest.raises(MemoryBudgetError, match=f"over the memory budget of {budget} bytes") as info:
        shortest_path(lattice, (0, 0, 0), (19, 19, 19), memory_budget=budget)
    assert "astar" in str(info.value) and "'bfs' has a frugal mode" in str(info.value)
    frugal = shortest_path(lattice, (0, 0, 0), (19, 19, 19), method="bfs", memory_budget=budget)
    full = shortest_path(lattice, (0, 0, 0), (19, 19, 19), method="bfs", memory="full")
    assert frugal.memory["mode"] == "frugal" and frugal.coords.tolist() == full.coords.tolist()


def test_the_answer_carries_method_and_algorithm_version() -> None:
    lattice = Lattice((12, 12, 12), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    answer, _ = run_operation(lattice, "shortest_path", {"start": [0, 0, 0], "goal": [11, 11, 11]})
    assert answer["method"] == "astar" and answer["algorithm_version"] == ALGORITHM_VERSION
    path = shortest_path(lattice, (0, 0, 0), (11, 11, 11))
    assert path.to_dict()["algorithm_version"] == ALGORITHM_VERSION
    assert path.to_dict()["method"] == "astar"


CASES = [
    {"shape": [12, 12, 12], "periodic": [False, True, False], "obstacles": [{"kind": "random", "p": 0.25, "seed": 5}]},
    {"shape": [40, 40], "periodic": [False, False], "obstacles": [{"kind": "random", "p": 0.2, "seed": 6}]},
    {"shape": [40, 40], "periodic": [True, False], "obstacles": [{"kind": "random", "p": 0.1, "seed": 7}]},
    {"shape": [6, 6, 6, 6], "periodic": [True] * 4, "obstacles": [{"kind": "random", "p": 0.3, "seed": 8}]},
    {"shape": [5, 5, 5, 5, 5], "periodic": [False] * 5, "obstacles": [{"kind": "random", "p": 0.55, "seed": 9}]},
]

PROBE = """
import json, sys
from catalytic import Lattice, MemoryBudgetError, NoPathError, shortest_path
out = []
for case in json.loads(sys.argv[1]):
    lattice = Lattice.from_spec(case["spec"])
    try:
        path = shortest_path(lattice, case["start"], case["goal"])
        out.append([path.coords.tolist(), path.method, path.algorithm_version])
    except (MemoryBudgetError, NoPathError) as exc:
        out.append(type(exc).__name__)
print(json.dumps(out))
"""


def _queries() -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    queries = []
    for spec in CASES:
        lattice = Lattice.from_spec(spec)
        open_indices = np.flatnonzero(lattice.open_mask_flat())
        for _ in range(4):
            s, g = (lattice.coords_of(int(i)).tolist() for i in rng.choice(open_indices, 2))
            queries.append({"spec": lattice.spec(), "start": s, "goal": g})
        corner = (lattice.coords_of(int(open_indices[0])).tolist(), lattice.coords_of(int(open_indices[-1])).tolist())
        queries.append({"spec": lattice.spec(), "start": corner[0], "goal": corner[1]})
    return queries


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_auto_gives_one_path_across_processes(backend: str) -> None:
    if backend not in catalytic.backends():
        pytest.skip(f"{backend} is not available here")
    queries = _queries()
    here = []
    for q in queries:
        path = shortest_path(Lattice.from_spec(q["spec"]), q["start"], q["goal"], backend="numba")
        here.append([path.coords.tolist(), path.method, path.algorithm_version])
    assert {entry[1] for entry in here} == {"astar", "bfs"}  # both of auto's methods are held to it
    env = {**os.environ, "CATALYTIC_BACKEND": backend, "CATALYTIC_MEMORY_BUDGET": str(2**20), "PYTHONHASHSEED": "7"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(queries)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == here
