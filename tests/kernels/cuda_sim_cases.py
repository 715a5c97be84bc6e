"""GPU kernels under numba's CUDA simulator, compared bit for bit with the NumPy reference backend.

Not collected by the main test run (the name does not start with ``test_``): ``test_cuda_sim.py`` runs this
module in a child pytest with ``NUMBA_ENABLE_CUDASIM=1``, which must be set before numba.cuda is imported
and so cannot share a worker with tests that already imported numba. It refuses to run without the variable
rather than launching kernels on a device by accident. Also used by ``test_gpu.py`` with the real device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from catalytic.kernels.backend import Backend, Geometry
from catalytic.kernels.numpy_backend import NumpyBackend
from catalytic.lattice import Lattice

CaseMaker = Callable[[], Lattice]


def _random_lattice(
    seed: int, shape: tuple[int, ...], periodic: Any, p: float, weighted: bool = False, box: bool = False
) -> Lattice:
    rng = np.random.default_rng(seed)
    obstacles: list[dict[str, Any]] = [{"kind": "random", "p": p, "seed": seed}]
    if box:
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [min(n - 1, a + 1) for a, n in zip(lo, shape, strict=True)]
        obstacles.append({"kind": "box", "lo": lo, "hi": hi})
    blocked = rng.random(shape) < 0.05
    weights = rng.integers(1, 9, size=shape).astype(np.float64) * 0.1 if weighted else None
    return Lattice(shape, periodic=periodic, blocked=blocked, weights=weights, obstacles=obstacles)


LATTICES: dict[str, CaseMaker] = {
    "2d": lambda: _random_lattice(1, (11, 13), False, 0.25, box=True),
    "2d-torus": lambda: _random_lattice(2, (9, 12), True, 0.3),
    "3d-mixed": lambda: _random_lattice(3, (6, 5, 7), [True, False, True], 0.2, box=True),
    "4d-thin": lambda: _random_lattice(4, (2, 5, 1, 9), [True, False, True, True], 0.15),
    "1d-ring": lambda: _random_lattice(5, (60,), True, 0.05),
    "2d-weighted": lambda: _random_lattice(6, (10, 10), [False, True], 0.2, weighted=True),
    "3d-weighted": lambda: _random_lattice(7, (5, 6, 5), False, 0.15, weighted=True, box=True),
    "open-5d": lambda: Lattice((3, 3, 2, 3, 3), periodic=[False, True, False, False, True]),
}

# Every lattice runs the default (all levels in one cooperative launch); a few also run the host loop that
# relaunches the fused kernel every 3 levels, and the one-launch-per-level path.
SEARCH_CASES = [pytest.param(name, {}, id=f"{name}-fused") for name in LATTICES] + [
    pytest.param(name, options, id=f"{name}-{mode}")
    for name in ("2d-torus", "3d-mixed", "4d-thin")
    for mode, options in (("3-per-launch", {"levels_per_launch": 3}), ("level-per-launch", {"fused": False}))
]


def _device_backend(options: dict[str, Any]) -> Backend:
    from catalytic.kernels.cupy_backend import CupyBackend

    if os.environ.get("CATALYTIC_CUDA_DEVICE") == "1":
        return CupyBackend(host_backend="numpy", **options)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.fail("run this module with NUMBA_ENABLE_CUDASIM=1 (or CATALYTIC_CUDA_DEVICE=1 on a GPU)")
    return CupyBackend(xp=np, host_backend="numpy", **options)


@pytest.fixture(params=list(LATTICES))
def lattice(request: pytest.FixtureRequest) -> Lattice:
    return LATTICES[request.param]()


def _endpoints(lattice: Lattice) -> tuple[int, int]:
    """The lowest and highest open vertex of the largest component (a long search)."""
    ref = NumpyBackend()
    labels, count = ref.label(Geometry.of(lattice), ref.open_mask(Geometry.of(lattice)))
    sizes = np.bincount(labels, minlength=count + 1)[1:]
    members = np.flatnonzero(labels == int(np.argmax(sizes)) + 1)
    return int(members[0]), int(members[-1])


def test_open_mask_and_bits(lattice: Lattice) -> None:
    ref, gpu, geom = NumpyBackend(), _device_backend({}), Geometry.of(lattice)
    np.testing.assert_array_equal(gpu.to_host(gpu.open_mask(geom)), ref.open_mask(geom))
    np.testing.assert_array_equal(gpu.to_host(gpu.open_bits(geom)), ref.open_bits(geom))
    np.testing.assert_array_equal(
        gpu.degree_histogram(geom, gpu.open_mask(geom)), ref.degree_histogram(geom, ref.open_mask(geom))
    )


def test_label(lattice: Lattice) -> None:
    ref, gpu, geom = NumpyBackend(), _device_backend({}), Geometry.of(lattice)
    want, want_count = ref.label(geom, ref.open_mask(geom))
    got, count = gpu.label(geom, gpu.open_mask(geom))
    assert count == want_count
    assert gpu.to_host(got).dtype == want.dtype
    np.testing.assert_array_equal(gpu.to_host(got), want)


@pytest.mark.parametrize(("name", "options"), SEARCH_CASES)
def test_bfs(name: str, options: dict[str, Any]) -> None:
    lattice = LATTICES[name]()
    ref, gpu, geom = NumpyBackend(), _device_backend(options), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    mask = gpu.open_mask(geom)
    for sources, target in (([start], goal), ([start], -1), ([start, goal], -1), ([goal], goal)):
        want = ref.full(geom.vertices, -1, np.int32)
        want_expanded = ref.bfs(geom, ref.open_mask(geom), np.asarray(sources), target, want)
        got = gpu.full(geom.vertices, -1, np.int32)
        expanded = gpu.bfs(geom, mask, np.asarray(sources), target, got)
        assert expanded == want_expanded, (sources, target)
        np.testing.assert_array_equal(gpu.to_host(got), want)
        if target >= 0:
            root = sources[0]
            np.testing.assert_array_equal(
                gpu.trace_path(geom, mask, got, root, target),
                ref.trace_path(geom, ref.open_mask(geom), want, root, target),
            )


@pytest.mark.parametrize(("name", "options"), SEARCH_CASES)
def test_bidirectional(name: str, options: dict[str, Any]) -> None:
    lattice = LATTICES[name]()
    ref, gpu, geom = NumpyBackend(), _device_backend(options), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    pairs = [(start, goal), (goal, start), (start, start)]
    labels, _ = ref.label(geom, ref.open_mask(geom))
    elsewhere = np.flatnonzero((labels != 0) & (labels != labels[start]))
    if elsewhere.size:
        pairs.append((start, int(elsewhere[0])))
    for s, g in pairs:
        want_s, want_g = ref.full(geom.vertices, -1, np.int32), ref.full(geom.vertices, -1, np.int32)
        want = ref.bidirectional(geom, ref.open_mask(geom), s, g, want_s, want_g)
        got_s, got_g = gpu.full(geom.vertices, -1, np.int32), gpu.full(geom.vertices, -1, np.int32)
        got = gpu.bidirectional(geom, gpu.open_mask(geom), s, g, got_s, got_g)
        assert got == want, (s, g)
        np.testing.assert_array_equal(gpu.to_host(got_s), want_s)
        np.testing.assert_array_equal(gpu.to_host(got_g), want_g)


@pytest.mark.parametrize("astar", [False, True])
def test_dijkstra_and_trace(lattice: Lattice, astar: bool) -> None:
    ref, gpu, geom = NumpyBackend(), _device_backend({}), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    want = ref.full(geom.vertices, np.inf, np.float64)
    want_expanded = ref.dijkstra(geom, ref.open_mask(geom), np.asarray([start]), goal, want, astar)
    mask = gpu.open_mask(geom)
    got = gpu.full(geom.vertices, np.inf, np.float64)
    assert gpu.dijkstra(geom, mask, np.asarray([start]), goal, got, astar) == want_expanded
    np.testing.assert_array_equal(gpu.to_host(got), want)
    np.testing.assert_array_equal(
        gpu.trace_path(geom, mask, got, start, goal), ref.trace_path(geom, ref.open_mask(geom), want, start, goal)
    )


def test_seeded_dijkstra_and_windowed_trace(lattice: Lattice) -> None:
    # what a slab of a partitioned lattice asks: Dijkstra from seeds at their own costs, then a walk that stops
    # at its first step out of the slab's own rows
    ref, gpu, geom = NumpyBackend(), _device_backend({}), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    mask, ref_mask = gpu.open_mask(geom), ref.open_mask(geom)
    for seeds, costs in (([start, goal], [1.5, 4.0]), ([start], [1.5])):
        want = ref.full(geom.vertices, np.inf, np.float64)
        want[seeds] = costs
        got = gpu.to_device(want.copy())
        expanded = ref.dijkstra(geom, ref_mask, np.asarray(seeds), -1, want, False)
        assert gpu.dijkstra(geom, mask, np.asarray(seeds), -1, got, False) == expanded
        np.testing.assert_array_equal(gpu.to_host(got), want)
    reached = np.flatnonzero(np.isfinite(want))
    middle = int(reached[reached.size // 2])
    for within in (None, (max(0, middle - 5), middle + 1)):
        np.testing.assert_array_equal(
            gpu.trace_path(geom, mask, got, start, middle, within),
            ref.trace_path(geom, ref_mask, want, start, middle, within),
        )


class _CountingNumpy:
    """NumPy as the backend's array namespace, adding up the bytes of every new array its functions return."""

    def __init__(self) -> None:
        self.allocated = 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if not callable(value) or isinstance(value, type):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            given = [*args, *kwargs.values()]
            if isinstance(result, np.ndarray) and result.base is None and not any(result is a for a in given):
                self.allocated += result.nbytes
            return result

        return counted


