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
    """Corner-to-corner shortest path on 5-D 10^5 with 20% obstacles: catalytic vs every graph peer."""
    case, lat, open_grid = new_case(NAME, cfg)
    ends = corner_ends(case, lat)
    ours.add_path_rows(case, cfg, lat, ends)
    fast, slow = cfg.repeat_fast, cfg.repeat_slow
    peers.add_rows(case, "igraph", open_grid, ends, ["path"], Repeats(fast, fast))
    csr_note = "build: edge list + symmetric CSR; query: BFS + predecessor trace"
    peers.add_rows(case, "scipy csgraph", open_grid, ends, ["path"], Repeats(fast, fast), csr_note)
    peers.add_rows(case, "networkx", open_grid, ends, ["path"], Repeats(slow, fast))
    mcp_note = "build: dense cost array (1 open, inf blocked) + MCP"
    peers.add_rows(case, "skimage MCP", open_grid, ends, ["path"], Repeats(slow, slow), mcp_note)
    case.profile["path"] = profile_path(case.spec, ends.start_index, ends.goal_index, max(5, fast))
    return case
