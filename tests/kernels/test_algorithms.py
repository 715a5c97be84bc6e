"""The public algorithms against networkx and scipy, on every CPU backend, through the public API."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import networkx as nx
import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse.csgraph
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import check_path, lattices, nx_components, nx_distances, to_networkx

import catalytic
from catalytic import (
    BlockedVertexError,
    CoordinateError,
    InvalidTypeError,
    Lattice,
    MemoryBudgetError,
    MethodError,
    NoPathError,
    Path,
    analyze,
    components,
    distance_field,
    shortest_path,
)
from catalytic.kernels._rules import tile_count

CPU_BACKENDS = [name for name in ("numpy", "numba") if name in catalytic.backends()]
UNWEIGHTED_METHODS = ("bfs", "bidirectional", "astar", "dijkstra")
WEIGHTED_METHODS = ("astar", "dijkstra")


def _open_pair(data: st.DataObject, lattice: Lattice) -> tuple[tuple[int, ...], tuple[int, ...]]:
    open_indices = np.flatnonzero(lattice.open_mask_flat()).tolist()
    s, g = (data.draw(st.sampled_from(open_indices)) for _ in range(2))
    return tuple(int(c) for c in lattice.coords_of(s)), tuple(int(c) for c in lattice.coords_of(g))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(lattice=lattices(), data=st.data())
def test_shortest_path_is_optimal_and_valid(backend: str, lattice: Lattice, data: st.DataObject) -> None:
    start, goal = _open_pair(data, lattice)
    s, g = (int(lattice.index_of(c)) for c in (start, goal))
    expected = nx_distances(lattice, [s])[g]
    methods = WEIGHTED_METHODS if lattice.weighted else UNWEIGHTED_METHODS
    for method in (*methods, "auto"):
        reachable = expected >= 0 and math.isfinite(expected)
        if not reachable:
            with pytest.raises(NoPathError):
                shortest_path(lattice, start, goal, method=method, backend=backend)
            continue
        path = shortest_path(lattice, start, goal, method=method, backend=backend)
        assert path.backend == backend
        assert path.length == len(path.coords) - 1
        if lattice.weighted:
            assert math.isclose(path.cost, expected, rel_tol=1e-12)
        else:
            assert path.length == expected
            assert path.cost == float(expected)
        check_path(lattice, path.coords, start, goal, path.cost)


@given(lattice=lattices(), data=st.data())
def test_backends_return_identical_answers(lattice: Lattice, data: st.DataObject) -> None:
    start, goal = _open_pair(data, lattice)
    methods = WEIGHTED_METHODS if lattice.weighted else UNWEIGHTED_METHODS
    for method in methods:
        answers = []
        for backend in CPU_BACKENDS:
            try:
                p = shortest_path(lattice, start, goal, method=method, backend=backend)
                answers.append((p.coords.tolist(), p.length, p.cost, p.expanded))
            except NoPathError:
                answers.append(None)
        assert all(a == answers[0] for a in answers), (method, answers)
    fields = [distance_field(lattice, [start], backend=b) for b in CPU_BACKENDS]
    labels = [components(lattice, backend=b) for b in CPU_BACKENDS]
    for f in fields[1:]:
        assert f.dtype == fields[0].dtype
        assert np.array_equal(f, fields[0])
    for lab, count in labels[1:]:
        assert count == labels[0][1]
        assert np.array_equal(lab, labels[0][0])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(lattice=lattices(weighted=False), data=st.data())
def test_frugal_equals_full_state(backend: str, lattice: Lattice, data: st.DataObject) -> None:
    start, goal = _open_pair(data, lattice)
    try:
        full = shortest_path(lattice, start, goal, method="bfs", backend=backend, memory="full")
    except NoPathError:
        with pytest.raises(NoPathError):
            shortest_path(lattice, start, goal, method="bfs", backend=backend, memory="frugal")
        return
    frugal = shortest_path(lattice, start, goal, method="bfs", backend=backend, memory="frugal")
    assert frugal.memory["mode"] == "frugal"
    assert frugal.coords.tolist() == full.coords.tolist()
    assert (frugal.length, frugal.expanded) == (full.length, full.expanded)
    # the 2-bit state; on numba 3 words a tile, and past the start its tiles' edge flags and summary bit set too
    floor = (lattice.vertices + 3) // 4
    if backend == "numba":
        tiles = tile_count(tuple(lattice.shape))
        floor = 24 * tiles + (2 * tiles + 8 * ((tiles + 63) // 64) if frugal.length > 0 else 0)
    assert frugal.memory["state_bytes"] >= floor


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(lattice=lattices(), data=st.data())
def test_distance_field_matches_networkx(backend: str, lattice: Lattice, data: st.DataObject) -> None:
    open_indices = np.flatnonzero(lattice.open_mask_flat()).tolist()
    sources = data.draw(st.lists(st.sampled_from(open_indices), min_size=1, max_size=3))
    field = distance_field(lattice, lattice.coords_of(sources), backend=backend)
    expected = nx_distances(lattice, sources).reshape(lattice.shape)
    assert field.shape == lattice.shape
    if lattice.weighted:
        assert field.dtype == np.float64
        assert np.array_equal(np.isinf(field), np.isinf(expected))
        finite = np.isfinite(expected)
        assert np.allclose(field[finite], expected[finite], rtol=1e-12)
    else:
        assert field.dtype == np.int32
        assert np.array_equal(field, expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(lattice=lattices())
def test_components_match_scipy_and_networkx(backend: str, lattice: Lattice) -> None:
    labels, count = components(lattice, backend=backend)
    open_mask = lattice.open_mask()
    if not any(lattice.periodic):
        structure = scipy.ndimage.generate_binary_structure(lattice.ndim, 1)
        expected, expected_count = scipy.ndimage.label(open_mask, structure=structure)
        # scipy numbers components in raster order of their first vertex: the lowest linear index, as we do.
        assert count == expected_count
        assert np.array_equal(labels, expected)
    partition = nx_components(lattice)
    assert count == len(partition)
    flat = labels.ravel()
    assert {frozenset(np.flatnonzero(flat == k).tolist()) for k in range(1, count + 1)} == partition
    firsts = [int(np.flatnonzero(flat == k)[0]) for k in range(1, count + 1)]
    assert firsts == sorted(firsts)
    assert np.all(flat[~open_mask.ravel()] == 0)


def _oracle_diameter(graph: nx.Graph) -> int:
    """Largest finite hop distance, by scipy's all-pairs BFS over networkx's adjacency."""
    if graph.number_of_nodes() == 0:
        return 0
    hops = scipy.sparse.csgraph.shortest_path(nx.to_scipy_sparse_array(graph), unweighted=True)
    return int(hops[np.isfinite(hops)].max())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@settings(max_examples=25)
@given(lattice=lattices(max_vertices=200))
def test_analyze_matches_networkx(backend: str, lattice: Lattice) -> None:
    report = analyze(lattice, backend=backend)
    graph = to_networkx(lattice)
    assert report["vertices"] == lattice.vertices
    assert report["open_vertices"] == graph.number_of_nodes()
    assert report["edges"] == graph.number_of_edges()
    degrees: dict[int, int] = {}
    for _, deg in graph.degree():
        degrees[deg] = degrees.get(deg, 0) + 1
    assert report["degree_histogram"] == degrees
    parts = list(nx.connected_components(graph))
    assert report["components"] == len(parts)
    assert report["largest_component"] == max(len(c) for c in parts)
    assert report["diameter"]["exact"] is True
    assert report["diameter"]["value"] == _oracle_diameter(graph)


def test_diameter_formula_and_double_sweep() -> None:
    assert analyze(Lattice((5, 7), periodic=[True, False]))["diameter"] == {
        "value": 2 + 6,
        "exact": True,
        "method": "formula",
    }
    big = Lattice((120, 120), obstacles=[{"kind": "random", "p": 0.1, "seed": 3}])
    report = analyze(big)
    assert report["diameter"]["exact"] is False
    # A lower bound: the real diameter is at least the corner-to-corner hop count of some pair.
    graph = to_networkx(big)
    largest = max(nx.connected_components(graph), key=len)
    some = next(iter(largest))
    ecc = max(nx.single_source_shortest_path_length(graph, some).values())
    assert ecc <= report["diameter"]["value"] <= 2 * ecc


def test_auto_method_and_memory_mode() -> None:
    lat = Lattice((6, 6), obstacles=[{"kind": "random", "p": 0.1, "seed": 2}])
    start, goal = (0, 0), (5, 5)
    lat_open = Lattice((6, 6))
    auto = shortest_path(lat_open, start, goal)
    assert auto.method == "astar" and auto.length == 10
    # The Manhattan bound is exact on an open lattice: A* settles only vertices on shortest paths.
    assert auto.expanded < shortest_path(lat_open, start, goal, method="bfs").expanded
    weighted = Lattice((6, 6), weights=np.full((6, 6), 2.0))
    p = shortest_path(weighted, start, goal)
    assert p.method == "astar" and p.cost == 20.0
    # A budget too small for A*'s state refuses rather than answer with another method's path.
    with pytest.raises(MemoryBudgetError, match="memory budget of 40 bytes"):
        shortest_path(lat_open, start, goal, memory_budget=40)
    small_budget = shortest_path(lat_open, start, goal, method="bfs", memory_budget=40)
    assert small_budget.memory["mode"] == "frugal" and small_budget.method == "bfs"
    with pytest.raises(MemoryBudgetError):
        shortest_path(lat_open, start, goal, method="bfs", memory_budget=5)
    assert lat.spec()  # the lattice stays usable after searches


def test_bad_input_errors_name_the_field() -> None:
    lat = Lattice((4, 4), blocked=np.eye(4, dtype=bool)[::-1])
    weighted = Lattice((4, 4), weights=np.ones((4, 4)))
    cases = [
        (lambda: shortest_path(weighted, (0, 0), (3, 3), method="bfs"), MethodError, "method"),
        (lambda: shortest_path(weighted, (0, 0), (3, 3), method="bidirectional"), MethodError, "method"),
        (lambda: shortest_path(lat, (0, 0), (3, 3), method="teleport"), MethodError, "method"),
        (lambda: shortest_path(lat, (0, 0), (3, 3), memory="tiny"), MethodError, "memory"),
        (lambda: shortest_path(weighted, (0, 0), (3, 3), memory="frugal"), MethodError, "memory"),
        (lambda: shortest_path(lat, (0, 0), (3, 3), method="astar", memory="frugal"), MethodError, "method"),
        (lambda: shortest_path(Lattice((4, 4)), (0, 0), (3, 3), memory="frugal"), MethodError, "memory"),
        (lambda: shortest_path(lat, (0, 0), (3, 3), backend="quantum"), MethodError, "backend"),
        (lambda: shortest_path(lat, (0, 3), (3, 3)), BlockedVertexError, "start"),
        (lambda: shortest_path(lat, (0, 0), (3, 0)), BlockedVertexError, "goal"),
        (lambda: shortest_path(lat, (0, 0), (4, 3)), CoordinateError, "goal"),
        (lambda: shortest_path(lat, (0, 0, 0), (3, 3)), CoordinateError, "start"),
        (lambda: shortest_path(lat, (-1, 0), (3, 3)), CoordinateError, "start"),
        (lambda: shortest_path(lat, ("a", 0), (3, 3)), InvalidTypeError, "start"),
        (lambda: shortest_path("not a lattice", (0, 0), (3, 3)), InvalidTypeError, "lattice"),  # type: ignore[arg-type]
        (lambda: distance_field(lat, []), CoordinateError, "sources"),
        (lambda: distance_field(lat, [(0, 0), (3, 0)]), BlockedVertexError, "sources[1]"),
        (lambda: distance_field(lat, [(9, 9)]), CoordinateError, "sources"),
    ]
    for call, error, field in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value).startswith(field), (field, str(info.value))


def test_unreachable_goal_raises_no_path() -> None:
    wall = np.zeros((3, 5), dtype=bool)
    wall[:, 2] = True
    lat = Lattice((3, 5), blocked=wall)
    for method in UNWEIGHTED_METHODS:
        with pytest.raises(NoPathError) as info:
            shortest_path(lat, (0, 0), (2, 4), method=method)
        assert info.value.start == (0, 0) and info.value.goal == (2, 4)
    wrapped = Lattice((3, 5), periodic=[False, True], blocked=wall)
    assert shortest_path(wrapped, (0, 0), (0, 4)).length == 1


def test_public_api_is_checked() -> None:
    exported = set(catalytic.__all__)
    for name in ("Lattice", "shortest_path", "distance_field", "components", "analyze", "NoPathError"):
        assert name in exported
    for name in exported:
        assert hasattr(catalytic, name), name


def _same_path_or_both_unreachable(got: Callable[[], Path], want: Callable[[], Path]) -> tuple[Path, Path] | None:
    """Both calls return the same coordinates, or both raise NoPathError (then None)."""
    try:
        found = got()
    except NoPathError:
        with pytest.raises(NoPathError):
            want()
        return None
    expected = want()
    np.testing.assert_array_equal(found.coords, expected.coords)
    return found, expected


def test_pooled_state_is_put_back_between_queries() -> None:
    """Queries on one thread reuse a distance array that each search restores; answers never see stale state."""
    from catalytic import kernels

    lat = Lattice((9, 8, 7), periodic=[False, True, False], obstacles=[{"kind": "random", "p": 0.25, "seed": 3}])
    open_indices = np.flatnonzero(lat.open_mask_flat())
    rng = np.random.default_rng(5)
    for _ in range(30):
        start, goal = (tuple(int(c) for c in lat.coords_of(int(i))) for i in rng.choice(open_indices, 2))
        for method in ("astar", "dijkstra"):
            pair = _same_path_or_both_unreachable(
                lambda m=method, s=start, g=goal: shortest_path(lat, s, g, method=m, backend="numba"),
                lambda m=method, s=start, g=goal: shortest_path(lat, s, g, method=m, backend="numpy"),
            )
            if pair is not None:
                got, want = pair
                assert (got.cost, got.expanded) == (want.cost, want.expanded)
    pooled = [entry for entry in kernels._POOL.arrays if entry[0] == ("numba", lat.vertices, "<f8")]
    assert pooled and all(entry[2] == np.inf and np.isinf(entry[1]).all() for entry in pooled)


def test_path_memory_is_measured_against_baselines() -> None:
    lat = Lattice((12, 12, 12), obstacles=[{"kind": "random", "p": 0.2, "seed": 4}])
    start = tuple(int(c) for c in lat.coords_of(int(np.flatnonzero(lat.open_mask_flat())[0])))
    goal = tuple(int(c) for c in lat.coords_of(int(np.flatnonzero(lat.open_mask_flat())[-1])))
    path = shortest_path(lat, start, goal, method="bfs", backend="numba")
    memory = path.memory
    # int32 depths; numba's tile tables, the mask in tile form and four bit sets of one word per tile (free,
    # frontier, reached, listed), and the summary of one bit per tile
    from catalytic.kernels import _numba_kernels as numba_kernels

    layout = numba_kernels.tiling(*(np.asarray(x, dtype=np.int64) for x in (lat.shape, lat.strides)))
    tiles = layout[3].size
    words = 5 * tiles + (tiles + 63) // 64
    assert memory["state_bytes"] == 4 * lat.vertices + sum(table.nbytes for table in layout) + 8 * words
    assert memory["mask_bytes"] == lat.vertices
    assert memory["measured_bytes"] == memory["state_bytes"] + lat.vertices
    edges = to_networkx(lat).number_of_edges()
    assert memory["baselines"]["igraph"]["bytes"] == 32 * edges + 16 * lat.vertices
    assert memory["memory_efficiency_ratio"] == memory["baselines"]["igraph"]["bytes"] / memory["measured_bytes"]
    assert path.memory is memory  # built once
    # A pickled path (a Ray batch result) carries the finished report.
    fresh = shortest_path(lat, start, goal, method="bfs", backend="numba")
    copy = pickle.loads(pickle.dumps(fresh))
    assert copy.memory == memory and not callable(copy.memory_source)
    np.testing.assert_array_equal(copy.coords, path.coords)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_scratch_gives_identical_results_and_comes_back(backend: str) -> None:
    from catalytic.memory import buffer_digest

    lat = Lattice((20, 20, 20), periodic=[True, False, False], obstacles=[{"kind": "random", "p": 0.25, "seed": 9}])
    open_indices = np.flatnonzero(lat.open_mask_flat())
    start, goal = (tuple(int(c) for c in lat.coords_of(int(i))) for i in (open_indices[0], open_indices[-1]))
    lent = np.random.default_rng(1).integers(0, 4, size=200_000, dtype=np.int64)  # compressible, not zero
    before = buffer_digest(lent)
    for method in UNWEIGHTED_METHODS:
        plain = shortest_path(lat, start, goal, method=method, backend=backend)
        with catalytic.borrow(lent) as scratch:
            lent_run = shortest_path(lat, start, goal, method=method, backend=backend, scratch=scratch)
        assert buffer_digest(lent) == before
        assert lent_run.memory["scratch"] is True
        assert (lent_run.coords.tolist(), lent_run.cost, lent_run.expanded) == (
            plain.coords.tolist(),
            plain.cost,
            plain.expanded,
        )


def test_scratch_restored_when_the_kernel_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from catalytic.kernels.backend import get_backend
    from catalytic.memory import buffer_digest

    be = get_backend("numba")
    real = be.bfs

    def failing_bfs(geom: object, mask: object, sources: np.ndarray, target: int, dist: np.ndarray) -> int:
        real(geom, mask, sources, target, dist)  # the state (in lent memory) is now dirty
        raise RuntimeError("injected failure mid-kernel")

    monkeypatch.setattr(be, "bfs", failing_bfs)
    lat = Lattice((30, 30))
    lent = np.arange(100_000, dtype=np.int32)
    before = buffer_digest(lent)
    with pytest.raises(RuntimeError, match="injected"), catalytic.borrow(lent) as scratch:
        shortest_path(lat, (0, 0), (29, 29), method="bfs", backend="numba", scratch=scratch)
    assert buffer_digest(lent) == before


def test_scratch_aliasing_the_lattice_is_refused() -> None:
    lat = Lattice((10, 10), weights=np.ones((10, 10)))
    assert lat.weights is not None
    # The lattice's own arrays are read-only, so they can never be lent out under a running search.
    with pytest.raises(catalytic.ScratchError) as info, catalytic.borrow(lat.weights):
        pass
    assert str(info.value).startswith("buffers[0]")


def test_an_adopted_shared_mask_is_used_and_checked() -> None:
    from catalytic.errors import MaskError
    from catalytic.kernels import adopt_open_mask

    lat = Lattice((7, 6, 5), obstacles=[{"kind": "random", "p": 0.3, "seed": 2}])
    shared = lat.open_mask_flat().astype(np.uint8)
    shared.flags.writeable = False  # as mapped from Ray's object store
    adopt_open_mask(lat, shared, "numba")
    open_indices = np.flatnonzero(shared)
    start, goal = (tuple(int(c) for c in lat.coords_of(int(i))) for i in (open_indices[0], open_indices[-1]))
    fresh = Lattice((7, 6, 5), obstacles=[{"kind": "random", "p": 0.3, "seed": 2}])
    for method in ("bfs", "astar"):
        _same_path_or_both_unreachable(
            lambda m=method, s=start, g=goal: shortest_path(lat, s, g, method=m, backend="numba"),
            lambda m=method: shortest_path(fresh, start, goal, method=m),
        )
    labels, count = components(lat, backend="numba")
    expected_labels, expected_count = components(fresh, backend="numba")
    assert count == expected_count
    np.testing.assert_array_equal(labels, expected_labels)
    with pytest.raises(MaskError, match="mask"):
        adopt_open_mask(lat, shared[:-1], "numba")
    with pytest.raises(MaskError, match="mask"):
        adopt_open_mask(lat, shared.astype(bool), "numba")
    with pytest.raises(MethodError, match="backend"):
        adopt_open_mask(lat, shared, "cupy")