@pytest.mark.parametrize("name", ["2d", "2d-torus", "3d-mixed", "1d-ring"])
def test_label_allocates_the_stated_bytes_per_vertex(name: str) -> None:
    from catalytic.kernels.cupy_backend import LABEL_TEMPORARY_BYTES_PER_VERTEX, CupyBackend

    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("counts the allocations of the simulated backend")
    lattice = LATTICES[name]()
    counting = _CountingNumpy()
    gpu, geom = CupyBackend(xp=counting, host_backend="numpy"), Geometry.of(lattice)  # type: ignore[arg-type]
    mask = gpu.open_mask(geom)
    counting.allocated = 0
    labels, count = gpu.label(geom, mask)
    want, want_count = NumpyBackend().label(geom, NumpyBackend().open_mask(geom))
    assert count == want_count
    np.testing.assert_array_equal(labels, want)
    words = (geom.vertices + 31) // 32
    changed_flag = 4
    temporary = counting.allocated - labels.nbytes - changed_flag
    # the stated bound, per 32-vertex word: a root bit per vertex and one count of the labels' type
    assert temporary == words * 32 * LABEL_TEMPORARY_BYTES_PER_VERTEX[labels.itemsize]


def test_the_warm_up_launches_every_device_kernel() -> None:
    # the start-up compile covers the BFS, bidirectional, label and SSSP kernels: every kernel the module exports
    from catalytic.kernels import cuda_kernels
    from catalytic.warmup import compile_device_kernels

    device = _device_backend({})
    launched = compile_device_kernels(device)
    assert launched >= set(cuda_kernels.__all__), set(cuda_kernels.__all__) - launched
    assert device.k is cuda_kernels and device.fused  # type: ignore[attr-defined]


