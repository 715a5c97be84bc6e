"""``Path.memory`` holds the bytes a search really takes: the report against a fresh process's high-water mark."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from catalytic.kernels import shortest_path
from catalytic.kernels._rules import tile_count
from catalytic.lattice import Lattice

# A fresh process compiles (or loads) the kernels on a small lattice, prepares the large lattice's mask, restarts
# its resident high-water mark, runs one search and prints what the search added and what it reported.
PROBE = textwrap.dedent(
    """
    import json, sys
    from catalytic.kernels import _prepared, shortest_path
    from catalytic.kernels.backend import get_backend
    from catalytic.lattice import Lattice

    def status(field):
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

    mode, side = sys.argv[1], int(sys.argv[2])
    kwargs = dict(method="bfs", backend="numba", memory=mode)
    # Every kernel variant the large search runs (the parallel ones start at a size) compiles or loads here,
    # not during the measured search: a cold compile adds tens of MB of LLVM memory.
    warm = side // 2
    shortest_path(Lattice((warm,) * 5), (0,) * 5, (warm - 1,) * 5, **kwargs)
    lattice = Lattice((side,) * 5)
    _prepared(lattice, get_backend("numba"), "bits" if mode == "frugal" else "mask")
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS")
    path = shortest_path(lattice, (0,) * 5, (side - 1,) * 5, **kwargs)
    added = status("VmHWM") - before
    print(json.dumps({"added": added, "reported": path.memory["state_bytes"], "vertices": lattice.vertices}))
    """
)


def _measure(mode: str, side: int) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(side)], capture_output=True, text=True, check=True, timeout=600
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize(("mode", "side"), [("full", 28), ("frugal", 40)])
def test_reported_state_bytes_match_the_high_water_mark(mode: str, side: int) -> None:
    # 28^5 (17 M vertices) full: about 85 MB of dist, tile tables and bit sets; 40^5 (102 M) frugal: about 50 MB
    result = _measure(mode, side)
    assert result["reported"] == pytest.approx(result["added"], rel=0.15), result


def test_full_bfs_counts_its_bit_sets_and_frugal_its_frontiers() -> None:
    lattice = Lattice((20,) * 5)
    n = lattice.vertices
    full = shortest_path(lattice, (0,) * 5, (19,) * 5, method="bfs", backend="numba", memory="full").memory
    # 1 B mask + 4 B dist, then the tile tables (1/4 B), the mask in tile form and four bit sets of one word per
    # tile (5/8 B)
    assert full["measured_bytes"] >= 5 * n + n * 7 // 8
    frugal = shortest_path(lattice, (0,) * 5, (19,) * 5, method="bfs", backend="numba", memory="frugal").memory
    # 1 bit mask, then per 64-vertex tile 3 words of state and 2 bytes of edge flags
    assert frugal["measured_bytes"] >= n // 8 + 26 * tile_count(lattice.shape)
    both = shortest_path(lattice, (0,) * 5, (19,) * 5, method="bidirectional", backend="numba").memory
    assert both["measured_bytes"] >= 17 * n
