"""The lattice model: shape, periodic axes, obstacles, weights, index <-> coordinates, specs.

A lattice is implicit: vertex ``i`` has coordinates ``np.unravel_index(i, shape)`` (C order, last axis
fastest) and its neighbours are ``i ± stride[k]`` along every axis ``k`` (face adjacency, ``2·d``
neighbours, fewer at open borders, wrapping on periodic axes). Nothing but the obstacle mask and the
optional weights is ever stored, and procedural obstacles are not stored at all.

Procedural random obstacles
---------------------------
``{"kind": "random", "p": p, "seed": s}`` blocks vertex ``i`` iff ``splitmix64(s, i) >> 11 < floor(p · 2^53)``
where ``splitmix64(s, i)`` is the ``i``-th output (counting from 0) of the SplitMix64 generator seeded
with ``s``::

    z = (s + (i + 1) · 0x9E3779B97F4A7C15)       mod 2^64
    z = (z ^ (z >> 30)) · 0xBF58476D1CE4E5B9      mod 2^64
    z = (z ^ (z >> 27)) · 0x94D049BB133111EB      mod 2^64
    z =  z ^ (z >> 31)

The hash needs only the seed and the linear index, so every backend, replica and worker rebuilds exactly
the same mask from the spec alone. ``p = 0`` blocks nothing and ``p = 1`` blocks everything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xxhash

from catalytic.errors import (
    BlockedVertexError,
    CoordinateError,
    InvalidTypeError,
    MaskError,
    ObstacleError,
    ShapeError,
    SpecError,
    VertexBudgetError,
    WeightsError,
)

__all__ = [
    "DEFAULT_MAX_VERTICES",
    "MAX_AXES",
    "SPEC_VERSION",
    "Lattice",
    "array_digest",
    "check_weight_stats",
    "materialise_open",
    "obstacle_generators",
    "random_blocked",
    "splitmix64",
]

MAX_AXES = 10
SPEC_VERSION = 1
DEFAULT_MAX_VERTICES = 2**31
"""Vertex budget for lattices whose state is kept in dense arrays; ``CATALYTIC_MAX_VERTICES`` overrides it."""

SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX_MUL2 = np.uint64(0x94D049BB133111EB)
UINT64_MAX = 2**64 - 1
_CHUNK = 1 << 22


def _max_vertices_default() -> int:
    raw = os.environ.get("CATALYTIC_MAX_VERTICES")
    if raw is None:
        return DEFAULT_MAX_VERTICES
    try:
        value = int(raw)
    except ValueError:
        raise ShapeError("CATALYTIC_MAX_VERTICES", f"{raw!r} is not an integer", "an integer >= 1") from None
    if value < 1:
        raise ShapeError("CATALYTIC_MAX_VERTICES", f"{value} is too small", "an integer >= 1")
    return value


def splitmix64(seed: int, index: np.ndarray) -> np.ndarray:
    """The ``index``-th SplitMix64 output for ``seed``, vectorised over ``index`` (uint64 array)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (index.astype(np.uint64) + np.uint64(1)) * SPLITMIX_GAMMA
        z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MUL1
        z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MUL2
        return z ^ (z >> np.uint64(31))