def _float_weighted(seed: int, shape: tuple[int, ...], periodic: Any) -> Lattice:
    """Weights drawn from a continuum, so that sums along different paths round differently in the last bit."""
    rng = np.random.default_rng(seed)
    weights = rng.random(shape) * 1.5 + 0.25
    return Lattice(shape, periodic=periodic, weights=weights, obstacles=[{"kind": "random", "p": 0.2, "seed": seed}])


@pytest.mark.parametrize(
    ("seed", "shape", "periodic"),
    [(11, (9, 11), True), (12, (5, 4, 6), [True, False, True]), (13, (40,), True), (14, (7, 8), False)],
)
@pytest.mark.parametrize("delta", [1e-300, 0.5, 2.0, 1e12])
def test_device_dijkstra_is_the_reference_bit_for_bit(
    seed: int, shape: tuple[int, ...], periodic: Any, delta: float
) -> None:
    # Whatever the band width (1e-300: only the least pending costs relax in a pass, as in Dijkstra; 1e12: every
    # pending vertex relaxes in every pass, as in Bellman-Ford), the device reaches the reference's costs;
    # stopped at a target it also leaves the reference's unsettled entries.
    lattice = _float_weighted(seed, shape, periodic)
    ref, gpu, geom = NumpyBackend(), _device_backend({"delta": delta}), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    rng = np.random.default_rng(seed)
    reachable = np.flatnonzero(ref.open_mask(geom))
    middle = int(rng.choice(reachable))
    bounds = ref.full(geom.vertices, np.inf, np.float64)
    bounds[rng.choice(reachable, size=3)] = rng.random(3) * 4.0
    cases = [
        ([start], -1, None),
        ([start], goal, None),
        ([start], middle, None),
        ([start, goal], middle, {start: 0.75, goal: 2.5}),
        ([middle], goal, "bounds"),
    ]
    for sources, target, seeds in cases:
        want = bounds.copy() if seeds == "bounds" else ref.full(geom.vertices, np.inf, np.float64)
        if isinstance(seeds, dict):
            for vertex, cost in seeds.items():
                want[vertex] = cost
        got = gpu.to_device(want.copy())
        want_expanded = ref.dijkstra(geom, ref.open_mask(geom), np.asarray(sources), target, want, False)
        expanded = gpu.dijkstra(geom, gpu.open_mask(geom), np.asarray(sources), target, got, False)
        assert expanded == want_expanded, (sources, target, seeds)
        np.testing.assert_array_equal(gpu.to_host(got).view(np.int64), want.view(np.int64))
        if target >= 0 and len(sources) == 1 and np.isfinite(want[target]):
            np.testing.assert_array_equal(
                gpu.trace_path(geom, gpu.open_mask(geom), got, sources[0], target),
                ref.trace_path(geom, ref.open_mask(geom), want, sources[0], target),
            )


