"""Lattices split into slabs along axis 0, one Ray actor per slab.

Each :class:`SlabWorker` holds one slab: rows ``lo .. hi - 1`` of axis 0 as a lattice of its own (its open
mask hashed from the GLOBAL linear indices of those rows, its part of the explicit mask and weights; wrap on
axes 1.. stays inside the slab) and, per query, the slab's distances. Slabs talk only through their two
boundary faces (the first and last row): a face is one row of ``prod(shape[1:])`` values.

Distance fields run in rounds. In the first round every slab runs the single-node kernel
(:func:`catalytic.distance_field`) from the sources it holds. In every later round each slab receives its
neighbours' boundary faces (the one-face halos), offers every boundary vertex the cost through the halo
(``halo + cost(v)``, where ``cost`` is 1, or the weight of entering ``v``), and relaxes every improvement
through the slab until nothing changes locally: many BFS levels, or many Bellman-Ford sweeps, per round. The
rounds stop after one in which no slab changed.

Why the answer is exact (bit for bit, weights included): every stored value is the cost of a real path,
summed left to right as the kernels sum it, so it never undercuts the true distance; and when the rounds stop
every edge is relaxed, which forces every value down to the true distance. Float addition is monotone, so the
minimum over paths is the same number a single-node Dijkstra settles.

The same argument makes failures harmless. Every call carries the query, so a slab actor that died and was
restarted by Ray (``max_restarts``; the lost call is retried, ``max_task_retries``) rebuilds its slab from
the spec, reruns the first round from its own sources and then takes the current halos: its neighbours only
ever hold real path costs, so the rounds resume and converge to the same exact answer.

Components: every slab labels itself with :func:`catalytic.components`; a union-find over the labels that
touch across slab faces merges them, and every piece is renumbered to the global rule (components 1..count by
their lowest linear index). Slab ``k``'s pieces are numbered by their lowest index and every index of slab
``k`` precedes those of slab ``k + 1``, so ordering pieces by (slab, local label) is ordering them by lowest
global index.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np

from catalytic.distributed._runtime import RETRIES, connect, explicit_arrays, lattice_from, slab_arrays
from catalytic.errors import CoordinateError, InvalidTypeError, NoPathError
from catalytic.kernels import Path, components, distance_field
from catalytic.lattice import Lattice, random_blocked

__all__ = [
    "PartitionedLattice",
    "SlabWorker",
    "partitioned_components",
    "partitioned_distance_field",
    "partitioned_shortest_path",
    "slab_bounds",
    "slab_lattice",
]

_UNREACHED_STEPS = np.iinfo(np.int32).max
_RECOVERIES = 3


def slab_bounds(rows: int, slabs: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of ``slabs`` near-equal slabs of an axis of ``rows`` rows (at most one per row)."""
    count = max(1, min(int(slabs), rows))
    edges = [rows * k // count for k in range(count + 1)]
    return [(edges[k], edges[k + 1]) for k in range(count)]


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
    shape = tuple(int(n) for n in spec["shape"])
    periodic = list(Lattice(shape, periodic=spec.get("periodic", False)).periodic)
    row_size = math.prod(shape[1:])
    sub_shape = (hi - lo, *shape[1:])
    blocked = np.zeros(sub_shape, dtype=bool)
    flat = blocked.reshape(-1)
    for obstacle in spec.get("obstacles") or []:
        if obstacle["kind"] == "random" and obstacle["p"] > 0:
            flat |= random_blocked(int(obstacle["seed"]), float(obstacle["p"]), lo * row_size, hi * row_size)
        elif obstacle["kind"] == "box":
            first, last = max(obstacle["lo"][0], lo), min(obstacle["hi"][0], hi - 1)
            if first <= last:
                window = [slice(first - lo, last - lo + 1)]
                window += [slice(a, b + 1) for a, b in zip(obstacle["lo"][1:], obstacle["hi"][1:], strict=True)]
                blocked[tuple(window)] = True
    arrays = arrays or {}
    if "blocked" in arrays:
        blocked |= arrays["blocked"].astype(bool)
    periodic[0] = periodic[0] and single
    return Lattice(sub_shape, periodic=periodic, blocked=blocked, weights=arrays.get("weights"))


def _steps(
    shape: Sequence[int], periodic: Sequence[bool], index: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(origin, neighbour)`` index pairs for every in-slab step from ``index``, wrapping on periodic axes."""
    strides = [math.prod(shape[k + 1 :]) for k in range(len(shape))]
    for n, stride, wrap in zip(shape, strides, periodic, strict=True):
        if n == 1:
            continue
        coord = (index // stride) % n
        for step in (-1, 1):
            inside = coord > 0 if step < 0 else coord < n - 1
            if wrap:
                yield index, np.where(inside, index + step * stride, index - step * (n - 1) * stride)
            else:
                yield index[inside], index[inside] + step * stride


class SlabWorker:
    """One slab of a partitioned lattice, with its per-query distances and its component labels.

    Parameters
    ----------
    spec : dict
        The whole lattice's spec.
    lo, hi : int
        The slab's rows on axis 0.
    single : bool
        Whether this slab is the whole lattice.
    arrays : dict
        The slab's rows of the explicit arrays.
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
        self.lattice = slab_lattice(spec, lo, hi, single, arrays)
        self.backend = backend
        self.row_size = math.prod(self.lattice.shape[1:])
        self.is_open = self.lattice.open_mask_flat()
        self.cost = None if self.lattice.weights is None else self.lattice.weights.ravel()
        self.unreached: float = math.inf if self.lattice.weighted else _UNREACHED_STEPS
        self.query: str | None = None
        self.dist = np.zeros(0)
        self.labels: np.ndarray | None = None

    # --- distances ---------------------------------------------------------------------------------------

    def _start(self, query: str, sources: np.ndarray) -> None:
        """Round one: the single-node kernel from the slab's own sources (local indices)."""
        self.query = query
        if sources.size:
            field = distance_field(self.lattice, self.lattice.coords_of(sources), backend=self.backend).ravel()
            if not self.lattice.weighted:
                field = np.where(field < 0, _UNREACHED_STEPS, field).astype(np.int32)
            self.dist = np.ascontiguousarray(field)
        else:
            dtype = np.float64 if self.lattice.weighted else np.int32
            self.dist = np.full(self.lattice.vertices, self.unreached, dtype=dtype)

    def _offer(self, targets: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Lower ``dist[targets]`` to ``values`` where smaller; returns the distinct improved targets."""
        better = values < self.dist[targets]
        targets, values = targets[better], values[better]
        if not targets.size:
            return targets
        np.minimum.at(self.dist, targets, values)
        return np.unique(targets)

    def _entering(self, targets: np.ndarray, base: np.ndarray) -> np.ndarray:
        if self.cost is None:
            return base + 1
        return base + self.cost[targets]

    def _halo(self, face: np.ndarray | None, row: int) -> np.ndarray:
        """Offer the boundary row ``row`` the costs through a neighbour's face; returns improved vertices."""
        if face is None:
            return np.zeros(0, dtype=np.int64)
        targets = np.arange(row * self.row_size, (row + 1) * self.row_size, dtype=np.int64)
        usable = (face < self.unreached) & self.is_open[targets]
        targets = targets[usable]
        return self._offer(targets, self._entering(targets, face[usable].astype(self.dist.dtype)))

    def _relax(self, frontier: np.ndarray) -> None:
        """Propagate improvements from ``frontier`` through the slab until none is left."""
        shape, periodic = self.lattice.shape, self.lattice.periodic
        while frontier.size:
            origins, targets = [], []
            for origin, target in _steps(shape, periodic, frontier):
                origins.append(origin)
                targets.append(target)
            if not origins:  # every axis has length 1: nothing to relax inside the slab
                return
            origin = np.concatenate(origins)
            target = np.concatenate(targets)
            usable = self.is_open[target]
            origin, target = origin[usable], target[usable]
            frontier = self._offer(target, self._entering(target, self.dist[origin]))

    def step(
        self, query: str, sources: np.ndarray, from_prev: np.ndarray | None, from_next: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """One round: take the halos, relax, and return ``(first face, last face, changed)``.

        ``from_prev`` is the previous slab's last row (the neighbours of this slab's first row), ``from_next``
        the next slab's first row. A slab that (re)starts the query reports ``changed``.
        """
        fresh = query != self.query
        if fresh:
            self._start(query, sources)
        improved = np.union1d(self._halo(from_prev, 0), self._halo(from_next, self.lattice.shape[0] - 1))
        self._relax(improved)
        return self.dist[: self.row_size].copy(), self.dist[-self.row_size :].copy(), bool(fresh or improved.size)

    def _external(self) -> np.ndarray:
        if self.lattice.weighted:
            return self.dist.copy()
        return np.where(self.dist == _UNREACHED_STEPS, -1, self.dist).astype(np.int32)

    def field(self, query: str) -> np.ndarray | None:
        """The slab's converged distances (None when this actor restarted and lost the query)."""
        if query != self.query:
            return None
        return self._external().reshape(self.lattice.shape)

    def value(self, query: str, local: int) -> float | None:
        """One converged distance (None when this actor restarted and lost the query)."""
        if query != self.query:
            return None
        return float(self._external()[local])

    def reached(self, query: str) -> int | None:
        """Vertices of the slab with a finite distance (None when this actor restarted and lost the query)."""
        if query != self.query:
            return None
        return int(np.count_nonzero(self.dist < self.unreached))

    def trace(
        self,
        query: str,
        local: int,
        root: int,
        lo_row: int,
        from_prev: np.ndarray | None,
        from_next: np.ndarray | None,
    ) -> tuple[list[int], tuple[int, int] | None] | None:
        """Walk the canonical path back from ``local`` while it stays in this slab.

        Each step goes to the first open neighbour, in the neighbour order of :mod:`catalytic.kernels.backend`,
        whose distance plus the cost of entering the current vertex equals the current vertex's distance; a
        neighbour across the first or last row is read from the converged halo ``from_prev`` / ``from_next``.

        Returns ``(global indices walked, crossing)``: ``crossing`` is ``(-1, column)`` when the walk continues
        in the previous slab's last row, ``(+1, column)`` in the next slab's first row, and None when it reached
        ``root`` (a global index). Returns None when this actor restarted and lost the query.
        """
        if query != self.query:
            return None
        shape, periodic, strides = self.lattice.shape, self.lattice.periodic, self.lattice.strides
        rows, size = shape[0], self.row_size
        base = lo_row * size
        walked = [base + local]
        v = local
        for _ in range(self.lattice.vertices):
            if base + v == root:
                return walked, None
            here = self.dist[v]
            cost = 1 if self.cost is None else self.cost[v]
            chosen: int | None = None
            crossing: tuple[int, int] | None = None
            for k, (n, stride, wrap) in enumerate(zip(shape, strides, periodic, strict=True)):
                coord = (v // stride) % n
                for step in (-1, 1):
                    edge = coord == 0 if step < 0 else coord == n - 1
                    if k == 0 and edge and not wrap:
                        face = from_prev if step < 0 else from_next
                        if face is not None and face[v % size] < self.unreached and face[v % size] + cost == here:
                            crossing = (step, v % size)
                            break
                        continue
                    if edge and not wrap:
                        continue
                    u = v + step * stride if not edge else v - step * (n - 1) * stride
                    if self.is_open[u] and self.dist[u] < self.unreached and self.dist[u] + cost == here:
                        chosen = u
                        break
                if chosen is not None or crossing is not None:
                    break
            if crossing is not None:
                return walked, crossing
            if chosen is None:
                break
            v = chosen
            walked.append(base + v)
        raise RuntimeError(f"no predecessor chain from slab vertex {local} (rows {lo_row}..{lo_row + rows - 1})")

    # --- components --------------------------------------------------------------------------------------

    def _labels(self) -> np.ndarray:
        if self.labels is None:
            labels, _ = components(self.lattice, backend=self.backend)
            self.labels = labels.ravel().astype(np.int64)
        return self.labels

    def label_faces(self) -> tuple[int, np.ndarray, np.ndarray]:
        """Local labelling: ``(count, first-row labels, last-row labels)``."""
        labels = self._labels()
        return int(labels.max(initial=0)), labels[: self.row_size].copy(), labels[-self.row_size :].copy()

    def relabel(self, mapping: np.ndarray) -> np.ndarray:
        """The slab's labels mapped to global labels (``mapping[local]``, 0 stays 0)."""
        return mapping[self._labels()].reshape(self.lattice.shape)

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
        Explicit ``blocked`` / ``weights`` arrays the spec references; each slab receives only its rows.
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
        self._faces: tuple[list[Any], list[Any]] = ([], [])
        ray = connect(address)
        if num_cpus is None:
            num_cpus = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / len(self.bounds))
        explicit = explicit_arrays(self.spec, arrays)
        actor_cls = ray.remote(SlabWorker).options(num_cpus=num_cpus, max_restarts=RETRIES, max_task_retries=RETRIES)
        single = len(self.bounds) == 1
        # Each slab's rows of the explicit arrays go to the object store once; the driver keeps the references so
        # that Ray can rerun a restarted actor's constructor with them. Procedural lattices send nothing.
        self._arrays = [ray.put(slab_arrays(explicit, lo, hi)) if explicit else {} for lo, hi in self.bounds]
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
        allowed = f"one coordinate or a list of coordinates with {self.lattice.ndim} integers each"
        coords = np.asarray(sources)
        coords = coords[np.newaxis, :] if coords.ndim == 1 else coords
        if coords.ndim != 2 or coords.shape[0] == 0:
            raise CoordinateError("sources", "expected one or more coordinates", allowed)
        per_slab: list[list[int]] = [[] for _ in self.bounds]
        for i, point in enumerate(coords):
            index = self.lattice.check_vertex(point, f"sources[{i}]")
            k, local = self._slab_of(index)
            per_slab[k].append(local)
        return [np.unique(np.asarray(local, dtype=np.int64)) for local in per_slab]

    def _converge(self, query: str, sources: list[np.ndarray], on_round: Callable[[int], None] | None) -> None:
        """Run rounds until no slab changes; a round lost to a dead actor is run again (see module notes)."""
        import ray
        from ray.exceptions import RayActorError

        first_faces: list[Any] = [None] * len(self.actors)
        last_faces: list[Any] = [None] * len(self.actors)
        failures = 0
        while True:
            outputs = []
            for k, actor in enumerate(self.actors):
                prev, nxt = self._neighbours(k)
                from_prev = None if prev is None else last_faces[prev]
                from_next = None if nxt is None else first_faces[nxt]
                outputs.append(actor.step.options(num_returns=3).remote(query, sources[k], from_prev, from_next))
            try:
                changed = ray.get([out[2] for out in outputs])
            except RayActorError:
                failures += 1
                self.recoveries += 1
                if failures > _RECOVERIES:
                    raise
                continue
            first_faces = [out[0] for out in outputs]
            last_faces = [out[1] for out in outputs]
            self._faces = (first_faces, last_faces)  # the converged halos once no slab changes
            self.rounds += 1
            if on_round is not None:
                on_round(self.rounds)
            if not any(changed):
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
        """Shortest path length from ``start`` to ``goal`` (hops as an int, or the cost when weighted).

        Only the goal's value travels back to the driver; the field stays on the slabs.

        Raises
        ------
        CoordinateError, BlockedVertexError
            An endpoint outside the lattice or blocked.
        NoPathError
            The goal is unreachable.
        """
        import ray

        g = self.lattice.check_vertex(goal, "goal")
        k, local = self._slab_of(g)

        def collect(query: str) -> float | None:
            value: float | None = ray.get(self.actors[k].value.remote(query, local))
            return value

        value = self._query([list(start)], collect, on_round)
        if value < 0 or not math.isfinite(value):
            raise NoPathError(tuple(start), tuple(goal))
        return value if self.lattice.weighted else int(value)

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
            k, local = self._slab_of(g)
            value = ray.get(self.actors[k].value.remote(query, local))
            if value is None:
                return None
            if value < 0 or not math.isfinite(value):
                raise NoPathError(tuple(start), tuple(goal))
            first_faces, last_faces = self._faces
            walked: list[int] = []
            for _ in range(self.lattice.vertices):
                prev, nxt = self._neighbours(k)
                from_prev = None if prev is None else last_faces[prev]
                from_next = None if nxt is None else first_faces[nxt]
                part = ray.get(self.actors[k].trace.remote(query, local, s, self.bounds[k][0], from_prev, from_next))
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


def _validate_sources(spec: Mapping[str, Any], arrays: Mapping[str, Any] | None, points: Any, field: str) -> None:
    """Check points on the driver before any actor starts (the generators are hashed per point only)."""
    lattice = lattice_from(spec, arrays)
    coords = np.asarray(points)
    coords = coords[np.newaxis, :] if coords.ndim == 1 else coords
    if coords.ndim != 2 or coords.shape[0] == 0:
        raise CoordinateError(field, "expected one or more coordinates", f"coordinates of {lattice.ndim} integers")
    for i, point in enumerate(coords):
        lattice.check_vertex(point, field if len(coords) == 1 and field != "sources" else f"{field}[{i}]")


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
        A source outside the lattice or blocked.

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
    CoordinateError, BlockedVertexError
        An endpoint outside the lattice or blocked.
    NoPathError
        The goal is unreachable.

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
    >>> count
    1
    """
    with PartitionedLattice(lattice_spec, slabs, address, arrays=arrays, backend=backend) as part:
        return part.components()