def _splitmix64_scalar(seed: int, index: int) -> int:
    """:func:`splitmix64` for one index in Python integers (no array round trip for single lookups)."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & UINT64_MAX
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & UINT64_MAX
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & UINT64_MAX
    return z ^ (z >> 31)


def random_threshold(p: float) -> int:
    """The 53-bit threshold of a random obstacle generator: ``floor(p · 2^53)``."""
    return math.floor(p * 2.0**53)


def random_blocked(seed: int, p: float, start: int, stop: int) -> np.ndarray:
    """Blocked flags of the random generator ``(seed, p)`` for linear indices ``start .. stop - 1``."""
    index = np.arange(start, stop, dtype=np.uint64)
    return _hash_blocked(seed, random_threshold(p), index)


def _hash_blocked(seed: int, threshold: int, index: np.ndarray) -> np.ndarray:
    return (splitmix64(seed, index) >> np.uint64(11)) < np.uint64(threshold)


Generators = tuple[list[tuple[int, int]], list[tuple[list[int], list[int]]]]
"""Random generators as ``(seed, threshold)`` and boxes as inclusive ``(lo, hi)`` corners."""


def obstacle_generators(obstacles: Iterable[Mapping[str, Any]]) -> Generators:
    """Split normalised obstacles into random generators ``(seed, threshold)`` and boxes ``(lo, hi)``.

    Generators with ``p = 0`` block nothing and are left out.

    Examples
    --------
    >>> obstacle_generators([{"kind": "random", "p": 0.5, "seed": 3}, {"kind": "box", "lo": [0], "hi": [1]}])
    ([(3, 4503599627370496)], [([0], [1])])
    """
    randoms = [(int(o["seed"]), random_threshold(o["p"])) for o in obstacles if o["kind"] == "random" and o["p"] > 0]
    boxes = [(list(o["lo"]), list(o["hi"])) for o in obstacles if o["kind"] == "box"]
    return randoms, boxes


def materialise_open(
    shape: Sequence[int],
    generators: Generators,
    explicit: np.ndarray | None = None,
    rows: Sequence[int] | None = None,
) -> np.ndarray:
    """The open flags of rows ``rows`` of axis 0 of a lattice: the one NumPy materialisation of a mask.

    Every NumPy mask (:meth:`Lattice.open_mask`, the ``numpy`` backend, a slab of a partitioned lattice) is
    built here, so they cannot drift apart.

    Parameters
    ----------
    shape : sequence of int
        The whole lattice's shape.
    generators : tuple
        ``(randoms, boxes)`` from :func:`obstacle_generators`; random obstacles hash GLOBAL linear indices.
    explicit : numpy.ndarray, optional
        Explicitly blocked flags of the rows materialised (any shape with that many entries).
    rows : sequence of int, optional
        Global rows of axis 0, in the order wanted (a slab with its halo rows); every row when None.

    Returns
    -------
    numpy.ndarray
        bool ``(len(rows), *shape[1:])``, True where open.

    Examples
    --------
    >>> box = obstacle_generators([{"kind": "box", "lo": [1, 0], "hi": [1, 1]}])
    >>> materialise_open((3, 2), box, rows=[2, 1]).tolist()
    [[True, True], [False, False]]
    """
    randoms, boxes = generators
    row_size = math.prod(shape[1:])
    picked = np.arange(shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    blocked = np.zeros((picked.size, *shape[1:]), dtype=np.bool_)
    flat = blocked.reshape(-1)
    if randoms and picked.size:
        at = 0
        # a run of consecutive rows is a run of consecutive indices, hashed in chunks
        for run in np.split(picked, np.flatnonzero(np.diff(picked) != 1) + 1):
            first, count = int(run[0]) * row_size, run.size * row_size
            for start in range(0, count, _CHUNK):
                stop = min(start + _CHUNK, count)
                index = np.arange(first + start, first + stop, dtype=np.uint64)
                for seed, threshold in randoms:
                    flat[at + start : at + stop] |= _hash_blocked(seed, threshold, index)
            at += count
    for lo, hi in boxes:
        window: tuple[Any, ...] = ((picked >= lo[0]) & (picked <= hi[0]),)
        window += tuple(slice(a, b + 1) for a, b in zip(lo[1:], hi[1:], strict=True))
        blocked[window] = True
    if explicit is not None:
        flat |= np.asarray(explicit, dtype=np.bool_).reshape(-1)
    return ~blocked


def array_digest(array: np.ndarray) -> str:
    """Content digest (xxh3-128) of a mask or weights array, independent of memory layout."""
    if array.dtype == np.bool_:
        payload = np.packbits(np.ascontiguousarray(array).ravel(), bitorder="little").tobytes()
        kind = "bool"
    else:
        payload = np.ascontiguousarray(array, dtype="<f8").tobytes()
        kind = "f8"
    shape = ",".join(str(n) for n in array.shape)
    return "xxh3_128:" + xxhash.xxh3_128_hexdigest(f"{kind}:{shape}:".encode() + payload)


def check_weight_stats(
    minimum: float, maximum: float, vertices: int, *, nan: bool = False, infinite: bool = False, allowed: str = ""
) -> None:
    """Refuse weights by their summary: NaN, infinite, not positive, or too wide a spread for exact path sums.

    One rule for weights given whole (:class:`Lattice`) and for those summarised as they were uploaded.

    Raises
    ------
    WeightsError
        Naming ``weights`` and ``allowed``.

    Examples
    --------
    >>> check_weight_stats(0.5, 4.0, 100)
    """
    if nan:
        raise WeightsError("weights", "contains NaN", allowed)
    if infinite:
        raise WeightsError("weights", "contains an infinite value", allowed)
    if minimum <= 0:
        raise WeightsError("weights", f"contains a value <= 0 (minimum {minimum!r})", allowed)
    # Path costs are sums of weights compared exactly when a path is rebuilt; they stay exact only while
    # no sum overflows and no weight vanishes next to a sum of the largest ones (float64 keeps 53 bits).
    spread = maximum / minimum * vertices
    if not math.isfinite(maximum * vertices) or spread >= 2.0**53:
        raise WeightsError(
            "weights",
            f"max/min ratio {maximum / minimum:.3g} over {vertices} vertices "
            "lets path sums overflow or lose the smallest weights",
            "max(weights) / min(weights) × vertices < 2^53, and max(weights) × vertices finite",
        )


def _read_only(array: np.ndarray) -> np.ndarray:
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def _as_int(value: Any, field: str, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidTypeError(field, f"{value!r} is not an integer", allowed)
    return int(value)


def _normalise_shape(shape: Any) -> tuple[int, ...]:
    allowed = f"1 to {MAX_AXES} axes, each an integer >= 1"
    if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, str | bytes) or not isinstance(shape, Iterable):
        raise InvalidTypeError("shape", f"{shape!r} is not a sequence of integers", allowed)
    axes = list(shape)
    if not 1 <= len(axes) <= MAX_AXES:
        raise ShapeError("shape", f"{len(axes)} axes given", allowed)
    out = []
    for k, n in enumerate(axes):
        value = _as_int(n, f"shape[{k}]", allowed)
        if value < 1:
            raise ShapeError(f"shape[{k}]", f"axis length {value} is not positive", allowed)
        out.append(value)
    return tuple(out)


def _normalise_periodic(periodic: Any, ndim: int) -> tuple[bool, ...]:
    allowed = f"a bool, or a list of {ndim} bools"
    if isinstance(periodic, bool | np.bool_):
        return (bool(periodic),) * ndim
    if isinstance(periodic, str | bytes) or not isinstance(periodic, Iterable):
        raise InvalidTypeError("periodic", f"{periodic!r} is neither a bool nor a list of bools", allowed)
    flags = list(periodic)
    if len(flags) != ndim:
        raise ShapeError("periodic", f"{len(flags)} flags for {ndim} axes", allowed)
    for k, flag in enumerate(flags):
        if not isinstance(flag, bool | np.bool_):
            raise InvalidTypeError(f"periodic[{k}]", f"{flag!r} is not a bool", allowed)
    return tuple(bool(f) for f in flags)


def _normalise_obstacle(item: Any, position: int, shape: tuple[int, ...]) -> dict[str, Any]:
    field = f"obstacles[{position}]"
    if not isinstance(item, Mapping):
        raise InvalidTypeError(field, f"{item!r} is not an object", '{"kind": "random" | "box", ...}')
    kind = item.get("kind")
    if kind == "random":
        extra = set(item) - {"kind", "p", "seed"}
        if extra:
            raise ObstacleError(field, f"unknown keys {sorted(extra)}", "kind, p, seed")
        p = item.get("p")
        if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating):
            raise InvalidTypeError(f"{field}.p", f"{p!r} is not a number", "a number in [0, 1]")
        p = float(p)
        if not 0.0 <= p <= 1.0:  # also refuses NaN
            raise ObstacleError(f"{field}.p", f"{p!r} is outside [0, 1]", "a number in [0, 1]")
        seed = _as_int(item.get("seed", 0), f"{field}.seed", f"an integer in [0, {UINT64_MAX}]")
        if not 0 <= seed <= UINT64_MAX:
            raise ObstacleError(f"{field}.seed", f"{seed} is out of range", f"an integer in [0, {UINT64_MAX}]")
        return {"kind": "random", "p": p, "seed": seed}
    if kind == "box":
        extra = set(item) - {"kind", "lo", "hi"}
        if extra:
            raise ObstacleError(field, f"unknown keys {sorted(extra)}", "kind, lo, hi")
        bounds = {}
        for name in ("lo", "hi"):
            allowed = f"{len(shape)} integers with 0 <= lo[k] <= hi[k] < shape[k]"
            raw = item.get(name)
            if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
                raise InvalidTypeError(f"{field}.{name}", f"{raw!r} is not a list of integers", allowed)
            values = [_as_int(v, f"{field}.{name}[{k}]", allowed) for k, v in enumerate(raw)]
            if len(values) != len(shape):
                raise ObstacleError(f"{field}.{name}", f"{len(values)} values for {len(shape)} axes", allowed)
            for k, (v, n) in enumerate(zip(values, shape, strict=True)):
                if not 0 <= v < n:
                    raise ObstacleError(f"{field}.{name}[{k}]", f"{v} is outside the lattice", f"0 to {n - 1}")
            bounds[name] = values
        for k, (lo, hi) in enumerate(zip(bounds["lo"], bounds["hi"], strict=True)):
            if lo > hi:
                raise ObstacleError(f"{field}.lo[{k}]", f"lo {lo} exceeds hi {hi}", "lo[k] <= hi[k]")
        return {"kind": "box", "lo": bounds["lo"], "hi": bounds["hi"]}
    raise ObstacleError(f"{field}.kind", f"unknown kind {kind!r}", '"random" or "box"')


class Lattice:
    """A d-dimensional grid graph with implicit face-adjacent neighbours.

    Parameters
    ----------
    shape : sequence of int
        Axis lengths, 1 to 10 axes, each >= 1 (a bare int means one axis).
    periodic : bool or sequence of bool
        Torus wrap, for all axes or per axis.
    blocked : numpy.ndarray of bool, optional
        Explicit obstacle mask of the lattice's shape.
    weights : numpy.ndarray, optional
        Positive finite cost of *entering* each vertex. A path costs the sum over its vertices except the start.
    obstacles : sequence of dict, optional
        Procedural obstacle generators, ``{"kind": "random", "p", "seed"}`` or ``{"kind": "box", "lo", "hi"}``
        (inclusive bounds); they combine with each other and with ``blocked``.
    max_vertices : int, optional
        Vertex budget; defaults to ``CATALYTIC_MAX_VERTICES`` or 2**31.
    uploaded : mapping of str to str, optional
        ``{"blocked" | "weights": "sha256:<hex>"}``: explicit arrays uploaded to the service and checked there
        as they arrived (a bool mask; C-order float64 weights). Such an array is kept as given, typically a
        read-only memory map, never copied or scanned here, and the spec names it by this digest.

    Raises
    ------
    InvalidInputError
        A subclass naming the field and the allowed range for any out-of-range value.
    InvalidTypeError
        For a field of the wrong type.

    Examples
    --------
    >>> lat = Lattice((4, 5), periodic=[True, False], obstacles=[{"kind": "box", "lo": [1, 1], "hi": [2, 3]}])
    >>> lat.vertices, lat.open_vertices
    (20, 14)
    """

    __slots__ = (
        "__weakref__",
        "_digest",
        "_open_mask",
        "_spec",
        "blocked",
        "max_vertices",
        "ndim",
        "obstacles",
        "periodic",
        "shape",
        "strides",
        "uploaded",
        "vertices",
        "weights",
    )

    def __init__(
        self,
        shape: Sequence[int] | int,
        periodic: bool | Sequence[bool] = False,
        blocked: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        obstacles: Sequence[Mapping[str, Any]] | None = None,
        *,
        max_vertices: int | None = None,
        uploaded: Mapping[str, str] | None = None,
    ) -> None:
        self.shape = _normalise_shape(shape)
        self.ndim = len(self.shape)
        if max_vertices is None:
            self.max_vertices = _max_vertices_default()
        else:
            self.max_vertices = _as_int(max_vertices, "max_vertices", "an integer >= 1")
            if self.max_vertices < 1:
                raise ShapeError("max_vertices", f"{self.max_vertices} is too small", "an integer >= 1")
        self.vertices = math.prod(self.shape)
        if self.vertices > self.max_vertices:
            raise VertexBudgetError(
                "shape",
                f"{self.vertices} vertices exceed the vertex budget",
                f"at most {self.max_vertices} vertices",
            )
        self.periodic = _normalise_periodic(periodic, self.ndim)
        strides = [1] * self.ndim
        for k in range(self.ndim - 2, -1, -1):
            strides[k] = strides[k + 1] * self.shape[k + 1]
        self.strides = tuple(strides)
        if obstacles is None:
            obstacles = []
        if isinstance(obstacles, Mapping) or not isinstance(obstacles, Iterable):
            raise InvalidTypeError("obstacles", f"{obstacles!r} is not a list", "a list of obstacle objects")
        self.obstacles = tuple(_normalise_obstacle(o, i, self.shape) for i, o in enumerate(obstacles))
        self.uploaded = dict(uploaded or {})
        unknown = set(self.uploaded) - {"blocked", "weights"}
        if unknown:
            raise SpecError("uploaded", f"unknown arrays {sorted(unknown)}", "blocked, weights")
        self.blocked = self._check_blocked(blocked)
        self.weights = self._check_weights(weights)
        self._open_mask: np.ndarray | None = None
        self._spec: dict[str, Any] | None = None
        self._digest: str | None = None

    def _check_blocked(self, blocked: np.ndarray | None) -> np.ndarray | None:
        if blocked is None:
            return None
        allowed = f"a bool array of shape {list(self.shape)}"
        if not isinstance(blocked, np.ndarray):
            raise InvalidTypeError("blocked", f"{type(blocked).__name__} is not a numpy array", allowed)
        if blocked.dtype != np.bool_:
            raise MaskError("blocked", f"dtype {blocked.dtype} is not bool", allowed)
        if blocked.shape != self.shape:
            raise MaskError("blocked", f"shape {list(blocked.shape)} does not match the lattice", allowed)
        if "blocked" in self.uploaded:
            if not blocked.flags.c_contiguous:
                raise MaskError("blocked", "the uploaded mask is not in C order", allowed)
            return _read_only(blocked)
        mask = np.ascontiguousarray(blocked).copy()
        mask.flags.writeable = False
        return mask

    def _check_weights(self, weights: np.ndarray | None) -> np.ndarray | None:
        if weights is None:
            return None
        allowed = f"a real array of shape {list(self.shape)}, every value finite and > 0"
        if not isinstance(weights, np.ndarray):
            raise InvalidTypeError("weights", f"{type(weights).__name__} is not a numpy array", allowed)
        if weights.dtype == np.bool_ or weights.dtype.kind not in "iuf":
            raise WeightsError("weights", f"dtype {weights.dtype} is not a real number type", allowed)
        if weights.shape != self.shape:
            raise WeightsError("weights", f"shape {list(weights.shape)} does not match the lattice", allowed)
        if "weights" in self.uploaded:
            if weights.dtype != np.dtype("<f8") or not weights.flags.c_contiguous:
                raise WeightsError("weights", f"uploaded dtype {weights.dtype} is not C-order float64", allowed)
            return _read_only(weights)
        values = np.ascontiguousarray(weights, dtype=np.float64).copy()
        nan, infinite = bool(np.isnan(values).any()), bool(np.isinf(values).any())
        finite = not (nan or infinite)
        minimum = float(values.min()) if finite else 0.0
        maximum = float(values.max()) if finite else 0.0
        check_weight_stats(minimum, maximum, self.vertices, nan=nan, infinite=infinite, allowed=allowed)
        values.flags.writeable = False
        return values

    # --- geometry -----------------------------------------------------------------------------------

    @property
    def weighted(self) -> bool:
        """Whether the lattice carries per-vertex weights."""
        return self.weights is not None

    @property
    def min_weight(self) -> float:
        """The smallest vertex weight (1.0 when unweighted); scales the A* heuristic."""
        return 1.0 if self.weights is None else float(self.weights.min())

    @property
    def has_obstacles(self) -> bool:
        """Whether any vertex may be blocked (explicit mask or generators)."""
        return self.blocked is not None or bool(self.obstacles)

    def index_of(self, coords: Any, field: str = "coords") -> np.ndarray:
        """Linear indices (int64) of coordinates ``(..., d)``, vectorised; validates ranges."""
        array = self._coords_array(coords, field)
        return (array * np.asarray(self.strides, dtype=np.int64)).sum(axis=-1)

    def coords_of(self, index: Any) -> np.ndarray:
        """Coordinates ``(..., d)`` (int64) of linear indices, vectorised."""
        raw = np.asarray(index)
        if raw.dtype == np.bool_ or raw.dtype.kind not in "iu":
            raise InvalidTypeError("index", f"{index!r} is not an integer index", f"integers 0 to {self.vertices - 1}")
        idx = raw.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.vertices):
            raise CoordinateError("index", "out of range", f"0 to {self.vertices - 1}")
        return (idx[..., np.newaxis] // np.asarray(self.strides, dtype=np.int64)) % np.asarray(
            self.shape, dtype=np.int64
        )

    def _plain_index(self, coords: Any) -> int | None:
        # One coordinate of in-range Python ints (what a JSON body holds): its index without building arrays.
        if type(coords) not in (list, tuple) or len(coords) != self.ndim:
            return None
        index = 0
        for c, n, stride in zip(coords, self.shape, self.strides, strict=True):
            if type(c) is not int or not 0 <= c < n:
                return None
            index += c * stride
        return index

    def _coords_array(self, coords: Any, field: str) -> np.ndarray:
        allowed = f"{self.ndim} integers with 0 <= c[k] < shape[k] = {list(self.shape)}"
        # The common case, one coordinate of Python ints, is checked without building arrays first.
        if (
            isinstance(coords, tuple | list)
            and len(coords) == self.ndim
            and all(type(c) is int and 0 <= c < n for c, n in zip(coords, self.shape, strict=True))
        ):
            return np.asarray(coords, dtype=np.int64)
        try:
            array = np.asarray(coords)
        except (TypeError, ValueError):
            raise InvalidTypeError(field, f"{coords!r} is not a list of integers", allowed) from None
        if array.dtype == np.bool_ or array.dtype.kind not in "iu":
            if array.size == 0 and array.dtype.kind == "f":
                array = array.astype(np.int64)
            else:
                raise InvalidTypeError(field, f"{coords!r} is not a list of integers", allowed)
        if array.ndim == 0 or array.shape[-1] != self.ndim:
            got = 1 if array.ndim == 0 else array.shape[-1]
            raise CoordinateError(field, f"{got} coordinates for a {self.ndim}-axis lattice", allowed)
        array = array.astype(np.int64)
        bad = (array < 0) | (array >= np.asarray(self.shape, dtype=np.int64))
        if bad.any():
            raise CoordinateError(field, f"{np.asarray(coords).tolist()} lies outside the lattice", allowed)
        return array

    def is_open(self, index: int) -> bool:
        """Whether one vertex is open, computed from the generators without materialising the whole mask."""
        if self._open_mask is not None:
            return bool(self._open_mask[index])
        if self.blocked is not None and self.blocked.ravel()[index]:
            return False
        coords = np.unravel_index(index, self.shape)
        for obstacle in self.obstacles:
            if obstacle["kind"] == "random" and obstacle["p"] > 0:
                if _splitmix64_scalar(obstacle["seed"], index) >> 11 < random_threshold(obstacle["p"]):
                    return False
            elif obstacle["kind"] == "box" and all(
                lo <= c <= hi for c, lo, hi in zip(coords, obstacle["lo"], obstacle["hi"], strict=True)
            ):
                return False
        return True

    def check_vertex(self, coords: Any, field: str) -> int:
        """Validate one open vertex and return its linear index."""
        index = self._plain_index(coords)
        if index is not None:
            if not self.is_open(index):
                raise BlockedVertexError(field, f"{list(coords)} is blocked", "an open vertex")
            return index
        array = self._coords_array(coords, field)
        if array.ndim != 1:
            raise CoordinateError(field, "expected one coordinate, not a list of them", f"{self.ndim} integers")
        index = sum(int(c) * stride for c, stride in zip(array.tolist(), self.strides, strict=True))
        if not self.is_open(index):
            raise BlockedVertexError(field, f"{list(np.asarray(coords).tolist())} is blocked", "an open vertex")
        return index

    def open_mask(self) -> np.ndarray:
        """Boolean array of the lattice's shape, True where a vertex is open (the reference materialisation)."""
        return self.open_mask_flat().reshape(self.shape)

    def open_mask_flat(self) -> np.ndarray:
        """Flat read-only boolean open mask, computed once and cached."""
        if self._open_mask is None:
            self._open_mask = self._materialise_open()
        return self._open_mask

    def _materialise_open(self) -> np.ndarray:
        open_flat = materialise_open(self.shape, obstacle_generators(self.obstacles), self.blocked).reshape(-1)
        open_flat.flags.writeable = False
        return open_flat

    @property
    def open_vertices(self) -> int:
        """Number of open (unblocked) vertices."""
        return int(np.count_nonzero(self.open_mask_flat()))

    def neighbours(self, index: int) -> list[int]:
        """Distinct neighbours of a vertex (open or not), in the canonical order: axis 0 −, axis 0 +, axis 1 −, …

        Duplicates (a periodic axis of length 2) and the vertex itself (a periodic axis of length 1) are
        left out. This is the slow reference used by tests and tools; kernels compute neighbours inline.
        """
        coords = self.coords_of(index).tolist()
        out: list[int] = []
        for k, n in enumerate(self.shape):
            for step in (-1, 1):
                c = coords[k] + step
                if not 0 <= c < n:
                    if not self.periodic[k]:
                        continue
                    c %= n
                j = index + (c - coords[k]) * self.strides[k]
                if j != index and j not in out:
                    out.append(j)
        return out

    def memory_report(self) -> dict[str, Any]:
        """Bytes this lattice actually holds, set against igraph, CSR and dense-bitmap baselines."""
        from catalytic.memory import lattice_memory_report  # a sibling leaf module; imported late to keep import light

        return lattice_memory_report(self)

    # --- specs --------------------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """A small JSON-able description; explicit arrays appear only as content digests.

        Examples
        --------
        >>> Lattice((3, 3), obstacles=[{"kind": "random", "p": 0.2, "seed": 7}]).spec()["obstacles"]
        [{'kind': 'random', 'p': 0.2, 'seed': 7}]
        """
        if self._spec is None:
            self._spec = self._build_spec()
        # A fresh copy each time: callers may mutate what they are given.
        return {**self._spec, "obstacles": [dict(o) for o in self._spec["obstacles"]]}

    def _build_spec(self) -> dict[str, Any]:
        return {
            "version": SPEC_VERSION,
            "shape": list(self.shape),
            "periodic": list(self.periodic),
            "obstacles": [dict(o) for o in self.obstacles],
            "blocked": self._array_ref("blocked", self.blocked),
            "weights": self._array_ref("weights", self.weights),
        }

    def _array_ref(self, name: str, array: np.ndarray | None) -> dict[str, str] | None:
        if array is None:
            return None
        if name in self.uploaded:
            return {"array": self.uploaded[name]}
        return {"digest": array_digest(array)}

    def digest(self) -> str:
        """A content digest of the whole lattice (its spec, which includes the array digests)."""
        if self._digest is None:
            self._digest = "xxh3_128:" + xxhash.xxh3_128_hexdigest(repr(sorted(self.spec().items())).encode())
        return self._digest

    @classmethod
    def from_spec(
        cls,
        spec: Mapping[str, Any],
        blocked: np.ndarray | None = None,
        weights: np.ndarray | None = None,
        *,
        max_vertices: int | None = None,
    ) -> Lattice:
        """Rebuild a lattice from :meth:`spec`; explicit arrays must be passed and must match their digests.

        Raises
        ------
        SpecError
            Unknown keys or version, or a missing or mismatching explicit array.
        """
        if not isinstance(spec, Mapping):
            raise InvalidTypeError("spec", f"{type(spec).__name__} is not an object", "a lattice spec object")
        known = {"version", "shape", "periodic", "obstacles", "blocked", "weights"}
        extra = set(spec) - known
        if extra:
            raise SpecError("spec", f"unknown keys {sorted(extra)}", ", ".join(sorted(known)))
        version = spec.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError("spec.version", f"version {version!r} is not supported", str(SPEC_VERSION))
        if "shape" not in spec:
            raise SpecError("spec.shape", "missing", "a list of axis lengths")
        arrays = {}
        uploaded = {}
        for name, given in (("blocked", blocked), ("weights", weights)):
            ref = spec.get(name)
            if ref is None:
                if given is not None:
                    raise SpecError(name, "an array was given but the spec has none", "null")
                continue
            key = "array" if isinstance(ref, Mapping) and "array" in ref else "digest"
            if not isinstance(ref, Mapping) or not isinstance(ref.get(key), str):
                raise SpecError(
                    f"spec.{name}", f"{ref!r} is not a digest reference", '{"digest": "xxh3_128:..."} or {"array": ...}'
                )
            if given is None:
                raise SpecError(name, f"the spec references an explicit array {ref[key]}", "pass the array")
            arrays[name] = given
            if key == "array":
                uploaded[name] = ref["array"]
        lattice = cls(
            spec["shape"],
            periodic=spec.get("periodic", False),
            obstacles=spec.get("obstacles") or [],
            blocked=arrays.get("blocked"),
            weights=arrays.get("weights"),
            max_vertices=max_vertices,
            uploaded=uploaded,
        )
        for name in set(arrays) - set(uploaded):
            array = getattr(lattice, name)
            if array_digest(array) != spec[name]["digest"]:
                raise SpecError(name, "content does not match the spec's digest", spec[name]["digest"])
        return lattice

    def with_weights(self, weights: np.ndarray | None) -> Lattice:
        """A copy of this lattice with other weights."""
        return Lattice(
            self.shape,
            self.periodic,
            self.blocked,
            weights,
            list(self.obstacles),
            max_vertices=self.max_vertices,
            uploaded={k: v for k, v in self.uploaded.items() if k == "blocked"},
        )

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        return isinstance(other, Lattice) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    def __repr__(self) -> str:
        parts = [f"shape={list(self.shape)}"]
        if any(self.periodic):
            parts.append(f"periodic={list(self.periodic)}")
        if self.obstacles:
            parts.append(f"obstacles={list(self.obstacles)}")
        if self.blocked is not None:
            parts.append("blocked=<mask>")
        if self.weights is not None:
            parts.append("weights=<array>")
        return f"Lattice({', '.join(parts)})"
