"""The first calls of a fresh process: import, then each public call once and again, with the numba cache as found
or emptied. Run in a subprocess so nothing this process compiled or cached counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.kernels.config import REPO, Config
from bench.kernels.lattices import coords, corners, lattice_spec

COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import catalytic
t_import = time.perf_counter() - t0
spec = json.loads(sys.argv[1])
start, goal = tuple(spec.pop("start")), tuple(spec.pop("goal"))
spec["shape"] = tuple(spec["shape"])
out = {"import_s": t_import}
lat = catalytic.Lattice(**spec)
calls = [
    ("shortest_path bfs", lambda: catalytic.shortest_path(lat, start, goal, "bfs", "numba")),
    ("shortest_path auto", lambda: catalytic.shortest_path(lat, start, goal, "auto", "numba")),
    ("components", lambda: catalytic.components(lat, "numba")),
    ("distance_field", lambda: catalytic.distance_field(lat, [start], "numba")),
]
for name, call in calls:
    t0 = time.perf_counter(); call(); first = time.perf_counter() - t0
    t0 = time.perf_counter(); call(); second = time.perf_counter() - t0
    out[name] = {"first_s": first, "second_s": second}
print(json.dumps(out))
"""


def numba_cache_files() -> int:
    """Index files of numba's on-disk cache for catalytic's kernels, where this process would look for them."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    root = Path(cache_dir) if cache_dir else REPO / "catalytic" / "kernels" / "__pycache__"
    return len(list(root.rglob("*.nbi"))) if root.exists() else 0


def cold_compile(spec: dict[str, Any], start: tuple[int, ...], goal: tuple[int, ...], empty: bool) -> dict[str, Any]:
    """First calls in a fresh process, with the numba cache as found or with an empty cache directory."""
    payload = json.dumps({**spec, "shape": list(spec["shape"]), "start": list(start), "goal": list(goal)})
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        if empty:
            env["NUMBA_CACHE_DIR"] = tmp
            state = "empty cache directory (NUMBA_CACHE_DIR set to a new temporary directory): compiles everything"
        else:
            state = f"cache as found: {numba_cache_files()} numba index files (.nbi) for catalytic's kernels"
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", COLD_SCRIPT, payload],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            check=False,
        )
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"cache": state, "error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return {"cache": state, "process_wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def cold_runs(cfg: Config) -> list[dict[str, Any]]:
    """Fresh-process first calls on the 5-D corner lattice: cache as found, and (full runs) an empty cache."""
    import catalytic

    spec = lattice_spec(cfg.shapes["5d-corner"], cfg.density["5d-corner"], cfg.seed)
    lat = catalytic.Lattice(**spec)
    start, goal, _, _ = corners(lat.open_mask_flat())
    states = (False,) if cfg.quick else (False, True)
    return [cold_compile(spec, coords(start, lat.shape), coords(goal, lat.shape), empty) for empty in states]
