"""Lattice algorithms, written once over the primitives of :class:`catalytic.kernels.backend.Backend`.

Nothing here knows which backend runs: the functions validate input, choose a method and a memory mode,
allocate state through the backend, call its primitives and assemble the answer. The determinism rules that
make every backend return the same lengths, costs, fields, labels and paths are stated in
:mod:`catalytic.kernels.backend`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from catalytic.errors import (
    BlockedVertexError,
    CoordinateError,
    InvalidTypeError,
    MemoryBudgetError,
    MethodError,
    NoPathError,
    ScratchError,
)
from catalytic.kernels._rules import tile_count
from catalytic.kernels.backend import Backend, Geometry, Meter, backends, metered, run_with_fallback
from catalytic.lattice import Lattice

__all__ = [
    "ALGORITHM_VERSION",
    "AUTO_DENSITY_BANDS",
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_POOL_MAX_BYTES",
    "EXACT_DIAMETER_LIMIT",
    "METHODS",
    "PROGRESS_POLL_SECONDS",
    "Path",
    "Progress",
    "analyze",
    "auto_method",
    "backends",
    "check_method",
    "components",
    "distance_field",
    "held_bytes",
    "obstacle_density",
    "pool_bytes",
    "shortest_path",
]

METHODS = ("auto", "bfs", "bidirectional", "astar", "dijkstra")
MEMORY_MODES = ("auto", "full", "frugal")
ALGORITHM_VERSION = 3
"""The version of the paths the methods return: bumped whenever a method's tie-breaking, or the rule by which
``auto`` picks a method (:func:`auto_method`), changes, so that answers and cached results of different
versions are never mixed up. Every answer carries it; result-cache keys include it."""
AUTO_DENSITY_BANDS: Mapping[int, tuple[float, float]] = MappingProxyType(
    {2: (0.02, 0.25), 3: (0.5, 0.6), 4: (0.6, 0.8)}
)
"""``auto``'s obstacle-density bands by axis count (1 reads as 2, more than 4 as 4): up to the first density it
runs A*, above the second BFS, and in between A* for near endpoints and BFS for far ones (:func:`auto_method`).
Measured in ``bench/results/auto.md``."""
DEFAULT_MEMORY_BUDGET = 2 * 2**30
"""Bytes of search state one computation may allocate; ``CATALYTIC_MEMORY_BUDGET`` overrides it."""
DEFAULT_POOL_MAX_BYTES = 64 * 2**20
"""Bytes of search-state arrays each thread keeps for reuse; ``CATALYTIC_POOL_MAX_BYTES`` overrides it.

Arrays larger than the cap are never pooled, so a large search gives its memory back as it ends.
"""
EXACT_DIAMETER_LIMIT = 10_000
"""Lattices with obstacles and at most this many open vertices get an exact diameter (one BFS per vertex)."""
PROGRESS_POLL_SECONDS = 0.1
"""How often a watching thread reads the progress a compiled kernel stores, and reports it when it rose."""

Progress = Callable[[float], None]
"""A progress callback: called with fractions in (0, 1) that only increase, then 1.0 when the answer is ready."""


@dataclass(frozen=True, slots=True)
class Path:
    """A shortest path.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(k, d)`` int64 coordinates from start to goal inclusive.
    length : int
        Number of steps (``k - 1``).
    cost : float
        Sum of the entering weights of every vertex but the start; equals ``length`` when unweighted.
    expanded : int
        Vertices settled (expanded) by the search.
    method : str
        The method that ran (``auto`` resolved by :func:`auto_method`).
    backend : str
        The backend that produced the answer (after any GPU to CPU fallback).
    memory : dict
        Measured bytes of search state and the memory mode used, against igraph, CSR and dense baselines.
        The baselines need the lattice's exact edge count (one pass over the lattice, then cached per
        lattice), so they are worked out when ``memory`` is first read, not inside the query.
    algorithm_version : int
        :data:`ALGORITHM_VERSION` of the code that found the path.
    """

    coords: np.ndarray
    length: int
    cost: float
    expanded: int
    method: str
    backend: str
    memory_source: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict, repr=False)
    algorithm_version: int = ALGORITHM_VERSION

    @property
    def memory(self) -> dict[str, Any]:
        """The memory report (built on first access)."""
        source = self.memory_source
        if callable(source):
            source = source()
            object.__setattr__(self, "memory_source", source)
        return source

    def __getstate__(self) -> list[Any]:
        # A pickled path carries the finished report, not the function that builds it.
        return [self.memory if f.name == "memory_source" else getattr(self, f.name) for f in fields(self)]

    def __setstate__(self, state: list[Any]) -> None:
        for f, value in zip(fields(self), state, strict=True):
            object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "path": self.coords.tolist(),
            "length": self.length,
            "cost": self.cost,
            "expanded": self.expanded,
            "method": self.method,
            "algorithm_version": self.algorithm_version,
            "backend": self.backend,
            "memory": self.memory,
        }


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise MethodError(name, f"{raw!r} is not an integer", "a byte count") from None


def _memory_budget(budget: int | None) -> int:
    return int(budget) if budget is not None else _env_bytes("CATALYTIC_MEMORY_BUDGET", DEFAULT_MEMORY_BUDGET)


# Geometry and materialised masks are cached per lattice object and backend: a lattice is immutable, and the
# service and the batch paths ask many queries of one lattice.
_PREPARED: weakref.WeakKeyDictionary[Lattice, dict[str, Any]] = weakref.WeakKeyDictionary()


def _cache_of(lattice: Lattice) -> dict[str, Any]:
    """The lattice's prepared-state cache, with its geometry."""
    cache = _PREPARED.setdefault(lattice, {})
    if "geometry" not in cache:
        cache["geometry"] = Geometry.of(lattice)
    return cache


