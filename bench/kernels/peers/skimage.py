"""scikit-image: minimum-cost paths (MCP) over a dense cost array, 1 where open and inf where blocked."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends, field_answer, finite_to_hops
from bench.kernels.peers.base import Peer, Query


def build(open_grid: np.ndarray) -> Any:
    from skimage.graph import MCP

    return MCP(np.where(open_grid, 1.0, np.inf), fully_connected=False)


def path(mcp: Any, ends: Ends) -> Any:
    start, goal = ends.start, ends.goal

    def hops() -> int:
        mcp.find_costs([start], [goal])
        return len(mcp.traceback(goal)) - 1

    return hops


def distance_field(mcp: Any, ends: Ends) -> Any:
    start = ends.start
    return lambda: mcp.find_costs([start])


PEERS = (
    Peer(
        "skimage MCP",
        {
            "path": Query("path", "skimage MCP (face offsets)", path, note="build: dense cost + MCP"),
            "distance_field": Query(
                "distance_field",
                "skimage MCP find_costs",
                distance_field,
                lambda found: field_answer(finite_to_hops(found[0], offset=1.0)),
                "cumulative cost includes the start's cost 1",
            ),
        },
        build,
    ),
)
