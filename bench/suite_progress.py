"""``python -m bench progress``: what the kernels' progress callback costs, on 5-D 20^5.

Each kernel run twice in alternating rounds on one prebuilt lattice (mask cached): once with ``progress=None``,
once with a callback that records every value it gets (what the job worker, the CLI bar and the Ray bar pass).
Medians of the rounds; the overhead is (with - without) / without. Target: under 2 % (the figures issue, section 5).
The values a run reported are counted too, so a callback that is never called cannot pass for a cheap one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import markdown_table, write_results
from catalytic.kernels import PROGRESS_POLL_SECONDS, components, distance_field, shortest_path
from catalytic.lattice import Lattice

SHAPE = (20,) * 5
LARGE = (28,) * 5
OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 1}]
TARGET_PCT = 2.0


def _kernels(lattice: Lattice) -> dict[str, Callable[[Any], object]]:
    open_flat = np.flatnonzero(lattice.open_mask())
    corner = tuple(lattice.coords_of(int(open_flat[0])).tolist())
    far = tuple(lattice.coords_of(int(open_flat[-1])).tolist())
    return {
        "BFS path (first to last open vertex)": lambda cb: shortest_path(
            lattice, corner, far, method="bfs", backend="numba", progress=cb
        ),
        "distance field (one source)": lambda cb: distance_field(lattice, [corner], backend="numba", progress=cb),
        "components": lambda cb: components(lattice, backend="numba", progress=cb),
    }


def _measure(run: Callable[[Any], object], rounds: int) -> dict[str, Any]:
    seen: list[float] = []
    run(None)
    run(seen.append)  # warm, both ways
    without: list[float] = []
    with_cb: list[float] = []
    reported: list[int] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run(None)
        without.append(time.perf_counter() - t0)
        seen.clear()
        t0 = time.perf_counter()
        run(seen.append)
        with_cb.append(time.perf_counter() - t0)
        reported.append(len(seen))
    base, timed = statistics.median(without), statistics.median(with_cb)
    return {
        "without_ms": base * 1e3,
        "with_ms": timed * 1e3,
        "overhead_pct": 100.0 * (timed - base) / base,
        "values_reported": int(statistics.median(reported)),
        "rounds": rounds,
    }


def main(argv: list[str]) -> int:
    """Run the suite and write bench/results/progress.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m bench progress")
    parser.add_argument("--rounds", type=int, default=21, help="alternating rounds per kernel")
    parser.add_argument("--quick", action="store_true", help="a 3-D 12^3 lattice and 3 rounds (smoke test)")
    args = parser.parse_args(argv)
    # The target's lattice, and one large enough that the watcher reports several values while a kernel runs.
    plan = [((12, 12, 12), 3)] if args.quick else [(SHAPE, args.rounds), (LARGE, max(3, args.rounds // 3))]
    rows: dict[str, dict[str, Any]] = {}
    for shape, rounds in plan:
        lattice = Lattice(shape, obstacles=OBSTACLES)
        label = "x".join(map(str, shape))
        for name, run in _kernels(lattice).items():
            rows[f"{label} {name}"] = _measure(run, rounds) | {"shape": list(shape)}
    payload = {"config": {"plan": [[list(s), r] for s, r in plan], "obstacles": OBSTACLES}, "rows": rows}
    table = [
        [name, r["rounds"], r["without_ms"], r["with_ms"], f"{r['overhead_pct']:+.2f} %", r["values_reported"],
         "met" if r["overhead_pct"] < TARGET_PCT else "MISSED"]
        for name, r in rows.items()
    ]  # fmt: skip
    header = ["kernel", "rounds", "without ms", "with ms", "overhead", "values reported", "under 2 %"]
    markdown = (
        "Kernels with random obstacles (p 0.2), numba, prebuilt lattice: medians of alternating rounds without a "
        "progress callback and with one that records every value (a watcher thread reads the kernel's counter "
        f"every {PROGRESS_POLL_SECONDS:g} s and reports rises, then 1.0). Target on 20^5: overhead under "
        f"{TARGET_PCT:g} %.\n\n" + markdown_table(header, table) + "\n"
    )
    write_results("progress", payload, markdown, plots=False)
    print(markdown)
    return 0
