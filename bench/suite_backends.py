"""``python -m bench backends``: every available backend on the same lattices, primitive by primitive.

Tasks (each on its own procedural lattice, 20 % random obstacles, seed 1):

* ``bfs``: point-to-point BFS from the lowest to the highest open vertex of a 5-D lattice (a corner-to-corner
  search: whole levels until the target's level);
* ``components``: component labels of a 3-D lattice;
* ``distance_field``: a single-source BFS distance field over a 4-D lattice;
* ``sssp``: a single-source weighted distance field (Dijkstra's costs) over a 3-D lattice whose weights are
  drawn uniformly from [1, 2) (seed 1);
* ``open_mask``: materialising the open mask of the 5-D lattice from its generators.

Each row times the primitive through the backend interface (state allocation included, the open mask built
once beforehand): the first call (``first_s``: JIT compilation, caches, device warm-up) apart from the warm
median of ``--repeat`` further calls. Answers (``expanded``, and a digest of the distance field or labels)
are compared across backends; a disagreeing row is flagged. A backend that cannot run here gets a row that
reads "not measured" with the reason; nothing is estimated.

Options: ``--quick`` (tiny lattices), ``--shape-5d N``, ``--shape-3d N``, ``--shape-4d N`` (axis lengths),
``--backends a,b`` (default: all three), ``--tasks a,b`` (default: all), ``--repeat R`` / ``--repeat-slow R`` /
``--repeat-cpu R`` (warm calls for every backend, for the NumPy reference, and for the CPU backends), ``--name
NAME`` (result file name, default ``backends``), and ``--vertices N[,N...]``: instead of the shapes, run each task
once per size, on the lattice of its axis count whose axis length is the rounded d-th root of N. A repeat of 0 times
one call only (for CPU rows that take minutes on 10^9 vertices; run the suite once with ``--quick`` first so that it
is not a compile). The result files are rewritten after every row, so a run cut short keeps the rows it finished.
Every row gives nanoseconds per vertex of the lattice (warm median over the vertex count). :func:`gpu_summary` reads
the rows of GPU runs back and writes the table ``bench/gpu_check.sh`` prints last.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xxhash

from bench.common import markdown_table, timed, write_results

TASKS = ("bfs", "components", "distance_field", "sssp", "open_mask")
AXES = {"bfs": 5, "components": 3, "distance_field": 4, "sssp": 3, "open_mask": 5}
ALL_BACKENDS = ("numpy", "numba", "cupy")
SLOW_BACKENDS = ("numpy",)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench backends", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny lattices, one warm call")
    parser.add_argument("--shape-5d", type=int, default=None, help="axis length of the 5-D lattice (bfs)")
    parser.add_argument("--shape-3d", type=int, default=None, help="axis length of the 3-D lattice (components)")
    parser.add_argument("--shape-4d", type=int, default=None, help="axis length of the 4-D lattice (distance field)")
    parser.add_argument("--backends", default=",".join(ALL_BACKENDS), help="comma-separated backend names")
    parser.add_argument("--repeat", type=int, default=None, help="warm calls per row")
    parser.add_argument("--repeat-slow", type=int, default=None, help="warm calls per NumPy row")
    parser.add_argument("--repeat-cpu", type=int, default=None, help="warm calls per CPU row (numpy and numba)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    parser.add_argument("--name", default="backends", help="result file name under bench/results")
    parser.add_argument("--vertices", default="", help="comma-separated vertex counts (replace the shapes)")
    args = parser.parse_args(list(argv))
    args.vertices = [int(float(v)) for v in args.vertices.split(",") if v.strip()]
    small = {"5d": 6, "3d": 16, "4d": 8} if args.quick else {"5d": 12, "3d": 64, "4d": 24}
    args.shape_5d = args.shape_5d or small["5d"]
    args.shape_3d = args.shape_3d or small["3d"]
    args.shape_4d = args.shape_4d or small["4d"]
    args.repeat = (1 if args.quick else 5) if args.repeat is None else args.repeat
    args.repeat_slow = (1 if args.quick else 2) if args.repeat_slow is None else args.repeat_slow
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {', '.join(TASKS)}")
    return args


def _lattice(ndim: int, n: int, weighted: bool = False) -> Any:
    from catalytic.lattice import Lattice

    weights = None
    if weighted:
        weights = np.random.default_rng(1).random((n,) * ndim) + 1.0
    return Lattice((n,) * ndim, obstacles=[{"kind": "random", "p": 0.2, "seed": 1}], weights=weights)


def _digest(array: np.ndarray) -> str:
    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


def _tasks(args: argparse.Namespace) -> list[tuple[str, Any, str]]:
    """Each row group's task, lattice and a description of it."""
    shapes = {"bfs": args.shape_5d, "components": args.shape_3d, "distance_field": args.shape_4d}
    shapes["open_mask"] = shapes["bfs"]
    shapes["sssp"] = args.shape_3d
    out = []
    for vertices in args.vertices or [None]:
        for task in args.tasks:
            ndim = AXES[task]
            n = shapes[task] if vertices is None else round(vertices ** (1 / ndim))
            lattice = _lattice(ndim, n, weighted=task == "sssp")
            out.append((task, lattice, f"{ndim}-D {n}^{ndim} ({lattice.vertices:,} vertices), 20 % obstacles"))
    return out


