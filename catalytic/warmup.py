"""Compile the numba kernels ahead of time: the ``catalytic warmup`` command.

numba compiles a kernel on its first call with a new argument type and, with ``cache=True``, keeps the machine
code in ``NUMBA_CACHE_DIR``. An image runs :func:`warm_up` while it is built, so a pod loads the kernels from that
cache in milliseconds instead of compiling them for 10 s or more on its first request. The cache is keyed to the
CPU the code was compiled for: build and run with ``NUMBA_CPU_NAME=generic`` so it is valid on every node of the
architecture. When a node misses anyway (another numba, another architecture) the kernels compile at start and
the pod's startup probe allows for it.

A pod whose root filesystem is read-only needs a writable cache directory (numba checks that it can write there
even to read), so :func:`seed_cache` copies the image's cache into the pod's ``emptyDir`` first.

The CUDA kernels (:mod:`catalytic.kernels.cuda_kernels`, ``cache=True`` too) are compiled for the device a pod
runs on, which an image build does not have. :func:`warm_start`, which the service runs before it reports
ready, compiles every one of them (BFS levels, bidirectional rounds, labels, SSSP, path walks) in a child
process when the backend is the GPU: the machine code lands in ``NUMBA_CACHE_DIR``, where the GPU job workers
load it, and the server process itself never holds a CUDA context.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WarmupReport", "check", "compile_device_kernels", "seed_cache", "warm_start", "warm_up"]

_KERNEL_MODULES = (
    "catalytic.kernels._numba_kernels",
    "catalytic.kernels._numba_frugal",
    "catalytic.kernels._numba_levels",
    "catalytic.distributed._relax",
    "catalytic.transforms",
)


@dataclass(frozen=True)
class WarmupReport:
    """What a warm-up did: kernels and signatures compiled or loaded, and how many came from the disk cache.

    ``device_kernels`` counts the CUDA kernels launched when the warmed backend is the GPU (0 otherwise).
    """

    backend: str
    kernels: int
    signatures: int
    cache_hits: int
    cache_misses: int
    seconds: float
    cache_dir: str | None
    cpu_name: str | None
    device_kernels: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-able dict."""
        return asdict(self)


