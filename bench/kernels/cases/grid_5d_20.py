"""5d-20: components and corner-to-corner BFS on 5-D 20^5 with 20% obstacles."""

from __future__ import annotations

from bench.kernels import ours
from bench.kernels.cases.shared import add_graph_peers, add_image_components
from bench.kernels.config import Config, repeat_for
from bench.kernels.lattices import corner_ends, new_case
from bench.kernels.profiles import head_to_head_components, profile_components
from bench.kernels.rows import Case

NAME = "5d-20"


def run(cfg: Config) -> Case:
    """5-D 20^5 with 20% obstacles: components and corner-to-corner BFS."""
    case, lat, open_grid = new_case(NAME, cfg)
    ends = corner_ends(case, lat)
    ours.add_components_rows(case, cfg, lat)
    add_image_components(case, cfg, open_grid, ends, use_cc3d=False)
    ours.add_path_rows(case, cfg, lat, ends)
    add_graph_peers(case, cfg, open_grid, ends, ["path", "components"], use_igraph=True)
    repeat = repeat_for(cfg, lat.vertices, ours=True)
    case.profile["components"] = profile_components(lat, repeat)
    case.profile["components head-to-head"] = head_to_head_components(lat, open_grid, "scipy.ndimage", ends, repeat)
    return case
