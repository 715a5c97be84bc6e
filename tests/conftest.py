"""Suite-wide test settings: hypothesis profiles, and ``tests/`` on ``sys.path`` for ``from naive import ...``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _pytest.nodeid import coerce_node_id
from hypothesis import HealthCheck, settings

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

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
