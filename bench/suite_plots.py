"""``python -m bench plots [SUITE ...]``: redraw the plots of stored results without running any suite.

Reads ``bench/results/<suite>.json`` (every stored suite with a plotter, or the ones named), writes the PNG files
beside it and replaces the plots section of ``<suite>.md``. See :mod:`bench.plots`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench import common, plots


def main(argv: Sequence[str]) -> int:
    """Redraw the plots of the named suites (default: every stored result a plotter knows)."""
    parser = argparse.ArgumentParser(prog="python -m bench plots", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", help="result names under bench/results (default: all with plots)")
    args = parser.parse_args(list(argv))
    stored = sorted(p.stem for p in common.RESULTS.glob("*.json"))
    names = args.suites or [name for name in stored if plots.plotter_for(name)]
    missing = sorted(set(names) - set(stored))
    if missing:
        parser.error(f"no stored results for {missing}; stored: {', '.join(stored)}")
    for name in names:
        for path in plots.refresh(name, common.RESULTS):
            print(f"wrote {path}")
    return 0
