"""Suite-wide test settings: hypothesis profiles, ``tests/`` on ``sys.path`` for ``from naive import ...``, and the
numba kernels compiled once, in the background, when the suite runs on several workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _pytest.nodeid import coerce_node_id
from hypothesis import HealthCheck, settings

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from warmed import WARMED_ENV  # noqa: E402 - found through the path set just above

# Generated lattices are built and checked against networkx, which is slow next to hypothesis' own budget.
settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group tests marked ``xdist_group`` again.

    pytest-xdist 3.8 tags a grouped test by setting ``item._nodeid = "<id>@<group>"``, but pytest 9 reads node ids
    from ``item._id``, so the tag is lost and grouped tests spread over workers (each starting its own Ray, or
    running a module's fixture again).
    Copying the tag across restores the grouping; it runs only on xdist workers under ``--dist loadgroup``.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        tagged = getattr(item, "_nodeid", None)
        if tagged and tagged != item.nodeid:
            item._id = coerce_node_id(tagged)


_WARMUP_KEY = pytest.StashKey[subprocess.Popen[bytes]]()

_WARM_AND_MARK = """
import pathlib, sys
status = 1
try:
    from catalytic.cli import main
    status = main(["warmup", "--json"])
finally:
    pathlib.Path(sys.argv[1]).write_text(str(status))
"""


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, start ``catalytic warmup`` once, from the controller, before the workers need the kernels.

    Every process that calls a kernel before numba's disk cache holds it compiles it: on a fresh checkout each
    worker would compile the same kernels, under coverage's tracer (about 1.7x slower: 101 s against 58 s for the
    17 signatures). One child without the tracer fills the cache (the default one, for this machine's CPU, as the
    tests use) while the first tests run; a test that gets there first compiles as before, except Ray's, whose
    cluster starts once the child has ended (``warmed.wait_for_warm_up``: its worker processes would each compile
    the kernels again). Nothing is asserted on it: the answer of a kernel does not depend on where its machine
    code came from.
    """
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    marker = Path(tempfile.mkdtemp(prefix="catalytic-warmup-")) / "ended"
    os.environ[WARMED_ENV] = str(marker)  # the workers, started after this, inherit it
    config.stash[_WARMUP_KEY] = subprocess.Popen(
        [sys.executable, "-c", _WARM_AND_MARK, str(marker)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """The warm-up child is stopped by its id if it is still running when the session ends."""
    child = config.stash.get(_WARMUP_KEY, None)
    if child is not None and child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    marker = os.environ.pop(WARMED_ENV, None) if child is not None else None
    if marker:
        shutil.rmtree(Path(marker).parent, ignore_errors=True)
