"""The ``cupy`` backend: state on a CUDA device, primitives as numba.cuda kernels launched on CuPy arrays.

Nothing here imports CuPy or numba.cuda at module import time: :meth:`CupyBackend.probe` imports CuPy only
to answer whether it can run, and the kernels (:mod:`catalytic.kernels.cuda_kernels`) are imported when a
backend is instantiated. The array namespace is pluggable: the registered backend uses CuPy on a real device,
and ``CupyBackend(xp=numpy)`` runs the very same kernels on host arrays under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which is how CI checks their logic without a GPU.

How each primitive runs
-----------------------
* ``open_mask`` / ``open_bits``: one kernel over the vertices (or bytes) computing the SplitMix64 hash of the
  lattice model on the device, then the inclusive boxes and the explicit mask (uploaded once per geometry).
* ``bfs`` / ``bfs_frugal``: whole-level BFS over bit-packed frontiers (three rings of uint32 words) and a
  bit-packed visited set; with ``fused=True`` (the default) a persistent cooperative kernel runs up to
  ``levels_per_launch`` levels per launch, separated by grid-wide barriers, so a search of thousands of levels
  costs a handful of launches and one small device-to-host copy per launch. Each level labels exactly the
  vertices one step deeper, so the distances, the stopping rule and ``expanded`` are those of the reference
  backend. ``fused=False`` runs one launch per level (needs no cooperative launch). The frugal search writes
  ``1 + depth mod 3`` into the caller's 2-bit state with atomic ORs on 32-bit words, but its frontier is a bit
  ring too (depths three apart share a state), so on the device it holds 3 more bits per vertex than on the
  host, plus a padded copy of the state when its byte length is not a multiple of 4.
* ``bidirectional``: both sides' frontiers, visited sets and frontier sizes live on the device, and each
  round of the cooperative kernel picks the side with the smaller frontier (the start side on a tie) from
  those sizes, so the rounds fuse like BFS levels. The meet (the level's doubly labelled vertex minimising
  ``(d_start + d_goal, index)``) is found with array operations afterwards.
* ``label``: union-find hooking (the larger root of an edge under the smaller, atomically) and pointer
  jumping until no edge joins two roots; then the roots' bit set, a count of roots per 32-vertex word
  prefix-summed in place, and the parents overwritten by their roots' ranks: the labels are the parent array,
  and the rest is :data:`LABEL_TEMPORARY_BYTES_PER_VERTEX` (a quarter byte a vertex; at 10^9 vertices the
  labels take 4 GB and the rest 0.25 GB, next to the 1 GB open mask).
* ``dijkstra``: near-far relaxation on the device. Pending vertices whose cost is below a limit relax their
  open neighbours, each candidate formed as the reference forms it (``dist[v] + cost(u)`` in float64) and kept
  by an atomic minimum when strictly lower; when no pending cost is below the limit, the limit moves to the
  least pending cost plus ``delta`` times the smallest weight. Costs only fall, and every weight is positive
  and large enough next to any path sum that ``c + w > c`` (the lattice's weight rule), so the equations
  ``dist[u] = min(bound(u), min over relaxing neighbours v of dist[v] + cost(u))`` have one solution: the
  fixed point this relaxation reaches in any order is the one the reference's heap reaches, bit for bit,
  although paths of equal real cost may round differently. ``expanded`` is then counted as the reference's
  heap order ``(cost, index)`` settles (reached vertices up to the target's key), and a search stopped at a
  target rewrites the entries the reference leaves unsettled from its settled neighbours, as its heap loop
  left them. A\\* runs on the host backend (its heap order decides what it settles); the algorithms in
  :mod:`catalytic.kernels` send A\\* point queries to the host backend themselves (:attr:`host_methods`), so
  this copy happens only when the primitive is called directly.
* ``trace_path`` / ``trace_path_frugal``: one device thread walks the canonical path (a path is short next to
  the lattice), so neither the distance field nor the state is copied to the host.
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
import weakref
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from catalytic.kernels.backend import Backend, Geometry, get_backend, meter, register_backend

__all__ = ["LABEL_TEMPORARY_BYTES_PER_VERTEX", "CupyBackend", "is_cupy_array"]

log = logging.getLogger("catalytic.kernels.cupy")

_INT32_LIMIT = 2**31 - 1
LABEL_TEMPORARY_BYTES_PER_VERTEX = {4: 0.25, 8: 0.375}
"""Device bytes :meth:`CupyBackend.label` allocates per vertex besides the labels it returns (4 bytes a vertex,
8 past 2^31 - 1 vertices) and the open mask it is given (1): a root bit and a share of a per-word root count
(int32 or int64 per 32 vertices). CuPy's in-place scan adds a workspace of about 1/512 of the counts."""
_MIN_DEVICE_GRID = 128
_CONTROL_LEVEL, _CONTROL_DONE, _CONTROL_EXPANDED, _CONTROL_DISCOVERED, _CONTROL_HIT = range(5)
# The bidirectional kernel's control: [start level, goal level, done, expanded, side of the last round].
_ROUNDS_DONE, _ROUNDS_EXPANDED, _ROUNDS_SIDE = 2, 3, 4


