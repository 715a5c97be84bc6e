"""The numba backend against the numpy reference, bit for bit, plus what only the numba backend has to get right:
frugal search at a million vertices, bit and 2-bit packing at byte boundaries, and the wide index dtypes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from naive import endpoints, lattices, nx_components, nx_distances

from catalytic.errors import InvalidInputError
from catalytic.kernels import _numba_frugal as frugal
from catalytic.kernels import _numba_kernels as kernels
from catalytic.kernels.backend import Geometry, get_backend
from catalytic.kernels.numba_backend import NumbaBackend, _index_dtype
from catalytic.kernels.numpy_backend import NumpyBackend
from catalytic.lattice import Lattice

FAST = NumbaBackend()
REFERENCE = NumpyBackend()


def _bfs(backend: NumbaBackend | NumpyBackend, geom: Geometry, mask: np.ndarray, sources: list[int], target: int):  # type: ignore[no-untyped-def]
    dist = backend.full(geom.vertices, -1, np.int32)
    expanded = backend.bfs(geom, mask, np.array(sources, dtype=np.int64), target, dist)
    return dist, expanded


def _dijkstra(
    backend: NumbaBackend | NumpyBackend, geom: Geometry, mask: np.ndarray, sources: list[int], target: int, astar: bool
):  # type: ignore[no-untyped-def]
    dist = backend.full(geom.vertices, np.inf, np.float64)
    expanded = backend.dijkstra(geom, mask, np.array(sources, dtype=np.int64), target, dist, astar)
    return dist, expanded


def _frugal(backend: NumbaBackend | NumpyBackend, geom: Geometry, start: int, goal: int):  # type: ignore[no-untyped-def]
    bits = backend.open_bits(geom)
    size, dtype = backend.frugal_state_size(geom)
    state = backend.full(size, 0, dtype)
    length, expanded = backend.bfs_frugal(geom, bits, start, goal, state)
    path = backend.trace_path_frugal(geom, bits, state, start, goal, length) if length >= 0 else None
    return length, expanded, backend.frugal_depths(geom, state), path


def test_registered_and_probed() -> None:
    assert NumbaBackend.probe() is None
    assert isinstance(get_backend("numba"), NumbaBackend)


@given(lattice=lattices(max_dim=5, max_vertices=500), data=st.data())
def test_lattice_primitives_match_reference(lattice: Lattice, data: st.DataObject) -> None:
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    np.testing.assert_array_equal(mask, lattice.open_mask_flat().astype(np.uint8))
    np.testing.assert_array_equal(mask, REFERENCE.open_mask(geom))
    np.testing.assert_array_equal(FAST.open_bits(geom), REFERENCE.open_bits(geom))
    np.testing.assert_array_equal(FAST.degree_histogram(geom, mask), REFERENCE.degree_histogram(geom, mask))
    labels, count = FAST.label(geom, mask)
    ref_labels, ref_count = REFERENCE.label(geom, mask)
    assert count == ref_count == len(nx_components(lattice))
    assert labels.dtype == ref_labels.dtype
    np.testing.assert_array_equal(labels, ref_labels)


@given(lattice=lattices(max_dim=5, max_vertices=2000), data=st.data())
def test_tile_and_queue_bfs_agree(lattice: Lattice, data: st.DataObject) -> None:
    """The bit-set BFS over tiles and the vertex-queue BFS give the reference's depths and counts."""
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    sources = np.array(data.draw(st.lists(endpoints(lattice), min_size=1, max_size=3)), dtype=np.int64)
    target = data.draw(st.sampled_from([-1, data.draw(endpoints(lattice))]))
    ref_dist, ref_expanded = _bfs(REFERENCE, geom, mask, list(sources), target)
    axes = (geom.shape, geom.strides, geom.periodic)
    tiled = np.full(geom.vertices, -1, np.int32)
    layout = kernels.tiling(geom.shape, geom.strides)
    opened = kernels.open_tiles(mask, geom.shape, layout)
    assert kernels.bfs_tiles(axes, opened, sources, target, tiled, layout, np.zeros(3, np.int64)) == ref_expanded
    np.testing.assert_array_equal(tiled, ref_dist)
    queued = np.full(geom.vertices, -1, np.int32)
    queue = np.empty(geom.vertices, np.int64)
    assert kernels.bfs(axes, mask, sources, target, queued, queue, np.zeros(3, np.int64)) == ref_expanded
    np.testing.assert_array_equal(queued, ref_dist)