@pytest.mark.parametrize(("name", "options"), SEARCH_CASES)
def test_frugal(name: str, options: dict[str, Any]) -> None:
    lattice = LATTICES[name]()
    ref, gpu, geom = NumpyBackend(), _device_backend(options), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    pairs = [(start, goal), (goal, start), (start, start)]
    labels, _ = ref.label(geom, ref.open_mask(geom))
    elsewhere = np.flatnonzero((labels != 0) & (labels != labels[start]))
    if elsewhere.size:
        pairs.append((start, int(elsewhere[0])))
    bits_ref, bits = ref.open_bits(geom), gpu.open_bits(geom)
    for s, g in pairs:
        size = (geom.vertices + 3) // 4
        want_state = ref.full(size, 0, np.uint8)
        want = ref.bfs_frugal(geom, bits_ref, s, g, want_state)
        state = gpu.full(size, 0, np.uint8)
        got = gpu.bfs_frugal(geom, bits, s, g, state)
        assert got == want, (s, g)
        np.testing.assert_array_equal(gpu.to_host(state), want_state)
        if want[0] >= 0:
            np.testing.assert_array_equal(
                gpu.trace_path_frugal(geom, bits, state, s, g, want[0]),
                ref.trace_path_frugal(geom, bits_ref, want_state, s, g, want[0]),
            )


@pytest.fixture
def simulated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's "cupy" entry backed by the simulated kernels, so the public API runs them end to end."""
    from catalytic.kernels import backend as registry
    from catalytic.kernels.cupy_backend import CupyBackend

    class SimulatedCupy(CupyBackend):
        @classmethod
        def probe(cls) -> str | None:
            return None

        def __init__(self) -> None:
            super().__init__(xp=np, host_backend="numpy")

    if os.environ.get("CATALYTIC_CUDA_DEVICE") != "1":
        monkeypatch.setitem(registry._REGISTRY, "cupy", SimulatedCupy)
        monkeypatch.setattr(registry, "_PROBED", {})
    monkeypatch.delitem(registry._INSTANCES, "cupy", raising=False)


