"""Ray job entrypoint: a batch of random shortest-path queries on a procedural lattice.

Run it on a cluster (``ray job submit -- python ray_cluster/jobs/batch_paths.py ...``, or the RayJob manifest);
it connects through ``RAY_ADDRESS``, which Ray sets for job entrypoints. It prints one JSON summary line and
writes it to ``--output`` when given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from catalytic.distributed import batch_shortest_paths
from catalytic.lattice import Lattice

log = logging.getLogger("catalytic.jobs.batch_paths")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[10, 10, 10, 10, 10], help="axis lengths")
    parser.add_argument("--p", type=float, default=0.2, help="fraction of random obstacles")
    parser.add_argument("--seed", type=int, default=7, help="obstacle and query seed")
    parser.add_argument("--pairs", type=int, default=1000, help="number of (start, goal) queries")
    parser.add_argument("--method", default="auto", help="search method")
    parser.add_argument("--workers", type=int, default=None, help="worker actors (default: cluster CPUs)")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON summary here too")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Run the batch and return its summary."""
    lattice = Lattice(args.shape, obstacles=[{"kind": "random", "p": args.p, "seed": args.seed}])
    open_index = np.flatnonzero(lattice.open_mask_flat())
    picks = np.random.default_rng(args.seed).choice(open_index, size=(args.pairs, 2))
    pairs = lattice.coords_of(picks)
    t0 = time.perf_counter()
    paths = batch_shortest_paths(lattice.spec(), pairs, method=args.method, workers=args.workers)
    elapsed = time.perf_counter() - t0
    lengths = [p.length for p in paths if p is not None]
    return {
        "shape": list(lattice.shape),
        "p": args.p,
        "pairs": args.pairs,
        "reachable": len(lengths),
        "mean_length": float(np.mean(lengths)) if lengths else None,
        "max_length": max(lengths) if lengths else None,
        "elapsed_s": elapsed,
        "queries_per_s": args.pairs / elapsed if elapsed > 0 else None,
    }


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse(argv)
    summary = run(args)
    line = json.dumps(summary)
    sys.stdout.write(line + "\n")
    if args.output is not None:
        args.output.write_text(line + "\n", encoding="utf-8")
        log.info("summary written to %s", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
