"""``python -m bench kernels``: catalytic's kernels against graph and image libraries on the same lattices.

Every case materialises one procedural lattice, hands the peers its open mask (for free: building the mask
is never charged to a peer), and times each peer's graph construction ("build") apart from its query.
catalytic rows are warm (the numba kernels compiled before timing) unless marked end to end, which times
spec -> answer on a new :class:`~catalytic.Lattice` each call (so its mask cache is cold). The first call of
every row is reported as ``first``; the compile cost of a fresh process is measured in a subprocess.

Every row's answer (path length, component count, distance-field digest) is checked against the answer
most rows give; a row that disagrees is flagged.

Options: ``--quick`` (tiny lattices, few repeats: the smoke test), ``--only CASE[,CASE]`` and
``--no-cold`` (skip the fresh-process compile measurement).
"""

from __future__ import annotations

import argparse
import collections
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import markdown_table, measure, percentile, write_results

CASES = ("5d-corner", "5d-pairs", "5d-20", "3d-200", "2d-4096")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """Sizes and repeats of one run."""

    quick: bool
    shapes: dict[str, tuple[int, ...]]
    density: dict[str, float]
    pairs: int
    pair_subset: int
    repeat_fast: int
    repeat_slow: int
    seed: int = 1
    pair_seed: int = 2026


def config(quick: bool) -> Config:
    """The full configuration of the issue, or a tiny one for the smoke test."""
    density = {"5d-corner": 0.2, "5d-pairs": 0.2, "5d-20": 0.2, "3d-200": 0.3, "2d-4096": 0.2}
    if quick:
        shapes = {"5d-corner": (4,) * 5, "5d-pairs": (4,) * 5, "5d-20": (5,) * 5, "3d-200": (12,) * 3}
        shapes["2d-4096"] = (32, 32)
        return Config(True, shapes, density, pairs=20, pair_subset=10, repeat_fast=2, repeat_slow=1)
    shapes = {"5d-corner": (10,) * 5, "5d-pairs": (10,) * 5, "5d-20": (20,) * 5, "3d-200": (200,) * 3}
    shapes["2d-4096"] = (4096, 4096)
    return Config(False, shapes, density, pairs=1000, pair_subset=200, repeat_fast=21, repeat_slow=3)


BIG_VERTICES = 1_000_000
HUGE_VERTICES = 10_000_000


def repeat_for(cfg: Config, vertices: int, ours: bool) -> int:
    """Timed repeats of a row: many on small lattices, few where one call takes seconds."""
    if vertices > HUGE_VERTICES:
        return 3 if ours else 1
    if vertices > BIG_VERTICES:
        return 5 if ours else 3
    return cfg.repeat_fast if ours else cfg.repeat_slow


# --- results ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One implementation doing one task on one lattice."""

    case: str
    task: str
    impl: str
    build: dict[str, float] | None
    query: dict[str, float]
    answer: Any
    note: str = ""
    agrees: bool | None = None

    @property
    def total_s(self) -> float:
        """Median build plus median query (the query alone when nothing is built)."""
        return self.query["median_s"] + (self.build["median_s"] if self.build else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "case": self.case,
            "task": self.task,
            "impl": self.impl,
            "build": self.build,
            "query": self.query,
            "total_s": self.total_s,
            "answer": self.answer,
            "agrees": self.agrees,
            "note": self.note,
        }


@dataclass
class Case:
    """The lattice of one case and the rows measured on it."""

    name: str
    spec: dict[str, Any]
    facts: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.task:<15} {row.impl:<44} total {row.total_s * 1e3:10.3f} ms  answer {row.answer}", flush=True)
        return row


def check_answers(rows: Sequence[Row]) -> dict[str, Any]:
    """Flag rows whose answer differs from the most common answer of their task; returns the references."""
    references: dict[str, Any] = {}
    for task in dict.fromkeys(r.task for r in rows):
        answers = [json.dumps(r.answer, sort_keys=True) for r in rows if r.task == task]
        reference, _ = collections.Counter(answers).most_common(1)[0]
        references[task] = json.loads(reference)
        for r in rows:
            if r.task == task:
                r.agrees = json.dumps(r.answer, sort_keys=True) == reference
    return references


# --- timing ------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int) -> tuple[dict[str, float], Any]:
    """``measure(fn)`` (first call apart, then ``repeat`` timed calls) plus the value of the last call."""
    holder: list[Any] = [None]

    def call() -> None:
        holder[0] = fn()

    gc.collect()
    stats = measure(call, repeat=repeat, warmup=1)
    return stats, holder[0]


def per_query(fn: Callable[[Any, Any], Any], pairs: Sequence[tuple[Any, Any]]) -> tuple[list[float], list[Any]]:
    """Time each call of ``fn(start, goal)`` with perf_counter; returns the times and the answers."""
    times, answers = [], []
    for s, g in pairs:
        t0 = time.perf_counter()
        answer = fn(s, g)
        times.append(time.perf_counter() - t0)
        answers.append(answer)
    return times, answers


def query_stats(times: Sequence[float]) -> dict[str, float]:
    """Per-query percentiles in seconds."""
    return {
        "p50_s": percentile(times, 50),
        "p99_s": percentile(times, 99),
        "mean_s": statistics.fmean(times),
        "max_s": max(times),
        "median_s": percentile(times, 50),
        "n": len(times),
    }


# --- lattices and peers' inputs ------------------------------------------------------------------------------


