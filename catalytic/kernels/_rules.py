"""Pieces of the lattice model's rules written once in plain Python and compiled by both numba targets.

The CPU kernels (:mod:`catalytic.kernels._numba_kernels`) wrap them with ``njit`` and the GPU kernels
(:mod:`catalytic.kernels.cuda_kernels`) with ``cuda.jit(device=True)``, so the two cannot disagree on them.
Nothing here may use more than what both targets compile: scalar arithmetic, loops and array indexing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["box_holds", "tile_count", "tile_logs"]

TILE_LOG = 6
"""log2 of the vertices of a tile: one uint64 word."""


def box_holds(box_lo: Any, box_hi: Any, b: int, coords: Any, d: int) -> bool:
    """Whether box ``b`` (inclusive corners ``box_lo[b]``, ``box_hi[b]``) holds the vertex at ``coords[:d]``.

    Examples
    --------
    >>> import numpy as np
    >>> lo, hi = np.array([[1, 1]]), np.array([[2, 3]])
    >>> box_holds(lo, hi, 0, np.array([2, 1]), 2), box_holds(lo, hi, 0, np.array([0, 1]), 2)
    (True, False)
    """
    for k in range(d):  # noqa: SIM110 (all() over a generator compiles on neither target)
        if coords[k] < box_lo[b, k] or coords[k] > box_hi[b, k]:
            return False
    return True


def tile_logs(shape: Any, log: Any) -> None:
    """Write into ``log`` (zeroed, one entry per axis) the log2 extent of a 64-vertex tile along each axis.

    The 6 bits go one at a time to the axis with the smallest extent still shorter than the axis (the last such
    axis on ties), so a tile is as close to a cube as the shape allows.

    Examples
    --------
    >>> import numpy as np
    >>> log = np.zeros(3, dtype=np.int64)
    >>> tile_logs(np.array([8, 8, 3]), log)
    >>> log.tolist()
    [2, 2, 2]
    """
    d = shape.shape[0]
    total = 0
    while total < TILE_LOG:
        best = -1
        for k in range(d - 1, -1, -1):
            if (1 << log[k]) < shape[k] and (best < 0 or log[k] < log[best]):
                best = k
        if best < 0:
            break
        log[best] += 1
        total += 1


def tile_count(shape: tuple[int, ...]) -> int:
    """Tiles of :func:`tile_logs` covering a lattice of ``shape`` (partial tiles at the high ends included).

    Examples
    --------
    >>> tile_count((8, 8, 3)), tile_count((63,) * 5)
    (4, 16777216)
    """
    import numpy as np

    log = np.zeros(len(shape), dtype=np.int64)
    tile_logs(np.asarray(shape, dtype=np.int64), log)
    tiles = 1
    for n, k in zip(shape, log.tolist(), strict=True):
        tiles *= (n + (1 << k) - 1) >> k
    return tiles
