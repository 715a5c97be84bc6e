"""``python -m bench kernels``: catalytic's kernels against graph and image libraries on the same lattices.

Every case materialises one procedural lattice, hands the peers its open mask (for free: building the mask
is never charged to a peer), and times each peer's graph construction ("build") apart from its query.
catalytic rows are warm (the numba kernels compiled before timing) unless marked end to end, which times
spec -> answer on a new :class:`~catalytic.Lattice` each call once the case's own lattice is gone: lattices are
equal by digest and the kernels keep prepared masks per lattice, so before every such call the suite checks that
no equal lattice holds one (the call is cold). Graph peers are timed by each documented build route, and by
their A* with the Manhattan heuristic beside their BFS. The first call of every row is reported as ``first``;
the compile cost of a fresh process is measured in a subprocess.

A full run refuses to publish (writes nothing, exits 1) when a profile's stages add up to more than its total
or an end-to-end row was not checked cold on every call; a quick run, whose timings mean nothing, lists them
under ``publication_problems`` instead.

Every row's answer (path length, component count, distance-field digest) is checked against the answer
most rows give; a row that disagrees is flagged.

Beside the rows, a run measures the machine's single-core sequential memory bandwidth (a streaming read and a
copy, :func:`bench.common.memory_bandwidth`) and gives each catalytic path row its time per expanded vertex next
to the time the bytes a BFS must touch per vertex (its 1-byte mask entry and 4-byte depth) take to stream, for
the rows that ran BFS.

Options: ``--quick`` (tiny lattices, few repeats: the smoke test), ``--only CASE[,CASE]`` and
``--no-cold`` (skip the fresh-process compile measurement).

The parts live in ``bench/kernels/``: ``cases/`` (one module per case), ``peers/`` (one module per library and
their registry), ``ours.py`` (catalytic's rows), ``profiles.py``, ``cold.py``, ``targets.py`` and ``report.py``.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import bandwidth_floor_ns, begin_run, markdown_table, memory_bandwidth, write_results
from bench.kernels.cases import CASES, RUNNERS
from bench.kernels.checks import publication_problems
from bench.kernels.cold import cold_runs
from bench.kernels.config import config
from bench.kernels.report import payload, render
from bench.kernels.rows import Case, check_answers
from bench.kernels.targets import evaluate_targets

__all__ = ["CASES", "main", "per_vertex"]

BFS_BYTES_PER_VERTEX = 5
"""Bytes a BFS must touch per vertex it labels: the open mask's byte, read, and the int32 depth, written."""


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny lattices and few repeats (smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated cases to run: {', '.join(CASES)}")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process compile measurement")
    args = parser.parse_args(list(argv))
    only = [c for c in args.only.split(",") if c]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    args.cases = [c for c in CASES if not only or c in only]
    return args


def per_vertex(cases: dict[str, Case], bandwidth: dict[str, Any]) -> list[dict[str, Any]]:
    """Time per expanded vertex of every catalytic path row that ran BFS (the rows the streaming floor is for)."""
    floor = bandwidth_floor_ns(BFS_BYTES_PER_VERTEX, bandwidth)
    rows = []
    for case in cases.values():
        for row in case.rows:
            found = re.search(r"ran (\w+), expanded (\d+)", row.note)
            if row.task != "path" or not row.impl.startswith("catalytic") or found is None or found[1] != "bfs":
                continue
            expanded = int(found[2])
            rows.append({
                "case": case.name,
                "impl": row.impl,
                "ran": found[1],
                "median_ms": row.query["median_s"] * 1e3,
                "expanded": expanded,
                "ns_per_expanded": row.query["median_s"] * 1e9 / expanded,
                "bandwidth_floor_ns": floor,
            })  # fmt: skip
    return rows


def per_vertex_markdown(rows: list[dict[str, Any]], bandwidth: dict[str, Any]) -> str:
    """The per-vertex section of the Markdown report."""
    table = markdown_table(
        ["case", "implementation", "ran", "ms", "expanded", "ns per expanded vertex", "streaming floor (ns)"],
        [
            [r["case"], r["impl"], r["ran"], f"{r['median_ms']:.3f}", f"{r['expanded']:,}",
             f"{r['ns_per_expanded']:.1f}", f"{r['bandwidth_floor_ns']:.2f}"]
            for r in rows
        ],
    )  # fmt: skip
    return "\n".join([
        "",
        "## Per expanded vertex, against the memory bandwidth",
        "",
        f"Sequential memory bandwidth of one core, measured in this run: read {bandwidth['read_gb_s']} GB/s, copy "
        f"{bandwidth['copy_gb_s']} GB/s ({bandwidth['bytes'] // 2**20} MiB, best of 5; load average "
        f"{bandwidth['load_average']}). The streaming floor is the {BFS_BYTES_PER_VERTEX} bytes a BFS must touch per "
        "vertex (its mask byte and its int32 depth) at the read bandwidth; queries on a prebuilt lattice only.",
        "",
        table,
    ])  # fmt: skip


def main(argv: Sequence[str]) -> int:
    """Run the selected cases and write bench/results/kernels.{json,md}."""
    import catalytic

    args = parse(argv)
    started = begin_run()
    cfg = config(args.quick)
    available = catalytic.backends()
    cases: dict[str, Case] = {}
    references: dict[str, Any] = {}
    for name in args.cases:
        case = RUNNERS[name](cfg)
        references[name] = check_answers(case.rows)
        cases[name] = case
        gc.collect()
    cold = cold_runs(cfg) if not args.no_cold and "numba" in available else []
    problems = publication_problems(cases)
    if problems and not cfg.quick:
        print("not published: " + "; ".join(problems), file=sys.stderr)
        return 1
    if problems:
        print("a full run would not publish this: " + "; ".join(problems), file=sys.stderr)
    targets = evaluate_targets(cases)
    bandwidth = memory_bandwidth(size=16 * 2**20 if cfg.quick else 256 * 2**20)
    vertex_rows = per_vertex(cases, bandwidth)
    result = payload(cases, references, targets, cold, cfg, available)
    result["publication_problems"] = problems
    result["memory_bandwidth"] = bandwidth
    result["per_vertex"] = vertex_rows
    markdown = render(cases, targets, cold, cfg) + "\n" + per_vertex_markdown(vertex_rows, bandwidth)
    json_path, md_path = write_results("kernels", result, markdown, load_started=started)
    print(f"wrote {json_path} and {md_path}")
    if result["disagreements"]:
        print(f"answers disagree: {result['disagreements']}", file=sys.stderr)
    return 0