def seed_cache(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> int:
    """Copy a prebuilt numba cache into ``target``; returns the number of files copied.

    Parameters
    ----------
    source : path
        The cache directory baked into the image.
    target : path
        The writable ``NUMBA_CACHE_DIR`` of this process; created when missing.

    Raises
    ------
    FileNotFoundError
        When ``source`` is not a directory.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
    ...     _ = Path(a, "k.nbi").write_bytes(b"x")
    ...     seed_cache(a, b)
    1
    """
    source, target = Path(source), Path(target)
    if not source.is_dir():
        raise FileNotFoundError(f"no numba cache at {source}")
    if source.resolve() == target.resolve():
        return 0
    copied = 0
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            copied += 1
    return copied


def _workload() -> list[tuple[str, Any]]:
    """Small calls that reach every compiled kernel with every argument type the library passes it."""
    from catalytic.lattice import Lattice

    weights = np.linspace(1.0, 2.0, 8 * 8, dtype=np.float64).reshape(8, 8)
    explicit = np.zeros((6, 6), dtype=bool)
    explicit[2, 1:5] = True
    lattices = {
        "open": Lattice((24, 24, 24)),
        "periodic": Lattice((9, 7), periodic=True, obstacles=[{"kind": "random", "p": 0.2, "seed": 3}]),
        "boxes": Lattice((10, 10), obstacles=[{"kind": "box", "lo": [2, 2], "hi": [7, 7]}]),
        "explicit": Lattice((6, 6), blocked=explicit),
        "weighted": Lattice((8, 8), weights=weights),
        # many short axes: the numba BFS runs whole-lattice levels here (whole_levels_pay)
        "many_axes": Lattice((4, 4, 4, 4, 4), obstacles=[{"kind": "random", "p": 0.15, "seed": 5}]),
    }
    return list(lattices.items())


def _run_workload(backend: str, workload: list[tuple[str, Any]] | None = None) -> list[tuple[str, Any]]:
    """Every call of the workload (default :func:`_workload`) on ``backend``, with its answer."""
    from catalytic import kernels

    answers: list[tuple[str, Any]] = []
    for name, lattice in _workload() if workload is None else workload:
        open_vertices = np.flatnonzero(lattice.open_mask_flat())
        start = tuple(int(c) for c in lattice.coords_of(int(open_vertices[0])))
        goal = tuple(int(c) for c in lattice.coords_of(int(open_vertices[-1])))
        methods = ("dijkstra", "astar") if lattice.weighted else ("bfs", "bidirectional", "astar", "dijkstra")
        for method in methods:
            path = kernels.shortest_path(lattice, start, goal, method, backend, memory="full")
            answers.append((f"{name} shortest_path {method}", (path.length, path.cost, path.coords)))
        if not lattice.weighted:
            path = kernels.shortest_path(lattice, start, goal, "bfs", backend, memory="frugal")
            answers.append((f"{name} shortest_path frugal", (path.length, path.cost, path.coords)))
        answers.append((f"{name} distance_field", kernels.distance_field(lattice, [start], backend=backend)))
        answers.append((f"{name} components", kernels.components(lattice, backend=backend)))
        report = kernels.analyze(lattice, backend=backend)
        answers.append((f"{name} analyze", {k: v for k, v in report.items() if k != "backend"}))
    return answers


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return bool(a == b)


def check(backend: str, reference: str = "numpy") -> list[str]:
    """Run the workload on ``backend`` and on ``reference``; the calls whose answers differ (empty: conformant).

    Examples
    --------
    >>> check("numba")  # doctest: +SKIP
    []
    """
    expected = dict(_run_workload(reference))
    return [call for call, answer in _run_workload(backend) if not _same(answer, expected[call])]


def _warm_wide_frugal() -> None:
    """The numba frugal search's wide-level kernels (threads, parallel fill), which a small lattice never
    reaches: one search with their thresholds at one tile, checked against the plain one."""
    from catalytic.kernels import _numba_frugal
    from catalytic.kernels.backend import Geometry
    from catalytic.kernels.numba_backend import NumbaBackend
    from catalytic.lattice import Lattice

    backend = NumbaBackend()
    geom = Geometry.of(Lattice((12, 10, 9), obstacles=[{"kind": "random", "p": 0.2, "seed": 3}]))
    bits = backend.open_bits(geom)
    axes = (geom.shape, geom.strides, geom.periodic)
    size = _numba_frugal.state_words(geom.shape)
    states = [np.zeros(size, dtype=np.uint64) for _ in range(2)]
    wide = _numba_frugal.bfs_frugal(axes, bits, states[0], 0, geom.vertices - 1, 2, wide=(1, 1))
    narrow = _numba_frugal.bfs_frugal(axes, bits, states[1], 0, geom.vertices - 1, 1)
    if wide != narrow or not np.array_equal(states[0], states[1]):
        raise RuntimeError(f"the threaded frugal search answered {wide}, the serial one {narrow}")


def _shared_workload(read_only: bool) -> list[tuple[str, Any]]:
    """Lattices as a Ray worker holds them (``read_only``): the open mask adopted from a read-only array (Ray's
    object store maps one copy per node, :func:`catalytic.kernels.adopt_open_mask`), and the weights read-only
    too; else the same lattices as a server holds them."""
    from catalytic.kernels import adopt_open_mask
    from catalytic.lattice import Lattice

    weights = np.linspace(1.0, 2.0, 8 * 8, dtype=np.float64).reshape(8, 8)
    weights.flags.writeable = not read_only
    obstacles = [{"kind": "random", "p": 0.3, "seed": 2}]
    lattices = {
        "shared": Lattice((7, 6, 5), periodic=[True, False, False], obstacles=obstacles),
        "shared weighted": Lattice((8, 8), weights=weights),
    }
    for lattice in lattices.values() if read_only else ():
        mask = lattice.open_mask_flat().astype(np.uint8)
        mask.flags.writeable = False
        adopt_open_mask(lattice, mask, "numba")
    return list(lattices.items())


def _warm_shared() -> None:
    """The signatures a Ray worker needs and a server does not: every call of the workload on read-only masks
    and weights (:func:`_shared_workload`), and a slab's lowering of BFS steps from halo seeds at their own
    depths (:func:`catalytic.distributed._relax.lower_from_seeds`) on tiles, on writable and read-only masks,
    and as the bucket search of lattices past the tile limit, with and without face bit sets. Every answer is
    checked against the same call on writable arrays."""
    from catalytic.distributed._relax import axis_faces, lower_from_seeds
    from catalytic.kernels.backend import Geometry
    from catalytic.lattice import Lattice

    expected = dict(_run_workload("numba", _shared_workload(read_only=False)))
    for call, answer in _run_workload("numba", _shared_workload(read_only=True)):
        if not _same(answer, expected[call]):
            raise RuntimeError(f"{call} on read-only arrays differs from the same call on writable ones")

    lattice = Lattice((9, 8, 7), periodic=[False, True, False], obstacles=[{"kind": "random", "p": 0.2, "seed": 4}])
    geom = Geometry.of(lattice)
    mask = lattice.open_mask_flat().astype(np.uint8)
    frozen = mask.copy()
    frozen.flags.writeable = False
    open_vertices = np.flatnonzero(mask)
    seeds = open_vertices[[0, open_vertices.size // 2, -1]]
    axes = (geom.shape, geom.strides, geom.periodic)
    answers = []
    for open_mask, faces, on_tiles in (
        (mask, None, True),
        (frozen, None, True),
        (mask, axis_faces(*axes[:2], mask), False),
        (frozen, None, False),
    ):
        dist = np.full(geom.vertices, -1, dtype=np.int32)
        dist[seeds] = [0, 3, 5]
        lower_from_seeds(*axes, open_mask, dist, seeds, faces, geom if on_tiles else None)
        answers.append(dist)
    if not all(np.array_equal(answers[0], other) for other in answers[1:]):
        raise RuntimeError("a slab's lowering from halo seeds differs between its tile and bucket searches")


def _warm_transforms() -> None:
    """Every transform, forward and inverse, into a new array and in place, on each lane width (1, 2, 4 and 8
    bytes: the element types its kernels are compiled for), checked to round-trip."""
    from catalytic.transforms import OPS, inverse, transform

    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        data = np.arange(4096 * 2 + 77, dtype=np.uint64).astype(dtype)
        for op in OPS:
            back = inverse(transform(data, op, seed=1), op, seed=1)
            work = data.copy()
            inverse(transform(work, op, seed=2, out=work), op, seed=2, out=work)
            if not (np.array_equal(back, data) and np.array_equal(work, data)):
                raise RuntimeError(f"transform {op!r} on {np.dtype(dtype)} did not round-trip")


def _dispatchers() -> list[Any]:
    from numba.core.registry import CPUDispatcher

    found = []
    for name in _KERNEL_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        found += [value for value in vars(module).values() if isinstance(value, CPUDispatcher)]
    return found


def compile_device_kernels(device: Any) -> set[str]:
    """Launch every CUDA kernel of ``device`` (a :class:`catalytic.kernels.cupy_backend.CupyBackend`) on small
    lattices with the argument types the backend passes, so that each is compiled (or loaded from the disk cache).

    Both BFS paths run (levels in cooperative launches, and one launch per level), and the labels, the device
    Dijkstra and both path walks. Returns the names of the kernels launched.

    Examples
    --------
    >>> from catalytic.kernels.backend import get_backend  # doctest: +SKIP
    >>> "sssp_relax" in compile_device_kernels(get_backend("cupy"))  # doctest: +SKIP
    True
    """
    from catalytic.kernels.backend import Geometry

    launched: set[str] = set()
    kernels = device.k

    class Recording:
        def __getattr__(self, name: str) -> Any:
            launched.add(name)
            return getattr(kernels, name)

    device.k = Recording()
    fused = device.fused
    try:
        # A kernel compiles once per argument types, whatever the lattice: one unweighted and one weighted do.
        for name, lattice in _workload():
            if name not in ("periodic", "weighted"):
                continue
            geom = Geometry.of(lattice)
            mask, bits = device.open_mask(geom), device.open_bits(geom)
            device.degree_histogram(geom, mask)
            device.label(geom, mask)
            open_vertices = np.flatnonzero(lattice.open_mask_flat())
            start, goal = int(open_vertices[0]), int(open_vertices[-1])
            costs = device.full(geom.vertices, np.inf, np.float64)
            device.dijkstra(geom, mask, np.asarray([start]), goal, costs, False)
            device.trace_path(geom, mask, costs, start, goal)
            device.dijkstra(
                geom, mask, np.asarray([start, goal]), -1, device.full(geom.vertices, np.inf, np.float64), False
            )
            if lattice.weighted:
                continue
            for device.fused in (fused, False) if name == "periodic" else (fused,):
                steps = device.full(geom.vertices, -1, np.int32)
                device.bfs(geom, mask, np.asarray([start]), goal, steps)
                device.trace_path(geom, mask, steps, start, goal)
                sides = [device.full(geom.vertices, -1, np.int32) for _ in range(2)]
                device.bidirectional(geom, mask, start, goal, *sides)
                size, dtype = device.frugal_state_size(geom)
                state = device.full(size, 0, dtype)
                length, _ = device.bfs_frugal(geom, bits, start, goal, state)
                device.trace_path_frugal(geom, bits, state, start, goal, length)
    finally:
        device.k = kernels
        device.fused = fused
    return launched


def _compile_in_child() -> None:
    from catalytic.kernels.backend import get_backend

    compile_device_kernels(get_backend("cupy"))


def warm_start(backend: str) -> None:
    """What a server runs before it reports ready: the kernels its first requests need, loaded.

    A small query on ``backend`` loads the host kernels. When ``backend`` resolves to the GPU, every CUDA kernel
    is compiled too (:func:`compile_device_kernels`), in a child process so that this process holds no CUDA
    context; ``cache=True`` puts the machine code in ``NUMBA_CACHE_DIR`` for the job workers to load.

    Raises
    ------
    RuntimeError
        When the child fails (the first GPU request then reports the cause).
    """
    import multiprocessing

    from catalytic.kernels import shortest_path
    from catalytic.kernels.backend import resolve_backend
    from catalytic.lattice import Lattice

    shortest_path(Lattice((2, 2)), (0, 0), (1, 1), backend=backend)
    if resolve_backend(backend)[0] != "cupy":
        return
    child = multiprocessing.get_context("spawn").Process(target=_compile_in_child, name="catalytic-cuda-warmup")
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"compiling the CUDA kernels failed (exit code {child.exitcode})")


def warm_up(backend: str = "numba") -> WarmupReport:
    """Run every kernel once on small lattices, so that numba compiles it (or loads it from its disk cache).

    Parameters
    ----------
    backend : str
        The backend to warm; ``numba`` is the one that compiles (``auto`` warms whichever is chosen). On the GPU
        backend, numba is warmed as well (A\\* point queries and a GPU pod's CPU workers run it), and every CUDA
        kernel is launched (:func:`compile_device_kernels`).

    Returns
    -------
    WarmupReport
        Kernels and signatures in use afterwards, and how many signatures the disk cache supplied.

    Examples
    --------
    >>> warm_up().cache_misses >= 0  # doctest: +SKIP
    True
    """
    from catalytic.kernels.backend import get_backend, resolve_backend

    started = time.perf_counter()
    _run_workload(backend)
    if resolve_backend(backend)[0] in ("numba", "cupy"):
        _warm_wide_frugal()
        _warm_shared()
    _warm_transforms()
    device_kernels = 0
    if resolve_backend(backend)[0] == "cupy":
        _run_workload("numba")
        device_kernels = len(compile_device_kernels(get_backend("cupy")))
    used = [d for d in _dispatchers() if d.signatures]
    return WarmupReport(
        backend=backend,
        kernels=len(used),
        signatures=sum(len(d.signatures) for d in used),
        cache_hits=sum(sum(d.stats.cache_hits.values()) for d in used),
        cache_misses=sum(sum(d.stats.cache_misses.values()) for d in used),
        seconds=round(time.perf_counter() - started, 3),
        cache_dir=os.environ.get("NUMBA_CACHE_DIR"),
        cpu_name=os.environ.get("NUMBA_CPU_NAME"),
        device_kernels=device_kernels,
    )
