"""dijkstra3d: searches on the mask (binary) and on a float32 cost field, inf where blocked (2-D and 3-D only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends, field_answer, finite_to_hops
from bench.kernels.peers.base import Peer, Query, face_connectivity


def cost_field(open_grid: np.ndarray) -> np.ndarray:
    return np.where(open_grid, np.float32(1), np.float32(np.inf))


def binary_path(open_grid: np.ndarray, ends: Ends) -> Any:
    import dijkstra3d

    start, goal, connectivity = ends.start, ends.goal, face_connectivity(open_grid.ndim)
    return lambda: dijkstra3d.binary_dijkstra(open_grid, start, goal, connectivity=connectivity, background_color=0)


def distance_field(open_grid: np.ndarray, ends: Ends) -> Any:
    import dijkstra3d

    start, cost, connectivity = ends.start, cost_field(open_grid), face_connectivity(open_grid.ndim)
    return lambda: dijkstra3d.distance_field(cost, start, connectivity=connectivity)


def cost_path(bidirectional: bool) -> Any:
    def prepare(cost: np.ndarray, ends: Ends) -> Any:
        import dijkstra3d

        start, goal, connectivity = ends.start, ends.goal, face_connectivity(cost.ndim)
        return lambda: dijkstra3d.dijkstra(cost, start, goal, connectivity=connectivity, bidirectional=bidirectional)

    return prepare


def hops(path: np.ndarray) -> int:
    return len(path) - 1


COST_NOTE = "build: float32 cost field, inf blocked"

PEERS = (
    Peer(
        "dijkstra3d",
        {
            "path": Query("path", "dijkstra3d binary_dijkstra", binary_path, hops, "on the mask"),
            # The cost field is made untimed here: this row charges the query alone.
            "distance_field": Query(
                "distance_field",
                "dijkstra3d distance_field",
                distance_field,
                lambda dist: field_answer(finite_to_hops(dist)),
                "float32 cost field, inf blocked",
            ),
        },
    ),
    Peer(
        "dijkstra3d cost field",
        {
            "path": Query("path", "dijkstra3d dijkstra", cost_path(False), hops, COST_NOTE),
            "path bidirectional": Query("path", "dijkstra3d dijkstra bidirectional", cost_path(True), hops, COST_NOTE),
        },
        cost_field,
    ),
)
