"""``python -m bench <suite> [options]``: run one suite, writing bench/results/<suite>.{json,md}."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench.common import begin_run

PREFIX = "suite_"


def suites() -> list[str]:
    """Names of the available suites (modules ``bench/suite_<name>.py``)."""
    here = Path(__file__).parent
    found = pkgutil.iter_modules([str(here)])
    return sorted(m.name[len(PREFIX) :] for m in found if m.name.startswith(PREFIX))


def main(argv: list[str]) -> int:
    names = suites()
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m bench <suite> [options]\nsuites: {', '.join(names)}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown suite {name!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{PREFIX}{name}")
    begin_run()
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
