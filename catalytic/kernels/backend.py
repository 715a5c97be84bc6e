"""The array-backend interface, the registry and backend selection.

Algorithms (``catalytic.kernels``) are written once over the primitives of :class:`Backend`. A backend owns
where the state lives (host memory for ``numpy`` and ``numba``, device memory for ``cupy``) and how each
primitive runs. Every backend must give bit-identical results; the rules that make that possible are fixed
here, not in the backends:

* **Neighbour order** (the tie-breaking order): axis 0 −1, axis 0 +1, axis 1 −1, axis 1 +1, … A step off an
  open border is skipped; on a periodic axis it wraps.
* **Canonical path** (:meth:`Backend.trace_path`): walk back from the goal; from vertex ``v`` step to the
  first open neighbour ``u`` in neighour order with ``dist[u] + cost(v) == dist[v]``, where ``cost(v)`` is 1
  unweighted or ``weights[v]``. Parent arrays are never kept. A walk given a window of indices also ends at its
  first vertex outside the window: a slab of a partitioned lattice walks its own rows and stops at its halo.
* **BFS** expands whole levels and stops after the level that discovers the target; ``expanded`` counts the
  vertices of every level expanded (all vertices at depth < depth(target)).
* **Dijkstra / A\\*** pop the heap in key order ``(f, h, index)`` (``h = 0`` for Dijkstra), settle a vertex on
  its first pop, relax only on strict improvement and stop when the target is settled; ``expanded`` counts
  settled vertices. A\\*'s ``h`` is the periodic-aware Manhattan distance to the goal times the smallest weight.
  A source starts at cost 0, or at the cost ``dist`` already holds for it when that is finite (a seed: the cost
  of a path found elsewhere, such as across a slab's halo); other finite entries are upper bounds that the
  search lowers and never raises. It spreads only from the sources and from what it lowers, so seeding a
  finished field gives the field of its sources and the seeds together.
* **Bidirectional BFS** expands whole levels, each time the side with the smaller frontier (the start side on
  a tie); after the first level that labels a vertex already labelled by the other side it stops, and meets at
  the vertex ``w`` of that level minimising ``(d_start(w) + d_goal(w), w)``.
* **Component labels** number components 1..count by each component's lowest linear index; blocked is 0.
* **auto** is resolved before any backend is chosen, from the spec and the endpoints only
  (:func:`catalytic.kernels.auto_method`); a memory budget never swaps the method, only BFS's state for its
  frugal form, which traces the same canonical path. ``ALGORITHM_VERSION`` names these rules.

Selection: the ``backend=`` argument, else ``CATALYTIC_BACKEND`` (``auto|numpy|numba|cupy``), else auto
(cupy when it imports and a CUDA device is usable, otherwise numba). Under auto, a GPU failure at run time
falls back to numba for that call (see :func:`run_with_fallback`). Placement: the method is never the
backend's choice, only where it runs is. A backend whose primitive for a method would copy the state to a host
backend and back names that host backend instead (:meth:`Backend.placement`): on a GPU, A\\* point queries
run on numba, while BFS, bidirectional and Dijkstra searches, distance fields and components run on the device.
Every answer names the backend that ran it.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from catalytic.errors import BackendUnavailableError, CatalyticError, MethodError
from catalytic.lattice import Generators, Lattice, obstacle_generators

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "Geometry",
    "HostBackend",
    "Meter",
    "backends",
    "fallback_count",
    "get_backend",
    "meter",
    "metered",
    "register_backend",
    "resolve_backend",
    "run_with_fallback",
]

log = logging.getLogger("catalytic.kernels")

BACKEND_NAMES = ("numpy", "numba", "cupy")
_MODULES = {
    "numpy": "catalytic.kernels.numpy_backend",
    "numba": "catalytic.kernels.numba_backend",
    "cupy": "catalytic.kernels.cupy_backend",
}


@dataclass(frozen=True, eq=False)
class Geometry:
    """Everything a primitive needs to know about a lattice, as flat host arrays.

    Backends materialise the open mask themselves from these fields (random generators, boxes and the
    explicit mask), so a GPU computes procedural obstacles on the device with the same hash as the CPU.
    """

    shape: np.ndarray  # int64 (d,)
    strides: np.ndarray  # int64 (d,), C order
    periodic: np.ndarray  # uint8 (d,)
    vertices: int
    random_seeds: np.ndarray  # uint64 (r,)
    random_thresholds: np.ndarray  # uint64 (r,): blocked iff splitmix64(seed, i) >> 11 < threshold
    box_lo: np.ndarray  # int64 (b, d), inclusive
    box_hi: np.ndarray  # int64 (b, d), inclusive
    explicit_blocked: np.ndarray | None  # bool (N,) or None
    weights: np.ndarray | None  # float64 (N,) or None
    min_weight: float = 1.0
    ndim: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ndim", int(self.shape.shape[0]))

    def generators(self) -> Generators:
        """The random generators and boxes as :func:`catalytic.lattice.materialise_open` takes them."""
        randoms = list(zip(self.random_seeds.tolist(), self.random_thresholds.tolist(), strict=True))
        return randoms, list(zip(self.box_lo.tolist(), self.box_hi.tolist(), strict=True))

    @classmethod
    def of(cls, lattice: Lattice) -> Geometry:
        """The geometry of a lattice."""
        randoms, boxes = obstacle_generators(lattice.obstacles)
        d = lattice.ndim
        return cls(
            shape=np.asarray(lattice.shape, dtype=np.int64),
            strides=np.asarray(lattice.strides, dtype=np.int64),
            periodic=np.asarray(lattice.periodic, dtype=np.uint8),
            vertices=lattice.vertices,
            random_seeds=np.asarray([seed for seed, _ in randoms], dtype=np.uint64),
            random_thresholds=np.asarray([threshold for _, threshold in randoms], dtype=np.uint64),
            box_lo=np.asarray([lo for lo, _ in boxes], dtype=np.int64).reshape(len(boxes), d),
            box_hi=np.asarray([hi for _, hi in boxes], dtype=np.int64).reshape(len(boxes), d),
            explicit_blocked=None if lattice.blocked is None else lattice.blocked.ravel(),
            weights=None if lattice.weights is None else lattice.weights.ravel(),
            min_weight=lattice.min_weight,
        )


PROGRESS_DONE, PROGRESS_TOTAL, ALLOCATED_BYTES = 0, 1, 2
"""The slots of :attr:`Meter.counts`."""


class Meter:
    """What one computation tells its caller while it runs: progress, and the bytes of search state it allocated.

    ``counts`` is int64 ``(done, total, allocated bytes)``. Compiled kernels take it as an argument and store
    ``done`` once per level, slab or round (one store, never a call back into Python); kernels driven from Python
    call :meth:`advance`, which reports at once. :meth:`allocated` is how the code that makes an array of search
    state the caller does not see (a queue, a frontier bitmap, a GPU ring) accounts for it.

    Examples
    --------
    >>> seen = []
    >>> meter = Meter(seen.append, total=4)
    >>> meter.advance(1); meter.advance(1); meter.advance(3)
    >>> seen
    [0.25, 0.75]
    """

    def __init__(self, callback: Callable[[float], None] | None = None, total: int = 0) -> None:
        self.callback = callback
        self.counts = np.zeros(3, dtype=np.int64)
        self.counts[PROGRESS_TOTAL] = total
        self.reported = 0.0
        self._lock = threading.Lock()

    def allocated(self, nbytes: int) -> None:
        """Account ``nbytes`` of search state allocated for this computation."""
        self.counts[ALLOCATED_BYTES] += int(nbytes)

    @property
    def allocated_bytes(self) -> int:
        """Bytes accounted through :meth:`allocated` or by a compiled kernel."""
        return int(self.counts[ALLOCATED_BYTES])

    def advance(self, done: int) -> None:
        """Set how much of the work is done and report it."""
        self.counts[PROGRESS_DONE] = done
        self.report()

    def round_done(self, rounds: int) -> None:
        """Report ``rounds`` finished rounds of a loop whose round count is not known ahead.

        Each round moves the fraction a smaller step toward 1: ``rounds / (rounds + 1)``.
        """
        self.counts[PROGRESS_TOTAL] = rounds + 1
        self.advance(rounds)

    def report(self) -> None:
        """Call the callback with ``done / total`` when it rose since the last call (below 1: the caller says 1)."""
        if self.callback is None:
            return
        with self._lock:
            done, total = int(self.counts[PROGRESS_DONE]), int(self.counts[PROGRESS_TOTAL])
            fraction = min(done / total, 0.999) if total > 0 else 0.0
            if fraction <= self.reported:
                return
            self.reported = fraction
        self.callback(fraction)


_METERS = threading.local()


def meter() -> Meter:
    """The meter of the computation running on this thread (a throwaway one outside :func:`metered`)."""
    current: Meter | None = getattr(_METERS, "current", None)
    return current if current is not None else Meter()


@contextlib.contextmanager
def metered(current: Meter) -> Iterator[Meter]:
    """Make ``current`` the meter :func:`meter` returns on this thread while the block runs."""
    previous = getattr(_METERS, "current", None)
    _METERS.current = current
    try:
        yield current
    finally:
        _METERS.current = previous


class Backend(abc.ABC):
    """The primitives every algorithm is written over.

    Arrays named "device array" live wherever the backend keeps state (NumPy arrays for CPU backends). The
    parameters the primitives share mean the same everywhere:

    * ``geom``: the :class:`Geometry` of the lattice (N vertices, d axes).
    * ``open_mask``: uint8 device array (N,), 1 where open, from :meth:`open_mask`; ``open_bits`` the same
      packed 1 bit per vertex, from :meth:`open_bits`.
    * ``sources``: host int64 linear indices of open vertices; ``target``: the index a search stops at, −1 to
      run to exhaustion.
    * ``dist``: device distances written in place: int32 steps (−1 unreached) for unweighted searches, float64
      costs (inf unreached) for weighted ones.
    * ``state``: the frugal search's state, an array of :meth:`frugal_state_size`, zeroed. Its layout is the
      backend's own; :meth:`frugal_depths` reads it back as one code per vertex. Unless a backend says
      otherwise it is a uint8 ((N + 3) // 4,) array of 2-bit fields, vertex ``i`` at bits ``2 (i & 3)`` of byte
      ``i >> 2``.
    """

    name: ClassVar[str]
    host_arrays: ClassVar[bool] = True
    """Whether state arrays are host NumPy arrays (so lent host memory can hold them)."""

    def placement(self, method: str) -> str:
        """The backend that runs point queries of path ``method`` when this one is selected: itself, unless
        its primitive would only copy the state to a host backend and back (the GPU's A\\*).

        Examples
        --------
        >>> get_backend("numpy").placement("astar")
        'numpy'
        """
        return self.name

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> str | None:
        """None when usable on this machine, else a sentence naming what is missing."""

    # --- arrays ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def full(self, n: int, value: float, dtype: Any) -> Any:
        """A new device array of ``n`` entries set to ``value``."""

    @abc.abstractmethod
    def to_device(self, array: np.ndarray) -> Any:
        """Copy a host array to the device (no copy for CPU backends when already contiguous)."""

    @abc.abstractmethod
    def to_host(self, array: Any) -> np.ndarray:
        """Copy a device array to a host NumPy array."""

    # --- lattice ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def open_mask(self, geom: Geometry) -> Any:
        """Materialise the uint8 open mask (N,) from the generators, boxes and explicit mask."""

    @abc.abstractmethod
    def open_bits(self, geom: Geometry) -> Any:
        """The open mask packed 1 bit per vertex: uint8 ((N + 7) // 8,), bit ``i & 7`` of byte ``i >> 3``."""

    @abc.abstractmethod
    def degree_histogram(self, geom: Geometry, open_mask: Any) -> np.ndarray:
        """int64 (2d + 1,): how many open vertices have k distinct open neighbours (self-loops excluded)."""

    # --- searches ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def bfs(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any) -> int:
        """Multi-source BFS writing steps into ``dist`` (pre-filled with −1); returns ``expanded``.

        With ``target >= 0`` it stops after the level that discovers ``target``.
        """

    @abc.abstractmethod
    def bidirectional(
        self, geom: Geometry, open_mask: Any, start: int, goal: int, dist_start: Any, dist_goal: Any
    ) -> tuple[int, int, int]:
        """Bidirectional BFS; returns ``(length, meet, expanded)``, ``length = -1`` when unreachable."""

    @abc.abstractmethod
    def dijkstra(self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any, astar: bool) -> int:
        """Dijkstra (or A* towards ``target`` when ``astar``) writing costs into ``dist`` (pre-filled inf).

        Uses ``geom.weights`` when present, unit costs otherwise. Returns ``expanded``. A source whose entry of
        ``dist`` is finite starts from that cost, and other finite entries are upper bounds (see the module rules).
        """

    def dijkstra_written(
        self, geom: Geometry, open_mask: Any, sources: np.ndarray, target: int, dist: Any, astar: bool
    ) -> tuple[int, np.ndarray | None]:
        """:meth:`dijkstra`, also returning the indices whose distance it wrote (host int64, each once).

        None where the backend does not track them; the caller then refills the whole array before reuse.
        """
        return self.dijkstra(geom, open_mask, sources, target, dist, astar), None

    @abc.abstractmethod
    def trace_path(
        self, geom: Geometry, open_mask: Any, dist: Any, root: int, vertex: int, within: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The canonical path from ``vertex`` back to ``root`` (both included) as host int64 indices.

        With ``within = (lo, hi)`` the walk also ends at its first vertex outside ``lo .. hi - 1``, which ends the
        path (``root`` may then be −1: the walk must leave the window).
        """

    # --- frugal (2 bits per vertex) --------------------------------------------------------------------

    def frugal_state_size(self, geom: Geometry) -> tuple[int, Any]:
        """The length and dtype of the zeroed ``state`` array :meth:`bfs_frugal` works in.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> from catalytic.kernels.numpy_backend import NumpyBackend
        >>> NumpyBackend().frugal_state_size(Geometry.of(Lattice((3, 3))))
        (3, dtype('uint8'))
        """
        return (geom.vertices + 3) // 4, np.dtype(np.uint8)

    def frugal_depths(self, geom: Geometry, state: Any) -> np.ndarray:
        """Host uint8 (N,): each vertex's code in the frugal ``state``, 0 unvisited, else ``1 + depth mod 3``.

        Examples
        --------
        >>> from catalytic.lattice import Lattice
        >>> from catalytic.kernels.numpy_backend import NumpyBackend
        >>> backend = NumpyBackend()
        >>> geom = Geometry.of(Lattice((5,)))
        >>> size, dtype = backend.frugal_state_size(geom)
        >>> state = backend.full(size, 0, dtype)
        >>> backend.bfs_frugal(geom, backend.open_bits(geom), 0, 4, state)
        (4, 4)
        >>> backend.frugal_depths(geom, state).tolist()
        [1, 2, 3, 1, 2]
        """
        packed = self.to_host(state).astype(np.uint8, copy=False)
        codes = np.stack([(packed >> (2 * j)) & 3 for j in range(4)], axis=1).reshape(-1)
        return np.ascontiguousarray(codes[: geom.vertices])

    @abc.abstractmethod
    def bfs_frugal(self, geom: Geometry, open_bits: Any, start: int, goal: int, state: Any) -> tuple[int, int]:
        """BFS keeping depth mod 3 in ``state`` (of :meth:`frugal_state_size`, zeroed).

        State values: 0 unvisited, 1 + depth mod 3 otherwise. Returns ``(length, expanded)``; length −1
        when unreachable.
        """

    @abc.abstractmethod
    def trace_path_frugal(
        self, geom: Geometry, open_bits: Any, state: Any, start: int, goal: int, length: int
    ) -> np.ndarray:
        """The canonical path from ``goal`` back to ``start`` rebuilt from the depth-mod-3 state."""

    # --- structure --------------------------------------------------------------------------------------

    @abc.abstractmethod
    def label(self, geom: Geometry, open_mask: Any) -> tuple[Any, int]:
        """Component labels (int32, or int64 past 2^31 − 1 vertices) numbered by lowest index; and the count."""


class HostBackend(Backend):
    """A backend whose state arrays are host NumPy arrays (``numpy``, ``numba``)."""

    def full(self, n: int, value: float, dtype: Any) -> np.ndarray:
        """A new host array of ``n`` entries set to ``value``."""
        return np.full(n, value, dtype=dtype)

    def to_device(self, array: np.ndarray) -> np.ndarray:
        """The array itself when C-contiguous, else a contiguous copy."""
        return np.ascontiguousarray(array)

    def to_host(self, array: Any) -> np.ndarray:
        """The array itself (state already lives on the host)."""
        return np.asarray(array)


_REGISTRY: dict[str, type[Backend]] = {}
_INSTANCES: dict[str, Backend] = {}
_LOCK = threading.Lock()
_fallbacks = 0
_warned = False


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator adding a backend to the registry."""
    _REGISTRY[cls.name] = cls
    return cls


def _load(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]


_PROBED: dict[str, str | None] = {}


def _unavailable_reason(name: str) -> str | None:
    # Probing imports modules and may touch a GPU driver: do it once per process, not once per call.
    if name not in _PROBED:
        try:
            _PROBED[name] = _load(name).probe()
        except ImportError as exc:
            _PROBED[name] = f"backend {name!r} cannot be imported: {exc}"
    return _PROBED[name]


def backends() -> list[str]:
    """The backends usable on this machine, in the order auto selection prefers them last to first."""
    return [name for name in BACKEND_NAMES if _unavailable_reason(name) is None]


def resolve_backend(backend: str | None) -> tuple[str, bool]:
    """Resolve a request to ``(name, auto)``: argument, else ``CATALYTIC_BACKEND``, else auto."""
    requested = backend if backend is not None else os.environ.get("CATALYTIC_BACKEND", "auto")
    requested = requested.strip().lower()
    if requested == "auto":
        return ("cupy" if _unavailable_reason("cupy") is None else "numba"), True
    if requested not in BACKEND_NAMES:
        raise MethodError("backend", f"unknown backend {requested!r}", "auto, numpy, numba or cupy")
    return requested, False


def get_backend(name: str) -> Backend:
    """The shared instance of a backend; raises BackendUnavailableError naming what is missing."""
    if name not in BACKEND_NAMES:
        raise MethodError("backend", f"unknown backend {name!r}", "numpy, numba or cupy")
    with _LOCK:
        if name not in _INSTANCES:
            reason = _unavailable_reason(name)
            if reason is not None:
                raise BackendUnavailableError(reason)
            _INSTANCES[name] = _load(name)()
        return _INSTANCES[name]


def fallback_count() -> int:
    """How many calls fell back from the GPU to numba in this process (exported as backend_fallbacks_total)."""
    return _fallbacks


_fallback_listeners: list[Callable[[], None]] = []


def on_fallback(listener: Callable[[], None]) -> None:
    """Call ``listener`` each time a call falls back (the service increments its counter this way)."""
    _fallback_listeners.append(listener)


T = TypeVar("T")


def _is_gpu_failure(exc: BaseException) -> bool:
    # CuPy and numba.cuda raise their own classes for out-of-memory and driver errors; match by module so
    # that neither has to be imported here.
    if isinstance(exc, CatalyticError):
        return False
    module = type(exc).__module__ or ""
    return isinstance(exc, MemoryError) or module.startswith(("cupy", "cupy_backends", "numba.cuda"))


def run_with_fallback(backend: str | None, call: Callable[[Backend], T], method: str | None = None) -> tuple[T, str]:
    """Run ``call`` on the selected backend; under auto, retry a GPU failure on numba.

    With a path ``method``, the call runs where the selected backend places it (:meth:`Backend.placement`):
    a GPU's A\\* point query runs on its host backend, with no copies to the device and back.
    Returns the result and the name of the backend that produced it.
    """
    global _fallbacks, _warned
    name, auto = resolve_backend(backend)
    try:
        selected = get_backend(name)
        if method is not None and selected.placement(method) != name:
            name = selected.placement(method)
            selected = get_backend(name)
        return call(selected), name
    except Exception as exc:
        if not (auto and name == "cupy" and _is_gpu_failure(exc)):
            raise
        with _LOCK:
            _fallbacks += 1
            first = not _warned
            _warned = True
        if first:
            log.warning("GPU backend failed (%s: %s); falling back to numba", type(exc).__name__, exc)
        for listener in _fallback_listeners:
            listener()
        return call(get_backend("numba")), "numba"
