"""igraph: a Graph over the open vertices (compact ids), built by two documented routes.

``Graph.Lattice`` followed by ``delete_vertices`` (igraph's own lattice generator, in C) and ``Graph(edges=...)``
from the face-adjacent edge list made with NumPy. Both give the same graph with the same vertex ids (ranks among
open vertices in C order), so the same queries run on either. The A* query uses the Manhattan distance in lattice
coordinates as its heuristic, the bound catalytic's ``auto`` uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers.base import CompactGraph, Peer, Query, compact_ends, edge_list, manhattan_to

LATTICE_NOTE = "build: Graph.Lattice + delete_vertices (blocked)"
EDGE_NOTE = "build: edge list (NumPy) + Graph"


def build_lattice(open_grid: np.ndarray) -> CompactGraph:
    import igraph

    # igraph numbers a lattice's vertices with the first dimension fastest; reversed, that is NumPy's C order.
    graph = igraph.Graph.Lattice(list(reversed(open_grid.shape)), circular=False)
    graph.delete_vertices(np.flatnonzero(~open_grid.ravel()).tolist())
    return CompactGraph.of(graph, open_grid)


def build_edges(open_grid: np.ndarray) -> CompactGraph:
    import igraph

    edges, rank = edge_list(open_grid)
    return CompactGraph.of(igraph.Graph(n=int(rank[-1]) + 1, edges=edges), open_grid, rank)


def path(built: CompactGraph, ends: Ends) -> Any:
    graph = built.graph
    s, g = compact_ends(built.rank, ends)
    return lambda: graph.get_shortest_path(s, to=g, output="vpath")


def astar(built: CompactGraph, ends: Ends) -> Any:
    graph = built.graph
    s, g = compact_ends(built.rank, ends)
    bound = manhattan_to(built.coords, g)
    return lambda: graph.get_shortest_path_astar(s, g, lambda _graph, v, _goal: bound(v), output="vpath")


def components(built: CompactGraph, ends: Ends) -> Any:
    graph = built.graph
    return lambda: len(graph.connected_components())


def hops(vpath: list[int]) -> int:
    return len(vpath) - 1


def queries(route: str, note: str) -> dict[str, Query]:
    """The queries on a graph built by ``route``, each row named after the call and the route."""
    return {
        "path": Query("path", f"igraph get_shortest_path ({route})", path, hops, note),
        "path astar": Query("path", f"igraph get_shortest_path_astar ({route})", astar, hops, note),
        "components": Query("components", f"igraph connected_components ({route})", components, note=note),
    }


PEERS = (
    Peer("igraph Graph.Lattice", queries("Graph.Lattice", LATTICE_NOTE), build_lattice),
    Peer("igraph edge list", queries("edge list", EDGE_NOTE), build_edges),
)
