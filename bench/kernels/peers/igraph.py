"""igraph: a Graph over the open vertices (compact ids) from the face-adjacent edge list."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers.base import Peer, Query, compact_ends, edge_list

NOTE = "build: edge list + Graph"


def build(open_grid: np.ndarray) -> tuple[Any, np.ndarray]:
    import igraph

    edges, rank = edge_list(open_grid)
    return igraph.Graph(n=int(rank[-1]) + 1, edges=edges), rank


def path(built: tuple[Any, np.ndarray], ends: Ends) -> Any:
    graph, rank = built
    s, g = compact_ends(rank, ends)
    return lambda: graph.get_shortest_path(s, to=g, output="vpath")


def components(built: tuple[Any, np.ndarray], ends: Ends) -> Any:
    graph, _ = built
    return lambda: len(graph.connected_components())


PEERS = (
    Peer(
        "igraph",
        {
            "path": Query("path", "igraph get_shortest_path", path, lambda vpath: len(vpath) - 1, NOTE),
            "components": Query("components", "igraph connected_components", components, note=NOTE),
        },
        build,
    ),
)
