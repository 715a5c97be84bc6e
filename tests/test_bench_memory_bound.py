"""The memory bound of a long-running server (issue 12, section 4), checked at a small scale with the bench's
own scenario: a real ``catalytic serve`` process, large-ish jobs whose results go to the results store, large
creates with path queries, then deletes; every process stays within idle RSS + CACHE_MAX_BYTES + pool cap +
150 MB. Without the byte cap the creates alone grew the server by 309 MB, past the 175 MB allowed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.suite_memory_bound import SLACK, run_scenario

pytestmark = pytest.mark.slow

CACHE_MAX_BYTES = 16 * 2**20
POOL_MAX_BYTES = 8 * 2**20
CREATES = 10
CREATE_SHAPE = (4000, 4000)  # 1.6e7 vertices: about 30 MB held per lattice in the server process, 300 MB in all


def test_server_returns_to_its_bound_after_large_jobs_creates_and_deletes(tmp_path: Path) -> None:
    result = run_scenario(
        jobs=3,
        job_shape=(1000, 2000),
        creates=CREATES,
        create_shape=CREATE_SHAPE,
        cache_max_bytes=CACHE_MAX_BYTES,
        pool_max_bytes=POOL_MAX_BYTES,
        workdir=tmp_path,
    )
    assert result["jobs_ok"] == 3 and result["downloads_identical"] == 1
    assert result["creates_ok"] == CREATES
    # The byte cap evicted: not every lattice created is still held.
    assert 1 <= result["l1_lattices_after_creates"] < CREATES
    assert result["bound"] == result["idle"]["server"] + CACHE_MAX_BYTES + POOL_MAX_BYTES + SLACK
    for phase in ("after_jobs", "after_creates", "end"):
        assert result[phase]["server"] <= result["bound"], (phase, result[phase]["server"], result["bound"])
    assert result["children_within"] and all(result["children_within"].values()), result["end"]
