"""networkx: a Graph over the open vertices (compact ids) from the face-adjacent edge list."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers.base import Peer, Query, compact_ends, edge_list


def build(open_grid: np.ndarray) -> tuple[Any, np.ndarray]:
    import networkx as nx

    edges, rank = edge_list(open_grid)
    graph = nx.Graph()
    graph.add_nodes_from(range(int(rank[-1]) + 1))
    graph.add_edges_from(edges.tolist())
    return graph, rank


def path(built: tuple[Any, np.ndarray], ends: Ends) -> Any:
    import networkx as nx

    graph, rank = built
    s, g = compact_ends(rank, ends)
    return lambda: nx.shortest_path_length(graph, s, g)


PEERS = (
    Peer(
        "networkx",
        {"path": Query("path", "networkx shortest_path_length", path, note="build: edge list + Graph")},
        build,
    ),
)
