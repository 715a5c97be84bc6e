"""The service hand-off runs each operation on Ray and answers like the local run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from catalytic.distributed import run_job_on_ray
from catalytic.distributed.hook import run_operation
from catalytic.errors import BlockedVertexError, MethodError
from catalytic.kernels import analyze, components, distance_field, shortest_path
from catalytic.lattice import Lattice

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]

LATTICE = Lattice((7, 6), periodic=[False, True], obstacles=[{"kind": "random", "p": 0.25, "seed": 4}])


def test_each_operation_answers_like_the_local_call(ray_cluster: dict[str, Any]) -> None:
    spec = LATTICE.spec()
    open_coords = LATTICE.coords_of(np.flatnonzero(LATTICE.open_mask_flat()))
    start, goal = open_coords[0].tolist(), open_coords[-1].tolist()
    params = {"start": start, "goal": goal, "backend": "numpy"}
    path = run_job_on_ray("shortest_path", spec, params, address=ray_cluster["address"])
    expected = shortest_path(LATTICE, start, goal, backend="numpy")
    assert path["found"] is True
    assert path["path"] == expected.coords.tolist()
    assert (path["length"], path["cost"], path["expanded"], path["backend"]) == (
        expected.length,
        expected.cost,
        expected.expanded,
        "numpy",
    )
    field = run_job_on_ray("distance_field", spec, {"sources": [start], "backend": "numpy"})
    np.testing.assert_array_equal(field["field"], distance_field(LATTICE, [start], backend="numpy"))
    assert field["reached"] == int((field["field"] >= 0).sum())
    labels = run_job_on_ray("components", spec, {"backend": "numpy"})
    expected_labels, expected_count = components(LATTICE, backend="numpy")
    np.testing.assert_array_equal(labels["labels"], expected_labels)
    assert labels["count"] == expected_count
    assert sum(labels["sizes"]) == LATTICE.open_vertices
    report = run_job_on_ray("analyze", spec, {"backend": "numpy"})
    local = analyze(LATTICE, backend="numpy")
    assert report["diameter"] == local["diameter"]
    assert report["degree_histogram"] == {str(k): v for k, v in local["degree_histogram"].items()}


def test_errors_come_back_with_their_field(ray_cluster: dict[str, Any]) -> None:
    blocked = np.zeros((3, 3), dtype=bool)
    blocked[1, 1] = True
    lattice = Lattice((3, 3), blocked=blocked)
    with pytest.raises(BlockedVertexError) as caught:
        run_job_on_ray("shortest_path", lattice.spec(), {"start": [0, 0], "goal": [1, 1]}, {"blocked": blocked})
    assert caught.value.to_dict()["field"] == "goal"
    with pytest.raises(MethodError, match="operation"):
        run_job_on_ray("teleport", lattice.spec(), {})


def test_unreachable_goal_is_not_found() -> None:
    blocked = np.array([False, True, False])
    answer = run_operation(
        "shortest_path", Lattice((3,), blocked=blocked).spec(), {"start": [0], "goal": [2]}, {"blocked": blocked}
    )
    assert answer["found"] is False
