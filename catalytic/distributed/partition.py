"""Lattices split into slabs along axis 0, one Ray actor per slab.

Each :class:`SlabWorker` holds one slab as a lattice with halo faces: rows ``lo .. hi - 1`` of axis 0, plus the
row on each side that belongs to a neighbouring slab (the halo), materialised by the one NumPy mask builder
(:func:`catalytic.lattice.materialise_open`) with obstacles hashed at the GLOBAL linear indices of those rows;
its rows of the explicit mask and weights; wrap on axes 1.. stays inside the slab. Per query it keeps the
distances of all its rows, halos included. Slabs talk only through their two boundary faces (the first and last
own row): a face is one row of ``prod(shape[1:])`` values.

Distance fields run in rounds, and each round runs a slab to local quiescence before anything is exchanged. In
the first round every slab runs the backend's multi-source search (BFS, or Dijkstra when weighted) from the
sources it holds. In every later round each slab takes its neighbours' updates into its halo rows (keeping the
smaller value) and lowers what they reach, through the whole slab, until nothing changes locally: on an
unweighted lattice with a BFS over int32 steps whose seeds join at their own depths
(:func:`catalytic.distributed._relax.lower_from_seeds`, on the numba backend's tiles, about the cost of a BFS),
on a weighted one with the backend's Dijkstra seeded with the halo vertices whose cost dropped (every other
finite cost is an upper bound). A slab then sends only the entries of its first and last own rows that went down
since it last sent them (:class:`HaloUpdate`: columns and values, straight to the neighbouring actors through
Ray's object store), and the rounds stop after one in which no slab sent anything. A path is walked back by the
backends' path walk on the same slab: it ends at the start, or at its first step into a halo, where the
neighbouring slab takes over.

Why the answer is exact (bit for bit, weights included): every stored value is the cost of a real path (halo
rows are real rows of the lattice), summed left to right as the kernels sum it, so it never undercuts the true
distance; and when the rounds stop every edge is relaxed, which forces every value down to the true distance.
Float addition is monotone, so the minimum over paths is the same number a single-node Dijkstra settles. On an
unweighted lattice the values are whole steps, the int32 field the single-node BFS writes.

The same argument makes failures harmless. Every call carries the query, so a slab actor that died and was
restarted by Ray (``max_restarts``; the lost call is retried, ``max_task_retries``) rebuilds its slab from the
spec, reruns the first round from its own sources and then takes the halos: after a lost round, or a round in
which an actor started afresh, every slab sends its whole boundary rows once, and since its neighbours only
ever hold real path costs, the rounds resume and converge to the same exact answer.

Components: every slab labels its own rows with :func:`catalytic.components`; a union-find over the labels
that touch across slab faces merges them, and every piece is renumbered to the global rule (components
1..count by their lowest linear index). Slab ``k``'s pieces are numbered by their lowest index and every index
of slab ``k`` precedes those of slab ``k + 1``, so ordering pieces by (slab, local label) is ordering them by
lowest global index.
"""

from __future__ import annotations

import math
import os
import resource
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as Path_
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from catalytic.distributed._runtime import RETRIES, connect, explicit_arrays, lattice_from, rows_of
from catalytic.errors import CoordinateError, InvalidTypeError, MemoryBudgetError, NoPathError
from catalytic.kernels import DEFAULT_MEMORY_BUDGET, Path
from catalytic.kernels.backend import Backend, Geometry, run_with_fallback
from catalytic.lattice import Lattice, materialise_open, obstacle_generators

__all__ = [
    "HaloUpdate",
    "PartitionedLattice",
    "SlabWorker",
    "halo_rows",
    "partitioned_components",
    "partitioned_distance_field",
    "partitioned_shortest_path",
    "peak_rss",
    "slab_bounds",
    "slab_lattice",
]

_RECOVERIES = 3
T = TypeVar("T")


def peak_rss(reset: bool = False) -> int:
    """This process's peak resident set size in bytes (Linux: ``VmHWM``, which ``reset`` sets back to the current
    size first, so a later call gives the peak since; elsewhere the lifetime peak, ``ru_maxrss``)."""
    status = Path_("/proc/self/status")
    if not status.exists():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if reset:
        Path_("/proc/self/clear_refs").write_text("5")
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_budget() -> int:
    """This process's ``CATALYTIC_MEMORY_BUDGET`` in bytes (the kernels' default when unset)."""
    raw = os.environ.get("CATALYTIC_MEMORY_BUDGET")
    if raw is None:
        return DEFAULT_MEMORY_BUDGET
    try:
        return int(raw)
    except ValueError:
        raise InvalidTypeError("CATALYTIC_MEMORY_BUDGET", f"{raw!r} is not an integer", "a byte count") from None


