"""Where catalytic's numba calls spend their time, stage by stage, measured beside the rows they explain."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.kernels import peers
from bench.kernels.lattices import Ends, coords
from bench.kernels.timing import interleaved, with_overhead


def profile_path(lat_spec: dict[str, Any], start: int, goal: int, repeat: int) -> dict[str, Any]:
    """Where an end-to-end numba shortest path spends its time, primitive by primitive (medians, seconds).

    Each stage is called on its own with the inputs the public call uses; ``search`` includes allocating its
    state arrays (timed apart as ``state_allocation`` too).
    """
    import catalytic
    from catalytic.kernels.backend import Geometry, get_backend

    be = get_backend("numba")
    shape = tuple(lat_spec["shape"])
    s_coords, g_coords = coords(start, shape), coords(goal, shape)
    lat = catalytic.Lattice(**lat_spec)
    geom = Geometry.of(lat)
    mask = be.open_mask(geom)
    sources = np.asarray([start], dtype=np.int64)
    n = geom.vertices

    def bfs_once() -> np.ndarray:
        dist = be.full(n, -1, np.int32)
        be.bfs(geom, mask, sources, goal, dist)
        return dist

    def astar_once() -> np.ndarray:
        costs = be.full(n, np.inf, np.float64)
        be.dijkstra_written(geom, mask, sources, goal, costs, True)
        return costs

    dist = bfs_once()
    path = be.trace_path(geom, mask, dist, start, goal)
    costs = astar_once()
    common = {
        "lattice_construction": lambda: catalytic.Lattice(**lat_spec),
        "endpoint_checks": lambda: (lat.check_vertex(s_coords, "start"), lat.check_vertex(g_coords, "goal")),
        "geometry": lambda: Geometry.of(lat),
        "mask_materialisation": lambda: be.open_mask(geom),
        "coords_of": lambda: lat.coords_of(path[::-1]),
    }
    bfs = interleaved(
        {
            **common,
            "state_allocation": lambda: be.full(n, -1, np.int32),
            "search (incl. allocation)": bfs_once,
            "trace_path": lambda: be.trace_path(geom, mask, dist, start, goal),
            "end_to_end": lambda: catalytic.shortest_path(
                catalytic.Lattice(**lat_spec), s_coords, g_coords, "bfs", "numba"
            ),
        },
        repeat,
    )
    auto = interleaved(
        {
            **common,
            # auto runs A*; shortest_path reuses a pooled array that each query puts back, so its real
            # allocation cost is below this fresh one.
            "state_allocation": lambda: be.full(n, np.inf, np.float64),
            "search (incl. allocation)": astar_once,
            "trace_path": lambda: be.trace_path(geom, mask, costs, start, goal),
            "end_to_end": lambda: catalytic.shortest_path(
                catalytic.Lattice(**lat_spec), s_coords, g_coords, "auto", "numba"
            ),
        },
        repeat,
    )
    parts = [*common, "search (incl. allocation)", "trace_path"]
    return {"bfs": with_overhead(bfs, "end_to_end", parts), "auto": with_overhead(auto, "end_to_end", parts)}


def profile_pairs(lat: Any, as_coords: Sequence[tuple[Any, Any]], repeat: int) -> dict[str, float]:
    """Per-query cost of a warm numba ``auto`` (A*) path on a prebuilt lattice, by stage, over a sample of pairs.

    The stages use a fresh state array per query; ``shortest_path()`` itself reuses a pooled one that each query
    puts back, so ``python_overhead`` can come out negative.
    """
    import catalytic
    from catalytic.kernels.backend import Geometry, get_backend

    be = get_backend("numba")
    geom = Geometry.of(lat)
    mask = be.open_mask(geom)
    n = geom.vertices
    sample = [(lat.index_of(s).item(), lat.index_of(g).item(), s, g) for s, g in as_coords[:repeat]]
    stages: dict[str, list[float]] = {
        "state_allocation (float64 N, fresh)": [],
        "search": [],
        "trace_path": [],
        "shortest_path() warm": [],
    }
    for s, g, s_coords, g_coords in sample:
        t0 = time.perf_counter()
        costs = be.full(n, np.inf, np.float64)
        t1 = time.perf_counter()
        be.dijkstra_written(geom, mask, np.asarray([s], dtype=np.int64), g, costs, True)
        t2 = time.perf_counter()
        be.trace_path(geom, mask, costs, s, g)
        t3 = time.perf_counter()
        catalytic.shortest_path(lat, s_coords, g_coords, "auto", "numba")
        t4 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(value)
    medians = {name: statistics.median(values) for name, values in stages.items()}
    return with_overhead(medians, "shortest_path() warm", list(medians)[:3])


def profile_components(lat: Any, repeat: int) -> dict[str, float]:
    """Where a warm numba ``components`` call spends its time (medians, seconds)."""
    import catalytic
    from catalytic.kernels.backend import Geometry, get_backend

    be = get_backend("numba")
    geom = Geometry.of(lat)
    mask = be.open_mask(geom)
    stages = interleaved(
        {
            "mask_materialisation (first call only)": lambda: be.open_mask(geom),
            "label": lambda: be.label(geom, mask),
            "components() warm": lambda: catalytic.components(lat, "numba"),
        },
        repeat,
    )
    return with_overhead(stages, "components() warm", ["label"])


def head_to_head_components(lat: Any, open_grid: np.ndarray, peer: str, ends: Ends, repeat: int) -> dict[str, float]:
    """catalytic[numba] components against one peer that labels the mask, called in alternation (medians, seconds).

    The rows time each implementation in its own block of repeats; alternating them makes both see the same
    machine, which on a shared 2-core machine matters more than the difference being measured.
    """
    import catalytic

    impl, call = peers.component_call(peer, open_grid, ends)
    return interleaved({"catalytic[numba]": lambda: catalytic.components(lat, "numba"), impl: call}, repeat)
