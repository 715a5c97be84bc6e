"""The per-thread pool of search-state arrays is capped by bytes (CATALYTIC_POOL_MAX_BYTES)."""

from __future__ import annotations

import threading

import pytest

from catalytic.kernels import DEFAULT_POOL_MAX_BYTES, held_bytes, pool_bytes, shortest_path
from catalytic.lattice import Lattice


def _in_fresh_thread(fn):  # each thread has its own pool: a fresh one starts empty
    out = {}

    def run() -> None:
        out["value"] = fn()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["value"]


def test_pool_keeps_small_arrays_and_drops_those_over_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    small, large = Lattice((40, 40)), Lattice((400, 400))

    def queries() -> tuple[int, int]:
        shortest_path(small, (0, 0), (39, 39), method="bfs", memory="full", backend="numba")
        kept_small = pool_bytes()
        shortest_path(large, (0, 0), (399, 399), method="bfs", memory="full", backend="numba")
        return kept_small, pool_bytes()

    kept_small, kept_after_large = _in_fresh_thread(queries)
    assert 0 < kept_small <= DEFAULT_POOL_MAX_BYTES
    # Under the default cap the large search's arrays are pooled too.
    assert kept_after_large >= 400 * 400 * 4

    monkeypatch.setenv("CATALYTIC_POOL_MAX_BYTES", str(64 * 1024))
    kept_small, kept_after_large = _in_fresh_thread(queries)
    assert 0 < kept_small <= 64 * 1024
    assert kept_after_large <= 64 * 1024  # 640 kB distance arrays are not kept


def test_held_bytes_counts_the_prepared_masks() -> None:
    lattice = Lattice((100, 100))
    assert held_bytes(lattice) == 0
    shortest_path(lattice, (0, 0), (99, 99), backend="numba")
    assert held_bytes(lattice) >= 100 * 100  # one byte per vertex of materialised open mask
