"""Many queries of one lattice at once, spread over Ray workers.

One actor per worker process holds the lattice, rebuilt from its spec (procedural obstacles are hashed
locally; explicit arrays arrive once through the object store), with its open mask materialised once and
cached by the kernels. Queries travel in chunks; answers come back in the order they were asked. The actors
run the very functions of :mod:`catalytic.kernels`, so every answer equals the single-node one bit for bit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from catalytic.distributed._runtime import RETRIES, ErrorCarrier, connect, explicit_arrays, lattice_from
from catalytic.errors import BlockedVertexError, CatalyticError, CoordinateError, InvalidTypeError, NoPathError
from catalytic.kernels import Path, distance_field, shortest_path
from catalytic.lattice import Lattice

__all__ = ["QueryWorker", "batch_distance_fields", "batch_shortest_paths"]

_MASK_LIMIT = 1 << 24
"""Up to this many vertices the driver materialises the mask to check endpoints; beyond, it hashes them one by one."""


class QueryWorker:
    """Holds one lattice in a worker process and answers chunks of queries against it.

    Parameters
    ----------
    spec : dict
        The lattice spec.
    arrays : dict, optional
        Explicit ``blocked`` / ``weights`` arrays the spec references by digest.
    backend : str, optional
        Backend request passed to the kernels.
    """

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, Any] | None, backend: str | None) -> None:
        self.lattice = lattice_from(spec, arrays)
        self.backend = backend
        self.lattice.open_mask_flat()

    def paths(self, pairs: np.ndarray, method: str) -> list[Path | None] | ErrorCarrier:
        """Shortest paths for ``pairs`` (``(k, 2, d)`` coordinates); None where the goal is unreachable."""
        out: list[Path | None] = []
        try:
            for start, goal in pairs:
                try:
                    out.append(shortest_path(self.lattice, start, goal, method=method, backend=self.backend))
                except NoPathError:
                    out.append(None)
        except CatalyticError as exc:
            return ErrorCarrier.of(exc)
        return out

    def fields(self, sources_list: Sequence[np.ndarray]) -> list[np.ndarray] | ErrorCarrier:
        """Distance fields, one per source set."""
        try:
            return [distance_field(self.lattice, sources, backend=self.backend) for sources in sources_list]
        except CatalyticError as exc:
            return ErrorCarrier.of(exc)

    def pid(self) -> int:
        """The worker's process id (tests use it to kill the worker)."""
        return os.getpid()


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


def _default_chunk(count: int, workers: int) -> int:
    # About eight chunks per worker keeps every worker busy to the end while the per-call overhead
    # (a few hundred microseconds) stays small next to the queries themselves.
    return max(1, min(512, math.ceil(count / (8 * workers))))


def _run_chunks(
    spec: Mapping[str, Any],
    arrays: Mapping[str, Any] | None,
    backend: str | None,
    chunks: list[Any],
    call: Callable[[Any, Any], Any],
    sizes: list[int],
    address: str | None,
    workers: int,
    progress: bool,
    description: str,
) -> list[Any]:
    """Spread ``chunks`` over one :class:`QueryWorker` per worker; results in chunk order."""
    from tqdm.auto import tqdm

    ray = connect(address)
    if not chunks:
        return []
    workers = max(1, min(workers, len(chunks)))
    spec_ref = ray.put(dict(spec))
    arrays_ref = ray.put(explicit_arrays(spec, arrays))
    actor_cls = ray.remote(QueryWorker).options(num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES)
    actors = [actor_cls.remote(spec_ref, arrays_ref, backend) for _ in range(workers)]
    results: list[Any] = [None] * len(chunks)
    pending: dict[Any, tuple[int, int]] = {}
    queue = list(range(len(chunks)))
    queue.reverse()
    try:
        with tqdm(total=sum(sizes), desc=description, unit="query", disable=not progress) as bar:

            def submit(actor_index: int) -> None:
                chunk_index = queue.pop()
                pending[call(actors[actor_index], chunks[chunk_index])] = (chunk_index, actor_index)

            # Two chunks in flight per worker: one running, one waiting, so no worker idles between calls.
            for actor_index in list(range(workers)) * 2:
                if queue:
                    submit(actor_index)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                chunk_index, actor_index = pending.pop(done[0])
                answer = ray.get(done[0])
                if isinstance(answer, ErrorCarrier):
                    raise answer.error()
                results[chunk_index] = answer
                bar.update(sizes[chunk_index])
                if queue:
                    submit(actor_index)
    finally:
        for actor in actors:
            ray.kill(actor)
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
        Pairs per call; by default about eight chunks per worker (at most 512 pairs).
    workers : int, optional
        Worker actors (one CPU each); defaults to, and is capped at, the cluster's CPUs at call time.

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
    size = chunk_size or _default_chunk(len(array), workers)
    chunks = [array[i : i + size] for i in range(0, len(array), size)]
    return _run_chunks(
        lattice_spec,
        arrays,
        backend,
        chunks,
        lambda actor, chunk: actor.paths.remote(chunk, method),
        [len(c) for c in chunks],
        address,
        workers,
        progress,
        "paths",
    )


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
    return _run_chunks(
        lattice_spec,
        arrays,
        backend,
        chunks,
        lambda actor, chunk: actor.fields.remote(chunk),
        [len(c) for c in chunks],
        address,
        workers,
        progress,
        "fields",
    )


def _workers(address: str | None, requested: int | None) -> int:
    """Worker actors to start: the request, capped at the cluster's CPUs so that every actor gets placed."""
    ray = connect(address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return cpus if requested is None else max(1, min(int(requested), cpus))
