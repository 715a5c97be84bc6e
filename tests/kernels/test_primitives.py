"""Backend primitives against networkx, and every backend against the NumPy reference bit for bit."""

from __future__ import annotations

import collections

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import (
    canonical_path,
    check_path,
    endpoints,
    lattices,
    nx_components,
    nx_distances,
    path_cost,
    to_networkx,
)

from catalytic.errors import InvalidInputError
from catalytic.kernels.backend import Backend, Geometry, backends, get_backend
from catalytic.lattice import Lattice

BACKENDS = sorted(set(backends()) | {"numpy"}, key=["numpy", "numba", "cupy"].index)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return get_backend(request.param)


@pytest.fixture(scope="module")
def reference() -> Backend:
    return get_backend("numpy")


def _open(backend: Backend, lattice: Lattice) -> tuple[Geometry, object]:
    geom = Geometry.of(lattice)
    return geom, backend.open_mask(geom)


def _bfs(backend: Backend, lattice: Lattice, sources: list[int], target: int) -> tuple[np.ndarray, int]:
    geom, open_mask = _open(backend, lattice)
    dist = backend.full(lattice.vertices, -1, np.int32)
    expanded = backend.bfs(geom, open_mask, np.asarray(sources, dtype=np.int64), target, dist)
    return backend.to_host(dist), expanded


def _dijkstra(
    backend: Backend, lattice: Lattice, sources: list[int], target: int, astar: bool
) -> tuple[np.ndarray, int]:
    geom, open_mask = _open(backend, lattice)
    dist = backend.full(lattice.vertices, np.inf, np.float64)
    expanded = backend.dijkstra(geom, open_mask, np.asarray(sources, dtype=np.int64), target, dist, astar)
    return backend.to_host(dist), expanded


def _trace(backend: Backend, lattice: Lattice, dist: np.ndarray, root: int, vertex: int) -> np.ndarray:
    geom, open_mask = _open(backend, lattice)
    return backend.trace_path(geom, open_mask, backend.to_device(dist), root, vertex)


def _sources(data: st.DataObject, lattice: Lattice) -> list[int]:
    return data.draw(st.lists(endpoints(lattice), min_size=1, max_size=3))


# --- lattice primitives -------------------------------------------------------------------------------------