def slab_bounds(rows: int, slabs: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of ``slabs`` near-equal slabs of an axis of ``rows`` rows (at most one per row)."""
    count = max(1, min(int(slabs), rows))
    edges = [rows * k // count for k in range(count + 1)]
    return [(edges[k], edges[k + 1]) for k in range(count)]


def halo_rows(rows: int, wrap: bool, lo: int, hi: int) -> tuple[list[int], int]:
    """The global rows a slab materialises, and how many of them (0 or 1) come before its own rows.

    A slab holds its rows ``lo .. hi - 1`` and, on each side where a neighbouring slab lies, that slab's
    nearest row: ``lo - 1`` and ``hi``, or across the wrap of axis 0 when ``wrap`` (periodic, several slabs).

    Examples
    --------
    >>> halo_rows(10, False, 0, 4), halo_rows(10, True, 0, 4), halo_rows(10, False, 0, 10)
    (([0, 1, 2, 3, 4], 0), ([9, 0, 1, 2, 3, 4], 1), ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 0))
    """
    before = [lo - 1] if lo > 0 else ([rows - 1] if wrap else [])
    after = [hi] if hi < rows else ([0] if wrap else [])
    return [*before, *range(lo, hi), *after], len(before)


def _rows_lattice(
    spec: Mapping[str, Any], rows: Sequence[int], wrap: bool, arrays: Mapping[str, np.ndarray] | None
) -> Lattice:
    """Global rows ``rows`` of axis 0 of a lattice as a lattice of their own, axis 0 periodic only if ``wrap``."""
    shape = tuple(int(n) for n in spec["shape"])
    periodic = list(Lattice(shape, periodic=spec.get("periodic", False)).periodic)
    periodic[0] = wrap
    arrays = arrays or {}
    is_open = materialise_open(shape, obstacle_generators(spec.get("obstacles") or []), arrays.get("blocked"), rows)
    return Lattice(is_open.shape, periodic=periodic, blocked=~is_open, weights=arrays.get("weights"))


def slab_lattice(
    spec: Mapping[str, Any], lo: int, hi: int, single: bool, arrays: Mapping[str, np.ndarray] | None = None
) -> Lattice:
    """Rows ``lo .. hi - 1`` of a lattice as a lattice of their own, obstacles hashed at GLOBAL indices.

    Parameters
    ----------
    spec : dict
        The whole lattice's spec.
    lo, hi : int
        The slab's rows on axis 0.
    single : bool
        Whether this slab is the whole lattice (then a periodic axis 0 stays periodic inside it).
    arrays : dict, optional
        The slab's rows of the explicit ``blocked`` / ``weights`` arrays.

    Returns
    -------
    Lattice
        Shape ``(hi - lo, *shape[1:])``, with the slab's open mask as its explicit ``blocked`` mask.

    Examples
    --------
    >>> whole = Lattice((4, 3), obstacles=[{"kind": "random", "p": 0.5, "seed": 1}])
    >>> part = slab_lattice(whole.spec(), 2, 4, single=False)
    >>> bool((part.open_mask() == whole.open_mask()[2:4]).all())
    True
    """
    wrap = single and bool(Lattice(spec["shape"], periodic=spec.get("periodic", False)).periodic[0])
    return _rows_lattice(spec, range(lo, hi), wrap, arrays)


@dataclass(frozen=True)
class HaloUpdate:
    """The entries of one boundary row that went down since the row was last sent: columns and new values.

    ``columns`` index the row (``prod(shape[1:])`` entries); ``values`` are int32 steps, or float64 costs on
    weighted lattices. Usually far smaller than the row after the first rounds.
    """

    columns: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes of the two arrays (what travels, bar Ray's framing)."""
        return int(self.columns.nbytes + self.values.nbytes)


