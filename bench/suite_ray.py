"""``python -m bench ray``: batch path queries over local Ray workers against one core and against plain processes.

* 10,000 shortest-path queries on a 5-D lattice of 10^5 vertices (20% random obstacles): in-process on one core
  (the baseline), through :func:`catalytic.distributed.batch_shortest_paths` with 1 and with 2 local workers,
  and the same queries in 1 and in 2 plain processes at once (no Ray), all four alternating over 5 rounds
  (medians reported). Each Ray figure is the whole call: task dispatch, per-worker lattice (kept after the
  warm-up calls), queries, results home.
* Targets: 2 Ray workers at least 1.7x the in-process core, and Ray's scaling (2 workers over 1) at least 90 %
  of the plain processes' scaling (2 over 1) in the same rounds. The plain processes show what the machine
  grants this memory-bound workload on two cores, so a missed target can be told apart from Ray's overhead.
* A control: a fixed pure-Python spin as 1 and as 2 concurrent Ray tasks, before and after the batches (about 2
  on two idle cores, about 1 when other work already saturates them).

Partitioned lattices have their own suite (``python -m bench partition``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from bench.common import markdown_table, write_results
from catalytic.errors import NoPathError
from catalytic.kernels import shortest_path
from catalytic.lattice import Lattice

ROUNDS = 5


def _pairs(lattice: Lattice, count: int, seed: int) -> np.ndarray:
    open_index = np.flatnonzero(lattice.open_mask_flat())
    return lattice.coords_of(np.random.default_rng(seed).choice(open_index, size=(count, 2)))


def _in_process(lattice: Lattice, pairs: np.ndarray, backend: str) -> tuple[float, list[int | None]]:
    shortest_path(lattice, pairs[0, 0], pairs[0, 1], backend=backend)  # compile / load the kernels first
    lengths: list[int | None] = []
    t0 = time.perf_counter()
    for start, goal in pairs:
        try:
            lengths.append(shortest_path(lattice, start, goal, backend=backend).length)
        except NoPathError:
            lengths.append(None)
    return time.perf_counter() - t0, lengths


def _on_ray(lattice: Lattice, pairs: np.ndarray, workers: int, backend: str) -> tuple[float, list[int | None]]:
    from catalytic.distributed import batch_shortest_paths

    t0 = time.perf_counter()
    paths = batch_shortest_paths(lattice.spec(), pairs, backend=backend, workers=workers, progress=False)
    elapsed = time.perf_counter() - t0
    return elapsed, [None if p is None else p.length for p in paths]


def _spin(loops: int) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(loops):
        total += i
    return time.perf_counter() - t0


def _parallel_capacity(loops: int = 20_000_000) -> dict[str, float]:
    """Throughput of 2 concurrent CPU-bound Ray tasks over 1: the parallelism the machine grants right now."""
    import ray

    spin = ray.remote(_spin).options(num_cpus=1)
    ray.get([spin.remote(1000) for _ in range(2)])
    t0 = time.perf_counter()
    ray.get(spin.remote(loops))
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.get([spin.remote(loops) for _ in range(2)])
    two = time.perf_counter() - t0
    return {"one_task_s": one, "two_tasks_s": two, "throughput_2_over_1": 2 * one / two}


def _timed_queries(
    shape: tuple[int, ...], obstacles: Sequence[Mapping[str, Any]], pairs: list[Any], backend: str, start_at: float
) -> float:
    """Seconds for the query loop in this (separate) process, started at wall-clock ``start_at``."""
    lattice = Lattice(shape, obstacles=obstacles)
    _in_process(lattice, np.asarray(pairs[:100]), backend)  # kernels loaded before the clock
    while time.time() < start_at:
        time.sleep(0.001)
    return _in_process(lattice, np.asarray(pairs), backend)[0]


def _plain_round(pool: Any, lattice: Lattice, pairs: np.ndarray, backend: str) -> tuple[float, float]:
    """The same queries in 1 plain process, then in 2 at once (no Ray): ``(one alone, slower of the two)`` in s.

    Each process runs the whole loop from the same instant; 2 x one / two is the throughput ratio two workers
    can reach at best on this machine (2.0 on two cores that share nothing).
    """
    args = (lattice.shape, lattice.obstacles, pairs.tolist(), backend)
    one = pool.submit(_timed_queries, *args, time.time() + 1.0).result()
    start = time.time() + 1.0
    pair = [pool.submit(_timed_queries, *args, start) for _ in range(2)]
    return one, max(f.result() for f in pair)


def _markdown(payload: dict[str, Any]) -> str:
    """The Markdown body of the result file, read off the JSON payload."""
    pairs, backend, baseline_s = payload["pairs"], payload["backend"], payload["in_process_one_core_s"]
    batch = {int(workers): row for workers, row in payload["ray"].items()}
    capacity_before = payload["control_parallel_capacity"]["before"]
    capacity_after = payload["control_parallel_capacity"]["after"]
    plain = payload["control_plain_processes"]
    rows = [["in-process, 1 core (baseline)", baseline_s, pairs / baseline_s, 1.0, True]]
    for workers, row in batch.items():
        speed = baseline_s / row["elapsed_s"]
        rows.append([f"Ray, {workers} worker(s)", row["elapsed_s"], row["queries_per_s"], speed, row["identical"]])
    table = markdown_table(["run", "wall s (median)", "queries/s", "speed vs baseline", "identical lengths"], rows)

    def listed(values: list[float]) -> str:
        return ", ".join(f"{t:.3f}" for t in values)

    rounds_text = "; ".join(
        f"{w} worker{'s' if w > 1 else ''}: {listed(row['rounds_s'])} s" for w, row in batch.items()
    )
    speed_2 = payload["speed_2_workers_vs_in_process"]
    share = payload["ray_scaling_share_of_plain"]
    return (
        f"## Batch shortest paths: {pairs} queries, 5-D 10^5 lattice, 20% obstacles, backend {backend}\n\n"
        f"{table}\n\nEvery figure is the median of {ROUNDS} rounds; each round runs the in-process loop "
        f"({listed(payload['in_process_rounds_s'])} s), Ray with 1 and with 2 workers ({rounds_text}) and the plain "
        f"processes, in that order, after warm-up calls; the first Ray call of the run (cold: worker processes "
        f"loading the package and the compiled kernels) took {payload['cold_first_call_2_workers_s']:.3f} s with 2 "
        f"workers.\n\n"
        f"- 2 Ray workers against the in-process core: **{speed_2:.2f}x** (target 1.7x).\n"
        f"- Ray's scaling, 2 workers over 1: **{payload['scaling_2_over_1']:.2f}x**; the plain processes' in the "
        f"same rounds: **{plain['throughput_2_over_1']:.2f}x** (1 process {plain['one_process_s']:.3f} s, the "
        f"slower of 2 at once {plain['two_processes_s']:.3f} s); Ray reaches **{100 * share:.0f} %** of it "
        f"(target 90 %).\n"
        f"- Control, a fixed CPU-bound spin as 2 concurrent Ray tasks over 1: "
        f"{capacity_before['throughput_2_over_1']:.2f}x before the batches, "
        f"{capacity_after['throughput_2_over_1']:.2f}x after (2.0 means two free cores).\n"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ray", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--backend", default="numba")
    args = parser.parse_args(argv)

    import ray

    lattice = Lattice((10,) * 5, obstacles=[{"kind": "random", "p": 0.2, "seed": 7}])
    pairs = _pairs(lattice, args.pairs, seed=11)
    _, expected = _in_process(lattice, pairs, args.backend)
    pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"))
    ray.init(
        num_cpus=2,
        object_store_memory=512 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",  # the cluster's own traffic stays on loopback
    )
    try:
        _plain_round(pool, lattice, pairs[:200], args.backend)  # the plain processes start and load the kernels
        capacity_before = _parallel_capacity()
        # The first call is reported apart (cold: worker processes import the package and load the compiled
        # kernels once each). Two more calls reach every idle worker process of the pool (the control's spin
        # tasks ran on some of them), so the measured rounds below run warm.
        cold_s, _ = _on_ray(lattice, pairs, 2, args.backend)
        for _ in range(2):
            _on_ray(lattice, pairs, 2, args.backend)
        # Every round runs all four, so each sees the same machine; medians are reported.
        in_process: list[float] = []
        runs: dict[int, list[tuple[float, bool]]] = {1: [], 2: []}
        plain: list[tuple[float, float]] = []
        for _ in range(ROUNDS):
            in_process.append(_in_process(lattice, pairs, args.backend)[0])
            for workers in (1, 2):
                elapsed, lengths = _on_ray(lattice, pairs, workers, args.backend)
                runs[workers].append((elapsed, lengths == expected))
            plain.append(_plain_round(pool, lattice, pairs, args.backend))
        batch = {}
        for workers, measured in runs.items():
            elapsed = float(np.median([t for t, _ in measured]))
            batch[workers] = {
                "elapsed_s": elapsed,
                "rounds_s": [t for t, _ in measured],
                "queries_per_s": args.pairs / elapsed,
                "identical": all(same for _, same in measured),
            }
        capacity_after = _parallel_capacity()
    finally:
        ray.shutdown()
        pool.shutdown()

    baseline_s = float(np.median(in_process))
    one, two = float(np.median([a for a, _ in plain])), float(np.median([b for _, b in plain]))
    ceiling = {
        "one_process_s": one,
        "two_processes_s": two,
        "throughput_2_over_1": 2 * one / two,
        "rounds_one_s": [a for a, _ in plain],
        "rounds_two_s": [b for _, b in plain],
    }
    scaling = batch[1]["elapsed_s"] / batch[2]["elapsed_s"]
    payload = {
        "lattice": {"shape": list(lattice.shape), "p": 0.2, "open_vertices": lattice.open_vertices},
        "pairs": args.pairs,
        "backend": args.backend,
        "reachable": sum(length is not None for length in expected),
        "in_process_one_core_s": baseline_s,
        "in_process_rounds_s": in_process,
        "note": (
            "each Ray figure is the whole call: task dispatch, per-worker lattice (kept after the warm-up), "
            "queries, results home; every round runs in-process, Ray 1, Ray 2 and the plain processes"
        ),
        "in_process_queries_per_s": args.pairs / baseline_s,
        "ray": {str(k): v for k, v in batch.items()},
        "scaling_2_over_1": scaling,
        "speed_2_workers_vs_in_process": baseline_s / batch[2]["elapsed_s"],
        "speed_target": 1.7,
        "ray_scaling_share_of_plain": scaling / ceiling["throughput_2_over_1"],
        "scaling_share_target": 0.9,
        "cold_first_call_2_workers_s": cold_s,
        "control_parallel_capacity": {"before": capacity_before, "after": capacity_after},
        "control_plain_processes": ceiling,
        "cpus": os.cpu_count(),
    }
    write_results("ray", payload, _markdown(payload))
    return 0