def _runner(task: str, be: Any, lattice: Any) -> Callable[[], tuple[int, Any]]:
    """A call running ``task`` once on backend ``be``; returns (expanded or count, the answer array).

    Every call ends with a value read back on the host, so a device backend has finished when it returns.
    """
    from catalytic.kernels.backend import Geometry

    geom = Geometry.of(lattice)
    if task == "open_mask":

        def materialise() -> tuple[int, Any]:
            mask = be.open_mask(geom)
            return int(be.to_host(mask[:1])[0]), mask

        return materialise
    mask = be.open_mask(geom)
    open_index = np.flatnonzero(lattice.open_mask_flat())
    start, goal = int(open_index[0]), int(open_index[-1])
    if task == "components":

        def components() -> tuple[int, Any]:
            labels, count = be.label(geom, mask)
            return int(count), labels

        return components
    target = goal if task == "bfs" else -1
    if task == "sssp":

        def weighted_field() -> tuple[int, Any]:
            costs = be.full(lattice.vertices, np.inf, np.float64)
            expanded = be.dijkstra(geom, mask, np.asarray([start], dtype=np.int64), -1, costs, False)
            return int(expanded), costs

        return weighted_field

    def search() -> tuple[int, Any]:
        dist = be.full(lattice.vertices, -1, np.int32)
        expanded = be.bfs(geom, mask, np.asarray([start], dtype=np.int64), target, dist)
        return int(expanded), dist

    return search


