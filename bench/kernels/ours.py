"""catalytic's own rows: warm queries on a prebuilt Lattice, and end to end (spec -> answer) where marked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.kernels.config import Config, repeat_for
from bench.kernels.lattices import Ends, field_answer, path_is_valid
from bench.kernels.rows import Case, Row
from bench.kernels.timing import cold_timed, per_query, timed

NUMPY_MAX_VERTICES = 1_000_000
"""The NumPy reference backend is timed only on lattices up to this size (larger ones take tens of seconds)."""


def catalytic_backends(vertices: int = 0) -> list[str]:
    """The CPU backends to time on a lattice of ``vertices`` vertices."""
    import catalytic

    wanted = ("numba", "numpy") if vertices <= NUMPY_MAX_VERTICES else ("numba",)
    return [b for b in wanted if b in catalytic.backends()]


def add_path_rows(case: Case, cfg: Config, lat: Any, ends: Ends) -> None:
    """Warm shortest-path rows (query on the prebuilt lattice) for every CPU backend and method."""
    open_grid = lat.open_mask()
    for backend in catalytic_backends(lat.vertices):
        repeat = repeat_for(cfg, lat.vertices, ours=backend == "numba")
        for method in ("bfs", "auto"):
            case.add(warm_path_row(case, lat, open_grid, ends, backend, method, repeat))


def add_end_to_end_rows(case: Case, cfg: Config, ends: Ends) -> None:
    """End-to-end shortest-path rows (spec -> answer, cold) for every CPU backend and method.

    Call it when no lattice equal to the case's is alive: the rows check that before every call.
    """
    vertices = int(case.facts["vertices"])
    for backend in catalytic_backends(vertices):
        repeat = repeat_for(cfg, vertices, ours=backend == "numba")
        for method in ("bfs", "auto"):
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


def prepared_elsewhere(spec: dict[str, Any]) -> bool:
    """Whether the kernels hold a prepared mask for a lattice equal to ``spec``'s (so a new one would find it).

    Lattices are equal by digest and the kernels key their prepared masks by lattice, so a new ``Lattice(**spec)``
    finds the mask of any equal lattice still alive: its first query is then no cold call.
    """
    import catalytic
    from catalytic.kernels import held_bytes

    return held_bytes(catalytic.Lattice(**spec)) > 0


def warm_before_cold_call(spec: dict[str, Any]) -> bool:
    """Make the next call on ``spec`` cold, and say whether it still cannot be.

    The tables the numba BFS keeps per shape (its tile layouts) are dropped, so the call rebuilds them as a
    first call would; a prepared mask of an equal lattice still alive cannot be dropped from here, and is
    reported (:func:`prepared_elsewhere`).
    """
    from catalytic.kernels.numba_backend import forget_tile_layouts

    forget_tile_layouts()
    return prepared_elsewhere(spec)


def end_to_end_path_row(case: Case, ends: Ends, backend: str, method: str, repeat: int) -> Row:
    """Spec -> answer: a new Lattice each call, its mask materialised each time (checked before every call).

    Raises
    ------
    WarmStateError
        An equal lattice with a prepared mask is alive, so the call would not be cold.
    """
    import catalytic

    start, goal, spec = ends.start, ends.goal, case.spec

    def keep(path: Any) -> tuple[int, np.ndarray, str]:
        # The Path's memory report refers to its lattice: only plain values may outlive the call.
        return path.length, path.coords, path.method

    stats, (length, walk, ran) = cold_timed(
        lambda: catalytic.shortest_path(catalytic.Lattice(**spec), start, goal, method, backend),
        keep,
        lambda: warm_before_cold_call(spec),
        repeat,
    )
    open_grid = catalytic.Lattice(**spec).open_mask()
    valid = path_is_valid(walk, open_grid, start, goal)
    return Row(
        case.name,
        "path",
        f"catalytic[{backend}] {method}, end to end",
        None,
        stats,
        length if valid else f"invalid path ({length})",
        f"spec -> answer: new Lattice each call, no equal lattice alive (checked before each of "
        f"{stats['cold_checked']} calls) and no tile tables kept, so the mask is built every call; ran {ran}",
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
