"""Many queries of one lattice at once, spread over Ray workers.

Queries travel in chunks as Ray tasks (retried by Ray, ``max_retries``, when a worker dies). Each node holds
the materialised lattice once: one small holder actor per node (:class:`NodeMasks`, no CPU reserved) rebuilds
the lattice from its spec (procedural obstacles hashed locally; explicit arrays arrive once through the object
store), materialises the open mask and puts it in that node's object store. Every worker process on the node
maps that one read-only copy (zero-copy) and hands it to the kernels (:func:`catalytic.kernels.adopt_open_mask`)
instead of materialising its own. Workers keep the lattices they have seen, and Ray keeps its worker processes
and the holders between calls, so a second batch of the same lattice starts warm. Answers come back in the order
asked. The workers run the very functions of :mod:`catalytic.kernels`, so every answer equals the single-node
one.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from catalytic.distributed._runtime import RETRIES, ErrorCarrier, connect, explicit_arrays, lattice_from
from catalytic.errors import BlockedVertexError, CatalyticError, CoordinateError, InvalidTypeError, NoPathError
from catalytic.kernels import HOST_MASK_BACKENDS, Path, adopt_open_mask, distance_field, shortest_path
from catalytic.kernels.backend import Geometry, get_backend, resolve_backend
from catalytic.lattice import Lattice

__all__ = ["NodeMasks", "PathChunk", "batch_distance_fields", "batch_shortest_paths", "node_masks", "run_chunk"]

log = logging.getLogger("catalytic.distributed")

_MASK_LIMIT = 1 << 24
"""Up to this many vertices the driver materialises the mask to check endpoints; beyond, it hashes them one by one."""
_KEPT_LATTICES = 4
"""Lattices a worker process keeps materialised (least recently used dropped first)."""

_lattices: OrderedDict[str, Lattice] = OrderedDict()
_holders: dict[tuple[str, str], Any] = {}
"""This driver's handles to the node holders (:class:`NodeMasks`), by (Ray job id, node id)."""
_lattices_lock = threading.Lock()


def _lattice_key(spec: Mapping[str, Any]) -> str:
    return repr(sorted(spec.items()))


def _mask_backend(backend: str | None) -> str | None:
    """The backend whose host mask a node can share for this request, or None (a GPU keeps its own)."""
    name = resolve_backend(backend)[0]
    return name if name in HOST_MASK_BACKENDS else None


class NodeMasks:
    """The materialised open masks of one node, each put once in the node's object store (a Ray actor)."""

    def __init__(self) -> None:
        self._refs: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def mask(self, spec: Mapping[str, Any], arrays: Mapping[str, Any], backend: str) -> list[Any]:
        """``[ref]`` to the uint8 open mask of the lattice for a host ``backend`` (a list, so it travels unresolved)."""
        import ray

        key = (_lattice_key(spec), backend)
        ref = self._refs.get(key)
        if ref is None:
            lattice = lattice_from(spec, arrays)
            mask = np.ascontiguousarray(get_backend(backend).open_mask(Geometry.of(lattice)), dtype=np.uint8)
            ref = ray.put(mask)
            self._refs[key] = ref
            while len(self._refs) > _KEPT_LATTICES:
                self._refs.popitem(last=False)
        self._refs.move_to_end(key)
        return [ref]


def node_masks(ray: Any, spec_ref: Any, arrays_ref: Any, backend: str | None) -> dict[str, Any]:
    """``{node id: ref to the node's shared mask}`` for every alive node with CPUs; empty for GPU backends.

    A node whose holder cannot be reached is left out: its workers then materialise the mask themselves.
    """
    from ray.exceptions import RayActorError

    name = _mask_backend(backend)
    if name is None:
        return {}
    job = ray.get_runtime_context().get_job_id()
    calls = {}
    for node in ray.nodes():
        if not node.get("Alive") or node.get("Resources", {}).get("CPU", 0) <= 0:
            continue
        node_id = node["NodeID"]
        calls[node_id] = _holder(ray, job, node_id).mask.remote(spec_ref, arrays_ref, name)
    shared = {}
    for node_id, call in calls.items():
        try:
            shared[node_id] = ray.get(call)[0]
        except RayActorError as exc:
            _holders.pop((job, node_id), None)
            log.warning("node %s keeps no shared mask (%s); its workers build their own", node_id, exc)
    return shared


