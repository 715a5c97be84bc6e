"""SciPy: csgraph on a symmetric CSR matrix of the open vertices, and ndimage.label on the mask itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers.base import Peer, Query, compact_ends, edge_list

CSR_NOTE = "build: edge list + symmetric CSR"


def build_csr(open_grid: np.ndarray) -> tuple[Any, np.ndarray]:
    from scipy import sparse

    edges, rank = edge_list(open_grid)
    n = int(rank[-1]) + 1
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    data = np.ones(rows.size, dtype=np.float64)
    return sparse.csr_array((data, (rows, cols)), shape=(n, n)), rank


def bfs_length(csr: Any, s: int, g: int) -> int:
    """Hops from s to g by scipy's breadth_first_order and its predecessor array (path traced)."""
    from scipy.sparse import csgraph

    _, pred = csgraph.breadth_first_order(csr, s, directed=True, return_predecessors=True)
    if g != s and pred[g] < 0:
        return -1
    hops, v = 0, g
    while v != s:
        v = int(pred[v])
        hops += 1
    return hops


def csgraph_path(built: tuple[Any, np.ndarray], ends: Ends) -> Any:
    csr, rank = built
    s, g = compact_ends(rank, ends)
    return lambda: bfs_length(csr, s, g)


def csgraph_components(built: tuple[Any, np.ndarray], ends: Ends) -> Any:
    from scipy.sparse import csgraph

    csr, _ = built
    return lambda: csgraph.connected_components(csr, directed=True, connection="weak")


def ndimage_label(open_grid: np.ndarray, ends: Ends) -> Any:
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(open_grid.ndim, 1)
    return lambda: ndimage.label(open_grid, structure=structure)


PEERS = (
    Peer(
        "scipy csgraph",
        {
            "path": Query("path", "scipy csgraph breadth_first_order", csgraph_path, note=CSR_NOTE + "; BFS + trace"),
            "components": Query(
                "components",
                "scipy csgraph connected_components",
                csgraph_components,
                lambda found: found[0],
                CSR_NOTE,
            ),
        },
        build_csr,
    ),
    Peer(
        "scipy.ndimage",
        {
            "components": Query(
                "components",
                "scipy.ndimage.label",
                ndimage_label,
                lambda found: int(found[1]),
                "face structure; on the mask",
            )
        },
    ),
)