class _NoCooperativeLaunch(Exception):
    """The fused level kernel cannot be built here; the caller runs the same level one launch at a time."""


def is_cupy_array(array: Any) -> bool:
    """Whether ``array`` is a CuPy array; looks at ``sys.modules`` and never imports CuPy.

    Parameters
    ----------
    array : object
        Anything.

    Returns
    -------
    bool
        False whenever CuPy has not been imported by someone else (then nothing can be a CuPy array).

    Examples
    --------
    >>> is_cupy_array(np.zeros(3))
    False
    """
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(array, cupy.ndarray)


def _simulator_enabled() -> bool:
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)  # type: ignore[attr-defined]


def _probe() -> str | None:
    """Why the GPU backend cannot run here, or None (the registry caches the answer per process)."""
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return "CuPy is not installed"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CuPy raises its runtime error class, which we cannot name without importing it
        return f"no CUDA device: {exc}"
    if count < 1:
        return "no CUDA device: the CUDA runtime reports none"
    if _simulator_enabled():
        return "no CUDA device for numba.cuda: NUMBA_ENABLE_CUDASIM is set"
    try:
        from numba import cuda
    except ImportError as exc:
        return f"numba.cuda cannot be imported: {exc}"
    if not cuda.is_available():
        return "no CUDA device: numba.cuda cannot use the CUDA driver"
    return None


class _DeviceGeometry:
    """A geometry's small arrays uploaded once (shape, strides, generators, boxes, explicit mask)."""

    def __init__(self, geom: Geometry, xp: ModuleType) -> None:
        def up(array: np.ndarray, dtype: Any) -> Any:
            # A zero-length array cannot always be handed to a kernel, so an empty table gets one dummy row.
            host = np.ascontiguousarray(array, dtype=dtype)
            if host.size == 0:
                host = np.zeros((1, *host.shape[1:]), dtype=dtype)
            return xp.array(host)

        self.shape = up(geom.shape, np.int64)
        self.strides = up(geom.strides, np.int64)
        self.periodic = up(geom.periodic, np.int64)
        self.seeds = up(geom.random_seeds, np.uint64)
        self.thresholds = up(geom.random_thresholds, np.uint64)
        self.n_random = int(geom.random_seeds.size)
        self.box_lo = up(geom.box_lo, np.int64)
        self.box_hi = up(geom.box_hi, np.int64)
        self.n_boxes = int(geom.box_lo.shape[0])
        has_explicit = geom.explicit_blocked is not None
        explicit = geom.explicit_blocked if has_explicit else np.zeros(1, dtype=np.bool_)
        self.explicit = up(np.asarray(explicit).view(np.uint8), np.uint8)
        self.has_explicit = int(has_explicit)
        self.weights: Any = None

    def generators(self) -> tuple[Any, ...]:
        return (
            self.shape,
            self.strides,
            self.seeds,
            self.thresholds,
            self.n_random,
            self.box_lo,
            self.box_hi,
            self.n_boxes,
            self.explicit,
            self.has_explicit,
        )

    def axes(self) -> tuple[Any, Any, Any]:
        return self.shape, self.strides, self.periodic


