"""What several cases do the same way: peer line-ups, and the shape of a components case."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bench.kernels import ours, peers
from bench.kernels.config import Config, repeat_for
from bench.kernels.lattices import Ends, corner_ends, new_case
from bench.kernels.peers import Repeats
from bench.kernels.profiles import head_to_head_components, profile_components
from bench.kernels.rows import Case


def add_graph_peers(
    case: Case, cfg: Config, open_grid: np.ndarray, ends: Ends, tasks: Sequence[str], use_igraph: bool
) -> None:
    """igraph (both build routes) and scipy csgraph: one timed build each, then the corner path (and components)."""
    repeat = repeat_for(cfg, open_grid.size, ours=False)
    graphs = ("igraph Graph.Lattice", "igraph edge list", "scipy csgraph")
    for name in graphs if use_igraph else graphs[-1:]:
        peers.add_rows(case, name, open_grid, ends, tasks, Repeats(repeat, repeat))


def add_image_components(case: Case, cfg: Config, open_grid: np.ndarray, ends: Ends, use_cc3d: bool) -> None:
    """Components by scipy.ndimage.label (face structure) and, in 2-D/3-D, cc3d."""
    repeat = repeat_for(cfg, open_grid.size, ours=True)
    for name in ("scipy.ndimage", "cc3d") if use_cc3d else ("scipy.ndimage",):
        peers.add_rows(case, name, open_grid, ends, ["components"], Repeats(repeat, repeat))


def add_dijkstra3d_paths(case: Case, cfg: Config, open_grid: np.ndarray, ends: Ends) -> None:
    """dijkstra3d's binary and weighted searches (inf = blocked) at face connectivity."""
    slow = repeat_for(cfg, open_grid.size, ours=False)
    peers.add_rows(case, "dijkstra3d", open_grid, ends, ["path"], Repeats(slow, slow))
    peers.add_rows(case, "dijkstra3d cost field", open_grid, ends, ["path", "path bidirectional"], Repeats(slow, slow))


def components_case(
    name: str,
    cfg: Config,
    use_cc3d: bool,
    duel_peer: str,
    add_path_peers: Callable[[Case, Config, np.ndarray, Ends], None],
) -> Case:
    """A components case: catalytic and the image peers label the lattice; where catalytic's components time goes
    and a head-to-head against ``duel_peer``; catalytic's corner path, warm and (once the case's lattice is gone)
    end to end; then the peers ``add_path_peers`` times (paths, and components on the same build where a graph
    peer gives them)."""
    case, lat, open_grid = new_case(name, cfg)
    ends = corner_ends(case, lat)
    ours.add_components_rows(case, cfg, lat)
    add_image_components(case, cfg, open_grid, ends, use_cc3d)
    repeat = repeat_for(cfg, lat.vertices, ours=True)
    case.profile["components"] = profile_components(lat, repeat)
    case.profile["components head-to-head"] = head_to_head_components(lat, open_grid, duel_peer, ends, repeat)
    ours.add_path_rows(case, cfg, lat, ends)
    del lat  # the end-to-end rows need no equal lattice alive
    ours.add_end_to_end_rows(case, cfg, ends)
    add_path_peers(case, cfg, open_grid, ends)
    return case
