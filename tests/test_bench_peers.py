"""Every peer in the kernels bench's registry answers like the brute-force reference on small lattices.

A new peer module is checked here as soon as it is registered. Timings are never asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
from naive import nx_components, nx_distances

from bench.kernels import peers
from bench.kernels.lattices import Ends, coords, field_answer
from bench.kernels.peers import Repeats
from bench.kernels.rows import Case
from catalytic import Lattice


@pytest.mark.parametrize("shape", [(9, 11), (6, 5, 7)])
@pytest.mark.parametrize("name", sorted(peers.REGISTRY))
def test_peer_answers_as_the_reference(name: str, shape: tuple[int, ...]) -> None:
    lattice = Lattice(shape, obstacles=[{"kind": "random", "p": 0.25, "seed": 3}])
    open_grid = np.array(lattice.open_mask())
    start = int(np.flatnonzero(open_grid)[0])
    dist = nx_distances(lattice, [start], weighted=False)
    goal = int(np.argmax(dist))
    ends = Ends(coords(start, shape), coords(goal, shape), start, goal)
    expected = {
        "path": int(dist[goal]),
        "components": len(nx_components(lattice)),
        "distance_field": field_answer(dist.reshape(shape)),
    }
    case = Case("tiny", {"shape": shape}, {})
    peer = peers.REGISTRY[name]
    peers.add_rows(case, name, open_grid, ends, list(peer.queries), Repeats(1, 1))
    assert [row.impl for row in case.rows]
    for row in case.rows:
        assert row.answer == expected[row.task], (row.impl, shape)
        assert (row.build is None) == (peer.build is None)


def test_registry_names_each_peer_once() -> None:
    names = [peer.name for module in peers.MODULES for peer in module.PEERS]
    assert len(names) == len(set(names)) == len(peers.REGISTRY)
