"""3d-200: components against cc3d and scipy.ndimage.label, paths against dijkstra3d, on 3-D 200^3."""

from __future__ import annotations

from bench.kernels.cases.shared import add_dijkstra3d_paths, components_case
from bench.kernels.config import Config
from bench.kernels.rows import Case

NAME = "3d-200"


def run(cfg: Config) -> Case:
    """3-D 200^3 with 30% obstacles: components vs cc3d and scipy.ndimage.label, paths vs dijkstra3d."""
    return components_case(NAME, cfg, use_cc3d=True, duel_peer="cc3d", add_path_peers=add_dijkstra3d_paths)