def _holder(ray: Any, job: str, node_id: str) -> Any:
    """This driver's handle to the holder of ``node_id``, created on first use and kept.

    The driver keeps the handle: a holder whose handles all went away would be stopped, and the masks it owns
    with it.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    holder = _holders.get((job, node_id))
    if holder is None:
        holder = _holders[(job, node_id)] = (
            ray.remote(NodeMasks)
            .options(
                name=f"catalytic-node-masks-{node_id}",
                get_if_exists=True,
                num_cpus=0,
                max_restarts=RETRIES,
                max_task_retries=RETRIES,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            )
            .remote()
        )
    return holder


def _worker_lattice(
    spec: Mapping[str, Any],
    arrays: Mapping[str, Any],
    shared: Mapping[str, Any] | None = None,
    backend: str | None = None,
) -> Lattice:
    """This process's lattice object, rebuilt once per process and kept for the next chunks.

    With ``shared`` (from :func:`node_masks`), the kernels use the node's one copy of the open mask.
    """
    key = _lattice_key(spec)
    with _lattices_lock:
        lattice = _lattices.get(key)
        if lattice is None:
            lattice = lattice_from(spec, arrays)
            name = _mask_backend(backend)
            ref = None
            if shared and name is not None:
                import ray

                ref = shared.get(ray.get_runtime_context().get_node_id())
            if ref is not None and name is not None:
                adopt_open_mask(lattice, ray.get(ref), name)
            _lattices[key] = lattice
            while len(_lattices) > _KEPT_LATTICES:
                _lattices.popitem(last=False)
        _lattices.move_to_end(key)
        return lattice


def run_chunk(
    spec: Mapping[str, Any],
    arrays: Mapping[str, Any],
    backend: str | None,
    kind: str,
    chunk: Any,
    option: str,
    shared: Mapping[str, Any] | None = None,
) -> PathChunk | list[Any] | ErrorCarrier:
    """Answer one chunk in a worker: ``paths`` (pairs, method ``option``) or ``fields`` (source sets).

    Returns the answers in order (paths packed as a :class:`PathChunk`; or a list of distance fields), or an
    :class:`ErrorCarrier` for bad input, which the driver raises again.
    """
    try:
        lattice = _worker_lattice(spec, arrays, shared, backend)
        if kind == "fields":
            return [distance_field(lattice, sources, backend=backend) for sources in chunk]
        out: list[Path | None] = []
        # Python ints take the kernels' array-free endpoint check; NumPy rows would take the vectorised one.
        for start, goal in np.asarray(chunk).tolist():
            try:
                out.append(shortest_path(lattice, start, goal, method=option, backend=backend))
            except NoPathError:
                out.append(None)
        return PathChunk(out, lattice.ndim)
    except CatalyticError as exc:
        return ErrorCarrier.of(exc)


class PathChunk:
    """The answers of one chunk of path queries, packed for the trip to the driver.

    One coordinate array for all the chunk's paths and one array per scalar field travel instead of a small
    array and a memory-report dict per path, which cost more to pickle and unpickle than the queries took to
    run. Memory reports are kept once per distinct report. :meth:`paths` rebuilds the list of
    :class:`catalytic.Path` (``None`` where unreachable), equal field for field to what the worker computed.

    Examples
    --------
    >>> from catalytic.lattice import Lattice
    >>> lat = Lattice((3, 3))
    >>> chunk = PathChunk([shortest_path(lat, (0, 0), (2, 2)), None], 2)
    >>> [None if p is None else (p.length, p.coords[-1].tolist()) for p in chunk.paths()]
    [(4, [2, 2]), None]
    """

    def __init__(self, paths: Sequence[Path | None], ndim: int) -> None:
        found = [p for p in paths if p is not None]
        self.found = np.fromiter((p is not None for p in paths), dtype=bool, count=len(paths))
        self.coords = np.concatenate([p.coords for p in found]) if found else np.zeros((0, ndim), dtype=np.int64)
        self.lengths = np.fromiter((p.length for p in found), dtype=np.int64, count=len(found))
        self.costs = np.fromiter((p.cost for p in found), dtype=np.float64, count=len(found))
        self.expanded = np.fromiter((p.expanded for p in found), dtype=np.int64, count=len(found))
        self.methods = [p.method for p in found]
        self.backends = [p.backend for p in found]
        self.reports: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        report_index = []
        for path in found:
            report = path.memory
            key = repr(sorted(report.items()))
            if key not in seen:
                seen[key] = len(self.reports)
                self.reports.append(report)
            report_index.append(seen[key])
        self.report_index = np.asarray(report_index, dtype=np.int32)

    def __len__(self) -> int:
        return int(self.found.size)

    def paths(self) -> list[Path | None]:
        """The chunk's answers in order: each path's coordinates are its own rows of the packed array."""
        ends = np.cumsum(self.lengths + 1)
        starts = (ends - (self.lengths + 1)).tolist()
        # One report source per distinct report: each path still gets its own copy when it reads ``memory``.
        sources = [functools.partial(copy.deepcopy, report) for report in self.reports]
        coords = self.coords
        rebuilt = [
            Path(coords[a:b], length, cost, expanded, method, backend, sources[r])
            for a, b, length, cost, expanded, method, backend, r in zip(
                starts, ends.tolist(), self.lengths.tolist(), self.costs.tolist(), self.expanded.tolist(),
                self.methods, self.backends, self.report_index.tolist(), strict=True,
            )
        ]  # fmt: skip
        found = iter(rebuilt)
        return [next(found) if here else None for here in self.found.tolist()]


def _open_flags(lattice: Lattice, indices: np.ndarray) -> np.ndarray:
    if lattice.vertices <= _MASK_LIMIT:
        return lattice.open_mask_flat()[indices]
    return np.fromiter((lattice.is_open(int(i)) for i in indices), dtype=bool, count=indices.size)


def _check_open(lattice: Lattice, coords: np.ndarray, names: Callable[[int], str]) -> None:
    """Raise BlockedVertexError naming the first blocked coordinate of ``coords`` (``(k, d)``)."""
    flags = _open_flags(lattice, lattice.index_of(coords, names(0)))
    if not flags.all():
        row = int(np.flatnonzero(~flags)[0])
        raise BlockedVertexError(names(row), f"{coords[row].tolist()} is blocked", "an open vertex")


def _pairs_array(lattice: Lattice, pairs: Any) -> np.ndarray:
    allowed = f"a list of [start, goal] pairs, each a list of {lattice.ndim} integers"
    try:
        array = np.asarray(pairs)
    except (TypeError, ValueError):
        raise InvalidTypeError("pairs", "is not a list of coordinate pairs", allowed) from None
    if array.size == 0:
        return np.zeros((0, 2, lattice.ndim), dtype=np.int64)
    if array.ndim != 3 or array.shape[1] != 2:
        raise CoordinateError("pairs", f"array of shape {list(array.shape)}", allowed)
    flat = array.reshape(-1, array.shape[2])
    lattice.index_of(flat, "pairs")
    _check_open(lattice, flat, lambda i: f"pairs[{i // 2}].{'goal' if i % 2 else 'start'}")
    return flat.astype(np.int64).reshape(-1, 2, lattice.ndim)


_MAX_CHUNK = 2048
_MIN_CHUNK = 64


def _guided_sizes(count: int, workers: int) -> list[int]:
    """Chunk sizes that shrink as the batch drains: each takes about 1/(2 x workers) of what remains.

    Large chunks first keep the tasks few (each costs the driver a submission, a fetch and unpacking, while the
    workers want every core); small chunks last let the workers finish together instead of one idling while
    the other runs a long last chunk. Sizes stay within 64 and 2048 pairs, so progress moves on large batches.

    Examples
    --------
    >>> _guided_sizes(10_000, 2)[:4], sum(_guided_sizes(10_000, 2))
    ([2048, 1988, 1491, 1119], 10000)
    """
    sizes = []
    remaining = count
    while remaining > 0:
        size = min(remaining, max(_MIN_CHUNK, min(_MAX_CHUNK, math.ceil(remaining / (2 * workers)))))
        sizes.append(size)
        remaining -= size
    return sizes


@functools.lru_cache(maxsize=1)
def _chunk_task() -> Any:
    """:func:`run_chunk` as a Ray remote function, made once per process (Ray exports it once per job)."""
    import ray

    return ray.remote(run_chunk).options(num_cpus=1, max_retries=RETRIES)


def _run_chunks(
    spec: Mapping[str, Any],
    arrays: Mapping[str, Any] | None,
    backend: str | None,
    kind: str,
    option: str,
    chunks: list[Any],
    address: str | None,
    workers: int,
    progress: bool,
) -> list[Any]:
    """Run ``chunks`` as Ray tasks on ``workers`` CPUs at a time; answers in chunk order.

    When the batch takes every CPU of the cluster, twice as many chunks are submitted as there are workers: the
    extra ones can only wait in Ray's queue, and Ray hands the next one to a worker the moment it finishes,
    without a round trip through this loop. With fewer workers than CPUs, exactly ``workers`` are in flight.
    """
    from tqdm.auto import tqdm

    ray = connect(address)
    if not chunks:
        return []
    spec_ref = ray.put(dict(spec))
    arrays_ref = ray.put(explicit_arrays(spec, arrays))
    shared = node_masks(ray, spec_ref, arrays_ref, backend)
    task = _chunk_task()
    results: list[Any] = [None] * len(chunks)
    pending: dict[Any, int] = {}
    queue = list(range(len(chunks) - 1, -1, -1))
    with tqdm(total=sum(len(c) for c in chunks), desc=kind, unit="query", disable=not progress) as bar:
        in_flight = 2 * workers if workers >= ray.cluster_resources().get("CPU", 0) else workers

        def refill() -> None:
            while queue and len(pending) < in_flight:
                index = queue.pop()
                pending[task.remote(spec_ref, arrays_ref, backend, kind, chunks[index], option, shared)] = index

        refill()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            refill()  # the next chunk is queued while this one is fetched and unpacked
            answer = ray.get(done[0])
            if isinstance(answer, ErrorCarrier):
                for ref in pending:
                    ray.cancel(ref)
                raise answer.error()
            results[index] = answer.paths() if isinstance(answer, PathChunk) else answer
            bar.update(len(chunks[index]))
    return [item for chunk in results for item in chunk]


def batch_shortest_paths(
    lattice_spec: Mapping[str, Any],
    pairs: Any,
    address: str | None = None,
    *,
    method: str = "auto",
    backend: str | None = None,
    arrays: Mapping[str, Any] | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    workers: int | None = None,
) -> list[Path | None]:
    """Shortest paths for many ``(start, goal)`` pairs of one lattice, computed on Ray.

    Parameters
    ----------
    lattice_spec : dict
        ``Lattice.spec()``; procedural obstacles are rebuilt on each worker.
    pairs : sequence
        ``[[start, goal], ...]`` coordinates, or an int array of shape ``(k, 2, d)``.
    address : str, optional
        Ray address; defaults to ``RAY_ADDRESS``, else a local Ray.
    method : str
        As for :func:`catalytic.shortest_path`.
    backend : str, optional
        Backend request for the workers (their ``CATALYTIC_BACKEND``, else auto, when None).
    arrays : dict, optional
        The explicit ``blocked`` / ``weights`` arrays the spec references (NumPy arrays, or the stored bytes:
        little-endian packed bits for ``blocked``, float64 for ``weights``); sent to the object store once.
    progress : bool
        Show a progress bar (tqdm.auto: a terminal bar or a notebook widget).
    chunk_size : int, optional
        Pairs per call; by default chunks shrink as the batch drains, from at most 2048 pairs down to 64.
    workers : int, optional
        Chunks running at once (one CPU each); defaults to the cluster's CPUs at call time. When they are all the
        cluster's CPUs, the next chunks wait queued in Ray, so a worker never waits for this process.

    Returns
    -------
    list of Path or None
        One entry per pair, in order: the :class:`catalytic.Path` the single-node call returns, or ``None``
        where the goal is unreachable from the start.

    Raises
    ------
    CoordinateError, BlockedVertexError
        An endpoint outside the lattice or blocked (checked before anything is sent to Ray).
    MethodError
        An unknown method, or one that does not fit the lattice.

    Examples
    --------
    >>> spec = Lattice((4, 4)).spec()
    >>> [p.length for p in batch_shortest_paths(spec, [[(0, 0), (3, 3)], [(0, 0), (0, 1)]], progress=False)]
    ... # doctest: +SKIP
    [6, 1]
    """
    lattice = lattice_from(lattice_spec, arrays)
    array = _pairs_array(lattice, pairs)
    workers = _workers(address, workers)
    if chunk_size:
        sizes = [int(chunk_size)] * math.ceil(len(array) / int(chunk_size))
    else:
        sizes = _guided_sizes(len(array), workers)
    bounds = np.cumsum([0, *sizes])
    chunks = [array[a:b] for a, b in itertools.pairwise(bounds.tolist())]
    return _run_chunks(lattice_spec, arrays, backend, "paths", method, chunks, address, workers, progress)


def batch_distance_fields(
    lattice_spec: Mapping[str, Any],
    sources_list: Sequence[Any],
    address: str | None = None,
    *,
    backend: str | None = None,
    arrays: Mapping[str, Any] | None = None,
    progress: bool = True,
    chunk_size: int = 1,
    workers: int | None = None,
) -> list[np.ndarray]:
    """Distance fields for many source sets of one lattice, computed on Ray.

    Parameters
    ----------
    lattice_spec : dict
        ``Lattice.spec()``.
    sources_list : sequence
        One entry per field: a coordinate, or a list of coordinates that all start at distance 0.
    address, backend, arrays, progress, workers
        As for :func:`batch_shortest_paths`.
    chunk_size : int
        Fields per call (a field is a whole-lattice array, so one per call by default).

    Returns
    -------
    list of numpy.ndarray
        In order, what :func:`catalytic.distance_field` returns: int32 steps with −1 where unreachable, or
        float64 costs with ``inf`` on weighted lattices.

    Raises
    ------
    CoordinateError, BlockedVertexError
        A source outside the lattice or blocked.

    Examples
    --------
    >>> fields = batch_distance_fields(Lattice((1, 3)).spec(), [[(0, 0)], [(0, 2)]], progress=False)
    ... # doctest: +SKIP
    >>> [f.tolist() for f in fields]  # doctest: +SKIP
    [[[0, 1, 2]], [[2, 1, 0]]]
    """
    lattice = lattice_from(lattice_spec, arrays)
    prepared = []
    for i, sources in enumerate(sources_list):
        coords = np.asarray(sources)
        coords = coords[np.newaxis, :] if coords.ndim == 1 else coords
        if coords.ndim != 2 or coords.shape[0] == 0 or coords.shape[1] != lattice.ndim:
            raise CoordinateError(
                f"sources_list[{i}]", "expected one or more coordinates", f"coordinates of {lattice.ndim} integers"
            )
        lattice.index_of(coords, f"sources_list[{i}]")

        def name(row: int, i: int = i) -> str:
            return f"sources_list[{i}][{row}]"

        _check_open(lattice, coords, name)
        prepared.append(coords.astype(np.int64))
    workers = _workers(address, workers)
    size = max(1, int(chunk_size))
    chunks = [prepared[i : i + size] for i in range(0, len(prepared), size)]
    return _run_chunks(lattice_spec, arrays, backend, "fields", "", chunks, address, workers, progress)


def _workers(address: str | None, requested: int | None) -> int:
    """Chunks to keep in flight: the request, else the cluster's CPUs."""
    if requested is not None:
        return max(1, int(requested))
    ray = connect(address)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
