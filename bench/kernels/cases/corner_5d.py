"""5d-corner: corner-to-corner shortest path on 5-D 10^5 with 20% obstacles, catalytic against every graph peer."""

from __future__ import annotations

from bench.kernels import ours, peers
from bench.kernels.config import Config
from bench.kernels.lattices import corner_ends, new_case
from bench.kernels.peers import Repeats
from bench.kernels.profiles import profile_path
from bench.kernels.rows import Case

NAME = "5d-corner"


def run(cfg: Config) -> Case:
    """Corner-to-corner shortest path on 5-D 10^5 with 20% obstacles: catalytic vs every graph peer.

    Graph peers are built by each documented route (their BFS and their A* with the same Manhattan bound
    on the same build); catalytic's cold rows run once the case's own lattice is gone.
    """
    case, lat, open_grid = new_case(NAME, cfg)
    ends = corner_ends(case, lat)
    ours.add_path_rows(case, cfg, lat, ends)
    del lat  # the end-to-end rows and their profile need no equal lattice alive
    ours.add_end_to_end_rows(case, cfg, ends)
    case.profile["path"] = profile_path(case.spec, ends.start_index, ends.goal_index, max(15, cfg.repeat_fast))
    fast, slow = cfg.repeat_fast, cfg.repeat_slow
    both = ["path", "path astar"]
    peers.add_rows(case, "igraph Graph.Lattice", open_grid, ends, both, Repeats(fast, fast))
    peers.add_rows(case, "igraph edge list", open_grid, ends, both, Repeats(fast, fast))
    csr_note = "build: edge list + symmetric CSR; query: BFS + predecessor trace"
    peers.add_rows(case, "scipy csgraph", open_grid, ends, ["path"], Repeats(fast, fast), csr_note)
    peers.add_rows(case, "networkx edge list", open_grid, ends, both, Repeats(slow, fast))
    # grid_graph takes seconds on 10^5 vertices: one timed build after the first.
    peers.add_rows(case, "networkx grid_graph", open_grid, ends, both, Repeats(min(slow, 1), fast))
    mcp_note = "build: dense cost array (1 open, inf blocked) + MCP"
    peers.add_rows(case, "skimage MCP", open_grid, ends, ["path"], Repeats(slow, slow), mcp_note)
    return case