class SlabWorker:
    """One slab of a partitioned lattice with its halo rows, its per-query distances and its component labels.

    Parameters
    ----------
    spec, lo, hi, single
        As for :func:`slab_lattice`.
    arrays : dict
        The explicit arrays at the slab's rows, halo rows included (in the order of :func:`halo_rows`).
    backend : str, optional
        Backend request for the kernels.
    """

    def __init__(
        self,
        spec: Mapping[str, Any],
        lo: int,
        hi: int,
        single: bool,
        arrays: Mapping[str, np.ndarray],
        backend: str | None,
    ) -> None:
        shape = tuple(int(n) for n in spec["shape"])
        periodic = Lattice(shape, periodic=spec.get("periodic", False)).periodic[0]
        rows, self.first = halo_rows(shape[0], periodic and not single, lo, hi)
        # which boundary rows have a neighbouring slab to send to (a halo row on that side)
        self._sides = (self.first > 0, len(rows) > self.first + hi - lo)
        self.halo = _rows_lattice(spec, rows, periodic and single, arrays)
        self.geometry = Geometry.of(self.halo)
        self.backend = backend
        self.lo, self.hi = lo, hi
        self.shape = (hi - lo, *shape[1:])
        self.row_size = math.prod(shape[1:])
        # the slab's own rows inside the halo lattice
        self.own = slice(self.first * self.row_size, (self.first + hi - lo) * self.row_size)
        self.query: str | None = None
        self.dist = np.zeros(0)
        self.labels: np.ndarray | None = None
        self._masks: dict[str, Any] = {}
        self._open: np.ndarray | None = None
        self._faces: tuple[np.ndarray, ...] | None = None
        self._sent: list[np.ndarray] = []
        self._column_dtype = np.int32 if self.row_size < 2**31 else np.int64

    def _run(self, call: Callable[[Backend, Any], T]) -> T:
        """Run ``call(backend, open_mask)`` on the requested backend (with its GPU fallback); masks are kept."""

        def run(be: Backend) -> T:
            if be.name not in self._masks:
                self._masks[be.name] = be.open_mask(self.geometry)
            return call(be, self._masks[be.name])

        result, _ = run_with_fallback(self.backend, run)
        return result

    # --- distances ---------------------------------------------------------------------------------------

    def state_bytes(self) -> int:
        """Bytes of search state a distance query holds on this slab, halo rows included.

        The open mask (1 B per vertex), the distances (int32 steps, or float64 costs when weighted) and the
        search's queue (one index per vertex; Dijkstra's heap holds a cost and an index). The query refuses to
        start past this process's ``CATALYTIC_MEMORY_BUDGET`` (:class:`catalytic.errors.MemoryBudgetError`).
        """
        index = 4 if self.halo.vertices < 2**31 - 1 else 8
        per_vertex = 1 + (8 + 8 + index if self.halo.weighted else 4 + index)
        return self.halo.vertices * per_vertex

    def peak_rss(self, reset: bool = False) -> int:
        """This actor process's peak resident set size in bytes; with ``reset``, the peak starts again from now."""
        return peak_rss(reset)

    def _unreached(self) -> float:
        return math.inf if self.halo.weighted else -1

    def _start(self, query: str, sources: np.ndarray) -> None:
        """Round one: the multi-source search from the slab's own sources (local indices).

        Unweighted slabs keep int32 steps (−1 unreached), as the single-node BFS writes them; weighted slabs
        keep float64 costs (``inf`` unreached).
        """
        needed, budget = self.state_bytes(), _memory_budget()
        if needed > budget:
            raise MemoryBudgetError(needed, budget, f"the search state of the slab of rows {self.lo}..{self.hi - 1}")
        self.query = query
        seeds = np.asarray(sources, dtype=np.int64) + self.own.start
        geom, vertices = self.geometry, self.halo.vertices

        def search(be: Backend, mask: Any) -> np.ndarray:
            if self.halo.weighted:
                costs = be.full(vertices, np.inf, np.float64)
                be.dijkstra(geom, mask, seeds, -1, costs, False)
                return be.to_host(costs)
            steps = be.full(vertices, -1, np.int32)
            be.bfs(geom, mask, seeds, -1, steps)
            return np.ascontiguousarray(be.to_host(steps), dtype=np.int32)

        if seeds.size:
            self.dist = self._run(search)
        else:
            self.dist = np.full(vertices, self._unreached(), dtype=np.float64 if self.halo.weighted else np.int32)
        # what this slab last sent of its first and last own rows: nothing yet
        self._sent = [np.full(self.row_size, self._unreached(), dtype=self.dist.dtype) for _ in range(2)]

    def _take_halos(self, from_prev: HaloUpdate | None, from_next: HaloUpdate | None) -> np.ndarray:
        """Lower the halo rows to the neighbours' updates; returns the halo vertices whose value dropped."""
        lowered = []
        starts = 0, self.own.stop
        for update, start in zip((from_prev, from_next), starts, strict=True):
            if update is None or update.columns.size == 0:
                continue
            index = start + update.columns.astype(np.int64)
            held = self.dist[index]
            lower = update.values < held
            if not self.halo.weighted:
                lower |= held < 0
            index = index[lower]
            self.dist[index] = update.values[lower]
            lowered.append(index)
        return np.concatenate(lowered) if lowered else np.zeros(0, dtype=np.int64)

    def _relax(self, seeds: np.ndarray) -> None:
        """Propagate the seeds' values through the slab; every value only ever goes down.

        Unweighted: a BFS whose seeds join at their own depths (:func:`._relax.lower_from_seeds`), on the numba
        backend's tiles within their limit and as a bucket search past it; it costs about a BFS. Weighted: the
        backend's Dijkstra, seeded (a finite cost is an upper bound).
        """
        if not self.halo.weighted:
            from catalytic.distributed._relax import axis_faces, lower_from_seeds
            from catalytic.kernels.numba_backend import tiles_fit

            geom = self.geometry
            if self._open is None:
                # the backend's host mask when it keeps one (numpy, numba), so the slab holds one copy
                self._open = self._run(lambda be, mask: np.ascontiguousarray(be.to_host(mask)).view(np.uint8))
                # only the bucket search, past the tile limit, runs on face bit sets (d / 4 bytes a vertex)
                if not tiles_fit(geom):
                    self._faces = axis_faces(geom.shape, geom.strides, self._open)
            lower_from_seeds(geom.shape, geom.strides, geom.periodic, self._open, self.dist, seeds, self._faces, geom)
            return

        def search(be: Backend, mask: Any) -> np.ndarray:
            costs = be.to_device(self.dist)
            be.dijkstra(self.geometry, mask, seeds, -1, costs, False)
            return be.to_host(costs)

        self.dist = self._run(search)

    def _updates(self, full: bool) -> tuple[HaloUpdate, HaloUpdate]:
        """The entries of the first and last own rows that went down since they were last sent (all, if ``full``)."""
        own = self.dist[self.own]
        rows = own[: self.row_size], own[-self.row_size :]
        out = []
        for row, sent, side in zip(rows, self._sent, self._sides, strict=True):
            if not side:
                out.append(HaloUpdate(np.zeros(0, self._column_dtype), row[:0].copy()))
                continue
            if full:
                sent.fill(self._unreached())
            changed = row < sent
            if not self.halo.weighted:
                changed = (row >= 0) & (changed | (sent < 0))
            columns = np.flatnonzero(changed).astype(self._column_dtype)
            values = row[columns]
            sent[columns] = values
            out.append(HaloUpdate(columns, values))
        return out[0], out[1]

    def step(
        self,
        query: str,
        sources: np.ndarray,
        from_prev: HaloUpdate | None,
        from_next: HaloUpdate | None,
        full: bool = False,
    ) -> tuple[HaloUpdate, HaloUpdate, tuple[bool, int]]:
        """One round: take the halo updates, lower what they reach, send what changed on the boundary rows.

        ``from_prev`` updates the halo row before this slab's first row (from the previous slab's last row),
        ``from_next`` the halo row after its last row. Returns ``(first-row update, last-row update,
        (fresh, bytes sent))``: each update holds only the entries that went down since the last round, all of
        them when ``full`` or when this slab (re)starts the query (``fresh``: a new query, or an actor that was
        restarted and lost it; its neighbours then resend their whole rows, see :class:`PartitionedLattice`).
        """
        fresh = query != self.query
        if fresh:
            self._start(query, sources)
        seeds = self._take_halos(from_prev, from_next)
        if seeds.size:
            self._relax(seeds)
        first, last = self._updates(full or fresh)
        return first, last, (fresh, first.nbytes + last.nbytes)

    def _external(self) -> np.ndarray:
        return self.dist[self.own].copy()

    def field(self, query: str) -> np.ndarray | None:
        """The slab's converged distances (None when this actor restarted and lost the query)."""
        if query != self.query:
            return None
        return self._external().reshape(self.shape)

    def value(self, query: str, local: int) -> float | None:
        """One converged distance (None when this actor restarted and lost the query)."""
        if query != self.query:
            return None
        return float(self.dist[self.own.start + local])

    def reached(self, query: str) -> int | None:
        """Vertices of the slab with a finite distance (None when this actor restarted and lost the query)."""
        if query != self.query:
            return None
        own = self.dist[self.own]
        return int(np.count_nonzero(np.isfinite(own) if self.halo.weighted else own >= 0))

    def trace(self, query: str, local: int, root: int) -> tuple[list[int], tuple[int, int] | None] | None:
        """Walk the canonical path back from ``local`` while it stays in this slab's own rows.

        The backends' path walk runs on the slab with its halo rows, which hold the converged faces of the
        neighbours once the rounds stop; it ends at ``root`` (a global index) or at its first step into a halo.

        Returns ``(global indices walked, crossing)``: ``crossing`` is ``(-1, column)`` when the walk continues
        in the previous slab's last row, ``(+1, column)`` in the next slab's first row, and None when it reached
        ``root``. Returns None when this actor restarted and lost the query.
        """
        if query != self.query:
            return None
        base = self.lo * self.row_size - self.own.start  # global index = halo index + base
        inside = self.own.start <= root - base < self.own.stop
        target = root - base if inside else -1

        def walk(be: Backend, mask: Any) -> np.ndarray:
            within = (self.own.start, self.own.stop)
            return be.trace_path(self.geometry, mask, be.to_device(self.dist), target, local + self.own.start, within)

        path = self._run(walk)
        end = int(path[-1])
        if end == target:
            return [base + int(v) for v in path], None
        return [base + int(v) for v in path[:-1]], (-1 if end < self.own.start else 1, end % self.row_size)

    # --- components --------------------------------------------------------------------------------------

    def _labels(self) -> np.ndarray:
        """The own rows' component labels: the backends' labelling of the slab with its halo rows closed."""

        def label(be: Backend, mask: Any) -> np.ndarray:
            own_only = mask.copy()
            own_only[: self.own.start] = 0
            own_only[self.own.stop :] = 0
            labels, _ = be.label(self.geometry, own_only)
            return be.to_host(labels)[self.own].astype(np.int64)

        if self.labels is None:
            self.labels = self._run(label)
        return self.labels

    def label_faces(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Local labelling: ``(count, first-row labels, last-row labels)``."""
        labels = self._labels()
        return int(labels.max(initial=0)), labels[: self.row_size].copy(), labels[-self.row_size :].copy()

    def relabel(self, mapping: np.ndarray) -> np.ndarray:
        """The slab's labels mapped to global labels (``mapping[local]``, 0 stays 0)."""
        return mapping[self._labels()].reshape(self.shape)

    def pid(self) -> int:
        """The actor's process id (tests use it to kill the actor)."""
        return os.getpid()


def _merge_labels(counts: Sequence[int], edges: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, int]:
    """Union-find over pieces ``0 .. sum(counts) - 1``; returns each piece's final label (1..count) and count.

    Pieces are joined along ``edges`` (pairs of piece-id arrays); a component is numbered by its smallest
    piece id, which is the order of lowest global index.
    """
    total = int(sum(counts))
    parent = np.arange(total, dtype=np.int64)
    if edges:
        a = np.concatenate([e[0] for e in edges])
        b = np.concatenate([e[1] for e in edges])
        while True:
            while True:
                jumped = parent[parent]
                if np.array_equal(jumped, parent):
                    break
                parent = jumped
            root_a, root_b = parent[a], parent[b]
            differ = root_a != root_b
            if not differ.any():
                break
            low = np.minimum(root_a[differ], root_b[differ])
            np.minimum.at(parent, root_a[differ], low)
            np.minimum.at(parent, root_b[differ], low)
    roots, final = np.unique(parent, return_inverse=True)
    return final.astype(np.int64) + 1, int(roots.size)


class PartitionedLattice:
    """A lattice held as slabs along axis 0 by Ray actors; answers distance fields, path lengths, components.

    Parameters
    ----------
    lattice_spec : dict
        ``Lattice.spec()``.
    slabs : int
        Number of slabs (at most one per row of axis 0).
    address : str, optional
        Ray address; defaults to ``RAY_ADDRESS``, else a local Ray.
    arrays : dict, optional
        Explicit ``blocked`` / ``weights`` arrays the spec references; each slab receives only its rows and
        its halo rows.
    backend : str, optional
        Backend request for the kernels on the slabs.
    num_cpus : float, optional
        CPUs reserved per slab actor; by default the cluster's CPUs shared out over the slabs (at most 1 each),
        so that every slab actor can be placed even on a small machine.

    Examples
    --------
    >>> with PartitionedLattice(Lattice((8, 8)).spec(), slabs=4) as part:  # doctest: +SKIP
    ...     part.distance_field([(0, 0)])[7, 7]
    14
    """

    def __init__(
        self,
        lattice_spec: Mapping[str, Any],
        slabs: int = 4,
        address: str | None = None,
        *,
        arrays: Mapping[str, Any] | None = None,
        backend: str | None = None,
        num_cpus: float | None = None,
    ) -> None:
        if isinstance(slabs, bool) or not isinstance(slabs, int) or slabs < 1:
            raise InvalidTypeError("slabs", f"{slabs!r} is not a positive integer", "an integer >= 1")
        self.lattice = lattice_from(lattice_spec, arrays)
        self.spec = self.lattice.spec()
        self.bounds = slab_bounds(self.lattice.shape[0], slabs)
        self.row_size = math.prod(self.lattice.shape[1:])
        self.wrap = self.lattice.periodic[0] and len(self.bounds) > 1
        self.rounds = 0
        self.recoveries = 0
        self.round_bytes: list[int] = []
        ray = connect(address)
        if num_cpus is None:
            num_cpus = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / len(self.bounds))
        explicit = explicit_arrays(self.spec, arrays)
        actor_cls = ray.remote(SlabWorker).options(num_cpus=num_cpus, max_restarts=RETRIES, max_task_retries=RETRIES)
        single = len(self.bounds) == 1
        # Each slab's rows of the explicit arrays (halo rows included) go to the object store once; the driver
        # keeps the references so that Ray can rerun a restarted actor's constructor with them. Procedural
        # lattices send nothing.
        rows = [halo_rows(self.lattice.shape[0], self.wrap, lo, hi)[0] for lo, hi in self.bounds]
        self._arrays = [ray.put(rows_of(explicit, picked)) if explicit else {} for picked in rows]
        self.actors = [
            actor_cls.remote(self.spec, lo, hi, single, ref, backend)
            for (lo, hi), ref in zip(self.bounds, self._arrays, strict=True)
        ]

    def __enter__(self) -> PartitionedLattice:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the slab actors."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def state_bytes(self) -> list[int]:
        """Each slab's search-state bytes for a distance query (:meth:`SlabWorker.state_bytes`)."""
        import ray

        return [int(n) for n in ray.get([actor.state_bytes.remote() for actor in self.actors])]

    def peak_rss(self, reset: bool = False) -> list[int]:
        """Each slab actor's peak resident set size in bytes (``reset``: start each peak again from now)."""
        import ray

        return [int(n) for n in ray.get([actor.peak_rss.remote(reset) for actor in self.actors])]

    # --- helpers -----------------------------------------------------------------------------------------

    def _neighbours(self, k: int) -> tuple[int | None, int | None]:
        last = len(self.bounds) - 1
        prev = k - 1 if k > 0 else (last if self.wrap else None)
        nxt = k + 1 if k < last else (0 if self.wrap else None)
        return prev, nxt

    def _slab_of(self, index: int) -> tuple[int, int]:
        row = index // self.row_size
        for k, (lo, hi) in enumerate(self.bounds):
            if lo <= row < hi:
                return k, index - lo * self.row_size
        raise CoordinateError("index", f"{index} is outside the lattice", f"0 to {self.lattice.vertices - 1}")

    def _sources(self, sources: Any) -> list[np.ndarray]:
        """Validated sources, as local indices per slab."""
        per_slab: list[list[int]] = [[] for _ in self.bounds]
        for index in _open_indices(self.lattice, sources, "sources"):
            k, local = self._slab_of(index)
            per_slab[k].append(local)
        return [np.unique(np.asarray(local, dtype=np.int64)) for local in per_slab]

    def _converge(self, query: str, sources: list[np.ndarray], on_round: Callable[[int], None] | None) -> None:
        """Run rounds until no slab sends an update; a round lost to a dead actor is run again (see module notes).

        Each slab's updates go straight to its neighbours' next step (object references; the driver only reads
        the small reports). After a round lost to a dead actor, or one in which a restarted actor started the
        query afresh, every slab sends its whole boundary rows once: the updates the lost round carried, or
        that the restarted actor had taken before, are sent again.
        """
        import ray
        from ray.exceptions import RayActorError

        first: list[Any] = [None] * len(self.actors)
        last: list[Any] = [None] * len(self.actors)
        full = False
        failures = 0
        self.round_bytes = []
        while True:
            outputs = []
            for k, actor in enumerate(self.actors):
                prev, nxt = self._neighbours(k)
                from_prev = None if prev is None else last[prev]
                from_next = None if nxt is None else first[nxt]
                step = actor.step.options(num_returns=3)
                outputs.append(step.remote(query, sources[k], from_prev, from_next, full))
            try:
                reports = ray.get([out[2] for out in outputs])
            except RayActorError:
                failures += 1
                self.recoveries += 1
                if failures > _RECOVERIES:
                    raise
                full = True
                continue
            first = [out[0] for out in outputs]
            last = [out[1] for out in outputs]
            restarted = bool(self.round_bytes) and any(fresh for fresh, _ in reports)
            self.rounds += 1
            self.round_bytes.append(sum(sent for _, sent in reports))
            if on_round is not None:
                on_round(self.rounds)
            if restarted:
                self.recoveries += 1
            full = restarted
            if not full and self.round_bytes[-1] == 0:
                return

    def _query(self, sources: Any, collect: Callable[[str], Any], on_round: Callable[[int], None] | None) -> Any:
        """Converge a query and collect from it, starting over if an actor lost it after convergence."""
        per_slab = self._sources(sources)
        for _ in range(_RECOVERIES + 1):
            query = uuid.uuid4().hex
            self._converge(query, per_slab, on_round)
            answer = collect(query)
            if answer is not None:
                return answer
            self.recoveries += 1
        raise RuntimeError("slab actors kept failing; no answer was produced")

    # --- queries -----------------------------------------------------------------------------------------

    def distance_field(self, sources: Any, *, on_round: Callable[[int], None] | None = None) -> np.ndarray:
        """Multi-source distance field, gathered on the driver; equals :func:`catalytic.distance_field`.

        Parameters
        ----------
        sources : sequence
            One coordinate, or a list of coordinates; all start at distance 0.
        on_round : callable, optional
            Called with the number of rounds completed so far after every round.

        Returns
        -------
        numpy.ndarray
            int32 steps (−1 unreachable), or float64 costs (``inf`` unreachable) on weighted lattices.

        Raises
        ------
        CoordinateError, BlockedVertexError
            A source outside the lattice or blocked.
        """
        import ray

        def collect(query: str) -> np.ndarray | None:
            parts = ray.get([actor.field.remote(query) for actor in self.actors])
            if any(part is None for part in parts):
                return None
            return np.concatenate(parts, axis=0)

        result: np.ndarray = self._query(sources, collect, on_round)
        return result

    def path_length(
        self, start: Sequence[int], goal: Sequence[int], *, on_round: Callable[[int], None] | None = None
    ) -> float:
        """The length of :meth:`shortest_path`'s path (hops as an int, or the cost when weighted), not walked.

        Only the goal's value travels back to the driver; the field stays on the slabs.

        Raises
        ------
        CoordinateError, BlockedVertexError, NoPathError
            As :meth:`shortest_path`.
        """
        g = self.lattice.check_vertex(goal, "goal")
        value = self._query([list(start)], lambda query: self._goal_value(query, g, start, goal), on_round)
        return value if self.lattice.weighted else int(value)

    def _goal_value(self, query: str, g: int, start: Sequence[int], goal: Sequence[int]) -> float | None:
        """The converged value at ``g``; None when its actor lost the query.

        Raises
        ------
        NoPathError
            ``g`` is unreachable.
        """
        import ray

        k, local = self._slab_of(g)
        value: float | None = ray.get(self.actors[k].value.remote(query, local))
        if value is not None and (value < 0 or not math.isfinite(value)):
            raise NoPathError(tuple(start), tuple(goal))
        return value

    def shortest_path(
        self, start: Sequence[int], goal: Sequence[int], *, on_round: Callable[[int], None] | None = None
    ) -> Path:
        """The canonical shortest path, equal to :func:`catalytic.shortest_path` with ``method="bfs"``
        (``"dijkstra"`` on weighted lattices): same coordinates, length and cost.

        The distance field from ``start`` stays on the slabs; the path is walked back from the goal slab by
        slab, each actor walking while the path stays in its rows and handing over at a face. ``expanded`` is
        the number of vertices the rounds reached (the field runs to exhaustion, not to the goal).

        Raises
        ------
        CoordinateError, BlockedVertexError
            An endpoint outside the lattice or blocked.
        NoPathError
            The goal is unreachable.
        """
        import ray

        s = self.lattice.check_vertex(start, "start")
        g = self.lattice.check_vertex(goal, "goal")

        def collect(query: str) -> tuple[list[int], float, int] | None:
            value = self._goal_value(query, g, start, goal)
            if value is None:
                return None
            k, local = self._slab_of(g)
            walked: list[int] = []
            for _ in range(self.lattice.vertices):
                prev, nxt = self._neighbours(k)
                part = ray.get(self.actors[k].trace.remote(query, local, s))
                if part is None:
                    return None
                indices, crossing = part
                walked.extend(indices)
                if crossing is None:
                    reached = ray.get([actor.reached.remote(query) for actor in self.actors])
                    if any(r is None for r in reached):
                        return None
                    return walked, value, sum(reached)
                side, column = crossing
                if side < 0:
                    k = prev  # type: ignore[assignment]
                    local = (self.bounds[k][1] - self.bounds[k][0] - 1) * self.row_size + column
                else:
                    k = nxt  # type: ignore[assignment]
                    local = column
            raise RuntimeError("the path walk did not reach the start")

        walked, value, reached = self._query([list(start)], collect, on_round)
        indices = np.asarray(walked[::-1], dtype=np.int64)
        weighted = self.lattice.weighted
        return Path(
            coords=self.lattice.coords_of(indices),
            length=len(indices) - 1,
            cost=float(value),
            expanded=int(reached),
            method="dijkstra" if weighted else "bfs",
            backend="ray",
            memory_source={"mode": "partitioned", "slabs": len(self.actors)},
        )

    def components(self) -> tuple[np.ndarray, int]:
        """Connected components, numbered like :func:`catalytic.components`; labels gathered on the driver.

        Returns
        -------
        labels : numpy.ndarray
            The lattice's shape; 1..count by each component's lowest linear index, 0 where blocked.
        count : int
        """
        import ray

        faces = ray.get([actor.label_faces.remote() for actor in self.actors])
        counts = [count for count, _, _ in faces]
        base = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        edges = []
        for k in range(len(self.actors)):
            _, nxt = self._neighbours(k)
            if nxt is None:
                continue
            last, first = faces[k][2], faces[nxt][1]
            touching = (last > 0) & (first > 0)
            edges.append((base[k] + last[touching] - 1, base[nxt] + first[touching] - 1))
        final, count = _merge_labels(counts, edges)
        parts = []
        for k, actor in enumerate(self.actors):
            mapping = np.concatenate([[0], final[base[k] : base[k + 1]]]).astype(np.int64)
            parts.append(actor.relabel.remote(mapping))
        return np.concatenate(ray.get(parts), axis=0), count


