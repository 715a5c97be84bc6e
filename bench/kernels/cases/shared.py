"""Peer line-ups that several cases run the same way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.kernels import peers
from bench.kernels.config import Config, repeat_for
from bench.kernels.lattices import Ends
from bench.kernels.peers import Repeats
from bench.kernels.rows import Case


def add_graph_peers(
    case: Case, cfg: Config, open_grid: np.ndarray, ends: Ends, tasks: Sequence[str], use_igraph: bool
) -> None:
    """igraph and scipy csgraph: one timed build each, then the corner path (and components) on it."""
    repeat = repeat_for(cfg, open_grid.size, ours=False)
    for name in ("igraph", "scipy csgraph") if use_igraph else ("scipy csgraph",):
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
