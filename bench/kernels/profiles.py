"""Where catalytic's numba calls spend their time, stage by stage, measured beside the rows they explain."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.kernels import peers
from bench.kernels.lattices import Ends, coords
from bench.kernels.ours import warm_before_cold_call
from bench.kernels.timing import Stage, WarmStateError, interleaved, medians, stage, with_overhead


def profile_path(lat_spec: dict[str, Any], start: int, goal: int, repeat: int) -> dict[str, Any]:
    """Where a cold end-to-end numba shortest path spends its time, primitive by primitive (medians, seconds).

    Each stage is called on its own with the inputs the public call uses, the way the call uses them: the
    search state comes from a reused array (the public call keeps a per-thread pool), refilled for BFS and put
    back entry by entry for A*. The ``end_to_end`` stage builds a new lattice each call with no equal lattice
    alive (checked, untimed, before every call), so it materialises the mask as the stage does. Run it when no
    lattice equal to ``lat_spec``'s is alive.
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
    hops = be.full(n, -1, np.int32)
    be.bfs(geom, mask, sources, goal, hops)
    costs = be.full(n, np.inf, np.float64)
    be.dijkstra_written(geom, mask, sources, goal, costs, True)
    path = be.trace_path(geom, mask, hops, start, goal)
    reused_hops = be.full(n, -1, np.int32)
    clean_costs = be.full(n, np.inf, np.float64)

    def refill() -> Any:
        reused_hops.fill(-1)
        return reused_hops

    def astar_and_restore() -> None:
        _, written = be.dijkstra_written(geom, mask, sources, goal, clean_costs, True)
        if written is None:
            clean_costs.fill(np.inf)
        else:
            clean_costs[written] = np.inf

    def cold_call(method: str) -> Stage:
        def check() -> None:
            if warm_before_cold_call(lat_spec):
                raise WarmStateError("an equal lattice with a prepared mask is alive during the end-to-end stage")

        return Stage(
            lambda _: catalytic.shortest_path(catalytic.Lattice(**lat_spec), s_coords, g_coords, method, "numba"),
            check,
        )

    common = {
        "lattice_construction": stage(lambda: catalytic.Lattice(**lat_spec)),
        "lattice_digest": Stage(lambda fresh: fresh.digest(), lambda: catalytic.Lattice(**lat_spec)),
        "endpoint_checks": stage(lambda: (lat.check_vertex(s_coords, "start"), lat.check_vertex(g_coords, "goal"))),
        "geometry": stage(lambda: Geometry.of(lat)),
        "mask_materialisation": stage(lambda: be.open_mask(geom)),
        "coords_of": stage(lambda: lat.coords_of(path[::-1])),
    }
    bfs = {
        **common,
        "state_refill (reused int32 N)": stage(refill),
        "search": Stage(lambda dist: be.bfs(geom, mask, sources, goal, dist), refill),
        "trace_path": stage(lambda: be.trace_path(geom, mask, hops, start, goal)),
        "end_to_end": cold_call("bfs"),
    }
    auto = {
        **common,
        "search (A*, written entries put back)": stage(astar_and_restore),
        "trace_path": stage(lambda: be.trace_path(geom, mask, costs, start, goal)),
        "end_to_end": cold_call("auto"),
    }
    profiles = {}
    for method, stages in (("bfs", bfs), ("auto", auto)):
        parts = [name for name in stages if name != "end_to_end"]
        profiles[method] = with_overhead(interleaved(stages, repeat), "end_to_end", parts)
    return profiles


def profile_pairs(lat: Any, as_coords: Sequence[tuple[Any, Any]], repeat: int) -> dict[str, float]:
    """Per-query cost of a warm numba ``auto`` (A*) path on a prebuilt lattice, by stage, over a sample of pairs.

    The search runs on a reused state array and puts back the entries it wrote, as ``shortest_path()`` does with
    its pooled array; the total is the public call on the same pair, right after.
    """
    import catalytic
    from catalytic.kernels.backend import Geometry, get_backend

    be = get_backend("numba")
    geom = Geometry.of(lat)
    mask = be.open_mask(geom)
    costs = be.full(geom.vertices, np.inf, np.float64)
    sample = [(lat.index_of(s).item(), lat.index_of(g).item(), s, g) for s, g in as_coords[:repeat]]
    catalytic.shortest_path(lat, *as_coords[0], "auto", "numba")
    names = ("search (A*)", "trace_path", "state_restore (written entries)", "shortest_path() warm")
    samples: dict[str, list[float]] = {name: [] for name in names}
    for s, g, s_coords, g_coords in sample:
        t0 = time.perf_counter()
        _, written = be.dijkstra_written(geom, mask, np.asarray([s], dtype=np.int64), g, costs, True)
        t1 = time.perf_counter()
        be.trace_path(geom, mask, costs, s, g)
        t2 = time.perf_counter()
        if written is None:
            costs.fill(np.inf)
        else:
            costs[written] = np.inf
        t3 = time.perf_counter()
        catalytic.shortest_path(lat, s_coords, g_coords, "auto", "numba")
        t4 = time.perf_counter()
        for name, value in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            samples[name].append(value)
    return with_overhead(samples, "shortest_path() warm", list(names[:3]))


def profile_components(lat: Any, repeat: int) -> dict[str, float]:
    """Where a warm numba ``components`` call spends its time (medians, seconds)."""
    import catalytic
    from catalytic.kernels.backend import Geometry, get_backend

    be = get_backend("numba")
    geom = Geometry.of(lat)
    mask = be.open_mask(geom)
    stages = interleaved(
        {
            "mask_materialisation (first call only)": stage(lambda: be.open_mask(geom)),
            "label": stage(lambda: be.label(geom, mask)),
            "components() warm": stage(lambda: catalytic.components(lat, "numba")),
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
    duel = {"catalytic[numba]": stage(lambda: catalytic.components(lat, "numba")), impl: stage(call)}
    return medians(interleaved(duel, repeat))
