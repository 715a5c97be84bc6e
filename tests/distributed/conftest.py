"""One local Ray for the whole pytest run (2 CPUs, a fixed object store, the dashboard for job submission).

Every Ray test is marked ``ray`` and put in the ``ray`` xdist group, so under ``-n 2 --dist loadgroup`` they all
run in one worker and share this instance. If Ray cannot start here, the tests fail and say why.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from warmed import wait_for_warm_up

OBJECT_STORE_BYTES = 256 * 2**20
_HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """The shared local Ray: ``{"address": GCS address, "dashboard": job-submission URL}``, started once the
    suite's warm-up has filled numba's cache, so that its worker processes load the kernels instead of each
    compiling them."""
    wait_for_warm_up()
    try:
        import ray
    except ImportError as exc:
        pytest.fail(f"Ray is not installed ({exc}); install catalytic[distributed]")
    dashboard_port = _free_port()
    try:
        ray.init(
            num_cpus=2,
            object_store_memory=OBJECT_STORE_BYTES,
            _node_ip_address="127.0.0.1",  # the cluster's own traffic stays on loopback
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            log_to_driver=False,
            configure_logging=False,
        )
    except Exception as exc:  # any failure to start is reported as a test failure, never a skip
        pytest.fail(f"a local Ray could not start here: {type(exc).__name__}: {exc}")
    address = ray.get_runtime_context().gcs_address
    info = {"address": address, "dashboard": f"http://127.0.0.1:{dashboard_port}"}
    try:
        yield info
    finally:
        ray.shutdown()
