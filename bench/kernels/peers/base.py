"""What a peer is: a build from the lattice's open mask, and the queries it answers on what it built.

Peers are other libraries timed on the same lattices as catalytic. Each peer module declares ``PEERS``, a tuple
of :class:`Peer`; ``bench.kernels.peers`` gathers them into one registry and times their rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from bench.kernels.lattices import Ends


def same(value: Any) -> Any:
    """The answer is what the timed call returned."""
    return value


@dataclass(frozen=True)
class Query:
    """One task a peer answers on what its build made.

    ``prepare(built, ends)`` does the untimed set-up (such as translating vertex ids) and returns the call that
    is timed; ``answer`` turns what that call returned into the comparable answer, outside the timing. ``impl``
    names the row; ``{connectivity}`` in it stands for the face connectivity of the lattice (6 in 3-D, else 4).
    """

    task: str
    impl: str
    prepare: Callable[[Any, Ends], Callable[[], Any]]
    answer: Callable[[Any], Any] = same
    note: str = ""

    def impl_for(self, ndim: int) -> str:
        """The row's implementation name on a lattice of ``ndim`` dimensions."""
        return self.impl.format(connectivity=face_connectivity(ndim))


@dataclass(frozen=True)
class Peer:
    """One library's route: ``build(open_mask)`` (timed as the row's build; None: it queries the mask itself)
    and its queries by key."""

    name: str
    queries: Mapping[str, Query]
    build: Callable[[np.ndarray], Any] | None = None


def face_connectivity(ndim: int) -> Literal[4, 6]:
    """The connectivity argument of the image libraries (cc3d, dijkstra3d) for face neighbours."""
    return 6 if ndim == 3 else 4


def edge_list(open_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face-adjacent open-open edges ``(m, 2)`` in compact ids (rank among open vertices), and the rank map."""
    flat = open_grid.ravel()
    rank = np.cumsum(flat, dtype=np.int64) - 1
    strides = [s // open_grid.itemsize for s in open_grid.strides]
    parts = []
    for k, n in enumerate(open_grid.shape):
        if n < 2:
            continue
        lower = [slice(None)] * open_grid.ndim
        upper = [slice(None)] * open_grid.ndim
        lower[k], upper[k] = slice(0, n - 1), slice(1, n)
        both = np.zeros(open_grid.shape, dtype=np.bool_)
        both[tuple(lower)] = open_grid[tuple(lower)] & open_grid[tuple(upper)]
        u = np.flatnonzero(both)
        parts.append(np.stack([rank[u], rank[u + strides[k]]], axis=1))
    return np.concatenate(parts), rank


def compact_ends(rank: np.ndarray, ends: Ends) -> tuple[int, int]:
    """A graph peer's ids (ranks among open vertices) of the two ends."""
    return int(rank[ends.start_index]), int(rank[ends.goal_index])


@dataclass
class CompactGraph:
    """A peer's graph whose vertex ids are the ranks of the open vertices in C order, with the lattice mask.

    The rank map and the coordinates of each id are worked out on first use, outside the timed build.
    """

    graph: Any
    open_grid: np.ndarray
    given_rank: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, graph: Any, open_grid: np.ndarray, rank: np.ndarray | None = None) -> CompactGraph:
        return cls(graph, open_grid, rank)

    @cached_property
    def rank(self) -> np.ndarray:
        """Rank among open vertices of every lattice index (meaningful at open vertices only)."""
        if self.given_rank is not None:
            return self.given_rank
        return np.cumsum(self.open_grid.ravel(), dtype=np.int64) - 1

    @cached_property
    def coords(self) -> list[tuple[int, ...]]:
        """Lattice coordinates of each compact id, as tuples of ints (cheap to read in a Python heuristic)."""
        return [tuple(c) for c in np.argwhere(self.open_grid).tolist()]


def manhattan_to(coords: list[tuple[int, ...]], goal: int) -> Callable[[int], int]:
    """The A* heuristic of a graph peer: Manhattan distance in lattice coordinates from an id to ``goal``."""
    target = coords[goal]

    def bound(v: int) -> int:
        return sum(abs(a - b) for a, b in zip(coords[v], target, strict=True))

    return bound
