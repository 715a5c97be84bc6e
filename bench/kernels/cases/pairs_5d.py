"""5d-pairs: 1,000 random same-component pairs on 5-D 10^5, each query timed on its own (p50/p99)."""

from __future__ import annotations

from typing import Any

from bench.kernels import ours, peers
from bench.kernels.config import Config
from bench.kernels.lattices import Ends, coords, new_case, random_pairs
from bench.kernels.profiles import profile_pairs
from bench.kernels.rows import Case
from bench.kernels.timing import query_stats

NAME = "5d-pairs"

ASTAR_NOTE = "; A* with the Manhattan heuristic (a Python callback)"
PEERS = (
    # (peer, query, on the subset of pairs only, one untimed call first, note)
    ("igraph Graph.Lattice", "path", False, True, "prebuilt Graph"),
    ("igraph Graph.Lattice", "path astar", False, True, "prebuilt Graph" + ASTAR_NOTE),
    ("scipy csgraph", "path", True, False, "prebuilt CSR; full BFS per query"),
    ("networkx edge list", "path", True, False, "prebuilt Graph"),
    ("networkx edge list", "path astar", True, False, "prebuilt Graph" + ASTAR_NOTE),
)
"""The peers that answer the pairs, in order; the first is the reference every entry is checked against."""


def run(cfg: Config) -> Case:
    """1,000 random same-component pairs on 5-D 10^5: per-query p50/p99, each call timed on its own."""
    case, lat, open_grid = new_case(NAME, cfg)
    pairs = random_pairs(open_grid, cfg.pairs, cfg.pair_seed)
    as_coords = [(coords(s, lat.shape), coords(g, lat.shape)) for s, g in pairs]
    case.facts["pairs"] = len(pairs)
    case.facts["pair_seed"] = cfg.pair_seed

    def record(impl: str, times: list[float], lengths: list[Any], note: str) -> None:
        entry: dict[str, Any] = {"impl": impl, **query_stats(times), "lengths": lengths, "note": note}
        case.pairs.append(entry)
        print(f"  pairs {impl:<40} n={len(times)} p50 {entry['p50_s'] * 1e3:.4f} ms p99 {entry['p99_s'] * 1e3:.4f} ms")

    for backend in ours.catalytic_backends(lat.vertices):
        for method in ("auto", "bfs"):
            todo = as_coords if backend == "numba" else as_coords[: cfg.pair_subset]
            times, lengths = ours.pair_lengths(lat, todo, method, backend)
            record(f"catalytic[{backend}] {method}", times, lengths, "prebuilt Lattice, warm")

    if "numba" in ours.catalytic_backends():
        case.profile["per-query shortest_path auto"] = profile_pairs(lat, as_coords, cfg.pair_subset)
    ends = [Ends(sc, gc, s, g) for (s, g), (sc, gc) in zip(pairs, as_coords, strict=True)]
    first_peer = len(case.pairs)
    for name, key, subset, warm, note in PEERS:
        todo_ends = ends[: cfg.pair_subset] if subset else ends
        record(*peers.pair_lengths(name, key, open_grid, todo_ends, warm), note)

    reference = case.pairs[first_peer]
    for entry in case.pairs:
        n = len(entry["lengths"])
        entry["agrees"] = entry["lengths"] == reference["lengths"][:n]
        entry["answer"] = {"pairs": n, "sum_of_lengths": int(sum(entry["lengths"]))}
    case.facts["reference_lengths"] = reference["impl"]
    return case
