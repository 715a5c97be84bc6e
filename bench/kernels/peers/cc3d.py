"""cc3d: connected components of the mask itself (2-D and 3-D only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.kernels.lattices import Ends
from bench.kernels.peers.base import Peer, Query, face_connectivity


def label(open_grid: np.ndarray, ends: Ends) -> Any:
    import cc3d

    connectivity = face_connectivity(open_grid.ndim)
    return lambda: cc3d.connected_components(open_grid, connectivity=connectivity, return_N=True)


PEERS = (
    Peer(
        "cc3d",
        {
            "components": Query(
                "components", "cc3d connectivity={connectivity}", label, lambda found: int(found[1]), "on the mask"
            )
        },
    ),
)