def _open_indices(lattice: Lattice, points: Any, field: str) -> list[int]:
    """Linear indices of one coordinate or a list of them, each checked to be an open vertex of the lattice.

    The generators are hashed per point only, so the driver checks points without materialising the mask.
    """
    coords = np.asarray(points)
    coords = coords[np.newaxis, :] if coords.ndim == 1 else coords
    if coords.ndim != 2 or coords.shape[0] == 0:
        allowed = f"one coordinate or a list of coordinates with {lattice.ndim} integers each"
        raise CoordinateError(field, "expected one or more coordinates", allowed)
    one = len(coords) == 1 and field != "sources"
    return [lattice.check_vertex(point, field if one else f"{field}[{i}]") for i, point in enumerate(coords)]


def _validate_sources(spec: Mapping[str, Any], arrays: Mapping[str, Any] | None, points: Any, field: str) -> None:
    """Check points on the driver before any actor starts."""
    _open_indices(lattice_from(spec, arrays), points, field)


def partitioned_distance_field(
    lattice_spec: Mapping[str, Any],
    sources: Any,
    slabs: int = 4,
    address: str | None = None,
    *,
    arrays: Mapping[str, Any] | None = None,
    backend: str | None = None,
) -> np.ndarray:
    """Distance field of a lattice split into ``slabs`` slabs along axis 0 across Ray actors.

    Parameters
    ----------
    lattice_spec : dict
        ``Lattice.spec()``.
    sources : sequence
        One coordinate, or a list of coordinates.
    slabs : int
        Number of slab actors.
    address, arrays, backend
        As for :class:`PartitionedLattice`.

    Returns
    -------
    numpy.ndarray
        Identical to :func:`catalytic.distance_field` on the whole lattice.

    Raises
    ------
    CoordinateError, BlockedVertexError
        As :func:`catalytic.distance_field`, checked on the driver before any actor starts.

    Examples
    --------
    >>> partitioned_distance_field(Lattice((4, 1)).spec(), [(0, 0)], slabs=2).ravel().tolist()  # doctest: +SKIP
    [0, 1, 2, 3]
    """
    _validate_sources(lattice_spec, arrays, sources, "sources")
    with PartitionedLattice(lattice_spec, slabs, address, arrays=arrays, backend=backend) as part:
        return part.distance_field(sources)


