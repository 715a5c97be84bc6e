"""Brute-force references and hypothesis strategies shared by the test suite.

Import it as ``from naive import ...``: ``tests/conftest.py`` puts the ``tests/`` directory on ``sys.path``,
so this works from any test module under ``tests/`` whatever pytest's import mode is.

Everything here is deliberately slow and obvious: neighbours come from coordinates (not from strides or from
the lattice's own helpers), and distances and components come from networkx, so a bug in the lattice model
or in a backend does not hide behind the same bug in its oracle.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from catalytic.lattice import Lattice

__all__ = [
    "canonical_path",
    "check_path",
    "endpoints",
    "lattices",
    "naive_neighbours",
    "nx_components",
    "nx_distances",
    "path_cost",
    "to_networkx",
    "to_networkx_directed",
]


def naive_neighbours(lattice: Lattice, index: int) -> list[int]:
    """Neighbours of ``index`` in the canonical order (axis 0 −1, axis 0 +1, axis 1 −1, …), from coordinates.

    Steps off an open border are left out, periodic steps wrap. Duplicates and the vertex itself are kept
    (a periodic axis of length 2 or 1), exactly as a kernel visits them.
    """
    coords = list(np.unravel_index(index, lattice.shape))
    out = []
    for k, n in enumerate(lattice.shape):
        for step in (-1, 1):
            c = int(coords[k]) + step
            if not 0 <= c < n:
                if not lattice.periodic[k]:
                    continue
                c %= n
            moved = [int(x) for x in coords]
            moved[k] = c
            out.append(int(np.ravel_multi_index(moved, lattice.shape)))
    return out


def _entering_cost(lattice: Lattice) -> np.ndarray:
    if lattice.weights is None:
        return np.ones(lattice.vertices, dtype=np.float64)
    return lattice.weights.ravel()


def to_networkx(lattice: Lattice) -> nx.Graph:
    """The open subgraph as an undirected ``nx.Graph`` keyed by linear index.

    Wrap-aware, without self loops; node attribute ``"weight"`` is the cost of entering the vertex (1.0 when
    the lattice is unweighted).
    """
    open_flat = lattice.open_mask_flat()
    cost = _entering_cost(lattice)
    graph = nx.Graph()
    for i in np.flatnonzero(open_flat).tolist():
        graph.add_node(i, weight=float(cost[i]))
    for i in list(graph.nodes):
        for j in naive_neighbours(lattice, i):
            if j != i and open_flat[j]:
                graph.add_edge(i, j)
    return graph


def to_networkx_directed(lattice: Lattice) -> nx.DiGraph:
    """The open subgraph as an ``nx.DiGraph`` whose edge ``u -> v`` weighs the cost of entering ``v``."""
    graph = to_networkx(lattice)
    directed = nx.DiGraph()
    directed.add_nodes_from(graph.nodes(data=True))
    for u, v in graph.edges:
        directed.add_edge(u, v, weight=graph.nodes[v]["weight"])
        directed.add_edge(v, u, weight=graph.nodes[u]["weight"])
    return directed


def nx_distances(lattice: Lattice, sources: Iterable[int], weighted: bool | None = None) -> np.ndarray:
    """Multi-source distance field from networkx.

    Parameters
    ----------
    lattice : Lattice
    sources : iterable of int
        Open linear indices, all at distance 0.
    weighted : bool, optional
        ``False``: int32 step counts, −1 unreached. ``True``: float64 costs (entering-vertex weights, or unit
        costs on an unweighted lattice), inf unreached. Defaults to ``lattice.weighted``.
    """
    weighted = lattice.weighted if weighted is None else weighted
    sources = [int(s) for s in sources]
    if not weighted:
        graph = to_networkx(lattice)
        dist = np.full(lattice.vertices, -1, dtype=np.int32)
        for depth, layer in enumerate(nx.bfs_layers(graph, sources)):
            dist[layer] = depth
        return dist
    lengths = nx.multi_source_dijkstra_path_length(to_networkx_directed(lattice), sources, weight="weight")
    field = np.full(lattice.vertices, np.inf, dtype=np.float64)
    for vertex, length in lengths.items():
        field[vertex] = length
    return field


def nx_components(lattice: Lattice) -> set[frozenset[int]]:
    """The connected components of the open vertices as a set of frozensets of linear indices."""
    return {frozenset(int(v) for v in c) for c in nx.connected_components(to_networkx(lattice))}


def path_cost(lattice: Lattice, indices: Sequence[int]) -> float:
    """The cost of a path of linear indices: entering costs of every vertex but the first (steps if unweighted)."""
    cost = _entering_cost(lattice)
    return float(sum(cost[int(v)] for v in list(indices)[1:]))


def check_path(
    lattice: Lattice,
    coords: Any,
    start: Sequence[int],
    goal: Sequence[int],
    expected_cost: float,
) -> None:
    """Assert that ``coords`` (a ``(k, d)`` array-like) is a path from ``start`` to ``goal`` costing ``expected_cost``.

    Consecutive vertices must be face neighbours (wrapping on periodic axes), none may be blocked, the end
    points must match, and the re-summed cost (entering costs, steps when unweighted) must match to 1e-9
    relative.
    """
    path = np.asarray(coords, dtype=np.int64).reshape(-1, lattice.ndim)
    assert len(path) >= 1, "empty path"
    assert tuple(path[0].tolist()) == tuple(start), f"path starts at {path[0].tolist()}, not {list(start)}"
    assert tuple(path[-1].tolist()) == tuple(goal), f"path ends at {path[-1].tolist()}, not {list(goal)}"
    indices = [int(np.ravel_multi_index(tuple(c), lattice.shape)) for c in path.tolist()]
    open_flat = lattice.open_mask_flat()
    for step, (a, b) in enumerate(itertools.pairwise(indices)):
        assert b in naive_neighbours(lattice, a) and a != b, f"step {step}: {a} -> {b} is not a lattice edge"
    for v in indices:
        assert open_flat[v], f"path crosses blocked vertex {v}"
    cost = path_cost(lattice, indices)
    assert math.isclose(cost, expected_cost, rel_tol=1e-9, abs_tol=1e-9), f"path costs {cost}, not {expected_cost}"


def canonical_path(lattice: Lattice, dist: np.ndarray, root: int, vertex: int) -> list[int]:
    """The canonical path ``[vertex, ..., root]`` over an int32 step field.

    Each step goes to the first open neighbour (canonical order) one step closer to ``root``.
    """
    open_flat = lattice.open_mask_flat()
    path = [vertex]
    while path[-1] != root:
        here = path[-1]
        closer = [u for u in naive_neighbours(lattice, here) if open_flat[u] and 0 <= dist[u] == dist[here] - 1]
        path.append(closer[0])
    return path


def _shape(draw: st.DrawFn, ndim: int, max_vertices: int) -> list[int]:
    budget = max_vertices
    shape = []
    for k in range(ndim):
        # Spread the budget over the axes left so that high-dimensional lattices still get long axes sometimes.
        upper = max(1, min(budget, 2 * round(budget ** (1.0 / (ndim - k)))))
        n = draw(st.integers(1, upper) | st.integers(max(1, upper // 2), upper))
        shape.append(n)
        budget //= n
    return shape


@st.composite
def lattices(
    draw: st.DrawFn,
    max_dim: int = 6,
    max_vertices: int = 600,
    weighted: bool | None = None,
    min_dim: int = 1,
) -> Lattice:
    """Random small lattices: 1..``max_dim`` axes, at most ``max_vertices`` vertices, at least one open vertex.

    Obstacles mix a random generator (density 0..0.5), sometimes boxes and sometimes an explicit mask;
    periodic flags are random (axes of length 1 and 2 included). ``weighted=None`` draws whether to add
    positive weights (sometimes small integers, for many cost ties).
    """
    ndim = draw(st.integers(min_dim, max_dim))
    shape = _shape(draw, ndim, max_vertices)
    periodic = draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    obstacles: list[dict[str, Any]] = []
    if draw(st.booleans()):
        p = draw(st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5]) | st.floats(0.0, 0.5))
        obstacles.append({"kind": "random", "p": p, "seed": draw(st.integers(0, 2**64 - 1))})
    for _ in range(draw(st.integers(0, 2))):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a, min(n, a + max(1, n // 3)))) for a, n in zip(lo, shape, strict=True)]
        obstacles.append({"kind": "box", "lo": lo, "hi": hi})
    blocked = None
    if draw(st.booleans()):
        blocked = rng.random(shape) < draw(st.sampled_from([0.0, 0.1, 0.3]))
    weights = None
    if draw(st.booleans()) if weighted is None else weighted:
        if draw(st.booleans()):
            weights = rng.integers(1, 4, size=shape).astype(np.float64)
        else:
            weights = rng.uniform(0.25, 4.0, size=shape)
    lattice = Lattice(shape, periodic=periodic, blocked=blocked, weights=weights, obstacles=obstacles)
    if lattice.open_vertices == 0:
        lattice = Lattice(shape, periodic=periodic, weights=weights)
    return lattice


def endpoints(lattice: Lattice, as_coords: bool = False) -> st.SearchStrategy[Any]:
    """A strategy drawing an open vertex of ``lattice``: its linear index, or its coordinate tuple."""
    open_indices = np.flatnonzero(lattice.open_mask_flat()).tolist()
    vertices = st.sampled_from(open_indices)
    if as_coords:
        return vertices.map(lambda i: tuple(int(c) for c in np.unravel_index(i, lattice.shape)))
    return vertices