@pytest.mark.parametrize("name", ["2d-torus", "3d-weighted", "4d-thin"])
def test_public_api(simulated_registry: None, name: str) -> None:
    from catalytic.kernels import components, distance_field, shortest_path
    from catalytic.kernels.backend import get_backend

    lattice = LATTICES[name]()
    start, goal = (lattice.coords_of(v).tolist() for v in _endpoints(lattice))
    methods = ["astar", "dijkstra"] if lattice.weighted else ["bfs", "bidirectional", "astar", "dijkstra"]
    methods.append("auto")
    for method in methods:
        got = shortest_path(lattice, start, goal, method=method, backend="cupy")
        want = shortest_path(lattice, start, goal, method=method, backend="numpy")
        # the method is the same on every backend; A* point queries run on the host backend, the rest on the device
        assert got.method == want.method
        host = get_backend("cupy").placement("astar")  # numpy under the simulator's stand-in, numba on a device
        assert got.backend == (host if got.method == "astar" else "cupy"), method
        assert (got.length, got.cost, got.expanded) == (want.length, want.cost, want.expanded), method
        np.testing.assert_array_equal(got.coords, want.coords)
    if not lattice.weighted:
        got = shortest_path(lattice, start, goal, method="bfs", backend="cupy", memory="frugal")
        want = shortest_path(lattice, start, goal, method="bfs", backend="numpy", memory="frugal")
        assert (got.length, got.expanded) == (want.length, want.expanded)
        np.testing.assert_array_equal(got.coords, want.coords)
    np.testing.assert_array_equal(
        distance_field(lattice, [start, goal], backend="cupy"), distance_field(lattice, [start, goal], backend="numpy")
    )
    got_labels, got_count = components(lattice, backend="cupy")
    want_labels, want_count = components(lattice, backend="numpy")
    assert got_count == want_count
    np.testing.assert_array_equal(got_labels, want_labels)


def test_public_analyze(simulated_registry: None) -> None:
    from catalytic.kernels import analyze

    # Obstacle-free, so the diameter comes from the formula rather than one simulated BFS per vertex.
    lattice = LATTICES["open-5d"]()
    report = analyze(lattice, backend="cupy")
    assert report.pop("backend") == "cupy"
    reference = analyze(lattice, backend="numpy")
    reference.pop("backend")
    assert report == reference


class _LinkerError(Exception):
    """Stands in for numba-cuda's error when the CUDA device runtime library cannot be linked."""


_LinkerError.__module__ = "numba.cuda.cudadrv.driver"


