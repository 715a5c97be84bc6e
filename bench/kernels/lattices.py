"""The lattices of the cases and what every implementation is handed or answers about them.

A case materialises one procedural lattice; peers get its open mask (building the mask is never charged to a
peer). Answers are made comparable here: path lengths in hops, distance fields as a digest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.kernels.config import Config
from bench.kernels.rows import Case


@dataclass(frozen=True)
class Ends:
    """The two ends of a path query, as coordinates and as linear indices of the lattice."""

    start: tuple[int, ...]
    goal: tuple[int, ...]
    start_index: int
    goal_index: int


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


def new_case(name: str, cfg: Config) -> tuple[Case, Any, np.ndarray]:
    """The case ``name``: its lattice, the facts reported about it, and its materialised open mask."""
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


def corner_ends(case: Case, lat: Any) -> Ends:
    """The corner-to-corner query of a case (its first and last open vertices)."""
    start, goal = tuple(case.facts["start"]), tuple(case.facts["goal"])
    return Ends(start, goal, lat.index_of(start).item(), lat.index_of(goal).item())


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
