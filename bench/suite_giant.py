"""``python -m bench giant``: a frugal corner-to-corner shortest path on a 5-D lattice of 992,436,543 vertices.

The lattice is 63^5 with 20 % procedural random obstacles (seed 1). The run goes through the ``numba`` backend's
primitives directly, as the algorithm layer would: ``Geometry.of(Lattice(...))``, then ``open_bits`` (the
packed open mask, hashed in parallel), ``bfs_frugal`` (3 bits per vertex on 64-vertex tiles: the open bits and
a 2-bit code, ``1 + depth mod 3``) and ``trace_path_frugal``
(the canonical path rebuilt from the state). Start and goal are the lowest and the highest open vertex, which
on 63^5 with seed 1 are the two corners.

The measurement runs in a child process so that its peak resident set (``ru_maxrss``) counts nothing but the
search and the interpreter; a thread of that process samples its resident set every 0.1 s, stage by stage
(``rss_series``: seconds, MiB, stage), for the plot of RSS over time. The parent process measures the
machine's single-core sequential memory bandwidth after the child ends, so the time per vertex can be read
against it. JIT compilation (or loading the on-disk cache) is warmed on a 16^5 lattice first and reported
apart. Wall time is split into mask materialisation, search and path rebuild; CPU time and the load average are
recorded beside it, because on a shared machine the wall time says as much about the neighbours as about the
code. The path is checked: every step joins two open neighbours, and its length is the BFS length.

Targets: peak RSS <= 1.5 GiB and mask + search + rebuild <= 12 s on a 2-core machine (issue 17; it was 60 s).
Each is reported met or missed with the figures behind it.

Options: ``--shape 20,20,20,20,20`` for a quick run (written to ``giant-<shape>`` instead of ``giant``),
``--p``, ``--seed``, ``--threads`` (default: numba's thread count), ``--runs`` (default 3: each run a fresh
measuring process, the median run reported and every run's times listed) and ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import markdown_table, memory_bandwidth, write_results

FULL_SHAPE = (63, 63, 63, 63, 63)
RSS_TARGET_GIB = 1.5
WALL_TARGET_S = 12.0
WARM_SHAPE = (16, 16, 16, 16, 16)
ROOT = Path(__file__).resolve().parent.parent


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench giant", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default=",".join(map(str, FULL_SHAPE)), help="comma-separated axis lengths")
    parser.add_argument("--p", type=float, default=0.2, help="random obstacle density")
    parser.add_argument("--seed", type=int, default=1, help="random obstacle seed")
    parser.add_argument("--threads", type=int, default=None, help="threads for the mask and the search")
    parser.add_argument("--runs", type=int, default=3, help="fresh measuring processes; the median run is reported")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    args.shape = tuple(int(n) for n in args.shape.split(","))
    return args


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssSampler:
    """Samples this process's resident set every ``interval`` seconds in a thread: (seconds, MiB, stage).

    The kernels release the GIL while they run, so the samples cover the search itself.
    """

    def __init__(self, began: float, interval: float = 0.1) -> None:
        self.began = began
        self.interval = interval
        self.stage = "start-up"
        self.samples: list[tuple[float, float, str]] = []
        self._done = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss_mib(self) -> float:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * self._page / 2**20

    def sample(self) -> None:
        self.samples.append((round(time.perf_counter() - self.began, 3), round(self.rss_mib(), 1), self.stage))

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()

    def enter(self, stage: str) -> None:
        """Mark the start of a stage (with a sample at its start)."""
        self.stage = stage
        self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.sample()


def _check_path(path: Any, shape: tuple[int, ...], open_bits: Any, start: int, goal: int, length: int) -> str | None:
    """None when ``path`` is a walk of ``length`` unit steps over open vertices from goal to start."""
    import numpy as np

    if len(path) != length + 1 or int(path[0]) != goal or int(path[-1]) != start:
        return f"path has {len(path)} vertices from {int(path[0])} to {int(path[-1])}"
    coords = np.stack(np.unravel_index(np.asarray(path), shape), axis=-1)
    steps = np.abs(np.diff(coords, axis=0)).sum(axis=1)
    if not (steps == 1).all():
        return f"{int((steps != 1).sum())} steps are not unit steps"
    bits = (open_bits[np.asarray(path) >> 3] >> (np.asarray(path) & 7).astype(np.uint8)) & 1
    if not bits.all():
        return f"{int((bits == 0).sum())} path vertices are blocked"
    return None


def _endpoints(open_bits: Any, vertices: int) -> tuple[int, int]:
    """The lowest and the highest open vertex, scanning the packed mask in slices (no temporary of its size)."""
    import numpy as np

    size = open_bits.shape[0]
    slice_bytes = 1 << 20
    first = last = -1
    for lo in range(0, size, slice_bytes):
        hits = np.flatnonzero(open_bits[lo : lo + slice_bytes])
        if hits.size:
            first = lo + int(hits[0])
            break
    for hi in range(size, 0, -slice_bytes):
        lo = max(0, hi - slice_bytes)
        hits = np.flatnonzero(open_bits[lo:hi])
        if hits.size:
            last = lo + int(hits[-1])
            break
    if first < 0:
        raise SystemExit("the lattice has no open vertex")
    low_bits = np.flatnonzero(np.unpackbits(open_bits[first : first + 1], bitorder="little"))
    high_bits = np.flatnonzero(np.unpackbits(open_bits[last : last + 1], bitorder="little"))
    return first * 8 + int(low_bits[0]), min(last * 8 + int(high_bits[-1]), vertices - 1)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurement in this process and return its figures."""
    began = time.perf_counter()
    with RssSampler(began) as rss:
        result = _measure(args, began, rss)
    result["rss_series"] = rss.samples
    return result