@given(lattice=lattices(max_dim=4, max_vertices=600), data=st.data())
def test_dijkstra_reports_exactly_the_entries_it_wrote(lattice: Lattice, data: st.DataObject) -> None:
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    sources = np.array(data.draw(st.lists(endpoints(lattice), min_size=1, max_size=3)), dtype=np.int64)
    target = data.draw(st.sampled_from([-1, data.draw(endpoints(lattice))]))
    astar = data.draw(st.booleans()) and target >= 0
    dist = np.full(geom.vertices, np.inf)
    expanded, written = FAST.dijkstra_written(geom, mask, sources, target, dist, astar)
    assert written.dtype == np.int64 and len(set(written.tolist())) == written.size
    np.testing.assert_array_equal(np.sort(written), np.flatnonzero(np.isfinite(dist)))
    ref = np.full(geom.vertices, np.inf)
    assert REFERENCE.dijkstra(geom, mask, sources, target, ref, astar) == expanded
    np.testing.assert_array_equal(dist, ref)


@pytest.mark.parametrize("shape", [(3, 5, 70), (7,), (1, 130), (2, 3, 1, 5, 2, 3), (10, 10, 10, 10, 10)])
def test_tiling_maps_every_vertex_to_one_bit(shape: tuple[int, ...]) -> None:
    lattice = Lattice(shape)
    geom = Geometry.of(lattice)
    log, tile_strides, offset, base, edges = kernels.tiling(geom.shape, geom.strides)
    assert int(log.sum()) == min(6, sum(int(np.ceil(np.log2(n))) for n in shape))
    # every (tile, bit) inside the lattice names a distinct vertex, and the packed mask sets exactly those bits
    packed = kernels.open_tiles(FAST.open_mask(geom), geom.shape, (log, tile_strides, offset, base, edges))
    bits = np.unpackbits(packed.view(np.uint8), bitorder="little").reshape(base.size, 64).astype(bool)
    tile_of, bit_of = np.nonzero(bits)
    np.testing.assert_array_equal(np.sort(base[tile_of] + offset[bit_of]), np.arange(geom.vertices))
    # edge flags: the first and the last tile along each axis
    grid = [-(-n // (1 << int(b))) for n, b in zip(shape, log, strict=True)]
    tile_coords = np.indices(grid).reshape(len(shape), -1)
    for k in range(len(shape)):
        np.testing.assert_array_equal((edges >> np.uint64(2 * k)) & np.uint64(1), tile_coords[k] == 0)
        np.testing.assert_array_equal((edges >> np.uint64(2 * k + 1)) & np.uint64(1), tile_coords[k] == grid[k] - 1)


@given(lattice=lattices(max_dim=5, max_vertices=500), data=st.data())
def test_searches_match_reference(lattice: Lattice, data: st.DataObject) -> None:
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    start = data.draw(endpoints(lattice))
    goal = data.draw(endpoints(lattice))
    more = data.draw(st.lists(endpoints(lattice), max_size=3))

    for target in (goal, -1):
        dist, expanded = _bfs(FAST, geom, mask, [start, *more], target)
        ref_dist, ref_expanded = _bfs(REFERENCE, geom, mask, [start, *more], target)
        assert expanded == ref_expanded
        np.testing.assert_array_equal(dist, ref_dist)
    reached = dist >= 0
    np.testing.assert_array_equal(dist[reached], nx_distances(lattice, [start, *more], weighted=False)[reached])
    single, _ = _bfs(FAST, geom, mask, [start], -1)
    if single[goal] >= 0:
        np.testing.assert_array_equal(
            FAST.trace_path(geom, mask, single, start, goal), REFERENCE.trace_path(geom, mask, single, start, goal)
        )

    ds, dg = FAST.full(geom.vertices, -1, np.int32), FAST.full(geom.vertices, -1, np.int32)
    rs, rg = REFERENCE.full(geom.vertices, -1, np.int32), REFERENCE.full(geom.vertices, -1, np.int32)
    assert FAST.bidirectional(geom, mask, start, goal, ds, dg) == REFERENCE.bidirectional(
        geom, mask, start, goal, rs, rg
    )
    np.testing.assert_array_equal(ds, rs)
    np.testing.assert_array_equal(dg, rg)

    for astar in (False, True):
        for target in (goal, -1):
            cost, expanded = _dijkstra(FAST, geom, mask, [start], target, astar)
            ref_cost, ref_expanded = _dijkstra(REFERENCE, geom, mask, [start], target, astar)
            assert expanded == ref_expanded
            np.testing.assert_array_equal(cost, ref_cost)
            if np.isfinite(cost[goal]):
                np.testing.assert_array_equal(
                    FAST.trace_path(geom, mask, cost, start, goal), REFERENCE.trace_path(geom, mask, cost, start, goal)
                )

    length, expanded, state, path = _frugal(FAST, geom, start, goal)
    ref_length, ref_expanded, ref_state, ref_path = _frugal(REFERENCE, geom, start, goal)
    assert (length, expanded) == (ref_length, ref_expanded)
    np.testing.assert_array_equal(state, ref_state)
    if length >= 0:
        np.testing.assert_array_equal(path, ref_path)


def test_seeded_batch_matches_reference() -> None:
    rng = np.random.default_rng(20261129)
    for case in range(25):
        d = int(rng.integers(1, 5))
        shape = [int(n) for n in rng.integers(1, 9, size=d)]
        periodic = [bool(p) for p in rng.random(d) < 0.5]
        weights = rng.uniform(0.5, 3.0, size=shape) if case % 2 else None
        lattice = Lattice(
            shape, periodic=periodic, weights=weights, obstacles=[{"kind": "random", "p": 0.25, "seed": case}]
        )
        geom = Geometry.of(lattice)
        mask = FAST.open_mask(geom)
        open_indices = np.flatnonzero(mask)
        if open_indices.size == 0:
            continue
        start, goal = (int(v) for v in rng.choice(open_indices, size=2))
        for astar in (False, True):
            cost, expanded = _dijkstra(FAST, geom, mask, [start], goal, astar)
            ref_cost, ref_expanded = _dijkstra(REFERENCE, geom, mask, [start], goal, astar)
            assert expanded == ref_expanded, (case, astar)
            np.testing.assert_array_equal(cost, ref_cost)
        dist, expanded = _bfs(FAST, geom, mask, [start], goal)
        ref_dist, ref_expanded = _bfs(REFERENCE, geom, mask, [start], goal)
        assert expanded == ref_expanded
        np.testing.assert_array_equal(dist, ref_dist)


def test_frugal_matches_full_bfs_on_a_million_vertices() -> None:
    # The giant bench runs exactly this sequence on 63^5; here 16^5 = 1,048,576 vertices.
    lattice = Lattice((16,) * 5, obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    start, goal = 0, geom.vertices - 1
    assert mask[start] and mask[goal]
    length, expanded, state, path = _frugal(FAST, geom, start, goal)
    dist, full_expanded = _bfs(FAST, geom, mask, [start], goal)
    assert length == dist[goal] > 0
    assert expanded == full_expanded
    np.testing.assert_array_equal(path, FAST.trace_path(geom, mask, dist, start, goal))
    # every labelled vertex holds 1 + depth mod 3, every other one 0
    np.testing.assert_array_equal(state, np.where(dist >= 0, 1 + dist % 3, 0))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 15, 16, 17, 65535, 65536, 65537, 131081])
def test_open_bits_at_byte_and_chunk_boundaries(n: int) -> None:
    lattice = Lattice(n, obstacles=[{"kind": "random", "p": 0.3, "seed": 11}])
    bits = FAST.open_bits(Geometry.of(lattice))
    assert bits.shape == ((n + 7) // 8,)
    expected = np.packbits(lattice.open_mask_flat(), bitorder="little")
    np.testing.assert_array_equal(bits, expected)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 13, 63, 64, 65, 4099])
