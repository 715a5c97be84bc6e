"""Smoke test of ``python -m bench kernels --quick``: the suite runs end to end and writes well-formed results.

Timings are never asserted: a benchmark is not a test.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import bench.common
import bench.plots
from bench import suite_kernels

# One worker runs the module: its fixture runs the quick kernels suite (seconds to a minute), once, not once per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bench-smoke")]


# What the suite imports on its way (the peers, the backends, the plots): imported before the heap is frozen.
_LIBRARIES = (
    "cc3d", "dijkstra3d", "igraph", "networkx", "scipy.ndimage", "scipy.sparse.csgraph", "skimage.graph",
    "catalytic.kernels.numba_backend",
)  # fmt: skip


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Objects alive before the run (pytest's, coverage's, the libraries') left out of garbage collections.

    The suite collects garbage before every row and every cold call (over a hundred times in a quick run); in a
    test process each full collection walks the whole heap of the session and of the peers' libraries, about
    0.1 s. Frozen, the collections walk only what the run made. Freezing keeps objects alive, never frees one
    early: a cold call that finds state an earlier call left alive is still caught.
    """
    for name in _LIBRARIES:
        importlib.import_module(name)
    bench.plots.pyplot()
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture(scope="session")  # session: interleaved with other modules on its worker, it still runs once
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-results")
    with pytest.MonkeyPatch.context() as mp, _frozen_heap():
        mp.setattr(bench.common, "RESULTS", out)
        assert suite_kernels.main(["--quick"]) == 0
    assert (out / "kernels.md").read_text(encoding="utf-8").startswith("# bench: kernels")
    return json.loads((out / "kernels.json").read_text(encoding="utf-8"))


def test_every_case_ran_with_rows(results: dict) -> None:
    assert results["suite"] == "kernels"
    assert results["config"]["quick"] is True
    assert list(results["cases"]) == list(suite_kernels.CASES)
    for name, case in results["cases"].items():
        assert case["facts"]["open_vertices"] > 0, name
        for row in case["rows"]:
            assert {"case", "task", "impl", "build", "query", "total_s", "answer", "agrees"} <= set(row), row
            assert row["query"]["median_s"] >= 0
            assert isinstance(row["agrees"], bool)


def test_peers_and_catalytic_answer_alike(results: dict) -> None:
    assert results["answers_agree"], results["disagreements"]
    impls = {row["impl"] for case in results["cases"].values() for row in case["rows"]}
    assert "cc3d connectivity=6" in impls
    assert any(impl.startswith("catalytic[") for impl in impls)


def test_graph_peers_by_each_build_route_with_bfs_and_astar(results: dict) -> None:
    corner = {row["impl"] for row in results["cases"]["5d-corner"]["rows"]}
    for call in ("igraph get_shortest_path", "igraph get_shortest_path_astar"):
        assert {f"{call} (Graph.Lattice)", f"{call} (edge list)"} <= corner
    for call in ("networkx shortest_path_length", "networkx astar_path_length"):
        assert {f"{call} (grid_graph)", f"{call} (edge list)"} <= corner
    pairs = {entry["impl"] for entry in results["cases"]["5d-pairs"]["pairs"]}
    assert "igraph get_shortest_path_astar (Graph.Lattice)" in pairs


def test_end_to_end_rows_were_checked_cold_on_every_call(results: dict) -> None:
    rows = [r for case in results["cases"].values() for r in case["rows"] if r["impl"].endswith(", end to end")]
    assert rows
    for row in rows:
        assert row["query"]["cold_checked"] == row["query"]["repeat"] + 1, row["impl"]
    assert isinstance(results["publication_problems"], list)


def test_the_run_records_its_load_and_plots(results: dict) -> None:
    load = results["machine"]["load"]
    assert isinstance(results["noisy"], bool) and load["noisy"] == results["noisy"]
    assert len(load["before"]) == len(load["after"]) == 3


def test_pairs_report_percentiles(results: dict) -> None:
    pairs = results["cases"]["5d-pairs"]["pairs"]
    assert pairs
    for entry in pairs:
        assert entry["p50_s"] <= entry["p99_s"] <= entry["max_s"]
        assert entry["agrees"] is True


def test_targets_and_cold_start_recorded(results: dict) -> None:
    for target in results["targets"]:
        assert set(target) == {"target", "goal", "measured", "met", "cause"}
        assert isinstance(target["met"], bool)
        assert target["met"] or target["cause"]
    for entry in results["cold"]:
        assert "cache" in entry and "error" not in entry, entry


def test_only_selects_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.common, "RESULTS", tmp_path)
    with _frozen_heap():
        assert suite_kernels.main(["--quick", "--only", "3d-200", "--no-cold"]) == 0
    payload = json.loads((tmp_path / "kernels.json").read_text(encoding="utf-8"))
    assert list(payload["cases"]) == ["3d-200"]
    assert payload["cold"] == []


def test_unknown_case_is_refused() -> None:
    with pytest.raises(SystemExit):
        suite_kernels.main(["--only", "no-such-case"])
