"""The ``numba`` backend: compiled CPU primitives, the fast path of catalytic.

State lives in host NumPy arrays. Kernels are compiled once per process (and cached on disk) with
``nogil=True``, so the service can run several searches at once in a thread pool. Mask materialisation,
bit packing and the degree histogram run in parallel over chunks of the lattice (numba ``prange``). The
searches run on the calling thread, which keeps their visiting order, and so their results, the ones fixed by
:mod:`catalytic.kernels.backend`. BFS works on bit sets of 64-vertex tiles (a box of the lattice per uint64
word), a level at a time, with no vertex queue.

The frugal search (:mod:`catalytic.kernels._numba_frugal`) keeps 3 bits per vertex on the same 64-vertex tiles
(the open bits and a 2-bit code, ``1 + depth mod 3``) and no frontier: a level is read off the codes. With the
packed mask that is about 0.5 bytes per vertex in all. Each wide level is split over threads; the answer does
not depend on the thread count. A corner-to-corner path on a 5-D lattice of about 10^9 vertices fits in well under
1.5 GiB (``python -m bench giant``).
"""

from __future__ import annotations

import collections
import threading
import weakref
from typing import Any

import numpy as np

from catalytic.errors import InvalidInputError
from catalytic.kernels.backend import PROGRESS_TOTAL, Geometry, HostBackend, meter, register_backend

__all__ = ["NumbaBackend"]

_NO_WEIGHTS = np.empty(0, dtype=np.float64)
_NO_MASK = np.empty(0, dtype=np.bool_)
_INT32_LIMIT = 2**31 - 1
TILE_BYTES_LIMIT = 64 * 2**20
"""Largest tile tables (a first index and edge flags per 64-vertex tile: 1/4 byte per vertex) of the bit-set
BFS, and the most the tables kept for the shapes searched last hold together; past it for one shape, or past 32
axes, the BFS runs over a vertex queue."""


_LAYOUTS: collections.OrderedDict[tuple[tuple[int, ...], tuple[int, ...]], tuple[np.ndarray, ...]] = (
    collections.OrderedDict()
)
_LAYOUTS_LOCK = threading.Lock()