def held_bytes(lattice: Lattice) -> int:
    """Bytes of the arrays the kernels keep prepared for ``lattice`` (materialised masks and bits, per backend).

    They live as long as the lattice does, so a cache that holds lattices weighs them in.

    Examples
    --------
    >>> lat = Lattice((10, 10))
    >>> held_bytes(lat)
    0
    >>> _ = distance_field(lat, [(0, 0)], backend="numpy")
    >>> held_bytes(lat) >= 100
    True
    """
    from catalytic.kernels.numba_backend import tile_form_bytes

    cache = _PREPARED.get(lattice)
    if not cache:
        return 0
    held = (int(getattr(value, "nbytes", 0)) + tile_form_bytes(value) for key, value in cache.items() if ":" in key)
    return sum(held)


def _prepared(lattice: Lattice, be: Backend, what: str = "mask") -> tuple[Geometry, Any]:
    cache = _cache_of(lattice)
    geom: Geometry = cache["geometry"]
    key = f"{be.name}:{what}"
    if key not in cache:
        cache[key] = be.open_mask(geom) if what == "mask" else be.open_bits(geom)
    return geom, cache[key]


HOST_MASK_BACKENDS = ("numpy", "numba")
"""Backends whose materialised open mask is a host uint8 array (one byte per vertex, 1 = open)."""


def adopt_open_mask(lattice: Lattice, mask: np.ndarray, backend: str) -> None:
    """Make ``mask`` the materialised open mask the ``backend`` kernels use for ``lattice``.

    For memory shared between processes, such as a read-only array in Ray's object store that every worker
    of a node maps: the kernels only read the mask, so one copy serves every process. The mask must be what
    the backend would materialise itself (``open_mask`` of the same lattice); its size and type are checked.

    Raises
    ------
    MethodError
        ``backend`` does not keep a host mask.
    MaskError
        ``mask`` is not a uint8 array with one entry per vertex.
    """
    from catalytic.errors import MaskError

    if backend not in HOST_MASK_BACKENDS:
        raise MethodError("backend", f"{backend!r} does not keep its mask in host memory", "numpy or numba")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.shape != (lattice.vertices,):
        found = f"{getattr(mask, 'dtype', type(mask).__name__)} {getattr(mask, 'shape', '')}"
        raise MaskError("mask", f"{found} is not a uint8 mask of {lattice.vertices} vertices", "uint8 (N,)")
    _cache_of(lattice)[f"{backend}:mask"] = mask


def _check_lattice(lattice: Any) -> Lattice:
    if not isinstance(lattice, Lattice):
        raise InvalidTypeError("lattice", f"{type(lattice).__name__} is not a Lattice", "a catalytic.Lattice")
    return lattice