def partitioned_shortest_path(
    lattice_spec: Mapping[str, Any],
    start: Sequence[int],
    goal: Sequence[int],
    slabs: int = 4,
    address: str | None = None,
    *,
    arrays: Mapping[str, Any] | None = None,
    backend: str | None = None,
) -> Path:
    """The canonical shortest path on a partitioned lattice (see :meth:`PartitionedLattice.shortest_path`).

    Returns
    -------
    Path
        The same coordinates, length and cost as :func:`catalytic.shortest_path` with ``method="bfs"``
        (``"dijkstra"`` when weighted); ``backend`` is ``"ray"``.

    Raises
    ------
    CoordinateError, BlockedVertexError, NoPathError
        As :meth:`PartitionedLattice.shortest_path`; the endpoints are checked before any actor starts.

    Examples
    --------
    >>> partitioned_shortest_path(Lattice((6, 2)).spec(), (0, 0), (5, 1), slabs=3).length  # doctest: +SKIP
    6
    """
    _validate_sources(lattice_spec, arrays, [start], "start")
    _validate_sources(lattice_spec, arrays, [goal], "goal")
    with PartitionedLattice(lattice_spec, slabs, address, arrays=arrays, backend=backend) as part:
        return part.shortest_path(start, goal)


def partitioned_components(
    lattice_spec: Mapping[str, Any],
    slabs: int = 4,
    address: str | None = None,
    *,
    arrays: Mapping[str, Any] | None = None,
    backend: str | None = None,
) -> tuple[np.ndarray, int]:
    """Connected components of a partitioned lattice, labelled exactly as :func:`catalytic.components`.

    Returns
    -------
    labels : numpy.ndarray
    count : int

    Examples
    --------
    >>> labels, count = partitioned_components(Lattice((4, 2)).spec(), slabs=2)  # doctest: +SKIP
    >>> count  # doctest: +SKIP
    1
    """
    with PartitionedLattice(lattice_spec, slabs, address, arrays=arrays, backend=backend) as part:
        return part.components()
