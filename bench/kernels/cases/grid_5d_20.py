"""5d-20: components and corner-to-corner BFS on 5-D 20^5."""

from __future__ import annotations

import numpy as np

from bench.kernels.cases.shared import add_graph_peers, components_case
from bench.kernels.config import Config
from bench.kernels.lattices import Ends
from bench.kernels.rows import Case

NAME = "5d-20"


def run(cfg: Config) -> Case:
    """5-D 20^5 with 20% obstacles: components vs scipy.ndimage.label, paths vs igraph and scipy csgraph."""

    def path_peers(case: Case, cfg: Config, open_grid: np.ndarray, ends: Ends) -> None:
        add_graph_peers(case, cfg, open_grid, ends, ["path", "components"], use_igraph=True)

    return components_case(NAME, cfg, use_cc3d=False, duel_peer="scipy.ndimage", add_path_peers=path_peers)