class _UnlinkableKernel:
    """A kernel whose cooperative build fails the way a missing device runtime library makes it fail."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def typeof_pyval(self, value: Any) -> Any:
        return type(value)

    def compile(self, argtypes: tuple[Any, ...]) -> Any:
        raise self.error


def test_without_cooperative_launch_searches_run_level_by_level(caplog: pytest.LogCaptureFixture) -> None:
    from catalytic.kernels import cupy_backend

    gpu = _device_backend({})
    gpu.simulated = False  # take the device path of the launcher
    with pytest.raises(RuntimeError, match="bad argument"):
        gpu._launch_cooperative(_UnlinkableKernel(RuntimeError("bad argument")), 10)
    assert gpu.fused
    with caplog.at_level("WARNING", logger="catalytic.kernels.cupy"), pytest.raises(cupy_backend._NoCooperativeLaunch):
        gpu._launch_cooperative(_UnlinkableKernel(_LinkerError("libcudadevrt.a not found")), 10)
    assert not gpu.fused
    assert "libcudadevrt.a not found" in caplog.text

    class FallingBack(cupy_backend.CupyBackend):
        def _launch_cooperative(self, kernel: Any, items: int, *args: Any) -> None:
            self.fused = False
            raise cupy_backend._NoCooperativeLaunch

    lattice = LATTICES["3d-mixed"]()
    ref, geom = NumpyBackend(), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    on_device = os.environ.get("CATALYTIC_CUDA_DEVICE") == "1"
    fallback = FallingBack(xp=None if on_device else np, host_backend="numpy")
    want = ref.full(geom.vertices, -1, np.int32)
    want_expanded = ref.bfs(geom, ref.open_mask(geom), np.asarray([start]), goal, want)
    got = fallback.full(geom.vertices, -1, np.int32)
    assert fallback.bfs(geom, fallback.open_mask(geom), np.asarray([start]), goal, got) == want_expanded
    np.testing.assert_array_equal(fallback.to_host(got), want)
    assert not fallback.fused


def test_refused_fields_and_stepped_rounds_without_a_path() -> None:
    gpu, ref = _device_backend({"fused": False}), NumpyBackend()
    geom = Geometry.of(Lattice((1, 5), obstacles=[{"kind": "box", "lo": [0, 2], "hi": [0, 2]}]))
    mask = gpu.open_mask(geom)
    sides = [gpu.full(geom.vertices, -1, np.int32) for _ in range(2)]
    want = ref.bidirectional(geom, ref.open_mask(geom), 0, 4, *(ref.full(5, -1, np.int32) for _ in range(2)))
    assert gpu.bidirectional(geom, mask, 0, 4, *sides) == want == (-1, -1, 2)
    with pytest.raises(ValueError, match="no predecessor chain"):
        gpu.trace_path(geom, mask, gpu.to_device(np.array([0, 1, -1, -1, 3], dtype=np.int32)), 0, 4)
    with pytest.raises(ValueError, match="no canonical walk"):
        gpu.trace_path_frugal(geom, gpu.open_bits(geom), gpu.full(2, 0, np.uint8), 0, 1, 1)


def test_bidirectional_falls_back_to_one_launch_per_round() -> None:
    from catalytic.kernels import cupy_backend

    class Unfused(cupy_backend.CupyBackend):
        def _launch_cooperative(self, kernel: Any, items: int, *args: Any) -> None:
            self.fused = False
            raise cupy_backend._NoCooperativeLaunch

    lattice = LATTICES["2d"]()
    ref, geom = NumpyBackend(), Geometry.of(lattice)
    start, goal = _endpoints(lattice)
    on_device = os.environ.get("CATALYTIC_CUDA_DEVICE") == "1"
    gpu = Unfused(xp=None if on_device else np, host_backend="numpy")
    got = [gpu.full(geom.vertices, -1, np.int32) for _ in range(2)]
    want = [ref.full(geom.vertices, -1, np.int32) for _ in range(2)]
    assert gpu.bidirectional(geom, gpu.open_mask(geom), start, goal, *got) == ref.bidirectional(
        geom, ref.open_mask(geom), start, goal, *want
    )
    assert not gpu.fused
    np.testing.assert_array_equal(gpu.to_host(got[0]), want[0])


class _CooperativeKernel:
    """A kernel whose cooperative build succeeds and holds at most ``fits`` blocks at once on the device."""

    def __init__(self, fits: int) -> None:
        self.fits = fits
        self.grids: list[int] = []

    def typeof_pyval(self, value: Any) -> Any:
        return type(value)

    def compile(self, argtypes: tuple[Any, ...]) -> Any:
        return self

    def max_cooperative_grid_blocks(self, block: int) -> int:
        return self.fits

    def __getitem__(self, launch: tuple[int, int]) -> Callable[..., None]:
        self.grids.append(launch[0])
        return lambda *args: None


def test_a_cooperative_grid_is_capped_at_what_the_device_holds() -> None:
    gpu = _device_backend({})
    gpu.simulated = False  # take the device path of the launcher
    kernel = _CooperativeKernel(fits=3)
    gpu._launch_cooperative(kernel, 10**6, 1)
    gpu._launch_cooperative(kernel, 10**6, 2)  # the bound is worked out once per kernel and argument types
    gpu._launch_cooperative(_CooperativeKernel(fits=10**6), 1, 1)
    assert kernel.grids == [3, 3]
    assert len(gpu._cooperative) == 2


def test_the_gpu_check_bench_runs_under_the_simulator(simulated_registry: None) -> None:
    # The Python half of bench/gpu_check.sh at one tiny size: every task on both backends, identical answers,
    # and the summary it prints last.
    from bench import suite_backends

    args = suite_backends.parse(
        [
            "--backends",
            "cupy,numba",
            "--tasks",
            "bfs,components,distance_field,sssp",
            "--vertices",
            "700",
            "--repeat",
            "1",
            "--repeat-cpu",
            "0",
        ]
    )
    rows, missing = suite_backends.run(args, lambda rows, missing: None)
    assert missing == {}
    assert len(rows) == 2 * 4
    assert all(r["status"] == "measured" and r["agrees"] and r["ns_per_vertex"] > 0 for r in rows)
    summary = suite_backends.gpu_summary(rows).splitlines()
    assert len(summary) == 2 + 4
    assert all(line.split(" | ")[6] == "yes" for line in summary[2:]), summary