def run(
    args: argparse.Namespace, done: Callable[[list[dict[str, Any]], dict[str, str]], None]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """All rows, and the reason each unavailable backend could not run; ``done`` sees the rows after each row."""
    from catalytic.errors import BackendUnavailableError
    from catalytic.kernels.backend import get_backend

    usable: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in args.backends:
        try:
            usable[name] = get_backend(name)
        except BackendUnavailableError as exc:
            missing[name] = str(exc)
    rows: list[dict[str, Any]] = []
    for task, lattice, description in _tasks(args):
        for name in args.backends:
            row: dict[str, Any] = {
                "task": task,
                "lattice": description,
                "vertices": lattice.vertices,
                "backend": name,
            }
            if name in missing:
                row.update(status=f"not measured: {missing[name]}")
                rows.append(row)
                continue
            be = usable[name]
            repeat = args.repeat_slow if name in SLOW_BACKENDS else args.repeat
            if args.repeat_cpu is not None and getattr(be, "host_arrays", False):
                repeat = args.repeat_cpu
            t0 = time.perf_counter()
            call = _runner(task, be, lattice)
            prepare = time.perf_counter() - t0
            timing, (value, answer) = timed(call, repeat)
            digest = _digest(be.to_host(answer))
            row.update(status="measured", prepare_s=prepare, value=value, digest=digest, **timing)
            row["ns_per_vertex"] = row["median_s"] / lattice.vertices * 1e9
            rows.append(row)
            del call, answer
            gc.collect()
            _mark_agreement(rows)
            done(rows, missing)
    return rows, missing


def _mark_agreement(rows: list[dict[str, Any]]) -> None:
    """Flag each measured row whose answer differs from another backend's on the same task and lattice."""
    for group in {(r["task"], r["lattice"]) for r in rows}:
        measured = [r for r in rows if (r["task"], r["lattice"]) == group and r["status"] == "measured"]
        answers = {(r["value"], r["digest"]) for r in measured}
        for r in measured:
            r["agrees"] = len(answers) == 1


def render(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: warm median, first call and speed-up over numba per task."""
    numba = {
        (r["task"], r["lattice"]): r["median_s"] for r in rows if r["backend"] == "numba" and r["status"] == "measured"
    }
    table = []
    for r in rows:
        if r["status"] != "measured":
            table.append([r["task"], r["lattice"], r["backend"], "not measured", "-", "not measured", "-", "-", "-"])
            continue
        base = numba.get((r["task"], r["lattice"]))
        speedup = f"{base / r['median_s']:.2f}x" if base and r["median_s"] > 0 else "-"
        table.append(
            [
                r["task"],
                r["lattice"],
                r["backend"],
                f"{r['median_s'] * 1e3:.2f}",
                f"{r['median_s'] / r['vertices'] * 1e9:.3f}" if r.get("vertices") else "-",
                f"{r['cold_s'] * 1e3:.2f}",
                speedup,
                "-" if r["task"] == "open_mask" else r["value"],
                "yes" if r["agrees"] else "NO",
            ]
        )
    header = [
        "task",
        "lattice",
        "backend",
        "warm median ms",
        "ns per vertex",
        "first call ms",
        "vs numba",
        "expanded/count",
        "agrees",
    ]
    return markdown_table(header, table)


def _write(args: argparse.Namespace, rows: list[dict[str, Any]], missing: dict[str, str], final: bool) -> str:
    """Write bench/results/<name>.{json,md} and return the Markdown."""
    notes = [
        "Warm median of repeated calls through the backend interface; the first call (JIT compile, device "
        "warm-up) is reported apart; a row with repeat 0 is one call. Baseline for `vs numba`: the numba row of "
        "the same task on this machine.",
        "`agrees`: the same expanded count / component count and the same digest of the distance field or "
        "labels as every other backend of the task.",
    ]
    notes += [f"`{name}` not measured: {reason}." for name, reason in missing.items()]
    markdown = render(rows) + "\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    payload = {
        "config": {
            "backends": args.backends,
            "tasks": args.tasks,
            "repeat": args.repeat,
            "repeat_slow": args.repeat_slow,
            "repeat_cpu": args.repeat_cpu,
            "shapes": {"5d": args.shape_5d, "3d": args.shape_3d, "4d": args.shape_4d},
            "vertices": args.vertices,
        },
        "not_measured": missing,
        "rows": rows,
    }
    write_results(args.name, payload, markdown, plots=final)
    return markdown


def gpu_summary(rows: list[dict[str, Any]], failures: Sequence[str] = ()) -> str:
    """The GPU check's table: per task and lattice, ns per vertex on each backend, the speed-up over numba, the
    targets (10^9-vertex BFS <= 1 s, >= 20x numba) and whether the answers are identical.

    Examples
    --------
    >>> row = {"task": "bfs", "lattice": "5-D", "vertices": 10, "status": "measured", "value": 3, "digest": "d"}
    >>> rows = [{**row, "backend": "numba", "median_s": 2e-6}, {**row, "backend": "cupy", "median_s": 1e-7}]
    >>> print(gpu_summary(rows))
    | task | lattice | numba ns/vertex | cupy ns/vertex | speed-up | >= 20x | identical | BFS <= 1 s |
    |---|---|---|---|---|---|---|---|
    | bfs | 5-D | 200 | 10 | 20.0x | yes | yes | - |
    """
    measured = {(r["task"], r["lattice"], r["backend"]): r for r in rows if r.get("status") == "measured"}
    groups = list(dict.fromkeys((r["task"], r["lattice"]) for r in rows))
    table = []
    for task, lattice in groups:
        cpu, gpu = measured.get((task, lattice, "numba")), measured.get((task, lattice, "cupy"))

        def per_vertex(row: dict[str, Any] | None) -> str:
            return "not measured" if row is None else f"{row['median_s'] / row['vertices'] * 1e9:.4g}"

        ratio = cpu["median_s"] / gpu["median_s"] if cpu and gpu and gpu["median_s"] > 0 else None
        same = cpu is not None and gpu is not None and (cpu["value"], cpu["digest"]) == (gpu["value"], gpu["digest"])
        within = "-"
        if task == "bfs" and gpu is not None and gpu["vertices"] >= 9 * 10**8:
            within = "yes" if gpu["median_s"] <= 1.0 else f"NO ({gpu['median_s']:.2f} s)"
        table.append(
            [
                task,
                lattice,
                per_vertex(cpu),
                per_vertex(gpu),
                "-" if ratio is None else f"{ratio:.1f}x",
                "-" if ratio is None else ("yes" if ratio >= 20 else "NO"),
                "yes" if same else ("-" if cpu is None or gpu is None else "NO"),
                within,
            ]
        )
    for failure in failures:
        table.append([f"step failed: {failure}", "-", "-", "-", "-", "-", "-", "-"])
    header = ["task", "lattice", "numba ns/vertex", "cupy ns/vertex", "speed-up", ">= 20x", "identical", "BFS <= 1 s"]
    return markdown_table(header, table)


def main(argv: Sequence[str]) -> int:
    """Run every task on every requested backend and write bench/results/<name>.{json,md}."""
    args = parse(argv)

    def checkpoint(so_far: list[dict[str, Any]], reasons: dict[str, str]) -> None:
        _write(args, so_far, reasons, final=False)

    rows, missing = run(args, checkpoint)
    print(_write(args, rows, missing, final=True))
    disagreeing = [f"{r['task']}/{r['backend']}" for r in rows if r.get("agrees") is False]
    if disagreeing:
        print(f"answers differ: {', '.join(disagreeing)}")
        return 1
    return 0
