"""The kernels' progress reaches a callback through one shared watcher thread, and never after the call returns."""

from __future__ import annotations

import threading
import time

from catalytic.kernels import PROGRESS_POLL_SECONDS, components, distance_field
from catalytic.lattice import Lattice


def test_one_watcher_thread_serves_every_call_and_nothing_arrives_late() -> None:
    lattice = Lattice((24,) * 5, obstacles=[{"kind": "random", "p": 0.2, "seed": 3}])
    source = [lattice.coords_of(int(lattice.open_mask().argmax())).tolist()]
    for _ in range(3):
        seen: list[float] = []
        distance_field(lattice, source, backend="numba", progress=seen.append)
        components(lattice, backend="numba", progress=seen.append)
        count = len(seen)
        time.sleep(3 * PROGRESS_POLL_SECONDS)
        assert len(seen) == count, "a report arrived after the call returned"
        assert seen and seen[-1] == 1.0
    watchers = [t for t in threading.enumerate() if t.name == "catalytic-progress"]
    assert len(watchers) == 1
