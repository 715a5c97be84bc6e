"""The kernels bench measures what its labels say: cold end-to-end rows are cold, and figures that cannot be
what they claim are refused. Timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import bench.common
from bench import suite_kernels
from bench.kernels import ours
from bench.kernels.checks import publication_problems
from bench.kernels.lattices import Ends, coords, corners, lattice_spec
from bench.kernels.rows import Case, Row
from bench.kernels.timing import WarmStateError, overhead_problem, with_overhead
from catalytic import Lattice, shortest_path
from catalytic.kernels.backend import get_backend

SHAPE = (6, 6, 6)


def small_case() -> tuple[Case, Ends]:
    spec = lattice_spec(SHAPE, 0.2, 1)
    lattice = Lattice(**spec)  # never queried: the kernels hold nothing for it
    start, goal, _, _ = corners(np.asarray(lattice.open_mask_flat()))
    ends = Ends(coords(start, SHAPE), coords(goal, SHAPE), start, goal)
    return Case("small", spec, {"vertices": lattice.vertices}), ends


def test_end_to_end_rows_build_the_mask_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = type(get_backend("numpy"))
    built = []
    materialise = backend.open_mask

    def counted(self: object, geom: object) -> object:
        built.append(geom)
        return materialise(self, geom)

    monkeypatch.setattr(backend, "open_mask", counted)
    case, ends = small_case()
    row = ours.end_to_end_path_row(case, ends, "numpy", "bfs", repeat=2)
    assert row.query["cold_checked"] == 3
    assert len(built) == 3  # one mask materialised per call: no call found a prepared one
    assert isinstance(row.answer, int)


def test_an_equal_lattice_alive_with_its_mask_is_refused() -> None:
    case, ends = small_case()
    warm = Lattice(**case.spec)
    shortest_path(warm, ends.start, ends.goal, "bfs", "numpy")  # prepares the mask every equal lattice would find
    with pytest.raises(WarmStateError):
        ours.end_to_end_path_row(case, ends, "numpy", "bfs", repeat=1)
    del warm
    assert ours.end_to_end_path_row(case, ends, "numpy", "bfs", repeat=1).query["cold_checked"] == 2


def test_overhead_is_paired_round_by_round() -> None:
    parts = {"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.5, 0.5, 0.5]}
    total = [a + b + 0.1 for a, b in zip(parts["a"], parts["b"], strict=True)]
    stages = with_overhead({**parts, "total": total}, "total", ["a", "b"])
    assert stages["python_overhead"] == pytest.approx(0.1)
    assert stages["python_overhead_se"] == pytest.approx(0.0, abs=1e-12)
    assert overhead_problem(stages) is None


def test_parts_outweighing_their_total_are_refused_and_noise_is_not() -> None:
    outweighed = {"total": 0.093e-3, "mask": 0.296e-3, "python_overhead": -0.25e-3, "python_overhead_se": 0.01e-3}
    assert "more than the total" in (overhead_problem(outweighed) or "")
    noise = {"total": 60e-3, "label": 60.7e-3, "python_overhead": -0.7e-3, "python_overhead_se": 0.5e-3}
    assert overhead_problem(noise) is None


def end_to_end_row(median_s: float, checked: int) -> Row:
    query = {"cold_s": median_s, "median_s": median_s, "min_s": median_s, "max_s": median_s, "repeat": 2}
    query["cold_checked"] = checked
    return Row("5d-corner", "path", "catalytic[numba] bfs, end to end", None, query, 45)


def test_publication_problems_name_each_figure_that_cannot_be_right() -> None:
    case = Case("5d-corner", {}, {})
    case.profile["path"] = {"bfs": {"mask_materialisation": 0.3e-3, "python_overhead": 1e-5, "python_overhead_se": 0}}
    case.rows.append(end_to_end_row(0.5e-3, checked=3))
    assert publication_problems({"5d-corner": case}) == []
    case.rows[0] = end_to_end_row(0.5e-3, checked=1)
    assert "checked to be cold" in publication_problems({"5d-corner": case})[0]
    case.rows[0] = end_to_end_row(0.5e-3, checked=3)
    case.profile["path"]["bfs"]["python_overhead"] = -0.25e-3
    assert "more than the total" in publication_problems({"5d-corner": case})[0]


def test_a_full_run_writes_nothing_when_a_figure_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused_case(cfg: object) -> Case:
        facts = {"shape": list(SHAPE), "obstacle_density": 0.2, "vertices": 216, "open_vertices": 170}
        facts |= {"start": [0, 0, 0], "goal": [5, 5, 5], "load_average_at_start": [0.0, 0.0, 0.0]}
        facts |= {"start_substituted": False, "goal_substituted": False}
        case = Case("3d-200", {"shape": SHAPE}, facts)
        case.profile["components"] = {"label": 2.0, "python_overhead": -1.0, "python_overhead_se": 0.0}
        return case

    monkeypatch.setattr(bench.common, "RESULTS", tmp_path)
    monkeypatch.setitem(suite_kernels.RUNNERS, "3d-200", refused_case)
    assert suite_kernels.main(["--only", "3d-200", "--no-cold"]) == 1
    assert list(tmp_path.iterdir()) == []
    assert suite_kernels.main(["--quick", "--only", "3d-200", "--no-cold"]) == 0  # a quick run lists them
    stored = json.loads((tmp_path / "kernels.json").read_text(encoding="utf-8"))
    assert "more than the total" in stored["publication_problems"][0]


def test_published_end_to_end_rows_were_checked_cold() -> None:
    stored = json.loads((bench.common.RESULTS / "kernels.json").read_text(encoding="utf-8"))
    rows = [r for case in stored["cases"].values() for r in case["rows"] if r["impl"].endswith("end to end")]
    if not any("cold_checked" in r["query"] for r in rows):
        pytest.skip("the stored kernels results predate the cold check; rerun `python -m bench kernels`")
    for row in rows:
        assert row["query"]["cold_checked"] == row["query"]["repeat"] + 1, row["impl"]


def test_per_vertex_rows_divide_each_catalytic_bfs_query_by_its_expanded_count() -> None:
    case = Case("small", {}, {"vertices": 1000})
    note = "query on a prebuilt Lattice (mask cached); ran bfs, expanded 1000"
    case.rows.append(Row("small", "path", "catalytic[numba] bfs", None, {"median_s": 0.002}, 45, note))
    case.rows.append(Row("small", "path", "igraph get_shortest_path", None, {"median_s": 0.5}, 45, "expanded 7"))
    astar = "query on a prebuilt Lattice (mask cached); ran astar, expanded 46"
    case.rows.append(Row("small", "path", "catalytic[numba] auto", None, {"median_s": 0.0001}, 45, astar))
    bandwidth = {"read_gb_s": 10.0, "copy_gb_s": 12.0, "bytes": 2**20, "load_average": [0.0, 0.0, 0.0]}
    rows = suite_kernels.per_vertex({"small": case}, bandwidth)
    assert [(r["impl"], r["ran"], r["expanded"]) for r in rows] == [("catalytic[numba] bfs", "bfs", 1000)]
    assert rows[0]["ns_per_expanded"] == pytest.approx(2000.0)
    # 5 bytes per vertex at 10 bytes per ns
    assert rows[0]["bandwidth_floor_ns"] == pytest.approx(0.5)
    assert "| small | catalytic[numba] bfs | bfs |" in suite_kernels.per_vertex_markdown(rows, bandwidth)


def test_memory_bandwidth_streams_the_bytes_it_names() -> None:
    measured = bench.common.memory_bandwidth(size=2**20, repeat=1)
    assert measured["bytes"] == 2**20
    assert measured["read_gb_s"] > 0 and measured["copy_gb_s"] > 0


def test_a_cold_call_finds_no_tile_tables_of_its_shape() -> None:
    import gc

    import catalytic
    from bench.kernels.ours import warm_before_cold_call
    from catalytic.kernels import numba_backend

    spec = {"shape": (9, 7, 5), "obstacles": [{"kind": "random", "p": 0.1, "seed": 3}]}
    lattice = catalytic.Lattice(**spec)
    catalytic.shortest_path(lattice, (0, 0, 0), (8, 6, 4), method="bfs", backend="numba")
    assert numba_backend._LAYOUTS
    assert warm_before_cold_call(spec)  # the equal lattice above still holds its prepared mask
    del lattice
    gc.collect()
    assert not warm_before_cold_call(spec) and not numba_backend._LAYOUTS