def tiles_fit(geom: Geometry) -> bool:
    """Whether the lattice is within the tile limit, so that BFS and the seeded BFS run on 64-vertex tiles.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> tiles_fit(Geometry.of(Lattice((64, 64))))
    True
    """
    return geom.ndim <= 32 and 16 * ((geom.vertices + 63) // 64) <= TILE_BYTES_LIMIT


def forget_tile_layouts() -> None:
    """Drop the tile tables kept for recent shapes (a benchmark's cold call must find none)."""
    with _LAYOUTS_LOCK:
        _LAYOUTS.clear()


def _tiles(geom: Geometry) -> tuple[np.ndarray, ...] | None:
    """The tile layout of a shape (:func:`_numba_kernels.tiling`), kept for the next search; None past the limit.

    Layouts are kept for the shapes searched last, together at most :data:`TILE_BYTES_LIMIT` bytes (a process
    serving many large shapes rebuilds theirs instead of holding one table per shape).
    """
    if not tiles_fit(geom):
        return None
    key = (tuple(int(x) for x in geom.shape), tuple(int(x) for x in geom.strides))
    with _LAYOUTS_LOCK:
        layout = _LAYOUTS.get(key)
        if layout is not None:
            _LAYOUTS.move_to_end(key)
            return layout
    layout = _kernels().tiling(np.asarray(key[0], dtype=np.int64), np.asarray(key[1], dtype=np.int64))
    for table in layout:
        table.flags.writeable = False  # shared by every search of the shape
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = layout
        while sum(table.nbytes for kept in _LAYOUTS.values() for table in kept) > TILE_BYTES_LIMIT:
            _LAYOUTS.popitem(last=False)
    return layout


OPEN_TILES_ENTRIES = 4
"""Open masks whose tile form (:func:`_numba_kernels.open_tiles`, 1 bit per vertex) is kept for the next BFS."""
_OPEN_TILES: collections.OrderedDict[int, tuple[weakref.ref[np.ndarray], np.ndarray]] = collections.OrderedDict()
_OPEN_TILES_LOCK = threading.Lock()


def _open_tiles(geom: Geometry, open_mask: np.ndarray, layout: tuple[np.ndarray, ...]) -> np.ndarray:
    """The mask in tile form, built once per mask while the mask lives (the last few masks only).

    A lattice keeps its materialised mask for every query; its tile form is kept beside it, keyed by the mask
    itself, so repeated searches on one lattice skip the repacking and a new lattice (a new mask) never finds
    another's. An entry goes when its mask is freed or when more recent masks push it out.
    """
    key = id(open_mask)
    with _OPEN_TILES_LOCK:
        entry = _OPEN_TILES.get(key)
        if entry is not None and entry[0]() is open_mask:
            _OPEN_TILES.move_to_end(key)
            return entry[1]
    opened: np.ndarray = _kernels().open_tiles(open_mask, geom.shape, layout)
    opened.flags.writeable = False

    def forget(_: object, key: int = key) -> None:
        with _OPEN_TILES_LOCK:
            held = _OPEN_TILES.get(key)
            if held is not None and held[0]() is None:
                del _OPEN_TILES[key]

    with _OPEN_TILES_LOCK:
        _OPEN_TILES[key] = (weakref.ref(open_mask, forget), opened)
        while len(_OPEN_TILES) > OPEN_TILES_ENTRIES:
            _OPEN_TILES.popitem(last=False)
    return opened


def tile_form_bytes(open_mask: Any) -> int:
    """Bytes of the tile form kept beside ``open_mask`` (0 when none is kept): what a lattice holds besides its
    mask once a BFS ran on it (:func:`catalytic.kernels.held_bytes` adds it)."""
    with _OPEN_TILES_LOCK:
        entry = _OPEN_TILES.get(id(open_mask))
        return int(entry[1].nbytes) if entry is not None and entry[0]() is open_mask else 0


def _kernels() -> Any:
    # Imported on first use so that `import catalytic` does not pay for numba.
    from catalytic.kernels import _numba_kernels

    return _numba_kernels


def _index_dtype(vertices: int) -> type[np.integer[Any]]:
    return np.int32 if vertices <= _INT32_LIMIT else np.int64


def _threads() -> int:
    # the frugal search splits wide levels over as many threads as numba's parallel kernels use
    import numba

    return int(numba.get_num_threads())


def _frame(geom: Geometry) -> tuple[np.ndarray, np.ndarray]:
    from catalytic.kernels import _numba_frugal

    log, tile_strides, _, _ = _numba_frugal.tile_frame(geom.shape)
    return log, tile_strides


def _words(state: Any, geom: Geometry) -> np.ndarray:
    """The frugal state as uint64 words, checked to be :meth:`NumbaBackend.frugal_state_size` of ``geom`` (a
    state sized for another lattice would be written past its end)."""
    from catalytic.kernels import _numba_frugal

    array = np.asarray(state)
    words = _numba_frugal.state_words(geom.shape)
    if array.dtype != np.uint64 or array.ndim != 1 or array.shape[0] != words or not array.flags.c_contiguous:
        raise InvalidInputError(
            "state",
            f"is {array.dtype} of shape {array.shape}, not {words} contiguous uint64 words",
            "an array of frugal_state_size(geom)",
        )
    return array


def _axes(geom: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(shape, strides, periodic)`` tuple every compiled kernel takes first."""
    return geom.shape, geom.strides, geom.periodic


def _generators(geom: Geometry) -> tuple[np.ndarray, ...]:
    explicit = _NO_MASK if geom.explicit_blocked is None else np.ascontiguousarray(geom.explicit_blocked)
    return (
        geom.shape,
        geom.strides,
        np.ascontiguousarray(geom.random_seeds, dtype=np.uint64),
        np.ascontiguousarray(geom.random_thresholds, dtype=np.uint64),
        np.ascontiguousarray(geom.box_lo, dtype=np.int64),
        np.ascontiguousarray(geom.box_hi, dtype=np.int64),
        explicit,
    )


@register_backend
class NumbaBackend(HostBackend):
    """Compiled CPU primitives (numba ``njit``, ``cache=True``, ``nogil=True``).

    The parameters mean what :class:`catalytic.kernels.backend.Backend` says; each method notes only how it
    runs. Masks, bit packing, the degree histogram and the labels split the lattice over numba's threads; the
    searches and path walks run on the calling thread.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> backend = NumbaBackend()
    >>> geom = Geometry.of(Lattice((3, 3)))
    >>> mask = backend.open_mask(geom)
    >>> dist = backend.full(9, -1, np.int32)
    >>> backend.bfs(geom, mask, np.array([0]), 8, dist), int(dist[8])
    (8, 4)
    """

    name = "numba"

    @classmethod
    def probe(cls) -> str | None:
        """None when numba imports, else the reason it does not."""
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            return f"numba cannot be imported: {exc}"
        return None

    # --- lattice ----------------------------------------------------------------------------------------

    def open_mask(self, geom: Geometry) -> np.ndarray:
        """The uint8 open mask (N,), materialised in parallel over chunks of the lattice (small ones serially).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> NumbaBackend().open_mask(Geometry.of(Lattice(3))).tolist()
        [1, 1, 1]
        """
        out = np.empty(geom.vertices, dtype=np.uint8)
        _kernels().open_mask(_generators(geom), out)
        return out

    def open_bits(self, geom: Geometry) -> np.ndarray:
        """The open mask packed 1 bit per vertex (padding bits past N are 0), in parallel (small lattices serially).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> NumbaBackend().open_bits(Geometry.of(Lattice(10))).tolist()
        [255, 3]
        """
        out = np.empty((geom.vertices + 7) // 8, dtype=np.uint8)
        _kernels().open_bits(_generators(geom), geom.vertices, out)
        return out

    def degree_histogram(self, geom: Geometry, open_mask: Any) -> np.ndarray:
        """int64 (2d + 1,): open vertices counted by their number of distinct open neighbours, in parallel.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 2)))
        >>> backend = NumbaBackend()
        >>> backend.degree_histogram(geom, backend.open_mask(geom)).tolist()
        [0, 0, 4, 0, 0]
        """
        result: np.ndarray = _kernels().degree_histogram(_axes(geom), open_mask)
        return result

    # --- searches ---------------------------------------------------------------------------------------

    def bfs(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any) -> int:
        """Multi-source whole-level BFS on bit sets: of the whole lattice where that is estimated faster
        (:func:`catalytic.kernels._numba_levels.whole_levels_pay`: many short axes), else of 64-vertex tiles
        (over a vertex queue past the tile limit).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice(5))
        >>> backend = NumbaBackend()
        >>> dist = backend.full(5, -1, np.int32)
        >>> backend.bfs(geom, backend.open_mask(geom), np.array([2]), -1, dist), dist.tolist()
        (5, [2, 1, 0, 1, 2])
        """
        from catalytic.kernels import _numba_levels

        seeds = np.ascontiguousarray(sources, dtype=np.int64)
        counts = meter()
        axes = _axes(geom)
        if _numba_levels.whole_levels_pay(tuple(geom.shape.tolist()), tuple(bool(p) for p in geom.periodic)):
            mask = np.ascontiguousarray(open_mask).view(np.uint8)
            return int(_numba_levels.bfs_levels(axes, mask, seeds, int(target), dist, counts.counts))
        layout = _tiles(geom)
        if layout is None:
            queue = np.empty(geom.vertices, dtype=_index_dtype(geom.vertices))
            counts.allocated(queue.nbytes)
            expanded = _kernels().bfs(axes, open_mask, seeds, int(target), dist, queue, counts.counts)
        else:
            opened = _open_tiles(geom, np.ascontiguousarray(open_mask), layout)
            # the tile tables and the mask's tile form are kept, but they are held for the search like its bit sets
            counts.allocated(sum(int(table.nbytes) for table in layout) + opened.nbytes)
            expanded = _kernels().bfs_tiles(axes, opened, seeds, int(target), dist, layout, counts.counts)
        return int(expanded)

    def lower_from_seeds(
        self, geom: Geometry, open_mask: Any, seeds: np.ndarray, depths: np.ndarray, steps: np.ndarray
    ) -> int | None:
        """Lower int32 BFS ``steps`` (−1 unreached) from seeds that start at their own depths, on tiles.

        Runs the levels of :meth:`bfs` in depth order from the smallest depth: a seed joins the frontier at its
        depth when ``steps`` still holds that depth there, and a vertex reached at depth ``d`` takes ``d`` when
        its entry is −1 or larger; a vertex reached and not taken is not expanded. Where the finite entries are
        upper bounds that their neighbours' entries already follow (as in a slab's field), each open vertex ends
        at the smaller of its old value and its depth through the seeds.

        Parameters
        ----------
        geom : Geometry
            The lattice.
        open_mask : numpy.ndarray
            uint8 (N,), 1 where open.
        seeds : numpy.ndarray
            int64 linear indices of open vertices, ordered by ``depths``.
        depths : numpy.ndarray
            int64 start depth of each seed, non-decreasing.
        steps : numpy.ndarray
            int32 (N,), changed in place.

        Returns
        -------
        int or None
            The vertices expanded (seeds that joined and vertices lowered), or None without touching ``steps``
            when the lattice is past the tile limit (:data:`TILE_BYTES_LIMIT`).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice(5))
        >>> steps = np.array([-1, 5, -1, 0, 9], dtype=np.int32)
        >>> NumbaBackend().lower_from_seeds(geom, np.ones(5, np.uint8), np.array([3, 1]), np.array([0, 5]), steps)
        5
        >>> steps.tolist()
        [3, 2, 1, 0, 1]
        """
        layout = _tiles(geom)
        if layout is None:
            return None
        opened = _open_tiles(geom, np.ascontiguousarray(open_mask), layout)
        order = np.ascontiguousarray(seeds, dtype=np.int64)
        start = np.ascontiguousarray(depths, dtype=np.int64)
        return int(_kernels().lower_tiles(_axes(geom), opened, order, start, steps, layout))

    def bidirectional(
        self, geom: Geometry, open_mask: Any, start: int, goal: int, dist_start: Any, dist_goal: Any
    ) -> tuple[int, int, int]:
        """Bidirectional whole-level BFS over two queues, expanding the smaller frontier (the start side on ties).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((3, 3)))
        >>> backend = NumbaBackend()
        >>> ds, dg = backend.full(9, -1, np.int32), backend.full(9, -1, np.int32)
        >>> backend.bidirectional(geom, backend.open_mask(geom), 0, 8, ds, dg)
        (4, 2, 6)
        """
        dtype = _index_dtype(geom.vertices)
        queue_start = np.empty(geom.vertices, dtype=dtype)
        queue_goal = np.empty(geom.vertices, dtype=dtype)
        counts = meter()
        counts.allocated(queue_start.nbytes + queue_goal.nbytes)
        length, meet, expanded = _kernels().bidirectional(
            _axes(geom), open_mask, int(start), int(goal), dist_start, dist_goal,
            queue_start, queue_goal, counts.counts,
        )  # fmt: skip
        return int(length), int(meet), int(expanded)

    def dijkstra(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any, astar: bool) -> int:
        """Dijkstra, or A* towards ``target``, over a binary heap keyed ``(f, h, index)``.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((3, 3)))
        >>> backend = NumbaBackend()
        >>> dist = backend.full(9, np.inf, np.float64)
        >>> backend.dijkstra(geom, backend.open_mask(geom), np.array([0]), 8, dist, True), float(dist[8])
        (5, 4.0)
        """
        return self.dijkstra_written(geom, open_mask, sources, target, dist, astar)[0]

    def dijkstra_written(
        self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any, astar: bool
    ) -> tuple[int, np.ndarray]:
        """:meth:`dijkstra` plus the indices whose distance it wrote, each once (see :class:`Backend`)."""
        weights = _NO_WEIGHTS if geom.weights is None else geom.weights
        seeds = np.ascontiguousarray(sources, dtype=np.int64)
        expanded, written = _kernels().dijkstra(
            _axes(geom), open_mask, weights, seeds, int(target), dist, bool(astar),
            float(geom.min_weight), meter().counts,
        )  # fmt: skip
        return int(expanded), written

    def trace_path(
        self, geom: Geometry, open_mask: Any, dist: Any, root: int, vertex: int, within: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The canonical path ``[vertex, ..., root]`` (int32 steps or float64 costs), walked in compiled code.

        Raises
        ------
        InvalidInputError
            When ``dist`` has no predecessor chain from ``vertex`` to ``root``.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 2)))
        >>> backend = NumbaBackend()
        >>> mask = backend.open_mask(geom)
        >>> dist = backend.full(4, -1, np.int32)
        >>> _ = backend.bfs(geom, mask, np.array([0]), -1, dist)
        >>> backend.trace_path(geom, mask, dist, 0, 3).tolist()
        [3, 1, 0]
        """
        weights = _NO_WEIGHTS
        if geom.weights is not None and np.asarray(dist).dtype.kind == "f":
            weights = geom.weights
        lo, hi = (0, geom.vertices) if within is None else within
        path: np.ndarray = _kernels().trace_path(
            _axes(geom), open_mask, dist, weights, int(root), int(vertex), int(lo), int(hi)
        )
        if path.shape[0] == 0:
            raise InvalidInputError(
                "dist", f"no predecessor chain from vertex {vertex} to root {root}", "a distance field rooted at root"
            )
        return path

    # --- frugal (3 bits per vertex, on tiles) ---------------------------------------------------------------

    def frugal_state_size(self, geom: Geometry) -> tuple[int, Any]:
        """uint64 words, three per 64-vertex tile (open bits and two code bits a vertex; see the module notes).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> NumbaBackend().frugal_state_size(Geometry.of(Lattice((8, 8, 3))))
        (12, dtype('uint64'))
        """
        from catalytic.kernels import _numba_frugal

        return _numba_frugal.state_words(geom.shape), np.dtype(np.uint64)

    def frugal_depths(self, geom: Geometry, state: Any) -> np.ndarray:
        """Each vertex's code read back from the tiles, in index order (uint8 (N,)).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom, backend = Geometry.of(Lattice((3, 2))), NumbaBackend()
        >>> state = backend.full(*backend.frugal_state_size(geom)[:1], 0, np.uint64)
        >>> backend.bfs_frugal(geom, backend.open_bits(geom), 0, 5, state), backend.frugal_depths(geom, state).tolist()
        ((3, 5), [1, 2, 2, 3, 3, 1])
        """
        from catalytic.kernels import _numba_frugal

        out = np.empty(geom.vertices, dtype=np.uint8)
        _numba_frugal.depth_codes(geom.shape, _words(state, geom), _frame(geom), out)
        return out

    def bfs_frugal(self, geom: Geometry, open_bits: Any, start: int, goal: int, state: Any) -> tuple[int, int]:
        """Frugal BFS on 64-vertex tiles, each wide level split over threads (see the module notes).

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((4, 4)))
        >>> backend = NumbaBackend()
        >>> size, dtype = backend.frugal_state_size(geom)
        >>> backend.bfs_frugal(geom, backend.open_bits(geom), 0, 15, backend.full(size, 0, dtype))
        (6, 15)
        """
        from catalytic.kernels import _numba_frugal

        if np.asarray(open_bits).shape != ((geom.vertices + 7) // 8,):
            raise InvalidInputError("open_bits", f"has shape {np.asarray(open_bits).shape}", "open_bits(geom)")
        length, expanded = _numba_frugal.bfs_frugal(
            _axes(geom), open_bits, _words(state, geom), int(start), int(goal), _threads(), meter().counts
        )
        return int(length), int(expanded)

    def trace_path_frugal(
        self, geom: Geometry, open_bits: Any, state: Any, start: int, goal: int, length: int
    ) -> np.ndarray:
        """The canonical path ``[goal, ..., start]`` from the state of :meth:`bfs_frugal`, walked in compiled code.

        Equal to :meth:`trace_path` on the full BFS distances.

        Raises
        ------
        InvalidInputError
            When ``length`` is negative or ``state`` holds no path of ``length`` steps from ``start`` to ``goal``.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice((2, 2)))
        >>> backend = NumbaBackend()
        >>> bits = backend.open_bits(geom)
        >>> size, dtype = backend.frugal_state_size(geom)
        >>> state = backend.full(size, 0, dtype)
        >>> length, _ = backend.bfs_frugal(geom, bits, 0, 3, state)
        >>> backend.trace_path_frugal(geom, bits, state, 0, 3, length).tolist()
        [3, 1, 0]
        """
        from catalytic.kernels import _numba_frugal

        if length < 0:
            raise InvalidInputError("length", f"{length} is negative", "the length of a found path, >= 0")
        path: np.ndarray = _numba_frugal.trace_path(
            _axes(geom), _words(state, geom), _frame(geom), int(start), int(goal), int(length)
        )
        if path.shape[0] == 0:
            raise InvalidInputError(
                "state", f"holds no path of {length} steps from {start} to {goal}", "the state left by bfs_frugal"
            )
        return path

    # --- structure --------------------------------------------------------------------------------------

    def label(self, geom: Geometry, open_mask: Any) -> tuple[np.ndarray, int]:
        """Component labels numbered 1..count by lowest linear index, slabs of axis 0 labelled in parallel.

        Lines along the last axis are read from the mask packed 1 bit per vertex (N / 8 bytes of scratch) as
        runs of open vertices, and each run is joined to the runs it touches on the lines before it.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> geom = Geometry.of(Lattice(5, blocked=np.array([False, False, True, False, False])))
        >>> backend = NumbaBackend()
        >>> labels, count = backend.label(geom, backend.open_mask(geom))
        >>> labels.tolist(), count
        ([1, 1, 0, 2, 2], 2)
        """
        dtype = _index_dtype(geom.vertices)
        out = np.empty(geom.vertices, dtype=dtype)
        parent = np.empty(geom.vertices, dtype=dtype)
        counts = meter().counts
        counts[PROGRESS_TOTAL] = 3 * geom.vertices  # the slabs, the join and the numbering
        mask = np.ascontiguousarray(open_mask)  # read 8 bytes at a time when packed
        count = _kernels().label(_axes(geom), mask, out, parent, _threads(), counts)
        return out, int(count)
