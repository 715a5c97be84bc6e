"""Sizes and repeats of a kernels run: the full lattices of the issue, or tiny ones for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import REPO

__all__ = ["BIG_VERTICES", "HUGE_VERTICES", "REPO", "Config", "config", "repeat_for"]

BIG_VERTICES = 1_000_000
HUGE_VERTICES = 10_000_000
"""Above ``BIG_VERTICES`` a row is repeated fewer times; above ``HUGE_VERTICES`` fewer still and igraph sits out."""


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


def repeat_for(cfg: Config, vertices: int, ours: bool) -> int:
    """Timed repeats of a row: many on small lattices, few where one call takes seconds."""
    if vertices > HUGE_VERTICES:
        return 3 if ours else 1
    if vertices > BIG_VERTICES:
        return 5 if ours else 3
    return cfg.repeat_fast if ours else cfg.repeat_slow
