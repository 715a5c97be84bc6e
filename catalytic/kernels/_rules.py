"""Pieces of the lattice model's rules written once in plain Python and compiled by both numba targets.

The CPU kernels (:mod:`catalytic.kernels._numba_kernels`) wrap them with ``njit`` and the GPU kernels
(:mod:`catalytic.kernels.cuda_kernels`) with ``cuda.jit(device=True)``, so the two cannot disagree on them.
Nothing here may use more than what both targets compile: scalar arithmetic, loops and array indexing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["box_holds"]


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
