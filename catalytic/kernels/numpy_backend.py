"""Reference primitives: the executable specification, small and obvious.

Every rule of :mod:`catalytic.kernels.backend` is written out here as plainly as NumPy allows; the other
backends are tested against this one bit for bit. Whole-level searches work on frontier arrays of linear
indices; the priority-queue searches and the path walks are plain Python over :mod:`heapq`.

Rules this module pins down where the interface leaves room:

* Dijkstra / A\\*: the heap holds ``(f, h, index)`` with ``h = min_weight * float(sum of axis distances)``
  (an exact integer sum, then one multiplication; ``h = 0.0`` for Dijkstra or when ``target < 0``) and
  ``f = g + h``. A popped vertex that is already settled is skipped (this also drops stale entries); a
  settled vertex is never relaxed again, so its distance is final and the canonical path walk always finds a
  predecessor. Costs are ``g[u] + weights[v]`` (``g[u] + 1.0`` unweighted).
* Bidirectional BFS labels ``dist_start[start] = 0`` and ``dist_goal[goal] = 0`` before anything else, also
  when ``start == goal``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from catalytic.errors import InvalidInputError
from catalytic.kernels.backend import Geometry, HostBackend, meter, register_backend
from catalytic.lattice import materialise_open

__all__ = ["NumpyBackend"]


def _steps(geom: Geometry, index: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(neighbour, valid)`` arrays for every step of ``index`` in the canonical neighbour order.

    ``valid`` is False where the step leaves an open border; on a periodic axis the step wraps (to the vertex
    itself on an axis of length 1).
    """
    for k in range(geom.ndim):
        n = int(geom.shape[k])
        stride = int(geom.strides[k])
        periodic = bool(geom.periodic[k])
        coord = (index // stride) % n
        for step in (-1, 1):
            inside = coord > 0 if step < 0 else coord < n - 1
            wrapped = index - step * (n - 1) * stride
            yield np.where(inside, index + step * stride, wrapped), inside | periodic


def _axes(geom: Geometry) -> list[tuple[int, int, bool]]:
    """``(length, stride, periodic)`` per axis as Python scalars, for the vertex-at-a-time loops."""
    return [(int(n), int(s), bool(p)) for n, s, p in zip(geom.shape, geom.strides, geom.periodic, strict=True)]


def _neighbours(axes: list[tuple[int, int, bool]], vertex: int) -> list[int]:
    """The neighbours of one vertex in canonical order (wrapped, repeated and self steps kept)."""
    out = []
    for n, stride, periodic in axes:
        coord = (vertex // stride) % n
        if coord > 0:
            out.append(vertex - stride)
        elif periodic:
            out.append(vertex + (n - 1) * stride)
        if coord < n - 1:
            out.append(vertex + stride)
        elif periodic:
            out.append(vertex - (n - 1) * stride)
    return out


def _heuristic(axes: list[tuple[int, int, bool]], min_weight: float, vertex: int, target: int) -> float:
    """A\\*'s ``h``: ``min_weight`` times the periodic-aware Manhattan distance from ``vertex`` to ``target``."""
    total = 0
    for n, stride, periodic in axes:
        gap = abs((vertex // stride) % n - (target // stride) % n)
        total += min(gap, n - gap) if periodic else gap
    return min_weight * float(total)


def _bit_get(packed: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (packed[index >> 3] >> (index & 7).astype(np.uint8)) & np.uint8(1)


def _state_get(state: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (state[index >> 2] >> (2 * (index & 3)).astype(np.uint8)) & np.uint8(3)


def _state_mark(state: np.ndarray, index: np.ndarray, value: int) -> None:
    """Set the 2-bit state of unvisited vertices ``index`` (several may share a byte, hence ``ufunc.at``)."""
    np.bitwise_or.at(state, index >> 2, (np.uint8(value) << (2 * (index & 3)).astype(np.uint8)).astype(np.uint8))


def _whole_levels(frontier: np.ndarray, step: Callable[[np.ndarray, int], tuple[np.ndarray, bool]]) -> tuple[int, int]:
    """Drive a whole-level BFS: ``step(frontier, depth)`` marks and returns the next level and whether the search
    is done. Returns ``(depth, expanded)`` when a step says done, else ``(-1, expanded)``; progress is the
    vertices expanded so far, reported once per level."""
    expanded = depth = 0
    counts = meter()
    while frontier.size:
        counts.advance(expanded)
        expanded += frontier.size
        depth += 1
        frontier, done = step(frontier, depth)
        if done:
            return depth, expanded
    return -1, expanded


@register_backend
class NumpyBackend(HostBackend):
    """The reference backend: host NumPy arrays, level-synchronous BFS, ``heapq`` Dijkstra and A\\*.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> lat = Lattice((3, 4), obstacles=[{"kind": "box", "lo": [0, 1], "hi": [1, 1]}])
    >>> backend, geom = NumpyBackend(), Geometry.of(lat)
    >>> dist = backend.full(lat.vertices, -1, np.int32)
    >>> backend.bfs(geom, backend.open_mask(geom), np.array([0]), 2, dist), int(dist[2])
    (7, 6)
    """

    name: ClassVar[str] = "numpy"

    @classmethod
    def probe(cls) -> str | None:
        """Always usable: NumPy is a core dependency."""
        return None

    # --- lattice ----------------------------------------------------------------------------------------

    def open_mask(self, geom: Geometry) -> np.ndarray:
        """uint8 (N,), 1 where open: the random generators, the inclusive boxes and the explicit mask.

        Built by :func:`catalytic.lattice.materialise_open`, the mask of :meth:`Lattice.open_mask`.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 3), obstacles=[{"kind": "box", "lo": [0, 0], "hi": [0, 1]}]))
        >>> NumpyBackend().open_mask(geom).tolist()
        [0, 0, 1, 1, 1, 1]
        """
        is_open = materialise_open(geom.shape.tolist(), geom.generators(), geom.explicit_blocked)
        return is_open.reshape(-1).view(np.uint8)

    def open_bits(self, geom: Geometry) -> np.ndarray:
        """The open mask packed 1 bit per vertex, bit ``i & 7`` of byte ``i >> 3``."""
        return np.packbits(self.open_mask(geom).view(np.bool_), bitorder="little")

    def degree_histogram(self, geom: Geometry, open_mask: Any) -> np.ndarray:
        """int64 (2d + 1,): open vertices counted by their number of distinct open neighbours.

        Along one axis the two steps reach distinct vertices other than the vertex itself unless the axis is
        periodic of length 2 (both steps reach the same vertex) or of length 1 (they reach the vertex itself).
        """
        is_open = np.asarray(open_mask).view(np.bool_)
        index = np.arange(geom.vertices, dtype=np.int64)
        degree = np.zeros(geom.vertices, dtype=np.int64)
        for k, (neighbour, valid) in enumerate(_steps(geom, index)):
            axis, plus_step = divmod(k, 2)
            n = int(geom.shape[axis])
            if n == 1 or (n == 2 and geom.periodic[axis] and plus_step):
                continue
            degree += valid & is_open[neighbour]
        return np.bincount(degree[is_open], minlength=2 * geom.ndim + 1).astype(np.int64)

    # --- searches ---------------------------------------------------------------------------------------

    def _discover(self, geom: Geometry, is_open: np.ndarray, frontier: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Sorted distinct open vertices next to ``frontier`` still unlabelled (−1) in ``dist``."""
        candidates = np.concatenate([nb[valid] for nb, valid in _steps(geom, frontier)])
        candidates = candidates[is_open[candidates]]
        return np.unique(candidates[dist[candidates] < 0])

    def bfs(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any) -> int:
        """Multi-source whole-level BFS writing steps into ``dist`` (pre-filled −1); returns ``expanded``.

        With ``target >= 0`` it stops after the level that discovers ``target``, so every vertex no deeper
        than the target is labelled and ``expanded`` counts the vertices shallower than it; otherwise it
        labels every reachable vertex and counts them all.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((5,), periodic=True))
        >>> backend = NumpyBackend()
        >>> dist = backend.full(5, -1, np.int32)
        >>> backend.bfs(geom, backend.open_mask(geom), np.array([0]), -1, dist), dist.tolist()
        (5, [0, 1, 2, 2, 1])
        """
        is_open = np.asarray(open_mask).view(np.bool_)
        frontier = np.unique(np.asarray(sources, dtype=np.int64))
        dist[frontier] = 0
        if target >= 0 and dist[target] == 0:
            return 0

        def step(frontier: np.ndarray, depth: int) -> tuple[np.ndarray, bool]:
            reached = self._discover(geom, is_open, frontier, dist)
            dist[reached] = depth
            return reached, bool(target >= 0 and dist[target] >= 0)

        return _whole_levels(frontier, step)[1]

    def bidirectional(
        self, geom: Geometry, open_mask: Any, start: int, goal: int, dist_start: Any, dist_goal: Any
    ) -> tuple[int, int, int]:
        """Bidirectional whole-level BFS; returns ``(length, meet, expanded)``, ``(-1, -1, expanded)`` if unreachable.

        Each round expands the side with the smaller frontier (the start side on a tie). After the first level
        that labels vertices already labelled by the other side, the meet is the one minimising
        ``(d_start + d_goal, index)``.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((3, 3)))
        >>> backend = NumpyBackend()
        >>> ds, dg = backend.full(9, -1, np.int32), backend.full(9, -1, np.int32)
        >>> backend.bidirectional(geom, backend.open_mask(geom), 0, 8, ds, dg)
        (4, 2, 6)
        """
        is_open = np.asarray(open_mask).view(np.bool_)
        dist_start[start] = 0
        dist_goal[goal] = 0
        if start == goal:
            return 0, start, 0
        frontiers = [np.array([start], dtype=np.int64), np.array([goal], dtype=np.int64)]
        depths = [0, 0]
        dists = [dist_start, dist_goal]
        expanded = 0
        counts = meter()
        while True:
            counts.advance(expanded)
            side = 0 if frontiers[0].size <= frontiers[1].size else 1
            own, other = dists[side], dists[1 - side]
            expanded += frontiers[side].size
            depths[side] += 1
            found = self._discover(geom, is_open, frontiers[side], own)
            own[found] = depths[side]
            touched = found[other[found] >= 0]
            if touched.size:
                totals = dist_start[touched].astype(np.int64) + dist_goal[touched]
                best = int(np.argmin(totals))  # touched is sorted, so the first minimum has the lowest index
                return int(totals[best]), int(touched[best]), expanded
            if not found.size:
                return -1, -1, expanded
            frontiers[side] = found

    def dijkstra(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any, astar: bool) -> int:
        """Dijkstra, or A\\* towards ``target`` when ``astar``, writing costs into ``dist`` (pre-filled inf).

        Heap keys are ``(g + h, h, index)``; a vertex is settled on its first pop and never relaxed again;
        relaxation needs a strict improvement; the search stops right after settling ``target`` (or runs to
        exhaustion when ``target < 0``). Returns the number of settled vertices. A source starts at 0, or at its
        entry of ``dist`` when that is finite (a seed).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> lat = Lattice((1, 3), weights=np.array([[1.0, 5.0, 2.0]]))
        >>> backend, geom = NumpyBackend(), Geometry.of(lat)
        >>> dist = backend.full(3, np.inf, np.float64)
        >>> backend.dijkstra(geom, backend.open_mask(geom), np.array([0]), 2, dist, astar=True), dist.tolist()
        (3, [0.0, 5.0, 7.0])
        """
        is_open = np.asarray(open_mask).view(np.bool_)
        weights = geom.weights
        guided = astar and target >= 0
        axes = _axes(geom)
        settled = np.zeros(geom.vertices, dtype=np.bool_)
        heap: list[tuple[float, float, int]] = []
        for source in sorted({int(s) for s in np.asarray(sources).tolist()}):
            g = float(dist[source]) if math.isfinite(dist[source]) else 0.0
            dist[source] = g
            h = _heuristic(axes, geom.min_weight, source, target) if guided else 0.0
            heap.append((g + h, h, source))
        heapq.heapify(heap)
        expanded = 0
        counts = meter()
        while heap:
            _, _, u = heapq.heappop(heap)
            if settled[u]:
                continue
            settled[u] = True
            expanded += 1
            if expanded % 1024 == 0:
                counts.advance(expanded)
            if u == target:
                break
            g = float(dist[u])
            for v in _neighbours(axes, u):
                if not is_open[v] or settled[v]:
                    continue
                cost = g + (1.0 if weights is None else float(weights[v]))
                if cost < dist[v]:
                    dist[v] = cost
                    h = _heuristic(axes, geom.min_weight, v, target) if guided else 0.0
                    heapq.heappush(heap, (cost + h, h, v))
        return expanded

    def trace_path(
        self, geom: Geometry, open_mask: Any, dist: Any, root: int, vertex: int, within: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The canonical path ``[vertex, ..., root]``: each step to the first open neighbour one cost closer.

        ``cost(v)`` is 1 for an int32 field, ``weights[v]`` for a float64 field of a weighted lattice and 1.0
        otherwise. With ``within = (lo, hi)`` the path also ends at its first vertex outside ``lo .. hi - 1``.

        Raises
        ------
        InvalidInputError
            When ``dist`` has no predecessor chain from ``vertex`` to ``root``.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 2)))
        >>> NumpyBackend().trace_path(geom, np.ones(4, np.uint8), np.array([0, 1, 1, 2], np.int32), 0, 3).tolist()
        [3, 1, 0]
        """
        is_open = np.asarray(open_mask).view(np.bool_)
        integral = np.asarray(dist).dtype.kind in "iu"
        weights = None if integral else geom.weights
        unreached = -1 if integral else math.inf
        axes = _axes(geom)
        lo, hi = (0, geom.vertices) if within is None else within
        path = [vertex]
        v = vertex
        # A chain can be no longer than the lattice; a longer walk means ``dist`` is not a search result.
        for _ in range(geom.vertices):
            if v == root or not lo <= v < hi:
                return np.asarray(path, dtype=np.int64)
            step = 1 if integral else (1.0 if weights is None else float(weights[v]))
            here = dist[v]
            v = next(
                (u for u in _neighbours(axes, v) if is_open[u] and dist[u] != unreached and dist[u] + step == here),
                -1,
            )
            if v < 0:
                break
            path.append(v)
        raise InvalidInputError(
            "dist", f"no predecessor chain from vertex {vertex} to root {root}", "a distance field rooted at root"
        )

    # --- frugal (2 bits per vertex) --------------------------------------------------------------------

    def bfs_frugal(self, geom: Geometry, open_bits: Any, start: int, goal: int, state: Any) -> tuple[int, int]:
        """Whole-level BFS keeping ``1 + depth mod 3`` in 2 bits per vertex; returns ``(length, expanded)``.

        Same stopping rule and ``expanded`` as :meth:`bfs` with one source; ``length`` is −1 when ``goal`` is
        unreachable.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 3)))
        >>> backend = NumpyBackend()
        >>> state = backend.full(2, 0, np.uint8)
        >>> backend.bfs_frugal(geom, backend.open_bits(geom), 0, 5, state)
        (3, 5)
        """
        packed = np.asarray(open_bits)
        frontier = np.array([start], dtype=np.int64)
        _state_mark(state, frontier, 1)
        if start == goal:
            return 0, 0

        def step(frontier: np.ndarray, depth: int) -> tuple[np.ndarray, bool]:
            candidates = np.concatenate([nb[valid] for nb, valid in _steps(geom, frontier)])
            candidates = candidates[_bit_get(packed, candidates) == 1]
            reached = np.unique(candidates[_state_get(state, candidates) == 0])
            _state_mark(state, reached, 1 + depth % 3)
            return reached, bool(_state_get(state, np.array([goal]))[0])

        return _whole_levels(frontier, step)

    def trace_path_frugal(
        self, geom: Geometry, open_bits: Any, state: Any, start: int, goal: int, length: int
    ) -> np.ndarray:
        """The canonical path ``[goal, ..., start]`` rebuilt from the depth-mod-3 state of :meth:`bfs_frugal`.

        From a vertex at depth ``r`` it steps to the first open neighbour whose state is ``1 + (r - 1) mod 3``;
        neighbouring depths differ by at most one, so that state singles out depth ``r - 1``.

        Raises
        ------
        InvalidInputError
            When ``length`` is negative or ``state`` holds no such path.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 3)))
        >>> backend = NumpyBackend()
        >>> bits, state = backend.open_bits(geom), backend.full(2, 0, np.uint8)
        >>> length, _ = backend.bfs_frugal(geom, bits, 0, 5, state)
        >>> backend.trace_path_frugal(geom, bits, state, 0, 5, length).tolist()
        [5, 2, 1, 0]
        """
        if length < 0:
            raise InvalidInputError("length", f"{length} is negative", "the length of a found path, >= 0")
        packed = np.asarray(open_bits)
        axes = _axes(geom)
        path = [goal]
        v = goal
        for r in range(length, 0, -1):
            wanted = 1 + (r - 1) % 3
            for u in _neighbours(axes, v):
                probe = np.array([u])
                if _bit_get(packed, probe)[0] and _state_get(state, probe)[0] == wanted:
                    v = u
                    break
            else:
                break
            path.append(v)
        if v != start or len(path) != length + 1:
            raise InvalidInputError(
                "state", f"holds no path of {length} steps from {start} to {goal}", "the state left by bfs_frugal"
            )
        return np.asarray(path, dtype=np.int64)

    # --- structure --------------------------------------------------------------------------------------

    def label(self, geom: Geometry, open_mask: Any) -> tuple[np.ndarray, int]:
        """Component labels numbered 1..count by each component's lowest linear index, 0 where blocked.

        Union-find over all open edges at once: every round hooks the larger of two adjacent roots under the
        smaller, then compresses every path, until each edge joins two vertices of the same root. Parents
        never exceed their child, so each final root is its component's lowest index.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((1, 5), obstacles=[{"kind": "box", "lo": [0, 2], "hi": [0, 2]}]))
        >>> labels, count = NumpyBackend().label(geom, np.array([1, 1, 0, 1, 1], np.uint8))
        >>> labels.tolist(), count
        ([1, 1, 0, 2, 2], 2)
        """
        is_open = np.asarray(open_mask).view(np.bool_)
        index = np.arange(geom.vertices, dtype=np.int64)
        tails, heads = [], []
        for k, (neighbour, valid) in enumerate(_steps(geom, index)):
            if k % 2:  # the minus steps see every edge the plus steps see
                edge = valid & is_open & is_open[neighbour]
                tails.append(index[edge])
                heads.append(neighbour[edge])
        tail, head = np.concatenate(tails), np.concatenate(heads)
        parent = index.copy()
        counts = meter()
        rounds = 0
        while True:
            counts.round_done(rounds)  # the number of hooking rounds is not known ahead
            rounds += 1
            root_tail, root_head = parent[tail], parent[head]
            apart = root_tail != root_head
            if not apart.any():
                break
            low = np.minimum(root_tail[apart], root_head[apart])
            high = np.maximum(root_tail[apart], root_head[apart])
            np.minimum.at(parent, high, low)
            while True:
                grand = parent[parent]
                if np.array_equal(grand, parent):
                    break
                parent = grand
        roots = np.unique(parent[is_open])
        dtype = np.int32 if geom.vertices < 2**31 else np.int64
        labels = np.zeros(geom.vertices, dtype=dtype)
        labels[is_open] = np.searchsorted(roots, parent[is_open]) + 1
        return labels, int(roots.size)