@given(data=st.data())
def test_open_mask_and_bits_match_the_lattice(backend: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices())
    geom = Geometry.of(lattice)
    mask = backend.to_host(backend.open_mask(geom))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, lattice.open_mask_flat().astype(np.uint8))
    bits = backend.to_host(backend.open_bits(geom))
    assert bits.shape == ((lattice.vertices + 7) // 8,)
    index = np.arange(lattice.vertices)
    np.testing.assert_array_equal((bits[index >> 3] >> (index & 7)) & 1, mask)


@given(data=st.data())
def test_degree_histogram_matches_networkx(backend: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    geom, open_mask = _open(backend, lattice)
    histogram = backend.degree_histogram(geom, open_mask)
    expected = np.zeros(2 * lattice.ndim + 1, dtype=np.int64)
    for _, degree in to_networkx(lattice).degree:
        expected[degree] += 1
    assert histogram.dtype == np.int64
    np.testing.assert_array_equal(histogram, expected)


@pytest.mark.parametrize(
    ("shape", "periodic", "expected"),
    [
        ((1,), True, [1, 0, 0]),
        ((2,), True, [0, 2, 0]),
        ((3,), True, [0, 0, 3]),
        ((2, 1), [True, True], [0, 2, 0, 0, 0]),
        ((3, 3), False, [0, 0, 4, 4, 1]),
    ],
)
def test_degree_histogram_counts_distinct_neighbours(
    backend: Backend, shape: tuple[int, ...], periodic: bool | list[bool], expected: list[int]
) -> None:
    geom, open_mask = _open(backend, Lattice(shape, periodic=periodic))
    assert backend.degree_histogram(geom, open_mask).tolist() == expected


# --- BFS ----------------------------------------------------------------------------------------------------


@given(data=st.data())
def test_bfs_distance_field_matches_networkx(backend: Backend, reference: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    sources = _sources(data, lattice)
    dist, expanded = _bfs(backend, lattice, sources, -1)
    expected = nx_distances(lattice, sources)
    assert dist.dtype == np.int32
    np.testing.assert_array_equal(dist, expected)
    assert expanded == np.count_nonzero(expected >= 0)
    ref_dist, ref_expanded = _bfs(reference, lattice, sources, -1)
    np.testing.assert_array_equal(dist, ref_dist)
    assert expanded == ref_expanded


@given(data=st.data())
def test_bfs_stops_after_the_target_level(backend: Backend, reference: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    sources = _sources(data, lattice)
    target = data.draw(endpoints(lattice))
    dist, expanded = _bfs(backend, lattice, sources, target)
    full = nx_distances(lattice, sources)
    if full[target] < 0:
        np.testing.assert_array_equal(dist, full)
        assert expanded == np.count_nonzero(full >= 0)
    else:
        np.testing.assert_array_equal(dist, np.where(full <= full[target], full, -1))
        assert expanded == np.count_nonzero((full >= 0) & (full < full[target]))
    ref_dist, ref_expanded = _bfs(reference, lattice, sources, target)
    np.testing.assert_array_equal(dist, ref_dist)
    assert expanded == ref_expanded


def test_bfs_target_among_the_sources_expands_nothing(backend: Backend) -> None:
    dist, expanded = _bfs(backend, Lattice((4, 4)), [5, 0], 5)
    assert expanded == 0
    assert dist[5] == 0


@given(data=st.data())
def test_traced_bfs_path_is_canonical(backend: Backend, reference: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    start, goal = data.draw(endpoints(lattice)), data.draw(endpoints(lattice))
    dist, _ = _bfs(backend, lattice, [start], goal)
    if dist[goal] < 0:
        return
    path = _trace(backend, lattice, dist, start, goal)
    assert path.dtype == np.int64
    assert path.tolist() == canonical_path(lattice, nx_distances(lattice, [start]), start, goal)
    coords = lattice.coords_of(path[::-1])
    check_path(lattice, coords, coords[0].tolist(), coords[-1].tolist(), float(dist[goal]))
    np.testing.assert_array_equal(path, _trace(reference, lattice, dist, start, goal))


def test_trace_path_takes_the_first_neighbour_in_canonical_order(backend: Backend) -> None:
    lattice = Lattice((3, 3))
    dist, _ = _bfs(backend, lattice, [0], -1)
    # From (2, 2) both (1, 2) and (2, 1) are one step closer; axis 0 comes first.
    assert _trace(backend, lattice, dist, 0, 8).tolist() == [8, 5, 2, 1, 0]


def test_trace_path_wraps_on_periodic_axes(backend: Backend) -> None:
    lattice = Lattice((1, 6), periodic=True)
    dist, _ = _bfs(backend, lattice, [0], -1)
    assert _trace(backend, lattice, dist, 0, 4).tolist() == [4, 5, 0]


# --- Dijkstra and A* ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("astar", [False, True])
@given(data=st.data())
def test_dijkstra_field_matches_networkx(
    backend: Backend, reference: Backend, astar: bool, data: st.DataObject
) -> None:
    lattice = data.draw(lattices())
    sources = _sources(data, lattice)
    dist, expanded = _dijkstra(backend, lattice, sources, -1, astar)
    expected = nx_distances(lattice, sources, weighted=True)
    assert dist.dtype == np.float64
    np.testing.assert_allclose(dist, expected, rtol=1e-12)
    assert expanded == np.count_nonzero(np.isfinite(expected))
    ref_dist, ref_expanded = _dijkstra(reference, lattice, sources, -1, astar)
    np.testing.assert_array_equal(dist, ref_dist)
    assert expanded == ref_expanded


@pytest.mark.parametrize("astar", [False, True])
@given(data=st.data())
def test_search_to_a_target_is_optimal(backend: Backend, reference: Backend, astar: bool, data: st.DataObject) -> None:
    lattice = data.draw(lattices())
    start, goal = data.draw(endpoints(lattice)), data.draw(endpoints(lattice))
    dist, expanded = _dijkstra(backend, lattice, [start], goal, astar)
    expected = nx_distances(lattice, [start], weighted=True)
    reachable = np.isfinite(expected)
    # Every label is the cost of some path, so never below the optimum.
    assert np.all(dist[reachable] >= expected[reachable] * (1 - 1e-12))
    assert np.all(np.isinf(dist[~reachable]))
    ref_dist, ref_expanded = _dijkstra(reference, lattice, [start], goal, astar)
    np.testing.assert_array_equal(dist, ref_dist)
    assert expanded == ref_expanded
    if not reachable[goal]:
        assert expanded == np.count_nonzero(reachable)
        return
    cost = expected[goal]
    assert dist[goal] == pytest.approx(cost, rel=1e-12)
    settled_at_most = np.count_nonzero(expected <= cost * (1 + 1e-12))
    assert expanded <= settled_at_most
    if not astar:
        assert expanded >= np.count_nonzero(expected < cost * (1 - 1e-12))
    path = _trace(backend, lattice, dist, start, goal)
    coords = lattice.coords_of(path[::-1])
    check_path(lattice, coords, coords[0].tolist(), coords[-1].tolist(), cost)
    assert path_cost(lattice, path[::-1].tolist()) == pytest.approx(dist[goal], rel=1e-12)
    np.testing.assert_array_equal(path, _trace(reference, lattice, dist, start, goal))


def test_dijkstra_breaks_cost_ties_by_heuristic_then_index(backend: Backend) -> None:
    lattice = Lattice((3, 3))
    dist, expanded = _dijkstra(backend, lattice, [0], 8, astar=True)
    # Every vertex on a shortest path has f = 4; lower h pops first, then lower index, so A* settles just the
    # 5 vertices of one path.
    assert expanded == 5
    assert dist[8] == 4.0
    assert _trace(backend, lattice, dist, 0, 8).tolist() == [8, 5, 2, 1, 0]


def test_astar_heuristic_is_periodic_aware(backend: Backend) -> None:
    lattice = Lattice((1, 10), periodic=True)
    dist, expanded = _dijkstra(backend, lattice, [0], 8, astar=True)
    assert dist[8] == 2.0
    assert expanded == 3


def _seeded(backend: Backend, lattice: Lattice, start: np.ndarray, sources: list[int]) -> np.ndarray:
    geom, open_mask = _open(backend, lattice)
    dist = backend.to_device(start.copy())
    backend.dijkstra(geom, open_mask, np.asarray(sources, dtype=np.int64), -1, dist, False)
    return backend.to_host(dist)


@given(data=st.data())
def test_dijkstra_seeds_start_at_their_cost(backend: Backend, reference: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices())
    seeds = data.draw(st.lists(endpoints(lattice), min_size=1, max_size=3, unique=True))
    offsets = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.25, 7.0]), min_size=len(seeds), max_size=len(seeds)))
    start = np.full(lattice.vertices, np.inf)
    start[seeds] = offsets
    got = _seeded(backend, lattice, start, seeds)
    # each vertex: the cheapest seed's cost plus the cost of the path from it
    fields = [
        offset + nx_distances(lattice, [seed], weighted=True) for seed, offset in zip(seeds, offsets, strict=True)
    ]
    np.testing.assert_allclose(got, np.min(fields, axis=0), rtol=1e-12)
    np.testing.assert_array_equal(got, _seeded(reference, lattice, start, seeds))


@given(data=st.data())
def test_dijkstra_from_seeds_finishes_a_finished_field(
    backend: Backend, reference: Backend, data: st.DataObject
) -> None:
    # How a slab of a partitioned lattice takes its halo: a finished field holds upper bounds, the seeds lower
    # them, and the result is bit for bit the field of every source at once.
    lattice = data.draw(lattices())
    if lattice.open_vertices < 2:
        return
    picked = data.draw(st.lists(endpoints(lattice), min_size=2, max_size=4, unique=True))
    sources, seeds = picked[:1], picked[1:]
    offsets = data.draw(st.lists(st.sampled_from([0.5, 1.0, 3.0, 6.5]), min_size=len(seeds), max_size=len(seeds)))
    finished = _seeded(backend, lattice, np.full(lattice.vertices, np.inf), sources)
    lowered = finished.copy()
    lowered[seeds] = np.minimum(lowered[seeds], offsets)
    start = np.full(lattice.vertices, np.inf)
    start[seeds] = offsets
    at_once = _seeded(backend, lattice, start, sources + seeds)
    np.testing.assert_array_equal(_seeded(backend, lattice, lowered, seeds), at_once)
    np.testing.assert_array_equal(at_once, _seeded(reference, lattice, start, sources + seeds))


def test_dijkstra_spreads_only_what_it_lowers(backend: Backend) -> None:
    lattice = Lattice((1, 6))
    # from the seed at 0: vertex 1 drops from 9.0 to 1.0 and spreads; vertex 2 keeps its smaller 1.5, which is
    # no news, so nothing spreads past it (a finished field would already hold 2.5 at vertex 3)
    start = np.array([0.0, 9.0, 1.5, 7.0, np.inf, np.inf])
    assert _seeded(backend, lattice, start, [0]).tolist() == [0.0, 1.0, 1.5, 7.0, np.inf, np.inf]
    start[3] = np.inf
    assert _seeded(backend, lattice, start, [0, 2]).tolist() == [0.0, 1.0, 1.5, 2.5, 3.5, 4.5]


@given(data=st.data())
def test_trace_path_ends_at_its_first_step_out_of_the_window(
    backend: Backend, reference: Backend, data: st.DataObject
) -> None:
    lattice = data.draw(lattices(weighted=False))
    start, goal = data.draw(endpoints(lattice)), data.draw(endpoints(lattice))
    dist, _ = _bfs(reference, lattice, [start], -1)
    if dist[goal] < 0:
        return
    full = _trace(reference, lattice, dist, start, goal).tolist()
    lo = data.draw(st.integers(0, goal))
    hi = data.draw(st.integers(goal + 1, lattice.vertices))
    outside = [i for i, v in enumerate(full) if not lo <= v < hi]
    expected = full[: outside[0] + 1] if outside else full
    geom, open_mask = _open(backend, lattice)
    for root in (start, -1) if outside else (start,):
        got = backend.trace_path(geom, open_mask, backend.to_device(dist), root, goal, (lo, hi))
        assert got.tolist() == expected


# --- bidirectional BFS --------------------------------------------------------------------------------------


def _bidirectional(
    backend: Backend, lattice: Lattice, start: int, goal: int
) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    geom, open_mask = _open(backend, lattice)
    dist_start = backend.full(lattice.vertices, -1, np.int32)
    dist_goal = backend.full(lattice.vertices, -1, np.int32)
    result = backend.bidirectional(geom, open_mask, start, goal, dist_start, dist_goal)
    return result, backend.to_host(dist_start), backend.to_host(dist_goal)


@given(data=st.data())
def test_bidirectional_matches_networkx(backend: Backend, reference: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    start, goal = data.draw(endpoints(lattice)), data.draw(endpoints(lattice))
    (length, meet, expanded), dist_start, dist_goal = _bidirectional(backend, lattice, start, goal)
    from_start, from_goal = nx_distances(lattice, [start]), nx_distances(lattice, [goal])
    assert length == from_start[goal]
    labelled_start, labelled_goal = dist_start >= 0, dist_goal >= 0
    np.testing.assert_array_equal(dist_start[labelled_start], from_start[labelled_start])
    np.testing.assert_array_equal(dist_goal[labelled_goal], from_goal[labelled_goal])
    if length < 0:
        assert meet == -1
    else:
        assert dist_start[meet] + dist_goal[meet] == length
        both = labelled_start & labelled_goal
        sums = np.where(both, dist_start.astype(np.int64) + dist_goal, np.iinfo(np.int64).max)
        assert meet == int(np.flatnonzero(sums == length)[0])
        half_start = _trace(backend, lattice, dist_start, start, meet)[::-1]
        half_goal = _trace(backend, lattice, dist_goal, goal, meet)
        path = np.concatenate([half_start, half_goal[1:]])
        coords = lattice.coords_of(path)
        check_path(lattice, coords, coords[0].tolist(), coords[-1].tolist(), float(length))
    assert expanded <= np.count_nonzero(from_start >= 0) + np.count_nonzero(from_goal >= 0)
    ref = _bidirectional(reference, lattice, start, goal)
    assert (length, meet, expanded) == ref[0]
    np.testing.assert_array_equal(dist_start, ref[1])
    np.testing.assert_array_equal(dist_goal, ref[2])


def test_bidirectional_same_vertex(backend: Backend) -> None:
    assert _bidirectional(backend, Lattice((3, 3)), 4, 4)[0] == (0, 4, 0)


def test_bidirectional_alternates_by_frontier_size(backend: Backend) -> None:
    # start side, goal side (smaller frontier), then start side again on a tie; the level of {5, 7} meets
    # {2, 4, 6} all at total 4, and the lowest index wins.
    assert _bidirectional(backend, Lattice((3, 3)), 0, 8)[0] == (4, 2, 6)


def test_bidirectional_unreachable(backend: Backend) -> None:
    lattice = Lattice((1, 5), obstacles=[{"kind": "box", "lo": [0, 2], "hi": [0, 2]}])
    # {0} then {1} (the start side wins the tie) and the start side runs dry.
    assert _bidirectional(backend, lattice, 0, 4)[0] == (-1, -1, 2)


# --- frugal BFS ---------------------------------------------------------------------------------------------


def _frugal(backend: Backend, lattice: Lattice, start: int, goal: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    geom = Geometry.of(lattice)
    bits = backend.open_bits(geom)
    size, dtype = backend.frugal_state_size(geom)
    state = backend.full(size, 0, dtype)
    length, expanded = backend.bfs_frugal(geom, bits, start, goal, state)
    path = backend.trace_path_frugal(geom, bits, state, start, goal, length) if length >= 0 else np.empty(0)
    return length, expanded, backend.frugal_depths(geom, state), path


@given(data=st.data())
def test_frugal_bfs_equals_full_bfs(backend: Backend, reference: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(weighted=False))
    start, goal = data.draw(endpoints(lattice)), data.draw(endpoints(lattice))
    length, expanded, state, path = _frugal(backend, lattice, start, goal)
    dist, full_expanded = _bfs(reference, lattice, [start], goal)
    assert length == dist[goal]
    assert expanded == full_expanded
    assert state.dtype == np.uint8
    assert state.shape == (lattice.vertices,)
    np.testing.assert_array_equal(state, np.where(dist >= 0, 1 + dist % 3, 0))
    if length >= 0:
        assert path.dtype == np.int64
        np.testing.assert_array_equal(path, _trace(reference, lattice, dist, start, goal))
    ref_length, ref_expanded, ref_state, ref_path = _frugal(reference, lattice, start, goal)
    assert (length, expanded) == (ref_length, ref_expanded)
    np.testing.assert_array_equal(state, ref_state)
    np.testing.assert_array_equal(path, ref_path)


def test_frugal_bfs_unreachable(backend: Backend) -> None:
    lattice = Lattice((3, 3), obstacles=[{"kind": "box", "lo": [0, 1], "hi": [2, 1]}])
    length, expanded, _, _ = _frugal(backend, lattice, 0, 2)
    assert (length, expanded) == (-1, 3)


# --- labels -------------------------------------------------------------------------------------------------


@given(data=st.data())
def test_labels_match_networkx_and_are_numbered_by_lowest_index(
    backend: Backend, reference: Backend, data: st.DataObject
) -> None:
    lattice = data.draw(lattices(weighted=False))
    geom, open_mask = _open(backend, lattice)
    labels, count = backend.label(geom, open_mask)
    labels = backend.to_host(labels)
    assert labels.dtype == np.int32
    components = nx_components(lattice)
    assert count == len(components)
    np.testing.assert_array_equal(labels == 0, ~lattice.open_mask_flat())
    grouped = collections.defaultdict(set)
    for vertex in np.flatnonzero(labels).tolist():
        grouped[int(labels[vertex])].add(vertex)
    assert {frozenset(members) for members in grouped.values()} == components
    lowest = sorted(min(members) for members in components)
    assert [int(labels[v]) for v in lowest] == list(range(1, count + 1))
    ref_labels, ref_count = reference.label(Geometry.of(lattice), reference.open_mask(Geometry.of(lattice)))
    np.testing.assert_array_equal(labels, ref_labels)
    assert count == ref_count


def test_labels_connect_across_the_wrap(backend: Backend) -> None:
    blocked = np.array([[False, True, False, False, True, False]])
    for periodic, expected in ((False, [1, 0, 2, 2, 0, 3]), (True, [1, 0, 2, 2, 0, 1])):
        geom, open_mask = _open(backend, Lattice((1, 6), periodic=periodic, blocked=blocked))
        labels, count = backend.label(geom, open_mask)
        assert backend.to_host(labels).tolist() == expected
        assert count == max(expected)


@settings(max_examples=10)
@given(data=st.data())
def test_large_lattice_labels_match_networkx(backend: Backend, data: st.DataObject) -> None:
    lattice = data.draw(lattices(max_dim=3, max_vertices=5000, weighted=False, min_dim=2))
    geom, open_mask = _open(backend, lattice)
    labels, count = backend.label(geom, open_mask)
    assert count == nx.number_connected_components(to_networkx(lattice))
    assert int(backend.to_host(labels).max(initial=0)) == count


# --- refused inputs -------------------------------------------------------------------------------------------


def test_trace_path_refuses_a_field_without_a_chain(backend: Backend) -> None:
    lattice = Lattice((1, 4))
    dist = np.array([0, -1, 2, 3], dtype=np.int32)
    with pytest.raises(InvalidInputError) as caught:
        _trace(backend, lattice, dist, 0, 3)
    assert caught.value.field == "dist"


def test_trace_path_frugal_refuses_a_negative_length(backend: Backend) -> None:
    geom = Geometry.of(Lattice((2, 2)))
    size, dtype = backend.frugal_state_size(geom)
    state = backend.full(size, 0, dtype)
    with pytest.raises(InvalidInputError) as caught:
        backend.trace_path_frugal(geom, backend.open_bits(geom), state, 0, 3, -1)
    assert caught.value.field == "length"


def test_trace_path_frugal_refuses_a_foreign_state(backend: Backend) -> None:
    geom = Geometry.of(Lattice((2, 2)))
    size, dtype = backend.frugal_state_size(geom)
    state = backend.full(size, 0, dtype)
    with pytest.raises(InvalidInputError) as caught:
        backend.trace_path_frugal(geom, backend.open_bits(geom), state, 0, 3, 2)
    assert caught.value.field == "state"
