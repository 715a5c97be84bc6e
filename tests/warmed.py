"""The suite's warm-up child, seen from a worker: under xdist the controller starts ``catalytic warmup`` once
(``conftest.py``) and the child writes its exit status to the file named by :data:`WARMED_ENV` when it ends."""

from __future__ import annotations

import os
import time
from pathlib import Path

WARMED_ENV = "CATALYTIC_TESTS_WARMED"
"""The file the warm-up child writes its exit status to when it ends; set for the workers under xdist only."""


def wait_for_warm_up(timeout: float = 240.0) -> None:
    """Wait until the suite's warm-up child has ended (at most ``timeout`` seconds, well inside the suite's
    300 s per-test limit, after which the caller goes on and compiles what it needs); at once without one.

    Processes that start before numba's cache holds a kernel each compile it: for Ray's worker processes that
    is the same minute of compiling several times over, on cores the whole suite shares.
    """
    marker = os.environ.get(WARMED_ENV)
    if not marker:
        return
    deadline = time.monotonic() + timeout
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
