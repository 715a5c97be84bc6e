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

Options: ``--quick`` (tiny lattices, few repeats: the smoke test), ``--only CASE[,CASE]`` and
``--no-cold`` (skip the fresh-process compile measurement).

The parts live in ``bench/kernels/``: ``cases/`` (one module per case), ``peers/`` (one module per library and
their registry), ``ours.py`` (catalytic's rows), ``profiles.py``, ``cold.py``, ``targets.py`` and ``report.py``.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import begin_run, write_results
from bench.kernels.cases import CASES, RUNNERS
from bench.kernels.checks import publication_problems
from bench.kernels.cold import cold_runs
from bench.kernels.config import config
from bench.kernels.report import payload, render
from bench.kernels.rows import Case, check_answers
from bench.kernels.targets import evaluate_targets

__all__ = ["CASES", "main"]


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
    result = payload(cases, references, targets, cold, cfg, available)
    result["publication_problems"] = problems
    json_path, md_path = write_results("kernels", result, render(cases, targets, cold, cfg), load_started=started)
    print(f"wrote {json_path} and {md_path}")
    if result["disagreements"]:
        print(f"answers disagree: {result['disagreements']}", file=sys.stderr)
    return 0
