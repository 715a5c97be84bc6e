"""catalytic's own rows: warm queries on a prebuilt Lattice, and end to end (spec -> answer) where marked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.kernels.config import Config, repeat_for
from bench.kernels.lattices import Ends, field_answer, path_is_valid
from bench.kernels.rows import Case, Row
from bench.kernels.timing import per_query, timed

NUMPY_MAX_VERTICES = 1_000_000
"""The NumPy reference backend is timed only on lattices up to this size (larger ones take tens of seconds)."""


def catalytic_backends(vertices: int = 0) -> list[str]:
    """The CPU backends to time on a lattice of ``vertices`` vertices."""
    import catalytic

    wanted = ("numba", "numpy") if vertices <= NUMPY_MAX_VERTICES else ("numba",)
    return [b for b in wanted if b in catalytic.backends()]


def add_path_rows(case: Case, cfg: Config, lat: Any, ends: Ends) -> None:
    """Warm and end-to-end shortest-path rows for every CPU backend and method."""
    open_grid = lat.open_mask()
    for backend in catalytic_backends(lat.vertices):
        repeat = repeat_for(cfg, lat.vertices, ours=backend == "numba")
        for method in ("bfs", "auto"):
            case.add(warm_path_row(case, lat, open_grid, ends, backend, method, repeat))
            case.add(end_to_end_path_row(case, ends, backend, method, repeat))


def warm_path_row(case: Case, lat: Any, open_grid: Any, ends: Ends, backend: str, method: str, repeat: int) -> Row:
    """The query on a prebuilt lattice (mask cached); the path is checked step by step."""
    import catalytic

    start, goal = ends.start, ends.goal
    stats, path = timed(lambda: catalytic.shortest_path(lat, start, goal, method, backend), repeat)
    valid = path_is_valid(path.coords, open_grid, start, goal)
    return Row(
        case.name,
        "path",
        f"catalytic[{backend}] {method}",
        None,
        stats,
        path.length if valid else f"invalid path ({path.length})",
        f"query on a prebuilt Lattice (mask cached); ran {path.method}, expanded {path.expanded}",
    )


def end_to_end_path_row(case: Case, ends: Ends, backend: str, method: str, repeat: int) -> Row:
    """Spec -> answer: a new Lattice each call, so its mask is materialised every time."""
    import catalytic

    start, goal, spec = ends.start, ends.goal, case.spec
    stats, path = timed(
        lambda: catalytic.shortest_path(catalytic.Lattice(**spec), start, goal, method, backend), repeat
    )
    return Row(
        case.name,
        "path",
        f"catalytic[{backend}] {method}, end to end",
        None,
        stats,
        path.length,
        "spec -> answer: new Lattice each call (cold mask cache) + mask + query",
    )


def add_components_rows(case: Case, cfg: Config, lat: Any) -> None:
    """Components on the prebuilt lattice, per CPU backend."""
    for backend in catalytic_backends(lat.vertices):
        case.add(components_row(case, lat, backend, repeat_for(cfg, lat.vertices, ours=backend == "numba")))


def components_row(case: Case, lat: Any, backend: str, repeat: int) -> Row:
    import catalytic

    stats, (_, count) = timed(lambda: catalytic.components(lat, backend), repeat)
    return Row(case.name, "components", f"catalytic[{backend}]", None, stats, count, "prebuilt Lattice (mask cached)")


def add_field_rows(case: Case, cfg: Config, lat: Any, start: tuple[int, ...]) -> None:
    """The hop-distance field from ``start`` on the prebuilt lattice, per CPU backend."""
    for backend in catalytic_backends(lat.vertices):
        case.add(field_row(case, lat, start, backend, repeat_for(cfg, lat.vertices, ours=backend == "numba")))


def field_row(case: Case, lat: Any, start: tuple[int, ...], backend: str, repeat: int) -> Row:
    import catalytic

    stats, dist = timed(lambda: catalytic.distance_field(lat, [start], backend), repeat)
    answer = field_answer(dist)
    return Row(case.name, "distance_field", f"catalytic[{backend}]", None, stats, answer, "prebuilt Lattice")


def pair_lengths(
    lat: Any, pairs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]], method: str, backend: str
) -> tuple[list[float], list[int]]:
    """Warm shortest paths on the prebuilt lattice, each pair timed on its own (after one untimed call)."""
    import catalytic

    catalytic.shortest_path(lat, *pairs[0], method, backend)
    calls = [lambda s=s, g=g: catalytic.shortest_path(lat, s, g, method, backend) for s, g in pairs]
    times, paths = per_query(calls)
    return times, [p.length for p in paths]