def _measure(args: argparse.Namespace, began: float, rss: RssSampler) -> dict[str, Any]:
    """The measurement, marking its stages on ``rss``."""
    rss.enter("import")
    import numba
    import numpy as np

    from catalytic.kernels.backend import Geometry, Meter, metered
    from catalytic.kernels.numba_backend import NumbaBackend
    from catalytic.lattice import Lattice

    if args.threads:
        numba.set_num_threads(args.threads)
    backend = NumbaBackend()
    obstacles = [{"kind": "random", "p": args.p, "seed": args.seed}]
    imported = time.perf_counter()
    rss.enter("JIT warm-up")

    # Warm every kernel on a lattice wide enough for the threaded search path.
    warm = Geometry.of(Lattice(WARM_SHAPE, obstacles=obstacles))
    warm_bits = backend.open_bits(warm)
    warm_start, warm_goal = _endpoints(warm_bits, warm.vertices)
    warm_size, state_dtype = backend.frugal_state_size(warm)
    warm_state = np.zeros(warm_size, dtype=state_dtype)
    warm_length, _ = backend.bfs_frugal(warm, warm_bits, warm_start, warm_goal, warm_state)
    if warm_length >= 0:
        backend.trace_path_frugal(warm, warm_bits, warm_state, warm_start, warm_goal, warm_length)
    del warm_bits, warm_state
    warmed = time.perf_counter()
    rss_after_warm = _rss_mib()

    geom = Geometry.of(Lattice(args.shape, obstacles=obstacles))
    load_before = os.getloadavg()
    rss.enter("mask")
    cpu0, t0 = time.process_time(), time.perf_counter()
    open_bits = backend.open_bits(geom)
    cpu1, t1 = time.process_time(), time.perf_counter()
    rss.enter("endpoints + state")
    start, goal = _endpoints(open_bits, geom.vertices)
    state_size, state_dtype = backend.frugal_state_size(geom)
    state = np.zeros(state_size, dtype=state_dtype)
    rss.enter("search")
    search_meter = Meter()
    cpu2, t2 = time.process_time(), time.perf_counter()
    with metered(search_meter):
        length, expanded = backend.bfs_frugal(geom, open_bits, start, goal, state)
    cpu3, t3 = time.process_time(), time.perf_counter()
    rss.enter("path rebuild + check")
    path = backend.trace_path_frugal(geom, open_bits, state, start, goal, length) if length >= 0 else None
    cpu4, t4 = time.process_time(), time.perf_counter()
    load_after = os.getloadavg()
    problem = None if path is None else _check_path(path, args.shape, open_bits, start, goal, length)
    return {
        "shape": list(args.shape),
        "vertices": geom.vertices,
        "p": args.p,
        "seed": args.seed,
        "threads": numba.get_num_threads(),
        "start": int(start),
        "goal": int(goal),
        "start_coords": [int(c) for c in np.unravel_index(start, args.shape)],
        "goal_coords": [int(c) for c in np.unravel_index(goal, args.shape)],
        "length": int(length),
        "expanded": int(expanded),
        "path_vertices": 0 if path is None else len(path),
        "path_check": problem or "ok",
        "import_s": imported - began,
        "jit_warm_s": warmed - imported,
        "mask_s": t1 - t0,
        "search_s": t3 - t2,
        "trace_s": t4 - t3,
        "total_s": (t1 - t0) + (t3 - t2) + (t4 - t3),
        "mask_cpu_s": cpu1 - cpu0,
        "search_cpu_s": cpu3 - cpu2,
        "trace_cpu_s": cpu4 - cpu3,
        "search_ns_per_expanded": (t3 - t2) / max(expanded, 1) * 1e9,
        "open_bits_bytes": int(open_bits.nbytes),
        "state_bytes": int(state.nbytes),
        "search_scratch_bytes": search_meter.allocated_bytes,
        "rss_after_warm_mib": rss_after_warm,
        "peak_rss_mib": _rss_mib(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target, met or missed, with the measured figures behind it."""
    rss_gib = result["peak_rss_mib"] / 1024.0
    cpu = result["mask_cpu_s"] + result["search_cpu_s"] + result["trace_cpu_s"]
    cores = os.cpu_count() or 1
    rss_cause = (
        f"peak RSS {rss_gib:.2f} GiB: open bits {result['open_bits_bytes'] / 2**20:.0f} MiB, state "
        f"{result['state_bytes'] / 2**20:.0f} MiB, search scratch {result['search_scratch_bytes'] / 2**20:.0f} MiB, "
        f"interpreter and JIT {result['rss_after_warm_mib']:.0f} MiB"
    )
    wall_cause = (
        f"{result['total_s']:.1f} s wall (mask {result['mask_s']:.1f}, search {result['search_s']:.1f}, rebuild "
        f"{result['trace_s']:.2f}) for {cpu:.1f} s of CPU on {result['threads']} threads; load average "
        f"{result['load_average_before'][0]} before and {result['load_average_after'][0]} after on {cores} cores"
    )
    return [
        {"target": f"peak RSS <= {RSS_TARGET_GIB} GiB", "met": rss_gib <= RSS_TARGET_GIB, "measured": rss_cause},
        {"target": f"mask + search + rebuild <= {WALL_TARGET_S:.0f} s", "met": result["total_s"] <= WALL_TARGET_S,
         "measured": wall_cause},
        {"target": "path is a valid shortest-path walk", "met": result["path_check"] == "ok",
         "measured": f"{result['path_vertices']} vertices, length {result['length']}: {result['path_check']}"},
    ]  # fmt: skip


def _bandwidth_line(result: dict[str, Any]) -> str:
    """The measured bandwidth, and how long streaming the open bits and the tiled state once takes at it."""
    bandwidth = result["memory_bandwidth"]
    stream_s = (result["open_bits_bytes"] + result["state_bytes"]) / (bandwidth["read_gb_s"] * 1e9)
    return (
        f"read {bandwidth['read_gb_s']} GB/s, copy {bandwidth['copy_gb_s']} GB/s; one pass over the open bits and "
        f"the tiled state takes {stream_s:.2f} s at the read rate"
    )


def report(result: dict[str, Any]) -> str:
    """The Markdown body of the result file."""
    rows = [
        ["lattice", "x".join(map(str, result["shape"])) + f", {result['vertices']:,} vertices"],
        ["obstacles", f"random p = {result['p']}, seed {result['seed']}"],
        ["start -> goal", f"{result['start_coords']} -> {result['goal_coords']}"],
        ["path length", result["length"]],
        ["expanded", f"{result['expanded']:,}"],
        ["threads", result["threads"]],
        ["JIT warm-up (16^5, separate)", f"{result['jit_warm_s']:.2f} s"],
        ["mask (open_bits)", f"{result['mask_s']:.2f} s wall, {result['mask_cpu_s']:.2f} s CPU"],
        ["search (bfs_frugal)", f"{result['search_s']:.2f} s wall, {result['search_cpu_s']:.2f} s CPU"],
        ["path rebuild", f"{result['trace_s']:.3f} s wall"],
        ["search per expanded vertex", f"{result['search_ns_per_expanded']:.1f} ns wall"],
        [
            "mask + search + rebuild per expanded vertex",
            f"{result['total_s'] / max(result['expanded'], 1) * 1e9:.1f} ns wall",
        ],
        ["sequential memory bandwidth (1 core, same run)", _bandwidth_line(result)],
        ["peak RSS", f"{result['peak_rss_mib']:.0f} MiB ({result['rss_after_warm_mib']:.0f} MiB after warm-up)"],
        ["load average (1 min)", f"{result['load_average_before'][0]} before, {result['load_average_after'][0]} after"],
    ]
    if len(result.get("runs", [])) > 1:
        totals = ", ".join(f"{run['total_s']:.2f}" for run in result["runs"])
        peaks = ", ".join(f"{run['peak_rss_mib']:.0f}" for run in result["runs"])
        rows.append(
            [
                "runs (each a fresh process)",
                f"{len(result['runs'])}: mask + search + rebuild {totals} s, peak RSS {peaks} MiB; the table is the "
                "median run's",
            ]
        )
    lines = [markdown_table(["quantity", "value"], rows), "", "## Targets", ""]
    lines.append(
        markdown_table(
            ["target", "verdict", "measured"],
            [[v["target"], "met" if v["met"] else "missed", v["measured"]] for v in result["verdicts"]],
        )
    )
    return "\n".join(lines)


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose mask + search + rebuild time is the median (the lower middle of an even count), with every
    run's times and peak RSS beside it in ``runs``: the figures reported all come from one run.

    Examples
    --------
    >>> runs = [{"total_s": t, "mask_s": 0, "search_s": t, "trace_s": 0, "peak_rss_mib": 1} for t in (3.0, 1.0, 2.0)]
    >>> chosen = median_run(runs)
    >>> chosen["total_s"], [run["total_s"] for run in chosen["runs"]]
    (2.0, [3.0, 1.0, 2.0])
    """
    ordered = sorted(results, key=lambda run: run["total_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    keys = ("total_s", "mask_s", "search_s", "trace_s", "peak_rss_mib")
    chosen["runs"] = [{key: run[key] for key in keys} for run in results]
    return chosen


def main(argv: Sequence[str]) -> int:
    """Run the suite; returns the process exit status."""
    args = parse(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.runs < 1:
        sys.stderr.write(f"--runs: {args.runs} is not a count of runs (allowed: 1 or more)\n")
        return 2
    command = [sys.executable, "-m", "bench", "giant", "--child", "--shape", ",".join(map(str, args.shape))]
    command += ["--p", str(args.p), "--seed", str(args.seed)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    results = []
    for _ in range(args.runs):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = median_run(results)
    # measured here, not in the child, so that its buffers stay out of the child's peak RSS
    result["memory_bandwidth"] = memory_bandwidth()
    result["verdicts"] = verdicts(result)
    markdown = report(result)
    print(markdown)
    if not args.no_write:
        name = "giant" if args.shape == FULL_SHAPE else "giant-" + "x".join(map(str, args.shape))
        write_results(name, {"result": result}, markdown)
    return 0 if all(v["met"] for v in result["verdicts"]) else 1
