"""``python -m bench auto``: BFS against A* on 2-D to 6-D lattices, the measurements behind ``method="auto"``.

``auto`` picks a method from the lattice's shape and obstacle density only (:func:`catalytic.kernels.auto_method`),
so that every replica and backend gives the same path. This suite times both candidates on the same lattices
and queries and shows, row by row, what ``auto`` picks and whether the pick was the faster of the two.

Each lattice has about ``--vertices`` vertices (``side = round(vertices ** (1 / d))``), no periodic axes and
random obstacles (``{kind: random, p, seed: 1}``) at each of ``--densities``. Two queries per lattice:

* ``corner``: the lowest open vertex to the highest (BFS then expands nearly every open vertex);
* ``pairs``: ``--pairs`` random open pairs that are connected (seed 2026), timed together.

Rows run warm on the numba backend with full state (compile time is spent on a tiny lattice first); every
figure is the median of ``--repeat`` timed calls. The two methods' path lengths are checked equal.

Options: ``--quick`` (tiny lattices, the smoke test), ``--dims 2,3,...``, ``--densities 0,0.1,...``,
``--vertices N``, ``--pairs K``, ``--repeat R``, ``--backend NAME``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.common import begin_run, load_average, markdown_table, write_results

METHODS = ("bfs", "astar")
TIMED = (*METHODS, "auto")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench auto", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny lattices and one repeat (smoke test)")
    parser.add_argument("--dims", default="2,3,4,5,6", help="dimensions, comma-separated")
    parser.add_argument("--densities", default="0,0.1,0.2,0.3", help="obstacle densities, comma-separated")
    parser.add_argument("--vertices", type=int, default=2**20, help="about this many vertices per lattice")
    parser.add_argument("--pairs", type=int, default=10, help="random connected pairs per lattice")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per row (median)")
    parser.add_argument("--backend", default="numba", help="backend to time")
    args = parser.parse_args(list(argv))
    args.dims = [int(d) for d in args.dims.split(",") if d]
    args.densities = [float(p) for p in args.densities.split(",") if p]
    if args.quick:
        args.vertices, args.pairs, args.repeat = 4096, 3, 1
    return args


def _median_ms(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    answer = call()  # untimed: fills the per-thread pool and the lattice's prepared mask
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        answer = call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), answer


def _pairs(lattice: Any, count: int, seed: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    from catalytic import components

    labels, _ = components(lattice)
    flat = labels.ravel()
    open_indices = np.flatnonzero(flat)
    rng = np.random.default_rng(seed)
    found: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    while len(found) < count:
        s, g = rng.choice(open_indices, 2)
        if flat[s] == flat[g]:
            found.append((tuple(lattice.coords_of(s).tolist()), tuple(lattice.coords_of(g).tolist())))
    return found


def _case(d: int, density: float, args: argparse.Namespace) -> list[dict[str, Any]]:
    from catalytic import Lattice, NoPathError, shortest_path
    from catalytic.kernels import auto_method, obstacle_density

    side = max(2, round(args.vertices ** (1 / d)))
    obstacles = [{"kind": "random", "p": density, "seed": 1}] if density > 0 else []
    lattice = Lattice((side,) * d, obstacles=obstacles)
    open_indices = np.flatnonzero(lattice.open_mask_flat())
    corner = (tuple(lattice.coords_of(open_indices[0]).tolist()), tuple(lattice.coords_of(open_indices[-1]).tolist()))
    queries = {"corner": [corner], "pairs": _pairs(lattice, args.pairs, 2026)}
    rows = []
    for query, endpoints in queries.items():
        row: dict[str, Any] = {
            "ndim": d,
            "shape": list(lattice.shape),
            "density": density,
            "estimated_density": round(obstacle_density(lattice), 4),
            "open_fraction": round(open_indices.size / lattice.vertices, 4),
            "query": query,
            "queries": len(endpoints),
            "auto": "+".join(sorted({auto_method(lattice, s, g) for s, g in endpoints})),
            "load_average": load_average(),
        }
        lengths = {}
        for method in TIMED:

            def call(method: str = method, pairs: list[Any] = endpoints) -> list[Any]:
                out: list[Any] = []
                for s, g in pairs:
                    try:
                        out.append(shortest_path(lattice, s, g, method=method, backend=args.backend, memory="full"))
                    except NoPathError:  # a corner cut off by obstacles is a row, not a crash
                        out.append("no path")
                return out

            ms, answers = _median_ms(call, args.repeat)
            row[f"{method}_ms"] = ms
            row[f"{method}_expanded"] = sum(a.expanded for a in answers if not isinstance(a, str))
            lengths[method] = [a if isinstance(a, str) else a.length for a in answers]
        row["lengths_agree"] = lengths["bfs"] == lengths["astar"] == lengths["auto"]
        row["faster"] = min(METHODS, key=lambda m: row[f"{m}_ms"])
        row["astar_over_bfs"] = row["astar_ms"] / row["bfs_ms"] if row["bfs_ms"] > 0 else float("nan")
        rows.append(row)
        print(
            f"{d}-D {side}^{d} p={density} {query}: bfs {row['bfs_ms']:.3g} ms, astar {row['astar_ms']:.3g} ms, "
            f"auto ({row['auto']}) {row['auto_ms']:.3g} ms",
            flush=True,
        )
    return rows


def render(rows: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    header = ["d", "shape", "obstacles", "query", "bfs ms", "astar ms", "astar/bfs", "bfs exp.", "astar exp."]
    header += ["auto ran", "auto ms", "faster", "lengths agree"]
    table = [
        [
            r["ndim"],
            "x".join(map(str, r["shape"])),
            r["density"],
            f"{r['query']} ({r['queries']})",
            r["bfs_ms"],
            r["astar_ms"],
            r["astar_over_bfs"],
            r["bfs_expanded"],
            r["astar_expanded"],
            r["auto"],
            r["auto_ms"],
            r["faster"],
            "yes" if r["lengths_agree"] else "NO",
        ]
        for r in rows
    ]
    intro = (
        f"Backend `{args.backend}`, warm, full state; medians of {args.repeat} calls; about {args.vertices:,} "
        f"vertices per lattice; `pairs` times {args.pairs} random connected pairs together. `auto ran` lists the "
        "methods the rule picked for the row's queries; `faster` is the faster of BFS and A*.\n\n"
    )
    return intro + markdown_table(header, table) + "\n"


def main(argv: Sequence[str]) -> int:
    """Time BFS and A* on each lattice and write bench/results/auto.{json,md}."""
    from catalytic import Lattice, shortest_path

    args = parse(argv)
    started = begin_run()
    for method in METHODS:  # compile outside the timings
        shortest_path(Lattice((4, 4)), (0, 0), (3, 3), method=method, backend=args.backend, memory="full")
    rows = [row for d in args.dims for density in args.densities for row in _case(d, density, args)]
    payload = {"options": {k: v for k, v in vars(args).items()}, "rows": rows}
    name = "auto-quick" if args.quick else "auto"
    json_path, md_path = write_results(name, payload, render(rows, args), load_started=started, plots=False)
    print(f"wrote {json_path} and {md_path}")
    return 0 if all(r["lengths_agree"] for r in rows) else 1
