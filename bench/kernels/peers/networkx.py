"""networkx: a Graph over the open vertices, built by two documented routes.

``grid_graph`` followed by ``remove_nodes_from`` (nodes are coordinate tuples) and ``Graph`` from the
face-adjacent edge list made with NumPy (nodes are ranks among open vertices). The A* query uses the Manhattan
distance in lattice coordinates as its heuristic, the bound catalytic's ``auto`` uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers.base import CompactGraph, Peer, Query, compact_ends, edge_list, manhattan_to

GRID_NOTE = "build: grid_graph + remove_nodes_from (blocked)"
EDGE_NOTE = "build: edge list (NumPy) + Graph"


def build_grid(open_grid: np.ndarray) -> Any:
    import networkx as nx

    # grid_graph's node tuples list the dimensions in reverse order of its ``dim`` argument.
    graph = nx.grid_graph(dim=list(reversed(open_grid.shape)))
    graph.remove_nodes_from(map(tuple, np.argwhere(~open_grid).tolist()))
    return graph


def build_edges(open_grid: np.ndarray) -> CompactGraph:
    import networkx as nx

    edges, rank = edge_list(open_grid)
    graph = nx.Graph()
    graph.add_nodes_from(range(int(rank[-1]) + 1))
    graph.add_edges_from(edges.tolist())
    return CompactGraph.of(graph, open_grid, rank)


def grid_path(graph: Any, ends: Ends) -> Any:
    import networkx as nx

    return lambda: nx.shortest_path_length(graph, ends.start, ends.goal)


def grid_astar(graph: Any, ends: Ends) -> Any:
    import networkx as nx

    def bound(u: tuple[int, ...], v: tuple[int, ...]) -> int:
        return sum(abs(a - b) for a, b in zip(u, v, strict=True))

    return lambda: nx.astar_path_length(graph, ends.start, ends.goal, heuristic=bound)


def edge_path(built: CompactGraph, ends: Ends) -> Any:
    import networkx as nx

    graph = built.graph
    s, g = compact_ends(built.rank, ends)
    return lambda: nx.shortest_path_length(graph, s, g)


def edge_astar(built: CompactGraph, ends: Ends) -> Any:
    import networkx as nx

    graph = built.graph
    s, g = compact_ends(built.rank, ends)
    to_goal = manhattan_to(built.coords, g)
    return lambda: nx.astar_path_length(graph, s, g, heuristic=lambda v, _goal: to_goal(v))


PEERS = (
    Peer(
        "networkx edge list",
        {
            "path": Query("path", "networkx shortest_path_length (edge list)", edge_path, note=EDGE_NOTE),
            "path astar": Query("path", "networkx astar_path_length (edge list)", edge_astar, note=EDGE_NOTE),
        },
        build_edges,
    ),
    Peer(
        "networkx grid_graph",
        {
            "path": Query("path", "networkx shortest_path_length (grid_graph)", grid_path, note=GRID_NOTE),
            "path astar": Query("path", "networkx astar_path_length (grid_graph)", grid_astar, note=GRID_NOTE),
        },
        build_grid,
    ),
)