def _choose(value: str, field: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise MethodError(field, f"unknown {field} {value!r}", ", ".join(allowed))
    return value


def _state_bytes(lattice: Lattice, method: str, mode: str) -> int:
    n = lattice.vertices
    if mode == "frugal":
        # the packed mask and the larger state: 2 bits a vertex, or the numba backend's 3 words and the edge
        # flags of each 64-vertex tile (partial tiles pad it)
        tiles = tile_count(tuple(lattice.shape))
        return (n + 7) // 8 + max((n + 3) // 4, tiles * (24 + (2 if len(lattice.shape) <= 8 else 4)))
    per_vertex = {"bfs": 4, "bidirectional": 8, "astar": 8, "dijkstra": 8}[method]
    return n * (1 + per_vertex)


_POOL = threading.local()
_POOL_ENTRIES = 4


def pool_bytes() -> int:
    """Bytes of the search-state arrays the calling thread keeps for reuse (at most ``CATALYTIC_POOL_MAX_BYTES``)."""
    return sum(int(entry[1].nbytes) for entry in getattr(_POOL, "arrays", None) or [])


def _open_vertices(lattice: Lattice, be: Backend, prepared: Any, bits: bool) -> int:
    """The open vertex count (the whole of a search's work), counted once per lattice."""
    cache = _cache_of(lattice)
    if "open_vertices" not in cache:
        if bits:
            cache["open_vertices"] = int(np.bitwise_count(be.to_host(prepared)).sum(dtype=np.int64))
        else:
            cache["open_vertices"] = int(prepared.sum(dtype=np.int64))
    return int(cache["open_vertices"])


@contextlib.contextmanager
def _metering(progress: Progress | None, total: Callable[[], int]) -> Iterator[Meter]:
    """A :class:`Meter` for one computation on this thread, its progress reported to ``progress``.

    Kernels driven from Python report as they advance; a compiled kernel only stores its count, so a thread
    reads it every :data:`PROGRESS_POLL_SECONDS` while the computation runs.
    """
    current = Meter(progress, total() if progress is not None else 0)
    if progress is not None:
        _WATCHER.add(current)
    try:
        with metered(current):
            yield current
    finally:
        if progress is not None:
            _WATCHER.discard(current)


class _Watcher:
    """One daemon thread per process that reads every watched :class:`Meter` each :data:`PROGRESS_POLL_SECONDS`.

    Shared, so a computation with a callback pays no thread start and join (measured at about 0.5 ms, 4 % of a
    13 ms labelling of 5-D 20^5, in ``bench progress``). A meter discarded is never reported again: reports run
    under the lock that :meth:`discard` takes, so none lands after the computation said 1.0.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meters: set[Meter] = set()
        self._thread: threading.Thread | None = None

    def add(self, meter: Meter) -> None:
        with self._lock:
            self._meters.add(meter)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="catalytic-progress", daemon=True)
                self._thread.start()

    def discard(self, meter: Meter) -> None:
        with self._lock:
            self._meters.discard(meter)

    def _run(self) -> None:
        while True:
            time.sleep(PROGRESS_POLL_SECONDS)
            with self._lock:
                for meter in list(self._meters):
                    try:
                        meter.report()
                    except Exception:  # a failing callback must not stop the reports of the others
                        logging.getLogger(__name__).exception("a progress callback failed")


_WATCHER = _Watcher()


class _Allocator:
    """Hands out search-state arrays: from lent scratch memory when given, else from a per-thread pool.

    Point-to-point searches throw their state away, so a thread reuses its last few arrays instead of mapping
    fresh pages for every query; on small lattices the page faults cost more than the search. A pooled array
    is refilled before reuse unless the search put back every entry it wrote (:meth:`restore`): an A* query
    that settles a few hundred vertices then costs a few hundred writes, not a pass over the lattice.
    """

    def __init__(self, be: Backend, scratch: Any) -> None:
        self.be = be
        self.scratch = scratch
        self.bytes = 0
        self.taken: set[int] = set()

    @staticmethod
    def _pool() -> list[list[Any]]:
        # entries: [key, array, value the whole array is known to hold, or None]
        pool: list[list[Any]] = getattr(_POOL, "arrays", None) or []
        _POOL.arrays = pool
        return pool

    def full(self, n: int, value: float, dtype: Any) -> Any:
        self.bytes += n * np.dtype(dtype).itemsize
        if self.scratch is not None:
            return self.scratch.array(n, dtype, fill=value)
        pool = self._pool()
        key = (self.be.name, n, np.dtype(dtype).str)
        for i, entry in enumerate(pool):
            array = entry[1]
            if entry[0] == key and id(array) not in self.taken:
                pool.append(pool.pop(i))
                self.taken.add(id(array))
                if entry[2] is None or entry[2] != value:
                    array.fill(value)
                entry[2] = None  # in use: dirty until restored
                return array
        array = self.be.full(n, value, dtype)
        cap = _env_bytes("CATALYTIC_POOL_MAX_BYTES", DEFAULT_POOL_MAX_BYTES)
        if array.nbytes > cap:
            return array  # too large to keep: freed when the search ends
        pool.append([key, array, None])
        self.taken.add(id(array))
        del pool[:-_POOL_ENTRIES]
        # Oldest first out until the pool fits its byte cap; the array just made is newest and fits alone.
        while sum(int(entry[1].nbytes) for entry in pool) > cap:
            del pool[0]
        return array

    def restore(self, array: Any, value: float, written: np.ndarray | None) -> None:
        """Put ``value`` back at the ``written`` indices so the pooled array is known clean for the next query."""
        if self.scratch is not None or written is None:
            return
        for entry in self._pool():
            if entry[1] is array:
                array[written] = value  # only host backends report what they wrote
                entry[2] = value
                return


def obstacle_density(lattice: Lattice) -> float:
    """The share of vertices the lattice's spec blocks, worked out from the spec alone.

    Random generators count their probability ``p``, boxes their volume, an explicit mask its blocked
    entries; the three are combined as if independent. No mask is materialised, so the figure is the same on
    every backend and machine, and costs nothing on a lattice of 10^9 vertices.

    Examples
    --------
    >>> obstacle_density(Lattice((10, 10), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}]))
    0.2
    >>> obstacle_density(Lattice((10, 10), obstacles=[{"kind": "box", "lo": [0, 0], "hi": [4, 9]}]))
    0.5
    """
    open_share = 1.0
    boxed = 0
    for obstacle in lattice.obstacles:
        if obstacle["kind"] == "random":
            open_share *= 1.0 - float(obstacle["p"])
        elif obstacle["kind"] == "box":
            boxed += math.prod(hi - lo + 1 for lo, hi in zip(obstacle["lo"], obstacle["hi"], strict=True))
    open_share *= 1.0 - min(1.0, boxed / lattice.vertices)
    if lattice.blocked is not None:
        open_share *= 1.0 - int(np.count_nonzero(lattice.blocked)) / lattice.vertices
    # rounded so that a spec's p = 0.3 reads 0.3, not 0.30000000000000004, against the thresholds
    return round(1.0 - open_share, 12)


def _span(lattice: Lattice, start: Sequence[int], goal: Sequence[int]) -> int:
    """Hops between ``start`` and ``goal`` without obstacles: the periodic-aware Manhattan distance."""
    hops = 0
    for a, b, n, wrap in zip(start, goal, lattice.shape, lattice.periodic, strict=True):
        gap = abs(int(a) - int(b))
        hops += min(gap, n - gap) if wrap else gap
    return hops


def auto_method(lattice: Lattice, start: Sequence[int], goal: Sequence[int]) -> str:
    """The method ``method="auto"`` runs: a pure function of the lattice's spec and the endpoints.

    A weighted lattice runs A*. An unweighted one looks up the band ``(open, dense)`` of its axis count in
    :data:`AUTO_DENSITY_BANDS` and compares its :func:`obstacle_density` with it:

    * up to ``open``: A* (the Manhattan bound keeps it to a thin corridor around the path);
    * above ``dense``: BFS (A* settles nearly what BFS does, and pays a heap for each vertex);
    * in between: A* when the endpoints are less than half the lattice's diameter apart (periodic-aware
      Manhattan distance), BFS when they are further apart (BFS then sweeps most of the lattice anyway, at
      less per vertex than A*).

    The backend, the memory budget and the machine play no part, so every replica, backend and memory mode
    answers a request with the same method and the same path. ``bench/results/auto.md`` holds the
    measurements behind the bands.

    Examples
    --------
    >>> auto_method(Lattice((64, 64, 64), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}]), (0, 0, 0), (63, 63, 63))
    'astar'
    >>> blocked_fifth = Lattice((4096, 4096), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    >>> auto_method(blocked_fifth, (0, 0), (4095, 4095)), auto_method(blocked_fifth, (0, 0), (100, 200))
    ('bfs', 'astar')
    """
    if lattice.weighted:
        return "astar"
    density = obstacle_density(lattice)
    sparse, dense = AUTO_DENSITY_BANDS[min(max(lattice.ndim, 2), 4)]
    if density <= sparse:
        return "astar"
    if density > dense:
        return "bfs"
    return "astar" if 2 * _span(lattice, start, goal) < _formula_diameter(lattice) else "bfs"


def check_method(lattice: Lattice, method: str, field: str = "method") -> None:
    """Refuse a path method that ``lattice`` cannot run, before any search: an unknown name, or BFS on weights.

    Callers that queue a search for later (a job) call it at submission, so a bad request is refused then and
    not accepted and failed afterwards; :func:`shortest_path` applies the same rule.

    Raises
    ------
    MethodError
        Naming ``field`` and the methods allowed.

    Examples
    --------
    >>> check_method(Lattice((4, 4)), "bfs")
    >>> try:
    ...     check_method(Lattice((2, 2), weights=np.ones((2, 2))), "bfs", "params.method")
    ... except MethodError as exc:
    ...     print(exc.field)
    params.method
    """
    if method not in METHODS:
        raise MethodError(field, f"unknown method {method!r}", ", ".join(METHODS))
    if lattice.weighted and method in ("bfs", "bidirectional"):
        raise MethodError(field, f"{method!r} ignores weights and this lattice is weighted", "auto, astar or dijkstra")


def _resolve_method(lattice: Lattice, method: str, start: Sequence[int], goal: Sequence[int]) -> str:
    check_method(lattice, method)
    return auto_method(lattice, start, goal) if method == "auto" else method


def _resolve_memory(lattice: Lattice, asked: str, method: str, memory: str, budget: int) -> str:
    """The memory mode for ``method`` (``asked`` resolved): frugal only where it gives the full-state path.

    Only BFS has a frugal variant, and it traces the same canonical path; a method without one runs on full
    state or is refused, so a small budget never changes the answer.
    """
    if memory == "frugal":
        if lattice.weighted:
            raise MethodError("memory", "frugal mode keeps hop counts only and this lattice is weighted", "full")
        if asked == "auto" and method != "bfs":
            raise MethodError(
                "memory",
                f"method 'auto' runs {method!r} on this lattice and {method!r} has no frugal mode",
                "memory 'auto' or 'full', or method 'bfs'",
            )
        if method != "bfs":
            raise MethodError("method", f"memory='frugal' runs BFS, not {method!r}", "auto or bfs")
        return "frugal"
    if memory == "auto" and method == "bfs" and _state_bytes(lattice, method, "full") > budget:
        return "frugal"
    return "full"


@dataclass(frozen=True)
class _PathQuery:
    """One point-to-point search: the lattice, the endpoints' linear indices, their coordinates as given."""

    lattice: Lattice
    start: int
    goal: int
    given: tuple[tuple[int, ...], tuple[int, ...]]

    def unreachable(self) -> NoPathError:
        return NoPathError(*self.given)


SearchResult = tuple[np.ndarray, float, int]
"""A search's answer: the path's linear indices from start to goal, its cost, and the vertices expanded."""


def _frugal_search(be: Backend, alloc: _Allocator, q: _PathQuery) -> SearchResult:
    """BFS keeping depth mod 3 per vertex in the backend's frugal state, the path rebuilt from the goal."""
    geom, bits = _prepared(q.lattice, be, "bits")
    size, dtype = be.frugal_state_size(geom)
    state = alloc.full(size, 0, dtype)
    length, expanded = be.bfs_frugal(geom, bits, q.start, q.goal, state)
    if length < 0:
        raise q.unreachable()
    path = be.trace_path_frugal(geom, bits, state, q.start, q.goal, length)[::-1]
    return path, float(length), expanded


def _bidirectional_search(be: Backend, alloc: _Allocator, q: _PathQuery) -> SearchResult:
    """Two BFS waves that meet; each half is traced toward its own root."""
    geom, mask = _prepared(q.lattice, be)
    dist_s = alloc.full(q.lattice.vertices, -1, np.int32)
    dist_g = alloc.full(q.lattice.vertices, -1, np.int32)
    length, meet, expanded = be.bidirectional(geom, mask, q.start, q.goal, dist_s, dist_g)
    if length < 0:
        raise q.unreachable()
    head = be.trace_path(geom, mask, dist_s, q.start, meet)[::-1]
    tail = be.trace_path(geom, mask, dist_g, q.goal, meet)
    return np.concatenate([head, tail[1:]]), float(length), expanded


def _bfs_search(be: Backend, alloc: _Allocator, q: _PathQuery) -> SearchResult:
    """BFS with int32 depths, stopped at the goal."""
    geom, mask = _prepared(q.lattice, be)
    dist = alloc.full(q.lattice.vertices, -1, np.int32)
    expanded = be.bfs(geom, mask, np.asarray([q.start], dtype=np.int64), q.goal, dist)
    goal_dist = be.to_host(dist[q.goal : q.goal + 1])[0]
    if goal_dist < 0:
        raise q.unreachable()
    return be.trace_path(geom, mask, dist, q.start, q.goal)[::-1], float(goal_dist), expanded


def _weighted_search(be: Backend, alloc: _Allocator, q: _PathQuery, astar: bool) -> SearchResult:
    """Dijkstra or A*; only the distances it wrote are put back, so the next query skips the refill."""
    geom, mask = _prepared(q.lattice, be)
    dist = alloc.full(q.lattice.vertices, np.inf, np.float64)
    expanded, written = be.dijkstra_written(geom, mask, np.asarray([q.start], dtype=np.int64), q.goal, dist, astar)
    goal_cost = float(be.to_host(dist[q.goal : q.goal + 1])[0])
    walk = be.trace_path(geom, mask, dist, q.start, q.goal)[::-1] if math.isfinite(goal_cost) else None
    alloc.restore(dist, np.inf, written)
    if walk is None:
        raise q.unreachable()
    return walk, goal_cost, expanded


_SEARCHES: dict[str, Callable[[Backend, _Allocator, _PathQuery], SearchResult]] = {
    "bfs": _bfs_search,
    "bidirectional": _bidirectional_search,
    "dijkstra": functools.partial(_weighted_search, astar=False),
    "astar": functools.partial(_weighted_search, astar=True),
}


def shortest_path(
    lattice: Lattice,
    start: Sequence[int],
    goal: Sequence[int],
    method: str = "auto",
    backend: str | None = None,
    *,
    memory: str = "auto",
    memory_budget: int | None = None,
    scratch: Any = None,
    progress: Progress | None = None,
) -> Path:
    """Exact shortest path between two open vertices.

    Parameters
    ----------
    lattice : Lattice
        The lattice to search.
    start, goal : sequence of int
        Coordinates of the endpoints.
    method : {"auto", "bfs", "bidirectional", "astar", "dijkstra"}
        ``auto`` runs :func:`auto_method`: A* (Manhattan heuristic, periodic-aware) or BFS, chosen from the
        lattice's shape and obstacle density and the endpoints, never from the backend or the memory budget.
    backend : {"numpy", "numba", "cupy", "auto"}, optional
        Defaults to ``CATALYTIC_BACKEND``, else auto. The method decides where it runs within that choice: on a
        GPU backend, A* runs on the host backend (numba), the other methods on the device; the answer's
        ``backend`` names the one that ran.
    memory : {"auto", "full", "frugal"}
        ``frugal`` keeps depth mod 3 in 2 bits per vertex (3 on the numba backend's tiles, with the open bits)
        plus a bit-packed mask, for BFS only, and traces the same path as full-state BFS; ``auto`` uses it for
        BFS when the full state would not fit ``memory_budget``. Other methods have no frugal mode: over the
        budget they are refused.
    memory_budget : int, optional
        Bytes of state the search may allocate (default ``CATALYTIC_MEMORY_BUDGET`` or 2 GiB).
    scratch : Scratch, optional
        Lent memory from :func:`catalytic.borrow` to hold the search state; results are identical.
    progress : callable, optional
        Called with the vertices expanded so far over the open vertex count, rising, then with 1.0
        (see :data:`Progress`).

    Returns
    -------
    Path

    Raises
    ------
    CoordinateError, BlockedVertexError
        Endpoints of the wrong length, outside the lattice, or blocked.
    MethodError
        An unknown method or memory mode, BFS asked of a weighted lattice, or ``memory="frugal"`` with a method
        (``auto`` resolved) other than BFS.
    NoPathError
        The goal is unreachable.
    MemoryBudgetError
        The method's state does not fit the budget (BFS: not even frugal state).

    Examples
    --------
    >>> lat = Lattice((3, 3))
    >>> shortest_path(lat, (0, 0), (2, 2)).length
    4
    """
    lattice = _check_lattice(lattice)
    method = _choose(method, "method", METHODS)
    memory = _choose(memory, "memory", MEMORY_MODES)
    budget = _memory_budget(memory_budget)
    s = lattice.check_vertex(start, "start")
    g = lattice.check_vertex(goal, "goal")
    asked = method
    method = _resolve_method(lattice, asked, start, goal)
    mode = _resolve_memory(lattice, asked, method, memory, budget)
    needed = _state_bytes(lattice, method, mode)
    if needed > budget:
        hint = "" if mode == "frugal" else "; only method 'bfs' has a frugal mode"
        raise MemoryBudgetError(needed, budget, f"{method} search state ({mode}{hint})")
    if scratch is not None:
        arrays = [a for a in (lattice.blocked, lattice.weights) if a is not None]
        scratch.check_disjoint(*arrays, field="scratch")

    query = _PathQuery(lattice, s, g, (tuple(start), tuple(goal)))
    search = _frugal_search if mode == "frugal" else _SEARCHES[method]

    def run(be: Backend) -> tuple[np.ndarray, float, int, int]:
        if scratch is not None and not be.host_arrays:
            raise ScratchError("scratch", f"host memory cannot hold {be.name!r} state", "numpy or numba")
        alloc = _Allocator(be, scratch)
        frugal = mode == "frugal"

        def total() -> int:
            return _open_vertices(lattice, be, _prepared(lattice, be, "bits" if frugal else "mask")[1], frugal)

        with _metering(progress, total) as meter:
            path, cost, expanded = search(be, alloc, query)
        # the arrays handed out here, and those the backend made for itself and accounted (queues, bitmaps, rings)
        return path, cost, expanded, alloc.bytes + meter.allocated_bytes

    if scratch is not None and backend is None:
        backend = "numba"
    (path, cost, expanded, state_bytes), used = run_with_fallback(backend, run, method)
    if progress is not None:
        progress(1.0)
    mask_bytes = (lattice.vertices + 7) // 8 if mode == "frugal" else lattice.vertices
    measured = int(state_bytes) + int(mask_bytes)

    def report() -> dict[str, Any]:
        baselines = _baselines(lattice, used) if mode == "full" else None
        return {
            "mode": mode,
            "state_bytes": int(state_bytes),
            "mask_bytes": int(mask_bytes),
            "measured_bytes": measured,
            "scratch": scratch is not None,
            "baselines": baselines,
            "memory_efficiency_ratio": None if baselines is None else baselines["igraph"]["bytes"] / measured,
        }

    return Path(
        coords=lattice.coords_of(path),
        length=len(path) - 1,
        cost=cost,
        expanded=int(expanded),
        method=method,
        backend=used,
        memory_source=report,
    )


def _baselines(lattice: Lattice, backend: str) -> dict[str, Any]:
    """igraph, CSR and dense-bitmap bytes for this lattice; the exact edge count is computed once per lattice."""
    from catalytic.kernels.backend import get_backend
    from catalytic.memory import memory_baselines

    cache = _PREPARED.setdefault(lattice, {})
    if "edges" not in cache:
        be = get_backend(backend)
        geom, mask = _prepared(lattice, be)
        histogram = be.degree_histogram(geom, mask)
        cache["edges"] = int((histogram * np.arange(histogram.size)).sum() // 2)
    return memory_baselines(lattice.vertices, cache["edges"])


def _source_indices(lattice: Lattice, sources: Any) -> np.ndarray:
    allowed = f"one coordinate or a list of coordinates with {lattice.ndim} integers each"
    try:
        array = np.asarray(sources)
    except (TypeError, ValueError):
        raise InvalidTypeError("sources", f"{sources!r} is not a list of coordinates", allowed) from None
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2 or array.shape[0] == 0:
        raise CoordinateError("sources", "expected one or more coordinates", allowed)
    indices = lattice.index_of(array, "sources")
    # A few sources are checked one by one so that a huge lattice need not materialise its mask on the host.
    is_open = lattice.open_mask_flat().__getitem__ if len(indices) > 64 else lattice.is_open
    for i, index in enumerate(indices.tolist()):
        if not is_open(index):
            raise BlockedVertexError(f"sources[{i}]", f"{array[i].tolist()} is blocked", "an open vertex")
    return np.unique(indices).astype(np.int64)


def distance_field(
    lattice: Lattice,
    sources: Any,
    backend: str | None = None,
    *,
    report: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Multi-source distance field.

    Parameters
    ----------
    lattice : Lattice
    sources : sequence
        One coordinate, or a list of coordinates; all start at distance 0.
    backend : str, optional
        As for :func:`shortest_path`.
    report : dict, optional
        When given, ``report["backend"]`` is set to the backend that ran (after a GPU fallback: ``numba``).
    progress : callable, optional
        Called with the vertices settled so far over the open vertex count, rising, then with 1.0.

    Returns
    -------
    numpy.ndarray
        The lattice's shape: int32 steps with −1 where unreachable, or float64 costs with ``inf`` where
        unreachable when the lattice is weighted.

    Raises
    ------
    CoordinateError, BlockedVertexError
        A source outside the lattice or blocked.

    Examples
    --------
    >>> distance_field(Lattice((1, 4)), [(0, 0)]).tolist()
    [[0, 1, 2, 3]]
    """
    lattice = _check_lattice(lattice)
    indices = _source_indices(lattice, sources)

    def run(be: Backend) -> np.ndarray:
        geom, mask = _prepared(lattice, be)
        with _metering(progress, lambda: _open_vertices(lattice, be, mask, False)):
            if lattice.weighted:
                dist = be.full(lattice.vertices, np.inf, np.float64)
                be.dijkstra(geom, mask, indices, -1, dist, False)
            else:
                dist = be.full(lattice.vertices, -1, np.int32)
                be.bfs(geom, mask, indices, -1, dist)
        return be.to_host(dist)

    field_values, used = run_with_fallback(backend, run)
    if progress is not None:
        progress(1.0)
    if report is not None:
        report["backend"] = used
    return field_values.reshape(lattice.shape)


def components(
    lattice: Lattice,
    backend: str | None = None,
    *,
    report: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """Connected components of the open vertices.

    ``report``, when given, gets ``report["backend"]``: the backend that ran, as for :func:`distance_field`.
    ``progress``, when given, is called with the share of the labelling rounds done, rising, then with 1.0.

    Returns
    -------
    labels : numpy.ndarray
        The lattice's shape; 1..count numbered by each component's lowest linear index, 0 where blocked.
    count : int

    Examples
    --------
    >>> labels, count = components(Lattice((5,), blocked=np.array([0, 0, 1, 0, 0], dtype=bool)))
    >>> labels.tolist(), count
    ([1, 1, 0, 2, 2], 2)
    """
    lattice = _check_lattice(lattice)

    def run(be: Backend) -> tuple[np.ndarray, int]:
        geom, mask = _prepared(lattice, be)
        # each backend's label sets its own total (vertices per round, or rounds)
        with _metering(progress, lambda: 0):
            labels, count = be.label(geom, mask)
        return be.to_host(labels), int(count)

    (labels, count), used = run_with_fallback(backend, run)
    if progress is not None:
        progress(1.0)
    if report is not None:
        report["backend"] = used
    return labels.reshape(lattice.shape), count


def _formula_diameter(lattice: Lattice) -> int:
    return sum(n // 2 if wrap else n - 1 for n, wrap in zip(lattice.shape, lattice.periodic, strict=True))


def analyze(lattice: Lattice, backend: str | None = None) -> dict[str, Any]:
    """Structure report: sizes, exact edge count, components, degree histogram and (hop) diameter.

    The diameter is the largest finite hop distance between two open vertices. It is exact by formula
    without obstacles, exact by one BFS per vertex with obstacles up to ``EXACT_DIAMETER_LIMIT`` open
    vertices, and otherwise a double-sweep lower bound flagged ``exact: false``.

    Examples
    --------
    >>> report = analyze(Lattice((3, 4), periodic=[False, True]))
    >>> report["edges"], report["diameter"]
    (20, {'value': 4, 'exact': True, 'method': 'formula'})
    """
    lattice = _check_lattice(lattice)

    def run(be: Backend) -> dict[str, Any]:
        geom, mask = _prepared(lattice, be)
        histogram = be.degree_histogram(geom, mask)
        labels_dev, count = be.label(geom, mask)
        labels = be.to_host(labels_dev)
        sizes = np.bincount(labels, minlength=int(count) + 1)[1:] if count else np.zeros(0, dtype=np.int64)
        open_vertices = int(histogram.sum())
        if open_vertices == 0:
            diameter = {"value": 0, "exact": True, "method": "empty"}
        elif open_vertices == lattice.vertices:
            diameter = {"value": _formula_diameter(lattice), "exact": True, "method": "formula"}
        elif open_vertices <= EXACT_DIAMETER_LIMIT:
            diameter = {"value": _exact_diameter(be, geom, mask, labels), "exact": True, "method": "all-pairs-bfs"}
        else:
            diameter = {
                "value": _double_sweep(be, geom, mask, labels, sizes),
                "exact": False,
                "method": "double-sweep lower bound",
            }
        return {
            "vertices": lattice.vertices,
            "open_vertices": open_vertices,
            "edges": int((histogram * np.arange(histogram.size)).sum() // 2),
            "components": int(count),
            "largest_component": int(sizes.max()) if sizes.size else 0,
            "degree_histogram": {int(k): int(v) for k, v in enumerate(histogram) if v},
            "diameter": diameter,
        }

    report, used = run_with_fallback(backend, run)
    report["backend"] = used
    return report


def _eccentricity(be: Backend, geom: Geometry, mask: Any, source: int) -> tuple[int, int]:
    """(largest finite distance from ``source``, lowest index at that distance)."""
    dist = be.full(geom.vertices, -1, np.int32)
    be.bfs(geom, mask, np.asarray([source], dtype=np.int64), -1, dist)
    host = be.to_host(dist)
    far = int(host.max())
    return far, int(np.flatnonzero(host == far)[0])


def _exact_diameter(be: Backend, geom: Geometry, mask: Any, labels: np.ndarray) -> int:
    # One distance array serves every BFS: after each one only the component's own entries are read and reset,
    # so the work is proportional to the open vertices, not to the whole lattice.
    dist = be.full(geom.vertices, -1, np.int32)
    best = 0
    for label in np.unique(labels[labels > 0]):
        members = np.flatnonzero(labels == label).astype(np.int64)
        members_dev = be.to_device(members)
        for source in members:
            be.bfs(geom, mask, members[members == source], -1, dist)
            best = max(best, int(be.to_host(dist[members_dev]).max()))
            dist[members_dev] = -1
    return best


def _double_sweep(be: Backend, geom: Geometry, mask: Any, labels: np.ndarray, sizes: np.ndarray) -> int:
    largest = int(np.argmax(sizes)) + 1
    first = int(np.flatnonzero(labels == largest)[0])
    _, far_vertex = _eccentricity(be, geom, mask, first)
    return _eccentricity(be, geom, mask, far_vertex)[0]