@register_backend
class CupyBackend(Backend):
    """GPU primitives: CuPy device arrays and numba.cuda kernels.

    Parameters
    ----------
    xp : module, optional
        The array namespace; CuPy when omitted. ``numpy`` runs the kernels under numba's CUDA simulator.

    Other Parameters
    ----------------
    block : int
        Threads per block (small under the simulator, where every thread is a Python thread).
    max_blocks : int
        Upper bound on blocks per launch of the grid-stride kernels.
    fused : bool
        Run BFS levels in persistent cooperative launches (True) or one launch per level (False).
    levels_per_launch : int
        Most BFS levels one cooperative launch runs before the host checks in.
    host_backend : str
        The backend that runs A\\* (``numba``; ``numpy`` in tests).
    delta : float
        Width of the near-far bands of the device Dijkstra, in multiples of the smallest weight; it changes
        how much work a pass does, never a cost.

    Raises
    ------
    BackendUnavailableError
        Through :func:`catalytic.kernels.backend.get_backend` when CuPy or a device is missing.

    Examples
    --------
    >>> import numpy as np  # doctest: +SKIP
    >>> from catalytic.lattice import Lattice  # doctest: +SKIP
    >>> backend, geom = CupyBackend(), Geometry.of(Lattice((3, 3)))  # doctest: +SKIP
    >>> dist = backend.full(9, -1, np.int32)  # doctest: +SKIP
    >>> backend.bfs(geom, backend.open_mask(geom), np.array([0]), 8, dist)  # doctest: +SKIP
    6
    """

    name: ClassVar[str] = "cupy"
    host_arrays: ClassVar[bool] = False

    def __init__(
        self,
        xp: ModuleType | None = None,
        *,
        block: int | None = None,
        max_blocks: int | None = None,
        fused: bool = True,
        levels_per_launch: int = 1 << 20,
        host_backend: str = "numba",
        delta: float = 2.0,
    ) -> None:
        self.xp: ModuleType = importlib.import_module("cupy") if xp is None else xp
        self.k: Any = importlib.import_module("catalytic.kernels.cuda_kernels")
        self.simulated = _simulator_enabled()
        self.block = block if block is not None else (8 if self.simulated else 256)
        self.max_blocks = max_blocks if max_blocks is not None else (2 if self.simulated else 8192)
        self.fused = fused
        self.levels_per_launch = int(levels_per_launch)
        self.host_backend = host_backend
        if not delta > 0:
            raise ValueError(f"delta: {delta!r} is not a positive band width")
        self.delta = float(delta)
        self._geometries: weakref.WeakKeyDictionary[Geometry, _DeviceGeometry] = weakref.WeakKeyDictionary()
        self._cooperative: dict[tuple[int, tuple[Any, ...]], int] = {}

    host_methods: ClassVar[frozenset[str]] = frozenset({"astar"})
    """Path methods whose point queries run on :attr:`host_backend` (:meth:`placement`)."""

    def placement(self, method: str) -> str:
        """:attr:`host_backend` for A\\* (its heap order is kept on the host), this backend for the rest."""
        return self.host_backend if method in self.host_methods else self.name

    @classmethod
    def probe(cls) -> str | None:
        """None when CuPy imports and a CUDA device is usable by CuPy and numba.cuda, else what is missing."""
        return _probe()

    # --- launch helpers -------------------------------------------------------------------------------

    def _grid(self, items: int) -> int:
        blocks = max(1, min(self.max_blocks, -(-items // self.block)))
        # numba-cuda warns about grids under 128 blocks (and the test suite makes warnings errors); on a device
        # the extra blocks of a grid-stride kernel find no work and return at once. The simulator runs blocks
        # one after another, so it keeps the small grid.
        return blocks if self.simulated else max(blocks, _MIN_DEVICE_GRID)

    def _launch(self, kernel: Any, items: int, *args: Any) -> None:
        kernel[self._grid(items), self.block](*args)

    def _launch_single(self, kernel: Any, *args: Any) -> None:
        # Only global thread 0 works; see _grid for the size of the grid.
        kernel[self._grid(1), 1](*args)

    def _launch_cooperative(self, kernel: Any, items: int, *args: Any) -> None:
        # A cooperative grid must fit on the device at once; the bound depends on the compiled kernel.
        if self.simulated:
            kernel[1, self.block](*args)
            return
        argtypes = tuple(kernel.typeof_pyval(a) for a in args)
        key = (id(kernel), argtypes)
        if key not in self._cooperative:
            try:
                compiled = kernel.compile(argtypes)
            except Exception as exc:
                # A grid-wide barrier needs the CUDA device runtime library at link time; without it the
                # searches still run, one launch per level. Anything else is a real error.
                if not type(exc).__module__.startswith("numba"):
                    raise
                log.warning(
                    "cooperative launch unavailable (%s: %s); BFS runs one launch per level", type(exc).__name__, exc
                )
                self.fused = False
                raise _NoCooperativeLaunch from exc
            self._cooperative[key] = int(compiled.max_cooperative_grid_blocks(self.block))
        kernel[max(1, min(self._cooperative[key], self._grid(items))), self.block](*args)

    def _device(self, geom: Geometry) -> _DeviceGeometry:
        found = self._geometries.get(geom)
        if found is None:
            found = _DeviceGeometry(geom, self.xp)
            self._geometries[geom] = found
        return found

    # --- arrays ---------------------------------------------------------------------------------------

    def full(self, n: int, value: float, dtype: Any) -> Any:
        """A new device array of ``n`` entries set to ``value``."""
        return self.xp.full(n, value, dtype=dtype)

    def to_device(self, array: np.ndarray) -> Any:
        """Copy a host array to the device (a contiguous host array under the simulator)."""
        return self.xp.array(np.ascontiguousarray(array))

    def to_host(self, array: Any) -> np.ndarray:
        """Copy a device array to a host NumPy array."""
        if is_cupy_array(array):
            return np.asarray(array.get())
        return np.asarray(array)

    # --- lattice ----------------------------------------------------------------------------------------

    def _open_flags(self, geom: Geometry, per: int) -> Any:
        out = self.xp.empty((geom.vertices + per - 1) // per, dtype=np.uint8)
        self._launch(self.k.open_flags, out.size, *self._device(geom).generators(), geom.vertices, per, out)
        return out

    def open_mask(self, geom: Geometry) -> Any:
        """uint8 (N,), 1 where open, computed on the device from the generators, boxes and explicit mask."""
        return self._open_flags(geom, 1)

    def open_bits(self, geom: Geometry) -> Any:
        """The open mask packed 1 bit per vertex (bit ``i & 7`` of byte ``i >> 3``), computed on the device."""
        return self._open_flags(geom, 8)

    def degree_histogram(self, geom: Geometry, open_mask: Any) -> np.ndarray:
        """int64 (2d + 1,): open vertices counted by their number of distinct open neighbours."""
        histogram = self.xp.zeros(2 * geom.ndim + 1, dtype=np.int64)
        self._launch(self.k.degree_histogram, geom.vertices, *self._device(geom).axes(), open_mask, histogram)
        return self.to_host(histogram)

    # --- whole-level BFS ------------------------------------------------------------------------------

    def _bfs_state(self, geom: Geometry, open_mask: Any, sources: np.ndarray, dist: Any) -> tuple[Any, Any]:
        nwords = (geom.vertices + 31) // 32
        visited = self.xp.empty(nwords, dtype=np.uint32)
        rings = self.xp.zeros((3, nwords), dtype=np.uint32)
        meter().allocated(visited.nbytes + rings.nbytes)
        self._launch(self.k.init_visited, nwords, open_mask, visited)
        self._launch(self.k.mark_sources, sources.size, self.to_device(sources), visited, rings, dist)
        return visited, rings

    def _search(
        self, visited: Any = None, dist: Any = None, open_bits: Any = None, words: Any = None
    ) -> tuple[Any, ...]:
        """``(visited, dist, open_bits, words, frugal)`` for the level kernels: a BFS gives ``visited`` and ``dist``,
        the frugal search ``open_bits`` and ``words``.

        The slots a search does not read get one-entry stand-ins of the same types, never the search's own arrays:
        the simulator copies every argument to its device and back, and a second copy would undo the first.
        """
        xp = self.xp
        return (
            xp.zeros(1, dtype=np.uint32) if visited is None else visited,
            xp.zeros(1, dtype=np.int32) if dist is None else dist,
            xp.zeros(1, dtype=np.uint8) if open_bits is None else open_bits,
            xp.zeros(1, dtype=np.uint32) if words is None else words,
            words is not None,
        )

    def _run_levels(self, geom: Geometry, rings: Any, target: int, search: tuple[Any, ...]) -> np.ndarray:
        """Run levels until the frontier empties or the target is hit; returns the host copy of ``control``.

        ``search`` comes from :meth:`_search`.
        """
        no_other = self.xp.zeros(1, dtype=np.int32)
        flags = self.xp.zeros((2, 3), dtype=np.int32)
        control = self.xp.zeros(5, dtype=np.int64)
        common = (*self._device(geom).axes(), rings, flags, control)
        nwords = rings.shape[1]
        level = 0
        discovered = 0
        counts = meter()
        while True:
            if self.fused:
                try:
                    self._launch_cooperative(
                        self.k.expand_levels, nwords, *common, level, target, self.levels_per_launch, *search
                    )
                except _NoCooperativeLaunch:
                    continue  # nothing ran; the same level again, one launch at a time
                state = self.to_host(control)
                counts.advance(int(state[_CONTROL_EXPANDED]))
                level = int(state[_CONTROL_LEVEL])
                if state[_CONTROL_DONE]:
                    return state
            else:
                self._launch(self.k.expand_level, nwords, *common, level, target, no_other, 0, *search)
                level += 1
                state = self.to_host(control)
                counts.advance(int(state[_CONTROL_EXPANDED]))
                state[_CONTROL_LEVEL] = level
                state[_CONTROL_HIT] = self.to_host(flags)[1, level % 3]
                if state[_CONTROL_HIT] or int(state[_CONTROL_DISCOVERED]) == discovered:
                    return state
                discovered = int(state[_CONTROL_DISCOVERED])

    def bfs(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any) -> int:
        """Multi-source whole-level BFS writing steps into ``dist`` (pre-filled −1); returns ``expanded``.

        Stops after the level that discovers ``target`` when ``target >= 0``.
        """
        sources = np.unique(np.asarray(sources, dtype=np.int64))
        if target >= 0 and target in sources:
            dist[self.to_device(sources)] = 0
            return 0
        visited, rings = self._bfs_state(geom, open_mask, sources, dist)
        state = self._run_levels(geom, rings, target, self._search(visited=visited, dist=dist))
        return int(state[_CONTROL_EXPANDED])

    def bidirectional(
        self, geom: Geometry, open_mask: Any, start: int, goal: int, dist_start: Any, dist_goal: Any
    ) -> tuple[int, int, int]:
        """Bidirectional whole-level BFS; ``(length, meet, expanded)``, ``(-1, -1, expanded)`` if unreachable.

        Each round expands the side with the smaller frontier (the start side on a tie); after the first level
        that labels vertices the other side already labelled, the meet minimises ``(d_start + d_goal, index)``.
        Fused, the rounds run in persistent cooperative launches like :meth:`bfs`; otherwise one launch each.
        """
        xp = self.xp
        dist_start[start] = 0
        dist_goal[goal] = 0
        if start == goal:
            return 0, start, 0
        nwords = (geom.vertices + 31) // 32
        axes = self._device(geom).axes()
        dists = (dist_start, dist_goal)
        visited = xp.empty((2, nwords), dtype=np.uint32)
        rings = xp.zeros((2, 3, nwords), dtype=np.uint32)
        flags = xp.zeros((2, 2, 3), dtype=np.int32)
        meter().allocated(visited.nbytes + rings.nbytes)
        for side, root in enumerate((start, goal)):
            self._launch(self.k.init_visited, nwords, open_mask, visited[side])
            sources = self.to_device(np.asarray([root], dtype=np.int64))
            self._launch(self.k.mark_sources, 1, sources, visited[side], rings[side], dists[side])
        found = self._bidirectional_fused(axes, rings, visited, dists, flags, nwords) if self.fused else None
        if found is None:
            found = self._bidirectional_stepped(axes, rings, visited, dists, flags, nwords)
        side, level, expanded, hit = found
        if not hit:
            return -1, -1, expanded
        own, other = dists[side], dists[1 - side]
        touched = xp.flatnonzero((own == level) & (other >= 0))
        totals = dist_start[touched].astype(np.int64) + dist_goal[touched]
        best = int(xp.argmin(totals))  # touched is sorted, so the first minimum has the lowest index
        return int(totals[best]), int(touched[best]), expanded

    def _bidirectional_fused(
        self, axes: tuple[Any, ...], rings: Any, visited: Any, dists: tuple[Any, Any], flags: Any, nwords: int
    ) -> tuple[int, int, int, bool] | None:
        """Rounds in cooperative launches: ``(last side, its level, expanded, met)``; None without them."""
        counts = self.xp.zeros((2, 3), dtype=np.int64)
        counts[:, 0] = 1
        control = self.xp.zeros(5, dtype=np.int64)
        while True:
            try:
                self._launch_cooperative(
                    self.k.bidirectional_levels,
                    nwords,
                    *axes,
                    rings,
                    visited,
                    dists[0],
                    dists[1],
                    flags,
                    counts,
                    control,
                    self.levels_per_launch,
                )
            except _NoCooperativeLaunch:
                return None
            state = self.to_host(control)
            meter().advance(int(state[_ROUNDS_EXPANDED]))
            if state[_ROUNDS_DONE]:
                side = int(state[_ROUNDS_SIDE])
                level = int(state[side])  # the first two entries are the two sides' levels
                hit = bool(self.to_host(flags)[side, 1, level % 3])
                return side, level, int(state[_ROUNDS_EXPANDED]), hit

    def _bidirectional_stepped(
        self, axes: tuple[Any, ...], rings: Any, visited: Any, dists: tuple[Any, Any], flags: Any, nwords: int
    ) -> tuple[int, int, int, bool]:
        """One launch per round: ``(last side, its level, expanded, met)``."""
        frontier = [1, 1]
        levels = [0, 0]
        expanded = 0
        control = self.xp.zeros(5, dtype=np.int64)
        while True:
            side = 0 if frontier[0] <= frontier[1] else 1
            control[_CONTROL_DISCOVERED] = 0
            self._launch(
                self.k.expand_level,
                nwords,
                *axes,
                rings[side],
                flags[side],
                control,
                levels[side],
                -1,
                dists[1 - side],
                1,
                *self._search(visited=visited[side], dist=dists[side]),
            )
            levels[side] += 1
            expanded += frontier[side]
            meter().advance(expanded)
            frontier[side] = int(self.to_host(control)[_CONTROL_DISCOVERED])
            if self.to_host(flags)[side, 1, levels[side] % 3]:
                return side, levels[side], expanded, True
            if frontier[side] == 0:
                return side, levels[side], expanded, False

    def dijkstra(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any, astar: bool) -> int:
        """Dijkstra on the device (near-far relaxation), or A\\* on the host backend; returns ``expanded``.

        Dijkstra's costs, ``expanded`` and, when the search stops at ``target``, the entries the reference
        leaves unsettled are those of the reference bit for bit (see the module docstring). A\\* runs on the
        host backend on copies, its costs copied back: its heap order decides what it settles.
        """
        if astar:
            host = get_backend(self.host_backend)
            host_dist = self.to_host(dist).copy()
            expanded = host.dijkstra(geom, self.to_host(open_mask), sources, target, host_dist, astar)
            dist[...] = self.to_device(host_dist)
            return int(expanded)
        return self._sssp(geom, open_mask, np.unique(np.asarray(sources, dtype=np.int64)), target, dist)

    def _sssp(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any) -> int:
        """Near-far relaxation to the reference's fixed point, then the reference's settled set and leftovers."""
        xp = self.xp
        nwords = (geom.vertices + 31) // 32
        on_device = self.to_device(sources)
        given = self.to_host(dist[on_device]).astype(np.float64)
        start = np.where(np.isfinite(given), given, 0.0)
        stops = target >= 0
        # The entries the reference leaves unsettled keep their starting bounds unless a settled neighbour
        # lowered them; those bounds are all inf (a lone source is settled first) unless the caller gave some
        # (a finite minimum: a lone seeded source counts too, which only costs the copy).
        has_bounds = stops and (sources.size > 1 or math.isfinite(float(xp.min(dist))))
        dist[on_device] = self.to_device(start)
        pending = xp.zeros(nwords, dtype=np.uint32)
        reached = xp.zeros(nwords, dtype=np.uint32)
        bounds = dist.copy() if has_bounds else xp.zeros(1, dtype=np.float64)
        meter().allocated(pending.nbytes + reached.nbytes + (bounds.nbytes if has_bounds else 0))
        words, first = np.unique(sources >> 5, return_index=True)
        bits = np.bitwise_or.reduceat(np.left_shift(np.uint32(1), (sources & 31).astype(np.uint32)), first)
        pending[self.to_device(words)] = self.to_device(bits)
        reached[self.to_device(words)] = self.to_device(bits)

        weighted = geom.weights is not None
        weights = self._weights(geom) if weighted else xp.zeros(1, dtype=np.float64)
        entry = (open_mask, weights, int(weighted))
        axes = self._device(geom).axes()
        delta = self.delta * geom.min_weight
        limit = max(float(start.min()) + delta, math.nextafter(float(start.min()), math.inf))
        control = xp.zeros(2, dtype=np.int64)
        far = xp.full(1, np.inf, dtype=np.float64)
        counts = meter()
        relaxed = 0
        while True:
            control[0] = 0
            far[0] = np.inf
            self._launch(self.k.sssp_relax, nwords, *axes, *entry, pending, reached, dist, limit, control, far)
            this_pass = int(self.to_host(control)[0])
            if this_pass:
                relaxed += this_pass
                counts.advance(relaxed)
                continue
            nearest = float(self.to_host(far)[0])
            if not math.isfinite(nearest):
                break
            # No pending cost below the target's: the target's cost and every lower one are final.
            if stops and self._is_reached(reached, target) and nearest >= self._cost(dist, target):
                break
            limit = max(nearest + delta, math.nextafter(nearest, math.inf))  # the nearest always relaxes next

        settled = pending  # free now; overwritten whole
        popped = stops and self._is_reached(reached, target)
        target_cost, last = (self._cost(dist, target), target) if popped else (np.inf, geom.vertices)
        control[1] = 0
        self._launch(self.k.sssp_settled, nwords, dist, reached, target_cost, last, settled, control)
        if popped:
            self._launch(
                self.k.sssp_tentative, geom.vertices, *axes, *entry, settled, target, bounds, int(has_bounds), dist
            )
        return int(self.to_host(control)[1])

    def _is_reached(self, reached: Any, vertex: int) -> bool:
        return bool((int(self.to_host(reached[vertex >> 5 : (vertex >> 5) + 1])[0]) >> (vertex & 31)) & 1)

    def _cost(self, dist: Any, vertex: int) -> float:
        return float(self.to_host(dist[vertex : vertex + 1])[0])

    def trace_path(
        self, geom: Geometry, open_mask: Any, dist: Any, root: int, vertex: int, within: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The canonical path ``[vertex, ..., root]`` walked by one device thread (ending early outside ``within``).

        Raises
        ------
        ValueError
            When ``dist`` has no predecessor chain from ``vertex`` to ``root``.
        """
        integral = np.dtype(dist.dtype).kind in "iu"
        weighted = not integral and geom.weights is not None
        here = float(self.to_host(dist[vertex : vertex + 1])[0])
        if integral or not weighted:
            capacity = int(here) + 1 if here >= 0 and math.isfinite(here) else 1
        else:
            capacity = int(here / geom.min_weight * (1 + 1e-9)) + 2 if math.isfinite(here) else 1
        capacity = max(1, min(capacity, geom.vertices))
        weights = self._weights(geom) if weighted else self.xp.zeros(1, dtype=np.float64)
        lo, hi = (0, geom.vertices) if within is None else within
        for size in (capacity, geom.vertices):
            out = self.xp.empty(size, dtype=np.int64)
            count = self.xp.zeros(1, dtype=np.int64)
            self._launch_single(
                self.k.trace,
                *self._device(geom).axes(),
                open_mask,
                dist,
                weights,
                int(weighted),
                int(integral),
                root,
                vertex,
                lo,
                hi,
                out,
                count,
            )
            found = int(self.to_host(count)[0])
            if found > 0:
                return self.to_host(out[:found]).astype(np.int64)
            if found == -1:
                break
        raise ValueError(f"dist: no predecessor chain from vertex {vertex} to root {root}")

    def _weights(self, geom: Geometry) -> Any:
        device = self._device(geom)
        if device.weights is None:
            device.weights = self.to_device(np.asarray(geom.weights, dtype=np.float64))
        return device.weights

    # --- frugal (2 bits per vertex) --------------------------------------------------------------------

    def _state_words(self, state: Any) -> tuple[Any, bool]:
        """A uint32 view of the 2-bit state, or a padded copy (True) when its length is not a multiple of 4."""
        if state.size % 4 == 0:
            return state.view(np.uint32), False
        words = self.xp.zeros((state.size + 3) // 4, dtype=np.uint32)
        words.view(np.uint8)[: state.size] = state
        meter().allocated(words.nbytes)
        return words, True

    def bfs_frugal(self, geom: Geometry, open_bits: Any, start: int, goal: int, state: Any) -> tuple[int, int]:
        """Whole-level BFS keeping ``1 + depth mod 3`` in 2 bits per vertex; returns ``(length, expanded)``."""
        words, copied = self._state_words(state)
        nwords = (geom.vertices + 31) // 32
        rings = self.xp.zeros((3, nwords), dtype=np.uint32)
        meter().allocated(rings.nbytes)
        self._launch_single(self.k.init_frugal, words, rings, start)
        try:
            if start == goal:
                return 0, 0
            result = self._run_levels(geom, rings, goal, self._search(open_bits=open_bits, words=words))
            expanded = int(result[_CONTROL_EXPANDED])
            if not result[_CONTROL_HIT]:
                return -1, expanded
            return int(result[_CONTROL_LEVEL]), expanded
        finally:
            if copied:
                state[...] = words.view(np.uint8)[: state.size]

    def trace_path_frugal(
        self, geom: Geometry, open_bits: Any, state: Any, start: int, goal: int, length: int
    ) -> np.ndarray:
        """The canonical path ``[goal, ..., start]`` rebuilt on the device from the depth-mod-3 state."""
        words, _ = self._state_words(state)
        out = self.xp.empty(length + 1, dtype=np.int64)
        count = self.xp.zeros(1, dtype=np.int64)
        self._launch_single(
            self.k.trace_frugal, *self._device(geom).axes(), open_bits, words, start, goal, length, out, count
        )
        if int(self.to_host(count)[0]) != length + 1:
            raise ValueError(f"state: no canonical walk of {length} steps from goal {goal} back to start {start}")
        return self.to_host(out).astype(np.int64)

    # --- structure --------------------------------------------------------------------------------------

    def label(self, geom: Geometry, open_mask: Any) -> tuple[Any, int]:
        """Component labels 1..count by lowest linear index (0 where blocked), and the count.

        The union-find parents become the labels in place; the only other arrays are the roots' bit set and
        their count per 32-vertex word, prefix-summed in place: :data:`LABEL_TEMPORARY_BYTES_PER_VERTEX`.
        """
        xp = self.xp
        dtype = np.int32 if geom.vertices <= _INT32_LIMIT else np.int64
        parent = xp.empty(geom.vertices, dtype=dtype)
        changed = xp.zeros(1, dtype=np.int32)
        axes = self._device(geom).axes()
        self._launch(self.k.label_init, geom.vertices, parent)
        counts = meter()
        rounds = 0
        while True:
            counts.round_done(rounds)  # the number of hooking rounds is not known ahead
            rounds += 1
            changed[0] = 0
            self._launch(self.k.label_hook, geom.vertices, *axes, open_mask, parent, changed)
            self._launch(self.k.label_compress, geom.vertices, parent)
            if not int(self.to_host(changed)[0]):
                break
        nwords = (geom.vertices + 31) // 32
        roots = xp.empty(nwords, dtype=np.uint32)
        offsets = xp.empty(nwords, dtype=dtype)
        counts.allocated(roots.nbytes + offsets.nbytes)
        self._launch(self.k.label_roots, nwords, open_mask, parent, roots, offsets)
        xp.cumsum(offsets, out=offsets)
        self._launch(self.k.label_number, geom.vertices, open_mask, roots, offsets, parent)
        count = int(self.to_host(offsets[-1:])[0]) if nwords else 0
        return parent, count
