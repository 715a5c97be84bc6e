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

With ``progress`` on, the bar moves with the kernels' own progress signal, as the CLI's bar and the service's jobs
do: each task sends how much of its chunk is done (queries finished plus the running query's kernel fraction), at
most every :data:`catalytic.kernels.PROGRESS_POLL_SECONDS`, to a small actor of the driver's
(:class:`ProgressBoard`), which the driver reads while it waits; the bar's position is the finished chunks plus
the running chunks' shares.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from catalytic.distributed._runtime import RETRIES, ErrorCarrier, connect, explicit_arrays, lattice_from
from catalytic.errors import BlockedVertexError, CatalyticError, CoordinateError, InvalidTypeError, NoPathError
from catalytic.kernels import (
    HOST_MASK_BACKENDS,
    PROGRESS_POLL_SECONDS,
    Path,
    Progress,
    adopt_open_mask,
    distance_field,
    shortest_path,
)
from catalytic.kernels.backend import Geometry, get_backend, resolve_backend
from catalytic.lattice import Lattice

__all__ = [
    "ChunkProgress",
    "NodeMasks",
    "PathChunk",
    "ProgressBoard",
    "batch_distance_fields",
    "batch_shortest_paths",
    "node_masks",
    "run_chunk",
]

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
                from ray.exceptions import RayError

                try:
                    adopt_open_mask(lattice, ray.get(ref), name)
                except RayError as exc:  # the holder died with its copy; this process builds its own
                    log.warning("shared mask not readable (%s); this worker builds its own", exc)
            _lattices[key] = lattice
            while len(_lattices) > _KEPT_LATTICES:
                _lattices.popitem(last=False)
        _lattices.move_to_end(key)
        return lattice


class ProgressBoard:
    """Where the tasks of a driver's batches leave how far their chunks are, until the driver reads it (a Ray actor).

    One per driver (:func:`_board`, no CPU reserved), kept between batches; each batch reads and clears only its
    own reports, named by the batch's id.

    Examples
    --------
    >>> board = ProgressBoard()
    >>> board.report("b", 0, 0.25); board.report("b", 0, 0.5); board.report("c", 1, 0.1)
    >>> board.drain("b"), board.drain("b")
    ([(0, 0.25), (0, 0.5)], [])
    """

    def __init__(self) -> None:
        self._reports: dict[str, list[tuple[int, float]]] = {}

    def report(self, batch: str, index: int, fraction: float) -> None:
        """Chunk ``index`` of ``batch`` is ``fraction`` done."""
        self._reports.setdefault(batch, []).append((index, fraction))

    def drain(self, batch: str) -> list[tuple[int, float]]:
        """The reports of ``batch`` since the last drain, in the order they came."""
        return self._reports.pop(batch, [])


_STEP = 0.01
"""The bar stands at hundredths of a query: a task reports when its chunk moved by at least that much."""
_FLUSH_S = 2.0
"""How long a task waits, at its end, for the board to hold its last report (the bar then never lags a chunk)."""


class ChunkProgress:
    """How far one chunk is, sent to the batch's :class:`ProgressBoard` at most every ``interval`` seconds.

    Made by the driver and run in the task: :meth:`at` takes queries finished and the running query's kernel
    fraction; :meth:`kernel` is the ``progress=`` callback for the running query. Each report is at least a
    hundredth of a query past the last (the bar's resolution), and stays below 1: the driver counts a chunk whole
    when its answers come. Sending never fails the chunk: a board that cannot be reached only costs the bar its
    moves inside chunks.

    Examples
    --------
    >>> sent = []
    >>> class Board:
    ...     class report:
    ...         remote = staticmethod(lambda batch, index, fraction: sent.append(fraction))
    >>> ticks = iter([0.0, 0.05, 0.2, 0.3])
    >>> meter = ChunkProgress(Board, "b", 0, 4, clock=lambda: next(ticks))
    >>> meter.at(0, 0.5); meter.at(1, 0.0); meter.at(1, 0.5); meter.at(1, 0.2)
    >>> sent
    [0.125, 0.375]
    """

    def __init__(
        self,
        board: Any,
        batch: str,
        index: int,
        size: int,
        *,
        interval: float = PROGRESS_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board, self.batch, self.index, self.size = board, batch, index, max(1, int(size))
        self.interval = interval
        self.clock = clock
        self.sent = 0.0
        self.sent_at = -math.inf
        self._last: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # the lock and the last report's ref stay behind: the task gets its own
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_last")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._last = None
        self._lock = threading.Lock()

    def at(self, finished: int, fraction: float = 0.0) -> None:
        """``finished`` queries of the chunk are answered and the running one is ``fraction`` done."""
        value = (finished + min(max(fraction, 0.0), 1.0)) / self.size
        with self._lock:
            now = self.clock()
            if (value - self.sent) * self.size < _STEP or value >= 1.0 or now - self.sent_at < self.interval:
                return
            self.sent, self.sent_at = value, now
            try:
                self._last = self.board.report.remote(self.batch, self.index, value)
            except Exception as exc:  # progress is best effort; the answers are what counts
                log.debug("chunk %d: progress not sent (%s)", self.index, exc)

    def kernel(self, finished: int) -> Progress:
        """The kernel callback of the query after ``finished`` answered ones."""
        return functools.partial(self.at, finished)

    def flush(self) -> None:
        """Wait (a little) until the board holds the last report, so the driver reads it with the answers."""
        if self._last is None:
            return
        import ray

        try:
            ray.get(self._last, timeout=_FLUSH_S)
        except Exception as exc:
            log.debug("chunk %d: last progress report not confirmed (%s)", self.index, exc)


def run_chunk(
    spec: Mapping[str, Any],
    arrays: Mapping[str, Any],
    backend: str | None,
    kind: str,
    chunk: Any,
    option: str,
    shared: Mapping[str, Any] | None = None,
    meter: ChunkProgress | None = None,
) -> PathChunk | list[Any] | ErrorCarrier:
    """Answer one chunk in a worker: ``paths`` (pairs, method ``option``) or ``fields`` (source sets).

    Returns the answers in order (paths packed as a :class:`PathChunk`; or a list of distance fields), or an
    :class:`ErrorCarrier` for bad input, which the driver raises again. With ``meter``, how far the chunk is goes
    to the driver as it runs: a field always reports its kernel's progress; a path query does when it is the
    chunk's first or the one before it took longer than a report interval (asking a kernel for progress starts a
    watching thread, which costs more than a small query).
    """
    try:
        lattice = _worker_lattice(spec, arrays, shared, backend)
        if kind == "fields":
            fields = []
            for done, sources in enumerate(chunk):
                if meter is not None:
                    meter.at(done)
                progress = None if meter is None else meter.kernel(done)
                fields.append(distance_field(lattice, sources, backend=backend, progress=progress))
            return fields
        out: list[Path | None] = []
        slow = True
        # Python ints take the kernels' array-free endpoint check; NumPy rows would take the vectorised one.
        for done, (start, goal) in enumerate(np.asarray(chunk).tolist()):
            progress = None
            if meter is not None:
                meter.at(done)
                progress = meter.kernel(done) if slow else None
                began = time.monotonic()
            try:
                out.append(shortest_path(lattice, start, goal, method=option, backend=backend, progress=progress))
            except NoPathError:
                out.append(None)
            if meter is not None:
                slow = time.monotonic() - began >= meter.interval
        return PathChunk(out, lattice.ndim)
    except CatalyticError as exc:
        return ErrorCarrier.of(exc)
    finally:
        if meter is not None:
            meter.flush()


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
        # A report is read once per path (what the single node's Path builds on first access) and kept once per
        # distinct report: its scalar fields pick the candidates, a dict comparison confirms (no repr per path).
        by_scalars: dict[tuple[Any, ...], list[int]] = {}
        report_index = np.empty(len(found), dtype=np.int32)
        for i, path in enumerate(found):
            report = path.memory
            scalars = tuple(v for v in report.values() if not isinstance(v, dict | list))
            candidates = by_scalars.setdefault(scalars, [])
            for r in candidates:
                if self.reports[r] == report:
                    break
            else:
                r = len(self.reports)
                self.reports.append(report)
                candidates.append(r)
            report_index[i] = r
        self.report_index = report_index

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


_MAX_CHUNK = 65_536
"""Most pairs in one task: a larger batch is cut into more tasks, a multiple of the workers, so they still balance."""


def _chunk_sizes(count: int, workers: int) -> list[int]:
    """Near-equal chunk sizes: one chunk per worker, or a multiple of the workers past :data:`_MAX_CHUNK` each.

    Every task costs the driver, the raylet and the GCS CPU time (submission, argument and result transfer
    through the object store, the driver's fetch): about 7 ms of CPU per task on the 2-core bench machine,
    measured over 10,000 queries on 5-D 10^5 as 0.19-0.21 CPU seconds outside the workers with 17 shrinking
    chunks against 0.09-0.10 with one chunk per worker. On a machine where the workers take every core, that
    CPU comes out of the queries, so the tasks are as few as the workers. The bar still moves within a chunk
    (:class:`ChunkProgress`).

    Examples
    --------
    >>> _chunk_sizes(10_000, 2), _chunk_sizes(5, 3), _chunk_sizes(2, 4)
    ([5000, 5000], [2, 2, 1], [1, 1])
    >>> len(_chunk_sizes(200_000, 2)), sum(_chunk_sizes(200_000, 2))
    (4, 200000)
    """
    if count <= 0:
        return []
    pieces = max(1, workers) * math.ceil(count / (max(1, workers) * _MAX_CHUNK))
    pieces = min(pieces, count)
    return [count // pieces + (1 if i < count % pieces else 0) for i in range(pieces)]


_placements: OrderedDict[tuple[str, str, str | None], tuple[Any, Any, dict[str, Any]]] = OrderedDict()
"""This driver's lattices in the object store: (spec ref, arrays ref, node masks), by (job, lattice, mask backend)."""
_placements_lock = threading.Lock()


def _placed(
    ray: Any, spec: Mapping[str, Any], arrays: Mapping[str, Any] | None, backend: str | None
) -> tuple[Any, Any, dict[str, Any]]:
    """The spec and explicit arrays put once in the object store, and each node's shared mask, kept for the next batch.

    The last :data:`_KEPT_LATTICES` lattices stay placed, so a batch of a lattice seen before sends nothing
    and asks no node for its mask again (a node that joined since has none: its workers build their own).
    """
    key = (ray.get_runtime_context().get_job_id(), _lattice_key(spec), _mask_backend(backend))
    with _placements_lock:
        placed = _placements.get(key)
        if placed is not None:
            _placements.move_to_end(key)
            return placed
    spec_ref = ray.put(dict(spec))
    arrays_ref = ray.put(explicit_arrays(spec, arrays))
    placed = (spec_ref, arrays_ref, node_masks(ray, spec_ref, arrays_ref, backend))
    with _placements_lock:
        for stale in [k for k in _placements if k[0] != key[0]]:  # an earlier Ray session's
            del _placements[stale]
        _placements[key] = placed
        while len(_placements) > _KEPT_LATTICES:
            _placements.popitem(last=False)
    return placed


@functools.lru_cache(maxsize=1)
def _chunk_task() -> Any:
    """:func:`run_chunk` as a Ray remote function, made once per process (Ray exports it once per job)."""
    import ray

    return ray.remote(run_chunk).options(num_cpus=1, max_retries=RETRIES)


_boards: dict[str, Any] = {}
"""This driver's progress board (:class:`ProgressBoard`), by Ray job id."""
_boards_lock = threading.Lock()


def _board(ray: Any) -> Any:
    """This driver's :class:`ProgressBoard` actor, created on first use and kept for the next batches."""
    job = ray.get_runtime_context().get_job_id()
    with _boards_lock:
        board = _boards.get(job)
        if board is None:
            board = _boards[job] = ray.remote(ProgressBoard).options(num_cpus=0).remote()
        return board


class _BoardReader:
    """The driver's side of one batch's progress: reads of its board, never blocking the loop for long.

    A board that fails (its actor died, or does not answer) is dropped, and with it the moves inside chunks; the
    bar then moves per finished chunk.
    """

    def __init__(self, ray: Any, board: Any, batch: str) -> None:
        self.ray, self.board, self.batch = ray, board, batch
        self._read: Any = None

    def poll(self) -> list[tuple[int, float]]:
        """The reports that came since the last read, if the board has answered by now (else none yet)."""
        if self.board is None:
            return []
        if self._read is None:
            self._read = self.board.drain.remote(self.batch)
        ready, _ = self.ray.wait([self._read], timeout=0)
        return self._take() if ready else []

    def settle(self) -> list[tuple[int, float]]:
        """Every report sent so far (a finished task's last one is on the board before its answers return)."""
        if self.board is None:
            return []
        items = self._take() if self._read is not None else []
        if self.board is not None:
            self._read = self.board.drain.remote(self.batch)
            items += self._take()
        return items

    def _take(self) -> list[tuple[int, float]]:
        read, self._read = self._read, None
        try:
            return list(self.ray.get(read, timeout=_FLUSH_S))
        except Exception as exc:
            log.warning("batch progress board not readable (%s); the bar moves per chunk", exc)
            job = self.ray.get_runtime_context().get_job_id()
            with _boards_lock:
                if _boards.get(job) is self.board:
                    del _boards[job]  # the next batch makes a new one
            self.board = None
            return []

    def close(self) -> None:
        """Drop what late reports of this batch the board holds (tasks cancelled after an error)."""
        if self.board is not None:
            self.board.drain.remote(self.batch)


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

    With ``progress``, each task reports how far its chunk is to the driver's :class:`ProgressBoard`, which this
    loop reads every :data:`~catalytic.kernels.PROGRESS_POLL_SECONDS` while it waits and whenever a chunk
    finishes (first its last reports, then its answers); the bar stands at the finished chunks' queries plus each
    running chunk's reported share, and only rises.
    """
    from tqdm.auto import tqdm

    ray = connect(address)
    if not chunks:
        return []
    spec_ref, arrays_ref, shared = _placed(ray, spec, arrays, backend)
    task = _chunk_task()
    results: list[Any] = [None] * len(chunks)
    pending: dict[Any, int] = {}
    queue = list(range(len(chunks) - 1, -1, -1))
    batch = uuid.uuid4().hex
    reader = _BoardReader(ray, _board(ray), batch) if progress else None
    shares: dict[int, float] = {}  # running chunks' reported fractions
    finished: set[int] = set()
    answered = 0  # queries of the finished chunks
    with tqdm(total=sum(len(c) for c in chunks), desc=kind, unit="query", disable=not progress) as bar:
        in_flight = 2 * workers if workers >= ray.cluster_resources().get("CPU", 0) else workers

        def refill() -> None:
            while queue and len(pending) < in_flight:
                index = queue.pop()
                meter = None
                if reader is not None and reader.board is not None:
                    meter = ChunkProgress(reader.board, batch, index, len(chunks[index]))
                call = task.remote(spec_ref, arrays_ref, backend, kind, chunks[index], option, shared, meter)
                pending[call] = index

        def show() -> None:
            position = round(answered + sum(share * len(chunks[i]) for i, share in shares.items()), 2)
            if position > bar.n:
                bar.n = position
                bar.update(0)  # tqdm redraws at most every mininterval

        def take(reports: list[tuple[int, float]]) -> None:
            for index, fraction in reports:
                if index not in finished and fraction > shares.get(index, 0.0):
                    shares[index] = fraction
                    show()

        refill()
        try:
            while pending:
                wait = PROGRESS_POLL_SECONDS if reader is not None else None
                done, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
                if not done:
                    take(reader.poll() if reader is not None else [])
                    continue
                index = pending.pop(done[0])
                refill()  # the next chunk is queued while this one is fetched and unpacked
                answer = ray.get(done[0])
                if isinstance(answer, ErrorCarrier):
                    for ref in pending:
                        ray.cancel(ref)
                    raise answer.error()
                results[index] = answer.paths() if isinstance(answer, PathChunk) else answer
                if reader is not None:
                    take(reader.settle())
                finished.add(index)
                shares.pop(index, None)
                answered += len(chunks[index])
                show()
        finally:
            if reader is not None:
                reader.close()
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
        Pairs per call; by default one near-equal chunk per worker (more, a multiple of the workers, past
        65,536 pairs a chunk).
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
        sizes = _chunk_sizes(len(array), workers)
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
