"""The hand-off to Ray runs the one operation runner in a Ray task and answers exactly like the local call."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from catalytic.distributed import run_job_on_ray
from catalytic.distributed.hook import _task
from catalytic.errors import BlockedVertexError, MethodError
from catalytic.lattice import Lattice
from catalytic.operations import OPERATIONS, run_operation

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]

LATTICE = Lattice((7, 6), periodic=[False, True], obstacles=[{"kind": "random", "p": 0.25, "seed": 4}])


def _params(lattice: Lattice) -> dict[str, dict[str, Any]]:
    open_coords = lattice.coords_of(np.flatnonzero(lattice.open_mask_flat()))
    start, goal = open_coords[0].tolist(), open_coords[-1].tolist()
    return {
        "shortest_path": {"start": start, "goal": goal},
        "distance_field": {"sources": [start]},
        "components": {},
        "analyze": {},
    }


def test_each_operation_answers_like_the_local_call(ray_cluster: dict[str, Any]) -> None:
    params = _params(LATTICE)
    for operation in OPERATIONS:
        options = {"backend": "numpy", "memory": "auto", "max_sizes": 2}
        answer, array = run_job_on_ray(
            operation, LATTICE.spec(), params[operation], address=ray_cluster["address"], **options
        )
        expected, expected_array = run_operation(LATTICE, operation, params[operation], **options)
        answer.pop("elapsed_ms")
        expected.pop("elapsed_ms")
        assert answer == expected, operation
        if expected_array is None:
            assert array is None
        else:
            np.testing.assert_array_equal(array, expected_array)
    assert expected["backend"] == "numpy"


def test_errors_come_back_with_their_field(ray_cluster: dict[str, Any]) -> None:
    blocked = np.zeros((3, 3), dtype=bool)
    blocked[1, 1] = True
    lattice = Lattice((3, 3), blocked=blocked)
    with pytest.raises(BlockedVertexError) as caught:
        run_job_on_ray("shortest_path", lattice.spec(), {"start": [0, 0], "goal": [1, 1]}, {"blocked": blocked})
    assert caught.value.to_dict()["field"] == "goal"
    with pytest.raises(MethodError, match="operation"):
        run_job_on_ray("teleport", lattice.spec(), {})


def test_unreachable_goal_is_not_found_in_the_task_body() -> None:
    blocked = np.array([False, True, False])
    options = {"backend": None, "memory": "auto", "max_sizes": 10}
    answer = _task(
        "shortest_path",
        Lattice((3,), blocked=blocked).spec(),
        {"start": [0], "goal": [2]},
        {"blocked": blocked},
        options,
    )
    assert isinstance(answer, tuple) and answer[0]["found"] is False and answer[1] is None
