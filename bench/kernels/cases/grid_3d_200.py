"""3d-200: components against cc3d and scipy.ndimage.label, paths against dijkstra3d, on 3-D 200^3."""

from __future__ import annotations

from bench.kernels import ours
from bench.kernels.cases.shared import add_dijkstra3d_paths, add_image_components
from bench.kernels.config import Config, repeat_for
from bench.kernels.lattices import corner_ends, new_case
from bench.kernels.profiles import head_to_head_components, profile_components
from bench.kernels.rows import Case

NAME = "3d-200"


def run(cfg: Config) -> Case:
    """3-D 200^3 with 30% obstacles: components vs cc3d and scipy.ndimage.label, paths vs dijkstra3d."""
    case, lat, open_grid = new_case(NAME, cfg)
    ends = corner_ends(case, lat)
    ours.add_components_rows(case, cfg, lat)
    add_image_components(case, cfg, open_grid, ends, use_cc3d=True)
    ours.add_path_rows(case, cfg, lat, ends)
    add_dijkstra3d_paths(case, cfg, open_grid, ends)
    repeat = repeat_for(cfg, lat.vertices, ours=True)
    case.profile["components"] = profile_components(lat, repeat)
    case.profile["components head-to-head"] = head_to_head_components(lat, open_grid, "cc3d", ends, repeat)
    return case
