"""``python -m bench partition``: distance fields on lattices split into slabs across local Ray workers.

* Speed: the partitioned distance field (:class:`catalytic.distributed.PartitionedLattice`: each round runs a
  slab to local quiescence, then slabs exchange only the boundary entries that went down) against the
  single-node kernel (:func:`catalytic.kernels.distance_field`) on the same lattice, alternating over rounds
  (medians). Target: 5-D 28^5 and 2-D 8192^2 on 2 slabs and 2 workers within 3x the single node; the small
  lattices of the earlier bench (5-D 10^5 and 1000^2 on 4 slabs) show the per-round cost. Each row gives the
  rounds and the bytes the slabs sent in each round (:attr:`PartitionedLattice.round_bytes`).
* Memory: a lattice whose search state exceeds a worker's ``CATALYTIC_MEMORY_BUDGET`` searched on 4 local
  workers, each with a budget below a third of the single node's need; the peak RSS of each worker against
  that of a single-node process computing the same field.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from bench.common import markdown_table, write_results
from catalytic.kernels import distance_field
from catalytic.lattice import Lattice

ROUNDS = 3
OBSTACLES = [{"kind": "random", "p": 0.2, "seed": 7}]


def _middle_source(lattice: Lattice) -> list[int]:
    """The open vertex nearest the middle of the lattice's linear order: the field then crosses every slab face."""
    open_index = np.flatnonzero(lattice.open_mask_flat())
    return [int(c) for c in lattice.coords_of(int(open_index[open_index.size // 2]))]


def _speed(shape: tuple[int, ...], slabs: int, backend: str) -> dict[str, Any]:
    """Single node against partitioned, alternating over ROUNDS rounds after one warm call of each."""
    from catalytic.distributed import PartitionedLattice

    lattice = Lattice(shape, obstacles=OBSTACLES)
    source = _middle_source(lattice)
    expected = distance_field(lattice, [source], backend=backend)  # warm: kernels loaded, mask cached
    singles, parts, rounds, sent = [], [], [], []
    identical = True
    with PartitionedLattice(lattice.spec(), slabs=slabs, backend=backend) as part:
        part.distance_field([source])  # warm: actors started, slab masks built, kernels loaded
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            distance_field(lattice, [source], backend=backend)
            singles.append(time.perf_counter() - t0)
            before = part.rounds
            t0 = time.perf_counter()
            got = part.distance_field([source])
            parts.append(time.perf_counter() - t0)
            rounds.append(part.rounds - before)
            sent = list(part.round_bytes)
            identical = identical and bool(np.array_equal(got, expected))
        state = part.state_bytes()
    single, partitioned = float(np.median(singles)), float(np.median(parts))
    return {
        "shape": list(shape),
        "vertices": lattice.vertices,
        "slabs": slabs,
        "rounds": int(np.median(rounds)),
        "bytes_per_round": sent,
        "row_bytes_int32": 4 * math.prod(shape[1:]),
        "single_node_s": single,
        "partitioned_s": partitioned,
        "single_rounds_s": singles,
        "partitioned_rounds_s": parts,
        "overhead_x": partitioned / single,
        "identical": identical,
        "slab_state_bytes": state,
    }


def _single_node_rss(shape: tuple[int, ...], source: list[int], goal: list[int], backend: str) -> dict[str, Any]:
    """In a fresh process: RSS with the lattice built and the kernels loaded, then the peak during the field."""
    from catalytic.distributed.partition import peak_rss

    lattice = Lattice(shape, obstacles=OBSTACLES)
    distance_field(Lattice((4,) * len(shape)), [[0] * len(shape)], backend=backend)  # kernels loaded
    before = peak_rss(reset=True)
    t0 = time.perf_counter()
    field = distance_field(lattice, [source], backend=backend)
    elapsed = time.perf_counter() - t0
    return {
        "rss_before_bytes": before,
        "peak_rss_bytes": peak_rss(),
        "seconds": elapsed,
        "goal_value": int(field[tuple(goal)]),
    }


def _memory(shape: tuple[int, ...], workers: int, backend: str) -> dict[str, Any]:
    """The budget demonstration on ``workers`` local workers (its own Ray session, the budget in every worker)."""
    import ray

    from catalytic.distributed import PartitionedLattice
    from catalytic.distributed.partition import SlabWorker

    lattice = Lattice(shape, obstacles=OBSTACLES)
    source = _middle_source(lattice)
    open_index = np.flatnonzero(lattice.open_mask_flat())
    goal = [int(c) for c in lattice.coords_of(int(open_index[-1]))]
    whole_need = SlabWorker(lattice.spec(), 0, shape[0], True, {}, backend).state_bytes()
    budget = whole_need // 3 - 1
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        single = pool.submit(_single_node_rss, shape, source, goal, backend).result()
    ray.init(
        num_cpus=workers,
        object_store_memory=256 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"CATALYTIC_MEMORY_BUDGET": str(budget)}},
    )
    try:
        with PartitionedLattice(lattice.spec(), slabs=workers, backend=backend) as part:
            rss_before = part.peak_rss(reset=True)
            t0 = time.perf_counter()
            length = part.path_length(source, goal)
            elapsed = time.perf_counter() - t0
            rss_after = part.peak_rss()
            slab_need = part.state_bytes()
            rounds, sent = part.rounds, list(part.round_bytes)
    finally:
        ray.shutdown()
    return {
        "shape": list(shape),
        "vertices": lattice.vertices,
        "workers": workers,
        "budget_bytes": budget,
        "single_node_state_bytes": whole_need,
        "slab_state_bytes": slab_need,
        "single_node": single,
        "worker_peak_rss_before_bytes": rss_before,
        "worker_peak_rss_bytes": rss_after,
        "partitioned_s": elapsed,
        "rounds": rounds,
        "bytes_per_round": sent,
        "goal_value": int(length),
        "identical": int(length) == single["goal_value"],
    }


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f}"


def _markdown(payload: dict[str, Any]) -> str:
    rows = [
        [
            "x".join(map(str, p["shape"])),
            p["slabs"],
            p["rounds"],
            ", ".join(f"{b:,}" for b in p["bytes_per_round"]),
            p["single_node_s"],
            p["partitioned_s"],
            p["overhead_x"],
            p["identical"],
        ]
        for p in payload["speed"]
    ]
    header = ["lattice", "slabs", "rounds", "bytes sent per round", "single node s", "partitioned s", "x single"]
    table = markdown_table([*header, "identical"], rows)
    verdicts = "; ".join(
        f"{'x'.join(map(str, p['shape']))}: {p['overhead_x']:.2f}x, "
        + ("met" if p["overhead_x"] <= payload["target_overhead_x"] else "missed")
        for p in payload["speed"]
        if p["slabs"] == payload["workers"]
    )
    m = payload["memory"]
    single = m["single_node"]
    rss = ", ".join(_mb(b) for b in m["worker_peak_rss_bytes"])
    rss_before = ", ".join(_mb(b) for b in m["worker_peak_rss_before_bytes"])
    slab_need = ", ".join(_mb(b) for b in m["slab_state_bytes"])
    return (
        f"## Partitioned distance fields against the single node (backend {payload['backend']}, "
        f"{payload['workers']} local Ray workers for the large lattices)\n\n{table}\n\n"
        f"Target, partitioned within {payload['target_overhead_x']:g}x the single node on {payload['workers']} "
        f"workers: {verdicts}.\n\n"
        f"Each time is the median of {ROUNDS} rounds, single node and partitioned alternating, after one warm call "
        "of each (kernels loaded, slab actors started and their masks built); the partitioned time is the whole "
        "query: every round, and the field gathered on the driver. Bytes per round are what the slabs sent each "
        "other (columns + values of the boundary entries that went down), from the last round. The source is the "
        "open vertex in the middle of the linear order, so the field crosses every slab face.\n\n"
        f"## Searched across workers, over one worker's budget\n\n"
        f"5-D {'x'.join(map(str, m['shape']))} ({m['vertices']:,} vertices) on {m['workers']} local workers, each "
        f"with CATALYTIC_MEMORY_BUDGET = {m['budget_bytes']:,} B, a third of the single node's search state "
        f"({m['single_node_state_bytes']:,} B: mask, int32 steps, queue) less one byte; one slab holding the whole "
        f"lattice refuses the query under that budget. Each slab's state: {slab_need} MiB. The distance from the "
        f"middle vertex to the last open vertex: {m['goal_value']} steps partitioned, {single['goal_value']} on "
        f"the single node (identical: {m['identical']}); {m['rounds']} rounds, {m['partitioned_s']:.2f} s on the "
        f"workers against {single['seconds']:.2f} s for the single node's field.\n\n"
        f"Peak RSS per worker during the query: {rss} MiB (at its start, with the slab built: {rss_before} MiB). "
        f"The single-node process during the field: {_mb(single['peak_rss_bytes'])} MiB (at its start, with the "
        f"lattice built and the kernels loaded: {_mb(single['rss_before_bytes'])} MiB). Peaks are Linux's VmHWM, "
        "set back to the current size when the query starts.\n"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench partition", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-side", type=int, default=36, help="side of the 5-D lattice of the budget run")
    parser.add_argument("--no-plane", action="store_true", help="leave out 2-D 8192^2")
    args = parser.parse_args(argv)

    import ray

    ray.init(
        num_cpus=args.workers,
        object_store_memory=1024 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        speed = [_speed((10,) * 5, 4, args.backend), _speed((1000, 1000), 4, args.backend)]
        speed.append(_speed((28,) * 5, args.workers, args.backend))
        if not args.no_plane:
            speed.append(_speed((8192, 8192), args.workers, args.backend))
    finally:
        ray.shutdown()
    memory = _memory((args.memory_side,) * 5, 4, args.backend)
    payload = {
        "backend": args.backend,
        "workers": args.workers,
        "target_overhead_x": 3.0,
        "speed": speed,
        "memory": memory,
        "cpus": os.cpu_count(),
    }
    write_results("partition", payload, _markdown(payload))
    return 0
