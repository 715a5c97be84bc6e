"""2d-4096: corner-to-corner BFS, components and the distance field on 2-D 4096^2."""

from __future__ import annotations

from bench.kernels import ours, peers
from bench.kernels.cases.shared import add_dijkstra3d_paths, add_graph_peers, add_image_components
from bench.kernels.config import HUGE_VERTICES, Config, repeat_for
from bench.kernels.lattices import corner_ends, new_case
from bench.kernels.peers import Repeats
from bench.kernels.rows import Case

NAME = "2d-4096"


def run(cfg: Config) -> Case:
    """2-D 4096^2 with 20% obstacles: corner-to-corner BFS, components and the distance field."""
    case, lat, open_grid = new_case(NAME, cfg)
    ends = corner_ends(case, lat)
    slow = repeat_for(cfg, open_grid.size, ours=False)
    ours.add_path_rows(case, cfg, lat, ends)
    ours.add_components_rows(case, cfg, lat)
    ours.add_field_rows(case, cfg, lat, ends.start)
    del lat  # the end-to-end rows need no equal lattice alive
    ours.add_end_to_end_rows(case, cfg, ends)
    add_dijkstra3d_paths(case, cfg, open_grid, ends)
    # One MCP build serves the path row here and the distance-field row last.
    mcp = peers.build("skimage MCP", open_grid, slow)
    peers.add_row(case, mcp, "path", ends, slow)
    add_graph_peers(case, cfg, open_grid, ends, ["path"], use_igraph=open_grid.size <= HUGE_VERTICES)
    add_image_components(case, cfg, open_grid, ends, use_cc3d=True)
    peers.add_rows(case, "dijkstra3d", open_grid, ends, ["distance_field"], Repeats(slow, slow))
    peers.add_row(case, mcp, "distance_field", ends, slow)
    return case
