"""The ``catalytic`` command: one-off computations, refusals, migrate."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from catalytic import Lattice
from catalytic.cli import main
from catalytic.kernels import analyze, components, shortest_path


def test_path_defaults_to_corner_to_corner(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["path", "--shape", "6,6,6", "--random-obstacles", "0.2", "--seed", "1", "--json"]
    assert main(args) == 0
    answer = json.loads(capsys.readouterr().out)
    lattice = Lattice((6, 6, 6), obstacles=[{"kind": "random", "p": 0.2, "seed": 1}])
    expected = shortest_path(lattice, [0, 0, 0], [5, 5, 5])
    assert answer["start"] == [0, 0, 0] and answer["goal"] == [5, 5, 5]
    assert answer["path"] == expected.coords.tolist() and answer["length"] == expected.length


def test_path_falls_back_to_open_vertices_when_a_corner_is_blocked(capsys: pytest.CaptureFixture[str]) -> None:
    lattice = Lattice((8, 8), obstacles=[{"kind": "random", "p": 0.5, "seed": 3}])
    assert not (lattice.is_open(0) and lattice.is_open(63))
    code = main(["path", "--shape", "8,8", "--random-obstacles", "0.5", "--seed", "3", "--json"])
    answer = json.loads(capsys.readouterr().out)
    open_indices = [i for i in range(64) if lattice.is_open(i)]
    assert answer["start"] == lattice.coords_of(open_indices[0]).tolist()
    assert answer["goal"] == lattice.coords_of(open_indices[-1]).tolist()
    assert code == (0 if answer["found"] else 1)


def test_unreachable_exits_1_and_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["path", "--shape", "4,4", "--start", "0,0", "--goal", "3,3", "--random-obstacles", "0.0"]) == 0
    assert "found" in capsys.readouterr().out
    assert main(["path", "--shape", "4,4", "--start", "0,0", "--goal", "4,4"]) == 2
    assert "goal" in capsys.readouterr().err
    blocked = [
        "path",
        "--shape",
        "30,30",
        "--random-obstacles",
        "0.6",
        "--seed",
        "2",
        "--start",
        "0,0",
        "--goal",
        "29,29",
    ]
    lattice = Lattice((30, 30), obstacles=[{"kind": "random", "p": 0.6, "seed": 2}])
    code = main([*blocked, "--json"])
    out, err = capsys.readouterr()
    if lattice.is_open(0) and lattice.is_open(899):
        assert code == 1 and json.loads(out)["found"] is False
    else:
        assert code == 2 and "blocked" in err


def test_analyze_and_components(capsys: pytest.CaptureFixture[str]) -> None:
    lattice = Lattice((7, 9), periodic=True, obstacles=[{"kind": "random", "p": 0.3, "seed": 4}])
    base = ["--shape", "7,9", "--periodic", "--random-obstacles", "0.3", "--seed", "4", "--json"]
    assert main(["analyze", *base]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["edges"] == analyze(lattice)["edges"]
    assert main(["components", *base]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["count"] == components(lattice)[1]
    assert main(["analyze", "--shape", "3,3"]) == 0
    assert "open_vertices" in capsys.readouterr().out


def test_serve_refuses_a_public_host_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALYTIC_API_KEYS", raising=False)
    monkeypatch.delenv("CATALYTIC_API_KEYS_FILE", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2


def test_migrate_creates_the_service_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cli.db"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CATALYTIC_SQLITE_PATH", str(path))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert main(["migrate"]) == 0
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"service_lattices", "service_arrays", "service_jobs", "service_results", "events"} <= tables