def lattice_spec(shape: tuple[int, ...], p: float, seed: int) -> dict[str, Any]:
    """Keyword arguments of ``Lattice`` for a lattice with random obstacles (none when ``p == 0``)."""
    obstacles = [{"kind": "random", "p": p, "seed": seed}] if p > 0 else []
    return {"shape": shape, "obstacles": obstacles}


def corners(open_flat: np.ndarray) -> tuple[int, int, bool, bool]:
    """First and last open vertices in linear order; whether each differs from its corner."""
    open_idx = np.flatnonzero(open_flat)
    start, goal = int(open_idx[0]), int(open_idx[-1])
    return start, goal, start != 0, goal != open_flat.size - 1


def coords(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Coordinates of a linear index as plain ints."""
    return tuple(int(c) for c in np.unravel_index(index, shape))


def edge_list(open_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face-adjacent open-open edges ``(m, 2)`` in compact ids (rank among open vertices), and the rank map."""
    flat = open_grid.ravel()
    rank = np.cumsum(flat, dtype=np.int64) - 1
    strides = [s // open_grid.itemsize for s in open_grid.strides]
    parts = []
    for k, n in enumerate(open_grid.shape):
        if n < 2:
            continue
        lower = [slice(None)] * open_grid.ndim
        upper = [slice(None)] * open_grid.ndim
        lower[k], upper[k] = slice(0, n - 1), slice(1, n)
        both = np.zeros(open_grid.shape, dtype=np.bool_)
        both[tuple(lower)] = open_grid[tuple(lower)] & open_grid[tuple(upper)]
        u = np.flatnonzero(both)
        parts.append(np.stack([rank[u], rank[u + strides[k]]], axis=1))
    return np.concatenate(parts), rank


def path_is_valid(path: np.ndarray, open_grid: np.ndarray, start: tuple[int, ...], goal: tuple[int, ...]) -> bool:
    """Whether ``path`` (k, d) runs from start to goal over open vertices in unit face steps."""
    if tuple(path[0]) != start or tuple(path[-1]) != goal:
        return False
    if not open_grid[tuple(path.T)].all():
        return False
    steps = np.abs(np.diff(path, axis=0))
    return bool((steps.sum(axis=1) == 1).all())


def field_answer(dist: np.ndarray) -> dict[str, Any]:
    """A comparable summary of a hop-distance field (int, −1 where unreached)."""
    dist = np.ascontiguousarray(dist, dtype=np.int32)
    reached = dist >= 0
    return {
        "reached": int(reached.sum()),
        "max": int(dist.max()),
        "sum": int(dist[reached].sum(dtype=np.int64)),
        "digest": hashlib.blake2b(dist.tobytes(), digest_size=8).hexdigest(),
    }


def finite_to_hops(values: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Float distances (inf where unreached) to int32 hops (−1 where unreached)."""
    out = np.full(values.shape, -1, dtype=np.int32)
    finite = np.isfinite(values)
    out[finite] = np.rint(values[finite] - offset).astype(np.int32)
    return out


# --- peers ------------------------------------------------------------------------------------------------------


class Peers:
    """Graph and image libraries, given the open mask of a lattice."""

    def __init__(self, open_grid: np.ndarray) -> None:
        self.open_grid = open_grid
        self.shape = open_grid.shape

    # graph libraries: compact ids over open vertices
    def igraph_build(self) -> Any:
        import igraph

        edges, rank = edge_list(self.open_grid)
        return igraph.Graph(n=int(rank[-1]) + 1, edges=edges), rank

    def scipy_build(self) -> Any:
        from scipy import sparse

        edges, rank = edge_list(self.open_grid)
        n = int(rank[-1]) + 1
        rows = np.concatenate([edges[:, 0], edges[:, 1]])
        cols = np.concatenate([edges[:, 1], edges[:, 0]])
        data = np.ones(rows.size, dtype=np.float64)
        return sparse.csr_array((data, (rows, cols)), shape=(n, n)), rank

    def networkx_build(self) -> Any:
        import networkx as nx

        edges, rank = edge_list(self.open_grid)
        graph = nx.Graph()
        graph.add_nodes_from(range(int(rank[-1]) + 1))
        graph.add_edges_from(edges.tolist())
        return graph, rank


def scipy_bfs_length(csr: Any, s: int, g: int) -> int:
    """Hops from s to g by scipy's breadth_first_order and its predecessor array (path traced)."""
    from scipy.sparse import csgraph

    _, pred = csgraph.breadth_first_order(csr, s, directed=True, return_predecessors=True)
    if g != s and pred[g] < 0:
        return -1
    hops, v = 0, g
    while v != s:
        v = int(pred[v])
        hops += 1
    return hops


# --- catalytic --------------------------------------------------------------------------------------------------


NUMPY_MAX_VERTICES = 1_000_000
"""The NumPy reference backend is timed only on lattices up to this size (larger ones take tens of seconds)."""


def catalytic_backends(vertices: int = 0) -> list[str]:
    """The CPU backends to time on a lattice of ``vertices`` vertices."""
    import catalytic

    wanted = ("numba", "numpy") if vertices <= NUMPY_MAX_VERTICES else ("numba",)
    return [b for b in wanted if b in catalytic.backends()]


def add_catalytic_path_rows(case: Case, cfg: Config, lat: Any, start: tuple[int, ...], goal: tuple[int, ...]) -> None:
    """Warm and end-to-end shortest-path rows for every CPU backend and method."""
    import catalytic

    open_grid = lat.open_mask()
    for backend in catalytic_backends(lat.vertices):
        for method in ("bfs", "auto"):
            repeat = repeat_for(cfg, lat.vertices, ours=backend == "numba")
            stats, path = timed(lambda b=backend, m=method: catalytic.shortest_path(lat, start, goal, m, b), repeat)
            valid = path_is_valid(path.coords, open_grid, start, goal)
            case.add(
                Row(
                    case.name,
                    "path",
                    f"catalytic[{backend}] {method}",
                    None,
                    stats,
                    path.length if valid else f"invalid path ({path.length})",
                    f"query on a prebuilt Lattice (mask cached); ran {path.method}, expanded {path.expanded}",
                )
            )
            stats, path = timed(
                lambda b=backend, m=method: catalytic.shortest_path(catalytic.Lattice(**case.spec), start, goal, m, b),
                repeat,
            )
            case.add(
                Row(
                    case.name,
                    "path",
                    f"catalytic[{backend}] {method}, end to end",
                    None,
                    stats,
                    path.length,
                    "spec -> answer: new Lattice each call (cold mask cache) + mask + query",
                )
            )


def add_catalytic_components_rows(case: Case, cfg: Config, lat: Any) -> None:
    import catalytic

    for backend in catalytic_backends(lat.vertices):
        repeat = repeat_for(cfg, lat.vertices, ours=backend == "numba")
        stats, (_, count) = timed(lambda b=backend: catalytic.components(lat, b), repeat)
        case.add(
            Row(case.name, "components", f"catalytic[{backend}]", None, stats, count, "prebuilt Lattice (mask cached)")
        )


def add_catalytic_field_rows(case: Case, cfg: Config, lat: Any, start: tuple[int, ...]) -> None:
    import catalytic

    for backend in catalytic_backends(lat.vertices):
        repeat = repeat_for(cfg, lat.vertices, ours=backend == "numba")
        stats, dist = timed(lambda b=backend: catalytic.distance_field(lat, [start], b), repeat)
        case.add(
            Row(
                case.name,
                "distance_field",
                f"catalytic[{backend}]",
                None,
                stats,
                field_answer(dist),
                "prebuilt Lattice",
            )
        )


def interleaved(stages: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds of each stage, timed in rounds that call every stage once (after one untimed round).

    Round-robin order keeps a shift in machine load from landing on one stage only.
    """
    for fn in stages.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeat):
        for name, fn in stages.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in samples.items()}


def with_overhead(stages: dict[str, float], total: str, parts: Sequence[str]) -> dict[str, float]:
    """Add ``python_overhead``: the measured total minus the measured parts (may be < 0 within noise)."""
    return {**stages, "python_overhead": stages[total] - sum(stages[p] for p in parts)}


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


COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import catalytic
t_import = time.perf_counter() - t0
spec = json.loads(sys.argv[1])
start, goal = tuple(spec.pop("start")), tuple(spec.pop("goal"))
spec["shape"] = tuple(spec["shape"])
out = {"import_s": t_import}
lat = catalytic.Lattice(**spec)
calls = [
    ("shortest_path bfs", lambda: catalytic.shortest_path(lat, start, goal, "bfs", "numba")),
    ("shortest_path auto", lambda: catalytic.shortest_path(lat, start, goal, "auto", "numba")),
    ("components", lambda: catalytic.components(lat, "numba")),
    ("distance_field", lambda: catalytic.distance_field(lat, [start], "numba")),
]
for name, call in calls:
    t0 = time.perf_counter(); call(); first = time.perf_counter() - t0
    t0 = time.perf_counter(); call(); second = time.perf_counter() - t0
    out[name] = {"first_s": first, "second_s": second}
print(json.dumps(out))
"""


def numba_cache_files() -> int:
    """Index files of numba's on-disk cache for catalytic's kernels, where this process would look for them."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    root = Path(cache_dir) if cache_dir else REPO / "catalytic" / "kernels" / "__pycache__"
    return len(list(root.rglob("*.nbi"))) if root.exists() else 0


def cold_compile(spec: dict[str, Any], start: tuple[int, ...], goal: tuple[int, ...], empty: bool) -> dict[str, Any]:
    """First calls in a fresh process, with the numba cache as found or with an empty cache directory."""
    payload = json.dumps({**spec, "shape": list(spec["shape"]), "start": list(start), "goal": list(goal)})
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        if empty:
            env["NUMBA_CACHE_DIR"] = tmp
            state = "empty cache directory (NUMBA_CACHE_DIR set to a new temporary directory): compiles everything"
        else:
            state = f"cache as found: {numba_cache_files()} numba index files (.nbi) for catalytic's kernels"
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", COLD_SCRIPT, payload],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            check=False,
        )
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"cache": state, "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return {"cache": state, "process_wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


# --- cases ---------------------------------------------------------------------------------------------------


def new_case(name: str, cfg: Config) -> tuple[Case, Any, np.ndarray]:
    import catalytic

    spec = lattice_spec(cfg.shapes[name], cfg.density[name], cfg.seed)
    lat = catalytic.Lattice(**spec)
    open_grid = np.array(lat.open_mask())
    start, goal, moved_s, moved_g = corners(open_grid.ravel())
    facts = {
        "shape": list(lat.shape),
        "obstacle_density": cfg.density[name],
        "vertices": lat.vertices,
        "open_vertices": int(open_grid.sum()),
        "start": list(coords(start, lat.shape)),
        "goal": list(coords(goal, lat.shape)),
        "start_substituted": moved_s,
        "goal_substituted": moved_g,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"{name}: {facts}", flush=True)
    return Case(name, spec, facts), lat, open_grid


def case_5d_corner(cfg: Config) -> Case:
    """Corner-to-corner shortest path on 5-D 10^5 with 20% obstacles: catalytic vs every graph peer."""
    case, lat, open_grid = new_case("5d-corner", cfg)
    s_idx = lat.index_of(case.facts["start"]).item()
    g_idx = lat.index_of(case.facts["goal"]).item()
    start, goal = tuple(case.facts["start"]), tuple(case.facts["goal"])
    add_catalytic_path_rows(case, cfg, lat, start, goal)
    peers = Peers(open_grid)
    fast, slow = cfg.repeat_fast, cfg.repeat_slow

    build, (graph, rank) = timed(peers.igraph_build, fast)
    s, g = int(rank[s_idx]), int(rank[g_idx])
    query, vpath = timed(lambda: graph.get_shortest_path(s, to=g, output="vpath"), fast)
    case.add(
        Row(case.name, "path", "igraph get_shortest_path", build, query, len(vpath) - 1, "build: edge list + Graph")
    )

    build, (csr, _) = timed(peers.scipy_build, fast)
    query, hops = timed(lambda: scipy_bfs_length(csr, s, g), fast)
    case.add(
        Row(
            case.name,
            "path",
            "scipy csgraph breadth_first_order",
            build,
            query,
            hops,
            "build: edge list + symmetric CSR; query: BFS + predecessor trace",
        )
    )

    import networkx as nx

    build, (nxg, _) = timed(peers.networkx_build, slow)
    query, hops = timed(lambda: nx.shortest_path_length(nxg, s, g), fast)
    case.add(Row(case.name, "path", "networkx shortest_path_length", build, query, hops, "build: edge list + Graph"))

    from skimage.graph import MCP

    def mcp_build() -> Any:
        return MCP(np.where(open_grid, 1.0, np.inf), fully_connected=False)

    def mcp_query(mcp: Any) -> int:
        mcp.find_costs([start], [goal])
        return len(mcp.traceback(goal)) - 1

    build, mcp = timed(mcp_build, slow)
    query, hops = timed(lambda: mcp_query(mcp), slow)
    case.add(
        Row(
            case.name,
            "path",
            "skimage MCP (face offsets)",
            build,
            query,
            hops,
            "build: dense cost array (1 open, inf blocked) + MCP",
        )
    )
    case.profile["path"] = profile_path(case.spec, s_idx, g_idx, max(5, fast))
    return case


def random_pairs(open_grid: np.ndarray, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` pairs of distinct open vertices in the same face-connected component (fixed seed)."""
    from scipy import ndimage

    labels, _ = ndimage.label(open_grid, structure=ndimage.generate_binary_structure(open_grid.ndim, 1))
    flat = labels.ravel()
    members = {int(lab): np.flatnonzero(flat == lab) for lab in np.unique(flat[flat > 0])}
    open_idx = np.flatnonzero(flat)
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < count:
        s = int(rng.choice(open_idx))
        group = members[int(flat[s])]
        if group.size < 2:
            continue
        g = int(rng.choice(group))
        if g != s:
            pairs.append((s, g))
    return pairs


def case_5d_pairs(cfg: Config) -> Case:
    """1,000 random same-component pairs on 5-D 10^5: per-query p50/p99, each call timed on its own."""
    import catalytic

    case, lat, open_grid = new_case("5d-pairs", cfg)
    pairs = random_pairs(open_grid, cfg.pairs, cfg.pair_seed)
    as_coords = [(coords(s, lat.shape), coords(g, lat.shape)) for s, g in pairs]
    case.facts["pairs"] = len(pairs)
    case.facts["pair_seed"] = cfg.pair_seed
    subset = as_coords[: cfg.pair_subset]

    def record(impl: str, times: list[float], lengths: list[int], note: str) -> None:
        entry = {"impl": impl, **query_stats(times), "lengths": lengths, "note": note}
        case.pairs.append(entry)
        print(f"  pairs {impl:<40} n={len(times)} p50 {entry['p50_s'] * 1e3:.4f} ms p99 {entry['p99_s'] * 1e3:.4f} ms")

    for backend in catalytic_backends(lat.vertices):
        for method in ("auto", "bfs"):
            todo = as_coords if backend == "numba" else subset
            catalytic.shortest_path(lat, *todo[0], method, backend)
            times, paths = per_query(lambda s, g, m=method, b=backend: catalytic.shortest_path(lat, s, g, m, b), todo)
            record(f"catalytic[{backend}] {method}", times, [p.length for p in paths], "prebuilt Lattice, warm")

    if "numba" in catalytic_backends():
        case.profile["per-query shortest_path auto"] = profile_pairs(lat, as_coords, cfg.pair_subset)
    peers = Peers(open_grid)
    graph, rank = peers.igraph_build()
    compact = [(int(rank[s]), int(rank[g])) for s, g in pairs]
    graph.get_shortest_path(*compact[0], output="vpath")
    times, vpaths = per_query(lambda s, g: graph.get_shortest_path(s, to=g, output="vpath"), compact)
    record("igraph get_shortest_path", times, [len(v) - 1 for v in vpaths], "prebuilt Graph")

    csr, _ = peers.scipy_build()
    times, hops = per_query(lambda s, g: scipy_bfs_length(csr, s, g), compact[: cfg.pair_subset])
    record("scipy csgraph breadth_first_order", times, hops, "prebuilt CSR; full BFS per query")

    import networkx as nx

    nxg, _ = peers.networkx_build()
    times, hops = per_query(lambda s, g: nx.shortest_path_length(nxg, s, g), compact[: cfg.pair_subset])
    record("networkx shortest_path_length", times, hops, "prebuilt Graph")

    igraph_lengths = next(p["lengths"] for p in case.pairs if p["impl"].startswith("igraph"))
    for entry in case.pairs:
        n = len(entry["lengths"])
        entry["agrees"] = entry["lengths"] == igraph_lengths[:n]
        entry["answer"] = {"pairs": n, "sum_of_lengths": int(sum(entry["lengths"]))}
    case.facts["reference_lengths"] = "igraph get_shortest_path"
    return case


def add_graph_peers(
    case: Case, peers: Peers, cfg: Config, ends: tuple[int, int], components: bool, use_igraph: bool
) -> None:
    """igraph and scipy csgraph: one timed build each, then the corner path (and components) on it."""
    from scipy.sparse import csgraph

    repeat = repeat_for(cfg, peers.open_grid.size, ours=False)
    note = "build: edge list + Graph"
    if use_igraph:
        build, (graph, rank) = timed(peers.igraph_build, repeat)
        s, g = int(rank[ends[0]]), int(rank[ends[1]])
        query, vpath = timed(lambda: graph.get_shortest_path(s, to=g, output="vpath"), repeat)
        case.add(Row(case.name, "path", "igraph get_shortest_path", build, query, len(vpath) - 1, note))
        if components:
            query, count = timed(lambda: len(graph.connected_components()), repeat)
            case.add(Row(case.name, "components", "igraph connected_components", build, query, count, note))
        graph = None
    build, (csr, rank) = timed(peers.scipy_build, repeat)
    s, g = int(rank[ends[0]]), int(rank[ends[1]])
    note = "build: edge list + symmetric CSR"
    query, hops = timed(lambda: scipy_bfs_length(csr, s, g), repeat)
    case.add(Row(case.name, "path", "scipy csgraph breadth_first_order", build, query, hops, note + "; BFS + trace"))
    if components:
        query, (count, _) = timed(lambda: csgraph.connected_components(csr, directed=True, connection="weak"), repeat)
        case.add(Row(case.name, "components", "scipy csgraph connected_components", build, query, count, note))


def image_peer(open_grid: np.ndarray, peer: str) -> Callable[[], Any]:
    """A call of one image-labelling peer on the mask: ``scipy.ndimage.label`` or ``cc3d connectivity=N``.

    Both return ``(labels, count)``.
    """
    if peer.startswith("cc3d"):
        import cc3d

        connectivity = int(peer.rsplit("=", 1)[1])
        return lambda: cc3d.connected_components(open_grid, connectivity=connectivity, return_N=True)
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(open_grid.ndim, 1)
    return lambda: ndimage.label(open_grid, structure=structure)


def cc3d_peer(open_grid: np.ndarray) -> str:
    return f"cc3d connectivity={6 if open_grid.ndim == 3 else 4}"


def add_image_components(case: Case, open_grid: np.ndarray, cfg: Config, use_cc3d: bool) -> None:
    """Components by scipy.ndimage.label (face structure) and, in 2-D/3-D, cc3d."""
    repeat = repeat_for(cfg, open_grid.size, ours=True)
    peers = [("scipy.ndimage.label", "face structure; on the mask")]
    if use_cc3d:
        peers.append((cc3d_peer(open_grid), "on the mask"))
    for peer, note in peers:
        query, (_, count) = timed(image_peer(open_grid, peer), repeat)
        case.add(Row(case.name, "components", peer, None, query, int(count), note))


def add_dijkstra3d_paths(case: Case, open_grid: np.ndarray, cfg: Config) -> None:
    """dijkstra3d's binary and weighted searches (inf = blocked) at face connectivity."""
    import dijkstra3d

    start, goal = tuple(case.facts["start"]), tuple(case.facts["goal"])
    connectivity = 6 if open_grid.ndim == 3 else 4
    slow = repeat_for(cfg, open_grid.size, ours=False)
    query, path = timed(
        lambda: dijkstra3d.binary_dijkstra(open_grid, start, goal, connectivity=connectivity, background_color=0),
        slow,
    )
    case.add(Row(case.name, "path", "dijkstra3d binary_dijkstra", None, query, len(path) - 1, "on the mask"))
    build, cost = timed(lambda: np.where(open_grid, np.float32(1), np.float32(np.inf)), slow)
    for bidirectional in (False, True):
        query, path = timed(
            lambda b=bidirectional: dijkstra3d.dijkstra(cost, start, goal, connectivity=connectivity, bidirectional=b),
            slow,
        )
        name = "dijkstra3d dijkstra" + (" bidirectional" if bidirectional else "")
        case.add(Row(case.name, "path", name, build, query, len(path) - 1, "build: float32 cost field, inf blocked"))


def head_to_head_components(lat: Any, open_grid: np.ndarray, peer: str, repeat: int) -> dict[str, float]:
    """catalytic[numba] components against one peer, called in alternation (medians, seconds).

    The rows above time each implementation in its own block of repeats; alternating them makes both see the
    same machine, which on a shared 2-core machine matters more than the difference being measured.
    """
    import catalytic

    return interleaved(
        {"catalytic[numba]": lambda: catalytic.components(lat, "numba"), peer: image_peer(open_grid, peer)}, repeat
    )


def case_5d_20(cfg: Config) -> Case:
    """5-D 20^5 with 20% obstacles: components and corner-to-corner BFS."""
    case, lat, open_grid = new_case("5d-20", cfg)
    start, goal = tuple(case.facts["start"]), tuple(case.facts["goal"])
    add_catalytic_components_rows(case, cfg, lat)
    peers = Peers(open_grid)
    add_image_components(case, open_grid, cfg, use_cc3d=False)
    add_catalytic_path_rows(case, cfg, lat, start, goal)
    ends = (lat.index_of(start).item(), lat.index_of(goal).item())
    add_graph_peers(case, peers, cfg, ends, components=True, use_igraph=True)
    repeat = repeat_for(cfg, lat.vertices, ours=True)
    case.profile["components"] = profile_components(lat, repeat)
    case.profile["components head-to-head"] = head_to_head_components(lat, open_grid, "scipy.ndimage.label", repeat)
    return case


def case_3d_200(cfg: Config) -> Case:
    """3-D 200^3 with 30% obstacles: components vs cc3d and scipy.ndimage.label, paths vs dijkstra3d."""
    case, lat, open_grid = new_case("3d-200", cfg)
    start, goal = tuple(case.facts["start"]), tuple(case.facts["goal"])
    add_catalytic_components_rows(case, cfg, lat)
    add_image_components(case, open_grid, cfg, use_cc3d=True)
    add_catalytic_path_rows(case, cfg, lat, start, goal)
    add_dijkstra3d_paths(case, open_grid, cfg)
    repeat = repeat_for(cfg, lat.vertices, ours=True)
    case.profile["components"] = profile_components(lat, repeat)
    case.profile["components head-to-head"] = head_to_head_components(lat, open_grid, "cc3d connectivity=6", repeat)
    return case


def case_2d_4096(cfg: Config) -> Case:
    """2-D 4096^2 with 20% obstacles: corner-to-corner BFS, components and the distance field."""
    import dijkstra3d
    from skimage.graph import MCP

    case, lat, open_grid = new_case("2d-4096", cfg)
    start, goal = tuple(case.facts["start"]), tuple(case.facts["goal"])
    slow = repeat_for(cfg, lat.vertices, ours=False)
    add_catalytic_path_rows(case, cfg, lat, start, goal)
    add_dijkstra3d_paths(case, open_grid, cfg)
    build, mcp = timed(lambda: MCP(np.where(open_grid, 1.0, np.inf), fully_connected=False), slow)

    def mcp_path() -> int:
        mcp.find_costs([start], [goal])
        return len(mcp.traceback(goal)) - 1

    query, hops = timed(mcp_path, slow)
    case.add(Row(case.name, "path", "skimage MCP (face offsets)", build, query, hops, "build: dense cost + MCP"))
    peers = Peers(open_grid)
    ends = (lat.index_of(start).item(), lat.index_of(goal).item())
    add_graph_peers(case, peers, cfg, ends, components=False, use_igraph=lat.vertices <= HUGE_VERTICES)

    add_catalytic_components_rows(case, cfg, lat)
    add_image_components(case, open_grid, cfg, use_cc3d=True)

    add_catalytic_field_rows(case, cfg, lat, start)
    cost = np.where(open_grid, np.float32(1), np.float32(np.inf))
    query, dist = timed(lambda: dijkstra3d.distance_field(cost, start, connectivity=4), slow)
    case.add(
        Row(
            case.name,
            "distance_field",
            "dijkstra3d distance_field",
            None,
            query,
            field_answer(finite_to_hops(dist)),
            "float32 cost field, inf blocked",
        )
    )
    query, (cum, _) = timed(lambda: mcp.find_costs([start]), slow)
    case.add(
        Row(
            case.name,
            "distance_field",
            "skimage MCP find_costs",
            build,
            query,
            field_answer(finite_to_hops(cum, offset=1.0)),
            "cumulative cost includes the start's cost 1",
        )
    )
    return case


RUNNERS: dict[str, Callable[[Config], Case]] = {
    "5d-corner": case_5d_corner,
    "5d-pairs": case_5d_pairs,
    "5d-20": case_5d_20,
    "3d-200": case_3d_200,
    "2d-4096": case_2d_4096,
}


# --- targets -------------------------------------------------------------------------------------------------


def find_row(cases: dict[str, Case], case: str, task: str, impl: str) -> Row | None:
    if case not in cases:
        return None
    return next((r for r in cases[case].rows if r.task == task and r.impl == impl), None)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


def breakdown(stages: dict[str, float], total: str) -> str:
    """Stages of a profile, largest first, with their share of ``total``."""
    whole = stages[total]
    parts = sorted(((v, k) for k, v in stages.items() if k != total), reverse=True)
    listed = ", ".join(f"{k} {ms(v)} ({100 * v / whole:.0f}%)" for v, k in parts)
    return f"{total} {ms(whole)} = {listed}"


def path_cause(cases: dict[str, Case], method: str) -> str:
    """The measured breakdown of an end-to-end numba shortest path."""
    stages = cases["5d-corner"].profile.get("path", {}).get(method)
    return breakdown(stages, "end_to_end") if stages else "no profile"


def evaluate_targets(cases: dict[str, Case]) -> list[dict[str, Any]]:
    """Each target of the issue: measured value, met or missed, and the measured cause of a miss."""
    targets: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: str, met: bool | None, cause: str = "") -> None:
        targets.append({"target": name, "goal": goal, "measured": measured, "met": met, "cause": cause})

    igraph = find_row(cases, "5d-corner", "path", "igraph get_shortest_path")
    networkx = find_row(cases, "5d-corner", "path", "networkx shortest_path_length")
    for method in ("bfs", "auto"):
        warm = find_row(cases, "5d-corner", "path", f"catalytic[numba] {method}")
        e2e = find_row(cases, "5d-corner", "path", f"catalytic[numba] {method}, end to end")
        if warm and igraph:
            ratio = igraph.query["median_s"] / warm.query["median_s"]
            met = ratio >= 3
            add(
                f"5-D 10^5 corner path, query, method={method}",
                "catalytic query <= 1/3 of igraph's query (prebuilt graph)",
                f"{ms(warm.query['median_s'])} vs igraph {ms(igraph.query['median_s'])}: {ratio:.2f}x",
                met,
                "" if met else path_cause(cases, method),
            )
        if e2e and igraph and networkx:
            vs_ig = igraph.total_s / e2e.total_s
            vs_nx = networkx.total_s / e2e.total_s
            met = vs_ig >= 50 and vs_nx >= 1000
            add(
                f"5-D 10^5 corner path, end to end, method={method}",
                ">= 50x igraph build+query and >= 1000x networkx build+query",
                f"{ms(e2e.total_s)}: {vs_ig:.1f}x igraph ({ms(igraph.total_s)}), "
                f"{vs_nx:.0f}x networkx ({ms(networkx.total_s)})",
                met,
                "" if met else path_cause(cases, method),
            )
    if "5d-pairs" in cases:
        entry = next((p for p in cases["5d-pairs"].pairs if p["impl"] == "catalytic[numba] auto"), None)
        if entry:
            met = entry["p50_s"] <= 0.3e-3 and entry["p99_s"] <= 3e-3
            stages = cases["5d-pairs"].profile.get("per-query shortest_path auto")
            cause = "" if met or not stages else "per-query medians: " + breakdown(stages, "shortest_path() warm")
            add(
                "5-D 10^5, 1,000 random pairs, method=auto",
                "p50 <= 0.3 ms and p99 <= 3 ms per query",
                f"p50 {ms(entry['p50_s'])}, p99 {ms(entry['p99_s'])} over {entry['n']} queries",
                met,
                cause,
            )
    for case, peer, factor in (("3d-200", "cc3d connectivity=6", 1.0), ("5d-20", "scipy.ndimage.label", 3.0)):
        ours = find_row(cases, case, "components", "catalytic[numba]")
        theirs = find_row(cases, case, "components", peer)
        if ours and theirs:
            sequential = f"in separate blocks (table above) {ms(ours.total_s)} vs {ms(theirs.total_s)}"
            duel = cases[case].profile.get("components head-to-head", {})
            if "catalytic[numba]" in duel and peer in duel:
                ours_s, theirs_s = duel["catalytic[numba]"], duel[peer]
                how = f"alternating calls {ms(ours_s)} vs {ms(theirs_s)}"
            else:
                ours_s, theirs_s, how = ours.total_s, theirs.total_s, sequential
                sequential = ""
            ratio = theirs_s / ours_s
            met = ratio >= factor
            cause = ""
            if not met:
                stages = dict(cases[case].profile.get("components", {}))
                stages.pop("mask_materialisation (first call only)", None)
                cause = breakdown(stages, "components() warm") if stages else "no profile"
            add(
                f"components {case}",
                f">= {factor:g}x faster than {peer}" if factor != 1 else f"no slower than {peer}",
                f"{how}: {ratio:.2f}x"
                + (f"; {sequential}: {theirs.total_s / ours.total_s:.2f}x" if sequential else ""),
                met,
                cause,
            )
    return targets


# --- report --------------------------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return "" if value is None else f"{value * 1e3:.4g}"


def answer_text(answer: Any) -> str:
    if isinstance(answer, dict):
        return ", ".join(f"{k}={v}" for k, v in answer.items())
    return str(answer)


def render(cases: dict[str, Case], targets: list[dict[str, Any]], cold: list[dict[str, Any]], cfg: Config) -> str:
    """The Markdown report: one results table, the per-query table, targets, profiles and compile times."""
    lines = []
    if cfg.quick:
        lines.append("**Quick run (tiny lattices): timings are not meaningful.**\n")
    lines.append(
        "Times in ms: medians over warm repeats (`first` = the first call, apart). Peers get the materialised open "
        "mask for free; `build` is their graph construction from it, `query` the call itself. catalytic rows query "
        "a prebuilt Lattice (mask cached) unless marked *end to end* (new Lattice per call: spec -> answer). "
        "`ok` = the answer matches the answer most rows give (path length in hops, component count, distance-field "
        "digest).\n"
    )
    lines.append("Lattices (random obstacles `{kind: random, p, seed: 1}`, no periodic axes):\n")
    for case in cases.values():
        f = case.facts
        moved = []
        if f["start_substituted"]:
            moved.append("start corner blocked: first open vertex in linear order used")
        if f["goal_substituted"]:
            moved.append("goal corner blocked: last open vertex in linear order used")
        lines.append(
            f"- `{case.name}`: shape {f['shape']}, {f['obstacle_density']:.0%} obstacles, {f['open_vertices']:,} of "
            f"{f['vertices']:,} open; start {f['start']}, goal {f['goal']}"
            + (f" ({'; '.join(moved)})" if moved else "")
            + (f"; {f['pairs']} pairs, seed {f['pair_seed']}" if "pairs" in f else "")
            + f"; load average at start {f['load_average_at_start']}"
        )
    if "2d-4096" in cases:
        lines.append("- The 2-D case uses 20% obstacles (the issue gives no density for it).")
    if any(c.facts["vertices"] > HUGE_VERTICES for c in cases.values()):
        lines.append(
            f"- igraph is left out above {HUGE_VERTICES:,} vertices to bound the suite's run time; scipy csgraph "
            "stands in as the general-graph peer there."
        )
    lines.append(f"- The NumPy reference backend is timed only on lattices of at most {NUMPY_MAX_VERTICES:,} vertices.")
    header = ["case", "task", "implementation", "build", "query", "build+query", "first", "answer", "ok", "note"]
    rows = []
    for case in cases.values():
        for r in case.rows:
            rows.append(
                [
                    case.name,
                    r.task,
                    r.impl,
                    fmt_ms(r.build["median_s"]) if r.build else "",
                    fmt_ms(r.query["median_s"]),
                    fmt_ms(r.total_s),
                    fmt_ms(r.query["cold_s"]),
                    answer_text(r.answer),
                    "yes" if r.agrees else "**NO**",
                    r.note,
                ]
            )
    lines += ["", "## Results", "", markdown_table(header, rows)]
    pair_rows = []
    for case in cases.values():
        for p in case.pairs:
            pair_rows.append(
                [
                    p["impl"],
                    p["n"],
                    fmt_ms(p["p50_s"]),
                    fmt_ms(p["p99_s"]),
                    fmt_ms(p["mean_s"]),
                    fmt_ms(p["max_s"]),
                    "yes" if p["agrees"] else "**NO**",
                    p["note"],
                ]
            )
    if pair_rows:
        lines += [
            "",
            "## Random pairs (5-D 10^5, each query timed on its own)",
            "",
            markdown_table(
                ["implementation", "queries", "p50", "p99", "mean", "max", "ok vs igraph", "note"], pair_rows
            ),
        ]
    lines += ["", "## Targets", ""]
    target_rows = [
        [t["target"], t["goal"], t["measured"], "met" if t["met"] else "**missed**", t["cause"]] for t in targets
    ]
    lines.append(markdown_table(["target", "goal", "measured", "verdict", "measured cause"], target_rows))
    for case in cases.values():
        for what, stages in case.profile.items():
            if what == "path":
                for method, parts in stages.items():
                    lines += ["", f"### Profile: {case.name} numba shortest_path method={method}, end to end", ""]
                    lines.append(markdown_table(["stage", "median ms"], [[k, fmt_ms(v)] for k, v in parts.items()]))
            else:
                lines += ["", f"### Profile: {case.name} numba {what}", ""]
                lines.append(markdown_table(["stage", "median ms"], [[k, fmt_ms(v)] for k, v in stages.items()]))
    if cold:
        lines += ["", "## First call in a fresh process (numba backend, 5-D corner lattice)", ""]
        cold_rows = []
        for entry in cold:
            if "error" in entry:
                cold_rows.append([entry["cache"], "error: " + " ".join(entry["error"]), "", ""])
                continue
            cold_rows.append([entry["cache"], "import catalytic", fmt_ms(entry["import_s"]), ""])
            for name, value in entry.items():
                if isinstance(value, dict):
                    cold_rows.append([entry["cache"], name, fmt_ms(value["first_s"]), fmt_ms(value["second_s"])])
        lines.append(markdown_table(["numba cache", "call (in this order)", "first ms", "second ms"], cold_rows))
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny lattices and few repeats (smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated cases to run: {', '.join(CASES)}")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process compile measurement")
    args = parser.parse_args(list(argv))
    only = [c for c in args.only.split(",") if c]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    args.cases = [c for c in CASES if not only or c in only]
    return args


def source_state() -> dict[str, Any]:
    """The commit the kernels were timed at, and whether the kernels' files had uncommitted edits."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "kernels_edited": bool(git("status", "--short", "catalytic")),
    }


def main(argv: Sequence[str]) -> int:
    """Run the selected cases and write bench/results/kernels.{json,md}."""
    import catalytic

    args = parse(argv)
    cfg = config(args.quick)
    available = catalytic.backends()
    cases: dict[str, Case] = {}
    references: dict[str, Any] = {}
    for name in args.cases:
        case = RUNNERS[name](cfg)
        references[name] = check_answers(case.rows)
        cases[name] = case
        gc.collect()
    cold: list[dict[str, Any]] = []
    if not args.no_cold and "numba" in available:
        spec = lattice_spec(cfg.shapes["5d-corner"], cfg.density["5d-corner"], cfg.seed)
        lat = catalytic.Lattice(**spec)
        start, goal, _, _ = corners(lat.open_mask_flat())
        states = (False,) if cfg.quick else (False, True)
        cold = [cold_compile(spec, coords(start, lat.shape), coords(goal, lat.shape), empty) for empty in states]
    targets = evaluate_targets(cases)
    disagreements = [f"{r.case}/{r.task}/{r.impl}" for c in cases.values() for r in c.rows if not r.agrees]
    disagreements += [f"{c.name}/pairs/{p['impl']}" for c in cases.values() for p in c.pairs if not p["agrees"]]
    payload = {
        "config": {
            "quick": cfg.quick,
            "cases": args.cases,
            "repeat_fast": cfg.repeat_fast,
            "repeat_slow": cfg.repeat_slow,
            "backends": available,
            "source": source_state(),
        },
        "cases": {
            name: {
                "spec": {**c.spec, "shape": list(c.spec["shape"])},
                "facts": c.facts,
                "rows": [r.to_dict() for r in c.rows],
                "pairs": [{k: v for k, v in p.items() if k != "lengths"} for p in c.pairs],
                "references": references[name],
                "profile": c.profile,
            }
            for name, c in cases.items()
        },
        "answers_agree": not disagreements,
        "disagreements": disagreements,
        "targets": targets,
        "cold": cold,
    }
    json_path, md_path = write_results("kernels", payload, render(cases, targets, cold, cfg))
    print(f"wrote {json_path} and {md_path}")
    if disagreements:
        print(f"answers disagree: {disagreements}", file=sys.stderr)
    return 0