def test_frugal_tiles_on_a_line(n: int) -> None:
    geom = Geometry.of(Lattice(n))
    size, dtype = FAST.frugal_state_size(geom)
    assert (size, dtype) == (3 * ((n + 63) // 64), np.uint64)
    state = FAST.full(size, 0, dtype)
    length, expanded = FAST.bfs_frugal(geom, FAST.open_bits(geom), 0, n - 1, state)
    assert (length, expanded) == (n - 1, n - 1)
    # a line's tiles are its runs of 64: open bits, then the low and the high bit of 1 + depth mod 3
    index = np.arange(n)
    codes = 1 + index % 3
    for word, plane in ((0, np.ones(n, dtype=np.int64)), (1, codes & 1), (2, codes >> 1)):
        got = (state[3 * (index >> 6) + word] >> (index & 63).astype(np.uint64)) & np.uint64(1)
        np.testing.assert_array_equal(got, plane)
    np.testing.assert_array_equal(FAST.frugal_depths(geom, state), codes)
    assert FAST.trace_path_frugal(geom, FAST.open_bits(geom), state, 0, n - 1, length).tolist() == list(
        range(n - 1, -1, -1)
    )


def test_wide_label_dtype_gives_the_same_labels() -> None:
    assert _index_dtype(2**31 - 1) is np.int32
    assert _index_dtype(2**31) is np.int64
    lattice = Lattice((9, 8, 7), periodic=[True, False, True], obstacles=[{"kind": "random", "p": 0.35, "seed": 4}])
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    narrow, count = FAST.label(geom, mask)
    wide = np.empty(geom.vertices, dtype=np.int64)
    scratch = np.empty(geom.vertices, dtype=np.int64)
    meter = np.zeros(3, np.int64)
    assert kernels.label((geom.shape, geom.strides, geom.periodic), mask, wide, scratch, 3, meter) == count
    np.testing.assert_array_equal(wide, narrow)


@pytest.mark.parametrize("periodic", [[False, True, False], [False, False, False]])
def test_frugal_answer_does_not_depend_on_thread_count(periodic: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    # every level of 8 tiles or more runs split over the threads: each share writes most of its tiles plainly
    # and the tiles within one move of another share's atomically, and the level lists are cut by tile count
    monkeypatch.setattr(frugal, "PARALLEL_TILES", 8)
    lattice = Lattice((72, 72, 72), periodic=periodic, obstacles=[{"kind": "random", "p": 0.3, "seed": 8}])
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    bits = FAST.open_bits(geom)
    start, goal = (int(v) for v in np.flatnonzero(mask)[[0, -1]])
    answers = []
    for threads in (1, 2, 3, 4):
        state = np.zeros(frugal.state_words(geom.shape), dtype=np.uint64)
        answer = frugal.bfs_frugal((geom.shape, geom.strides, geom.periodic), bits, state, start, goal, threads)
        answers.append((answer, state))
    for answer, state in answers[1:]:
        assert answer == answers[0][0]
        np.testing.assert_array_equal(state, answers[0][1])
    dist, expanded = _bfs(FAST, geom, mask, [start], goal)
    assert answers[0][0] == (int(dist[goal]), expanded)
    np.testing.assert_array_equal(FAST.frugal_depths(geom, answers[0][1]), np.where(dist >= 0, 1 + dist % 3, 0))


def test_bad_fields_raise_named_errors() -> None:
    geom = Geometry.of(Lattice((3, 3)))
    mask = FAST.open_mask(geom)
    scrambled = np.array([0, 5, 5, 5, 5, 5, 5, 5, 5], dtype=np.int32)
    with pytest.raises(InvalidInputError, match="dist"):
        FAST.trace_path(geom, mask, scrambled, 0, 8)
    bits = FAST.open_bits(geom)
    size, dtype = FAST.frugal_state_size(geom)
    state = FAST.full(size, 0, dtype)
    length, _ = FAST.bfs_frugal(geom, bits, 0, 8, state)
    with pytest.raises(InvalidInputError, match="state"):
        FAST.trace_path_frugal(geom, bits, state, 0, 8, length + 1)
    with pytest.raises(InvalidInputError, match="length"):
        FAST.trace_path_frugal(geom, bits, state, 0, 8, -1)
    with pytest.raises(InvalidInputError, match="state: is uint8"):
        FAST.bfs_frugal(geom, bits, 0, 8, FAST.full(3, 0, np.uint8))
    # a state or a mask sized for another lattice is refused, not written past its end
    with pytest.raises(InvalidInputError, match="state: is uint64 of shape"):
        FAST.bfs_frugal(Geometry.of(Lattice((30, 30))), FAST.open_bits(Geometry.of(Lattice((30, 30)))), 0, 8, state)
    with pytest.raises(InvalidInputError, match="open_bits"):
        FAST.bfs_frugal(geom, FAST.open_bits(Geometry.of(Lattice((30, 30)))), 0, 8, state)


def test_second_source_is_not_a_predecessor() -> None:
    # Tracing to one root of a two-source field must not step onto the other source's unreached neighbours.
    geom = Geometry.of(Lattice(7))
    mask = FAST.open_mask(geom)
    dist, _ = _bfs(FAST, geom, mask, [0, 6], -1)
    assert FAST.trace_path(geom, mask, dist, 0, 2).tolist() == [2, 1, 0]
    with pytest.raises(InvalidInputError):
        FAST.trace_path(geom, mask, dist, 0, 5)


def test_past_the_tile_budget_the_bfs_runs_over_a_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    from catalytic.kernels import numba_backend

    lattice = Lattice((40, 30), periodic=[True, False], obstacles=[{"kind": "random", "p": 0.2, "seed": 5}])
    geom = Geometry.of(lattice)
    mask = FAST.open_mask(geom)
    start = int(np.flatnonzero(mask)[0])
    monkeypatch.setattr(numba_backend, "TILE_BYTES_LIMIT", 0)
    assert numba_backend._tiles(geom) is None
    dist, expanded = _bfs(FAST, geom, mask, [start], -1)
    ref_dist, ref_expanded = _bfs(REFERENCE, geom, mask, [start], -1)
    assert expanded == ref_expanded
    np.testing.assert_array_equal(dist, ref_dist)


def test_the_tile_form_of_a_mask_is_kept_while_the_mask_lives() -> None:
    import gc

    from catalytic.kernels import numba_backend

    geom = Geometry.of(Lattice((9, 70), obstacles=[{"kind": "random", "p": 0.3, "seed": 2}]))
    mask = FAST.open_mask(geom)
    first = _bfs(FAST, geom, mask, [int(np.flatnonzero(mask)[0])], -1)
    held = numba_backend._OPEN_TILES[id(mask)][1]
    again = _bfs(FAST, geom, mask, [int(np.flatnonzero(mask)[0])], -1)
    assert numba_backend._OPEN_TILES[id(mask)][1] is held  # reused, not rebuilt
    np.testing.assert_array_equal(again[0], first[0])
    # a different mask of the same shape gets its own tile form, and the answer of its own mask
    other = mask.copy()
    other[np.flatnonzero(other)[1]] = 0
    ref_dist, _ = _bfs(REFERENCE, geom, other, [int(np.flatnonzero(other)[0])], -1)
    np.testing.assert_array_equal(_bfs(FAST, geom, other, [int(np.flatnonzero(other)[0])], -1)[0], ref_dist)
    key = id(other)
    del other
    gc.collect()
    assert key not in numba_backend._OPEN_TILES
    for _ in range(numba_backend.OPEN_TILES_ENTRIES + 2):
        _bfs(FAST, geom, FAST.open_mask(geom), [0], -1)
    assert len(numba_backend._OPEN_TILES) <= numba_backend.OPEN_TILES_ENTRIES


def test_warm_up_reaches_every_kernel_a_server_or_a_ray_worker_dispatches() -> None:
    # the kernels the frugal search dispatches from Python, the wide-level ones (threads, the parallel fill)
    # included, are compiled before a server is ready, not by the first large request; so are the searches on
    # read-only masks and a slab's lowering from halo seeds, which a Ray worker runs; in a fresh process, so
    # that no other test has called them first
    probe = textwrap.dedent(
        """
        from catalytic import warmup
        from catalytic.kernels import _numba_frugal as frugal

        warmup.warm_up("numba")
        dispatched = ("tile_frame", "fill_open", "fill_open_parallel", "serial_levels")
        dispatched += ("expand_share", "fold_noted", "list_range", "trace_path")
        print([name for name in dispatched if not getattr(frugal, name).signatures])
        from catalytic.kernels import _numba_levels as levels

        print([name for name in ("bfs_levels",) if not getattr(levels, name).signatures])
        from numba.core import types

        from catalytic.distributed import _relax
        from catalytic.kernels import _numba_kernels as kernels

        def on_shared_masks(kernel):
            mask = types.Array(types.uint8, 1, "C", readonly=True)
            return any(signature[1] == mask for signature in kernel.signatures)

        searches = ("bidirectional", "dijkstra", "trace_path", "label", "degree_histogram")
        missing = [name for name in searches if not on_shared_masks(getattr(kernels, name))]
        print(missing + [name for name in ("_lower", "_by_depth") if not getattr(_relax, name).signatures])
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=240, check=True)
    assert done.stdout.strip().splitlines()[-3:] == ["[]", "[]", "[]"], done.stdout + done.stderr
